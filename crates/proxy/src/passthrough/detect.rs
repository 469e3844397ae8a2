//! Protocol detection from a connection's first bytes, without consuming them (peek).

use std::time::Duration;

use tokio::net::TcpStream;

/// What a client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.x: the first bytes are a request method and a space.
    Http1,
    /// HTTP/2 with prior knowledge (h2c, gRPC): the connection preface.
    Http2,
    /// Anything else, including protocols where the server speaks first.
    Opaque,
}

impl Protocol {
    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Http1 => "http1",
            Protocol::Http2 => "http2",
            Protocol::Opaque => "tcp",
        }
    }
}

/// The HTTP/2 client connection preface (RFC 9113, section 3.4).
pub const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const HTTP1_METHODS: &[&[u8]] =
    &[b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"OPTIONS ", b"PATCH ", b"CONNECT ", b"TRACE "];

/// The protocol of a connection that began with `bytes`; `None` if more bytes are needed.
pub fn classify(bytes: &[u8]) -> Option<Protocol> {
    let could_be = |token: &[u8]| {
        let n = bytes.len().min(token.len());
        bytes[..n] == token[..n]
    };
    if bytes.is_empty() {
        return None;
    }
    if could_be(HTTP2_PREFACE) {
        return if bytes.len() >= HTTP2_PREFACE.len() { Some(Protocol::Http2) } else { None };
    }
    let mut undecided = false;
    for method in HTTP1_METHODS {
        if could_be(method) {
            if bytes.len() >= method.len() {
                return Some(Protocol::Http1);
            }
            undecided = true;
        }
    }
    if undecided { None } else { Some(Protocol::Opaque) }
}

/// Peeks at the stream until its protocol is known; a client silent for `wait` is opaque.
pub async fn detect(stream: &TcpStream, wait: Duration) -> std::io::Result<Protocol> {
    let mut buf = [0u8; 32];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let peeked = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(peeked) => peeked?,
            Err(_) => return Ok(Protocol::Opaque),
        };
        if peeked == 0 {
            // The client closed before saying anything.
            return Ok(Protocol::Opaque);
        }
        if let Some(protocol) = classify(&buf[..peeked]) {
            return Ok(protocol);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(Protocol::Opaque);
        }
        // More bytes are on their way; peek returns at once while some are buffered.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_first_bytes() {
        assert_eq!(classify(HTTP2_PREFACE), Some(Protocol::Http2));
        assert_eq!(classify(b"PRI * HTTP/2.0\r\n"), None);
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Protocol::Http1));
        assert_eq!(classify(b"POST /x HTTP/1.1\r\n"), Some(Protocol::Http1));
        assert_eq!(classify(b"PO"), None);
        assert_eq!(classify(b"P"), None);
        assert_eq!(classify(b"PRX"), Some(Protocol::Opaque));
        assert_eq!(classify(b"\x16\x03\x01"), Some(Protocol::Opaque));
        assert_eq!(classify(b"hello"), Some(Protocol::Opaque));
        assert_eq!(classify(b"GETX"), Some(Protocol::Opaque));
        assert_eq!(classify(b""), None);
    }
}
