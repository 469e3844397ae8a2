//! The user function's `handle` stream of one entity, kept small: every active entity holds one
//! open, so its per-stream buffers are the proxy's memory per active entity.
//!
//! tonic's generated clients encode and decode with 8 KiB buffers per call (16 KiB per stream,
//! half of what a proxy with a thousand active carts held); entity messages are usually well
//! under a kilobyte, and the buffers grow on demand for larger ones. Outgoing messages wait in
//! futures' unbounded channel (about 100 bytes while empty; a tokio channel keeps ~0.7 KiB: a
//! 128-byte-aligned state and a block of 32 slots), boxed, so that the node an empty channel
//! keeps is 16 bytes rather than a message's size.
//!
//! Architecture invariant: the stream is opened lazily (its first poll makes the call), since
//! some user functions send their response headers only with their first reply.

use std::marker::PhantomData;

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use futures::stream::{self, BoxStream, StreamExt as _};
use tonic::Status;
use tonic::codec::{BufferSettings, Codec};
use tonic::transport::Channel;
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

use crate::discovery::MAX_MESSAGE_BYTES;

/// The initial size of a stream's encode buffer (tonic's default: 8 KiB): a shopping cart's
/// command or event is 100-200 bytes with its `Any` type URL.
pub const ENCODE_BUFFER_BYTES: usize = 256;
/// The initial size of a stream's decode buffer (tonic's default: 8 KiB). Measured with 1,000
/// active carts, a 256-byte decode buffer grew to 512 bytes on every stream anyway (replies
/// and the bytes of the next frame share it), so it starts there.
pub const DECODE_BUFFER_BYTES: usize = 512;
/// How much the encoder gathers before it yields (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

/// The prost codec with [`ENCODE_BUFFER_BYTES`] and [`DECODE_BUFFER_BYTES`] buffers.
#[derive(Debug)]
pub struct SmallCodec<T, U>(PhantomData<fn(T) -> U>);

impl<T, U> Default for SmallCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

fn settings(buffer_bytes: usize) -> BufferSettings {
    BufferSettings::new(buffer_bytes, YIELD_THRESHOLD)
}

impl<T, U> Codec for SmallCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(settings(ENCODE_BUFFER_BYTES))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(settings(DECODE_BUFFER_BYTES))
    }
}

/// Which streamed method to call: `service` and `method` as in the proto.
#[derive(Clone, Copy, Debug)]
pub struct Method {
    /// e.g. `cloudstate.eventsourced.EventSourced`.
    pub service: &'static str,
    /// e.g. `handle`.
    pub method: &'static str,
    /// `/<service>/<method>`.
    pub path: &'static str,
}

/// The user function's messages.
pub type Incoming<U> = BoxStream<'static, Result<U, Status>>;

