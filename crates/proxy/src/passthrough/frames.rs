//! HTTP/2 (h2c, gRPC) forwarded frame by frame.
//!
//! The client's bytes reach the user port as they came, and the user port's bytes reach the
//! client as they came, on one upstream connection per client connection: settings, flow
//! control, pings, resets and HPACK state stay end to end, exactly as with opaque TCP. The
//! proxy only reads along (a [`FrameReader`] per direction) to meter each request: a client
//! `HEADERS` frame opening a stream starts its timer, and the user port's first non-1xx
//! response head (its `:status`, decoded by a passive [`hpack::Decoder`] that follows the user
//! port's encoder) or its `RST_STREAM` ends it.
//!
//! Why not serve and re-originate with an HTTP/2 stack (as `http.rs` does for HTTP/1.1): two
//! full stacks per hop cost about twice HAProxy's CPU per gRPC call (`benches/proxy_peers.rs`),
//! and a re-originated stream loses what the client and the user port said to each other
//! (resets with their reasons, window sizes, priorities).
//!
//! Architecture invariant: bytes are never altered, delayed for parsing, or dropped; whatever
//! the reader makes of them (including nonsense), forwarding goes on. When the response
//! direction cannot be followed (a header block that does not decode, or one larger than
//! [`MAX_BLOCK`]), the connection stops being metered, and its unfinished requests are
//! dropped uncounted, rather than counted wrong.

use std::collections::HashMap;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::detect::HTTP2_PREFACE;
use super::hpack;
use crate::metrics::{Metrics, RequestTimer};

/// Bytes read from one side before they are written to the other (per direction): one
/// default-sized DATA frame and its head.
const BUFFER: usize = 16 * 1024 + 9;

/// The largest response header block (all its frames) the meter follows.
pub const MAX_BLOCK: usize = 256 * 1024;

/// The most requests one connection has in flight that are metered; further ones pass
/// unmetered (the user port's `SETTINGS_MAX_CONCURRENT_STREAMS` normally bounds it far lower).
const MAX_PENDING: usize = 10_000;

/// The largest HPACK table the response decoder follows.
const MAX_TABLE: usize = 65_536;

const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const PUSH_PROMISE: u8 = 0x5;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;

const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// A frame's 9-byte head (RFC 9113, section 4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHead {
    /// Payload length.
    pub length: u32,
    /// Frame type.
    pub kind: u8,
    /// Flags.
    pub flags: u8,
    /// Stream identifier (the reserved bit cleared).
    pub stream: u32,
}

impl FrameHead {
    fn parse(bytes: &[u8; 9]) -> Self {
        FrameHead {
            length: u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]),
            kind: bytes[3],
            flags: bytes[4],
            stream: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff,
        }
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// What a [`FrameReader`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A frame's head, as soon as its 9 bytes have passed.
    Head(FrameHead),
    /// A whole frame whose payload was asked for.
    Frame(FrameHead, &'a [u8]),
    /// A frame whose payload was asked for but is larger than [`MAX_BLOCK`] (not kept).
    TooLarge(FrameHead),
}

/// Follows one direction's frames across reads of any size.
#[derive(Debug)]
pub struct FrameReader {
    /// Connection preface bytes still to pass before the first frame.
    preface: usize,
    head: [u8; 9],
    head_len: usize,
    /// The frame whose payload is passing, and how much of it is still to come.
    current: Option<(FrameHead, usize)>,
    /// Whether the current frame's payload is kept in `payload`.
    keep: bool,
    payload: Vec<u8>,
}

impl FrameReader {
    /// A reader for the client's direction (`preface`: it starts with the connection preface)
    /// or the user port's.
    pub fn new(preface: bool) -> Self {
        FrameReader {
            preface: if preface { HTTP2_PREFACE.len() } else { 0 },
            head: [0; 9],
            head_len: 0,
            current: None,
            keep: false,
            payload: Vec::new(),
        }
    }

