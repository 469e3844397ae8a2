//! [`Dispatcher`]: routes one call to the entity type that serves it and turns the user
//! function's answer into the client's: replies, forwards (re-routed here), side effects
//! (synchronous ones awaited before the reply, the rest after), failures (gRPC UNKNOWN).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use prost_types::Any;
use tokio::sync::oneshot;
use tonic::Status;

use super::command::{CommandRequest, Outcome, Request};
use super::eventsourced::driver::EventSourced;
use super::host::{Driver, Host};
use super::value::driver::ValueEntity;
use crate::catalog::{Catalog, EntityKind, Method, Service};
use crate::discovery::MAX_MESSAGE_BYTES;
use crate::protocol::cloudstate::action::action_protocol_client::ActionProtocolClient;
use crate::protocol::cloudstate::action::{ActionCommand, action_response};
use crate::protocol::cloudstate::{Metadata, Reply, SideEffect, client_action};
use crate::store::AnyStore;

/// How many forwards one client call may go through (a loop of forwards is cut here).
pub const MAX_FORWARDS: u32 = 16;

/// One call of a user service method, as bytes.
#[derive(Clone, Debug)]
pub struct Call {
    /// The full service name.
    pub service: String,
    /// The method.
    pub method: String,
    /// The request message.
    pub payload: Bytes,
    /// The request's metadata.
    pub metadata: Option<Metadata>,
}

/// Everything a call needs; shared behind an `Arc`.
#[derive(Debug)]
pub struct Dispatcher {
    pub(crate) catalog: Catalog,
    /// What the entities' tasks share.
    pub(crate) host: Arc<Host>,
    /// How long a call waits for its entity's answer.
    pub(crate) relay_timeout: Duration,
}

impl Dispatcher {
    /// Looks up a method; `NOT_FOUND`-like statuses for unknown ones.
    pub fn resolve(&self, service: &str, method: &str) -> Result<(Arc<Service>, Method), Status> {
        let entry = self.catalog.service(service).ok_or_else(|| {
            Status::unimplemented(format!("service {service:?} is not served by this proxy"))
        })?;
        let method = entry
            .methods
            .get(method)
            .ok_or_else(|| Status::unimplemented(format!("service {service:?} has no method {method:?}")))?;
        Ok((entry.clone(), method.clone()))
    }

