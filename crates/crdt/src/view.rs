//! What the user function sees: the whole value on init ([`View`], crdt.proto's `CrdtState`
//! shape) and changes after ([`ViewDelta`], `CrdtDelta`'s shape). The proxy keeps the last view
//! it sent and sends [`View::diff`] against the new one; [`View::apply`] is the function's side.
//!
//! The function also changes its value by the updates it sends ([`View::apply_update`]): the
//! proxy advances its copy of the function's view the same way and diffs that against the state,
//! so a write that lost (an LWW write with a reverse or custom clock, say) is corrected.
//!
//! Invariants: `before.apply(&before.diff(&after)?)` gives `after`; with no concurrent change,
//! a view advanced by an update equals the view of the state the update gave, unless a register
//! write lost to its clock (both tested by property).

use std::collections::{BTreeMap, BTreeSet};

use crate::{Crdt, CrdtError, CrdtKind, ReplicaId, Update, Value};

/// A CRDT's value as the user function sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    GCounter(u64),
    PnCounter(i64),
    GSet(BTreeSet<Value>),
    OrSet(BTreeSet<Value>),
    /// Empty until the first write.
    LwwRegister(Option<Value>),
    Flag(bool),
    OrMap(BTreeMap<Value, View>),
    Vote {
        votes_for: u32,
        total_voters: u32,
        self_vote: bool,
    },
}

/// A change to a [`View`]. ORSet and ORMap changes apply cleared, then removed, then the rest.
/// Counters, GSets, flags and registers only go forward; an ORMap key whose value went back
/// (removed and added again in between) is both removed and added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewDelta {
    GCounter {
        increment: u64,
    },
    /// Wrapping: the difference of two `i64` values always fits after wrapping back.
    PnCounter {
        change: i64,
    },
    GSet {
        added: BTreeSet<Value>,
    },
    OrSet {
        cleared: bool,
        removed: BTreeSet<Value>,
        added: BTreeSet<Value>,
    },
    LwwRegister {
        value: Option<Value>,
    },
    Flag {
        value: bool,
    },
    /// A key whose value changed kind is both removed and added.
    OrMap {
        cleared: bool,
        removed: BTreeSet<Value>,
        updated: BTreeMap<Value, ViewDelta>,
        added: BTreeMap<Value, View>,
    },
    Vote {
        self_vote: bool,
        votes_for: u32,
        total_voters: u32,
    },
}

/// The view of `state` from `replica` (whose own vote is `self_vote`).
pub fn view(state: &Crdt, replica: &ReplicaId) -> View {
    match state {
        Crdt::GCounter(c) => View::GCounter(c.value()),
        Crdt::PnCounter(c) => View::PnCounter(c.value()),
        Crdt::GSet(s) => View::GSet(s.items().clone()),
        Crdt::OrSet(s) => View::OrSet(s.items().cloned().collect()),
        Crdt::LwwRegister(r) => View::LwwRegister(r.value().cloned()),
        Crdt::Flag(f) => View::Flag(f.value()),
        Crdt::OrMap(m) => View::OrMap(m.iter().map(|(k, v)| (k.clone(), view(&v, replica))).collect()),
        Crdt::Vote(v) => View::Vote {
            votes_for: v.votes_for(),
            total_voters: v.total_voters(),
            self_vote: v.self_vote(replica),
        },
    }
}

impl View {
    /// The view of the empty state of `kind`.
    pub fn empty(kind: CrdtKind) -> View {
        match kind {
            CrdtKind::GCounter => View::GCounter(0),
            CrdtKind::PnCounter => View::PnCounter(0),
            CrdtKind::GSet => View::GSet(BTreeSet::new()),
            CrdtKind::OrSet => View::OrSet(BTreeSet::new()),
            CrdtKind::LwwRegister => View::LwwRegister(None),
            CrdtKind::Flag => View::Flag(false),
            CrdtKind::OrMap => View::OrMap(BTreeMap::new()),
            CrdtKind::Vote => View::Vote { votes_for: 0, total_voters: 0, self_vote: false },
        }
    }

