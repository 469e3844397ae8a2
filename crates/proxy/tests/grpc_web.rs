//! gRPC-Web on the proxy port, in front of the Rust shopping-cart user function
//! (`common/cart.rs`), as a browser's gRPC-Web client sends it: `POST` over HTTP/1.1 with
//! `application/grpc-web+proto` (binary) or `application/grpc-web-text` (base64), the answer's
//! trailers in a last frame flagged 0x80, and a CORS preflight first (answered only for the
//! origins the proxy allows; none by default). The requests are built by hand from the
//! protocol's facts and sent with hyper's HTTP/1.1 client. Loopback only.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use common::cart::{self, SERVICE, api};
use http_body_util::{BodyExt as _, Full};
use prost::Message as _;
use stead_proxy::config::AllowedOrigins;

/// What came back: status, headers, and the body's frames (flag, payload) after decoding.
#[derive(Debug)]
struct WebResponse {
    status: u16,
    headers: http::HeaderMap,
    frames: Vec<(u8, Vec<u8>)>,
}

impl WebResponse {
    fn messages(&self) -> Vec<&[u8]> {
        self.frames.iter().filter(|(flag, _)| *flag == 0).map(|(_, m)| m.as_slice()).collect()
    }

    /// The trailer frame's lines, as (name, value).
    fn trailers(&self) -> Vec<(String, String)> {
        let frame = self.frames.iter().find(|(flag, _)| flag & 0x80 != 0).expect("a trailer frame");
        String::from_utf8(frame.1.clone())
            .expect("trailers are text")
            .split("\r\n")
            .filter(|line| !line.is_empty())
            .map(|line| {
                let (name, value) = line.split_once(':').expect("name:value");
                (name.to_string(), value.trim().to_string())
            })
            .collect()
    }
}

fn frame(message: &impl prost::Message) -> Vec<u8> {
    let payload = message.encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&u32::try_from(payload.len()).expect("small").to_be_bytes());
    framed.extend_from_slice(&payload);
    framed
}

fn split_frames(mut body: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while body.len() >= 5 {
        let length = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        assert!(body.len() >= 5 + length, "a frame cut short: {body:?}");
        frames.push((body[0], body[5..5 + length].to_vec()));
        body = &body[5 + length..];
    }
    assert!(body.is_empty(), "bytes after the last frame: {body:?}");
    frames
}

/// A text-mode body: base64 whose chunks may each end in padding (each frame is encoded on its
/// own, so that a streamed message need not wait for the next), decoded as a browser client does,
/// four characters at a time.
fn decode_chunks(body: &[u8]) -> Bytes {
    assert_eq!(body.len() % 4, 0, "base64 groups are whole: {body:?}");
    let mut decoded = Vec::new();
    for group in body.chunks(4) {
        STANDARD.decode_vec(group, &mut decoded).expect("a base64 group");
    }
    decoded.into()
}

/// One HTTP/1.1 request on its own connection; fails the test after 10 s.
async fn send(addr: SocketAddr, request: http::Request<Full<Bytes>>) -> (u16, http::HeaderMap, Bytes) {
    tokio::time::timeout(Duration::from_secs(10), async {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connects");
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("handshake");
        tokio::spawn(connection);
        let response = sender.send_request(request).await.expect("response");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        (parts.status.as_u16(), parts.headers, body)
    })
    .await
    .expect("the request finishes within 10 s")
}

async fn call(addr: SocketAddr, method: &str, message: &impl prost::Message, text: bool) -> WebResponse {
    let mut body = frame(message);
    let content_type = if text {
        body = STANDARD.encode(&body).into_bytes();
        "application/grpc-web-text"
    } else {
        "application/grpc-web+proto"
    };
    let request = http::Request::post(format!("/{SERVICE}/{method}"))
        .header("host", "localhost")
        .header("content-type", content_type)
        .header("x-grpc-web", "1")
        .header("origin", "http://shop.test")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let (status, headers, body) = send(addr, request).await;
    let body = if text { decode_chunks(&body) } else { body };
    WebResponse { status, headers, frames: split_frames(&body) }
}

/// The cart's proxy, allowing cross-origin calls from the shop's page.
async fn proxy_for_the_shop() -> common::RunningProxy {
    cart::proxy_in_memory_with(|config| {
        config.cors = AllowedOrigins::List(vec!["http://shop.test".into()]);
    })
    .await
}

fn preflight(origin: &str, path: &str) -> http::Request<Full<Bytes>> {
    http::Request::builder()
        .method("OPTIONS")
        .uri(path)
        .header("host", "localhost")
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type,x-grpc-web,x-user-agent")
        .body(Full::new(Bytes::new()))
        .expect("request")
}

fn has_cors_headers(headers: &http::HeaderMap) -> bool {
    headers.keys().any(|name| name.as_str().starts_with("access-control-"))
}

