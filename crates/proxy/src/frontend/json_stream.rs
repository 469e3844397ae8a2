//! Streamed methods over HTTP/JSON, in grpc-gateway's shapes.
//!
//! Requests a client streams (client streaming, bidi) are one HTTP body holding a run of JSON
//! values, newline-delimited or simply concatenated; [`JsonSplitter`] finds where each value
//! ends without parsing it (so a value split across body chunks is scanned once, not reparsed
//! per chunk) and [`request_stream`] turns each into one request message as it arrives.
//!
//! Replies the server streams are a chunked body of newline-delimited JSON objects, each
//! `{"result": <message>}`; an error ends the body with `{"error": {"code", "message",
//! "details"}}`. As grpc-gateway does, the headers wait for the first item, so a stream that
//! fails before its first reply is answered with the error's HTTP status; after that the status
//! is 200 and only the error object says the stream failed.
//!
//! Architecture invariant: the splitter never panics and never holds more than one value's
//! bytes beyond the limit it was given (property tests below).

use std::convert::Infallible;

use bytes::{Buf as _, Bytes, BytesMut};
use futures::{StreamExt as _, stream};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::{Body as HttpBody, Frame};
use serde_json::Value as Json;
use tonic::Status;
use tonic::body::Body;

use super::http_status::{error_json, http_status};
use crate::entities::{ReplyStream, RequestStream};

/// Why a body of JSON values could not be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// One value is larger than the limit.
    #[error("a JSON message in the request body is larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body ended inside a value.
    #[error("the request body ends inside a JSON value")]
    Truncated,
}

/// What the scanner is inside of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inside {
    /// Between values (whitespace is dropped here).
    Nothing,
    /// An object or array, `depth` levels deep.
    Container { depth: usize, in_string: bool, escaped: bool },
    /// A top-level string.
    String { escaped: bool },
    /// A top-level number or literal: ends at whitespace or the start of another value.
    Scalar,
}

/// Splits concatenated JSON values into one slice per value; fed chunk by chunk.
#[derive(Debug)]
pub struct JsonSplitter {
    buffer: BytesMut,
    /// How much of `buffer` (the current value's start is always 0) has been scanned.
    scanned: usize,
    inside: Inside,
    limit: usize,
}

impl JsonSplitter {
    /// A splitter refusing values larger than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self { buffer: BytesMut::new(), scanned: 0, inside: Inside::Nothing, limit }
    }

    /// Adds the next chunk of the body.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
    }

    /// The next complete value, if there is one; `finished` says the body has ended (a
    /// trailing number then ends there, and a value cut short is an error).
    pub fn next_value(&mut self, finished: bool) -> Result<Option<Bytes>, SplitError> {
        while let Some(&byte) = self.buffer.get(self.scanned) {
            let (inside, complete_at) = self.step(byte);
            self.inside = inside;
            match complete_at {
                Some(end) if end > self.limit => return Err(SplitError::TooLarge { limit: self.limit }),
                Some(end) => return Ok(Some(self.take(end))),
                None if self.inside == Inside::Nothing => self.buffer.advance(1),
                None => self.scanned += 1,
            }
            if self.scanned > self.limit {
                return Err(SplitError::TooLarge { limit: self.limit });
            }
        }
        match self.inside {
            Inside::Nothing => Ok(None),
            Inside::Scalar if finished && self.buffer.len() > self.limit => {
                Err(SplitError::TooLarge { limit: self.limit })
            }
            Inside::Scalar if finished => Ok(Some(self.take(self.buffer.len()))),
            _ if finished => Err(SplitError::Truncated),
            _ => Ok(None),
        }
    }

    /// The value in `buffer[..end]`, removed; scanning restarts between values.
    fn take(&mut self, end: usize) -> Bytes {
        self.scanned = 0;
        self.inside = Inside::Nothing;
        self.buffer.split_to(end.min(self.buffer.len())).freeze()
    }

    /// One byte at `scanned`: the new state, and where the value ends if it ends here.
    fn step(&self, byte: u8) -> (Inside, Option<usize>) {
        let here = self.scanned;
        match self.inside {
            Inside::Nothing => match byte {
                b' ' | b'\t' | b'\r' | b'\n' => (Inside::Nothing, None),
                b'{' | b'[' => (Inside::Container { depth: 1, in_string: false, escaped: false }, None),
                b'"' => (Inside::String { escaped: false }, None),
                _ => (Inside::Scalar, None),
            },
            Inside::String { escaped: true } => (Inside::String { escaped: false }, None),
            Inside::String { escaped: false } => match byte {
                b'\\' => (Inside::String { escaped: true }, None),
                b'"' => (Inside::Nothing, Some(here + 1)),
                _ => (Inside::String { escaped: false }, None),
            },
            Inside::Scalar => match byte {
                b' ' | b'\t' | b'\r' | b'\n' | b'{' | b'[' | b'"' | b'}' | b']' | b',' => {
                    (Inside::Nothing, Some(here))
                }
                _ => (Inside::Scalar, None),
            },
            Inside::Container { depth, in_string: true, escaped } => {
                let (in_string, escaped) = match (escaped, byte) {
                    (true, _) => (true, false),
                    (false, b'\\') => (true, true),
                    (false, b'"') => (false, false),
                    (false, _) => (true, false),
                };
                (Inside::Container { depth, in_string, escaped }, None)
            }
            Inside::Container { depth, in_string: false, .. } => match byte {
                b'{' | b'[' => (
                    Inside::Container { depth: depth.saturating_add(1), in_string: false, escaped: false },
                    None,
                ),
                b'}' | b']' if depth <= 1 => (Inside::Nothing, Some(here + 1)),
                b'}' | b']' => {
                    (Inside::Container { depth: depth - 1, in_string: false, escaped: false }, None)
                }
                b'"' => (Inside::Container { depth, in_string: true, escaped: false }, None),
                _ => (Inside::Container { depth, in_string: false, escaped: false }, None),
            },
        }
    }
}