    /// Changes the view as the function does when it sends `update`. Fails as
    /// [`crate::apply`] fails (another kind, disabling a flag); then the view is unchanged.
    pub fn apply_update(&mut self, update: &Update) -> Result<(), CrdtError> {
        let mut work = self.clone();
        work.apply_update_in_place(update)?;
        *self = work;
        Ok(())
    }

    fn apply_update_in_place(&mut self, update: &Update) -> Result<(), CrdtError> {
        match (&mut *self, update) {
            (View::GCounter(v), Update::GCounter { increment }) => *v = v.saturating_add(*increment),
            (View::PnCounter(v), Update::PnCounter { change }) => *v = v.wrapping_add(*change),
            (View::GSet(s), Update::GSet { added }) => s.extend(added.iter().cloned()),
            (View::OrSet(s), Update::OrSet { cleared, removed, added }) => {
                if *cleared {
                    s.clear();
                }
                s.retain(|item| !removed.contains(item));
                s.extend(added.iter().cloned());
            }
            (View::LwwRegister(r), Update::LwwRegister { value, .. }) => *r = Some(value.clone()),
            (View::Flag(true), Update::Flag { value: false }) => return Err(CrdtError::FlagDisable),
            (View::Flag(f), Update::Flag { value }) => *f = *value,
            (View::Vote { votes_for, total_voters, self_vote }, Update::Vote { self_vote: new }) => {
                // No voters at all: this is a new vote (in a new ORMap entry) and the function's
                // ballot is its first.
                if *total_voters == 0 {
                    *total_voters = 1;
                }
                match (*self_vote, *new) {
                    (false, true) => *votes_for = votes_for.saturating_add(1),
                    (true, false) => *votes_for = votes_for.saturating_sub(1),
                    _ => {}
                }
                *self_vote = *new;
            }
            (View::OrMap(m), Update::OrMap { cleared, removed, updated, added }) => {
                if *cleared {
                    m.clear();
                }
                m.retain(|key, _| !removed.contains(key));
                for (key, nested) in updated {
                    m.entry(key.clone())
                        .or_insert_with(|| View::empty(nested.kind()))
                        .apply_update_in_place(nested)?;
                }
                for (key, initial) in added {
                    let mut value = View::empty(initial.kind());
                    value.apply_update_in_place(initial)?;
                    m.insert(key.clone(), value);
                }
            }
            (view, update) => {
                return Err(CrdtError::UpdateKindMismatch { state: view.kind(), update: update.kind() });
            }
        }
        Ok(())
    }

    pub fn kind(&self) -> CrdtKind {
        match self {
            View::GCounter(_) => CrdtKind::GCounter,
            View::PnCounter(_) => CrdtKind::PnCounter,
            View::GSet(_) => CrdtKind::GSet,
            View::OrSet(_) => CrdtKind::OrSet,
            View::LwwRegister(_) => CrdtKind::LwwRegister,
            View::Flag(_) => CrdtKind::Flag,
            View::OrMap(_) => CrdtKind::OrMap,
            View::Vote { .. } => CrdtKind::Vote,
        }
    }

