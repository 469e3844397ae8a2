//! gRPC-Web, as browsers speak it: translated to and from gRPC around the ordinary gRPC path.
//!
//! The facts of the protocol: requests are `POST` with content type `application/grpc-web`
//! (`+proto` optional), or `application/grpc-web-text` whose body is base64; the body is gRPC's
//! length-prefixed messages. The response carries the same messages and then, instead of HTTP
//! trailers (which browsers cannot read), one more frame whose flag byte has its high bit set
//! (0x80) and whose payload is the trailers as `name:value\r\n` lines. In text mode the response
//! is base64 too. Works over HTTP/1.1 and HTTP/2.
//!
//! Browsers send a CORS preflight (`OPTIONS` with `Access-Control-Request-Method`) before a
//! cross-origin call; it is answered here for the origins the proxy is configured to allow
//! (`STEAD_CORS_ALLOWED_ORIGINS`: a list, or `*` for any), and refused (403, no CORS headers)
//! for every other origin, which by default is all of them. Calls from an origin not allowed
//! are still served (a same-origin page sends `Origin` too), without CORS headers, so a
//! browser keeps their answers from a page of that origin.

use std::pin::Pin;
use std::task::{Context, Poll};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::{BufMut as _, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::{Body as HttpBody, Frame};
use tonic::body::Body;

use crate::config::AllowedOrigins;

/// Which of gRPC-Web's two encodings a request used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Encoding {
    /// Binary frames, as gRPC's.
    Binary,
    /// Base64 of the binary frames.
    Text,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Binary => "application/grpc-web+proto",
            Encoding::Text => "application/grpc-web-text+proto",
        }
    }
}

/// The gRPC-Web encoding of a request, if it is one.
pub(super) fn encoding(headers: &HeaderMap) -> Option<Encoding> {
    let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let base = content_type.split(';').next().unwrap_or_default().trim();
    match base {
        "application/grpc-web" | "application/grpc-web+proto" => Some(Encoding::Binary),
        "application/grpc-web-text" | "application/grpc-web-text+proto" => Some(Encoding::Text),
        _ => None,
    }
}

/// Whether a request is a CORS preflight: `OPTIONS` with `Access-Control-Request-Method`.
pub(super) fn is_preflight<B>(request: &Request<B>) -> bool {
    request.method() == Method::OPTIONS
        && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Whether a preflight asks to send `x-grpc-web`, as gRPC-Web clients do.
pub(super) fn asks_for_grpc_web<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|name| name.trim().eq_ignore_ascii_case("x-grpc-web"))
}

/// The answer to a CORS preflight: for an allowed origin, `POST` with the headers asked for;
/// for any other, 403 without CORS headers.
pub(super) fn preflight<B>(request: &Request<B>, allowed: &AllowedOrigins) -> Response<Body> {
    let mut headers = HeaderMap::new();
    if !allow_origin(allowed, request.headers(), &mut headers) {
        let origin = request.headers().get(header::ORIGIN).map(|o| String::from_utf8_lossy(o.as_bytes()));
        let text = format!(
            "cross-origin gRPC-Web calls from origin {:?} are not allowed (STEAD_CORS_ALLOWED_ORIGINS)\n",
            origin.as_deref().unwrap_or("")
        );
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        return answer(
            StatusCode::FORBIDDEN,
            headers,
            Body::new(http_body_util::Full::new(Bytes::from(text))),
        );
    }
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, OPTIONS"));
    if let Some(asked) = request.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    answer(StatusCode::NO_CONTENT, headers, Body::empty())
}

fn answer(status: StatusCode, headers: HeaderMap, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Adds `Access-Control-Allow-Origin` when the request's origin is allowed; returns whether
/// it is. With a list of origins the answer depends on the request's origin, so it says `Vary:
/// origin` either way, for caches.
fn allow_origin(allowed: &AllowedOrigins, request: &HeaderMap, response: &mut HeaderMap) -> bool {
    let Some(origin) = request.get(header::ORIGIN) else { return false };
    if matches!(allowed, AllowedOrigins::List(_)) {
        response.append(header::VARY, HeaderValue::from_static("origin"));
    }
    if !origin.to_str().is_ok_and(|o| allowed.allows(o)) {
        return false;
    }
    let value = match allowed {
        AllowedOrigins::Any => HeaderValue::from_static("*"),
        _ => origin.clone(),
    };
    response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    true
}

/// Turns a gRPC-Web request into the gRPC request it stands for.
pub(super) fn to_grpc<B>(request: Request<B>, encoding: Encoding) -> Request<Body>
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<tonic::codegen::StdError>,
{
    let (mut parts, body) = request.into_parts();
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = match encoding {
        Encoding::Binary => Body::new(body),
        Encoding::Text => Body::new(DecodeText { inner: body, carry: BytesMut::new() }),
    };
    Request::from_parts(parts, body)
}

/// Turns the gRPC response into the gRPC-Web one: trailers become the last frame.
pub(super) fn from_grpc(
    response: Response<Body>,
    encoding: Encoding,
    request: &HeaderMap,
    allowed: &AllowedOrigins,
) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(encoding.content_type()));
    if allow_origin(allowed, request, &mut parts.headers) {
        parts.headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("grpc-status, grpc-message, grpc-status-details-bin"),
        );
    }
    Response::from_parts(parts, Body::new(EncodeWeb { inner: body, encoding, done: false }))
}