/// The messages of a streamed HTTP body: each JSON value goes through `convert` (which builds
/// the request message) as soon as it is complete. The stream ends after the first error: a
/// value that is not a valid message, a value too large, or the body failing.
pub fn request_stream<B, F>(body: B, limit: usize, convert: F) -> RequestStream
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display,
    F: FnMut(&[u8]) -> Result<Vec<u8>, Status> + Send + 'static,
{
    struct State<B, F> {
        body: B,
        splitter: JsonSplitter,
        finished: bool,
        convert: F,
    }
    let state = State { body, splitter: JsonSplitter::new(limit), finished: false, convert };
    stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        loop {
            match state.splitter.next_value(state.finished) {
                Ok(Some(value)) => {
                    return match (state.convert)(&value) {
                        Ok(message) => Some((Ok(Bytes::from(message)), Some(state))),
                        Err(status) => Some((Err(status), None)),
                    };
                }
                Ok(None) if state.finished => return None,
                Ok(None) => {}
                Err(error) => return Some((Err(Status::invalid_argument(error.to_string())), None)),
            }
            match state.body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        state.splitter.push(data);
                    }
                }
                Some(Err(error)) => {
                    let status = Status::cancelled(format!("reading the request body failed: {error}"));
                    return Some((Err(status), None));
                }
                None => state.finished = true,
            }
        }
    })
    .boxed()
}

/// One line of a streamed reply: `{"error": ..}` and a newline.
fn error_line(status: &Status) -> Bytes {
    line(&serde_json::json!({ "error": error_json(status) }))
}