    /// Reads along `bytes`, the next bytes of this direction; `keep(head)` says whether a
    /// frame's payload is wanted whole.
    pub fn feed(
        &mut self,
        mut bytes: &[u8],
        keep: impl Fn(&FrameHead) -> bool,
        mut on: impl FnMut(Event<'_>),
    ) {
        while !bytes.is_empty() {
            if self.preface > 0 {
                let n = self.preface.min(bytes.len());
                self.preface -= n;
                bytes = &bytes[n..];
                continue;
            }
            let Some((head, remaining)) = self.current else {
                let n = (9 - self.head_len).min(bytes.len());
                self.head[self.head_len..self.head_len + n].copy_from_slice(&bytes[..n]);
                self.head_len += n;
                bytes = &bytes[n..];
                if self.head_len == 9 {
                    self.head_len = 0;
                    let head = FrameHead::parse(&self.head);
                    on(Event::Head(head));
                    self.begin(head, &keep, &mut on);
                }
                continue;
            };
            let n = remaining.min(bytes.len());
            if self.keep {
                self.payload.extend_from_slice(&bytes[..n]);
            }
            bytes = &bytes[n..];
            if n == remaining {
                self.current = None;
                if self.keep {
                    on(Event::Frame(head, &self.payload));
                }
            } else {
                self.current = Some((head, remaining - n));
            }
        }
    }

    fn begin(&mut self, head: FrameHead, keep: &impl Fn(&FrameHead) -> bool, on: &mut impl FnMut(Event<'_>)) {
        let length = head.length as usize;
        self.keep = keep(&head);
        if self.keep && length > MAX_BLOCK {
            self.keep = false;
            on(Event::TooLarge(head));
        }
        self.payload.clear();
        if length == 0 {
            if self.keep {
                on(Event::Frame(head, &[]));
            }
        } else {
            self.current = Some((head, length));
        }
        // A burst of large header frames should not pin their memory for the connection's life.
        if !self.keep && self.payload.capacity() > 4096 {
            self.payload = Vec::new();
        }
    }
}

/// The header block being assembled from a HEADERS or PUSH_PROMISE frame and its
/// CONTINUATION frames.
#[derive(Debug)]
struct Block {
    stream: u32,
    /// A response head or trailers (HEADERS) rather than a promised request (PUSH_PROMISE).
    headers: bool,
}

/// Meters one forwarded HTTP/2 connection from the frames passing both ways.
pub struct Meter {
    metrics: Arc<Metrics>,
    /// Requests waiting for their response head, by stream.
    pending: HashMap<u32, RequestTimer>,
    /// The highest stream the client has opened.
    last_stream: u32,
    decoder: hpack::Decoder,
    block: Vec<u8>,
    open_block: Option<Block>,
    /// Whether the response direction is still followed.
    on: bool,
}

impl Meter {
    /// A meter reporting to `metrics` under the `http2` protocol label.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Meter {
            metrics,
            pending: HashMap::new(),
            last_stream: 0,
            decoder: hpack::Decoder::new(MAX_TABLE),
            block: Vec::new(),
            open_block: None,
            on: true,
        }
    }

    /// Requests in flight (opened, no response head yet).
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Whether the connection is still metered.
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Reads along bytes the client sent.
    pub fn client_bytes(&mut self, reader: &mut FrameReader, bytes: &[u8]) {
        reader.feed(
            bytes,
            |_| false,
            |event| {
                if let Event::Head(head) = event {
                    self.client_frame(head);
                }
            },
        );
    }

    /// Reads along bytes the user port sent.
    pub fn upstream_bytes(&mut self, reader: &mut FrameReader, bytes: &[u8]) {
        let on = self.on;
        let keep =
            |head: &FrameHead| on && matches!(head.kind, HEADERS | PUSH_PROMISE | CONTINUATION | GOAWAY);
        reader.feed(bytes, keep, |event| match event {
            Event::Head(head) => self.upstream_head(head),
            Event::Frame(head, payload) if head.kind == GOAWAY => self.goaway(payload),
            Event::Frame(head, payload) => self.upstream_header_frame(head, payload),
            // A GOAWAY with a huge debug text: its streams stay pending, counted at the end.
            Event::TooLarge(head) if head.kind == GOAWAY => {}
            Event::TooLarge(head) => self.stop(&format!("a header frame of {} bytes", head.length)),
        });
    }

