//! The OpenAPI 3 document of the HTTP/JSON routes, generated from the same
//! annotations the gateway serves and the proto comments, so the document
//! and the behaviour cannot drift apart.

use std::collections::{BTreeMap, HashMap, HashSet};

use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value as Json, json};

use super::routes::{BodyRule, Route, Router};

const STATUS: &str = "google.rpc.Status";
/// The detail types an error may carry, documented beside the status.
const DETAILS: &[&str] = &[
    "google.rpc.BadRequest",
    "google.rpc.PreconditionFailure",
    "google.rpc.QuotaFailure",
    "google.rpc.ErrorInfo",
    "google.rpc.RetryInfo",
    "google.rpc.ResourceInfo",
    "google.rpc.Help",
];

/// Leading comments by file and descriptor path.
struct Comments(HashMap<(String, Vec<i32>), String>);

impl Comments {
    fn of_pool(pool: &DescriptorPool) -> Self {
        let mut map = HashMap::new();
        for file in pool.files() {
            let proto = file.file_descriptor_proto();
            let Some(info) = &proto.source_code_info else {
                continue;
            };
            for location in &info.location {
                let text = location.leading_comments();
                if !text.trim().is_empty() {
                    map.insert(
                        (proto.name().to_string(), location.path.clone()),
                        clean(text),
                    );
                }
            }
        }
        Self(map)
    }

    fn get(&self, file: &str, path: &[i32]) -> Option<&str> {
        self.0
            .get(&(file.to_string(), path.to_vec()))
            .map(String::as_str)
    }

    fn message(&self, message: &MessageDescriptor) -> Option<&str> {
        self.get(message.parent_file().name(), message.path())
    }

    fn field(&self, field: &FieldDescriptor) -> Option<&str> {
        self.get(field.parent_file().name(), field.path())
    }
}

fn clean(comment: &str) -> String {
    comment
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

/// The whole document.
pub fn document(pool: &DescriptorPool, router: &Router) -> Json {
    let comments = Comments::of_pool(pool);
    let mut schemas = Schemas {
        comments: &comments,
        done: HashSet::new(),
        out: BTreeMap::new(),
    };
    let mut paths: BTreeMap<String, Map<String, Json>> = BTreeMap::new();
    let mut operation_ids: HashMap<String, usize> = HashMap::new();
    for route in router.routes() {
        let base = format!(
            "{}_{}",
            route.method.parent_service().name(),
            route.method.name()
        );
        let seen = operation_ids.entry(base.clone()).or_insert(0);
        *seen += 1;
        let operation_id = if *seen == 1 {
            base
        } else {
            format!("{base}_{seen}")
        };
        let operation = operation(route, &operation_id, &comments, &mut schemas);
        paths.entry(route.template.clone()).or_default().insert(
            route.http_method.as_str().to_lowercase(),
            Json::Object(operation),
        );
    }
    for name in std::iter::once(STATUS).chain(DETAILS.iter().copied()) {
        if let Some(message) = pool.get_message_by_name(name) {
            schemas.message_ref(&message);
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "agentshare",
            "version": "v1",
            "description": "HTTP/JSON access to every public agentshare RPC, transcoded by the gateway from the google.api.http annotations in proto/. Authenticate with `Authorization: Bearer <session JWT, API key or run token>`, or a share token in `x-agentshare-grant-token`; `x-agentshare-org` and `x-agentshare-workspace` pick the org and workspace as they do over gRPC. Bodies and answers use the proto3 JSON mapping (lowerCamelCase names; original names are accepted too; 64-bit integers as strings). Errors are JSON google.rpc.Status under the HTTP status Google's mapping gives its code. Server-streaming calls answer newline-delimited JSON: one {\"result\": ...} line per message and, if the stream fails after it started, a last {\"error\": Status} line.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas.out,
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer" },
                "grantToken": { "type": "apiKey", "in": "header", "name": crate::auth::GRANT_HEADER },
            },
        },
        "security": [ { "bearer": [] }, { "grantToken": [] } ],
    })
}

