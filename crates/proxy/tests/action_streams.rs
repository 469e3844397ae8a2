//! Streamed actions through the proxy, end to end on loopback: a Rust model user function
//! serving `ActionProtocol`'s three streamed calls (`common/streams_model.rs`), a tonic client calling a streaming service
//! (`streams.model.Streams`, compiled with protox at run time) through the proxy. Covers each
//! streaming shape, failure mid-stream, side effects and forwards in a stream, and cancellation
//! in both directions.

mod common;

use std::future::Future;
use std::time::Duration;

use common::streams_model::{self, Model, Msg, SERVICE, msg};
use prost::Message as _;
use stead_proxy::StoreConfig;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Status, Streaming};

struct Setup {
    model: Model,
    proxy: common::RunningProxy,
    channel: tonic::transport::Channel,
}

async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn setup() -> Setup {
    let model = Model::default();
    let user = streams_model::serve(model.clone()).await;
    let proxy = common::start_proxy(user, StoreConfig::None).await;
    wait_for("the proxy to become ready", || async {
        common::http_get(proxy.health, "/ready").await.0 == 200
    })
    .await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", proxy.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connects to the proxy");
    Setup { model, proxy, channel }
}

impl Setup {
    async fn grpc(&self) -> tonic::client::Grpc<tonic::transport::Channel> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready().await.expect("the channel is ready");
        grpc
    }

    /// Waits until the model's log holds `line` (side effects run in the background).
    async fn wait_logged(&self, line: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !self.model.log().iter().any(|l| l == line) {
            assert!(tokio::time::Instant::now() < deadline, "no {line:?} in {:#?}", self.model.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) {
        drop(self.channel);
        self.proxy.stop().await.expect("the proxy stops cleanly");
    }
}

fn path(method: &str) -> http::uri::PathAndQuery {
    http::uri::PathAndQuery::try_from(format!("/{SERVICE}/{method}")).expect("a valid path")
}

fn codec() -> tonic_prost::ProstCodec<Msg, Msg> {
    tonic_prost::ProstCodec::default()
}

async fn collect(setup: &Setup, texts: &[&str]) -> Result<String, Status> {
    let messages: Vec<Msg> = texts.iter().map(|t| msg(t)).collect();
    let mut request = Request::new(futures::stream::iter(messages));
    request.metadata_mut().insert("x-test", "collect".parse().expect("ascii"));
    let response = setup.grpc().await.client_streaming(request, path("Collect"), codec()).await?;
    Ok(response.into_inner().text)
}

/// All the texts of a reply stream, and the status it ended with (`None`: ended cleanly).
async fn drain(mut stream: Streaming<Msg>) -> (Vec<String>, Option<Status>) {
    let mut texts = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(m)) => texts.push(m.text),
            Ok(None) => return (texts, None),
            Err(status) => return (texts, Some(status)),
        }
    }
}

async fn expand(setup: &Setup, text: &str) -> Result<Streaming<Msg>, Status> {
    let mut request = Request::new(msg(text));
    request.metadata_mut().insert("x-test", "expand".parse().expect("ascii"));
    Ok(setup.grpc().await.server_streaming(request, path("Expand"), codec()).await?.into_inner())
}

/// A client codec whose `None` fails to encode, so that the client resets its call: how a
/// client cancels mid-stream at the HTTP/2 level.
struct ResetCodec;

struct ResetEncoder;

impl tonic::codec::Codec for ResetCodec {
    type Encode = Option<Msg>;
    type Decode = Msg;
    type Encoder = ResetEncoder;
    type Decoder = tonic_prost::ProstDecoder<Msg>;

    fn encoder(&mut self) -> ResetEncoder {
        ResetEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic::codec::Codec::decoder(&mut codec())
    }
}

impl tonic::codec::Encoder for ResetEncoder {
    type Item = Option<Msg>;
    type Error = Status;

    fn encode(&mut self, item: Option<Msg>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), Status> {
        let message = item.ok_or_else(|| Status::cancelled("the client gives up"))?;
        message.encode(dst).map_err(|e| Status::internal(e.to_string()))
    }
}