    /// Handles a unary call (following forwards, performing side effects).
    pub fn unary(self: Arc<Self>, call: Call, depth: u32) -> BoxFuture<'static, Result<Bytes, Status>> {
        Box::pin(async move {
            if depth > MAX_FORWARDS {
                return Err(Status::failed_precondition(format!(
                    "call to {}.{} was forwarded more than {MAX_FORWARDS} times",
                    call.service, call.method
                )));
            }
            let (service, method) = self.resolve(&call.service, &call.method)?;
            if method.client_streaming || method.server_streaming {
                return Err(Status::unimplemented(format!(
                    "streamed method {}.{} cannot be the target of a forward or side effect",
                    call.service, call.method
                )));
            }
            let timer = self.host.metrics.command(service.kind.label(), &service.name, &method.name);
            let outcome = match service.kind {
                EntityKind::EventSourced => self.entity::<EventSourced>(&service, &method, call).await?,
                EntityKind::ValueEntity => self.entity::<ValueEntity>(&service, &method, call).await?,
                EntityKind::Action => self.action(&service, &method, call).await?,
            };
            let result = self.finish(outcome, depth).await;
            if result.is_ok() {
                timer.ok();
            }
            result
        })
    }

    fn command(method: &Method, call: Call) -> CommandRequest {
        CommandRequest {
            name: method.name.clone(),
            payload: Any { type_url: method.input_type_url(), value: call.payload.to_vec() },
            metadata: call.metadata,
        }
    }

    fn entity_id(service: &Service, method: &Method, payload: &[u8]) -> Result<String, Status> {
        method.entity_id(payload).map_err(|e| {
            Status::invalid_argument(format!(
                "request to {}.{} is not a valid {}: {e}",
                service.name,
                method.name,
                method.input.full_name()
            ))
        })
    }

    /// UNAVAILABLE if the store has stopped for good (see [`AnyStore::fault`]): an entity's
    /// command fails at once rather than after the relay timeout.
    fn store_usable(&self, service: &Service) -> Result<(), Status> {
        match self.host.store.as_deref().and_then(AnyStore::fault) {
            Some(reason) => Err(store_unavailable(service, reason)),
            None => Ok(()),
        }
    }

    /// The entity's outcome; UNAVAILABLE as soon as the store stops for good (while the call
    /// waits, or as the reason it failed), rather than after the relay timeout.
    async fn await_outcome(
        &self,
        service: &Service,
        receiver: oneshot::Receiver<Outcome>,
    ) -> Result<Outcome, Status> {
        let unavailable = |reason| store_unavailable(service, reason);
        let store = self.host.store.as_deref();
        let stopped = async {
            match store {
                Some(store) => store.stopped().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            outcome = receiver => match (outcome, store.and_then(AnyStore::fault)) {
                (Ok(Outcome::Failed { .. }) | Err(_), Some(reason)) => Err(unavailable(reason)),
                (Ok(outcome), _) => Ok(outcome),
                (Err(_), None) => Err(Status::unavailable(format!("the entity of service {} stopped", service.name))),
            },
            reason = stopped => Err(unavailable(reason)),
            () = tokio::time::sleep(self.relay_timeout) => Err(Status::deadline_exceeded(format!(
                "the entity of service {} did not answer within {:?}",
                service.name, self.relay_timeout
            ))),
        }
    }

    /// Routes a command to the entity of type `D` that serves it (starting the entity's task
    /// if it is not active) and waits for its outcome: the one path of every entity type.
    async fn entity<D: Driver>(
        &self,
        service: &Arc<Service>,
        method: &Method,
        call: Call,
    ) -> Result<Outcome, Status> {
        let entity_id = Self::entity_id(service, method, &call.payload)?;
        self.store_usable(service)?;
        let (reply, receiver) = oneshot::channel();
        let request = Request { command: Self::command(method, call), reply };
        let key = (service.name.clone(), entity_id.clone());
        D::registry(&self.host).send(key, request, |commands| {
            tokio::spawn(D::run(self.host.clone(), service.clone(), entity_id, commands));
        });
        self.await_outcome(service, receiver).await
    }

    async fn action(&self, service: &Service, method: &Method, call: Call) -> Result<Outcome, Status> {
        let mut client = ActionProtocolClient::new(self.host.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let command = Self::command(method, call);
        let response = client
            .handle_unary(ActionCommand {
                service_name: service.name.clone(),
                name: command.name,
                payload: Some(command.payload),
                metadata: command.metadata,
            })
            .await?
            .into_inner();
        let action = match response.response {
            Some(action_response::Response::Failure(f)) => client_action::Action::Failure(f),
            Some(action_response::Response::Reply(r)) => client_action::Action::Reply(r),
            Some(action_response::Response::Forward(f)) => client_action::Action::Forward(f),
            // No reply: the client gets an empty message.
            None => client_action::Action::Reply(Reply::default()),
        };
        Ok(Outcome::Done { action, side_effects: response.side_effects })
    }

    /// The client's answer from the user function's: synchronous side effects first, then the
    /// reply (or the forward's reply), then the other side effects in the background.
    pub(super) async fn finish(self: &Arc<Self>, outcome: Outcome, depth: u32) -> Result<Bytes, Status> {
        let (action, side_effects) = match outcome {
            Outcome::Failed { description } => return Err(Status::unknown(description)),
            Outcome::Done { action, side_effects } => (action, side_effects),
        };
        let (synchronous, later): (Vec<_>, Vec<_>) = side_effects.into_iter().partition(|e| e.synchronous);
        for effect in synchronous {
            self.clone().side_effect(effect, depth).await;
        }
        let result = match action {
            client_action::Action::Reply(reply) => {
                Ok(reply.payload.map(|p| Bytes::from(p.value)).unwrap_or_default())
            }
            client_action::Action::Forward(forward) => {
                let call = Call {
                    service: forward.service_name,
                    method: forward.command_name,
                    payload: forward.payload.map(|p| Bytes::from(p.value)).unwrap_or_default(),
                    metadata: forward.metadata,
                };
                self.clone().unary(call, depth + 1).await
            }
            client_action::Action::Failure(failure) => Err(Status::unknown(failure.description)),
        };
        for effect in later {
            tokio::spawn(self.clone().side_effect(effect, depth));
        }
        result
    }

    /// Performs one side effect; its result is only logged.
    async fn side_effect(self: Arc<Self>, effect: SideEffect, depth: u32) {
        let call = Call {
            service: effect.service_name,
            method: effect.command_name,
            payload: effect.payload.map(|p| Bytes::from(p.value)).unwrap_or_default(),
            metadata: effect.metadata,
        };
        let (service, method) = (call.service.clone(), call.method.clone());
        if let Err(status) = self.unary(call, depth + 1).await {
            tracing::warn!(%service, %method, error = %status.message(), "a side effect failed");
        }
    }
}

/// The status of a command whose service's store stopped for good.
fn store_unavailable(service: &Service, reason: String) -> Status {
    Status::unavailable(format!("the store of service {} cannot be used: {reason}", service.name))
}
