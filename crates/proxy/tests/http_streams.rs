//! Streamed actions over HTTP/JSON, end to end on loopback: the model user function of
//! `common/streams_model.rs` (whose proto carries `google.api.http` rules, three of them
//! invalid) behind the proxy, called by hyper's HTTP/1.1 and HTTP/2 clients. Server streams
//! answer chunked newline-delimited `{"result": ..}` objects ending in `{"error": ..}` on
//! failure; client streams send a body of JSON values, split across chunks anywhere.

mod common;

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use common::streams_model::{self, Model, SERVICE};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value as Json, json};
use stead_proxy::StoreConfig;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

type RequestBody = BoxBody<Bytes, Infallible>;

struct Setup {
    model: Model,
    proxy: common::RunningProxy,
}

async fn setup() -> Setup {
    let model = Model::default();
    let user = streams_model::serve(model.clone()).await;
    let proxy = common::start_proxy(user, StoreConfig::None).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while common::http_get(proxy.health, "/ready").await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "the proxy is not ready after 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Setup { model, proxy }
}

impl Setup {
    /// Waits until the model's log holds `line`.
    async fn wait_logged(&self, line: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !self.model.log().iter().any(|l| l == line) {
            assert!(tokio::time::Instant::now() < deadline, "no {line:?} in {:#?}", self.model.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn full(text: &str) -> RequestBody {
    Full::new(Bytes::from(text.to_string())).boxed()
}

/// A body sent as these chunks (so JSON values are split across reads).
fn chunked(chunks: &[&str]) -> RequestBody {
    let frames: Vec<Result<Frame<Bytes>, Infallible>> =
        chunks.iter().map(|c| Ok(Frame::data(Bytes::from(c.to_string())))).collect();
    StreamBody::new(futures::stream::iter(frames)).boxed()
}

/// A body fed by the test as it goes.
fn channel_body() -> (mpsc::Sender<Result<Frame<Bytes>, Infallible>>, RequestBody) {
    let (sender, receiver) = mpsc::channel(8);
    (sender, StreamBody::new(ReceiverStream::new(receiver)).boxed())
}

async fn h1(addr: std::net::SocketAddr) -> hyper::client::conn::http1::SendRequest<RequestBody> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connects");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("h1");
    tokio::spawn(connection);
    sender
}

async fn h2(addr: std::net::SocketAddr) -> hyper::client::conn::http2::SendRequest<RequestBody> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connects");
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.expect("h2");
    tokio::spawn(connection);
    sender
}

fn request(method: &str, path: &str, body: RequestBody) -> http::Request<RequestBody> {
    http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("x-test", "http")
        .body(body)
        .expect("a valid request")
}

/// A response body read line by line.
struct Lines {
    body: Incoming,
    buffer: Vec<u8>,
    /// Whether the body ended without a newline (a plain, unstreamed JSON answer).
    unterminated: bool,
}

impl Lines {
    /// The next line as JSON (the text after the last newline counts as a line); `None` at the
    /// end of the body.
    async fn next(&mut self) -> Option<Json> {
        loop {
            if let Some(at) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=at).collect();
                return Some(serde_json::from_slice(&line).unwrap_or_else(|e| {
                    panic!("line {:?} is not JSON: {e}", String::from_utf8_lossy(&line))
                }));
            }
            match self.body.frame().await {
                Some(frame) => {
                    if let Some(data) = frame.expect("the body reads").data_ref() {
                        self.buffer.extend_from_slice(data);
                    }
                }
                None if self.buffer.is_empty() => return None,
                None => {
                    self.unterminated = true;
                    self.buffer.push(b'\n');
                }
            }
        }
    }

    /// Every line of a streamed answer, each ended by a newline.
    async fn all(mut self) -> Vec<Json> {
        let mut lines = Vec::new();
        while let Some(line) = self.next().await {
            lines.push(line);
        }
        assert!(!self.unterminated, "the last line of {lines:?} has no newline");
        lines
    }
}