fn operation(
    route: &Route,
    operation_id: &str,
    comments: &Comments,
    schemas: &mut Schemas<'_>,
) -> Map<String, Json> {
    let method = &route.method;
    let mut operation = Map::new();
    operation.insert("operationId".into(), json!(operation_id));
    operation.insert("tags".into(), json!([method.parent_service().name()]));
    if let Some(text) = comments.get(method.parent_file().name(), method.path()) {
        let summary = text.lines().next().unwrap_or_default();
        operation.insert("summary".into(), json!(summary));
        operation.insert("description".into(), json!(text));
    }
    let input = method.input();
    let variables = route.variables();
    let mut parameters = Vec::new();
    for path in &variables {
        let name = path
            .iter()
            .map(FieldDescriptor::name)
            .collect::<Vec<_>>()
            .join(".");
        let leaf = path.last().cloned();
        let mut parameter = json!({
            "name": name,
            "in": "path",
            "required": true,
            "schema": leaf.as_ref().map_or(json!({"type": "string"}), |f| schemas.scalar(f)),
        });
        if let Some(text) = leaf.as_ref().and_then(|f| comments.field(f)) {
            parameter["description"] = json!(text);
        }
        parameters.push(parameter);
    }
    let in_path: HashSet<String> = variables
        .iter()
        .filter_map(|p| p.first().map(|f| f.name().to_string()))
        .collect();
    match &route.body {
        BodyRule::None => {
            for field in input.fields() {
                if in_path.contains(field.name()) {
                    continue;
                }
                if let Some(schema) = query_schema(&field, schemas) {
                    let mut parameter = json!({
                        "name": field.json_name(),
                        "in": "query",
                        "required": false,
                        "schema": schema,
                    });
                    if field.is_list() {
                        parameter["style"] = json!("form");
                        parameter["explode"] = json!(true);
                    }
                    if let Some(text) = comments.field(&field) {
                        parameter["description"] = json!(text);
                    }
                    parameters.push(parameter);
                }
            }
        }
        BodyRule::Whole => {
            // The body is the request without the fields its path sets.
            let reference = schemas.message_ref(&input);
            let schema = if in_path.is_empty() {
                reference
            } else {
                schemas.without(&input, &in_path)
            };
            operation.insert(
                "requestBody".into(),
                json!({
                    "required": false,
                    "content": { "application/json": { "schema": schema } },
                }),
            );
        }
        BodyRule::Field(field) => {
            let schema = schemas.field(field);
            operation.insert(
                "requestBody".into(),
                json!({
                    "required": false,
                    "content": { "application/json": { "schema": schema } },
                }),
            );
        }
    }
    if !parameters.is_empty() {
        operation.insert("parameters".into(), Json::Array(parameters));
    }
    let output = schemas.message_ref(&method.output());
    let status = json!({ "$ref": format!("#/components/schemas/{STATUS}") });
    let success = if method.is_server_streaming() {
        json!({
            "description": "A stream of newline-delimited JSON lines: {\"result\": message} for each message, and a last {\"error\": Status} if the stream fails after it started.",
            "content": { "application/x-ndjson": { "schema": {
                "type": "object",
                "properties": { "result": output, "error": status },
            } } },
        })
    } else {
        json!({
            "description": "The answer.",
            "content": { "application/json": { "schema": output } },
        })
    };
    operation.insert(
        "responses".into(),
        json!({
            "200": success,
            "default": {
                "description": "An error: google.rpc.Status with its details, under the HTTP status Google's mapping gives its gRPC code (400 invalid or wrong state, 401 no valid credential, 403 not allowed, 404 not found or not visible, 409 conflict, 429 quota).",
                "content": { "application/json": { "schema": status } },
            },
        }),
    );
    operation
}

/// A top-level field as a query parameter, when it has a string form.
fn query_schema(field: &FieldDescriptor, schemas: &mut Schemas<'_>) -> Option<Json> {
    if field.is_map() {
        return None;
    }
    let item = match field.kind() {
        Kind::Message(message) => well_known(&message).filter(|schema| {
            schema
                .get("type")
                .is_some_and(|t| t != "object" && t != "array")
        })?,
        _ => schemas.scalar(field),
    };
    Some(if field.is_list() {
        json!({ "type": "array", "items": item })
    } else {
        item
    })
}

/// The proto3 JSON shape of the well-known types.
fn well_known(message: &MessageDescriptor) -> Option<Json> {
    Some(match message.full_name() {
        "google.protobuf.Timestamp" => json!({ "type": "string", "format": "date-time" }),
        "google.protobuf.Duration" => {
            json!({ "type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$" })
        }
        "google.protobuf.FieldMask" => json!({ "type": "string" }),
        "google.protobuf.Struct" => json!({ "type": "object", "additionalProperties": true }),
        "google.protobuf.Value" => json!({}),
        "google.protobuf.ListValue" => json!({ "type": "array", "items": {} }),
        "google.protobuf.Empty" => json!({ "type": "object", "additionalProperties": false }),
        "google.protobuf.Any" => json!({
            "type": "object",
            "properties": { "@type": { "type": "string" } },
            "additionalProperties": true,
        }),
        "google.protobuf.StringValue" => json!({ "type": "string" }),
        "google.protobuf.BytesValue" => json!({ "type": "string", "format": "byte" }),
        "google.protobuf.BoolValue" => json!({ "type": "boolean" }),
        "google.protobuf.DoubleValue" | "google.protobuf.FloatValue" => json!({ "type": "number" }),
        "google.protobuf.Int32Value" => json!({ "type": "integer", "format": "int32" }),
        "google.protobuf.UInt32Value" => {
            json!({ "type": "integer", "minimum": 0, "maximum": u32::MAX })
        }
        "google.protobuf.Int64Value" => int64(),
        "google.protobuf.UInt64Value" => uint64(),
        _ => return None,
    })
}