    /// The change from `self` to `after`; `None` when nothing the function sees changed.
    pub fn diff(&self, after: &View) -> Result<Option<ViewDelta>, CrdtError> {
        let delta = match (self, after) {
            (View::GCounter(b), View::GCounter(a)) => {
                let increment =
                    a.checked_sub(*b).ok_or(CrdtError::ViewWentBack { kind: CrdtKind::GCounter })?;
                (increment > 0).then_some(ViewDelta::GCounter { increment })
            }
            (View::PnCounter(b), View::PnCounter(a)) => {
                (a != b).then(|| ViewDelta::PnCounter { change: a.wrapping_sub(*b) })
            }
            (View::GSet(b), View::GSet(a)) => {
                if !b.is_subset(a) {
                    return Err(CrdtError::ViewWentBack { kind: CrdtKind::GSet });
                }
                let added: BTreeSet<Value> = a.difference(b).cloned().collect();
                (!added.is_empty()).then_some(ViewDelta::GSet { added })
            }
            (View::OrSet(b), View::OrSet(a)) => {
                let cleared = a.is_empty() && !b.is_empty();
                let removed: BTreeSet<Value> =
                    if cleared { BTreeSet::new() } else { b.difference(a).cloned().collect() };
                let added: BTreeSet<Value> = a.difference(b).cloned().collect();
                (cleared || !removed.is_empty() || !added.is_empty()).then_some(ViewDelta::OrSet {
                    cleared,
                    removed,
                    added,
                })
            }
            (View::LwwRegister(Some(_)), View::LwwRegister(None)) => {
                return Err(CrdtError::ViewWentBack { kind: CrdtKind::LwwRegister });
            }
            (View::LwwRegister(b), View::LwwRegister(a)) => {
                (a != b).then(|| ViewDelta::LwwRegister { value: a.clone() })
            }
            (View::Flag(true), View::Flag(false)) => {
                return Err(CrdtError::ViewWentBack { kind: CrdtKind::Flag });
            }
            (View::Flag(b), View::Flag(a)) => (a != b).then_some(ViewDelta::Flag { value: *a }),
            (View::OrMap(b), View::OrMap(a)) => diff_maps(b, a)?,
            (View::Vote { .. }, View::Vote { votes_for, total_voters, self_vote }) => (self != after)
                .then_some(ViewDelta::Vote {
                    self_vote: *self_vote,
                    votes_for: *votes_for,
                    total_voters: *total_voters,
                }),
            (b, a) => return Err(CrdtError::ViewKindMismatch { before: b.kind(), after: a.kind() }),
        };
        Ok(delta)
    }

