//! The algebra's laws, by property: for every kind, random histories of user updates at three
//! replicas with random delta deliveries between them.

use proptest::prelude::*;
use stead_crdt::{Clock, Crdt, CrdtKind, ReplicaId, Update, Value, View, apply, view};

const KINDS: [CrdtKind; 8] = [
    CrdtKind::GCounter,
    CrdtKind::PnCounter,
    CrdtKind::GSet,
    CrdtKind::OrSet,
    CrdtKind::LwwRegister,
    CrdtKind::Flag,
    CrdtKind::OrMap,
    CrdtKind::Vote,
];

fn replica(i: usize) -> ReplicaId {
    ReplicaId::new(["a", "b", "c"][i % 3])
}

fn item() -> impl Strategy<Value = Value> {
    prop::sample::select(vec!["w", "x", "y", "z"]).prop_map(|s| Value::from_static(s.as_bytes()))
}

fn items(max: usize) -> impl Strategy<Value = Vec<Value>> {
    prop::collection::vec(item(), 0..=max)
}

fn clock() -> impl Strategy<Value = Clock> {
    prop::sample::select(vec![Clock::Default, Clock::Reverse, Clock::Custom, Clock::CustomAutoIncrement])
}

/// An update of `kind`; ORMaps nest `depth` levels more at most.
fn update(kind: CrdtKind, depth: u32) -> BoxedStrategy<Update> {
    match kind {
        CrdtKind::GCounter => (0u64..5).prop_map(|increment| Update::GCounter { increment }).boxed(),
        CrdtKind::PnCounter => (-5i64..5).prop_map(|change| Update::PnCounter { change }).boxed(),
        CrdtKind::GSet => items(2).prop_map(|added| Update::GSet { added }).boxed(),
        CrdtKind::OrSet => (prop::bool::weighted(0.1), items(2), items(2))
            .prop_map(|(cleared, removed, added)| Update::OrSet { cleared, removed, added })
            .boxed(),
        CrdtKind::LwwRegister => (item(), clock(), -3i64..3)
            .prop_map(|(value, clock, custom_clock_value)| Update::LwwRegister {
                value,
                clock,
                custom_clock_value,
            })
            .boxed(),
        CrdtKind::Flag => any::<bool>().prop_map(|value| Update::Flag { value }).boxed(),
        CrdtKind::Vote => any::<bool>().prop_map(|self_vote| Update::Vote { self_vote }).boxed(),
        CrdtKind::OrMap => {
            // Keys mostly keep one kind (w: counter, x: set, y: register, z: map or flag) so that
            // updates nest; now and then a key is updated or added as another kind (or a vote).
            let nested_kinds = if depth == 0 {
                vec![
                    CrdtKind::GCounter,
                    CrdtKind::OrSet,
                    CrdtKind::LwwRegister,
                    CrdtKind::Flag,
                    CrdtKind::Vote,
                ]
            } else {
                vec![
                    CrdtKind::GCounter,
                    CrdtKind::OrSet,
                    CrdtKind::LwwRegister,
                    CrdtKind::OrMap,
                    CrdtKind::Vote,
                ]
            };
            let entry = {
                let kinds = nested_kinds.clone();
                (0usize..4, prop::bool::weighted(0.1), 0usize..kinds.len()).prop_flat_map(
                    move |(key, odd, other)| {
                        let kind = kinds[if odd { other } else { key }];
                        let key = Value::from_static(["w", "x", "y", "z"][key].as_bytes());
                        update(kind, depth.saturating_sub(1)).prop_map(move |u| (key.clone(), u))
                    },
                )
            };
            (
                prop::bool::weighted(0.05),
                items(1),
                prop::collection::vec(entry.clone(), 0..=2),
                prop::collection::vec(entry, 0..=1),
            )
                .prop_map(|(cleared, removed, updated, added)| Update::OrMap {
                    cleared,
                    removed,
                    updated,
                    added,
                })
                .boxed()
        }
    }
}

