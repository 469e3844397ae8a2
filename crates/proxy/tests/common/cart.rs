//! The shopping cart used by the runtime tests and the benchmark: the generated client and
//! server (from `examples/shopping-cart-python/proto`, built by the crate's build script) and a
//! user function written in Rust with tonic, speaking the CloudState protocol as a support library
//! would.

#![allow(dead_code, non_camel_case_types, clippy::all, clippy::pedantic)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;

use futures::Stream;
use prost::Message as _;
use prost_types::Any;
use stead_proxy::protocol::cloudstate::entity_discovery_server::{EntityDiscovery, EntityDiscoveryServer};
use stead_proxy::protocol::cloudstate::eventsourced::event_sourced_server::{
    EventSourced, EventSourcedServer,
};
use stead_proxy::protocol::cloudstate::eventsourced::{
    EventSourcedReply, EventSourcedStreamIn, EventSourcedStreamOut, event_sourced_stream_in,
    event_sourced_stream_out,
};
use stead_proxy::protocol::cloudstate::{
    ClientAction, Entity, EntitySpec, Failure, ProxyInfo, Reply, ServiceInfo, UserFunctionError,
    client_action,
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

/// Package `com.example.shoppingcart`.
pub mod api {
    include!(concat!(env!("OUT_DIR"), "/shoppingcart/com.example.shoppingcart.rs"));
    /// Package `com.example.shoppingcart.persistence`.
    pub mod persistence {
        include!(concat!(env!("OUT_DIR"), "/shoppingcart/com.example.shoppingcart.persistence.rs"));
    }
}

/// The shopping cart's descriptors (what the Python user function loads too).
pub const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/shoppingcart/descriptor.bin"));
/// Where the descriptors are on disk.
pub const DESCRIPTORS_PATH: &str = concat!(env!("OUT_DIR"), "/shoppingcart/descriptor.bin");
/// The service name.
pub const SERVICE: &str = "com.example.shoppingcart.ShoppingCart";
/// The entity's persistence id.
pub const PERSISTENCE_ID: &str = "shopping-cart";

fn any(type_name: &str, message: &impl prost::Message) -> Any {
    Any { type_url: format!("type.googleapis.com/{type_name}"), value: message.encode_to_vec() }
}

/// The cart: product id -> (name, quantity).
type Cart = BTreeMap<String, (String, i32)>;

fn apply(cart: &mut Cart, event: &Any) {
    if event.type_url.ends_with(".ItemAdded") {
        if let Ok(added) = api::persistence::ItemAdded::decode(event.value.as_slice()) {
            let item = added.item.unwrap_or_default();
            let entry = cart.entry(item.product_id).or_insert((item.name, 0));
            entry.1 += item.quantity;
        }
    } else if event.type_url.ends_with(".ItemRemoved") {
        if let Ok(removed) = api::persistence::ItemRemoved::decode(event.value.as_slice()) {
            cart.remove(&removed.product_id);
        }
    }
}

fn snapshot(cart: &Cart) -> Any {
    let items = cart
        .iter()
        .map(|(id, (name, quantity))| api::persistence::LineItem {
            product_id: id.clone(),
            name: name.clone(),
            quantity: *quantity,
        })
        .collect();
    any("com.example.shoppingcart.persistence.Cart", &api::persistence::Cart { items })
}

/// Handles one command against the cart; returns the reply (events applied).
fn command(
    cart: &mut Cart,
    id: i64,
    name: &str,
    payload: &[u8],
    snapshot_every: usize,
    seq: &mut usize,
) -> EventSourcedReply {
    let mut events = Vec::new();
    let action = match name {
        "AddItem" => {
            let add = api::AddLineItem::decode(payload).unwrap_or_default();
            if add.quantity <= 0 {
                client_action::Action::Failure(Failure {
                    command_id: id,
                    description: format!("Cannot add negative quantity of to item {}", add.product_id),
                    restart: false,
                })
            } else {
                let item = api::persistence::LineItem {
                    product_id: add.product_id,
                    name: add.name,
                    quantity: add.quantity,
                };
                events.push(any(
                    "com.example.shoppingcart.persistence.ItemAdded",
                    &api::persistence::ItemAdded { item: Some(item) },
                ));
                client_action::Action::Reply(Reply {
                    payload: Some(any("google.protobuf.Empty", &())),
                    metadata: None,
                })
            }
        }
        "RemoveItem" => {
            let remove = api::RemoveLineItem::decode(payload).unwrap_or_default();
            if cart.contains_key(&remove.product_id) {
                events.push(any(
                    "com.example.shoppingcart.persistence.ItemRemoved",
                    &api::persistence::ItemRemoved { product_id: remove.product_id },
                ));
                client_action::Action::Reply(Reply {
                    payload: Some(any("google.protobuf.Empty", &())),
                    metadata: None,
                })
            } else {
                client_action::Action::Failure(Failure {
                    command_id: id,
                    description: format!(
                        "Cannot remove item {} because it is not in the cart.",
                        remove.product_id
                    ),
                    restart: false,
                })
            }
        }
        "GetCart" => {
            let items = cart
                .iter()
                .map(|(id, (name, quantity))| api::LineItem {
                    product_id: id.clone(),
                    name: name.clone(),
                    quantity: *quantity,
                })
                .collect();
            client_action::Action::Reply(Reply {
                payload: Some(any("com.example.shoppingcart.Cart", &api::Cart { items })),
                metadata: None,
            })
        }
        other => client_action::Action::Failure(Failure {
            command_id: id,
            description: format!("unknown command {other}"),
            restart: false,
        }),
    };
    for event in &events {
        apply(cart, event);
    }
    let before = *seq;
    *seq += events.len();
    let snapshot =
        (snapshot_every > 0 && !events.is_empty() && before / snapshot_every != *seq / snapshot_every)
            .then(|| snapshot(cart));
    EventSourcedReply {
        command_id: id,
        client_action: Some(ClientAction { action: Some(action) }),
        side_effects: Vec::new(),
        events,
        snapshot,
    }
}

/// The Rust user function.
#[derive(Clone, Debug)]
pub struct CartFunction {
    /// Take a snapshot every this many events (0: never).
    pub snapshot_every: usize,
}

#[tonic::async_trait]
impl EntityDiscovery for CartFunction {
    async fn discover(&self, _request: Request<ProxyInfo>) -> Result<Response<EntitySpec>, Status> {
        Ok(Response::new(EntitySpec {
            proto: DESCRIPTORS.to_vec(),
            entities: vec![Entity {
                entity_type: "cloudstate.eventsourced.EventSourced".into(),
                service_name: SERVICE.into(),
                persistence_id: PERSISTENCE_ID.into(),
                passivation_strategy: None,
            }],
            service_info: Some(ServiceInfo {
                service_name: "cart".into(),
                support_library_name: "stead-tests".into(),
                protocol_major_version: 0,
                protocol_minor_version: 2,
                ..ServiceInfo::default()
            }),
        }))
    }

    async fn report_error(&self, request: Request<UserFunctionError>) -> Result<Response<()>, Status> {
        eprintln!("user function got an error report: {}", request.into_inner().message);
        Ok(Response::new(()))
    }
}

#[tonic::async_trait]
impl EventSourced for CartFunction {
    type handleStream = Pin<Box<dyn Stream<Item = Result<EventSourcedStreamOut, Status>> + Send>>;

    async fn handle(
        &self,
        request: Request<Streaming<EventSourcedStreamIn>>,
    ) -> Result<Response<Self::handleStream>, Status> {
        let mut incoming = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let snapshot_every = self.snapshot_every;
        tokio::spawn(async move {
            let mut cart = Cart::new();
            let mut seq = 0usize;
            while let Ok(Some(message)) = incoming.message().await {
                match message.message {
                    Some(event_sourced_stream_in::Message::Init(init)) => {
                        if let Some(snap) = init.snapshot {
                            seq = snap.snapshot_sequence as usize;
                            let snap = snap.snapshot.unwrap_or_default();
                            let decoded =
                                api::persistence::Cart::decode(snap.value.as_slice()).unwrap_or_default();
                            for item in decoded.items {
                                cart.insert(item.product_id, (item.name, item.quantity));
                            }
                        }
                    }
                    Some(event_sourced_stream_in::Message::Event(event)) => {
                        seq = event.sequence as usize;
                        apply(&mut cart, &event.payload.unwrap_or_default());
                    }
                    Some(event_sourced_stream_in::Message::Command(c)) => {
                        let payload = c.payload.unwrap_or_default();
                        let reply =
                            command(&mut cart, c.id, &c.name, &payload.value, snapshot_every, &mut seq);
                        let out = EventSourcedStreamOut {
                            message: Some(event_sourced_stream_out::Message::Reply(reply)),
                        };
                        if tx.send(Ok(out)).await.is_err() {
                            return;
                        }
                    }
                    None => {}
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Serves the Rust user function on a loopback port; returns its address.
pub async fn serve_user_function(function: CartFunction) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds a loopback port");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(EntityDiscoveryServer::new(function.clone()))
            .add_service(EventSourcedServer::new(function))
            .serve_with_incoming(nodelay_incoming(listener))
            .await;
    });
    addr
}

/// `listener`'s connections with TCP_NODELAY, as gRPC servers set it (tonic only on listeners
/// it binds itself; grpcio always). Without it, Nagle holds a small reply until the peer's next
/// request carries the ACK: on the one connection to the user function that every entity
/// shares, that put about 1 ms (the gap between calls at 1k calls/s) into every entity-mode
/// call of `benches/proxy_hop.rs`; on a baseline server, delayed ACKs put ~40 ms into its p99.
pub fn nodelay_incoming(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt as _;
    TcpListenerStream::new(listener).map(|accepted| {
        accepted.inspect(|stream| {
            let _ = stream.set_nodelay(true);
        })
    })
}

/// A direct ShoppingCart gRPC server (no proxy, state in memory): the benchmark's baseline.
#[derive(Debug, Default)]
pub struct DirectCart {
    carts: std::sync::Mutex<BTreeMap<String, Cart>>,
}

#[tonic::async_trait]
impl api::shopping_cart_server::ShoppingCart for DirectCart {
    async fn add_item(&self, request: Request<api::AddLineItem>) -> Result<Response<()>, Status> {
        let add = request.into_inner();
        let mut carts = self.carts.lock().map_err(|_| Status::internal("poisoned"))?;
        let entry = carts.entry(add.user_id).or_default().entry(add.product_id).or_insert((add.name, 0));
        entry.1 += add.quantity;
        Ok(Response::new(()))
    }

    async fn remove_item(&self, request: Request<api::RemoveLineItem>) -> Result<Response<()>, Status> {
        let remove = request.into_inner();
        let mut carts = self.carts.lock().map_err(|_| Status::internal("poisoned"))?;
        carts.entry(remove.user_id).or_default().remove(&remove.product_id);
        Ok(Response::new(()))
    }

    async fn get_cart(&self, request: Request<api::GetShoppingCart>) -> Result<Response<api::Cart>, Status> {
        let carts = self.carts.lock().map_err(|_| Status::internal("poisoned"))?;
        let items = carts
            .get(&request.into_inner().user_id)
            .map(|cart| {
                cart.iter()
                    .map(|(id, (name, quantity))| api::LineItem {
                        product_id: id.clone(),
                        name: name.clone(),
                        quantity: *quantity,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Response::new(api::Cart { items }))
    }
}

/// Serves [`DirectCart`] on a loopback port, with TCP_NODELAY on every accepted connection
/// ([`nodelay_incoming`]), as the proxy sets on its own sockets.
pub async fn serve_direct() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds a loopback port");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(api::shopping_cart_server::ShoppingCartServer::new(DirectCart::default()))
            .serve_with_incoming(nodelay_incoming(listener))
            .await;
    });
    addr
}

/// A client of the shopping cart at `addr`, retrying the connection for up to 20 s.
pub async fn client(
    addr: SocketAddr,
) -> api::shopping_cart_client::ShoppingCartClient<tonic::transport::Channel> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match tonic::transport::Endpoint::from_shared(format!("http://{addr}")).expect("uri").connect().await
        {
            Ok(channel) => return api::shopping_cart_client::ShoppingCartClient::new(channel),
            Err(error) => {
                assert!(tokio::time::Instant::now() < deadline, "cannot connect to {addr}: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// The client type [`client`] returns.
pub type Client = api::shopping_cart_client::ShoppingCartClient<tonic::transport::Channel>;

/// An item to add.
pub fn line(user: &str, product: &str, name: &str, quantity: i32) -> api::AddLineItem {
    api::AddLineItem { user_id: user.into(), product_id: product.into(), name: name.into(), quantity }
}

/// `user`'s cart over gRPC, as (product id, name, quantity) triples.
pub async fn get(client: &mut Client, user: &str) -> Vec<(String, String, i32)> {
    let cart = client.get_cart(api::GetShoppingCart { user_id: user.into() }).await.expect("GetCart");
    items(&cart.into_inner())
}

/// The Rust cart user function (no snapshots) behind a proxy with the in-memory store, once the
/// proxy is ready.
pub async fn proxy_in_memory() -> super::RunningProxy {
    proxy_in_memory_with(|_| {}).await
}

/// As [`proxy_in_memory`], with the proxy's configuration changed by `configure` first.
pub async fn proxy_in_memory_with(
    configure: impl FnOnce(&mut stead_proxy::ProxyConfig),
) -> super::RunningProxy {
    let user = serve_user_function(CartFunction { snapshot_every: 0 }).await;
    let mut config = stead_proxy::ProxyConfig::local("127.0.0.1:0".parse().expect("addr"), user);
    configure(&mut config);
    let proxy = super::start_configured(config).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while super::http_get(proxy.health, "/ready").await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "the proxy is not ready after 20 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    proxy
}

/// The cart as (product id, name, quantity) triples.
pub fn items(cart: &api::Cart) -> Vec<(String, String, i32)> {
    cart.items.iter().map(|i| (i.product_id.clone(), i.name.clone(), i.quantity)).collect()
}
