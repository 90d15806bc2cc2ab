//! The proto3 JSON mapping of requests and answers (prost-reflect), and the
//! request message an HTTP call stands for: its JSON body, then its query
//! parameters, then its path variables, which win.

use agentshare_kit::Error;
use agentshare_kit::error::FieldViolation;
use bytes::Bytes;
use prost::Message;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor,
    SerializeOptions,
};
use serde_json::{Map, Value as Json};
use tonic::{Code, Status};

use super::routes::{BodyRule, Route};

/// Builds the encoded request message of `route` from the parts of an HTTP
/// call. Every problem is INVALID_ARGUMENT naming the part to fix.
pub fn request_message(
    route: &Route,
    variables: &[(&[FieldDescriptor], &str)],
    query: Option<&str>,
    body: &[u8],
) -> Result<Bytes, Error> {
    let input = route.method.input();
    let mut object = match &route.body {
        BodyRule::None => {
            if !body.iter().all(u8::is_ascii_whitespace) {
                return Err(Error::invalid(
                    "body",
                    format!(
                        "{} {} takes no body; send the fields as query parameters",
                        route.http_method, route.template
                    ),
                ));
            }
            Map::new()
        }
        BodyRule::Whole => body_object(body)?,
        BodyRule::Field(field) => {
            let mut object = Map::new();
            if !body.is_empty() {
                object.insert(field.name().to_string(), body_json(body)?);
            }
            object
        }
    };
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        if matches!(route.body, BodyRule::Whole) {
            return Err(Error::invalid(
                "query",
                format!(
                    "{} {} takes every field in its JSON body, not in the query",
                    route.http_method, route.template
                ),
            ));
        }
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let path = query_field_path(&input, &name).ok_or_else(|| {
                Error::invalid(
                    "query",
                    format!(
                        "{} has no field of that name; see /api/v1/openapi.json for its parameters",
                        input.name()
                    ),
                )
            })?;
            let leaf = path
                .last()
                .cloned()
                .ok_or_else(|| Error::invalid("query", "empty name"))?;
            let json = checked(&leaf, scalar_json(&leaf, &value)?, &name)?;
            set_path(&mut object, &path, json, leaf.is_list());
        }
    }
    for (path, raw) in variables {
        if body_sets(&object, path) {
            let name = path
                .iter()
                .map(FieldDescriptor::json_name)
                .collect::<Vec<_>>()
                .join(".");
            return Err(Error::invalid(
                name,
                format!(
                    "is taken from the path of {} {}; leave it out of the body",
                    route.http_method, route.template
                ),
            ));
        }
        let value = percent_encoding_decode(raw)?;
        let leaf = path
            .last()
            .cloned()
            .ok_or_else(|| Error::invalid("path", "empty variable"))?;
        let dotted = path
            .iter()
            .map(FieldDescriptor::name)
            .collect::<Vec<_>>()
            .join(".");
        let json = checked(&leaf, scalar_json(&leaf, &value)?, &dotted)?;
        set_path(&mut object, path, json, false);
    }
    let message = DynamicMessage::deserialize_with_options(
        input.clone(),
        Json::Object(object),
        &DeserializeOptions::new(),
    )
    .map_err(|e| refused_body(input.name(), &e.to_string()))?;
    Ok(Bytes::from(message.encode_to_vec()))
}

/// A body the protobuf decoder refused. Nesting past what the decoder
/// recurses into is named as the nesting limit, as gRPC names it, so the
/// caller learns which limit it met rather than the decoder's words.
fn refused_body(message: &str, cause: &str) -> Error {
    let description = if cause.contains("recursion limit") {
        "nests deeper than the protobuf decoder allows; flatten it (max_nesting_depth)".to_string()
    } else {
        format!("not a valid {message} in proto3 JSON: {cause}")
    };
    Error::InvalidArgument(vec![FieldViolation::new("body", description)])
}

/// How deep a JSON body may nest. The protobuf side has its own, lower
/// limit, which names the field; this one only keeps the JSON parser's
/// recursion bounded with a message that says what to do.
pub const MAX_JSON_DEPTH: usize = 100;