#[derive(Debug, Clone)]
enum Step {
    /// A user update at a replica, at wall-clock time `now`.
    Update { at: usize, update: Update, now: i64 },
    /// One of the deltas made so far (index modulo their number) reaches a replica.
    Deliver { delta: usize, to: usize },
    /// A replica retires a voter that left (Vote only; a no-op for the other kinds).
    Retire { at: usize, voter: usize },
}

fn steps(kind: CrdtKind) -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        4 => (0usize..3, update(kind, 1), 0i64..6).prop_map(|(at, update, now)| Step::Update { at, update, now }),
        4 => (any::<usize>(), 0usize..3).prop_map(|(delta, to)| Step::Deliver { delta, to }),
        1 => (0usize..3, 0usize..3).prop_map(|(at, voter)| Step::Retire { at, voter }),
    ];
    prop::collection::vec(step, 0..24)
}

fn kind_and_steps() -> impl Strategy<Value = (CrdtKind, Vec<Step>)> {
    prop::sample::select(KINDS.to_vec()).prop_flat_map(|kind| (Just(kind), steps(kind)))
}

/// Three replicas' states, every delta made, and every state seen on the way.
struct History {
    states: Vec<Crdt>,
    deltas: Vec<Crdt>,
    seen: Vec<Crdt>,
}

/// Runs `steps`, checking the per-step laws: a failed update changes nothing; an update's delta
/// merged into the state before it gives the state after it; the function's view changes by
/// exactly the view delta; a GCounter's value never decreases.
fn run(kind: CrdtKind, steps: &[Step]) -> Result<History, TestCaseError> {
    let mut h =
        History { states: vec![Crdt::empty(kind); 3], deltas: Vec::new(), seen: vec![Crdt::empty(kind)] };
    for step in steps {
        let (at, before) = match step {
            Step::Update { at, .. } => (*at, h.states[*at].clone()),
            Step::Deliver { to, .. } => (*to, h.states[*to].clone()),
            Step::Retire { at, .. } => (*at, h.states[*at].clone()),
        };
        match step {
            Step::Update { at, update, now } => {
                match apply(&mut h.states[*at], &replica(*at), *now, update) {
                    Ok(delta) => {
                        let mut merged = before.clone();
                        merged.merge_delta(&delta).unwrap();
                        prop_assert_eq!(&merged, &h.states[*at], "state before ⊔ delta == state after");
                        h.deltas.push(delta);
                    }
                    Err(_) => prop_assert_eq!(&before, &h.states[*at], "a failed update changes nothing"),
                }
            }
            Step::Deliver { delta, to } => {
                if !h.deltas.is_empty() {
                    let d = h.deltas[delta % h.deltas.len()].clone();
                    h.states[*to].merge_delta(&d).unwrap();
                }
            }
            Step::Retire { at, voter } => {
                if let Crdt::Vote(v) = &mut h.states[*at] {
                    let delta = v.retire(&replica(*voter));
                    h.deltas.push(Crdt::Vote(delta));
                }
            }
        }
        let (old, new) = (view(&before, &replica(at)), view(&h.states[at], &replica(at)));
        if let (View::GCounter(o), View::GCounter(n)) = (&old, &new) {
            prop_assert!(n >= o, "a gcounter went from {o} to {n}");
        }
        let mut applied = old.clone();
        if let Some(change) = old.diff(&new).unwrap() {
            applied.apply(&change).unwrap();
        }
        prop_assert_eq!(applied, new);
        h.seen.push(h.states[at].clone());
    }
    Ok(h)
}

