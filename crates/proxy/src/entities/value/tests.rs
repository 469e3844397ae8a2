//! Scenario tests of the value entity's state machine: each feeds inputs and checks the exact
//! effects, as the CloudState TCK checks the exact messages exchanged.

use prost_types::Any;

use super::{Closed, Effect, Entity, Write};
use crate::entities::command::{CommandRequest, Outcome, Ticket};
use crate::protocol::cloudstate::valueentity::{
    ValueEntityAction, ValueEntityDelete, ValueEntityInit, ValueEntityInitState, ValueEntityReply,
    ValueEntityStreamIn, ValueEntityStreamOut, ValueEntityUpdate, value_entity_action,
    value_entity_stream_in, value_entity_stream_out,
};
use crate::protocol::cloudstate::{ClientAction, Command, Failure, Reply, client_action};
use crate::store::{StoreError, ValueState};

fn any(text: &str) -> Any {
    Any { type_url: "type.googleapis.com/test.Msg".into(), value: text.as_bytes().to_vec() }
}

fn request(name: &str) -> CommandRequest {
    CommandRequest { name: name.into(), payload: any(name), metadata: None }
}

fn send(message: value_entity_stream_in::Message) -> Effect {
    Effect::Send(ValueEntityStreamIn { message: Some(message) })
}

fn init(state: Option<&str>) -> Effect {
    send(value_entity_stream_in::Message::Init(ValueEntityInit {
        service_name: "shop.Counter".into(),
        entity_id: "n1".into(),
        state: state.map(|s| ValueEntityInitState { value: Some(any(s)) }),
    }))
}

fn command(id: i64, name: &str) -> Effect {
    send(value_entity_stream_in::Message::Command(Command {
        entity_id: "n1".into(),
        id,
        name: name.into(),
        payload: Some(any(name)),
        streamed: false,
        metadata: None,
    }))
}

fn reply_action(text: &str) -> client_action::Action {
    client_action::Action::Reply(Reply { payload: Some(any(text)), metadata: None })
}

fn out(message: value_entity_stream_out::Message) -> ValueEntityStreamOut {
    ValueEntityStreamOut { message: Some(message) }
}

fn reply_with(
    command_id: i64,
    action: Option<client_action::Action>,
    state: Option<value_entity_action::Action>,
) -> ValueEntityStreamOut {
    out(value_entity_stream_out::Message::Reply(ValueEntityReply {
        command_id,
        client_action: action.map(|action| ClientAction { action: Some(action) }),
        side_effects: vec![],
        state_action: state.map(|action| ValueEntityAction { action: Some(action) }),
    }))
}

fn reply(command_id: i64) -> ValueEntityStreamOut {
    reply_with(command_id, Some(reply_action("ok")), None)
}

fn update(text: &str) -> Option<value_entity_action::Action> {
    Some(value_entity_action::Action::Update(ValueEntityUpdate { value: Some(any(text)) }))
}

fn delete() -> Option<value_entity_action::Action> {
    Some(value_entity_action::Action::Delete(ValueEntityDelete {}))
}

fn failure(command_id: i64, restart: bool) -> ValueEntityStreamOut {
    out(value_entity_stream_out::Message::Failure(Failure {
        command_id,
        description: "boom".into(),
        restart,
    }))
}

fn done(ticket: Ticket) -> Effect {
    Effect::Complete { ticket, outcome: Outcome::Done { action: reply_action("ok"), side_effects: vec![] } }
}

fn failed(ticket: Ticket, description: &str) -> Effect {
    Effect::Complete { ticket, outcome: Outcome::Failed { description: description.into() } }
}

fn is_restart(effect: &Effect) -> bool {
    matches!(effect, Effect::Restart { .. })
}

fn state(revision: u64, value: Option<&str>) -> ValueState {
    ValueState { revision, value: value.map(any) }
}

/// An entity loaded with nothing stored.
fn ready() -> Entity {
    let mut e = Entity::new("shop.Counter", "n1");
    assert_eq!(e.loaded(state(0, None)), vec![init(None)]);
    e
}

/// A protocol error: reported, the command failed naming it, then a restart.
fn assert_protocol_error(effects: &[Effect], ticket: Ticket, message: &str) {
    let [Effect::ReportError(reported), Effect::Complete { ticket: completed, outcome }, restart] = effects
    else {
        panic!("a report, a failure and a restart: {effects:?}");
    };
    assert!(reported.contains(message), "{reported:?} names {message:?}");
    assert_eq!(*completed, ticket);
    assert_eq!(*outcome, Outcome::Failed { description: format!("protocol error: {reported}") });
    assert!(is_restart(restart), "{restart:?}");
}

