//! Scenario tests of the event-sourced entity state machine: each feeds inputs and checks the
//! exact effects, as the CloudState TCK checks the exact messages exchanged.

use prost_types::Any;

use super::{CommandRequest, Effect, Entity, MAX_ATTEMPTS, Outcome, Ticket};
use crate::protocol::cloudstate::eventsourced::{
    EventSourcedEvent, EventSourcedInit, EventSourcedReply, EventSourcedSnapshot, EventSourcedStreamIn,
    event_sourced_stream_in, event_sourced_stream_out,
};
use crate::protocol::cloudstate::{ClientAction, Command, Failure, Reply, SideEffect, client_action};
use crate::store::{Append, Snapshot, StoreError, StoredEvent};

fn any(text: &str) -> Any {
    Any { type_url: "type.googleapis.com/test.Msg".into(), value: text.as_bytes().to_vec() }
}

fn entity() -> Entity {
    Entity::new("shop.Cart", "carts", "c1")
}

fn request(name: &str) -> CommandRequest {
    CommandRequest { name: name.into(), payload: any(name), metadata: None }
}

fn send(message: event_sourced_stream_in::Message) -> Effect {
    Effect::Send(EventSourcedStreamIn { message: Some(message) })
}

fn command(id: i64, name: &str) -> Effect {
    send(event_sourced_stream_in::Message::Command(Command {
        entity_id: "c1".into(),
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

fn reply(command_id: i64, events: &[&str], snapshot: Option<&str>) -> event_sourced_stream_out::Message {
    event_sourced_stream_out::Message::Reply(EventSourcedReply {
        command_id,
        client_action: Some(ClientAction { action: Some(reply_action("ok")) }),
        side_effects: vec![],
        events: events.iter().map(|e| any(e)).collect(),
        snapshot: snapshot.map(any),
    })
}

fn failure(command_id: i64, restart: bool) -> event_sourced_stream_out::Message {
    event_sourced_stream_out::Message::Failure(Failure { command_id, description: "boom".into(), restart })
}

fn done(ticket: Ticket) -> Effect {
    Effect::Complete { ticket, outcome: Outcome::Done { action: reply_action("ok"), side_effects: vec![] } }
}

fn failed(ticket: Ticket, description: &str) -> Effect {
    Effect::Complete { ticket, outcome: Outcome::Failed { description: description.into() } }
}

fn persist(first_sequence: u64, events: &[&str], snapshot: Option<&str>) -> Effect {
    Effect::Persist(Append {
        persistence_id: "carts|c1".into(),
        first_sequence,
        events: events.iter().map(|e| any(e)).collect(),
        snapshot: snapshot.map(any),
    })
}

fn stored(sequence_number: u64, text: &str) -> StoredEvent {
    StoredEvent { sequence_number, payload: any(text) }
}

fn is_restart(effect: &Effect) -> bool {
    matches!(effect, Effect::Restart { .. })
}

/// An entity recovered with an empty journal.
fn ready() -> Entity {
    let mut e = entity();
    e.recovered(None, vec![]);
    e
}

#[test]
fn init_with_snapshot_and_events_goes_out_before_any_command() {
    let mut e = entity();
    assert_eq!(e.journal_id(), "carts|c1");
    let (ticket, effects) = e.command(request("AddItem"));
    assert_eq!(ticket, Ticket(1));
    assert!(effects.is_empty(), "commands wait for recovery: {effects:?}");
    let snapshot = Snapshot { sequence_number: 2, payload: any("state-2") };
    let effects = e.recovered(Some(snapshot), vec![stored(3, "e3"), stored(4, "e4")]);
    let init = EventSourcedInit {
        service_name: "shop.Cart".into(),
        entity_id: "c1".into(),
        snapshot: Some(EventSourcedSnapshot { snapshot_sequence: 2, snapshot: Some(any("state-2")) }),
    };
    let event = |sequence, text| {
        send(event_sourced_stream_in::Message::Event(EventSourcedEvent {
            sequence,
            payload: Some(any(text)),
        }))
    };
    assert_eq!(
        effects,
        vec![
            send(event_sourced_stream_in::Message::Init(init)),
            event(3, "e3"),
            event(4, "e4"),
            command(1, "AddItem")
        ]
    );
    // The next events continue the journal.
    assert_eq!(e.user_message(reply(1, &["e5"], None)), vec![persist(5, &["e5"], None)]);
}

#[test]
fn an_entity_without_state_gets_an_init_without_snapshot() {
    let mut e = entity();
    let effects = e.recovered(None, vec![]);
    let init = EventSourcedInit { service_name: "shop.Cart".into(), entity_id: "c1".into(), snapshot: None };
    assert_eq!(effects, vec![send(event_sourced_stream_in::Message::Init(init))]);
    assert!(e.is_idle());
}

#[test]
fn one_command_at_a_time_and_events_durable_before_the_reply() {
    let mut e = ready();
    let (a, effects) = e.command(request("A"));
    assert_eq!(effects, vec![command(1, "A")]);
    let (b, effects) = e.command(request("B"));
    assert!(effects.is_empty(), "B waits for A: {effects:?}");
    assert!(!e.is_idle());

    // A's events go to the store; nobody is answered yet.
    assert_eq!(
        e.user_message(reply(1, &["e1", "e2"], Some("s2"))),
        vec![persist(1, &["e1", "e2"], Some("s2"))]
    );
    // Durable: A is answered, then B goes out.
    assert_eq!(e.persisted(Ok(2)), vec![done(a), command(2, "B")]);
    assert_eq!(e.user_message(reply(2, &["e3"], None)), vec![persist(3, &["e3"], None)]);
    assert_eq!(e.persisted(Ok(3)), vec![done(b)]);
    assert!(e.is_idle());
}

#[test]
fn a_reply_without_events_is_answered_at_once_with_its_side_effects() {
    let mut e = ready();
    let (a, _) = e.command(request("Get"));
    let effect = SideEffect {
        service_name: "shop.Audit".into(),
        command_name: "Log".into(),
        payload: Some(any("log")),
        synchronous: true,
        metadata: None,
    };
    let message = event_sourced_stream_out::Message::Reply(EventSourcedReply {
        command_id: 1,
        client_action: Some(ClientAction { action: Some(reply_action("cart")) }),
        side_effects: vec![effect.clone()],
        events: vec![],
        snapshot: None,
    });
    let outcome = Outcome::Done { action: reply_action("cart"), side_effects: vec![effect] };
    assert_eq!(e.user_message(message), vec![Effect::Complete { ticket: a, outcome }]);
}

#[test]
fn a_client_failure_discards_the_commands_events_and_side_effects() {
    let mut e = ready();
    let (a, _) = e.command(request("A"));
    let (b, _) = e.command(request("B"));
    let message = event_sourced_stream_out::Message::Reply(EventSourcedReply {
        command_id: 1,
        client_action: Some(ClientAction {
            action: Some(client_action::Action::Failure(Failure {
                command_id: 1,
                description: "out of stock".into(),
                restart: false,
            })),
        }),
        side_effects: vec![SideEffect::default()],
        events: vec![any("e1")],
        snapshot: None,
    });
    let effects = e.user_message(message);
    assert_eq!(effects.len(), 2, "{effects:?}");
    assert_eq!(effects[0], failed(a, "out of stock"));
    assert!(is_restart(&effects[1]), "the user function applied discarded events: {effects:?}");
    // B waits for the reload, which does not contain e1.
    let effects = e.recovered(None, vec![]);
    assert_eq!(effects.last(), Some(&command(1, "B")), "a new stream numbers its commands from 1");
    assert_eq!(e.user_message(reply(1, &["e1b"], None)), vec![persist(1, &["e1b"], None)]);
    assert_eq!(e.persisted(Ok(1)), vec![done(b)]);
}

#[test]
fn a_client_failure_without_events_keeps_the_stream() {
    let mut e = ready();
    let (a, _) = e.command(request("A"));
    let (_, _) = e.command(request("B"));
    let message = event_sourced_stream_out::Message::Reply(EventSourcedReply {
        command_id: 1,
        client_action: Some(ClientAction {
            action: Some(client_action::Action::Failure(Failure {
                command_id: 1,
                description: "no".into(),
                restart: false,
            })),
        }),
        ..EventSourcedReply::default()
    });
    assert_eq!(e.user_message(message), vec![failed(a, "no"), command(2, "B")]);
}

#[test]
fn a_failure_message_fails_its_command() {
    let mut e = ready();
    let (a, _) = e.command(request("A"));
    let (_, _) = e.command(request("B"));
    assert_eq!(e.user_message(failure(1, false)), vec![failed(a, "boom"), command(2, "B")]);
}

#[test]
fn a_failure_with_restart_reloads_before_the_next_command() {
    let mut e = ready();
    let (a, _) = e.command(request("A"));
    let (_, _) = e.command(request("B"));
    let effects = e.user_message(failure(1, true));
    assert_eq!(effects.len(), 2, "{effects:?}");
    assert_eq!(effects[0], failed(a, "boom"));
    assert!(is_restart(&effects[1]));
    let effects = e.recovered(None, vec![stored(1, "e1")]);
    assert_eq!(effects.len(), 3, "init, event, command: {effects:?}");
    assert_eq!(effects[2], command(1, "B"));
}

#[test]
fn a_failure_outside_the_command_in_flight_fails_the_entity() {
    let mut e = ready();
    let (a, _) = e.command(request("A"));
    let effects = e.user_message(failure(0, false));
    assert_eq!(effects.len(), 2, "{effects:?}");
    assert_eq!(effects[0], failed(a, "boom"));
    assert!(is_restart(&effects[1]));
}

#[test]
fn protocol_violations_are_reported_fail_the_command_and_reload() {
    let cases = [
        (reply(7, &["e"], None), "reply to command 7 while command 1 is in flight"),
        (reply(1, &[], Some("s")), "reply to command 1 has a snapshot but no events"),
        (
            event_sourced_stream_out::Message::Reply(EventSourcedReply {
                command_id: 1,
                ..EventSourcedReply::default()
            }),
            "reply to command 1 has no client action",
        ),
    ];
    for (message, problem) in cases {
        let mut e = ready();
        let (a, _) = e.command(request("A"));
        let effects = e.user_message(message);
        let report = format!("entity \"c1\" of service shop.Cart: {problem}");
        assert_eq!(effects.len(), 3, "{effects:?}");
        assert_eq!(effects[0], Effect::ReportError(report.clone()));
        assert_eq!(effects[1], failed(a, &format!("protocol error: {report}")));
        assert!(is_restart(&effects[2]));
    }
}

#[test]
fn a_reply_when_nothing_is_in_flight_is_reported() {
    let mut e = ready();
    let effects = e.user_message(reply(1, &[], None));
    assert_eq!(effects.len(), 2, "{effects:?}");
    assert_eq!(
        effects[0],
        Effect::ReportError(
            "entity \"c1\" of service shop.Cart: reply to command 1 while no command awaits a reply".into()
        )
    );
    assert!(is_restart(&effects[1]));
}

#[test]
fn a_lost_race_reloads_and_retries_the_command() {
    let mut e = ready();
    let (a, _) = e.command(request("A"));
    e.user_message(reply(1, &["mine"], None));
    let conflict = StoreError::EventConflict { persistence_id: "carts|c1".into(), sequence_number: 1 };
    let effects = e.persisted(Err(conflict));
    assert_eq!(effects.len(), 1, "no answer yet, only a reload: {effects:?}");
    assert!(is_restart(&effects[0]));
    // The other replica's event is replayed, then A is sent again, first on the new stream.
    let effects = e.recovered(None, vec![stored(1, "theirs")]);
    assert_eq!(effects.last(), Some(&command(1, "A")));
    assert_eq!(e.user_message(reply(1, &["mine"], None)), vec![persist(2, &["mine"], None)]);
    assert_eq!(e.persisted(Ok(2)), vec![done(a)]);
}

#[test]
fn a_command_that_keeps_losing_races_fails_cleanly() {
    let mut e = ready();
    let (a, _) = e.command(request("A"));
    let mut sequence = 0;
    for attempt in 1..=MAX_ATTEMPTS {
        // Every attempt is the first command of its stream.
        assert_eq!(e.user_message(reply(1, &["mine"], None)), vec![persist(sequence + 1, &["mine"], None)]);
        sequence += 1;
        let conflict =
            StoreError::EventConflict { persistence_id: "carts|c1".into(), sequence_number: sequence };
        let effects = e.persisted(Err(conflict));
        if attempt < MAX_ATTEMPTS {
            assert!(effects.len() == 1 && is_restart(&effects[0]), "{effects:?}");
            let events = (1..=sequence).map(|s| stored(s, "theirs")).collect();
            assert_eq!(e.recovered(None, events).last(), Some(&command(1, "A")));
        } else {
            assert_eq!(effects.len(), 2, "{effects:?}");
            assert_eq!(
                effects[0],
                failed(
                    a,
                    &format!(
                        "persisting the events of entity \"c1\" failed: event {sequence} of persistence id \
                         \"carts|c1\" already exists"
                    )
                )
            );
            assert!(is_restart(&effects[1]));
        }
    }
}

#[test]
fn a_store_failure_fails_the_command_and_reloads() {
    let mut e = ready();
    let (a, _) = e.command(request("A"));
    e.user_message(reply(1, &["e1"], None));
    let effects = e.persisted(Err(StoreError::Closed { store: "embedded" }));
    assert_eq!(effects.len(), 2, "{effects:?}");
    assert_eq!(
        effects[0],
        failed(a, "persisting the events of entity \"c1\" failed: embedded store is closed")
    );
    assert!(is_restart(&effects[1]));
}

#[test]
fn a_closed_stream_fails_the_command_in_flight_and_keeps_the_queue() {
    let mut e = ready();
    let (a, _) = e.command(request("A"));
    let (_, _) = e.command(request("B"));
    let effects = e.stream_closed("connection reset");
    assert_eq!(effects.len(), 2, "{effects:?}");
    assert_eq!(effects[0], failed(a, "the entity's user function stream closed"));
    assert!(is_restart(&effects[1]));
    assert_eq!(e.recovered(None, vec![]).last(), Some(&command(1, "B")));
}
