//! Services that share a process call each other without a socket.
//!
//! `agentshare serve` runs every service in one process. A call from one to
//! another still goes through the whole server stack of the service it
//! calls (its identity layer, the caller policy, metrics, its handlers, the
//! message limits), exactly as on Kubernetes; only the loopback TCP hop and
//! the HTTP/2 framing are skipped. The profile showed that hop to be most of
//! a call's cost on this machine (the kernel's loopback path and the thread
//! switches behind it).
//!
//! A server registers its stack here when it starts and withdraws it when
//! it stops accepting calls, so a stopped service answers UNAVAILABLE just
//! as its closed port would.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tonic::body::Body;
use tower::ServiceExt;

use crate::identity::ServiceName;

/// One server's whole stack, as its listener serves it.
pub type LocalServer =
    tower::util::BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Infallible>;

/// The servers of this process, by service. A process that hosts one
/// service (its own binary) has none of its peers here.
#[derive(Clone, Default)]
pub struct Colocated {
    servers: Arc<RwLock<HashMap<ServiceName, LocalServer>>>,
}

impl std::fmt::Debug for Colocated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<ServiceName> = self
            .servers
            .read()
            .map(|servers| servers.keys().copied().collect())
            .unwrap_or_default();
        f.debug_struct("Colocated")
            .field("servers", &names)
            .finish()
    }
}

impl Colocated {
    /// `service` now answers in this process.
    pub fn register(&self, service: ServiceName, server: LocalServer) {
        if let Ok(mut servers) = self.servers.write() {
            servers.insert(service, server);
        }
    }

    /// `service` no longer answers in this process.
    pub fn withdraw(&self, service: ServiceName) {
        if let Ok(mut servers) = self.servers.write() {
            servers.remove(&service);
        }
    }

    /// The server of `service`, when this process hosts it.
    pub fn server(&self, service: ServiceName) -> Option<LocalServer> {
        self.servers.read().ok()?.get(&service).cloned()
    }
}

/// A call to a colocated server outlived the `grpc-timeout` its caller set.
#[derive(Debug)]
pub struct DeadlineExpired;

impl std::fmt::Display for DeadlineExpired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the call's deadline passed")
    }
}

impl std::error::Error for DeadlineExpired {}

/// Calls a colocated server as a client would over the network: with none
/// of the caller's request extensions (a server trusts only what its own
/// layers put there, such as the verified Principal), and within the
/// caller's `grpc-timeout` until the answer's headers, as tonic's channel
/// does.
pub async fn call(
    server: LocalServer,
    mut request: http::Request<Body>,
) -> Result<http::Response<Body>, DeadlineExpired> {
    *request.extensions_mut() = http::Extensions::new();
    let deadline = request
        .headers()
        .get("grpc-timeout")
        .and_then(|value| value.to_str().ok())
        .and_then(grpc_timeout);
    let answer = server.oneshot(request);
    let response = match deadline {
        Some(deadline) => tokio::time::timeout(deadline, answer)
            .await
            .map_err(|_| DeadlineExpired)?,
        None => answer.await,
    };
    Ok(response.unwrap_or_else(|never| match never {}))
}

/// A `grpc-timeout` header value: at most eight digits and a unit.
fn grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_read_as_the_protocol_writes_them() {
        assert_eq!(grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(grpc_timeout("123456789S"), None, "nine digits");
        assert_eq!(grpc_timeout("S"), None);
        assert_eq!(grpc_timeout("5x"), None);
        assert_eq!(grpc_timeout(""), None);
    }

    #[tokio::test]
    async fn a_server_sees_none_of_the_callers_extensions() {
        let server = LocalServer::new(tower::service_fn(
            |request: http::Request<Body>| async move {
                let seen = request.extensions().get::<&'static str>().copied();
                let mut response = http::Response::new(Body::empty());
                if let Some(seen) = seen {
                    response.extensions_mut().insert(seen);
                }
                Ok::<_, Infallible>(response)
            },
        ));
        let mut request = http::Request::new(Body::empty());
        request.extensions_mut().insert("a verified principal");
        let response = call(server, request).await.unwrap();
        assert_eq!(response.extensions().get::<&'static str>(), None);
    }

    #[tokio::test]
    async fn a_call_past_its_deadline_expires() {
        let (_hold, never) = tokio::sync::oneshot::channel::<()>();
        let never = Arc::new(tokio::sync::Mutex::new(Some(never)));
        let server = LocalServer::new(tower::service_fn(move |_: http::Request<Body>| {
            let never = never.clone();
            async move {
                if let Some(never) = never.lock().await.take() {
                    let _ = never.await;
                }
                Ok::<_, Infallible>(http::Response::new(Body::empty()))
            }
        }));
        let mut request = http::Request::new(Body::empty());
        request
            .headers_mut()
            .insert("grpc-timeout", http::HeaderValue::from_static("20m"));
        assert!(call(server, request).await.is_err());
    }
}