    /// The connection ended; `upstream_failed`: the user port left first (or failed), so the
    /// requests it had not answered count as failed rather than abandoned by the client.
    pub fn finish(&mut self, upstream_failed: bool) {
        for (_, timer) in self.pending.drain() {
            if upstream_failed {
                timer.finish(None);
            }
        }
    }

    fn client_frame(&mut self, head: FrameHead) {
        match head.kind {
            // Client streams are odd and opened in increasing order; a HEADERS frame on an
            // older stream is trailers.
            HEADERS if head.stream % 2 == 1 && head.stream > self.last_stream => {
                self.last_stream = head.stream;
                if self.on && self.pending.len() < MAX_PENDING {
                    self.pending.insert(head.stream, self.metrics.request("http2"));
                }
            }
            // The client gave up on the request: not counted, as a dropped HTTP/1 request is not.
            RST_STREAM => {
                self.pending.remove(&head.stream);
            }
            _ => {}
        }
    }

    fn upstream_head(&mut self, head: FrameHead) {
        if head.kind == RST_STREAM
            && let Some(timer) = self.pending.remove(&head.stream)
        {
            timer.finish(None);
        }
    }

    /// The user port will process no stream above the GOAWAY's last stream: the client retries
    /// those elsewhere, so they are neither answered nor failed here (RFC 9113, section 6.8).
    fn goaway(&mut self, payload: &[u8]) {
        if let Some(&[a, b, c, d]) = payload.first_chunk::<4>() {
            let last = u32::from_be_bytes([a, b, c, d]) & 0x7fff_ffff;
            self.pending.retain(|&stream, _| stream <= last);
        }
    }

    fn upstream_header_frame(&mut self, head: FrameHead, payload: &[u8]) {
        if !self.on {
            return;
        }
        let fragment = match head.kind {
            HEADERS | PUSH_PROMISE => {
                if self.open_block.is_some() {
                    return self.stop("a header block interrupted by another");
                }
                let promised = if head.kind == PUSH_PROMISE { 4 } else { 0 };
                let priority = if head.kind == HEADERS && head.has(PRIORITY) { 5 } else { 0 };
                match unpad(head, payload, promised + priority) {
                    Some(fragment) => fragment,
                    None => return self.stop("a header frame with bad padding"),
                }
            }
            _ => {
                if self.open_block.as_ref().map(|block| block.stream) != Some(head.stream) {
                    return self.stop("a CONTINUATION frame outside a header block");
                }
                payload
            }
        };
        if self.block.len() + fragment.len() > MAX_BLOCK {
            return self.stop("a header block over the size limit");
        }
        self.block.extend_from_slice(fragment);
        if self.open_block.is_none() {
            self.open_block = Some(Block { stream: head.stream, headers: head.kind == HEADERS });
        }
        if head.has(END_HEADERS) {
            self.end_block();
        }
    }

    fn end_block(&mut self) {
        let Some(block) = self.open_block.take() else { return };
        let mut status = None;
        let decoded = self.decoder.decode(&self.block, |name, value| {
            if name == b":status" && status.is_none() {
                status = parse_status(value);
            }
        });
        self.block.clear();
        if self.block.capacity() > 4096 {
            self.block = Vec::new();
        }
        if let Err(error) = decoded {
            return self.stop(&format!("a header block that does not decode ({error})"));
        }
        if let (true, Some(status)) = (block.headers, status)
            && !(100..200).contains(&status)
            && let Some(timer) = self.pending.remove(&block.stream)
        {
            timer.finish(Some(status));
        }
    }

    fn stop(&mut self, why: &str) {
        if self.on {
            tracing::debug!(why, "an HTTP/2 connection is no longer metered");
            self.on = false;
            self.pending.clear();
            self.block = Vec::new();
            self.open_block = None;
        }
    }
}

