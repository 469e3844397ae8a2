//! The client-facing server on the proxy port, HTTP/1.1 and HTTP/2 without TLS: gRPC requests
//! (`application/grpc*`) for the discovered services go through a pass-through bytes codec to
//! the [`Dispatcher`] (streamed methods, actions only, to its streamed-action calls); gRPC server
//! reflection is answered from the descriptors; gRPC-Web (`application/grpc-web*`, and CORS
//! preflights) is translated to gRPC around the same path (`grpc_web`); every other request is
//! HTTP/JSON, transcoded through the `google.api.http` rules ([`Transcoder`]).

pub mod codec;
mod grpc_web;
pub mod http_rules;
pub mod http_status;
mod json_stream;
pub mod reflection;
pub mod transcode;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt as _;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tonic::body::Body;
use tonic::metadata::KeyAndValueRef;
use tonic::server::Grpc;
use tonic::{Status, Streaming};

use codec::BytesCodec;
use reflection::Reflection;
use transcode::Transcoder;

use crate::config::{AllowedOrigins, ConnectionConfig};
use crate::connections::{self, Acceptor, Timed};
use crate::entities::{Call, Dispatcher};
use crate::lifecycle::Lifecycle;
use crate::protocol::cloudstate::{Metadata, MetadataEntry, metadata_entry};
use crate::protocol::grpc::reflection::{v1, v1alpha};

/// Headers that belong to the transport, not to the application.
fn is_transport_header(key: &str) -> bool {
    key.starts_with("grpc-") || matches!(key, "content-type" | "te" | "user-agent" | "accept-encoding")
}

/// The request's application headers as CloudState metadata.
fn metadata(map: &tonic::metadata::MetadataMap) -> Option<Metadata> {
    let entries: Vec<MetadataEntry> = map
        .iter()
        .filter_map(|entry| match entry {
            KeyAndValueRef::Ascii(key, value) if !is_transport_header(key.as_str()) => Some(MetadataEntry {
                key: key.as_str().to_string(),
                value: Some(metadata_entry::Value::StringValue(value.to_str().ok()?.to_string())),
            }),
            KeyAndValueRef::Binary(key, value) => Some(MetadataEntry {
                key: key.as_str().to_string(),
                value: Some(metadata_entry::Value::BytesValue(value.to_bytes().ok()?.to_vec())),
            }),
            KeyAndValueRef::Ascii(..) => None,
        })
        .collect();
    (!entries.is_empty()).then_some(Metadata { entries })
}

/// Everything the client-facing server answers with.
#[derive(Debug)]
pub(crate) struct Frontend {
    /// User service calls.
    pub dispatcher: Arc<Dispatcher>,
    /// HTTP/JSON rules.
    pub http: Transcoder,
    /// Server reflection.
    pub reflection: Arc<Reflection>,
    /// Origins allowed to call gRPC-Web across origins.
    pub cors: AllowedOrigins,
}

fn is_grpc(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// Serves one request.
async fn handle(frontend: Arc<Frontend>, request: Request<Incoming>) -> Response<Body> {
    // A gRPC-Web preflight; other preflights (for HTTP/JSON routes) go to the transcoder.
    if grpc_web::is_preflight(&request)
        && (grpc_web::asks_for_grpc_web(&request) || is_grpc_path(&frontend, request.uri().path()))
    {
        return grpc_web::preflight(&request, &frontend.cors);
    }
    if let Some(encoding) = grpc_web::encoding(request.headers()) {
        let headers = request.headers().clone();
        let response = handle_grpc(frontend.clone(), grpc_web::to_grpc(request, encoding)).await;
        return grpc_web::from_grpc(response, encoding, &headers, &frontend.cors);
    }
    if !is_grpc(&request) {
        return frontend.http.handle(frontend.dispatcher.clone(), request).await;
    }
    handle_grpc(frontend, request).await
}

/// Whether `path` names a gRPC method served here (a user service's, or server reflection).
fn is_grpc_path(frontend: &Frontend, path: &str) -> bool {
    let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
        return false;
    };
    service.starts_with("grpc.reflection.") || frontend.dispatcher.resolve(service, method).is_ok()
}

