//! The client-facing gRPC server: HTTP/2 without TLS (h2c) on the proxy port, a pass-through
//! bytes codec, every method of every discovered service routed through the [`Dispatcher`].

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tonic::Status;
use tonic::body::Body;
use tonic::metadata::KeyAndValueRef;
use tonic::server::Grpc;

use super::dispatch::{Call, Dispatcher};
use super::lifecycle::Lifecycle;
use crate::codec::BytesCodec;
use crate::protocol::cloudstate::{Metadata, MetadataEntry, metadata_entry};

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

/// Serves one HTTP/2 request.
async fn handle(dispatcher: Arc<Dispatcher>, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_string();
    let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
        return Status::unimplemented(format!("path {path:?} is not a gRPC method")).into_http();
    };
    let (service, method) = (service.to_string(), method.to_string());
    let resolved = match dispatcher.resolve(&service, &method) {
        Ok((_, resolved)) => resolved,
        Err(status) => return status.into_http(),
    };
    if resolved.client_streaming || resolved.server_streaming {
        return Status::unimplemented(format!("streamed method {service}.{method} is not served yet"))
            .into_http();
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

/// Accepts client connections until the lifecycle stops.
pub async fn serve(listener: TcpListener, dispatcher: Arc<Dispatcher>, mut lifecycle: Lifecycle) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a client connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = lifecycle.stopped() => return,
        };
        let _ = stream.set_nodelay(true);
        let dispatcher = dispatcher.clone();
        let mut connection_lifecycle = lifecycle.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let dispatcher = dispatcher.clone();
                async move { Ok::<_, Infallible>(handle(dispatcher, request).await) }
            });
            let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service);
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
