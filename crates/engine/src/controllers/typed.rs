//! Typed copies of stored objects for the planners, kept across passes: the planners read
//! `&[Pod]`, and deserializing every pod of a namespace on every pass (several passes per pod
//! start) was most of the engine's cost. A namespace's list is rebuilt only when one of its
//! objects changed (a different uid or resourceVersion), and then only the changed objects are
//! deserialized again.

use crate::kinds::Kind;
use crate::store::{Store, meta_str};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One kind's typed objects, per namespace.
pub struct TypedCache<T> {
    kind: Kind,
    namespaces: Mutex<HashMap<String, Snapshot<T>>>,
}

struct Snapshot<T> {
    /// `(uid, resourceVersion)` of every stored object, in the store's order (malformed ones too,
    /// so that their presence does not force a rebuild on every pass).
    versions: Vec<(String, String)>,
    /// The objects that deserialized, in the same order.
    objects: Arc<Vec<T>>,
    /// Each uid's resourceVersion and where its typed object is in `objects`.
    by_uid: HashMap<String, (String, usize)>,
}

impl<T: DeserializeOwned + Clone> TypedCache<T> {
    pub fn new(kind: Kind) -> TypedCache<T> {
        TypedCache { kind, namespaces: Mutex::new(HashMap::new()) }
    }

    /// The typed objects of this kind in `namespace`, as the store holds them now; malformed
    /// ones are left out (they cannot be planned).
    pub fn get(&self, store: &Store, namespace: &str) -> Arc<Vec<T>> {
        let raw = store.list(self.kind, Some(namespace));
        let id = |o: &serde_json::Value| {
            (
                meta_str(o, "uid").unwrap_or_default().to_string(),
                meta_str(o, "resourceVersion").unwrap_or_default().to_string(),
            )
        };
        let versions: Vec<(String, String)> = raw.iter().map(|o| id(o)).collect();
        let mut namespaces = self.namespaces.lock().unwrap_or_else(|p| p.into_inner());
        if raw.is_empty() {
            namespaces.remove(namespace);
            return Arc::new(Vec::new());
        }
        let previous = namespaces.get(namespace);
        if let Some(snapshot) = previous
            && snapshot.versions == versions
        {
            return snapshot.objects.clone();
        }
        let mut objects = Vec::with_capacity(raw.len());
        let mut by_uid = HashMap::with_capacity(raw.len());
        for (object, (uid, version)) in raw.iter().zip(&versions) {
            let unchanged = previous.and_then(|s| match s.by_uid.get(uid) {
                Some((v, at)) if v == version => s.objects.get(*at).cloned(),
                _ => None,
            });
            let typed = match unchanged {
                Some(t) => t,
                None => match serde_json::from_value::<T>((**object).clone()) {
                    Ok(t) => t,
                    Err(_) => continue,
                },
            };
            by_uid.insert(uid.clone(), (version.clone(), objects.len()));
            objects.push(typed);
        }
        let objects = Arc::new(objects);
        namespaces.insert(namespace.to_string(), Snapshot { versions, objects: objects.clone(), by_uid });
        objects
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    fn pod(name: &str, image: &str) -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "app", "image": image}]}})
    }

    fn images(pods: &[Pod]) -> Vec<String> {
        pods.iter()
            .map(|p| p.spec.as_ref().and_then(|s| s.containers[0].image.clone()).unwrap_or_default())
            .collect()
    }

    #[test]
    fn follows_creates_updates_and_deletes_and_reuses_an_unchanged_list() {
        let store = Store::in_memory();
        let cache = TypedCache::<Pod>::new(Kind::Pod);
        assert!(cache.get(&store, "default").is_empty());
        store.create(pod("a", "one")).unwrap();
        store.create(pod("b", "one")).unwrap();
        let first = cache.get(&store, "default");
        assert_eq!(images(&first), ["one", "one"]);
        assert!(Arc::ptr_eq(&first, &cache.get(&store, "default")), "nothing changed: the same list");

        let mut b = (*store.get(&crate::ObjectKey::new(Kind::Pod, "default", "b")).unwrap()).clone();
        b["spec"]["containers"][0]["image"] = json!("two");
        store.update(b).unwrap();
        assert_eq!(images(&cache.get(&store, "default")), ["one", "two"]);

        store.remove(&crate::ObjectKey::new(Kind::Pod, "default", "a")).unwrap();
        assert_eq!(images(&cache.get(&store, "default")), ["two"]);
        store.remove(&crate::ObjectKey::new(Kind::Pod, "default", "b")).unwrap();
        assert!(cache.get(&store, "default").is_empty());
        assert!(cache.get(&store, "other").is_empty());
    }
}