/// The request body of text mode, decoded from base64 as it arrives. Chunks may end anywhere;
/// whole groups of four characters are decoded, the rest waits for the next chunk. Padding may
/// end any group (clients encode each message separately).
struct DecodeText<B> {
    inner: B,
    carry: BytesMut,
}

impl<B> HttpBody for DecodeText<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        loop {
            let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) if self.carry.is_empty() => return Poll::Ready(None),
                Poll::Ready(None) => {
                    return Poll::Ready(Some(Err(tonic::Status::invalid_argument(format!(
                        "grpc-web-text body ends inside a base64 group ({} characters left)",
                        self.carry.len()
                    )))));
                }
                Poll::Ready(Some(Err(error))) => {
                    return Poll::Ready(Some(Err(tonic::Status::from_error(error.into()))));
                }
                Poll::Ready(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else { continue };
            let this = &mut *self;
            this.carry.extend(data.iter().copied().filter(|b| !b.is_ascii_whitespace()));
            let whole = this.carry.len() / 4 * 4;
            if whole == 0 {
                continue;
            }
            let groups = this.carry.split_to(whole);
            let mut decoded = Vec::with_capacity(whole / 4 * 3);
            for group in groups.chunks(4) {
                STANDARD.decode_vec(group, &mut decoded).map_err(|error| {
                    tonic::Status::invalid_argument(format!("grpc-web-text body is not base64: {error}"))
                })?;
            }
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(decoded)))));
        }
    }
}

/// The response body in gRPC-Web's framing: data as is (or base64), trailers as a final frame.
/// In text mode each chunk is encoded on its own, padding included, so that a streamed message
/// reaches the client whole without waiting for the next; clients decode four characters at a
/// time.
struct EncodeWeb {
    inner: Body,
    encoding: Encoding,
    done: bool,
}

impl EncodeWeb {
    fn encode(&self, data: Bytes) -> Bytes {
        match self.encoding {
            Encoding::Binary => data,
            Encoding::Text => Bytes::from(STANDARD.encode(&data)),
        }
    }
}

