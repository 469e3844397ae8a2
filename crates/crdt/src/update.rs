//! Applying a user function's update (crdt.proto's `CrdtDelta` from the function, or a
//! `CrdtState` it creates) to the replicated state, returning the replication delta.
//!
//! The update runs on a copy of the state with one [`DotSource`] for everything it touches; the
//! per-operation deltas are joined into one. On an error the state is left as it was.
//!
//! A function's `CrdtState` (create, or an ORMap entry it adds) maps to the update that builds it
//! from the empty state: a counter's value is an increment, a set's items are adds, a register's
//! value is a set with its clock, an enabled flag enables, a vote votes, an ORMap's entries are
//! added; see [`create`].

use crate::{Clock, Crdt, CrdtError, CrdtKind, DotSource, GSet, OrMap, OrSet, ReplicaId, Value};

/// A change the user function asks for. Orders follow the proto: an ORSet is cleared first,
/// then `removed`, then `added`; an ORMap likewise, then `updated`, then `added`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    GCounter {
        increment: u64,
    },
    PnCounter {
        change: i64,
    },
    GSet {
        added: Vec<Value>,
    },
    OrSet {
        cleared: bool,
        removed: Vec<Value>,
        added: Vec<Value>,
    },
    LwwRegister {
        value: Value,
        clock: Clock,
        custom_clock_value: i64,
    },
    Flag {
        value: bool,
    },
    /// `updated` changes a key's value (an absent key starts empty: the function's view may lag a
    /// remote remove); `added` puts a new value (built from the empty state by its update),
    /// replacing what the key held.
    OrMap {
        cleared: bool,
        removed: Vec<Value>,
        updated: Vec<(Value, Update)>,
        added: Vec<(Value, Update)>,
    },
    Vote {
        self_vote: bool,
    },
}

impl Update {
    /// The kind of CRDT this update applies to.
    pub fn kind(&self) -> CrdtKind {
        match self {
            Update::GCounter { .. } => CrdtKind::GCounter,
            Update::PnCounter { .. } => CrdtKind::PnCounter,
            Update::GSet { .. } => CrdtKind::GSet,
            Update::OrSet { .. } => CrdtKind::OrSet,
            Update::LwwRegister { .. } => CrdtKind::LwwRegister,
            Update::Flag { .. } => CrdtKind::Flag,
            Update::OrMap { .. } => CrdtKind::OrMap,
            Update::Vote { .. } => CrdtKind::Vote,
        }
    }
}

/// Applies `update` at `replica` (wall clock `now_millis`, for LWWRegister's default and reverse
/// clocks); returns the delta to replicate.
pub fn apply(
    state: &mut Crdt,
    replica: &ReplicaId,
    now_millis: i64,
    update: &Update,
) -> Result<Crdt, CrdtError> {
    let mut work = state.clone();
    let mut dots = DotSource::new(replica.clone(), work.context());
    let mut delta = apply_to(&mut work, &mut dots, now_millis, update)?;
    // Dots minted for nested values are witnessed at the top, where the next update mints above
    // them.
    work.witness(dots.minted());
    delta.witness(dots.minted());
    *state = work;
    Ok(delta)
}

/// Creates a state from the function's initial value (expressed as its update); returns the
/// state and the delta to replicate.
pub fn create(replica: &ReplicaId, now_millis: i64, initial: &Update) -> Result<(Crdt, Crdt), CrdtError> {
    let mut state = Crdt::empty(initial.kind());
    let delta = apply(&mut state, replica, now_millis, initial)?;
    Ok((state, delta))
}