    /// Applies a change (what the user function does with a `CrdtDelta`).
    pub fn apply(&mut self, delta: &ViewDelta) -> Result<(), CrdtError> {
        match (&mut *self, delta) {
            (View::GCounter(v), ViewDelta::GCounter { increment }) => *v = v.saturating_add(*increment),
            (View::PnCounter(v), ViewDelta::PnCounter { change }) => *v = v.wrapping_add(*change),
            (View::GSet(s), ViewDelta::GSet { added }) => s.extend(added.iter().cloned()),
            (View::OrSet(s), ViewDelta::OrSet { cleared, removed, added }) => {
                if *cleared {
                    s.clear();
                }
                s.retain(|item| !removed.contains(item));
                s.extend(added.iter().cloned());
            }
            (View::LwwRegister(r), ViewDelta::LwwRegister { value }) => r.clone_from(value),
            (View::Flag(f), ViewDelta::Flag { value }) => *f = *value,
            (View::OrMap(m), ViewDelta::OrMap { cleared, removed, updated, added }) => {
                if *cleared {
                    m.clear();
                }
                m.retain(|key, _| !removed.contains(key));
                for (key, change) in updated {
                    if let Some(value) = m.get_mut(key) {
                        value.apply(change)?;
                    }
                }
                m.extend(added.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            (View::Vote { .. }, ViewDelta::Vote { self_vote, votes_for, total_voters }) => {
                *self =
                    View::Vote { votes_for: *votes_for, total_voters: *total_voters, self_vote: *self_vote };
            }
            (view, delta) => {
                return Err(CrdtError::ViewKindMismatch { before: view.kind(), after: delta.kind() });
            }
        }
        Ok(())
    }
}

impl ViewDelta {
    pub fn kind(&self) -> CrdtKind {
        match self {
            ViewDelta::GCounter { .. } => CrdtKind::GCounter,
            ViewDelta::PnCounter { .. } => CrdtKind::PnCounter,
            ViewDelta::GSet { .. } => CrdtKind::GSet,
            ViewDelta::OrSet { .. } => CrdtKind::OrSet,
            ViewDelta::LwwRegister { .. } => CrdtKind::LwwRegister,
            ViewDelta::Flag { .. } => CrdtKind::Flag,
            ViewDelta::OrMap { .. } => CrdtKind::OrMap,
            ViewDelta::Vote { .. } => CrdtKind::Vote,
        }
    }
}

fn diff_maps(
    before: &BTreeMap<Value, View>,
    after: &BTreeMap<Value, View>,
) -> Result<Option<ViewDelta>, CrdtError> {
    let cleared = after.is_empty() && !before.is_empty();
    let mut removed = BTreeSet::new();
    let mut updated = BTreeMap::new();
    let mut added = BTreeMap::new();
    for (key, old) in before {
        match after.get(key) {
            None if cleared => {}
            None => {
                removed.insert(key.clone());
            }
            Some(new) if new.kind() != old.kind() => {
                removed.insert(key.clone());
                added.insert(key.clone(), new.clone());
            }
            Some(new) => match old.diff(new) {
                Ok(Some(change)) => {
                    updated.insert(key.clone(), change);
                }
                Ok(None) => {}
                // The key was removed and added again: its value started over.
                Err(CrdtError::ViewWentBack { .. }) => {
                    removed.insert(key.clone());
                    added.insert(key.clone(), new.clone());
                }
                Err(e) => return Err(e),
            },
        }
    }
    for (key, new) in after {
        if !before.contains_key(key) {
            added.insert(key.clone(), new.clone());
        }
    }
    let changed = cleared || !removed.is_empty() || !updated.is_empty() || !added.is_empty();
    Ok(changed.then_some(ViewDelta::OrMap { cleared, removed, updated, added }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &'static str) -> Value {
        Value::from_static(s.as_bytes())
    }

    #[test]
    fn counter_and_set_changes() {
        let d = View::PnCounter(5).diff(&View::PnCounter(-2)).unwrap();
        assert_eq!(d, Some(ViewDelta::PnCounter { change: -7 }));
        assert_eq!(View::GCounter(3).diff(&View::GCounter(3)).unwrap(), None);
        let err = View::GCounter(3).diff(&View::GCounter(2)).unwrap_err();
        assert_eq!(err.to_string(), "a gcounter view cannot go back to an earlier value");
        let before = View::OrSet(BTreeSet::from([v("a"), v("b")]));
        let after = View::OrSet(BTreeSet::from([v("b"), v("c")]));
        assert_eq!(
            before.diff(&after).unwrap(),
            Some(ViewDelta::OrSet {
                cleared: false,
                removed: BTreeSet::from([v("a")]),
                added: BTreeSet::from([v("c")])
            })
        );
    }

    #[test]
    fn map_changes_name_added_updated_and_removed_keys() {
        let before = View::OrMap(BTreeMap::from([
            (v("gone"), View::Flag(false)),
            (v("same"), View::Flag(true)),
            (v("up"), View::GCounter(1)),
            (v("kind"), View::GCounter(1)),
        ]));
        let after = View::OrMap(BTreeMap::from([
            (v("same"), View::Flag(true)),
            (v("up"), View::GCounter(4)),
            (v("kind"), View::Flag(true)),
            (v("new"), View::PnCounter(-1)),
        ]));
        let delta = before.diff(&after).unwrap().unwrap();
        assert_eq!(
            delta,
            ViewDelta::OrMap {
                cleared: false,
                removed: BTreeSet::from([v("gone"), v("kind")]),
                updated: BTreeMap::from([(v("up"), ViewDelta::GCounter { increment: 3 })]),
                added: BTreeMap::from([(v("kind"), View::Flag(true)), (v("new"), View::PnCounter(-1))]),
            }
        );
        let mut applied = before.clone();
        applied.apply(&delta).unwrap();
        assert_eq!(applied, after);
    }

    #[test]
    fn views_of_two_kinds_do_not_diff() {
        let err = View::Flag(true).diff(&View::GCounter(1)).unwrap_err();
        assert_eq!(err.to_string(), "a view of flag cannot change into gcounter");
        let mut flag = View::Flag(false);
        assert!(flag.apply(&ViewDelta::GCounter { increment: 1 }).is_err());
    }
}