/// Opens `method` on the user function: what is sent on the returned sender goes out in order;
/// the stream yields the user function's messages (an error first if the call fails).
pub fn open<T, U>(channel: &Channel, method: Method) -> (UnboundedSender<Box<T>>, Incoming<U>)
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    let (outgoing, receiver): (_, UnboundedReceiver<Box<T>>) = unbounded();
    let mut grpc = tonic::client::Grpc::new(channel.clone())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let call = async move {
        grpc.ready().await.map_err(|e| Status::unknown(format!("the user function's channel: {e}")))?;
        let messages = receiver.map(|message| *message);
        let mut request = tonic::Request::new(messages);
        request.extensions_mut().insert(tonic::GrpcMethod::new(method.service, method.method));
        let path = http::uri::PathAndQuery::from_static(method.path);
        grpc.streaming(request, path, SmallCodec::<T, U>::default()).await
    };
    // Boxed, so that the stream keeps only a pointer to the call once it has been made (the
    // call's future is large, and the stream lives as long as the entity).
    let incoming = stream::once(Box::pin(call))
        .flat_map(|opened| match opened {
            Ok(response) => response.into_inner().boxed(),
            Err(status) => stream::iter([Err(status)]).boxed(),
        })
        .boxed();
    (outgoing, incoming)
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::time::Duration;

    use futures::Stream;
    use prost_types::Any;
    use tonic::{Request, Response, Streaming};

    use super::*;
    use crate::protocol::cloudstate::eventsourced::event_sourced_server::{EventSourced, EventSourcedServer};
    use crate::protocol::cloudstate::eventsourced::{
        EventSourcedReply, EventSourcedStreamIn, EventSourcedStreamOut, event_sourced_stream_in,
        event_sourced_stream_out,
    };
    use crate::protocol::cloudstate::{ClientAction, Command, Reply, client_action};

    /// Answers each command with a reply carrying the command's payload back.
    struct Echo;

    #[tonic::async_trait]
    impl EventSourced for Echo {
        type handleStream = Pin<Box<dyn Stream<Item = Result<EventSourcedStreamOut, Status>> + Send>>;

        async fn handle(
            &self,
            request: Request<Streaming<EventSourcedStreamIn>>,
        ) -> Result<Response<Self::handleStream>, Status> {
            let replies = request.into_inner().filter_map(|message| async move {
                let Ok(EventSourcedStreamIn { message: Some(event_sourced_stream_in::Message::Command(c)) }) =
                    message
                else {
                    return None;
                };
                let reply = Reply { payload: c.payload, metadata: None };
                Some(Ok(EventSourcedStreamOut {
                    message: Some(event_sourced_stream_out::Message::Reply(EventSourcedReply {
                        command_id: c.id,
                        client_action: Some(ClientAction {
                            action: Some(client_action::Action::Reply(reply)),
                        }),
                        ..EventSourcedReply::default()
                    })),
                }))
            });
            Ok(Response::new(Box::pin(replies)))
        }
    }

    #[tokio::test]
    async fn messages_far_larger_than_the_buffers_go_both_ways_intact_and_in_order() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds a loopback port");
        let addr = listener.local_addr().expect("local address");
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(EventSourcedServer::new(Echo))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let channel = crate::discovery::channel(addr).expect("channel");
        let method = Method {
            service: "cloudstate.eventsourced.EventSourced",
            method: "handle",
            path: "/cloudstate.eventsourced.EventSourced/handle",
        };
        let (outgoing, mut incoming) = open::<EventSourcedStreamIn, EventSourcedStreamOut>(&channel, method);
        // Sizes around and far beyond both buffers, each byte pattern distinct.
        let (encode, decode) = (ENCODE_BUFFER_BYTES, DECODE_BUFFER_BYTES);
        let sizes = [0, 1, encode - 10, encode, encode + 1, decode, decode + 1, 70_000, 300_000, 3];
        for (id, size) in sizes.iter().enumerate() {
            let value: Vec<u8> = (0..*size).map(|i| (i % 251) as u8 ^ id as u8).collect();
            let command = Command {
                id: id as i64 + 1,
                name: "Echo".into(),
                payload: Some(Any { type_url: "type.googleapis.com/bytes".into(), value }),
                ..Command::default()
            };
            let message =
                EventSourcedStreamIn { message: Some(event_sourced_stream_in::Message::Command(command)) };
            outgoing.unbounded_send(Box::new(message)).expect("the stream is open");
        }
        for (id, size) in sizes.iter().enumerate() {
            let next = tokio::time::timeout(Duration::from_secs(10), incoming.next()).await;
            let Ok(Some(Ok(EventSourcedStreamOut {
                message: Some(event_sourced_stream_out::Message::Reply(reply)),
            }))) = next
            else {
                panic!("no reply to command {}: {next:?}", id + 1);
            };
            assert_eq!(reply.command_id, id as i64 + 1, "replies come in order");
            let Some(ClientAction { action: Some(client_action::Action::Reply(Reply { payload, .. })) }) =
                reply.client_action
            else {
                panic!("reply {} has no client reply", id + 1);
            };
            let value = payload.map(|p| p.value).unwrap_or_default();
            let expected: Vec<u8> = (0..*size).map(|i| (i % 251) as u8 ^ id as u8).collect();
            assert_eq!(value.len(), *size);
            assert!(value == expected, "payload {} came back changed", id + 1);
        }
    }
}
