//! Forwarding of names outside the cluster domain to the host's resolvers.
//!
//! Upstreams are tried in order; the first that gives a usable answer wins. Each try is bounded
//! by [`UPSTREAM_TIMEOUT`]. UDP first; a truncated UDP answer is asked again over TCP. Replies are
//! accepted only from the upstream asked (connected socket), with the query's id and question.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long one upstream gets to answer one query (UDP and a TCP retry each).
pub(crate) const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// The UDP payload size this server advertises to upstreams (the common DNS-flag-day value).
const UPSTREAM_EDNS_PAYLOAD: u16 = 1232;

/// Why one upstream gave no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ForwardError {
    #[error("dns upstream {upstream} did not answer within {timeout:?}")]
    Timeout { upstream: SocketAddr, timeout: Duration },
    #[error("dns upstream {upstream}: {source}")]
    Io {
        upstream: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("dns upstream {upstream} sent an unreadable answer: {reason}")]
    BadAnswer { upstream: SocketAddr, reason: String },
    #[error("dns query for {name} cannot be encoded: {reason}")]
    Encode { name: String, reason: String },
    #[error("no dns upstream is configured")]
    NoUpstream,
}

/// The upstream list and the exchange with it.
#[derive(Debug, Clone)]
pub(crate) struct Forwarder {
    upstreams: Vec<SocketAddr>,
}

impl Forwarder {
    pub(crate) fn new(upstreams: Vec<SocketAddr>) -> Self {
        Self { upstreams }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.upstreams.is_empty()
    }

    /// Asks the upstreams in order. An upstream answering SERVFAIL, REFUSED or NOTIMP counts as
    /// not answering, but its answer is relayed if no later upstream does better.
    pub(crate) async fn forward(
        &self,
        query: &Query,
        recursion_desired: bool,
    ) -> Result<Message, ForwardError> {
        let mut last = Err(ForwardError::NoUpstream);
        for &upstream in &self.upstreams {
            match ask(upstream, query, recursion_desired).await {
                Ok(answer) if !is_failure(answer.metadata.response_code) => return Ok(answer),
                Ok(answer) => last = Ok(answer),
                Err(error) => {
                    tracing::debug!(%error, "dns: forwarding failed, trying the next upstream");
                    if last.is_err() {
                        last = Err(error);
                    }
                }
            }
        }
        last
    }
}

fn is_failure(code: ResponseCode) -> bool {
    matches!(code, ResponseCode::ServFail | ResponseCode::Refused | ResponseCode::NotImp)
}

/// One upstream, one question: UDP, then TCP if the UDP answer was truncated.
async fn ask(upstream: SocketAddr, query: &Query, recursion_desired: bool) -> Result<Message, ForwardError> {
    let id = random_id();
    let mut request = Message::query();
    request.metadata.id = id;
    request.metadata.recursion_desired = recursion_desired;
    request.add_query(query.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(UPSTREAM_EDNS_PAYLOAD);
    request.set_edns(edns);
    let bytes = request
        .to_vec()
        .map_err(|e| ForwardError::Encode { name: query.name().to_string(), reason: e.to_string() })?;

    let timeout =
        |_: tokio::time::error::Elapsed| ForwardError::Timeout { upstream, timeout: UPSTREAM_TIMEOUT };
    let answer = tokio::time::timeout(UPSTREAM_TIMEOUT, udp_exchange(upstream, &bytes, id, query))
        .await
        .map_err(timeout)??;
    if !answer.metadata.truncation {
        return Ok(answer);
    }
    tokio::time::timeout(UPSTREAM_TIMEOUT, tcp_exchange(upstream, &bytes, id, query))
        .await
        .map_err(timeout)?
}

async fn udp_exchange(
    upstream: SocketAddr,
    bytes: &[u8],
    id: u16,
    query: &Query,
) -> Result<Message, ForwardError> {
    let io = |source| ForwardError::Io { upstream, source };
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await.map_err(io)?;
    socket.connect(upstream).await.map_err(io)?;
    socket.send(bytes).await.map_err(io)?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buf).await.map_err(io)?;
        // A datagram that is not the answer to this question is dropped, and we keep waiting.
        if let Some(answer) = matching_answer(&buf[..n], id, query) {
            return Ok(answer);
        }
    }
}

async fn tcp_exchange(
    upstream: SocketAddr,
    bytes: &[u8],
    id: u16,
    query: &Query,
) -> Result<Message, ForwardError> {
    let io = |source| ForwardError::Io { upstream, source };
    let len = u16::try_from(bytes.len()).map_err(|_| ForwardError::Encode {
        name: query.name().to_string(),
        reason: format!("query of {} bytes is too long for tcp", bytes.len()),
    })?;
    let mut stream = TcpStream::connect(upstream).await.map_err(io)?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await.map_err(io)?;
    let answer_len = stream.read_u16().await.map_err(io)?;
    let mut buf = vec![0u8; usize::from(answer_len)];
    stream.read_exact(&mut buf).await.map_err(io)?;
    matching_answer(&buf, id, query).ok_or_else(|| ForwardError::BadAnswer {
        upstream,
        reason: "tcp answer does not match the question".to_string(),
    })
}

/// The message in `bytes` if it is a response to exactly this id and question.
fn matching_answer(bytes: &[u8], id: u16, query: &Query) -> Option<Message> {
    let message = Message::from_vec(bytes).ok()?;
    let matches = message.metadata.id == id
        && message.metadata.message_type == hickory_proto::op::MessageType::Response
        && message.queries.len() == 1
        && message.queries[0] == *query;
    matches.then_some(message)
}

/// An unpredictable query id (std's randomly keyed hasher; no extra dependency).
fn random_id() -> u16 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(0);
    hasher.finish().to_le_bytes()[0..2].iter().fold(0u16, |acc, b| (acc << 8) | u16::from(*b))
}