/// Status, headers and the body as lines.
async fn call(
    response: impl Future<Output = hyper::Result<http::Response<Incoming>>>,
) -> (u16, http::HeaderMap, Lines) {
    let response = response.await.expect("a response");
    let (parts, body) = response.into_parts();
    (parts.status.as_u16(), parts.headers, Lines { body, buffer: Vec::new(), unterminated: false })
}

fn result(text: &str) -> Json {
    json!({"result": {"text": text}})
}

fn error(code: i32, message: &str) -> Json {
    json!({"error": {"code": code, "message": message, "details": []}})
}

fn timeout<F: Future<Output = ()>>(test: F) -> tokio::time::Timeout<F> {
    tokio::time::timeout(Duration::from_secs(30), test)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_streams_answer_chunked_newline_delimited_results() {
    timeout(async {
        let setup = setup().await;
        let addr = setup.proxy.addr;
        let (status, headers, lines) =
            call(h1(addr).await.send_request(request("GET", "/expand/a,effect,sync,fwd,b", full("")))).await;
        assert_eq!(status, 200);
        assert_eq!(headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
        assert_eq!(headers.get("transfer-encoding").and_then(|v| v.to_str().ok()), Some("chunked"));
        // `effect` answers nothing; `sync` after its side effect; `fwd` with Unary's reply.
        assert_eq!(
            lines.all().await,
            vec![result("out:a"), result("after-sync"), result("unary:forwarded"), result("out:b")]
        );
        let first = setup.model.log().first().cloned().unwrap_or_default();
        assert_eq!(
            first,
            format!("out service={SERVICE:?} name=\"Expand\" payload=Some(\"a,effect,sync,fwd,b\") metadata=[\"x-test=http\"]")
        );
        setup.wait_logged("unary from-effect").await;

        // The additional binding: the message from the body, each result only `response_body`.
        let (status, _, lines) =
            call(h1(addr).await.send_request(request("POST", "/expand", full(r#"{"text": "x,y"}"#)))).await;
        assert_eq!(status, 200);
        assert_eq!(lines.all().await, vec![json!({"result": "out:x"}), json!({"result": "out:y"})]);

        // A failure mid-stream: 200 (already sent), then the error object, then the end.
        let (status, _, lines) =
            call(h1(addr).await.send_request(request("GET", "/expand/a,fail,b", full("")))).await;
        assert_eq!(status, 200);
        assert_eq!(lines.all().await, vec![result("out:a"), error(2, "failed on purpose")]);
        // The user function's own status mid-stream.
        let (_, _, lines) = call(h1(addr).await.send_request(request("GET", "/expand/a,abort", full("")))).await;
        assert_eq!(lines.all().await, vec![result("out:a"), error(8, "user function gave up")]);
        // A failure before the first reply has its own HTTP status.
        let (status, _, lines) =
            call(h1(addr).await.send_request(request("GET", "/expand/fail", full("")))).await;
        assert_eq!(status, 500);
        assert_eq!(lines.all().await, vec![error(2, "failed on purpose")]);

        // HTTP/2 streams the same lines.
        let (status, _, lines) =
            call(h2(addr).await.send_request(request("GET", "http://localhost/expand/p,q", full("")))).await;
        assert_eq!(status, 200);
        assert_eq!(lines.all().await, vec![result("out:p"), result("out:q")]);
        setup.proxy.stop().await.expect("the proxy stops cleanly");
    })
    .await
    .expect("the test finishes within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_streams_read_json_values_split_anywhere() {
    timeout(async {
        let setup = setup().await;
        let addr = setup.proxy.addr;
        // Newline-delimited and concatenated, split mid-value; an unknown field is ignored.
        let body =
            chunked(&[r#"{"te"#, "xt\":\"a\"}\n{\"text\":\"b\"}{\"text\"", r#": "c", "extra": [1]}"#, "\n"]);
        let (status, _, mut lines) =
            call(h1(addr).await.send_request(request("POST", "/collect", body))).await;
        assert_eq!(status, 200);
        assert_eq!(lines.next().await, Some(json!({"text": "a,b,c"})), "one plain message, not a stream");
        let log = setup.model.log();
        let ins: Vec<&String> = log.iter().filter(|l| l.starts_with("in ")).collect();
        assert_eq!(
            ins,
            vec![
                &format!("in service={SERVICE:?} name=\"Collect\" payload=None metadata=[\"x-test=http\"]"),
                &"in service=\"\" name=\"\" payload=Some(\"a\") metadata=[]".to_string(),
                &"in service=\"\" name=\"\" payload=Some(\"b\") metadata=[]".to_string(),
                &"in service=\"\" name=\"\" payload=Some(\"c\") metadata=[]".to_string(),
            ]
        );
        // No messages: the header alone, an empty answer.
        let (status, _, mut lines) =
            call(h1(addr).await.send_request(request("POST", "/collect", full(" \n")))).await;
        assert_eq!((status, lines.next().await), (200, Some(json!({"text": ""}))));
        // The user function's failure.
        let body = full(r#"{"text": "x"} {"text": "fail"}"#);
        let (status, _, mut lines) =
            call(h1(addr).await.send_request(request("POST", "/collect", body))).await;
        assert_eq!(status, 500);
        assert_eq!(
            lines.next().await,
            Some(json!({"code": 2, "message": "collect failed on purpose", "details": []}))
        );
        // A known field of the wrong type: 400 naming it, and the user function's stream is reset.
        let body = chunked(&[r#"{"text": "x"}"#, r#"{"text": 5}"#]);
        let (status, _, mut lines) =
            call(h1(addr).await.send_request(request("POST", "/collect", body))).await;
        assert_eq!(status, 400);
        let answer = lines.next().await.expect("an error body");
        assert_eq!(answer["code"], 3);
        assert!(answer["message"].as_str().unwrap_or_default().contains("text"), "{answer}");
        setup.wait_logged("in cancelled").await;
        // A body that ends inside a value.
        let body = full(r#"{"text": "x"} {"text": "#);
        let (status, _, mut lines) =
            call(h1(addr).await.send_request(request("POST", "/collect", body))).await;
        assert_eq!(status, 400);
        let answer = lines.next().await.expect("an error body");
        assert!(answer["message"].as_str().unwrap_or_default().contains("ends inside"), "{answer}");
        setup.proxy.stop().await.expect("the proxy stops cleanly");
    })
    .await
    .expect("the test finishes within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_streams_answer_as_messages_arrive() {
    timeout(async {
        let setup = setup().await;
        let addr = setup.proxy.addr;
        // HTTP/2, interleaved: each reply is read before the next message is sent.
        let (sender, body) = channel_body();
        let send = |text: &'static str| {
            let sender = sender.clone();
            async move { sender.send(Ok(Frame::data(Bytes::from(text)))).await.expect("sends") }
        };
        send("{\"text\": \"one\"}\n").await;
        let (status, _, mut lines) =
            call(h2(addr).await.send_request(request("POST", "http://localhost/echo", body))).await;
        assert_eq!(status, 200);
        assert_eq!(lines.next().await, Some(result("echo:one")));
        send("{\"text\": \"effect\"}{\"text\": \"two\"}").await;
        assert_eq!(lines.next().await, Some(result("echo:two")));
        setup.wait_logged("unary from-effect").await;
        send("{\"text\": \"fail\"}").await;
        assert_eq!(lines.next().await, Some(error(2, "failed on purpose")));
        assert_eq!(lines.next().await, None, "the error ends the body");
        drop(sender);

        // Not JSON mid-stream: the call ends with INVALID_ARGUMENT.
        let (sender, body) = channel_body();
        sender.send(Ok(Frame::data(Bytes::from(r#"{"text": "a"}"#)))).await.expect("sends");
        let (_, _, mut lines) =
            call(h2(addr).await.send_request(request("POST", "http://localhost/echo", body))).await;
        assert_eq!(lines.next().await, Some(result("echo:a")));
        sender.send(Ok(Frame::data(Bytes::from("nope")))).await.expect("sends");
        drop(sender);
        let end = lines.next().await.expect("an error line");
        assert_eq!(end["error"]["code"], 3, "{end}");
        assert_eq!(lines.next().await, None);

        // HTTP/1.1 with the whole body at once ends cleanly after the last reply.
        let body = full(r#"{"text": "p"} {"text": "q"}"#);
        let (status, headers, lines) =
            call(h1(addr).await.send_request(request("POST", "/echo", body))).await;
        assert_eq!(status, 200);
        assert_eq!(headers.get("transfer-encoding").and_then(|v| v.to_str().ok()), Some("chunked"));
        assert_eq!(lines.all().await, vec![result("echo:p"), result("echo:q")]);
        setup.proxy.stop().await.expect("the proxy stops cleanly");
    })
    .await
    .expect("the test finishes within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_client_leaving_cancels_the_user_functions_stream() {
    timeout(async {
        let setup = setup().await;
        let (status, _, mut lines) =
            call(h1(setup.proxy.addr).await.send_request(request("GET", "/expand/a,hang", full("")))).await;
        assert_eq!(status, 200);
        assert_eq!(lines.next().await, Some(result("out:a")));
        drop(lines);
        setup.wait_logged("out cancelled").await;

        // Leaving before the first reply (the headers wait for it) cancels too.
        use tokio::io::AsyncWriteExt as _;
        let mut stream = tokio::net::TcpStream::connect(setup.proxy.addr).await.expect("connects");
        stream.write_all(b"GET /expand/hang HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("writes");
        setup
            .wait_logged(&format!(
                "out service={SERVICE:?} name=\"Expand\" payload=Some(\"hang\") metadata=[]"
            ))
            .await;
        drop(stream);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while setup.model.log().iter().filter(|l| *l == "out cancelled").count() < 2 {
            assert!(tokio::time::Instant::now() < deadline, "not cancelled: {:#?}", setup.model.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        setup.proxy.stop().await.expect("the proxy stops cleanly");
    })
    .await
    .expect("the test finishes within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_rules_are_reported_to_the_user_function_and_the_rest_served() {
    timeout(async {
        let setup = setup().await;
        // Reported before the proxy became ready.
        let reports = setup.model.reports();
        assert_eq!(reports.len(), 3, "{reports:#?}");
        let report = |method: &str| {
            reports
                .iter()
                .find(|r| r.contains(&format!("{SERVICE}.{method} ")))
                .unwrap_or_else(|| panic!("no report for {method}: {reports:#?}"))
                .clone()
        };
        let bad_pattern = report("BadPattern");
        assert!(bad_pattern.contains("\"bad/no-slash\""), "{bad_pattern}");
        assert!(bad_pattern.contains("does not start with '/'"), "{bad_pattern}");
        let bad_field = report("BadField");
        assert!(bad_field.contains("\"/bad/{colour}\"") && bad_field.contains("\"colour\""), "{bad_field}");
        let bad_stream = report("BadStream");
        assert!(
            bad_stream.contains("\"/bad/stream\"") && bad_stream.contains("needs a body"),
            "{bad_stream}"
        );

        // The bad rules are left out; the good ones answer, unknown fields ignored.
        let addr = setup.proxy.addr;
        let (status, _, _) = call(h1(addr).await.send_request(request("GET", "/bad/red", full("")))).await;
        assert_eq!(status, 404);
        let body = full(r#"{"text": "u", "unknown": {"deep": [1, 2]}}"#);
        let (status, _, mut lines) = call(h1(addr).await.send_request(request("POST", "/unary", body))).await;
        assert_eq!((status, lines.next().await), (200, Some(json!({"text": "unary:u"}))));
        let (status, _, mut lines) =
            call(h1(addr).await.send_request(request("POST", "/unary", full(r#"{"text": 1.5}"#)))).await;
        assert_eq!(status, 400, "a known field of the wrong type is still refused");
        assert_eq!(lines.next().await.map(|e| e["code"].clone()), Some(json!(3)));
        setup.proxy.stop().await.expect("the proxy stops cleanly");
    })
    .await
    .expect("the test finishes within 30 s");
}
