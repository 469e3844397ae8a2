//! [`ClusterHandler`]: hickory's `RequestHandler` over the swappable zone.
//!
//! One query in, one response out: the zone answers names in the cluster domain (and PTRs for
//! its addresses) authoritatively; everything else goes to the [`Forwarder`]. The zone is read
//! through `ArcSwap::load_full`, so a query sees one whole snapshot even while an update lands.

use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Header, HeaderCounts, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Record};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use crate::forward::Forwarder;
use crate::zone::{Lookup, Zone};

/// Largest UDP payload this server will fill, whatever a client advertises.
const MAX_UDP_PAYLOAD: u16 = 4096;

/// The request handler the hickory `Server` runs.
#[derive(Debug, Clone)]
pub(crate) struct ClusterHandler {
    pub(crate) zone: Arc<ArcSwap<Zone>>,
    pub(crate) forwarder: Arc<Forwarder>,
}

/// The response, before it is encoded.
struct Planned<'a> {
    code: ResponseCode,
    authoritative: bool,
    recursion_available: bool,
    answers: Vec<&'a Record>,
    authorities: Vec<&'a Record>,
    additionals: Vec<&'a Record>,
}

impl Planned<'_> {
    fn error(code: ResponseCode) -> Self {
        Planned {
            code,
            authoritative: false,
            recursion_available: false,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for ClusterHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let zone = self.zone.load_full();
        let mut forwarded: Option<Message> = None;

        // EDNS: answer with OPT when asked with it, within the client's advertised payload.
        let response_edns = request.edns.as_ref().map(|req| {
            let mut edns = Edns::new();
            edns.set_max_payload(req.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            edns.set_version(0);
            edns
        });
        let bad_version = request.edns.as_ref().is_some_and(|edns| edns.version() > 0);

        let planned = if request.metadata.message_type != MessageType::Query
            || request.metadata.op_code != OpCode::Query
        {
            Planned::error(ResponseCode::NotImp)
        } else if bad_version {
            Planned::error(ResponseCode::BADVERS)
        } else {
            match request.request_info() {
                Err(_) => Planned::error(ResponseCode::FormErr),
                Ok(info) if info.query.query_class() != DNSClass::IN => Planned::error(ResponseCode::Refused),
                Ok(info) => match zone.lookup(info.query.name(), info.query.query_type()) {
                    Lookup::Answer { code, answers, authority, additionals } => Planned {
                        code,
                        authoritative: true,
                        recursion_available: !self.forwarder.is_empty(),
                        answers,
                        authorities: authority.into_iter().collect(),
                        additionals,
                    },
                    Lookup::Outside if self.forwarder.is_empty() => Planned::error(ResponseCode::Refused),
                    Lookup::Outside => {
                        let query = info.query.original();
                        match self.forwarder.forward(query, request.metadata.recursion_desired).await {
                            Ok(message) => {
                                forwarded = Some(message);
                                Planned::error(ResponseCode::NoError)
                            }
                            Err(error) => {
                                tracing::info!(%error, name = %query.name(), "dns: no upstream answered");
                                Planned::error(ResponseCode::ServFail)
                            }
                        }
                    }
                },
            }
        };
        let planned = match &forwarded {
            Some(message) => relay(message),
            None => planned,
        };

        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = planned.code;
        metadata.authoritative = planned.authoritative;
        metadata.recursion_available = planned.recursion_available;
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = &response_edns {
            builder.edns(edns);
        }
        let response = builder.build(
            metadata,
            planned.answers,
            planned.authorities,
            std::iter::empty(),
            planned.additionals,
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                tracing::warn!(%error, "dns: cannot send response");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header { metadata, counts: HeaderCounts::default() })
            }
        }
    }
}