fn line(value: &Json) -> Bytes {
    let mut bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// The chunked reply to a server-streaming call: waits for the first reply, then answers 200
/// with one `{"result": ..}` line per reply (`to_json` gives each reply's JSON) and an
/// `{"error": ..}` line if the stream fails; a failure before the first reply is answered with
/// its own HTTP status.
pub async fn stream_response<F>(mut replies: ReplyStream, to_json: F) -> Response<Body>
where
    F: Fn(&[u8]) -> Result<Json, Status> + Send + 'static,
{
    let result_line = move |reply: Result<Bytes, Status>| {
        reply.and_then(|bytes| to_json(&bytes)).map(|json| line(&serde_json::json!({"result": json})))
    };
    let first = replies.next().await.map(&result_line);
    let status = match &first {
        Some(Err(error)) => http_status(error.code()),
        _ => StatusCode::OK,
    };
    // Every line up to and including the first error, then the end.
    let lines = stream::iter(first).chain(replies.map(result_line)).scan(false, |failed, line| {
        let next = if *failed {
            None
        } else {
            Some(match line {
                Ok(bytes) => bytes,
                Err(status) => {
                    *failed = true;
                    error_line(&status)
                }
            })
        };
        futures::future::ready(next)
    });
    let body = StreamBody::new(lines.map(|bytes| Ok::<_, Infallible>(Frame::data(bytes))));
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Every value of `text` fed in `chunk`-byte pieces; `Err` at the first error.
    fn split_bytes(text: &[u8], chunk: usize, limit: usize) -> Result<Vec<Bytes>, SplitError> {
        let mut splitter = JsonSplitter::new(limit);
        let mut values = Vec::new();
        for piece in text.chunks(chunk.max(1)) {
            splitter.push(piece);
            while let Some(value) = splitter.next_value(false)? {
                values.push(value);
            }
        }
        while let Some(value) = splitter.next_value(true)? {
            values.push(value);
        }
        Ok(values)
    }

    /// As [`split_bytes`], as strings.
    fn split(text: &[u8], chunk: usize, limit: usize) -> Result<Vec<String>, SplitError> {
        let values = split_bytes(text, chunk, limit)?;
        Ok(values.iter().map(|v| String::from_utf8_lossy(v).into_owned()).collect())
    }

    #[test]
    fn splits_newline_delimited_and_concatenated_values() {
        let text = br#" {"a": "x}\"{", "b": [1, {"c": 2}]}
{"d": 1}{"e": "]"}  "str\"ing" 12 true [3]
"#;
        for chunk in [1, 2, 3, 7, 1000] {
            assert_eq!(
                split(text, chunk, 1000).expect("splits"),
                vec![
                    r#"{"a": "x}\"{", "b": [1, {"c": 2}]}"#,
                    r#"{"d": 1}"#,
                    r#"{"e": "]"}"#,
                    r#""str\"ing""#,
                    "12",
                    "true",
                    "[3]",
                ],
                "chunks of {chunk}"
            );
        }
        assert_eq!(split(b"", 1, 10).expect("empty"), Vec::<String>::new());
        assert_eq!(split(b" \n\t ", 1, 10).expect("blank"), Vec::<String>::new());
        assert_eq!(split(b"7", 1, 10).expect("a number at the end"), vec!["7"]);
    }

    #[test]
    fn refuses_truncated_and_oversized_values() {
        assert_eq!(split(br#"{"a": 1} {"b": "#, 4, 100), Err(SplitError::Truncated));
        assert_eq!(split(br#""open"#, 4, 100), Err(SplitError::Truncated));
        assert_eq!(split(br#"{"a": "0123456789"}"#, 4, 10), Err(SplitError::TooLarge { limit: 10 }));
        // Whitespace between values does not count towards the limit.
        assert_eq!(split(&[b' '; 100], 7, 10).expect("blank"), Vec::<String>::new());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        /// Any bytes, in any chunking: no panic, and no value longer than the limit.
        #[test]
        fn any_bytes_split_without_panic(
            text in prop::collection::vec(
                prop_oneof![
                    Just(b'{'), Just(b'}'), Just(b'['), Just(b']'), Just(b'"'), Just(b'\\'),
                    Just(b' '), Just(b'\n'), Just(b'1'), any::<u8>(),
                ],
                0..200,
            ),
            chunk in 1..20usize,
            limit in 1..50usize,
        ) {
            if let Ok(values) = split_bytes(&text, chunk, limit) {
                for value in values {
                    prop_assert!(value.len() <= limit, "{value:?} is over {limit}");
                }
            }
        }

        /// Valid JSON values, concatenated with or without whitespace, come back one by one
        /// (numbers need a separator: `1 2` is two values, `12` one).
        #[test]
        fn valid_values_come_back_whole(
            values in prop::collection::vec(
                prop_oneof![
                    Just(r#"{"a":[1,{"b":"}"}]}"#.to_string()),
                    Just(r#"[]"#.to_string()),
                    Just(r#""x\\\"y""#.to_string()),
                    Just("null".to_string()),
                    Just("-1.5e3".to_string()),
                    "\\{\"[a-z]{0,3}\":\"[a-z0-9 {}\\[\\]]{0,5}\"\\}",
                ],
                0..8,
            ),
            separator in prop_oneof![Just(""), Just("\n"), Just(" \r\n")],
            chunk in 1..30usize,
        ) {
            let scalar = |v: &str| !v.starts_with(['{', '[', '"']);
            let mut text = String::new();
            for (i, value) in values.iter().enumerate() {
                if i > 0 {
                    let both_scalars = scalar(value) && values.get(i - 1).is_some_and(|p| scalar(p));
                    text.push_str(if both_scalars && separator.is_empty() { " " } else { separator });
                }
                text.push_str(value);
            }
            let got = split(text.as_bytes(), chunk, 10_000).expect("valid JSON splits");
            prop_assert_eq!(&got, &values);
            for value in got {
                prop_assert!(serde_json::from_str::<Json>(&value).is_ok(), "{value:?}");
            }
        }
    }
}
