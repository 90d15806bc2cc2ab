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

/// Writes a service's unary gRPC methods, one line each, inside its
/// `#[tonic::async_trait]` impl: each calls the inherent handler of the same
/// name, `async fn method(&self, caller: Principal, request: Req) ->
/// kit::Result<Res>`, through [`unary`]. A reader finds every rule of a
/// call in its handler; this is the only place a handler meets tonic.
#[macro_export]
macro_rules! handlers {
    ($($method:ident($request:ty) -> $response:ty;)*) => {$(
        $crate::grpc_method!(caller, $method, $request, $response);
    )*};
}

/// As [`handlers!`], for calls between services that carry no user caller
/// (the identity layer admits only the services listed for them): each
/// handler is `async fn method(&self, request: Req) -> kit::Result<Res>`.
#[macro_export]
macro_rules! internal_handlers {
    ($($method:ident($request:ty) -> $response:ty;)*) => {$(
        $crate::grpc_method!(internal, $method, $request, $response);
    )*};
}

/// One method of a generated tonic service trait, in the shape
/// `#[tonic::async_trait]` gives trait methods, answered by the inherent
/// handler of the same name (with the verified caller, or without one).
#[doc(hidden)]
#[macro_export]
macro_rules! grpc_method {
    ($kind:ident, $method:ident, $request:ty, $response:ty) => {
        fn $method<'life0, 'async_trait>(
            &'life0 self,
            request: ::tonic::Request<$request>,
        ) -> ::std::pin::Pin<
            Box<
                dyn ::std::future::Future<
                        Output = ::std::result::Result<
                            ::tonic::Response<$response>,
                            ::tonic::Status,
                        >,
                    > + Send
                    + 'async_trait,
            >,
        >
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async move { $crate::grpc_answer!($kind, self, $method, request) })
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! grpc_answer {
    (caller, $this:ident, $method:ident, $request:ident) => {
        $crate::rpc::unary($request, async |caller, request| {
            Self::$method($this, caller, request).await
        })
        .await
    };
    (internal, $this:ident, $method:ident, $request:ident) => {
        $crate::rpc::answer(Self::$method($this, $request.into_inner()).await)
    };
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