fn add(user: &str, product: &str, quantity: i32) -> api::AddLineItem {
    cart::line(user, product, &product.to_uppercase(), quantity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cart_over_grpc_web_binary_and_text_shares_state_with_grpc() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let proxy = proxy_for_the_shop().await;
        let addr = proxy.addr;

        let added = call(addr, "AddItem", &add("web", "apple", 2), false).await;
        assert_eq!(added.status, 200, "{added:?}");
        assert_eq!(added.headers["content-type"], "application/grpc-web+proto");
        assert_eq!(added.headers["access-control-allow-origin"], "http://shop.test");
        assert_eq!(added.messages(), vec![&[0u8; 0][..]], "one empty reply message: {added:?}");
        assert!(added.trailers().contains(&("grpc-status".into(), "0".into())), "{added:?}");
        assert_eq!(added.frames.last().map(|f| f.0), Some(0x80), "the trailer frame comes last");

        let added = call(addr, "AddItem", &add("web", "pear", 1), true).await;
        assert_eq!(added.status, 200, "{added:?}");
        assert_eq!(added.headers["content-type"], "application/grpc-web-text+proto");
        assert!(added.trailers().contains(&("grpc-status".into(), "0".into())), "{added:?}");

        let got = call(addr, "GetCart", &api::GetShoppingCart { user_id: "web".into() }, true).await;
        let messages = got.messages();
        assert_eq!(messages.len(), 1, "{got:?}");
        let cart = api::Cart::decode(messages[0]).expect("a Cart");
        assert_eq!(
            cart::items(&cart),
            vec![("apple".into(), "APPLE".into(), 2), ("pear".into(), "PEAR".into(), 1)]
        );

        // gRPC on the same port sees the same entity.
        let mut client = cart::client(addr).await;
        let cart = client
            .get_cart(api::GetShoppingCart { user_id: "web".into() })
            .await
            .expect("GetCart over gRPC")
            .into_inner();
        assert_eq!(cart.items.len(), 2);
    })
    .await
    .expect("the test finishes within 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_command_reaches_the_browser_as_a_grpc_status() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let proxy = proxy_for_the_shop().await;
        let failed = call(proxy.addr, "AddItem", &add("web", "apple", -1), false).await;
        assert_eq!(failed.status, 200, "{failed:?}");
        // A call that fails before any message may answer trailers-only: the status in the
        // headers, or in a trailer frame.
        let status = failed
            .headers
            .get("grpc-status")
            .map(|v| v.to_str().expect("ascii").to_string())
            .or_else(|| failed.trailers().into_iter().find(|(n, _)| n == "grpc-status").map(|(_, v)| v))
            .expect("a grpc-status");
        assert_ne!(status, "0", "{failed:?}");
        assert!(failed.messages().is_empty(), "{failed:?}");
        let message = failed.headers.get("grpc-message").map(|v| v.to_str().unwrap_or_default().to_string());
        assert!(
            message.is_some_and(|m| m.contains("negative")),
            "the user function's description reaches the client: {failed:?}"
        );
        assert_eq!(
            failed.headers["access-control-expose-headers"],
            "grpc-status, grpc-message, grpc-status-details-bin"
        );
    })
    .await
    .expect("the test finishes within 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cors_preflight_is_answered_for_an_allowed_origin() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let proxy = proxy_for_the_shop().await;
        let (status, headers, _) =
            send(proxy.addr, preflight("http://shop.test", &format!("/{SERVICE}/AddItem"))).await;
        assert_eq!(status, 204);
        assert_eq!(headers["access-control-allow-origin"], "http://shop.test");
        assert_eq!(headers["access-control-allow-headers"], "content-type,x-grpc-web,x-user-agent");
        assert!(headers["access-control-allow-methods"].to_str().expect("ascii").contains("POST"));

        // Another origin's preflight is refused, and its call (which a browser would not send
        // after that, but a page could as a simple request) is answered without CORS headers.
        let (status, headers, _) =
            send(proxy.addr, preflight("http://evil.test", &format!("/{SERVICE}/AddItem"))).await;
        assert_eq!(status, 403, "{headers:?}");
        assert!(!has_cors_headers(&headers), "{headers:?}");

        // A preflight for an HTTP/JSON route is not gRPC-Web's: the transcoder answers it
        // (`/carts/{user_id}` is bound for GET only).
        let request = http::Request::builder()
            .method("OPTIONS")
            .uri("/carts/web")
            .header("host", "localhost")
            .header("origin", "http://shop.test")
            .header("access-control-request-method", "GET")
            .body(Full::new(Bytes::new()))
            .expect("request");
        let (status, headers, _) = send(proxy.addr, request).await;
        assert_eq!(status, 405, "{headers:?}");
        assert!(!headers.contains_key("access-control-allow-methods"), "{headers:?}");
    })
    .await
    .expect("the test finishes within 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_no_origin_is_allowed_and_star_allows_any() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let proxy = cart::proxy_in_memory().await;
        let (status, headers, body) =
            send(proxy.addr, preflight("http://shop.test", &format!("/{SERVICE}/AddItem"))).await;
        assert_eq!(status, 403, "{headers:?}");
        assert!(!has_cors_headers(&headers), "{headers:?}");
        assert!(String::from_utf8_lossy(&body).contains("\"http://shop.test\" are not allowed"), "{body:?}");
        // The call itself is served (a same-origin page sends an Origin too), without CORS
        // headers, so a page of another origin cannot read its answer.
        let added = call(proxy.addr, "AddItem", &add("web", "apple", 2), false).await;
        assert_eq!(added.status, 200, "{added:?}");
        assert!(added.trailers().contains(&("grpc-status".into(), "0".into())), "{added:?}");
        assert!(!has_cors_headers(&added.headers), "{added:?}");

        let any = cart::proxy_in_memory_with(|config| config.cors = AllowedOrigins::Any).await;
        let (status, headers, _) =
            send(any.addr, preflight("http://anywhere.test", &format!("/{SERVICE}/AddItem"))).await;
        assert_eq!(status, 204, "{headers:?}");
        assert_eq!(headers["access-control-allow-origin"], "*");
        let added = call(any.addr, "AddItem", &add("web", "apple", 2), false).await;
        assert_eq!(added.headers["access-control-allow-origin"], "*");
    })
    .await
    .expect("the test finishes within 60 s");
}
