//! RPCs of the contract whose behaviour a later issue builds.
//!
//! The generated service traits answer an unbuilt RPC with a bare
//! UNIMPLEMENTED. [`RoadmapLayer`] rewrites that answer to name the feature
//! and the issue that builds it, so a client developer knows what to expect
//! and when. Built RPCs never reach it.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::Status;

/// Where the generated default stub says it has no implementation.
const STUB_MESSAGE: &str = "Not yet implemented";

/// One planned piece: every RPC of `service` (or only `method`, when given).
#[derive(Clone, Copy, Debug)]
pub struct Planned {
    /// Full gRPC service name, e.g. `agentshare.sharing.v1.SharingService`.
    pub service: &'static str,
    /// A single method, or `None` for the whole service.
    pub method: Option<&'static str>,
    /// What the RPC does for the user, in a few words.
    pub feature: &'static str,
    /// The issue that builds it.
    pub issue: u32,
}

impl Planned {
    pub const fn service(service: &'static str, feature: &'static str, issue: u32) -> Self {
        Self {
            service,
            method: None,
            feature,
            issue,
        }
    }

    pub const fn method(
        service: &'static str,
        method: &'static str,
        feature: &'static str,
        issue: u32,
    ) -> Self {
        Self {
            service,
            method: Some(method),
            feature,
            issue,
        }
    }
}

/// The most specific plan for `/service/method`: a method entry wins over
/// its service's.
pub fn plan_for<'a>(roadmap: &'a [Planned], path: &str) -> Option<&'a Planned> {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (service, method) = (parts.next()?, parts.next()?);
    roadmap
        .iter()
        .find(|p| p.service == service && p.method == Some(method))
        .or_else(|| {
            roadmap
                .iter()
                .find(|p| p.service == service && p.method.is_none())
        })
}

pub fn message(path: &str, plan: &Planned) -> String {
    format!(
        "{} is not built yet: {} arrives with issue #{}",
        path.trim_start_matches('/'),
        plan.feature,
        plan.issue
    )
}

#[derive(Clone)]
pub struct RoadmapLayer {
    roadmap: Arc<[Planned]>,
}

impl RoadmapLayer {
    pub fn new(roadmap: &[Planned]) -> Self {
        Self {
            roadmap: roadmap.into(),
        }
    }
}

impl<S> tower::Layer<S> for RoadmapLayer {
    type Service = RoadmapService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RoadmapService {
            inner,
            roadmap: self.roadmap.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RoadmapService<S> {
    inner: S,
    roadmap: Arc<[Planned]>,
}

impl<S, B> tower::Service<http::Request<B>> for RoadmapService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_string();
        let plan = plan_for(&self.roadmap, &path).copied();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            let Some(plan) = plan else {
                return Ok(response);
            };
            // The stub answers trailers-only: its status is in the headers.
            let is_stub = Status::from_header_map(response.headers()).is_some_and(|s| {
                s.code() == tonic::Code::Unimplemented && s.message() == STUB_MESSAGE
            });
            if !is_stub {
                return Ok(response);
            }
            Ok(Status::unimplemented(message(&path, &plan)).into_http())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROADMAP: &[Planned] = &[
        Planned::service("pkg.AutomationsService", "automations", 11),
        Planned::method("pkg.AutomationsService", "ListRuns", "run history", 12),
    ];

    #[test]
    fn a_method_entry_wins_over_its_service() {
        assert_eq!(
            plan_for(ROADMAP, "/pkg.AutomationsService/ListRuns").map(|p| p.issue),
            Some(12)
        );
        assert_eq!(
            plan_for(ROADMAP, "/pkg.AutomationsService/Subscribe").map(|p| p.issue),
            Some(11)
        );
        assert!(plan_for(ROADMAP, "/pkg.Other/Subscribe").is_none());
        let plan = plan_for(ROADMAP, "/pkg.AutomationsService/ListRuns").expect("plan");
        assert_eq!(
            message("/pkg.AutomationsService/ListRuns", plan),
            "pkg.AutomationsService/ListRuns is not built yet: run history arrives with issue #12"
        );
    }
}