/// A header frame's fragment: `payload` without its padding and the `skip` bytes (priority,
/// promised stream) before the fragment; `None` if the padding does not fit.
fn unpad(head: FrameHead, payload: &[u8], skip: usize) -> Option<&[u8]> {
    let (pad, rest) =
        if head.has(PADDED) { (usize::from(*payload.first()?), &payload[1..]) } else { (0, payload) };
    let end = rest.len().checked_sub(pad)?;
    rest.get(skip..end)
}

/// A `:status` value: three ASCII digits.
fn parse_status(value: &[u8]) -> Option<u16> {
    match value {
        [a, b, c] if value.iter().all(u8::is_ascii_digit) => {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => None,
    }
}

/// One direction of the connection: bytes read from one socket, read along, written to the other.
struct Pipe {
    buffer: Box<[u8]>,
    start: usize,
    end: usize,
    eof: bool,
    reader: FrameReader,
}

/// Why a [`Pipe`] stopped: its read side or its write side failed.
struct PipeError {
    reading: bool,
    error: io::Error,
}

impl Pipe {
    fn new(preface: bool) -> Self {
        Pipe {
            buffer: vec![0; BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            eof: false,
            reader: FrameReader::new(preface),
        }
    }

    /// Moves bytes until `from` ends (then shuts `to`'s writing side down) or a side fails.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        from: &mut (impl AsyncRead + Unpin),
        to: &mut (impl AsyncWrite + Unpin),
        mut read_along: impl FnMut(&mut FrameReader, &[u8]),
    ) -> Poll<Result<(), PipeError>> {
        let write_error = |error| PipeError { reading: false, error };
        loop {
            if self.start == self.end && !self.eof {
                let mut buf = ReadBuf::new(&mut self.buffer);
                ready!(Pin::new(&mut *from).poll_read(cx, &mut buf))
                    .map_err(|error| PipeError { reading: true, error })?;
                let n = buf.filled().len();
                if n == 0 {
                    self.eof = true;
                } else {
                    self.start = 0;
                    self.end = n;
                    read_along(&mut self.reader, &self.buffer[..n]);
                }
            }
            while self.start < self.end {
                let n = ready!(Pin::new(&mut *to).poll_write(cx, &self.buffer[self.start..self.end]))
                    .map_err(write_error)?;
                if n == 0 {
                    return Poll::Ready(Err(write_error(io::ErrorKind::WriteZero.into())));
                }
                self.start += n;
            }
            if self.eof {
                ready!(Pin::new(&mut *to).poll_shutdown(cx)).map_err(write_error)?;
                return Poll::Ready(Ok(()));
            }
        }
    }
}

/// Forwards an HTTP/2 client connection (its preface not yet read) to `upstream` until both
/// sides have closed, metering its requests into `metrics`.
pub async fn forward(
    mut client: impl AsyncRead + AsyncWrite + Unpin,
    mut upstream: TcpStream,
    metrics: Arc<Metrics>,
) -> io::Result<()> {
    let mut requests = Pipe::new(true);
    let mut responses = Pipe::new(false);
    let mut meter = Meter::new(metrics);
    let (mut requests_done, mut responses_done) = (false, false);
    // Which side's bytes ended first: the client's (it left) or the user port's.
    let mut upstream_first = false;
    let mut upstream_write_error: Option<io::Error> = None;
    // Which direction goes first alternates, so that neither starves the other of the task's
    // turn (tokio's budget ends a turn) while the other streams without pause.
    let mut responses_first = false;
    let outcome = poll_fn(|cx| {
        responses_first = !responses_first;
        for responses_turn in [responses_first, !responses_first] {
            if !responses_turn && !requests_done {
                match requests
                    .poll(cx, &mut client, &mut upstream, |reader, bytes| meter.client_bytes(reader, bytes))
                {
                    Poll::Ready(Ok(())) => requests_done = true,
                    // The user port is gone for writing; what it sent before still goes to the
                    // client.
                    Poll::Ready(Err(PipeError { reading: false, error })) => {
                        requests_done = true;
                        upstream_write_error = Some(error);
                    }
                    Poll::Ready(Err(PipeError { reading: true, error })) => {
                        return Poll::Ready(Err((false, error)));
                    }
                    Poll::Pending => {}
                }
            }
            if responses_turn && !responses_done {
                match responses
                    .poll(cx, &mut upstream, &mut client, |reader, bytes| meter.upstream_bytes(reader, bytes))
                {
                    Poll::Ready(Ok(())) => {
                        responses_done = true;
                        upstream_first |= !requests_done;
                    }
                    Poll::Ready(Err(PipeError { reading, error })) => {
                        return Poll::Ready(Err((reading, error)));
                    }
                    Poll::Pending => {}
                }
            }
        }
        if requests_done && responses_done {
            match upstream_write_error.take() {
                Some(error) => Poll::Ready(Err((true, error))),
                None => Poll::Ready(Ok(())),
            }
        } else {
            Poll::Pending
        }
    })
    .await;
    match outcome {
        Ok(()) => {
            meter.finish(upstream_first);
            Ok(())
        }
        Err((upstream_failed, error)) => {
            meter.finish(upstream_failed || upstream_first);
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut bytes = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        bytes.extend([kind, flags]);
        bytes.extend(stream.to_be_bytes());
        bytes.extend(payload);
        bytes
    }

    /// Every event the reader reports for `bytes` fed in pieces of `piece` bytes.
    fn events(bytes: &[u8], piece: usize, preface: bool) -> Vec<String> {
        let mut reader = FrameReader::new(preface);
        let mut seen = Vec::new();
        for chunk in bytes.chunks(piece) {
            reader.feed(chunk, |head| head.kind == HEADERS, |event| seen.push(format!("{event:?}")));
        }
        seen
    }

    #[test]
    fn the_reader_finds_the_same_frames_whatever_the_read_sizes() {
        let mut bytes = HTTP2_PREFACE.to_vec();
        bytes.extend(frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]));
        bytes.extend(frame(HEADERS, END_HEADERS, 1, b"\x82\x86"));
        bytes.extend(frame(0x0, 0x1, 1, &[7; 40_000]));
        bytes.extend(frame(HEADERS, END_HEADERS, 3, b""));
        let whole = events(&bytes, bytes.len(), true);
        assert_eq!(whole.len(), 6, "{whole:#?}");
        assert!(whole[2].contains("Frame") && whole[2].contains("[130, 134]"), "{whole:#?}");
        for piece in [1, 2, 7, 9, 10, 100, 16_393] {
            assert_eq!(events(&bytes, piece, true), whole, "pieces of {piece}");
        }
    }

    #[test]
    fn a_kept_frame_over_the_limit_is_reported_not_kept() {
        let bytes = frame(HEADERS, END_HEADERS, 1, &vec![0; MAX_BLOCK + 1]);
        let seen = events(&bytes, 4096, false);
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(seen[1].starts_with("TooLarge"), "{seen:?}");
    }

    #[test]
    fn padding_and_priority_are_stripped() {
        let head = |flags| FrameHead { length: 0, kind: HEADERS, flags, stream: 1 };
        assert_eq!(unpad(head(PADDED), &[2, b'a', b'b', 0, 0], 0), Some(&b"ab"[..]));
        assert_eq!(unpad(head(PADDED | PRIORITY), &[1, 0, 0, 0, 0, 9, b'a', 0], 5), Some(&b"a"[..]));
        assert_eq!(unpad(head(PADDED), &[5, b'a'], 0), None);
        assert_eq!(unpad(head(PADDED), &[], 0), None);
        assert_eq!(unpad(head(PRIORITY), &[0, 0], 5), None);
    }

    #[test]
    fn statuses_are_three_digits() {
        assert_eq!(parse_status(b"200"), Some(200));
        assert_eq!(parse_status(b"503"), Some(503));
        assert_eq!(parse_status(b"20"), None);
        assert_eq!(parse_status(b"2x0"), None);
        assert_eq!(parse_status(b"2000"), None);
    }

    fn counter(metrics: &Metrics, line_start: &str) -> u64 {
        let text = metrics.encode();
        text.lines()
            .find_map(|line| line.strip_prefix(line_start))
            .and_then(|rest| rest.trim().parse().ok())
            .unwrap_or(0)
    }

    /// A meter whose client has opened `streams` (each with one HEADERS frame), and the two
    /// directions' readers, past the preface.
    fn opened(streams: &[u32]) -> (Arc<Metrics>, Meter, FrameReader, FrameReader) {
        let metrics = Metrics::new();
        let mut meter = Meter::new(metrics.clone());
        let (mut client, upstream) = (FrameReader::new(true), FrameReader::new(false));
        let mut sent = HTTP2_PREFACE.to_vec();
        for &stream in streams {
            sent.extend(frame(HEADERS, END_HEADERS, stream, b"\x82\x86\x84"));
        }
        meter.client_bytes(&mut client, &sent);
        (metrics, meter, client, upstream)
    }

    /// The count of HTTP/2 requests with `status` (a class such as "2xx", or "error").
    fn requests(metrics: &Metrics, status: &str) -> u64 {
        counter(metrics, &format!("stead_proxy_requests_total{{protocol=\"http2\",status=\"{status}\"}}"))
    }

    #[test]
    fn requests_are_timed_from_their_headers_to_the_response_head() {
        let (metrics, mut meter, _, mut upstream) = opened(&[1, 3, 5, 7]);
        assert_eq!(meter.in_flight(), 4);
        // Stream 1: 100 Continue, then 200 (indexed, static) split over a CONTINUATION.
        let mut back = frame(HEADERS, END_HEADERS, 1, b"\x08\x03100");
        back.extend(frame(HEADERS, 0, 1, b""));
        back.extend(frame(CONTINUATION, END_HEADERS, 1, b"\x88"));
        // Stream 3: 503, a literal added to the table; stream 5 then refers to it (index 62).
        back.extend(frame(HEADERS, END_HEADERS | PADDED, 3, b"\x02\x48\x03503\0\0"));
        back.extend(frame(HEADERS, END_HEADERS, 5, b"\xbe"));
        // Stream 7: reset by the user port.
        back.extend(frame(RST_STREAM, 0, 7, &[0, 0, 0, 7]));
        for byte in back.chunks(1) {
            meter.upstream_bytes(&mut upstream, byte);
        }
        assert!(meter.is_on());
        assert_eq!(meter.in_flight(), 0);
        assert_eq!(requests(&metrics, "2xx"), 1);
        assert_eq!(requests(&metrics, "5xx"), 2);
        assert_eq!(requests(&metrics, "error"), 1);
    }

    #[test]
    fn trailers_client_resets_and_abandoned_requests_are_not_counted() {
        let metrics = Metrics::new();
        let mut meter = Meter::new(metrics.clone());
        let (mut client, mut upstream) = (FrameReader::new(true), FrameReader::new(false));
        let mut sent = HTTP2_PREFACE.to_vec();
        sent.extend(frame(HEADERS, END_HEADERS, 1, b"\x82"));
        sent.extend(frame(HEADERS, END_HEADERS, 1, b"")); // the client's trailers
        sent.extend(frame(HEADERS, END_HEADERS, 3, b"\x82"));
        sent.extend(frame(RST_STREAM, 0, 3, &[0, 0, 0, 8]));
        sent.extend(frame(HEADERS, END_HEADERS, 5, b"\x82"));
        meter.client_bytes(&mut client, &sent);
        assert_eq!(meter.in_flight(), 2);
        meter.upstream_bytes(&mut upstream, &frame(HEADERS, END_HEADERS, 3, b"\x88"));
        meter.finish(false);
        assert_eq!(meter.in_flight(), 0);
        let text = metrics.encode();
        assert!(!text.contains("stead_proxy_requests_total{protocol=\"http2\""), "{text}");
        assert!(text.contains("stead_proxy_requests_in_flight{protocol=\"http2\"} 0"), "{text}");
    }

    #[test]
    fn a_block_that_does_not_decode_stops_the_metering_not_the_reading() {
        let (metrics, mut meter, mut client, mut upstream) = opened(&[1, 3]);
        // Index 70 does not exist.
        meter.upstream_bytes(&mut upstream, &frame(HEADERS, END_HEADERS, 1, b"\xc6"));
        assert!(!meter.is_on());
        assert_eq!(meter.in_flight(), 0);
        meter.upstream_bytes(&mut upstream, &frame(HEADERS, END_HEADERS, 3, b"\x88"));
        meter.client_bytes(&mut client, &frame(HEADERS, END_HEADERS, 5, b""));
        assert_eq!(meter.in_flight(), 0);
        assert_eq!(requests(&metrics, "2xx"), 0);
    }

    #[test]
    fn streams_a_goaway_left_unprocessed_are_not_failures() {
        let (metrics, mut meter, _, mut upstream) = opened(&[1, 3, 5]);
        // GOAWAY, last stream 3: stream 5 was not processed (the client retries it); stream 3
        // was, and the user port leaves without answering it.
        let mut back = frame(GOAWAY, 0, 0, &[0, 0, 0, 3, 0, 0, 0, 0]);
        back.extend(frame(HEADERS, END_HEADERS | 0x1, 1, b"\x88"));
        meter.upstream_bytes(&mut upstream, &back);
        assert_eq!(meter.in_flight(), 1);
        meter.finish(true);
        assert_eq!(requests(&metrics, "2xx"), 1);
        assert_eq!(requests(&metrics, "error"), 1);
    }

    #[test]
    fn a_continuation_out_of_place_stops_the_metering() {
        let mut meter = Meter::new(Metrics::new());
        let mut upstream = FrameReader::new(false);
        meter.upstream_bytes(&mut upstream, &frame(CONTINUATION, END_HEADERS, 1, b"\x88"));
        assert!(!meter.is_on());
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_either_way_are_read_along_without_panicking(
            sent in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
            back in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
            piece in 1usize..64,
        ) {
            let mut meter = Meter::new(Metrics::new());
            let (mut client, mut upstream) = (FrameReader::new(true), FrameReader::new(false));
            for (a, b) in sent.chunks(piece).zip(back.chunks(piece)) {
                meter.client_bytes(&mut client, a);
                meter.upstream_bytes(&mut upstream, b);
            }
            meter.finish(true);
            proptest::prop_assert_eq!(meter.in_flight(), 0);
        }

        /// Well-framed nonsense reaches the meter's every branch (header blocks of random
        /// bytes, CONTINUATIONs out of place, resets of unknown streams, bad padding).
        #[test]
        fn any_frames_either_way_are_read_along_without_panicking(
            frames in proptest::collection::vec(
                (proptest::bool::ANY, 0u8..11, proptest::num::u8::ANY, 0u32..8,
                 proptest::collection::vec(proptest::num::u8::ANY, 0..24)),
                0..40,
            ),
        ) {
            let mut meter = Meter::new(Metrics::new());
            let (mut client, mut upstream) = (FrameReader::new(true), FrameReader::new(false));
            meter.client_bytes(&mut client, HTTP2_PREFACE);
            let mut opened = 0;
            for (from_client, kind, flags, stream, payload) in frames {
                let bytes = frame(kind, flags, stream, &payload);
                if from_client {
                    opened += usize::from(kind == HEADERS);
                    meter.client_bytes(&mut client, &bytes);
                } else {
                    meter.upstream_bytes(&mut upstream, &bytes);
                }
                proptest::prop_assert!(meter.in_flight() <= opened);
            }
            meter.finish(false);
            proptest::prop_assert_eq!(meter.in_flight(), 0);
        }
    }
}
