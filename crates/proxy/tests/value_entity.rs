//! Value entities and actions through the proxy, against user functions written in Rust: the
//! shopping cart declared as a value entity (state loaded into `init`, update and delete durable
//! before the reply, recovered by a new proxy) and as a stateless action.

mod common;

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use common::cart::{self, api};
use futures::Stream;
use prost::Message as _;
use prost_types::Any;
use stead_proxy::StoreConfig;
use stead_proxy::protocol::cloudstate::action::action_protocol_server::{
    ActionProtocol, ActionProtocolServer,
};
use stead_proxy::protocol::cloudstate::action::{ActionCommand, ActionResponse, action_response};
use stead_proxy::protocol::cloudstate::entity_discovery_server::{EntityDiscovery, EntityDiscoveryServer};
use stead_proxy::protocol::cloudstate::valueentity::value_entity_server::{ValueEntity, ValueEntityServer};
use stead_proxy::protocol::cloudstate::valueentity::{
    ValueEntityAction, ValueEntityDelete, ValueEntityReply, ValueEntityStreamIn, ValueEntityStreamOut,
    ValueEntityUpdate, value_entity_action, value_entity_stream_in, value_entity_stream_out,
};
use stead_proxy::protocol::cloudstate::{
    ClientAction, Entity, EntitySpec, Failure, ProxyInfo, Reply, ServiceInfo, UserFunctionError,
    client_action,
};
use stead_proxy::store::{EmbeddedStore, Store as _, ValueKey};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

#[derive(Clone)]
struct Function {
    entity_type: &'static str,
}

fn any(type_name: &str, message: &impl prost::Message) -> Any {
    Any { type_url: format!("type.googleapis.com/{type_name}"), value: message.encode_to_vec() }
}

fn reply(payload: Any) -> Option<ClientAction> {
    Some(ClientAction {
        action: Some(client_action::Action::Reply(Reply { payload: Some(payload), metadata: None })),
    })
}

fn empty() -> Any {
    any("google.protobuf.Empty", &())
}

#[tonic::async_trait]
impl EntityDiscovery for Function {
    async fn discover(&self, _: Request<ProxyInfo>) -> Result<Response<EntitySpec>, Status> {
        Ok(Response::new(EntitySpec {
            proto: cart::DESCRIPTORS.to_vec(),
            entities: vec![Entity {
                entity_type: self.entity_type.into(),
                service_name: cart::SERVICE.into(),
                persistence_id: "value-cart".into(),
                passivation_strategy: None,
            }],
            service_info: Some(ServiceInfo {
                protocol_major_version: 0,
                protocol_minor_version: 2,
                ..Default::default()
            }),
        }))
    }

    async fn report_error(&self, _: Request<UserFunctionError>) -> Result<Response<()>, Status> {
        Ok(Response::new(()))
    }
}

type Items = BTreeMap<String, (String, i32)>;

fn to_state(items: &Items) -> Any {
    let items = items
        .iter()
        .map(|(id, (name, q))| api::persistence::LineItem {
            product_id: id.clone(),
            name: name.clone(),
            quantity: *q,
        })
        .collect();
    any("com.example.shoppingcart.persistence.Cart", &api::persistence::Cart { items })
}

#[tonic::async_trait]
impl ValueEntity for Function {
    type handleStream = Pin<Box<dyn Stream<Item = Result<ValueEntityStreamOut, Status>> + Send>>;