fn merged(a: &Crdt, b: &Crdt) -> Crdt {
    let mut m = a.clone();
    m.merge(b).unwrap();
    m
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn merge_is_commutative_associative_and_idempotent(
        (kind, steps) in kind_and_steps(),
        picks in prop::array::uniform3(any::<usize>()),
    ) {
        let h = run(kind, &steps)?;
        let [x, y, z] = picks.map(|i| &h.seen[i % h.seen.len()]);
        prop_assert_eq!(merged(x, y), merged(y, x));
        prop_assert_eq!(merged(&merged(x, y), z), merged(x, &merged(y, z)));
        prop_assert_eq!(&merged(x, x), x);
    }

    #[test]
    fn a_delta_does_what_the_state_it_came_from_does(
        (kind, steps, update) in kind_and_steps().prop_flat_map(|(kind, steps)| {
            (Just(kind), Just(steps), update(kind, 1))
        }),
        pick in any::<usize>(),
        (at, now) in (0usize..3, 0i64..6),
    ) {
        let h = run(kind, &steps)?;
        // One more update at a replica, seen from any state of the history.
        let other = &h.seen[pick % h.seen.len()];
        let mut state = h.states[at].clone();
        let before = state.clone();
        if let Ok(delta) = apply(&mut state, &replica(at), now, &update) {
            let via_delta = merged(&merged(other, &before), &delta);
            prop_assert_eq!(via_delta, merged(other, &state));
        }
    }

    #[test]
    fn replicas_that_receive_every_delta_converge(
        (kind, steps) in kind_and_steps(),
        orders in prop::array::uniform3(prop::collection::vec(any::<usize>(), 0..40)),
    ) {
        let mut h = run(kind, &steps)?;
        // Every delta reaches every replica, in its own order, with duplicates.
        for (r, order) in orders.iter().enumerate() {
            let n = h.deltas.len();
            let mut deliveries: Vec<usize> = (0..n).collect();
            if n > 0 {
                deliveries.extend(order.iter().map(|i| i % n));
            }
            let len = deliveries.len();
            for (j, swap) in order.iter().enumerate() {
                if len > 0 {
                    deliveries.swap(j % len, swap % len);
                }
            }
            for i in deliveries {
                h.states[r].merge_delta(&h.deltas[i]).unwrap();
            }
        }
        prop_assert_eq!(&h.states[0], &h.states[1]);
        prop_assert_eq!(&h.states[1], &h.states[2]);
        let reader = replica(0);
        prop_assert_eq!(view(&h.states[0], &reader), view(&h.states[2], &reader));
    }
}

/// Whether the state's view after `update` is what the function expects without concurrency:
/// not when a register write may lose to its clock.
fn predictable(update: &Update) -> bool {
    match update {
        Update::LwwRegister { clock, .. } => matches!(clock, Clock::Default | Clock::CustomAutoIncrement),
        Update::OrMap { updated, added, .. } => updated.iter().chain(added).all(|(_, u)| predictable(u)),
        _ => true,
    }
}

fn everyone_has_everything(h: &mut History) {
    for state in &mut h.states {
        for delta in &h.deltas {
            state.merge_delta(delta).unwrap();
        }
    }
}

fn bytes(s: &'static str) -> Value {
    Value::from_static(s.as_bytes())
}

