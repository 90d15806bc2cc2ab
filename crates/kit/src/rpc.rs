//! The one shape of a handler: it takes the caller the identity layer
//! verified and the decoded request, returns a [`crate::Result`], and this
//! module maps the outcome to gRPC once, for every service.

use tonic::{Request, Response, Status};

use crate::identity::Principal;

/// Runs a unary handler for the caller of `request`. A call that reached a
/// public method without a verified caller answers UNAUTHENTICATED before
/// the handler runs.
pub async fn unary<Req, Res>(
    request: Request<Req>,
    handler: impl AsyncFnOnce(Principal, Req) -> crate::Result<Res>,
) -> Result<Response<Res>, Status> {
    let (_, mut extensions, message) = request.into_parts();
    let caller = extensions
        .remove::<Principal>()
        .ok_or_else(Principal::missing)?;
    answer(handler(caller, message).await)
}

/// The answer of a handler that needs no caller (a service's internal call)
/// or reads the request itself.
pub fn answer<Res>(outcome: crate::Result<Res>) -> Result<Response<Res>, Status> {
    outcome.map(Response::new).map_err(Status::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[tokio::test]
    async fn the_handler_gets_the_verified_caller_and_its_error_becomes_the_status() {
        let mut request = Request::new(7_u32);
        request.extensions_mut().insert(Principal::user("u-1"));
        let answered = unary(request, async |caller, n| {
            assert_eq!(caller.user_id.as_deref(), Some("u-1"));
            Ok(n + 1)
        })
        .await
        .expect("answered");
        assert_eq!(answered.into_inner(), 8);

        let mut request = Request::new(());
        request.extensions_mut().insert(Principal::user("u-1"));
        let refused = unary(request, async |_, ()| -> crate::Result<()> {
            Err(crate::Error::not_found("agent a-1"))
        })
        .await
        .expect_err("refused");
        assert_eq!(refused.code(), Code::NotFound);
    }

    #[tokio::test]
    async fn a_call_without_a_caller_never_reaches_the_handler() {
        let refused = unary(Request::new(()), async |_, ()| -> crate::Result<()> {
            unreachable!("the handler ran without a caller")
        })
        .await
        .expect_err("refused");
        assert_eq!(refused.code(), Code::Unauthenticated);
    }
}