fn apply_to(state: &mut Crdt, dots: &mut DotSource, now: i64, update: &Update) -> Result<Crdt, CrdtError> {
    let replica = dots.replica().clone();
    let delta = match (state, update) {
        (Crdt::GCounter(c), Update::GCounter { increment }) => {
            Crdt::GCounter(c.increment(&replica, *increment)?)
        }
        (Crdt::PnCounter(c), Update::PnCounter { change }) => Crdt::PnCounter(c.change(&replica, *change)?),
        (Crdt::GSet(s), Update::GSet { added }) => {
            let mut delta = GSet::new();
            for item in added {
                delta.merge(&s.add(item.clone()));
            }
            Crdt::GSet(delta)
        }
        (Crdt::OrSet(s), Update::OrSet { cleared, removed, added }) => {
            let mut delta = OrSet::new();
            if *cleared {
                delta.merge(&s.clear());
            }
            for item in removed {
                delta.merge(&s.remove(item));
            }
            for item in added {
                delta.merge(&s.add_with_dot(dots.mint(), item.clone()));
            }
            Crdt::OrSet(delta)
        }
        (Crdt::LwwRegister(r), Update::LwwRegister { value, clock, custom_clock_value }) => {
            Crdt::LwwRegister(r.set(&replica, value.clone(), *clock, *custom_clock_value, now))
        }
        (Crdt::Flag(f), Update::Flag { value }) => Crdt::Flag(f.set(*value)?),
        (Crdt::Vote(v), Update::Vote { self_vote }) => Crdt::Vote(v.vote(&replica, *self_vote)),
        (Crdt::OrMap(m), Update::OrMap { cleared, removed, updated, added }) => {
            let mut delta = OrMap::new();
            if *cleared {
                delta.merge(&m.clear())?;
            }
            for key in removed {
                delta.merge(&m.remove(key))?;
            }
            for (key, nested) in updated {
                let mut value = m.get(key).unwrap_or_else(|| Crdt::empty(nested.kind()));
                let nested_delta = apply_to(&mut value, dots, now, nested)?;
                delta.merge(&m.update(dots, key.clone(), nested_delta)?)?;
            }
            for (key, initial) in added {
                let mut value = Crdt::empty(initial.kind());
                apply_to(&mut value, dots, now, initial)?;
                delta.merge(&m.put(dots, key.clone(), value)?)?;
            }
            Crdt::OrMap(delta)
        }
        (state, update) => {
            return Err(CrdtError::UpdateKindMismatch { state: state.kind(), update: update.kind() });
        }
    };
    Ok(delta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GCounter;

    fn v(s: &'static str) -> Value {
        Value::from_static(s.as_bytes())
    }

    #[test]
    fn an_update_of_another_kind_is_an_error_and_changes_nothing() {
        let mut state = Crdt::empty(CrdtKind::Flag);
        let err = apply(&mut state, &"a".into(), 0, &Update::GCounter { increment: 1 }).unwrap_err();
        assert_eq!(err.to_string(), "an update of gcounter cannot apply to flag");
        let mut map = create(
            &"a".into(),
            0,
            &Update::OrMap {
                cleared: false,
                removed: vec![],
                updated: vec![],
                added: vec![(v("k"), Update::Flag { value: true })],
            },
        )
        .unwrap()
        .0;
        let before = map.clone();
        let bad = Update::OrMap {
            cleared: false,
            removed: vec![],
            updated: vec![
                (v("j"), Update::GCounter { increment: 1 }),
                (v("k"), Update::Vote { self_vote: true }),
            ],
            added: vec![],
        };
        assert_eq!(
            apply(&mut map, &"a".into(), 0, &bad).unwrap_err(),
            CrdtError::UpdateKindMismatch { state: CrdtKind::Flag, update: CrdtKind::Vote }
        );
        assert_eq!(map, before);
    }

    #[test]
    fn the_delta_of_an_update_rebuilds_its_effect_elsewhere() {
        let a = ReplicaId::from("a");
        let (mut state, created) = create(
            &a,
            0,
            &Update::OrMap {
                cleared: false,
                removed: vec![],
                updated: vec![],
                added: vec![(v("n"), Update::GCounter { increment: 2 })],
            },
        )
        .unwrap();
        let update = Update::OrMap {
            cleared: false,
            removed: vec![],
            updated: vec![
                (v("n"), Update::GCounter { increment: 3 }),
                (v("s"), Update::OrSet { cleared: false, removed: vec![], added: vec![v("x"), v("y")] }),
            ],
            added: vec![],
        };
        let delta = apply(&mut state, &a, 0, &update).unwrap();
        let mut elsewhere = Crdt::empty(CrdtKind::OrMap);
        elsewhere.merge_delta(&delta).unwrap();
        elsewhere.merge_delta(&created).unwrap();
        assert_eq!(elsewhere, state);
        let Crdt::OrMap(m) = &state else { panic!("not a map") };
        let mut expected = GCounter::new();
        expected.increment(&a, 5).unwrap();
        assert_eq!(m.get(&v("n")), Some(Crdt::GCounter(expected)));
    }

    #[test]
    fn a_removed_and_re_added_nested_set_never_reuses_a_dot() {
        let a = ReplicaId::from("a");
        let add = |item: &'static str| Update::OrMap {
            cleared: false,
            removed: vec![],
            updated: vec![(v("s"), Update::OrSet { cleared: false, removed: vec![], added: vec![v(item)] })],
            added: vec![],
        };
        let mut state = Crdt::empty(CrdtKind::OrMap);
        let first = apply(&mut state, &a, 0, &add("x")).unwrap();
        let removal = Update::OrMap { cleared: false, removed: vec![v("s")], updated: vec![], added: vec![] };
        let removed = apply(&mut state, &a, 0, &removal).unwrap();
        let second = apply(&mut state, &a, 0, &add("y")).unwrap();
        // A replica that has the first add and the re-add but not yet the remove sees both items.
        let mut lagging = Crdt::empty(CrdtKind::OrMap);
        lagging.merge_delta(&first).unwrap();
        lagging.merge_delta(&second).unwrap();
        let Crdt::OrMap(m) = &lagging else { panic!("not a map") };
        let Some(Crdt::OrSet(s)) = m.get(&v("s")) else { panic!("no set") };
        assert_eq!(s.items().cloned().collect::<Vec<_>>(), vec![v("x"), v("y")]);
        lagging.merge_delta(&removed).unwrap();
        assert_eq!(lagging, state);
    }
}