#[test]
fn init_with_the_stored_state_goes_out_before_any_command() {
    let mut e = Entity::new("shop.Counter", "n1");
    let (ticket, effects) = e.command(request("Increase"));
    assert_eq!(ticket, Ticket(1));
    assert!(effects.is_empty(), "commands wait for the state: {effects:?}");
    assert!(!e.is_idle());
    assert_eq!(e.loaded(state(3, Some("seven"))), vec![init(Some("seven")), command(1, "Increase")]);
    assert_eq!(e.user_message(reply(1)), vec![done(ticket)]);
    assert!(e.is_idle());
}

#[test]
fn nothing_stored_is_an_init_without_state() {
    let mut e = Entity::new("shop.Counter", "n1");
    assert_eq!(e.loaded(state(0, None)), vec![init(None)]);
    assert!(e.is_idle());
}

#[test]
fn one_command_at_a_time_with_increasing_ids() {
    let mut e = ready();
    let (first, effects) = e.command(request("A"));
    assert_eq!(effects, vec![command(1, "A")]);
    let (second, effects) = e.command(request("B"));
    assert!(effects.is_empty(), "B waits for A: {effects:?}");
    assert_eq!(e.user_message(reply(1)), vec![done(first), command(2, "B")]);
    assert_eq!(e.user_message(reply(2)), vec![done(second)]);
    assert!(e.is_idle());
}

#[test]
fn an_update_is_written_against_the_loaded_revision_before_the_reply() {
    let mut e = Entity::new("shop.Counter", "n1");
    e.loaded(state(4, Some("old")));
    let (ticket, _) = e.command(request("Set"));
    let effects = e.user_message(reply_with(1, Some(reply_action("ok")), update("new")));
    assert_eq!(effects, vec![Effect::Write(Write::Update { revision: 4, value: any("new") })]);
    assert!(!e.is_idle(), "the reply waits for the write");
    assert_eq!(e.written(Ok(5)), vec![done(ticket)]);
    // The next write starts from the revision just written.
    let (next, _) = e.command(request("Clear"));
    let effects = e.user_message(reply_with(2, Some(reply_action("ok")), delete()));
    assert_eq!(effects, vec![Effect::Write(Write::Delete { revision: 5 })]);
    assert_eq!(e.written(Ok(6)), vec![done(next)]);
}

#[test]
fn commands_wait_while_a_write_is_on() {
    let mut e = ready();
    let (first, _) = e.command(request("A"));
    e.user_message(reply_with(1, Some(reply_action("ok")), update("a")));
    let (second, effects) = e.command(request("B"));
    assert!(effects.is_empty(), "B waits for A's write: {effects:?}");
    assert_eq!(e.written(Ok(1)), vec![done(first), command(2, "B")]);
    assert_eq!(e.user_message(reply(2)), vec![done(second)]);
}

#[test]
fn a_lost_write_fails_the_command_and_reloads() {
    let mut e = ready();
    let (ticket, _) = e.command(request("Set"));
    e.user_message(reply_with(1, Some(reply_action("ok")), update("mine")));
    let conflict = StoreError::ValueConflict {
        persistence_id: "counters".into(),
        entity_id: "n1".into(),
        expected: 0,
        actual: 1,
    };
    let effects = e.written(Err(conflict));
    let [Effect::Complete { ticket: completed, outcome: Outcome::Failed { description } }, restart] =
        effects.as_slice()
    else {
        panic!("a failure and a restart: {effects:?}");
    };
    assert_eq!(*completed, ticket);
    assert!(description.contains("changed meanwhile"), "{description}");
    assert!(is_restart(restart));
    // The reload carries the other replica's state, and ids start again at 1.
    let (next, effects) = e.command(request("Get"));
    assert!(effects.is_empty(), "waits for the reload: {effects:?}");
    assert_eq!(e.loaded(state(1, Some("theirs"))), vec![init(Some("theirs")), command(1, "Get")]);
    assert_eq!(e.user_message(reply(1)), vec![done(next)]);
}

#[test]
fn a_failed_write_that_is_no_conflict_names_the_store_error() {
    let mut e = ready();
    let (ticket, _) = e.command(request("Set"));
    e.user_message(reply_with(1, Some(reply_action("ok")), update("x")));
    let effects = e.written(Err(StoreError::Closed { store: "embedded" }));
    let Effect::Complete { ticket: completed, outcome: Outcome::Failed { description } } = &effects[0] else {
        panic!("a failure first: {effects:?}");
    };
    assert_eq!(*completed, ticket);
    assert!(description.starts_with("writing the state of entity \"n1\" failed"), "{description}");
    assert!(is_restart(&effects[1]), "{effects:?}");
}