/// Serves one gRPC request: server reflection or a user service's method.
async fn handle_grpc<B>(frontend: Arc<Frontend>, request: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    use tower::ServiceExt as _;
    let path = request.uri().path();
    if path.starts_with("/grpc.reflection.v1.ServerReflection/") {
        let server =
            v1::server_reflection_server::ServerReflectionServer::from_arc(frontend.reflection.clone());
        return server.oneshot(request).await.unwrap_or_else(|never| match never {});
    }
    if path.starts_with("/grpc.reflection.v1alpha.ServerReflection/") {
        let server =
            v1alpha::server_reflection_server::ServerReflectionServer::from_arc(frontend.reflection.clone());
        return server.oneshot(request).await.unwrap_or_else(|never| match never {});
    }
    grpc(frontend.dispatcher.clone(), request).await
}

/// Serves one gRPC call of a user service.
async fn grpc<B>(dispatcher: Arc<Dispatcher>, request: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    let path = request.uri().path().to_string();
    let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
        return Status::unimplemented(format!("path {path:?} is not a gRPC method")).into_http();
    };
    let (service, method) = (service.to_string(), method.to_string());
    let resolved = match dispatcher.resolve(&service, &method) {
        Ok((_, resolved)) => resolved,
        Err(status) => return status.into_http(),
    };
    match (resolved.client_streaming, resolved.server_streaming) {
        (false, false) => {}
        (true, false) => {
            let handler = tower::service_fn(move |request: tonic::Request<Streaming<Bytes>>| {
                let (dispatcher, service, method) = (dispatcher.clone(), service.clone(), method.clone());
                let metadata = metadata(request.metadata());
                let requests = request.into_inner().boxed();
                async move {
                    dispatcher
                        .streamed_in(&service, &method, metadata, requests)
                        .await
                        .map(tonic::Response::new)
                }
            });
            return Grpc::new(BytesCodec).client_streaming(handler, request).await;
        }
        (false, true) => {
            let handler = tower::service_fn(move |request: tonic::Request<Bytes>| {
                let (dispatcher, service, method) = (dispatcher.clone(), service.clone(), method.clone());
                let metadata = metadata(request.metadata());
                let payload = request.into_inner();
                async move {
                    dispatcher
                        .streamed_out(&service, &method, metadata, payload)
                        .await
                        .map(tonic::Response::new)
                }
            });
            return Grpc::new(BytesCodec).server_streaming(handler, request).await;
        }
        (true, true) => {
            let handler = tower::service_fn(move |request: tonic::Request<Streaming<Bytes>>| {
                let (dispatcher, service, method) = (dispatcher.clone(), service.clone(), method.clone());
                let metadata = metadata(request.metadata());
                let requests = request.into_inner().boxed();
                async move {
                    dispatcher.streamed(&service, &method, metadata, requests).await.map(tonic::Response::new)
                }
            });
            return Grpc::new(BytesCodec).streaming(handler, request).await;
        }
    }
    let handler = tower::service_fn(move |request: tonic::Request<Bytes>| {
        let dispatcher = dispatcher.clone();
        let call = Call {
            service: service.clone(),
            method: method.clone(),
            metadata: metadata(request.metadata()),
            payload: request.into_inner(),
        };
        async move { dispatcher.unary(call, 0).await.map(tonic::Response::new) }
    });
    Grpc::new(BytesCodec).unary(handler, request).await
}

/// Accepts client connections until the lifecycle stops: at most the acceptor's limit at once,
/// each closed when it sends no request within the header timeout or stays silent for the idle
/// timeout.
pub(crate) async fn serve(
    mut acceptor: Acceptor,
    frontend: Arc<Frontend>,
    config: &ConnectionConfig,
    mut lifecycle: Lifecycle,
) {
    let (header_timeout, idle) = (config.header_read_timeout, config.idle_timeout);
    loop {
        let (stream, permit) = tokio::select! {
            accepted = acceptor.accept() => accepted,
            () = lifecycle.stopped() => return,
        };
        let _ = stream.set_nodelay(true);
        let frontend = frontend.clone();
        let mut connection_lifecycle = lifecycle.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |request| {
                let frontend = frontend.clone();
                async move { Ok::<_, Infallible>(handle(frontend, request).await) }
            });
            let builder = connections::http_builder(header_timeout);
            let io = TokioIo::new(Timed::http(stream, header_timeout, idle));
            let connection = builder.serve_connection(io, service);
            tokio::select! {
                result = connection => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "client connection ended with an error");
                    }
                }
                () = connection_lifecycle.stopped() => {}
            }
        });
    }
}
