//! The gate every gRPC call passes before its service: the fedsec services,
//! `grpc.health.v1` and server reflection alike (a tower layer on the
//! server).
//!
//! For a caller with a certificate identity, in order:
//!
//! 1. a **revoked** client identity is refused on every service, and a
//!    **quarantined** one on every service but `Coordinator` (whose handlers
//!    refuse it with its reason and audit it): `PERMISSION_DENIED`. Refused
//!    calls are throttled per identity (`rate_limits.refused_per_minute`);
//!    past that bucket the connection is closed, so a flood costs the caller
//!    a TLS handshake per few calls;
//! 2. health and reflection calls take a token of the identity's `Health`
//!    bucket (`RESOURCE_EXHAUSTED` with `retry-after-ms` over it);
//! 3. the call takes one of the identity's concurrent-call shares of its
//!    class ([`crate::shares`]), held until its response body is dropped —
//!    for a stream, until the stream ends or is reset;
//! 4. with `[auth.tokens]`, the call's bearer token is checked
//!    ([`crate::auth`]) before the service sees any of its messages; a
//!    refusal is counted, audited within the identity's row budget and
//!    throttled like a revoked identity's calls (past the `Refused` bucket
//!    the connection is closed). A call without a certificate identity is
//!    refused too (health and reflection excepted).
//!
//! Calls without an identity go straight to their service, which refuses
//! them (`UNAUTHENTICATED`); health answers them (a client certificate from
//! the platform CA was still required to connect).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use fedsec_proto::tls::PeerIdentity;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::Status;
use tonic::body::Body;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use crate::auth::TokenAuth;
use crate::auth::TokenError;
use crate::auth::scope::CallKind;
use crate::engine::Engine;
use crate::error::{Error, RejectReason};
use crate::listener::{Conn, identity_key};
use crate::ratelimit::RpcClass;
use crate::shares::{StreamClass, StreamShare};
use crate::store::ClientStatus;

/// The layer installing [`Gate`] in front of every service.
#[derive(Debug, Clone)]
pub(crate) struct GateLayer {
    engine: Arc<Engine>,
    tokens: Option<Arc<TokenAuth>>,
}

impl GateLayer {
    /// The gate; `tokens` when `[auth.tokens]` is configured.
    pub(crate) fn new(engine: Arc<Engine>, tokens: Option<Arc<TokenAuth>>) -> Self {
        Self { engine, tokens }
    }
}

impl<S> tower::Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Gate {
            inner,
            engine: self.engine.clone(),
            tokens: self.tokens.clone(),
        }
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct Gate<S> {
    inner: S,
    engine: Arc<Engine>,
    tokens: Option<Arc<TokenAuth>>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> tower::Service<http::Request<Body>> for Gate<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let share = match admit(&self.engine, &req) {
            Ok(share) => share,
            Err(status) => return Box::pin(std::future::ready(Ok(status.into_http()))),
        };
        // The clone is not ready; the instance `poll_ready` readied serves the call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let Some(tokens) = self.tokens.clone() else {
            let fut = inner.call(req);
            return Box::pin(async move { Ok(hold(fut.await?, share)) });
        };
        let engine = self.engine.clone();
        Box::pin(async move {
            let conn = connection_of(&engine, &req);
            let identity = conn.as_ref().and_then(|c| c.identity().cloned());
            let path = req.uri().path();
            let verdict = match &identity {
                Some(id) => {
                    tokens
                        .check(id, path, req.headers().get(http::header::AUTHORIZATION))
                        .await
                }
                None if crate::auth::scope::classify(path) == CallKind::Open => Ok(()),
                None => Err(TokenError::Invalid(
                    "no client certificate identity to bind the token to".into(),
                )),
            };
            if let Err(e) = verdict {
                let status = engine
                    .token_refused(conn.as_deref(), identity.as_ref(), path, e)
                    .await;
                return Ok(status.into_http());
            }
            Ok(hold(inner.call(req).await?, share))
        })
    }
}

/// The response, its body holding the call's share (if any) until dropped.
fn hold(resp: http::Response<Body>, share: Option<StreamShare>) -> http::Response<Body> {
    match share {
        Some(share) => resp.map(|body| {
            Body::new(Holding {
                body,
                _share: share,
            })
        }),
        None => resp,
    }
}

/// A response body holding the call's share until it is dropped.
struct Holding {
    body: Body,
    _share: StreamShare,
}

impl HttpBody for Holding {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        // Never report the end early: `Body::new` would drop the share at once.
        false
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The connection a request arrived on, if it came through the listener.
pub(crate) fn connection_of<B>(engine: &Engine, req: &http::Request<B>) -> Option<Arc<Conn>> {
    let peer = req
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|i| i.get_ref().remote_addr())?;
    engine.connections.get(peer)
}

fn admit<B>(engine: &Arc<Engine>, req: &http::Request<B>) -> Result<Option<StreamShare>, Status> {
    let Some(conn) = connection_of(engine, req) else {
        return Ok(None);
    };
    let Some(identity) = conn.identity().cloned() else {
        return Ok(None);
    };
    let class = StreamClass::of_path(req.uri().path());
    let key = identity_key(&identity);
    let client_id = match &identity {
        PeerIdentity::Client(c) => c.client_id.as_str(),
        PeerIdentity::Admin { .. } => "",
    };
    if let PeerIdentity::Client(c) = &identity {
        let refused = match engine.clients.status_of(c) {
            Some(ClientStatus::Revoked) => Some(RejectReason::Revoked),
            Some(ClientStatus::Quarantined) if class == StreamClass::Other => {
                Some(RejectReason::Quarantined)
            }
            _ => None,
        };
        if let Some(reason) = refused {
            return Err(refuse(engine, &conn, &key, client_id, reason));
        }
    }
    if class == StreamClass::Other {
        engine
            .throttle(RpcClass::Health, &key, client_id)
            .map_err(Status::from)?;
    }
    engine
        .shares
        .stream(&key, class)
        .map(Some)
        .map_err(|e| engine.exhausted(&key, client_id, class.what(), e).into())
}

/// Refuses a call of a revoked or quarantined identity; past the identity's
/// `Refused` bucket the connection is closed as well.
fn refuse(
    engine: &Arc<Engine>,
    conn: &Conn,
    key: &str,
    client_id: &str,
    reason: RejectReason,
) -> Status {
    let what = if reason == RejectReason::Revoked {
        "revoked"
    } else {
        "quarantined"
    };
    let err = Error::rejected(
        reason,
        format!("client identity {client_id:?} is {what}; every call is refused"),
    );
    engine.metrics.rejected(reason);
    if engine.throttle(RpcClass::Refused, key, client_id).is_err() {
        engine.metrics.connection_closed("refused_identity_flood");
        tracing::debug!(peer = %conn.peer(), identity = key, "closing the connection of a {what} identity that keeps calling");
        conn.close();
    }
    err.into()
}
