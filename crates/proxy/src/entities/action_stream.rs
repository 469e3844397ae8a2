//! Streamed actions: a user service method declared with `stream` maps to one of
//! `ActionProtocol`'s streamed calls by its shape (client streaming → `handleStreamedIn`, server
//! streaming → `handleStreamedOut`, both → `handleStreamed`).
//!
//! Commands streamed in are sent as the protocol says: a first `ActionCommand` naming the
//! service and command (with the call's metadata) and no payload, then payload-only commands.
//! Each `ActionResponse` streamed out is handled as a unary action's answer (synchronous side
//! effects awaited, reply or forward sent on, the other side effects in the background) except
//! that an empty response sends the client nothing. A `failure` ends the client's call with
//! `UNKNOWN`. Cancellation travels both ways by dropping: the client's call ending drops the
//! future or stream that holds the user function's call, and the user function's error ends the
//! client's stream with its status.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt};
use prost::Message as _;
use prost_types::Any;
use tokio::sync::oneshot;
use tonic::client::Grpc;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Status, Streaming};
use tonic_prost::{ProstCodec, ProstDecoder};

use super::command::Outcome;
use super::dispatch::Dispatcher;
use crate::catalog::{EntityKind, Method, Service};
use crate::discovery::MAX_MESSAGE_BYTES;
use crate::metrics::CommandTimer;
use crate::protocol::cloudstate::action::action_protocol_client::ActionProtocolClient;
use crate::protocol::cloudstate::action::{ActionCommand, ActionResponse, action_response};
use crate::protocol::cloudstate::{Metadata, Reply, client_action};

/// The replies streamed to the client.
pub type ReplyStream = BoxStream<'static, Result<Bytes, Status>>;

/// The messages a client streams in (the server's decoded request stream).
pub type RequestStream = BoxStream<'static, Result<Bytes, Status>>;