fn timeout<F: Future<Output = ()>>(test: F) -> tokio::time::Timeout<F> {
    tokio::time::timeout(Duration::from_secs(30), test)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_in_sends_a_header_then_payloads_and_answers_once() {
    timeout(async {
        let setup = setup().await;
        assert_eq!(collect(&setup, &["a", "b", "c"]).await.expect("collect answers"), "a,b,c");
        let log = setup.model.log();
        let ins: Vec<&String> = log.iter().filter(|l| l.starts_with("in ")).collect();
        assert_eq!(
            ins,
            vec![
                &format!(
                    "in service={SERVICE:?} name=\"Collect\" payload=None metadata=[\"x-test=collect\"]"
                ),
                &"in service=\"\" name=\"\" payload=Some(\"a\") metadata=[]".to_string(),
                &"in service=\"\" name=\"\" payload=Some(\"b\") metadata=[]".to_string(),
                &"in service=\"\" name=\"\" payload=Some(\"c\") metadata=[]".to_string(),
            ]
        );
        // The synchronous side effect ran before the reply.
        assert!(log.contains(&"unary after-collect".to_string()), "{log:?}");
        // An empty client stream still sends the header.
        assert_eq!(collect(&setup, &[]).await.expect("collect answers"), "");
        let failed = collect(&setup, &["x", "fail"]).await.expect_err("a failure is an error");
        assert_eq!(failed.code(), tonic::Code::Unknown);
        assert_eq!(failed.message(), "collect failed on purpose");
        setup.stop().await;
    })
    .await
    .expect("the test finishes within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_out_relays_each_reply_forward_and_side_effect() {
    timeout(async {
        let setup = setup().await;
        let stream = expand(&setup, "a,effect,sync,fwd,b").await.expect("expand starts");
        let (texts, end) = drain(stream).await;
        assert!(end.is_none(), "ended cleanly: {end:?}");
        // `effect` answers nothing; `sync` replies after its side effect; `fwd` gets Unary's reply.
        assert_eq!(texts, vec!["out:a", "after-sync", "unary:forwarded", "out:b"]);
        let log = setup.model.log();
        assert_eq!(
            log.first().map(String::as_str),
            Some(
                format!(
                    "out service={SERVICE:?} name=\"Expand\" payload=Some(\"a,effect,sync,fwd,b\") \
                     metadata=[\"x-test=expand\"]"
                )
                .as_str()
            )
        );
        let sync_at = log.iter().position(|l| l == "unary from-sync").expect("the sync effect ran");
        let forward_at = log.iter().position(|l| l == "unary forwarded").expect("the forward ran");
        assert!(sync_at < forward_at, "{log:?}");
        setup.wait_logged("unary from-effect").await;
        setup.stop().await;
    })
    .await
    .expect("the test finishes within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_out_failure_and_user_error_end_the_client_stream() {
    timeout(async {
        let setup = setup().await;
        let (texts, end) = drain(expand(&setup, "a,fail,b").await.expect("expand starts")).await;
        assert_eq!(texts, vec!["out:a"]);
        let end = end.expect("the stream ends with an error");
        assert_eq!((end.code(), end.message()), (tonic::Code::Unknown, "failed on purpose"));

        let (texts, end) = drain(expand(&setup, "a,abort,b").await.expect("expand starts")).await;
        assert_eq!(texts, vec!["out:a"]);
        let end = end.expect("the stream ends with the user function's status");
        assert_eq!((end.code(), end.message()), (tonic::Code::ResourceExhausted, "user function gave up"));
        setup.stop().await;
    })
    .await
    .expect("the test finishes within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_both_ways_answers_as_messages_arrive() {
    timeout(async {
        let setup = setup().await;
        let (sender, receiver) = mpsc::channel::<Msg>(4);
        let mut request = Request::new(ReceiverStream::new(receiver));
        request.metadata_mut().insert("x-test", "echo".parse().expect("ascii"));
        let mut grpc = setup.grpc().await;
        let call = tokio::spawn(async move { grpc.streaming(request, path("Echo"), codec()).await });
        sender.send(msg("one")).await.expect("sends");
        let mut replies = call.await.expect("the call task").expect("echo starts").into_inner();
        // Interleaved: the first reply arrives before the second message is sent.
        assert_eq!(replies.message().await.expect("a reply").map(|m| m.text), Some("echo:one".into()));
        sender.send(msg("effect")).await.expect("sends");
        sender.send(msg("two")).await.expect("sends");
        assert_eq!(replies.message().await.expect("a reply").map(|m| m.text), Some("echo:two".into()));
        setup.wait_logged("unary from-effect").await;
        sender.send(msg("fail")).await.expect("sends");
        let end = replies.message().await.expect_err("a failure ends the stream");
        assert_eq!((end.code(), end.message()), (tonic::Code::Unknown, "failed on purpose"));
        let log = setup.model.log();
        let echoes: Vec<&String> = log.iter().filter(|l| l.starts_with("echo service")).collect();
        assert_eq!(
            echoes.first().map(|l| l.as_str()),
            Some(
                format!("echo service={SERVICE:?} name=\"Echo\" payload=None metadata=[\"x-test=echo\"]")
                    .as_str()
            )
        );
        assert_eq!(echoes.len(), 5, "a header and four payloads: {log:?}");

        // A client that ends its stream ends the call cleanly.
        let (sender, receiver) = mpsc::channel::<Msg>(4);
        sender.send(msg("last")).await.expect("sends");
        drop(sender);
        let replies = setup
            .grpc()
            .await
            .streaming(Request::new(ReceiverStream::new(receiver)), path("Echo"), codec())
            .await
            .expect("echo starts")
            .into_inner();
        let (texts, end) = drain(replies).await;
        assert_eq!(texts, vec!["echo:last".to_string()]);
        assert!(end.is_none(), "ended cleanly: {end:?}");
        setup.stop().await;
    })
    .await
    .expect("the test finishes within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cancellation_reaches_the_user_function() {
    timeout(async {
        let setup = setup().await;
        // Streamed out: the client drops the stream after the first reply.
        let mut stream = expand(&setup, "a,hang").await.expect("expand starts");
        assert_eq!(stream.message().await.expect("a reply").map(|m| m.text), Some("out:a".into()));
        drop(stream);
        setup.wait_logged("out cancelled").await;

        // Both ways: the client resets the call mid-stream (its request stream fails).
        let (sender, receiver) = mpsc::channel::<Option<Msg>>(4);
        sender.send(Some(msg("one"))).await.expect("sends");
        let mut replies = setup
            .grpc()
            .await
            .streaming(Request::new(ReceiverStream::new(receiver)), path("Echo"), ResetCodec)
            .await
            .expect("echo starts")
            .into_inner();
        assert_eq!(replies.message().await.expect("a reply").map(|m| m.text), Some("echo:one".into()));
        sender.send(None).await.expect("sends");
        setup.wait_logged("echo cancelled").await;
        drop(replies);
        drop(sender);

        // Streamed in: the client abandons the call before ending its stream.
        let (sender, receiver) = mpsc::channel::<Msg>(4);
        sender.send(msg("hold")).await.expect("sends");
        let mut grpc = setup.grpc().await;
        let call = tokio::spawn(async move {
            grpc.client_streaming(Request::new(ReceiverStream::new(receiver)), path("Collect"), codec()).await
        });
        setup.wait_logged("in service=\"\" name=\"\" payload=Some(\"hold\") metadata=[]").await;
        call.abort();
        let _ = call.await;
        drop(sender);
        setup.wait_logged("in cancelled").await;
        setup.stop().await;
    })
    .await
    .expect("the test finishes within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_calls_still_work_beside_streamed_methods() {
    timeout(async {
        let setup = setup().await;
        // Unary still works next to the streamed methods.
        let reply = setup
            .grpc()
            .await
            .unary(Request::new(msg("u")), path("Unary"), codec())
            .await
            .expect("unary answers");
        assert_eq!(reply.into_inner().text, "unary:u");
        setup.stop().await;
    })
    .await
    .expect("the test finishes within 30 s");
}
