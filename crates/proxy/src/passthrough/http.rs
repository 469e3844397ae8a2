//! HTTP/1.1 and HTTP/2: the client connection is served by hyper and each request is sent on
//! one upstream connection of the same protocol, so that requests (not only connections) are
//! counted and timed, and in-flight requests are known. A request the user port fails is
//! answered 502, except an HTTP/2 stream it resets, which is reset towards the client with the
//! same reason.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1 as client1, http2 as client2};
use hyper::server::conn::{http1 as server1, http2 as server2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use super::detect::Protocol;
use crate::metrics::Metrics;

/// Why an HTTP connection ended early.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The upstream handshake failed.
    #[error("handshake with the user port failed: {0}")]
    Handshake(hyper::Error),
    /// Serving the client failed.
    #[error("serving the client connection failed: {0}")]
    Serve(hyper::Error),
}

/// The body sent back to the client: the upstream's as it came (no boxing per response), or
/// the proxy's own 502 text.
type ProxyBody = Either<Incoming, Full<Bytes>>;

/// Drives an upstream connection's I/O; run in the client connection's own task (see [`proxy`]).
type UpstreamDriver = Pin<Box<dyn Future<Output = Result<(), hyper::Error>> + Send>>;

/// Sends requests on the upstream connection.
#[derive(Clone)]
enum Upstream {
    Http1(Arc<Mutex<client1::SendRequest<Incoming>>>),
    Http2(client2::SendRequest<Incoming>),
}

impl Upstream {
    async fn connect(protocol: Protocol, stream: TcpStream) -> Result<(Self, UpstreamDriver), HttpError> {
        let io = TokioIo::new(stream);
        if protocol == Protocol::Http2 {
            let (sender, connection) =
                client2::handshake(TokioExecutor::new(), io).await.map_err(HttpError::Handshake)?;
            Ok((Upstream::Http2(sender), Box::pin(connection)))
        } else {
            let (sender, connection) = client1::handshake(io).await.map_err(HttpError::Handshake)?;
            Ok((Upstream::Http1(Arc::new(Mutex::new(sender))), Box::pin(connection)))
        }
    }

    async fn send(&self, request: Request<Incoming>) -> Result<Response<Incoming>, hyper::Error> {
        match self {
            Upstream::Http1(sender) => {
                let mut sender = sender.lock().await;
                sender.ready().await?;
                sender.send_request(request).await
            }
            Upstream::Http2(sender) => {
                let mut sender = sender.clone();
                sender.ready().await?;
                sender.send_request(request).await
            }
        }
    }
}

/// The reason of the HTTP/2 stream reset the peer sent, if that is what `error` is.
fn stream_reset(error: &hyper::Error) -> Option<h2::Reason> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(h2) = current.downcast_ref::<h2::Error>() {
            return h2.is_reset().then(|| h2.reason()).flatten().filter(|_| h2.is_remote());
        }
        source = current.source();
    }
    None
}

fn bad_gateway(error: &hyper::Error) -> Response<ProxyBody> {
    let body = Full::new(Bytes::from(format!("the user port failed: {error}\n")));
    let mut response = Response::new(Either::Right(body));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}

/// Serves one client connection of `protocol` (HTTP/1 or HTTP/2) against `upstream`.
///
/// The upstream connection is driven in this same task rather than spawned: a request then
/// crosses from the client side to the upstream side and back without waking another task
/// (possibly on another runtime thread), which is most of a loopback hop's cost.
pub async fn proxy(
    protocol: Protocol,
    client: TcpStream,
    upstream: TcpStream,
    metrics: Arc<Metrics>,
) -> Result<(), HttpError> {
    let (upstream, driver) = Upstream::connect(protocol, upstream).await?;
    let label = protocol.label();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let upstream = upstream.clone();
        let timer = metrics.request(label);
        async move {
            match upstream.send(request).await {
                Ok(response) => {
                    timer.finish(Some(response.status().as_u16()));
                    Ok(response.map(Either::Left))
                }
                Err(error) => {
                    timer.finish(None);
                    // An HTTP/2 stream the user port reset goes back to the client as the same
                    // reset (hyper resets the client's stream with the reason it finds in the
                    // error): gRPC clients read REFUSED_STREAM as "safe to retry", which a 502
                    // would hide. Anything else is a 502.
                    if protocol == Protocol::Http2 && stream_reset(&error).is_some() {
                        Err(error)
                    } else {
                        Ok(bad_gateway(&error))
                    }
                }
            }
        }
    });
    let io = TokioIo::new(client);
    let serve = async move {
        if protocol == Protocol::Http2 {
            server2::Builder::new(TokioExecutor::new())
                .serve_connection(io, service)
                .await
                .map_err(HttpError::Serve)
        } else {
            server1::Builder::new()
                .keep_alive(true)
                .serve_connection(io, service)
                .await
                .map_err(HttpError::Serve)
        }
    };
    // The upstream ends when its last sender (held by the service) is dropped; until the client
    // connection is done, an upstream that ended early leaves requests answered with 502.
    let drive = async move {
        if let Err(error) = driver.await {
            tracing::debug!(%error, "the upstream connection ended");
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        served = serve => served,
        () = drive => Ok(()),
    }
}
