//! Property test: a simulated driver runs the entity against a user function and a journal that
//! misbehave at random (failures, protocol violations, closed streams, other replicas writing
//! first), and checks the machine's guarantees over the whole run.

use std::collections::{BTreeMap, VecDeque};

use proptest::prelude::*;
use prost_types::Any;

use super::{CommandRequest, Effect, Entity, Outcome, Ticket};
use crate::protocol::cloudstate::eventsourced::{
    EventSourcedReply, event_sourced_stream_in, event_sourced_stream_out,
};
use crate::protocol::cloudstate::{ClientAction, Failure, Reply, client_action};
use crate::store::StoredEvent;
use crate::store::rules::check_append;

/// What the user function does with the next command it gets.
#[derive(Clone, Debug)]
enum Decision {
    Reply { events: u8, snapshot: bool },
    ClientFailure { events: u8, restart: bool },
    FailureMessage { restart: bool },
    WrongCommandId,
    CloseStream,
}

fn decision() -> impl Strategy<Value = Decision> {
    prop_oneof![
        6 => (0..3u8, any::<bool>()).prop_map(|(events, snapshot)| Decision::Reply { events, snapshot }),
        1 => (0..3u8, any::<bool>()).prop_map(|(events, restart)| Decision::ClientFailure { events, restart }),
        1 => any::<bool>().prop_map(|restart| Decision::FailureMessage { restart }),
        1 => Just(Decision::WrongCommandId),
        1 => Just(Decision::CloseStream),
    ]
}

fn any_text(text: String) -> Any {
    Any { type_url: "type.googleapis.com/test.Event".into(), value: text.into_bytes() }
}

fn text(any: &Any) -> String {
    String::from_utf8_lossy(&any.value).into_owned()
}

#[derive(Default)]
struct Run {
    journal: Vec<String>,
    completions: BTreeMap<Ticket, Vec<Outcome>>,
    /// The events of each command's last successful-looking reply, by ticket.
    last_events: BTreeMap<Ticket, Vec<String>>,
    /// Which command emitted each event.
    owners: BTreeMap<String, Ticket>,
    in_flight: Option<i64>,
    foreign: u32,
}