fn int64() -> Json {
    json!({ "type": "string", "format": "int64", "pattern": "^-?[0-9]{1,18}$" })
}

fn uint64() -> Json {
    json!({ "type": "string", "format": "uint64", "pattern": "^[0-9]{1,19}$" })
}

struct Schemas<'c> {
    comments: &'c Comments,
    done: HashSet<String>,
    out: BTreeMap<String, Json>,
}

impl Schemas<'_> {
    /// A reference to `message`'s schema, defining it on first use.
    fn message_ref(&mut self, message: &MessageDescriptor) -> Json {
        if let Some(schema) = well_known(message) {
            return schema;
        }
        let name = message.full_name().to_string();
        if self.done.insert(name.clone()) {
            let mut properties = Map::new();
            for field in message.fields() {
                let mut schema = self.field(&field);
                // A `$ref` takes no siblings in OpenAPI 3.0.
                if let (Some(text), Some(object)) =
                    (self.comments.field(&field), schema.as_object_mut())
                    && !object.contains_key("$ref")
                {
                    object.insert("description".into(), json!(text));
                }
                properties.insert(field.json_name().to_string(), schema);
            }
            let mut schema = json!({
                "type": "object",
                "properties": properties,
                "additionalProperties": false,
            });
            if let Some(text) = self.comments.message(message) {
                schema["description"] = json!(text);
            }
            self.out.insert(name.clone(), schema);
        }
        json!({ "$ref": format!("#/components/schemas/{name}") })
    }

    /// `message`'s schema inline, less the top-level fields `left_out`.
    fn without(&mut self, message: &MessageDescriptor, left_out: &HashSet<String>) -> Json {
        self.message_ref(message);
        let mut schema = self.out[message.full_name()].clone();
        if let Some(properties) = schema["properties"].as_object_mut() {
            for field in message.fields() {
                if left_out.contains(field.name()) {
                    properties.remove(field.json_name());
                }
            }
        }
        schema
    }

    fn field(&mut self, field: &FieldDescriptor) -> Json {
        if field.is_map() {
            let Kind::Message(entry) = field.kind() else {
                return json!({ "type": "object" });
            };
            let value = entry.map_entry_value_field();
            return json!({ "type": "object", "additionalProperties": self.single(&value) });
        }
        let single = self.single(field);
        if field.is_list() {
            json!({ "type": "array", "items": single })
        } else {
            single
        }
    }

    fn single(&mut self, field: &FieldDescriptor) -> Json {
        match field.kind() {
            Kind::Message(message) => self.message_ref(&message),
            _ => self.scalar(field),
        }
    }

    fn scalar(&mut self, field: &FieldDescriptor) -> Json {
        match field.kind() {
            Kind::Double | Kind::Float => json!({ "type": "number" }),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                json!({ "type": "integer", "format": "int32" })
            }
            Kind::Uint32 | Kind::Fixed32 => {
                json!({ "type": "integer", "minimum": 0, "maximum": u32::MAX })
            }
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => int64(),
            Kind::Uint64 | Kind::Fixed64 => uint64(),
            Kind::Bool => json!({ "type": "boolean" }),
            Kind::String => json!({ "type": "string" }),
            Kind::Bytes => json!({ "type": "string", "format": "byte" }),
            Kind::Enum(enumeration) => json!({
                "type": "string",
                "enum": enumeration.values().map(|v| v.name().to_string()).collect::<Vec<_>>(),
            }),
            Kind::Message(message) => self.message_ref(&message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_covers_every_route_and_resolves_every_reference() {
        let pool = crate::http::contract_pool().expect("the contract decodes");
        let router = Router::from_contract(&pool, crate::http::is_public).expect("annotations");
        let document = document(&pool, &router);
        let paths = document["paths"].as_object().expect("paths");
        for route in router.routes() {
            let method = route.http_method.as_str().to_lowercase();
            assert!(
                paths[&route.template].get(&method).is_some(),
                "{} {} is not documented",
                route.http_method,
                route.template
            );
        }
        let schemas = document["components"]["schemas"]
            .as_object()
            .expect("schemas");
        let text = document.to_string();
        for reference in text.split("\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap_or_default();
            assert!(
                schemas.contains_key(name),
                "{name} is referenced but not defined"
            );
        }
        assert!(schemas.contains_key("google.rpc.BadRequest"));
    }
}