impl Dispatcher {
    fn action_client(&self) -> ActionProtocolClient<Channel> {
        ActionProtocolClient::new(self.host.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// Calls a client-streamed `ActionProtocol` method with [`CommandCodec`].
    async fn grpc(&self) -> Result<Grpc<Channel>, Status> {
        let mut grpc = Grpc::new(self.host.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(format!("the user function is not reachable: {e}")))?;
        Ok(grpc)
    }

    /// Resolves a streamed method; only actions stream (the catalog refuses the others).
    fn resolve_action(&self, service: &str, method: &str) -> Result<(Arc<Service>, Method), Status> {
        let (entry, resolved) = self.resolve(service, method)?;
        if entry.kind != EntityKind::Action {
            return Err(Status::unimplemented(format!(
                "streamed method {service}.{method} belongs to a {} entity, only actions stream",
                entry.kind.label()
            )));
        }
        Ok((entry, resolved))
    }

    fn timer(&self, service: &Service, method: &Method) -> CommandTimer {
        self.host.metrics.command(service.kind.label(), &service.name, &method.name)
    }

    /// The client's messages as the protocol's commands: a header, then payload-only commands.
    /// The first error from the client (it failed or cancelled) is sent on `abort` and passed on,
    /// so that the encoder fails and the user function's stream is reset, not half-closed.
    fn commands(
        service: &Service,
        method: &Method,
        metadata: Option<Metadata>,
        requests: RequestStream,
        abort: oneshot::Sender<Status>,
    ) -> impl Stream<Item = Result<ActionCommand, Status>> + Send + 'static {
        let header = ActionCommand {
            service_name: service.name.clone(),
            name: method.name.clone(),
            payload: None,
            metadata,
        };
        let type_url = method.input_type_url();
        let rest = requests.scan(Some(abort), move |abort, request| {
            let command = match request {
                Ok(payload) => Some(Ok(ActionCommand {
                    payload: Some(Any { type_url: type_url.clone(), value: payload.to_vec() }),
                    ..ActionCommand::default()
                })),
                Err(status) => abort.take().map(|abort| {
                    let _ = abort.send(status.clone());
                    Err(status)
                }),
            };
            futures::future::ready(command)
        });
        stream::once(futures::future::ready(Ok(header))).chain(rest)
    }

    /// `handleStreamedIn`: the client streams requests, the user function answers once.
    pub async fn streamed_in(
        self: Arc<Self>,
        service: &str,
        method: &str,
        metadata: Option<Metadata>,
        requests: RequestStream,
    ) -> Result<Bytes, Status> {
        let (service, method) = self.resolve_action(service, method)?;
        let timer = self.timer(&service, &method);
        let (abort, mut aborted) = oneshot::channel();
        let commands = Self::commands(&service, &method, metadata, requests, abort);
        let mut grpc = self.grpc().await?;
        let call =
            grpc.client_streaming(tonic::Request::new(commands), path("handleStreamedIn"), CommandCodec);
        // The client's failure wins over the reset it causes on the user function's call.
        let response = tokio::select! {
            biased;
            Ok(status) = &mut aborted => return Err(status),
            response = call => match response {
                Ok(response) => response.into_inner(),
                Err(status) => return Err(aborted.try_recv().unwrap_or(status)),
            },
        };
        let result = self.finish(unary_outcome(response), 0).await;
        if result.is_ok() {
            timer.ok();
        }
        result
    }

    /// `handleStreamedOut`: one request, the user function streams replies.
    pub async fn streamed_out(
        self: Arc<Self>,
        service: &str,
        method: &str,
        metadata: Option<Metadata>,
        payload: Bytes,
    ) -> Result<ReplyStream, Status> {
        let (service, method) = self.resolve_action(service, method)?;
        let timer = self.timer(&service, &method);
        let command = ActionCommand {
            service_name: service.name.clone(),
            name: method.name.clone(),
            payload: Some(Any { type_url: method.input_type_url(), value: payload.to_vec() }),
            metadata,
        };
        let responses = self.action_client().handle_streamed_out(command).await?.into_inner();
        Ok(self.replies(responses, None, timer))
    }

    /// `handleStreamed`: both sides stream.
    pub async fn streamed(
        self: Arc<Self>,
        service: &str,
        method: &str,
        metadata: Option<Metadata>,
        requests: RequestStream,
    ) -> Result<ReplyStream, Status> {
        let (service, method) = self.resolve_action(service, method)?;
        let timer = self.timer(&service, &method);
        let (abort, aborted) = oneshot::channel();
        let commands = Self::commands(&service, &method, metadata, requests, abort);
        let mut grpc = self.grpc().await?;
        let responses = grpc
            .streaming(tonic::Request::new(commands), path("handleStreamed"), CommandCodec)
            .await?
            .into_inner();
        Ok(self.replies(responses, Some(aborted), timer))
    }

    /// The client's reply stream from the user function's responses; ends at the first error
    /// (a `failure`, the user function's status, or the client's own stream failing).
    fn replies(
        self: Arc<Self>,
        responses: Streaming<ActionResponse>,
        aborted: Option<oneshot::Receiver<Status>>,
        timer: CommandTimer,
    ) -> ReplyStream {
        struct State {
            dispatcher: Arc<Dispatcher>,
            responses: Streaming<ActionResponse>,
            aborted: Option<oneshot::Receiver<Status>>,
            timer: Option<CommandTimer>,
        }
        let state = State { dispatcher: self, responses, aborted, timer: Some(timer) };
        stream::unfold(Some(state), |state| async move {
            let mut state = state?;
            loop {
                // The client's failure wins over the reset it causes on the user function's call.
                let next = tokio::select! {
                    biased;
                    aborted = client_failed(&mut state.aborted) => match aborted {
                        Some(status) => Err(status),
                        None => continue,
                    },
                    next = state.responses.message() => next.map_err(|status| {
                        match state.aborted.as_mut().map(oneshot::Receiver::try_recv) {
                            Some(Ok(client)) => client,
                            _ => status,
                        }
                    }),
                };
                let response = match next {
                    Ok(Some(response)) => response,
                    Ok(None) => {
                        if let Some(timer) = state.timer.take() {
                            timer.ok();
                        }
                        return None;
                    }
                    Err(status) => return Some((Err(status), None)),
                };
                if response.response.is_none() {
                    // Nothing for the client; side effects still happen.
                    let outcome = Outcome::Done {
                        action: client_action::Action::Reply(Reply::default()),
                        side_effects: response.side_effects,
                    };
                    let _ = state.dispatcher.clone().finish(outcome, 0).await;
                    continue;
                }
                return match state.dispatcher.clone().finish(unary_outcome(response), 0).await {
                    Ok(reply) => Some((Ok(reply), Some(state))),
                    Err(status) => Some((Err(status), None)),
                };
            }
        })
        .boxed()
    }
}

fn path(method: &str) -> http::uri::PathAndQuery {
    http::uri::PathAndQuery::from_maybe_shared(format!("/cloudstate.action.ActionProtocol/{method}"))
        .unwrap_or_else(|_| http::uri::PathAndQuery::from_static("/"))
}

/// `ActionProtocol`'s codec for client-streamed calls: a command stream item may be the
/// client's error, which fails the encoder so that the user function's stream is reset.
struct CommandCodec;

struct CommandEncoder;

impl Codec for CommandCodec {
    type Encode = Result<ActionCommand, Status>;
    type Decode = ActionResponse;
    type Encoder = CommandEncoder;
    type Decoder = ProstDecoder<ActionResponse>;

    fn encoder(&mut self) -> Self::Encoder {
        CommandEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<ActionCommand, ActionResponse>::default().decoder()
    }
}

impl Encoder for CommandEncoder {
    type Item = Result<ActionCommand, Status>;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item?.encode(dst).map_err(|e| Status::internal(format!("encoding an action command failed: {e}")))
    }
}

/// Waits for the client's stream to fail; `None` once it ended without failing (and from
/// then on never again, so the receiver is not polled after it completed).
async fn client_failed(aborted: &mut Option<oneshot::Receiver<Status>>) -> Option<Status> {
    let failed = match aborted.as_mut() {
        Some(receiver) => receiver.await.ok(),
        None => futures::future::pending().await,
    };
    *aborted = None;
    failed
}

/// A response as a unary action's outcome (no response: an empty reply).
fn unary_outcome(response: ActionResponse) -> Outcome {
    let action = match response.response {
        Some(action_response::Response::Failure(f)) => client_action::Action::Failure(f),
        Some(action_response::Response::Reply(r)) => client_action::Action::Reply(r),
        Some(action_response::Response::Forward(f)) => client_action::Action::Forward(f),
        None => client_action::Action::Reply(Reply::default()),
    };
    Outcome::Done { action, side_effects: response.side_effects }
}