/// The deepest nesting of objects and arrays in `body`, outside strings.
fn json_depth(body: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &byte in body {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

fn body_json(body: &[u8]) -> Result<Json, Error> {
    let depth = json_depth(body);
    if depth > MAX_JSON_DEPTH {
        return Err(Error::invalid(
            "body",
            format!("nests {depth} levels deep; at most {MAX_JSON_DEPTH} are allowed"),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        Error::invalid(
            "body",
            format!("not valid JSON ({e}); send a JSON object with Content-Type: application/json"),
        )
    })
}

fn body_object(body: &[u8]) -> Result<Map<String, Json>, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match body_json(body)? {
        Json::Object(object) => Ok(object),
        _ => Err(Error::invalid("body", "must be a JSON object")),
    }
}

fn percent_encoding_decode(raw: &str) -> Result<String, Error> {
    // A path segment is percent-encoded like a query value, except that `+`
    // stays a plus.
    let escaped = raw.replace('+', "%2B");
    let decoded: String = form_urlencoded::parse(format!("v={escaped}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    if decoded.contains('\u{FFFD}') && !raw.contains('\u{FFFD}') {
        return Err(Error::invalid("path", "a path variable is not valid UTF-8"));
    }
    Ok(decoded)
}

/// Whether the body already sets the field at `path` (by either name).
fn body_sets(object: &Map<String, Json>, path: &[FieldDescriptor]) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let value = object
        .get(first.json_name())
        .or_else(|| object.get(first.name()));
    match (value, rest.is_empty()) {
        (None, _) => false,
        (Some(_), true) => true,
        (Some(Json::Object(nested)), false) => body_sets(nested, rest),
        (Some(_), false) => false,
    }
}

/// `a.b` in a query, by proto or JSON names, through singular messages.
fn query_field_path(message: &MessageDescriptor, dotted: &str) -> Option<Vec<FieldDescriptor>> {
    let mut fields = Vec::new();
    let mut current = message.clone();
    let mut names = dotted.split('.').peekable();
    while let Some(name) = names.next() {
        let field = current
            .get_field_by_name(name)
            .or_else(|| current.get_field_by_json_name(name))?;
        if field.is_map() {
            return None;
        }
        if names.peek().is_some() {
            let Kind::Message(next) = field.kind() else {
                return None;
            };
            if field.is_list() {
                return None;
            }
            current = next;
        }
        fields.push(field);
    }
    Some(fields)
}

/// A path or query value as the JSON the field's mapping expects: numbers
/// stay strings (proto3 JSON accepts quoted numbers), booleans become JSON
/// booleans, and well-known messages (timestamps, durations) take their
/// string form.
fn scalar_json(field: &FieldDescriptor, value: &str) -> Result<Json, Error> {
    let name = field.name().to_string();
    Ok(match field.kind() {
        Kind::Bool => match value {
            "true" => Json::Bool(true),
            "false" => Json::Bool(false),
            _ => return Err(Error::invalid(name, "must be true or false")),
        },
        Kind::Enum(_) => match value.parse::<i64>() {
            Ok(number) => Json::from(number),
            Err(_) => Json::String(value.to_string()),
        },
        Kind::Message(message) if !is_string_shaped(&message) => {
            return Err(Error::invalid(
                name,
                "is a message; send it in a JSON body or by its fields (name.field=value)",
            ));
        }
        _ => Json::String(value.to_string()),
    })
}

/// `json` if it is a valid value of `field`; otherwise INVALID_ARGUMENT
/// naming the parameter it came from (never repeating the value).
fn checked(field: &FieldDescriptor, json: Json, parameter: &str) -> Result<Json, Error> {
    let alone = if field.is_list() {
        Json::Array(vec![json.clone()])
    } else {
        json.clone()
    };
    let mut object = Map::new();
    object.insert(field.name().to_string(), alone);
    DynamicMessage::deserialize_with_options(
        field.parent_message().clone(),
        Json::Object(object),
        &DeserializeOptions::new(),
    )
    .map_err(|_| Error::invalid(parameter, format!("is not a valid {}", kind_name(field))))?;
    Ok(json)
}

/// What a parameter of `field`'s kind looks like, for error messages.
fn kind_name(field: &FieldDescriptor) -> String {
    match field.kind() {
        Kind::Double | Kind::Float => "number".into(),
        Kind::Int32
        | Kind::Sint32
        | Kind::Sfixed32
        | Kind::Int64
        | Kind::Sint64
        | Kind::Sfixed64 => "integer".into(),
        Kind::Uint32 | Kind::Fixed32 | Kind::Uint64 | Kind::Fixed64 => {
            "non-negative integer".into()
        }
        Kind::Bool => "boolean (true or false)".into(),
        Kind::String => "string".into(),
        Kind::Bytes => "base64 string".into(),
        Kind::Enum(enumeration) => format!(
            "{} (one of {})",
            enumeration.name(),
            enumeration
                .values()
                .map(|v| v.name().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Kind::Message(message) => match message.full_name() {
            "google.protobuf.Timestamp" => "RFC 3339 timestamp".into(),
            "google.protobuf.Duration" => "duration such as 1.5s".into(),
            other => other.to_string(),
        },
    }
}

/// Well-known types whose JSON form is one string.
fn is_string_shaped(message: &MessageDescriptor) -> bool {
    matches!(
        message.full_name(),
        "google.protobuf.Timestamp"
            | "google.protobuf.Duration"
            | "google.protobuf.FieldMask"
            | "google.protobuf.StringValue"
            | "google.protobuf.BytesValue"
            | "google.protobuf.Int64Value"
            | "google.protobuf.UInt64Value"
    )
}

/// Sets `path` in `object` (creating nested objects), replacing whatever the
/// body said under the field's proto or JSON name; repeated fields collect.
fn set_path(object: &mut Map<String, Json>, path: &[FieldDescriptor], value: Json, list: bool) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let json_name = first.json_name().to_string();
    let proto_name = first.name().to_string();
    let existing = object
        .remove(&json_name)
        .or_else(|| object.remove(&proto_name));
    if rest.is_empty() {
        let value = if list {
            let mut items = match existing {
                Some(Json::Array(items)) => items,
                _ => Vec::new(),
            };
            items.push(value);
            Json::Array(items)
        } else {
            value
        };
        object.insert(proto_name, value);
        return;
    }
    let mut nested = match existing {
        Some(Json::Object(nested)) => nested,
        _ => Map::new(),
    };
    set_path(&mut nested, rest, value, list);
    object.insert(proto_name, Json::Object(nested));
}

/// One answer message in proto3 JSON: lowerCamelCase names, enums by name,
/// 64-bit integers as strings, default values left out.
pub fn answer_json(output: &MessageDescriptor, encoded: &[u8]) -> Result<Json, Status> {
    let message = DynamicMessage::decode(output.clone(), encoded)
        .map_err(|e| Status::internal(format!("cannot decode {}: {e}", output.full_name())))?;
    message
        .serialize_with_options(serde_json::value::Serializer, &SerializeOptions::new())
        .map_err(|e| Status::internal(format!("cannot render {}: {e}", output.full_name())))
}

/// A gRPC status as JSON `google.rpc.Status`, with its details (`BadRequest`,
/// `PreconditionFailure`, …) rendered by type.
pub fn status_json(pool: &DescriptorPool, status: &Status) -> Json {
    let fallback = || {
        serde_json::json!({
            "code": status.code() as i32,
            "message": status.message(),
        })
    };
    let Some(descriptor) = pool.get_message_by_name("google.rpc.Status") else {
        return fallback();
    };
    let mut message = if status.details().is_empty() {
        DynamicMessage::new(descriptor)
    } else {
        match DynamicMessage::decode(descriptor.clone(), status.details()) {
            Ok(message) => message,
            Err(_) => DynamicMessage::new(descriptor),
        }
    };
    message.set_field_by_name("code", prost_reflect::Value::I32(status.code() as i32));
    message.set_field_by_name(
        "message",
        prost_reflect::Value::String(status.message().to_string()),
    );
    message
        .serialize_with_options(serde_json::value::Serializer, &SerializeOptions::new())
        .unwrap_or_else(|_| fallback())
}

/// The status an HTTP client sees for `code`.
pub fn http_status(code: Code) -> http::StatusCode {
    http::StatusCode::from_u16(agentshare_kit::error::http_status_of(code))
        .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::routes::{Found, Router};

    fn router() -> Router {
        let pool = crate::http::contract_pool().expect("the contract decodes");
        Router::from_contract(&pool, crate::http::is_public).expect("annotations")
    }

    fn build(
        method: &http::Method,
        path: &str,
        query: Option<&str>,
        body: &str,
    ) -> Result<Json, Error> {
        let router = router();
        let Found::Route { route, variables } = router.find(method, path) else {
            panic!("no route for {method} {path}");
        };
        let bytes = request_message(route, &variables, query, body.as_bytes())?;
        Ok(answer_json(&route.method.input(), &bytes).expect("re-encodes"))
    }

    /// ListAgents, which takes all its fields from the query.
    fn list_agents(query: &str) -> Result<Json, Error> {
        build(&http::Method::GET, "/api/v1/agents", Some(query), "")
    }

    #[test]
    fn path_variables_fill_the_message_and_the_body_may_not_repeat_them() {
        let json = build(
            &http::Method::PATCH,
            "/api/v1/agents/from-path/workspaces",
            None,
            r#"{"workspaceIds": ["w1", "w2"]}"#,
        )
        .expect("valid");
        assert_eq!(json["agentId"], "from-path");
        assert_eq!(json["workspaceIds"], serde_json::json!(["w1", "w2"]));
        let repeated = build(
            &http::Method::PATCH,
            "/api/v1/agents/from-path/workspaces",
            None,
            r#"{"agent_id": "from-body"}"#,
        );
        assert!(
            matches!(repeated, Err(Error::InvalidArgument(ref v)) if v[0].field == "agentId"),
            "{repeated:?}"
        );
    }

    #[test]
    fn query_parameters_fill_a_get() {
        let json = list_agents("page_size=7&pageToken=abc").expect("valid");
        assert_eq!(json["pageSize"], 7);
        assert_eq!(json["pageToken"], "abc");
    }

    #[test]
    fn a_malformed_query_value_names_its_parameter() {
        let refused = list_agents("pageSize=abc");
        assert!(
            matches!(refused, Err(Error::InvalidArgument(ref v)) if v[0].field == "pageSize" && v[0].description == "is not a valid integer"),
            "{refused:?}"
        );
    }

    #[test]
    fn bad_input_names_the_part_to_fix() {
        let unknown = list_agents("nope=1");
        assert!(matches!(unknown, Err(Error::InvalidArgument(ref v)) if v[0].field == "query"));
        let not_json = build(&http::Method::POST, "/api/v1/workspaces/switch", None, "{");
        assert!(matches!(not_json, Err(Error::InvalidArgument(ref v)) if v[0].field == "body"));
        let wrong_type = build(
            &http::Method::POST,
            "/api/v1/workspaces/switch",
            None,
            r#"{"workspaceId": 5}"#,
        );
        assert!(matches!(wrong_type, Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn nesting_past_the_decoder_names_the_nesting_limit() {
        let refused = refused_body(
            "CreateAgentRequest",
            "failed to decode: recursion limit reached",
        );
        assert!(
            matches!(refused, Error::InvalidArgument(ref v) if v[0].field == "body" && v[0].description.contains("(max_nesting_depth)")),
            "{refused:?}"
        );
        let other = refused_body("CreateAgentRequest", "unknown field `colour`");
        assert!(
            matches!(other, Error::InvalidArgument(ref v) if v[0].description.contains("not a valid CreateAgentRequest")),
            "{other:?}"
        );
    }

    #[test]
    fn deep_bodies_are_refused_with_the_depth_allowed() {
        assert_eq!(json_depth(br#"{"a": [1, {"b": "}}}[[["}]}"#), 3);
        let deep = format!(
            "{}{}",
            "[".repeat(MAX_JSON_DEPTH + 1),
            "]".repeat(MAX_JSON_DEPTH + 1)
        );
        let refused = body_json(deep.as_bytes());
        assert!(
            matches!(refused, Err(Error::InvalidArgument(ref v)) if v[0].description.contains("at most 100")),
            "{refused:?}"
        );
    }

    #[test]
    fn a_status_renders_with_its_details() {
        let pool = crate::http::contract_pool().expect("the contract decodes");
        let status: Status = Error::invalid("name", "must not be empty").into();
        let json = status_json(&pool, &status);
        assert_eq!(json["code"], 3);
        assert_eq!(
            json["details"][0]["@type"],
            "type.googleapis.com/google.rpc.BadRequest"
        );
        assert_eq!(json["details"][0]["fieldViolations"][0]["field"], "name");
    }
}
