use crate::{Crdt, DotSource, GCounter, OrMap, ReplicaId, Value};

fn v(s: &'static str) -> Value {
    Value::from_static(s.as_bytes())
}

fn increment(map: &OrMap, replica: &str, key: &'static str, by: u64) -> Crdt {
    let mut value = map.get(&v(key)).unwrap_or(Crdt::GCounter(GCounter::new()));
    match &mut value {
        Crdt::GCounter(c) => Crdt::GCounter(c.increment(&ReplicaId::from(replica), by).unwrap()),
        other => panic!("not a counter: {other:?}"),
    }
}

fn counter(map: &OrMap, key: &'static str) -> Option<u64> {
    match map.get(&v(key)) {
        Some(Crdt::GCounter(c)) => Some(c.value()),
        _ => None,
    }
}

#[test]
fn updates_remove_and_re_add_start_empty() {
    let mut m = OrMap::new();
    let mut dots = DotSource::new("a".into(), Some(m.context()));
    let d = increment(&m, "a", "k", 2);
    m.update(&mut dots, v("k"), d).unwrap();
    let d = increment(&m, "a", "k", 3);
    m.update(&mut dots, v("k"), d).unwrap();
    assert_eq!(counter(&m, "k"), Some(5));
    m.remove(&v("k"));
    assert_eq!(counter(&m, "k"), None);
    let d = increment(&m, "a", "k", 1);
    m.update(&mut dots, v("k"), d).unwrap();
    assert_eq!(counter(&m, "k"), Some(1));
}

#[test]
fn a_concurrent_update_wins_over_a_remove() {
    let mut x = OrMap::new();
    let mut ax = DotSource::new("a".into(), Some(x.context()));
    let d = increment(&x, "a", "k", 2);
    let created = x.update(&mut ax, v("k"), d).unwrap();
    let mut y = OrMap::new();
    y.merge_delta(&created).unwrap();
    let removed = x.remove(&v("k"));
    let mut by = DotSource::new("b".into(), Some(y.context()));
    let d = increment(&y, "b", "k", 1);
    let updated = y.update(&mut by, v("k"), d).unwrap();
    x.merge_delta(&updated).unwrap();
    y.merge_delta(&removed).unwrap();
    assert_eq!(x, y);
    assert_eq!(counter(&x, "k"), Some(1));
}

#[test]
fn merging_fragments_of_two_kinds_under_one_dot_is_an_error() {
    let mut x = OrMap::new();
    let mut y = OrMap::new();
    let mut dx = DotSource::new("a".into(), None);
    let mut dy = DotSource::new("a".into(), None);
    x.put(&mut dx, v("k"), Crdt::GCounter(GCounter::new())).unwrap();
    y.put(&mut dy, v("k"), Crdt::Flag(crate::Flag::new())).unwrap();
    let err = x.merge(&y).unwrap_err();
    assert_eq!(err.to_string(), "cannot merge flag into gcounter");
}
