//! GSet: a grow-only set of opaque values.

use std::collections::BTreeSet;

use crate::Value;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GSet {
    items: BTreeSet<Value>,
}

impl GSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn items(&self) -> &BTreeSet<Value> {
        &self.items
    }

    pub fn contains(&self, item: &Value) -> bool {
        self.items.contains(item)
    }

    /// Adds `item`; the delta holds it unless it was already there.
    pub fn add(&mut self, item: Value) -> GSet {
        let mut delta = GSet::new();
        if !self.items.contains(&item) {
            delta.items.insert(item);
        }
        self.merge(&delta);
        delta
    }

    pub fn merge(&mut self, other: &GSet) {
        self.items.extend(other.items.iter().cloned());
    }

    pub fn merge_delta(&mut self, delta: &GSet) {
        self.merge(delta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_once() {
        let mut s = GSet::new();
        assert_eq!(s.add(Value::from_static(b"x")).items().len(), 1);
        assert!(s.add(Value::from_static(b"x")).items().is_empty());
        assert!(s.contains(&Value::from_static(b"x")));
    }
}
