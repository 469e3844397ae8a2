//! HTTP/1.1: the client connection is served by hyper and each request is sent on one upstream
//! HTTP/1.1 connection, so that requests (not only connections) are counted and timed, and
//! in-flight requests are known. A request the user port fails is answered 502. (HTTP/2 is
//! forwarded frame by frame instead, see `frames.rs`.)

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1 as client;
use hyper::server::conn::http1 as server;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

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

/// Sends requests on the upstream connection, one at a time (HTTP/1.1 has no multiplexing; a
/// pipelining client's requests wait their turn here, as they would at the user port).
type Upstream = Arc<Mutex<client::SendRequest<Incoming>>>;

async fn send(upstream: &Upstream, request: Request<Incoming>) -> Result<Response<Incoming>, hyper::Error> {
    let mut sender = upstream.lock().await;
    sender.ready().await?;
    sender.send_request(request).await
}

fn bad_gateway(error: &hyper::Error) -> Response<ProxyBody> {
    let body = Full::new(Bytes::from(format!("the user port failed: {error}\n")));
    let mut response = Response::new(Either::Right(body));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}

/// Serves one HTTP/1 client connection against `upstream`.
///
/// The upstream connection is driven in this same task rather than spawned: a request then
/// crosses from the client side to the upstream side and back without waking another task
/// (possibly on another runtime thread), which is most of a loopback hop's cost.
///
/// `header_timeout` bounds each request's headers, and the wait for the next request on a
/// kept-alive connection.
pub async fn proxy(
    client: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    upstream: TcpStream,
    metrics: Arc<Metrics>,
    header_timeout: Duration,
) -> Result<(), HttpError> {
    // The upstream connection's I/O, driven in this task (below).
    let (sender, driver) = client::handshake(TokioIo::new(upstream)).await.map_err(HttpError::Handshake)?;
    let upstream: Upstream = Arc::new(Mutex::new(sender));
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let upstream = upstream.clone();
        let timer = metrics.request("http1");
        async move {
            match send(&upstream, request).await {
                Ok(response) => {
                    timer.finish(Some(response.status().as_u16()));
                    Ok::<_, hyper::Error>(response.map(Either::Left))
                }
                Err(error) => {
                    timer.finish(None);
                    Ok(bad_gateway(&error))
                }
            }
        }
    });
    let serve = server::Builder::new()
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(client), service);
    // The upstream ends when its last sender (held by the service) is dropped; until the client
    // connection is done, an upstream that ended early leaves requests answered with 502.
    let drive = async move {
        if let Err(error) = driver.await {
            tracing::debug!(%error, "the upstream connection ended");
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        served = serve => served.map_err(HttpError::Serve),
        () = drive => Ok(()),
    }
}
