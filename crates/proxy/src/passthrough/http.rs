//! HTTP/1.1 and HTTP/2: the client connection is served by hyper and each request is sent on
//! one upstream connection of the same protocol, so that requests (not only connections) are
//! counted and timed, and in-flight requests are known.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
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

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Sends requests on the upstream connection.
#[derive(Clone)]
enum Upstream {
    Http1(Arc<Mutex<client1::SendRequest<Incoming>>>),
    Http2(client2::SendRequest<Incoming>),
}

impl Upstream {
    async fn connect(protocol: Protocol, stream: TcpStream) -> Result<Self, HttpError> {
        let io = TokioIo::new(stream);
        if protocol == Protocol::Http2 {
            let (sender, connection) =
                client2::handshake(TokioExecutor::new(), io).await.map_err(HttpError::Handshake)?;
            tokio::spawn(connection);
            Ok(Upstream::Http2(sender))
        } else {
            let (sender, connection) = client1::handshake(io).await.map_err(HttpError::Handshake)?;
            tokio::spawn(connection);
            Ok(Upstream::Http1(Arc::new(Mutex::new(sender))))
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

fn bad_gateway(error: &hyper::Error) -> Response<ProxyBody> {
    let body = Full::new(Bytes::from(format!("the user port failed: {error}\n")))
        .map_err(|never: Infallible| match never {})
        .boxed();
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}

/// Serves one client connection of `protocol` (HTTP/1 or HTTP/2) against `upstream`.
pub async fn proxy(
    protocol: Protocol,
    client: TcpStream,
    upstream: TcpStream,
    metrics: Arc<Metrics>,
) -> Result<(), HttpError> {
    let upstream = Upstream::connect(protocol, upstream).await?;
    let label = protocol.label();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let upstream = upstream.clone();
        let timer = metrics.request(label);
        async move {
            match upstream.send(request).await {
                Ok(response) => {
                    timer.finish(Some(response.status().as_u16()));
                    Ok::<_, Infallible>(response.map(BodyExt::boxed))
                }
                Err(error) => {
                    timer.finish(None);
                    Ok(bad_gateway(&error))
                }
            }
        }
    });
    let io = TokioIo::new(client);
    if protocol == Protocol::Http2 {
        server2::Builder::new(TokioExecutor::new())
            .serve_connection(io, service)
            .await
            .map_err(HttpError::Serve)
    } else {
        server1::Builder::new().keep_alive(true).serve_connection(io, service).await.map_err(HttpError::Serve)
    }
}