/// An upstream's answer, to send on as ours: its code and sections, not authoritative.
fn relay(message: &Message) -> Planned<'_> {
    Planned {
        code: message.metadata.response_code,
        authoritative: false,
        recursion_available: message.metadata.recursion_available,
        answers: message.answers.iter().collect(),
        authorities: message.authorities.iter().collect(),
        additionals: message.additionals.iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::sync::Mutex;

    use hickory_proto::op::Query;
    use hickory_proto::rr::{Name, RecordType};
    use hickory_proto::serialize::binary::BinEncoder;
    use hickory_server::net::NetError;
    use hickory_server::net::runtime::TokioTime;
    use hickory_server::net::xfer::Protocol;
    use hickory_server::zone_handler::MessageResponse;
    use proptest::prelude::*;

    use super::*;
    use crate::records::Records;
    use crate::zone::{ZoneParams, parse_fqdn};

    /// A response handler that encodes into memory, as the UDP path would (512-byte limit
    /// unless EDNS says more).
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<Vec<u8>>>>);

    #[async_trait::async_trait]
    impl ResponseHandler for Capture {
        async fn send_response<'a>(
            &mut self,
            response: MessageResponse<
                '_,
                'a,
                impl Iterator<Item = &'a Record> + Send + 'a,
                impl Iterator<Item = &'a Record> + Send + 'a,
                impl Iterator<Item = &'a Record> + Send + 'a,
                impl Iterator<Item = &'a Record> + Send + 'a,
            >,
        ) -> Result<ResponseInfo, NetError> {
            let max = response.edns().map_or(512, |e| e.max_payload());
            let mut bytes = Vec::new();
            let mut encoder = BinEncoder::new(&mut bytes);
            encoder.set_max_size(max);
            let info = response.destructive_emit(&mut encoder)?;
            self.0.lock().map_err(|_| NetError::from("poisoned"))?.push(bytes);
            Ok(info)
        }
    }

    fn handler() -> ClusterHandler {
        let params = ZoneParams {
            origin: parse_fqdn("cluster.local").unwrap(),
            ttl: 30,
            serial: 1,
            ns_addrs: vec![Ipv4Addr::new(10, 244, 0, 1)],
        };
        let mut records = Records::new();
        for i in 0..40 {
            records.add_a("web.default.svc.cluster.local", Ipv4Addr::new(10, 244, 0, i));
            records.add_srv(
                "_http._tcp.web.default.svc.cluster.local",
                80,
                &format!("w{i}.web.default.svc.cluster.local"),
                0,
                1,
            );
        }
        ClusterHandler {
            zone: Arc::new(ArcSwap::from_pointee(Zone::build(&params, &records))),
            // No upstream: everything outside is REFUSED, so the handler does no IO.
            forwarder: Arc::new(Forwarder::new(Vec::new())),
        }
    }

    /// Decodes like the server does, runs the handler, and returns what it sent.
    fn handle(handler: &ClusterHandler, bytes: Vec<u8>) -> Option<Vec<Vec<u8>>> {
        let src: SocketAddr = "127.0.0.1:5353".parse().ok()?;
        let request = Request::from_bytes(bytes, src, Protocol::Udp).ok()?;
        let capture = Capture::default();
        RUNTIME.with(|rt| rt.block_on(handler.handle_request::<_, TokioTime>(&request, capture.clone())));
        let sent = capture.0.lock().ok()?.clone();
        Some(sent)
    }

    thread_local! {
        static RUNTIME: tokio::runtime::Runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("test runtime");
    }
    static HANDLER: std::sync::LazyLock<ClusterHandler> = std::sync::LazyLock::new(handler);

    fn query_bytes(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 42;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    #[test]
    fn a_valid_query_is_answered_once_and_fits_udp() {
        let sent =
            handle(&handler(), query_bytes("web.default.svc.cluster.local.", RecordType::SRV)).unwrap();
        assert_eq!(sent.len(), 1);
        assert!(sent[0].len() <= 512);
        let m = Message::from_vec(&sent[0]).unwrap();
        assert_eq!(m.metadata.id, 42);
        assert!(m.metadata.authoritative);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Arbitrary bytes never panic decoding or handling; whatever is sent back decodes.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Some(sent) = handle(&HANDLER, bytes) {
                for out in sent {
                    prop_assert!(out.len() <= 512);
                    prop_assert!(Message::from_vec(&out).is_ok());
                }
            }
        }

        /// A valid query with arbitrary bytes flipped: deeper into the parser than pure noise.
        #[test]
        fn mutated_queries_never_panic(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            t in prop_oneof![Just(RecordType::A), Just(RecordType::SRV), Just(RecordType::PTR), Just(RecordType::ANY)],
        ) {
            let mut bytes = query_bytes("_http._tcp.web.default.svc.cluster.local.", t);
            for (i, b) in flips {
                let len = bytes.len();
                bytes[i % len] ^= b;
            }
            if let Some(sent) = handle(&HANDLER, bytes) {
                for out in sent {
                    prop_assert!(Message::from_vec(&out).is_ok());
                }
            }
        }
    }
}