    async fn handle(
        &self,
        request: Request<Streaming<ValueEntityStreamIn>>,
    ) -> Result<Response<Self::handleStream>, Status> {
        let mut incoming = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            let mut items = Items::new();
            while let Ok(Some(message)) = incoming.message().await {
                let out = match message.message {
                    Some(value_entity_stream_in::Message::Init(init)) => {
                        let state = init.state.and_then(|s| s.value).unwrap_or_default();
                        let cart = api::persistence::Cart::decode(state.value.as_slice()).unwrap_or_default();
                        items =
                            cart.items.into_iter().map(|i| (i.product_id, (i.name, i.quantity))).collect();
                        continue;
                    }
                    Some(value_entity_stream_in::Message::Command(c)) => {
                        let payload = c.payload.unwrap_or_default().value;
                        let update = |items: &Items| {
                            Some(ValueEntityAction {
                                action: Some(if items.is_empty() {
                                    value_entity_action::Action::Delete(ValueEntityDelete {})
                                } else {
                                    value_entity_action::Action::Update(ValueEntityUpdate {
                                        value: Some(to_state(items)),
                                    })
                                }),
                            })
                        };
                        let (client_action, state_action) = match c.name.as_str() {
                            "AddItem" => {
                                let add = api::AddLineItem::decode(payload.as_slice()).unwrap_or_default();
                                items.entry(add.product_id).or_insert((add.name, 0)).1 += add.quantity;
                                (reply(empty()), update(&items))
                            }
                            "RemoveItem" => {
                                let remove =
                                    api::RemoveLineItem::decode(payload.as_slice()).unwrap_or_default();
                                if items.remove(&remove.product_id).is_some() {
                                    (reply(empty()), update(&items))
                                } else {
                                    let failure = Failure {
                                        command_id: c.id,
                                        description: format!("{} is not in the cart", remove.product_id),
                                        restart: false,
                                    };
                                    (
                                        Some(ClientAction {
                                            action: Some(client_action::Action::Failure(failure)),
                                        }),
                                        None,
                                    )
                                }
                            }
                            _ => {
                                let cart = api::Cart {
                                    items: items
                                        .iter()
                                        .map(|(id, (name, q))| api::LineItem {
                                            product_id: id.clone(),
                                            name: name.clone(),
                                            quantity: *q,
                                        })
                                        .collect(),
                                };
                                (reply(any("com.example.shoppingcart.Cart", &cart)), None)
                            }
                        };
                        ValueEntityReply {
                            command_id: c.id,
                            client_action,
                            side_effects: vec![],
                            state_action,
                        }
                    }
                    None => continue,
                };
                let out =
                    ValueEntityStreamOut { message: Some(value_entity_stream_out::Message::Reply(out)) };
                if tx.send(Ok(out)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// As an action: `GetCart` answers with one line item named after the request's user id;
/// `RemoveItem` fails; `AddItem` forwards to `GetCart`.
#[tonic::async_trait]
impl ActionProtocol for Function {
    async fn handle_unary(
        &self,
        request: Request<ActionCommand>,
    ) -> Result<Response<ActionResponse>, Status> {
        let command = request.into_inner();
        let payload = command.payload.unwrap_or_default().value;
        let response = match command.name.as_str() {
            "GetCart" => {
                let get = api::GetShoppingCart::decode(payload.as_slice()).unwrap_or_default();
                let cart = api::Cart {
                    items: vec![api::LineItem {
                        product_id: get.user_id,
                        name: "from action".into(),
                        quantity: 1,
                    }],
                };
                action_response::Response::Reply(Reply {
                    payload: Some(any("com.example.shoppingcart.Cart", &cart)),
                    metadata: None,
                })
            }
            "AddItem" => {
                let add = api::AddLineItem::decode(payload.as_slice()).unwrap_or_default();
                let get = api::GetShoppingCart { user_id: add.user_id };
                action_response::Response::Forward(stead_proxy::protocol::cloudstate::Forward {
                    service_name: cart::SERVICE.into(),
                    command_name: "GetCart".into(),
                    payload: Some(any("com.example.shoppingcart.GetShoppingCart", &get)),
                    metadata: None,
                })
            }
            _ => action_response::Response::Failure(Failure {
                command_id: 0,
                description: "no removing here".into(),
                restart: false,
            }),
        };
        Ok(Response::new(ActionResponse { response: Some(response), side_effects: vec![] }))
    }

    async fn handle_streamed_in(
        &self,
        _: Request<Streaming<ActionCommand>>,
    ) -> Result<Response<ActionResponse>, Status> {
        Err(Status::unimplemented("not used"))
    }

    type handleStreamedOutStream = Pin<Box<dyn Stream<Item = Result<ActionResponse, Status>> + Send>>;

    async fn handle_streamed_out(
        &self,
        _: Request<ActionCommand>,
    ) -> Result<Response<Self::handleStreamedOutStream>, Status> {
        Err(Status::unimplemented("not used"))
    }

    type handleStreamedStream = Pin<Box<dyn Stream<Item = Result<ActionResponse, Status>> + Send>>;

    async fn handle_streamed(
        &self,
        _: Request<Streaming<ActionCommand>>,
    ) -> Result<Response<Self::handleStreamedStream>, Status> {
        Err(Status::unimplemented("not used"))
    }
}

async fn serve(function: Function) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(EntityDiscoveryServer::new(function.clone()))
            .add_service(ValueEntityServer::new(function.clone()))
            .add_service(ActionProtocolServer::new(function))
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await;
    });
    addr
}

fn add(user: &str, product: &str, quantity: i32) -> api::AddLineItem {
    cart::line(user, product, &product.to_uppercase(), quantity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn value_entity_state_is_durable_before_the_reply_and_recovered() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store.redb");
        let user = serve(Function { entity_type: "cloudstate.valueentity.ValueEntity" }).await;
        let proxy = common::start_proxy(user, StoreConfig::Embedded { path: path.clone() }).await;
        let mut client = cart::client(proxy.addr).await;
        client.add_item(add("ann", "apple", 2)).await.expect("add");
        client.add_item(add("ann", "pear", 1)).await.expect("add");
        client.add_item(add("bob", "plum", 1)).await.expect("add");
        client
            .remove_item(api::RemoveLineItem { user_id: "bob".into(), product_id: "plum".into() })
            .await
            .expect("remove: bob's cart is deleted");
        let failure = client
            .remove_item(api::RemoveLineItem { user_id: "ann".into(), product_id: "kiwi".into() })
            .await
            .expect_err("absent item");
        assert_eq!((failure.code(), failure.message()), (tonic::Code::Unknown, "kiwi is not in the cart"));
        let cart =
            client.get_cart(api::GetShoppingCart { user_id: "ann".into() }).await.expect("get").into_inner();
        assert_eq!(cart::items(&cart).len(), 2);
        drop(client);
        proxy.stop().await.expect("stops");

        let store = EmbeddedStore::open(&path).expect("reopens");
        let ann = store.get_value(&ValueKey::new("value-cart", "ann")).await.expect("ann");
        assert_eq!(ann.revision, 2, "two updates; the failed command wrote nothing");
        let bob = store.get_value(&ValueKey::new("value-cart", "bob")).await.expect("bob");
        assert_eq!((bob.revision, bob.value), (2, None), "updated then deleted");
        store.close().await.expect("closes");

        let proxy = common::start_proxy(user, StoreConfig::Embedded { path }).await;
        let mut client = cart::client(proxy.addr).await;
        let cart =
            client.get_cart(api::GetShoppingCart { user_id: "ann".into() }).await.expect("get").into_inner();
        assert_eq!(
            cart::items(&cart),
            vec![("apple".to_string(), "APPLE".to_string(), 2), ("pear".to_string(), "PEAR".to_string(), 1)]
        );
        let bob =
            client.get_cart(api::GetShoppingCart { user_id: "bob".into() }).await.expect("get").into_inner();
        assert!(bob.items.is_empty());
        drop(client);
        proxy.stop().await.expect("stops");
    })
    .await
    .expect("finishes within 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_reply_forward_and_fail_without_a_store() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let user = serve(Function { entity_type: "cloudstate.action.ActionProtocol" }).await;
        let proxy = common::start_proxy(user, StoreConfig::None).await;
        let mut client = cart::client(proxy.addr).await;
        let cart = client.get_cart(api::GetShoppingCart { user_id: "zed".into() }).await.expect("reply").into_inner();
        assert_eq!(cart::items(&cart), vec![("zed".to_string(), "from action".to_string(), 1)]);
        // AddItem forwards to GetCart: the client gets GetCart's answer, and GetCart counts twice.
        client.add_item(add("fwd", "x", 1)).await.expect("the forward to GetCart answered");
        let (_, metrics) = common::http_get(proxy.metrics, "/metrics").await;
        let line = "stead_proxy_commands_total{entity_type=\"action\",service=\"com.example.shoppingcart.ShoppingCart\",command=\"GetCart\",outcome=\"ok\"} 2";
        assert!(metrics.contains(line), "{metrics}");
        let failure = client
            .remove_item(api::RemoveLineItem { user_id: "a".into(), product_id: "b".into() })
            .await
            .expect_err("fails");
        assert_eq!((failure.code(), failure.message()), (tonic::Code::Unknown, "no removing here"));
        drop(client);
        proxy.stop().await.expect("stops");
    })
    .await
    .expect("finishes within 60 s");
}
