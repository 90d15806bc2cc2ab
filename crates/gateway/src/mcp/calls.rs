//! A tool call is the gRPC call it stands for, made in this process through
//! the gateway's own stack with the caller's credentials: the MCP side has
//! no rules of its own, and whatever a gRPC or HTTP/JSON caller meets
//! (authentication, scope, limits, budgets, org policy) an MCP caller meets
//! too.

use std::convert::Infallible;

use bytes::Bytes;
use http::HeaderMap;
use prost::Message;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, SerializeOptions};
use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::Value as Json;
use tonic::Status;
use tonic::body::Body;
use tower::util::BoxCloneSyncService;

use crate::http::json::status_json;

/// The gateway's gRPC side, boxed so that the tool handlers need not name
/// its layers.
pub type Grpc = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Infallible>;

#[derive(Clone)]
pub struct Calls {
    grpc: Grpc,
    pool: DescriptorPool,
}

impl Calls {
    pub fn new(grpc: Grpc, pool: DescriptorPool) -> Self {
        Self { grpc, pool }
    }

    /// Calls the unary method `grpc_path` (`/package.Service/Method`) with
    /// `arguments` as its request in proto3 JSON, as the caller whose
    /// credentials are among `headers`. The answer is in proto3 JSON with
    /// the proto's own field names, as the tools' input schemas spell them.
    pub async fn call(
        &self,
        grpc_path: &str,
        headers: &HeaderMap,
        arguments: Json,
    ) -> Result<Json, Status> {
        let method = grpc_path
            .trim_start_matches('/')
            .split_once('/')
            .and_then(|(service, method)| {
                self.pool
                    .get_service_by_name(service)?
                    .methods()
                    .find(|m| m.name() == method)
            })
            .ok_or_else(|| Status::internal(format!("{grpc_path} is not in the contract")))?;
        let request = DynamicMessage::deserialize_with_options(
            method.input(),
            arguments,
            &DeserializeOptions::new(),
        )
        .map_err(|e| {
            Status::invalid_argument(format!(
                "the arguments are not a valid {}: {e}; see the tool's input schema",
                method.input().name()
            ))
        })?;
        let answer = crate::http::call_unary(
            self.grpc.clone(),
            grpc_path,
            headers,
            Bytes::from(request.encode_to_vec()),
        )
        .await?;
        let output = method.output();
        DynamicMessage::decode(output.clone(), answer)
            .map_err(|e| Status::internal(format!("cannot decode {}: {e}", output.full_name())))?
            .serialize_with_options(
                serde_json::value::Serializer,
                &SerializeOptions::new().use_proto_field_name(true),
            )
            .map_err(|e| Status::internal(format!("cannot render {}: {e}", output.full_name())))
    }

    /// A refused call as an MCP tool error: the text a model reads first
    /// ("PERMISSION_DENIED: …"), and `google.rpc.Status` as structured
    /// content, with its code name and details (the `ErrorInfo` reason, the
    /// `BadRequest` field, `RetryInfo`), so a program can act on it.
    pub fn refusal(&self, status: &Status) -> CallToolResult {
        let code = agentshare_kit::error::code_name(status.code());
        let mut structured = status_json(&self.pool, status);
        if let Json::Object(fields) = &mut structured {
            fields.insert("status".into(), Json::String(code.into()));
        }
        let mut result = CallToolResult::structured_error(structured);
        result.content = vec![ContentBlock::text(said(status))];
        result
    }
}

/// A refusal in words, code first ("NOT_FOUND: …"): a tool error's text,
/// and a protocol error's whole message, which carries no details.
pub fn said(status: &Status) -> String {
    format!(
        "{}: {}",
        agentshare_kit::error::code_name(status.code()),
        status.message()
    )
}