fn simulate(
    submitted_early: usize,
    total: usize,
    decisions: Vec<Decision>,
    foreign_writes: Vec<bool>,
) -> Run {
    let mut run = Run::default();
    let mut entity = Entity::new("shop.Cart", "carts", "c1");
    let mut decisions = decisions.into_iter();
    let mut foreign_writes = foreign_writes.into_iter();
    let mut tickets_by_name = BTreeMap::new();
    let mut effects = VecDeque::new();
    let submit = |entity: &mut Entity,
                  n: usize,
                  names: &mut BTreeMap<String, Ticket>,
                  effects: &mut VecDeque<Effect>| {
        let name = format!("cmd{n}");
        let (ticket, more) = entity.command(CommandRequest {
            name: name.clone(),
            payload: any_text(name.clone()),
            metadata: None,
        });
        names.insert(name, ticket);
        effects.extend(more);
    };
    let mut next = 0;
    while next < submitted_early.min(total) {
        submit(&mut entity, next, &mut tickets_by_name, &mut effects);
        next += 1;
    }
    assert!(effects.is_empty(), "nothing goes out before recovery");
    effects.extend(entity.recovered(None, vec![]));

    for _ in 0..10_000 {
        let Some(effect) = effects.pop_front() else {
            if next == total {
                return run;
            }
            submit(&mut entity, next, &mut tickets_by_name, &mut effects);
            next += 1;
            continue;
        };
        match effect {
            Effect::Send(message) => {
                let Some(event_sourced_stream_in::Message::Command(command)) = message.message else {
                    continue;
                };
                assert_eq!(run.in_flight, None, "one command at a time");
                run.in_flight = Some(command.id);
                let ticket = tickets_by_name[&command.name];
                for k in 0..3 {
                    run.owners.insert(format!("{}#{}-{k}", command.name, command.id), ticket);
                }
                let name_events = |n: u8| -> Vec<String> {
                    (0..n).map(|k| format!("{}#{}-{k}", command.name, command.id)).collect()
                };
                let out = match decisions.next().unwrap_or(Decision::Reply { events: 1, snapshot: false }) {
                    Decision::Reply { events: n, snapshot } => {
                        let events = name_events(n);
                        run.last_events.insert(ticket, events.clone());
                        let snapshot = (snapshot && !events.is_empty()).then(|| any_text("state".into()));
                        reply(
                            command.id,
                            Some(client_action::Action::Reply(Reply::default())),
                            events,
                            snapshot,
                        )
                    }
                    Decision::ClientFailure { events: n, restart } => {
                        let events = name_events(n);
                        let failure = Failure { command_id: command.id, description: "no".into(), restart };
                        reply(command.id, Some(client_action::Action::Failure(failure)), events, None)
                    }
                    Decision::FailureMessage { restart } => {
                        event_sourced_stream_out::Message::Failure(Failure {
                            command_id: command.id,
                            description: "boom".into(),
                            restart,
                        })
                    }
                    Decision::WrongCommandId => reply(command.id + 100, None, vec![], None),
                    Decision::CloseStream => {
                        effects.extend(entity.stream_closed("reset"));
                        continue;
                    }
                };
                effects.extend(entity.user_message(out));
            }
            Effect::Persist(append) => {
                if foreign_writes.next().unwrap_or(false) {
                    run.foreign += 1;
                    run.journal.push(format!("foreign-{}", run.foreign));
                }
                // The same rules as every real store.
                let result = check_append(&append, run.journal.len() as u64);
                if result.is_ok() {
                    run.journal.extend(append.events.iter().map(text));
                }
                effects.extend(entity.persisted(result));
            }
            Effect::Complete { ticket, outcome } => {
                if let Outcome::Done { .. } = outcome {
                    // Durable before reply: the command's last events are in the journal.
                    for event in run.last_events.get(&ticket).into_iter().flatten() {
                        assert!(
                            run.journal.contains(event),
                            "{event} is persisted before {ticket:?} completes"
                        );
                    }
                }
                run.completions.entry(ticket).or_default().push(outcome);
                run.in_flight = None;
            }
            Effect::ReportError(_) => {}
            Effect::Restart { .. } => {
                assert!(
                    effects.iter().all(|e| !matches!(e, Effect::Send(_))),
                    "nothing is sent on a stream being closed"
                );
                run.in_flight = None;
                let stored = run
                    .journal
                    .iter()
                    .enumerate()
                    .map(|(i, t)| StoredEvent { sequence_number: i as u64 + 1, payload: any_text(t.clone()) })
                    .collect();
                effects.extend(entity.recovered(None, stored));
            }
        }
    }
    panic!("the simulation did not finish in 10000 steps");
}

fn reply(
    command_id: i64,
    action: Option<client_action::Action>,
    events: Vec<String>,
    snapshot: Option<Any>,
) -> event_sourced_stream_out::Message {
    event_sourced_stream_out::Message::Reply(EventSourcedReply {
        command_id,
        client_action: action.map(|action| ClientAction { action: Some(action) }),
        side_effects: vec![],
        events: events.into_iter().map(any_text).collect(),
        snapshot,
    })
}

proptest! {
    #[test]
    fn every_command_completes_once_and_only_successful_events_are_stored(
        early in 0..4usize,
        total in 1..12usize,
        decisions in proptest::collection::vec(decision(), 0..30),
        foreign_writes in proptest::collection::vec(any::<bool>(), 0..10),
    ) {
        let benign = decisions.iter().all(|d| matches!(d, Decision::Reply { .. })) && !foreign_writes.contains(&true);
        let run = simulate(early, total, decisions, foreign_writes);
        if benign {
            // Nothing went wrong, so every command succeeded.
            for (ticket, outcomes) in &run.completions {
                prop_assert!(matches!(outcomes[0], Outcome::Done { .. }), "{:?} failed: {:?}", ticket, outcomes);
            }
        }
        // Every command completed exactly once.
        prop_assert_eq!(run.completions.len(), total);
        for (ticket, outcomes) in &run.completions {
            prop_assert_eq!(outcomes.len(), 1, "{:?} completed {:?}", ticket, outcomes);
        }
        // Every stored event is another replica's or belongs to a command that succeeded, and
        // is the events of that command's last reply (earlier attempts lost their race).
        for event in &run.journal {
            if event.starts_with("foreign-") {
                continue;
            }
            let ticket = run.owners[event];
            let outcome = &run.completions[&ticket][0];
            prop_assert!(matches!(outcome, Outcome::Done { .. }), "{} stored but {:?} failed", event, ticket);
            prop_assert!(run.last_events[&ticket].contains(event), "{} is from an earlier attempt", event);
        }
    }
}