impl HttpBody for EncodeWeb {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(status))) => {
                // The call failed mid-body: say so in a trailer frame, as a server would in
                // trailers.
                self.done = true;
                let mut trailers = HeaderMap::new();
                let _ = status.add_header(&mut trailers);
                Poll::Ready(Some(Ok(Frame::data(self.encode(trailer_frame(&trailers))))))
            }
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => Poll::Ready(Some(Ok(Frame::data(self.encode(data))))),
                Err(frame) => match frame.into_trailers() {
                    Ok(trailers) => {
                        self.done = true;
                        Poll::Ready(Some(Ok(Frame::data(self.encode(trailer_frame(&trailers))))))
                    }
                    Err(_) => Poll::Ready(Some(Ok(Frame::data(Bytes::new())))),
                },
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// The trailers as gRPC-Web's last frame: flag 0x80, length, `name:value\r\n` lines.
fn trailer_frame(trailers: &HeaderMap) -> Bytes {
    let mut lines = BytesMut::new();
    for (name, value) in trailers {
        lines.put_slice(name.as_str().as_bytes());
        lines.put_u8(b':');
        lines.put_slice(value.as_bytes());
        lines.put_slice(b"\r\n");
    }
    let mut frame = BytesMut::with_capacity(5 + lines.len());
    frame.put_u8(0x80);
    frame.put_u32(u32::try_from(lines.len()).unwrap_or(u32::MAX));
    frame.put_slice(&lines);
    frame.freeze()
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;

    fn request(body: &'static [u8], content_type: &'static str) -> Request<http_body_util::Full<Bytes>> {
        Request::post("/pkg.Service/Method")
            .header(header::CONTENT_TYPE, content_type)
            .body(http_body_util::Full::new(Bytes::from_static(body)))
            .expect("request")
    }

    #[test]
    fn content_types_name_the_encoding() {
        for (content_type, expected) in [
            ("application/grpc-web", Some(Encoding::Binary)),
            ("application/grpc-web+proto", Some(Encoding::Binary)),
            ("application/grpc-web-text", Some(Encoding::Text)),
            ("application/grpc-web-text+proto; charset=utf-8", Some(Encoding::Text)),
            ("application/grpc", None),
            ("application/json", None),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            assert_eq!(encoding(&headers), expected, "{content_type}");
        }
    }

    #[tokio::test]
    async fn text_requests_are_decoded_across_chunks_and_paddings() {
        // Two messages, each base64-encoded on its own (so padding sits mid-body).
        let first = STANDARD.encode([0u8, 0, 0, 0, 1, 42]);
        let second = STANDARD.encode([0u8, 0, 0, 0, 2, 7, 8]);
        let text: &'static str = Box::leak(format!("{first}{second}").into_boxed_str());
        let grpc = to_grpc(request(text.as_bytes(), "application/grpc-web-text"), Encoding::Text);
        assert_eq!(grpc.headers()[header::CONTENT_TYPE], "application/grpc");
        let body = grpc.into_body().collect().await.expect("decodes").to_bytes();
        assert_eq!(&body[..], &[0, 0, 0, 0, 1, 42, 0, 0, 0, 0, 2, 7, 8]);
    }

    #[tokio::test]
    async fn a_text_body_that_is_not_base64_is_an_error() {
        let grpc = to_grpc(request(b"!!!!", "application/grpc-web-text"), Encoding::Text);
        let error = grpc.into_body().collect().await.expect_err("not base64");
        assert!(error.to_string().contains("not base64"), "{error}");
        let grpc = to_grpc(request(b"AAAAAAE", "application/grpc-web-text"), Encoding::Text);
        let error = grpc.into_body().collect().await.expect_err("cut short");
        assert!(error.to_string().contains("ends inside a base64 group"), "{error}");
    }

    /// Feeds `text` to the text-mode decoder in chunks of `chunk` bytes.
    fn decode_in_chunks(text: &[u8], chunk: usize) -> Result<Vec<u8>, String> {
        let chunks: Vec<Result<Frame<Bytes>, std::convert::Infallible>> =
            text.chunks(chunk).map(|c| Ok(Frame::data(Bytes::copy_from_slice(c)))).collect();
        let body = http_body_util::StreamBody::new(futures::stream::iter(chunks));
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        runtime.block_on(async {
            DecodeText { inner: body, carry: BytesMut::new() }
                .collect()
                .await
                .map(|b| b.to_bytes().to_vec())
                .map_err(|e| e.to_string())
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, ..Default::default() })]

        /// Any bytes in any chunking: an error or bytes, never a panic.
        #[test]
        fn any_text_body_decodes_or_fails_cleanly(
            text in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120),
            chunk in 1..16usize,
        ) {
            let _ = decode_in_chunks(&text, chunk);
        }

        /// Messages encoded one by one (padding between them), chunked anywhere, come back whole.
        #[test]
        fn separately_encoded_messages_decode_in_any_chunking(
            messages in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40), 0..6),
            chunk in 1..16usize,
        ) {
            let text: String = messages.iter().map(|m| STANDARD.encode(m)).collect();
            let decoded = decode_in_chunks(text.as_bytes(), chunk).expect("valid base64");
            proptest::prop_assert_eq!(decoded, messages.concat());
        }
    }

    #[test]
    fn trailers_become_the_last_frame() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let frame = trailer_frame(&trailers);
        assert_eq!(&frame[..], b"\x80\x00\x00\x00\x0fgrpc-status:0\r\n");
    }

    fn preflight_from(origin: &str) -> Request<()> {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/pkg.Service/Method")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type,x-grpc-web")
            .body(())
            .expect("request")
    }

    #[test]
    fn preflights_allow_a_listed_origin_and_the_headers_asked_for() {
        let request = preflight_from("http://app.example");
        assert!(is_preflight(&request));
        assert!(asks_for_grpc_web(&request));
        let allowed = AllowedOrigins::List(vec!["http://app.example".into()]);
        let response = preflight(&request, &allowed);
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "http://app.example");
        assert_eq!(response.headers()[header::VARY], "origin");
        assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS], "content-type,x-grpc-web");
        let response = preflight(&request, &AllowedOrigins::Any);
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    }

    #[test]
    fn preflights_from_other_origins_are_refused_without_cors_headers() {
        let listed = AllowedOrigins::List(vec!["http://app.example".into()]);
        for (origin, allowed) in [
            ("http://app.example", &AllowedOrigins::None),
            ("http://evil.example", &listed),
            ("http://app.example:8080", &listed),
        ] {
            let response = preflight(&preflight_from(origin), allowed);
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{origin} with {allowed:?}");
            assert!(
                !response.headers().keys().any(|name| name.as_str().starts_with("access-control-")),
                "{origin}: {:?}",
                response.headers()
            );
        }
    }

    #[test]
    fn replies_carry_cors_headers_only_for_allowed_origins() {
        let mut request = HeaderMap::new();
        request.insert(header::ORIGIN, HeaderValue::from_static("http://evil.example"));
        let reply =
            from_grpc(Response::new(Body::empty()), Encoding::Binary, &request, &AllowedOrigins::None);
        assert!(!reply.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
        assert!(!reply.headers().contains_key(header::ACCESS_CONTROL_EXPOSE_HEADERS));
        let allowed = AllowedOrigins::List(vec!["http://evil.example".into()]);
        let reply = from_grpc(Response::new(Body::empty()), Encoding::Binary, &request, &allowed);
        assert_eq!(reply.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "http://evil.example");
        assert!(reply.headers().contains_key(header::ACCESS_CONTROL_EXPOSE_HEADERS));
    }
}