#[test]
fn a_failure_action_writes_nothing_and_keeps_the_stream_unless_asked() {
    let mut e = ready();
    let (ticket, _) = e.command(request("Set"));
    let failure = |restart| {
        Some(client_action::Action::Failure(Failure { command_id: 0, description: "no".into(), restart }))
    };
    // The state action of a failed command is discarded.
    assert_eq!(e.user_message(reply_with(1, failure(false), update("x"))), vec![failed(ticket, "no")]);
    assert!(e.is_idle(), "the stream is kept");
    let (ticket, _) = e.command(request("Set"));
    let effects = e.user_message(reply_with(2, failure(true), update("x")));
    assert_eq!(effects[0], failed(ticket, "no"));
    assert!(effects.len() == 2 && is_restart(&effects[1]), "restart asked for: {effects:?}");
}

#[test]
fn a_failure_message_fails_the_command_and_restarts_only_if_asked() {
    let mut e = ready();
    let (ticket, _) = e.command(request("A"));
    assert_eq!(e.user_message(failure(1, false)), vec![failed(ticket, "boom")]);
    let (ticket, effects) = e.command(request("B"));
    assert_eq!(effects, vec![command(2, "B")], "the same stream goes on");
    let effects = e.user_message(failure(2, true));
    assert_eq!(effects[0], failed(ticket, "boom"));
    assert!(effects.len() == 2 && is_restart(&effects[1]), "{effects:?}");
}

#[test]
fn a_reply_to_another_command_is_a_protocol_error() {
    let mut e = ready();
    let (ticket, _) = e.command(request("A"));
    let effects = e.user_message(reply_with(7, Some(reply_action("ok")), update("x")));
    assert_protocol_error(&effects, ticket, "reply to command 7 while 1 is in flight");
}

#[test]
fn a_reply_without_client_action_is_a_protocol_error() {
    let mut e = ready();
    let (ticket, _) = e.command(request("A"));
    let effects = e.user_message(reply_with(1, None, update("x")));
    assert_protocol_error(&effects, ticket, "reply to command 1 has no client action");
}

#[test]
fn an_empty_message_is_a_protocol_error() {
    let mut e = ready();
    let (ticket, _) = e.command(request("A"));
    let effects = e.user_message(ValueEntityStreamOut { message: None });
    assert_protocol_error(&effects, ticket, "empty reply to command 1");
}

#[test]
fn a_message_while_idle_restarts_without_failing_anything() {
    let mut e = ready();
    let effects = e.user_message(reply(1));
    assert!(effects.len() == 1 && is_restart(&effects[0]), "{effects:?}");
    assert!(!e.is_idle(), "loading again");
    // A message of the old stream after the restart is ignored.
    assert!(e.user_message(reply(1)).is_empty());
    assert_eq!(e.loaded(state(0, None)), vec![init(None)]);
}

#[test]
fn a_closed_stream_fails_the_command_in_flight_and_reloads() {
    for (closed, description) in [
        (Closed::Send, "the value entity's user function stream closed"),
        (Closed::Error("reset".into()), "the user function failed: reset"),
        (Closed::End, "the value entity's user function stream ended"),
    ] {
        let mut e = ready();
        let (ticket, _) = e.command(request("A"));
        let effects = e.stream_closed(closed);
        assert_eq!(effects[0], failed(ticket, description));
        assert!(effects.len() == 2 && is_restart(&effects[1]), "{effects:?}");
    }
}

#[test]
fn a_closed_stream_while_idle_reloads_but_a_failed_send_waits_for_the_end() {
    let mut e = ready();
    assert!(e.stream_closed(Closed::Send).is_empty(), "nothing owed; the end shows on receiving");
    let effects = e.stream_closed(Closed::End);
    assert!(effects.len() == 1 && is_restart(&effects[0]), "{effects:?}");
    assert!(e.stream_closed(Closed::End).is_empty(), "no stream while loading");
}

#[test]
fn queued_commands_survive_a_restart_and_every_command_completes_once() {
    let mut e = ready();
    let (first, _) = e.command(request("A"));
    let (second, _) = e.command(request("B"));
    let effects = e.user_message(failure(1, true));
    assert_eq!(effects[0], failed(first, "boom"));
    assert!(effects.len() == 2 && is_restart(&effects[1]), "B waits for the reload: {effects:?}");
    assert_eq!(e.loaded(state(0, None)), vec![init(None), command(1, "B")]);
    assert_eq!(e.user_message(reply(1)), vec![done(second)]);
    // A written result nobody waits for changes nothing.
    assert!(e.written(Ok(9)).is_empty());
    assert!(e.is_idle());
}