fn exchange(h: &mut History, at_a: Update, at_b: Update) -> Result<(), TestCaseError> {
    let da =
        apply(&mut h.states[0], &replica(0), 9, &at_a).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let db =
        apply(&mut h.states[1], &replica(1), 9, &at_b).map_err(|e| TestCaseError::fail(e.to_string()))?;
    h.states[0].merge_delta(&db).unwrap();
    h.states[1].merge_delta(&da).unwrap();
    prop_assert_eq!(&h.states[0], &h.states[1]);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_functions_own_updates_predict_its_view(
        (kind, steps) in kind_and_steps(),
    ) {
        // One replica (no concurrency), which voted when the entity started, as the proxy does.
        let me = replica(0);
        let mut state = Crdt::empty(kind);
        if kind == CrdtKind::Vote {
            apply(&mut state, &me, 0, &Update::Vote { self_vote: false }).unwrap();
        }
        for step in &steps {
            let Step::Update { update, now, .. } = step else { continue };
            let mut believed = view(&state, &me);
            let before = believed.clone();
            let applied = apply(&mut state, &me, *now, update);
            let predicted = believed.apply_update(update);
            prop_assert_eq!(applied.is_ok(), predicted.is_ok(), "{:?} {:?}", applied, predicted);
            if predicted.is_err() {
                prop_assert_eq!(&believed, &before);
            }
            if predictable(update) {
                prop_assert_eq!(believed, view(&state, &me));
            }
        }
    }

    #[test]
    fn an_orset_add_wins_over_a_concurrent_remove(steps in steps(CrdtKind::OrSet), clear in any::<bool>()) {
        let mut h = run(CrdtKind::OrSet, &steps)?;
        everyone_has_everything(&mut h);
        let add = Update::OrSet { cleared: false, removed: vec![], added: vec![bytes("x")] };
        let remove = Update::OrSet { cleared: clear, removed: vec![bytes("x")], added: vec![] };
        exchange(&mut h, add, remove)?;
        let View::OrSet(items) = view(&h.states[1], &replica(1)) else { unreachable!() };
        prop_assert!(items.contains(&bytes("x")));
    }

    #[test]
    fn an_ormap_update_wins_over_a_concurrent_remove(steps in steps(CrdtKind::OrMap), clear in any::<bool>()) {
        let mut h = run(CrdtKind::OrMap, &steps)?;
        // "v" is a counter both replicas know; then one increments it while the other removes it.
        let put = Update::OrMap {
            cleared: false,
            removed: vec![],
            updated: vec![],
            added: vec![(bytes("v"), Update::GCounter { increment: 5 })],
        };
        let d = apply(&mut h.states[0], &replica(0), 0, &put).unwrap();
        h.deltas.push(d);
        everyone_has_everything(&mut h);
        let increment = Update::OrMap {
            cleared: false,
            removed: vec![],
            updated: vec![(bytes("v"), Update::GCounter { increment: 1 })],
            added: vec![],
        };
        let remove = Update::OrMap { cleared: clear, removed: vec![bytes("v")], updated: vec![], added: vec![] };
        exchange(&mut h, increment, remove)?;
        let View::OrMap(m) = view(&h.states[1], &replica(1)) else { unreachable!() };
        // The update wins, with the updating replica's contributions (all of them here).
        prop_assert_eq!(m.get(&bytes("v")), Some(&View::GCounter(6)));
    }

    #[test]
    fn lww_clocks_order_concurrent_writes_as_the_proto_says(
        clock in clock(),
        (now_a, now_b) in (-3i64..3, -3i64..3),
        (custom_a, custom_b) in (-3i64..3, -3i64..3),
    ) {
        // From an empty register, each clock's order: DEFAULT the later wall clock, REVERSE the
        // earlier, CUSTOM and CUSTOM_AUTO_INCREMENT the larger custom value; ties go to the
        // greater replica id (b).
        let key = |now: i64, custom: i64| match clock {
            Clock::Default => now,
            Clock::Reverse => -now,
            Clock::Custom | Clock::CustomAutoIncrement => custom,
        };
        let write = |value, custom_clock_value| Update::LwwRegister { value, clock, custom_clock_value };
        let mut a = Crdt::empty(CrdtKind::LwwRegister);
        let mut b = Crdt::empty(CrdtKind::LwwRegister);
        let da = apply(&mut a, &replica(0), now_a, &write(bytes("a"), custom_a)).unwrap();
        let db = apply(&mut b, &replica(1), now_b, &write(bytes("b"), custom_b)).unwrap();
        a.merge_delta(&db).unwrap();
        b.merge_delta(&da).unwrap();
        prop_assert_eq!(&a, &b);
        let expected = if key(now_a, custom_a) > key(now_b, custom_b) { "a" } else { "b" };
        prop_assert_eq!(view(&a, &replica(0)), View::LwwRegister(Some(bytes(expected))));
    }

    #[test]
    fn lww_default_and_auto_increment_clocks_let_a_replicas_next_write_win(
        first_clock in clock(),
        clock in prop::sample::select(vec![Clock::Default, Clock::CustomAutoIncrement]),
        (now_1, now_2) in (-3i64..3, -3i64..3),
        (custom_1, custom_2) in (-3i64..3, -3i64..3),
    ) {
        let mut r = Crdt::empty(CrdtKind::LwwRegister);
        let first = Update::LwwRegister { value: bytes("z"), clock: first_clock, custom_clock_value: custom_1 };
        apply(&mut r, &replica(0), now_1, &first).unwrap();
        let next = Update::LwwRegister { value: bytes("a"), clock, custom_clock_value: custom_2 };
        apply(&mut r, &replica(0), now_2, &next).unwrap();
        prop_assert_eq!(view(&r, &replica(0)), View::LwwRegister(Some(bytes("a"))));
    }
}
