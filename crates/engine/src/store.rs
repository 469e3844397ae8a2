//! The object store: every object the engine knows, as Kubernetes' API server would keep it.
//!
//! Objects are JSON values with full Kubernetes metadata. The store assigns `uid`,
//! `resourceVersion` (one counter for the whole store, as etcd's revision), `generation` (bumped
//! when `spec` changes) and `creationTimestamp`; it refuses an update whose `resourceVersion` is
//! stale (optimistic concurrency); deletion honours finalizers and a pod's grace period by setting
//! `deletionTimestamp` first. Every change is sent to watchers.
//!
//! Reads come from memory; every write goes to a redb file first (when the store has one) and only
//! then to memory and the watchers, so what a watcher saw survives a crash of the engine.

use crate::kinds::{self, Kind};
use k8s_openapi::jiff::Timestamp;
use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

/// `(kind, namespace, name)` to the object's JSON.
const OBJECTS: TableDefinition<'_, (&str, &str, &str), &[u8]> = TableDefinition::new("objects");
/// Counters (`resourceVersion`).
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");

/// The finalizer Kubernetes uses for foreground cascading deletion.
pub const FOREGROUND: &str = "foregroundDeletion";
/// The finalizer Kubernetes uses for orphaning deletion.
pub const ORPHAN: &str = "orphan";

/// Where an object lives: its kind, namespace (empty for cluster-scoped kinds) and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(kind: Kind, namespace: impl Into<String>, name: impl Into<String>) -> ObjectKey {
        let namespace = if kind.namespaced() { namespace.into() } else { String::new() };
        ObjectKey { kind, namespace, name: name.into() }
    }

    /// The key of an object, from its `kind` and metadata.
    pub fn of(object: &Value) -> Result<ObjectKey, StoreError> {
        let kind_name = object.get("kind").and_then(Value::as_str).unwrap_or_default();
        let kind = Kind::from_name(kind_name)
            .ok_or_else(|| StoreError::UnknownKind { kind: kind_name.to_string() })?;
        let name = meta_str(object, "name").unwrap_or_default();
        if name.is_empty() {
            return Err(StoreError::Invalid {
                object: format!("{kind_name}/"),
                reason: "metadata.name is empty".into(),
            });
        }
        let namespace = meta_str(object, "namespace").unwrap_or(kinds::DEFAULT_NAMESPACE);
        Ok(ObjectKey::new(kind, namespace, name))
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind.resource(), self.name)
        } else {
            write!(f, "{}/{} in namespace {}", self.kind.resource(), self.name, self.namespace)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{key} not found")]
    NotFound { key: ObjectKey },
    #[error("{key} already exists")]
    AlreadyExists { key: ObjectKey },
    #[error(
        "conflict on {key}: the object has been modified (resourceVersion {given} is not the current {current}); read it again and retry"
    )]
    Conflict { key: ObjectKey, given: String, current: String },
    #[error("kind {kind:?} is not served by this engine")]
    UnknownKind { kind: String },
    #[error("invalid object {object}: {reason}")]
    Invalid { object: String, reason: String },
    #[error("state file {path}: {source}")]
    File { path: PathBuf, source: redb::Error },
    #[error("state file: {0}")]
    Storage(#[from] redb::Error),
    #[error("encoding {key}: {source}")]
    Encode { key: ObjectKey, source: serde_json::Error },
}

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> StoreError { StoreError::Storage(e.into()) }
        }
    )*};
}
storage_from!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::DatabaseError
);

/// What happened to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One change, as a Kubernetes watch reports it.
#[derive(Clone, Debug)]
pub struct WatchEvent {
    pub kind: EventType,
    pub key: ObjectKey,
    pub object: Arc<Value>,
}

/// How dependents are treated when their owner is deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Propagation {
    /// The owner goes now; the garbage collector deletes dependents afterwards.
    #[default]
    Background,
    /// The owner stays (with `deletionTimestamp` and the `foregroundDeletion` finalizer) until the
    /// dependents that block it are gone.
    Foreground,
    /// Dependents lose their owner reference and stay.
    Orphan,
}

/// Options of a delete, as Kubernetes' `DeleteOptions`.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeleteOptions {
    pub propagation: Propagation,
    /// Pods only: the grace period; `None` is the pod's own, `Some(0)` with `force` deletes now.
    pub grace_period_seconds: Option<i64>,
    /// Remove the object now, even a pod that may still run (kubectl's `--force`).
    pub force: bool,
}

struct State {
    objects: BTreeMap<ObjectKey, Arc<Value>>,
    resource_version: u64,
}

/// Creates the store's file mode 0600 (redb then fills the empty file), or tightens an existing
/// one that others could read, with a log line: it holds every object, Secrets included.
fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    let mode = file.metadata()?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        tracing::warn!(
            file = %path.display(),
            was = format!("{mode:04o}"),
            "the store file was readable by others; its mode is now 0600"
        );
    }
    Ok(())
}

/// The store. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    db: Option<Database>,
    events: broadcast::Sender<WatchEvent>,
}

impl Store {
    /// A store kept only in memory (tests, `--dry-run`).
    pub fn in_memory() -> Store {
        Store::with(None, BTreeMap::new(), 0)
    }

    /// Opens (or creates) the store's file and loads every object in it.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let file_error = |source: redb::Error| StoreError::File { path: path.to_path_buf(), source };
        private_file(path).map_err(|e| file_error(redb::Error::Io(e)))?;
        let db = Database::create(path).map_err(|e| file_error(e.into()))?;
        {
            let txn = db.begin_write().map_err(|e| file_error(e.into()))?;
            txn.open_table(OBJECTS).map_err(|e| file_error(e.into()))?;
            txn.open_table(META).map_err(|e| file_error(e.into()))?;
            txn.commit().map_err(|e| file_error(e.into()))?;
        }
        let mut objects = BTreeMap::new();
        let resource_version;
        {
            let txn = db.begin_read()?;
            let table = txn.open_table(OBJECTS)?;
            for entry in table.iter()? {
                let (_, bytes) = entry?;
                let Ok(object) = serde_json::from_slice::<Value>(bytes.value()) else { continue };
                if let Ok(key) = ObjectKey::of(&object) {
                    objects.insert(key, Arc::new(object));
                }
            }
            let meta = txn.open_table(META)?;
            resource_version = meta.get("resourceVersion")?.map(|v| v.value()).unwrap_or(0);
        }
        Ok(Store::with(Some(db), objects, resource_version))
    }

    fn with(db: Option<Database>, objects: BTreeMap<ObjectKey, Arc<Value>>, resource_version: u64) -> Store {
        let (events, _) = broadcast::channel(4096);
        Store {
            inner: Arc::new(Inner { state: Mutex::new(State { objects, resource_version }), db, events }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic while holding it; the map itself is still consistent
        // because every write replaces whole values.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every change from now on. A receiver that falls behind gets `Lagged` and should list again.
    pub fn watch(&self) -> broadcast::Receiver<WatchEvent> {
        self.inner.events.subscribe()
    }

    /// The current resourceVersion of the whole store.
    pub fn resource_version(&self) -> u64 {
        self.lock().resource_version
    }

    pub fn get(&self, key: &ObjectKey) -> Option<Arc<Value>> {
        self.lock().objects.get(key).cloned()
    }

    /// Objects of a kind, in one namespace or all (`None`), ordered by namespace and name.
    pub fn list(&self, kind: Kind, namespace: Option<&str>) -> Vec<Arc<Value>> {
        let state = self.lock();
        // Keys order by kind, then namespace, then name: a list reads one contiguous range
        // instead of the whole store (which holds every Event too).
        let from =
            ObjectKey { kind, namespace: namespace.unwrap_or_default().to_string(), name: String::new() };
        state
            .objects
            .range(from..)
            .take_while(|(k, _)| k.kind == kind && namespace.is_none_or(|ns| k.namespace == ns))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Every object (for `get all`).
    pub fn all(&self) -> Vec<(ObjectKey, Arc<Value>)> {
        self.lock().objects.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Every object but those of `kind` (the garbage collector skips Events, which own nothing and
    /// are owned by nothing, and are most of a busy store).
    pub fn all_except(&self, kind: Kind) -> Vec<(ObjectKey, Arc<Value>)> {
        self.lock()
            .objects
            .iter()
            .filter(|(k, _)| k.kind != kind)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Creates an object. `metadata.generateName` is honoured when `name` is empty.
    pub fn create(&self, mut object: Value) -> Result<Arc<Value>, StoreError> {
        let mut state = self.lock();
        fill_generated_name(&mut object, &state.objects);
        let key = ObjectKey::of(&object)?;
        if state.objects.contains_key(&key) {
            return Err(StoreError::AlreadyExists { key });
        }
        let rv = state.resource_version + 1;
        let meta = metadata_mut(&mut object);
        meta.insert("uid".into(), json!(new_uid()));
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        meta.insert("creationTimestamp".into(), json!(now_string()));
        meta.insert("generation".into(), json!(1));
        if key.kind.namespaced() {
            meta.insert("namespace".into(), json!(key.namespace));
        }
        meta.remove("deletionTimestamp");
        self.commit(&mut state, rv, key, object, EventType::Added)
    }

    /// Replaces an object's metadata and spec (not its status). A `resourceVersion` in the given
    /// object must be the current one; without one, the update is unconditional.
    pub fn update(&self, object: Value) -> Result<Arc<Value>, StoreError> {
        self.replace(object, false)
    }

    /// Replaces an object's status only (the status subresource).
    pub fn update_status(&self, object: Value) -> Result<Arc<Value>, StoreError> {
        self.replace(object, true)
    }

    fn replace(&self, object: Value, status_only: bool) -> Result<Arc<Value>, StoreError> {
        let key = ObjectKey::of(&object)?;
        let mut state = self.lock();
        let current =
            state.objects.get(&key).cloned().ok_or_else(|| StoreError::NotFound { key: key.clone() })?;
        check_version(&key, &object, &current)?;
        let mut next = if status_only {
            let mut next = (*current).clone();
            match object.get("status") {
                Some(status) => next["status"] = status.clone(),
                None => {
                    if let Some(map) = next.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
            next
        } else {
            let mut next = object;
            // Identity and server-owned fields are never taken from the client.
            for field in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"] {
                match current["metadata"].get(field) {
                    Some(v) => {
                        metadata_mut(&mut next).insert(field.into(), v.clone());
                    }
                    None => {
                        metadata_mut(&mut next).remove(field);
                    }
                }
            }
            let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
            let generation =
                if next.get("spec") != current.get("spec") { generation + 1 } else { generation };
            metadata_mut(&mut next).insert("generation".into(), json!(generation));
            match current.get("status") {
                Some(status) => next["status"] = status.clone(),
                None => {
                    if let Some(map) = next.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
            next
        };
        // An object marked for deletion whose last finalizer went is removed now.
        if is_deleting(&next) && finalizers(&next).is_empty() && key.kind != Kind::Pod {
            return self.remove_locked(&mut state, &key).map(|o| o.unwrap_or(current));
        }
        if next == *current {
            return Ok(current);
        }
        let rv = state.resource_version + 1;
        metadata_mut(&mut next).insert("resourceVersion".into(), json!(rv.to_string()));
        self.commit(&mut state, rv, key, next, EventType::Modified)
    }

    /// Deletes an object, as the API server does: objects with finalizers (and pods within their
    /// grace period) are marked with `deletionTimestamp` and go when their finalizers are gone (for
    /// pods, when the runtime has stopped them; see [`Store::remove`]). Returns the object as it is
    /// after the call (`None` when it is gone).
    pub fn delete(&self, key: &ObjectKey, opts: DeleteOptions) -> Result<Option<Arc<Value>>, StoreError> {
        let mut state = self.lock();
        let current =
            state.objects.get(key).cloned().ok_or_else(|| StoreError::NotFound { key: key.clone() })?;
        let mut next = (*current).clone();
        let mut fins = finalizers(&next);
        match opts.propagation {
            Propagation::Foreground if !fins.iter().any(|f| f == FOREGROUND) => fins.push(FOREGROUND.into()),
            Propagation::Orphan if !fins.iter().any(|f| f == ORPHAN) => fins.push(ORPHAN.into()),
            _ => {}
        }
        let graceful_pod = key.kind == Kind::Pod && !opts.force;
        if fins.is_empty() && !graceful_pod {
            return self.remove_locked(&mut state, key);
        }
        if is_deleting(&current) && fins == finalizers(&current) && opts.grace_period_seconds.is_none() {
            return Ok(Some(current));
        }
        let meta = metadata_mut(&mut next);
        if !fins.is_empty() {
            meta.insert("finalizers".into(), json!(fins));
        }
        meta.entry("deletionTimestamp").or_insert_with(|| json!(now_string()));
        if key.kind == Kind::Pod {
            let own = next["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap_or(30);
            let grace = opts.grace_period_seconds.unwrap_or(own).max(0);
            metadata_mut(&mut next).insert("deletionGracePeriodSeconds".into(), json!(grace));
        }
        let rv = state.resource_version + 1;
        metadata_mut(&mut next).insert("resourceVersion".into(), json!(rv.to_string()));
        self.commit(&mut state, rv, key.clone(), next, EventType::Modified).map(Some)
    }

    /// Removes an object now, whatever its finalizers (the runtime calls this once a pod has
    /// stopped; the garbage collector once a foreground owner's dependents are gone).
    pub fn remove(&self, key: &ObjectKey) -> Result<Option<Arc<Value>>, StoreError> {
        let mut state = self.lock();
        self.remove_locked(&mut state, key)
    }

    fn remove_locked(&self, state: &mut State, key: &ObjectKey) -> Result<Option<Arc<Value>>, StoreError> {
        let Some(current) = state.objects.get(key).cloned() else { return Ok(None) };
        let rv = state.resource_version + 1;
        if let Some(db) = &self.inner.db {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(OBJECTS)?;
                table.remove((key.kind.name(), key.namespace.as_str(), key.name.as_str()))?;
                txn.open_table(META)?.insert("resourceVersion", rv)?;
            }
            txn.commit()?;
        }
        state.resource_version = rv;
        state.objects.remove(key);
        let mut gone = (*current).clone();
        metadata_mut(&mut gone).insert("resourceVersion".into(), json!(rv.to_string()));
        let gone = Arc::new(gone);
        let _ =
            self.inner.events.send(WatchEvent { kind: EventType::Deleted, key: key.clone(), object: gone });
        Ok(None)
    }

    fn commit(
        &self,
        state: &mut State,
        rv: u64,
        key: ObjectKey,
        object: Value,
        kind: EventType,
    ) -> Result<Arc<Value>, StoreError> {
        if let Some(db) = &self.inner.db {
            let bytes = serde_json::to_vec(&object)
                .map_err(|source| StoreError::Encode { key: key.clone(), source })?;
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(OBJECTS)?;
                table
                    .insert((key.kind.name(), key.namespace.as_str(), key.name.as_str()), bytes.as_slice())?;
                txn.open_table(META)?.insert("resourceVersion", rv)?;
            }
            txn.commit()?;
        }
        state.resource_version = rv;
        let object = Arc::new(object);
        state.objects.insert(key.clone(), object.clone());
        let _ = self.inner.events.send(WatchEvent { kind, key, object: object.clone() });
        Ok(object)
    }
}

fn check_version(key: &ObjectKey, given: &Value, current: &Value) -> Result<(), StoreError> {
    let Some(given_rv) = meta_str(given, "resourceVersion").filter(|s| !s.is_empty()) else { return Ok(()) };
    let current_rv = meta_str(current, "resourceVersion").unwrap_or_default();
    if given_rv != current_rv {
        return Err(StoreError::Conflict {
            key: key.clone(),
            given: given_rv.to_string(),
            current: current_rv.to_string(),
        });
    }
    Ok(())
}

fn fill_generated_name(object: &mut Value, existing: &BTreeMap<ObjectKey, Arc<Value>>) {
    if meta_str(object, "name").is_some_and(|n| !n.is_empty()) {
        return;
    }
    let Some(prefix) = meta_str(object, "generateName").map(str::to_string) else { return };
    for _ in 0..16 {
        let name = format!("{prefix}{}", random_suffix(5));
        metadata_mut(object).insert("name".into(), json!(name));
        match ObjectKey::of(object) {
            Ok(key) if !existing.contains_key(&key) => return,
            _ => {}
        }
    }
}

/// `metadata.<field>` as a string.
pub fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get("metadata")?.get(field)?.as_str()
}

/// `metadata`, created when missing (and the object made a map when it is not one).
pub fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.is_object() {
        *object = Value::Object(Map::new());
    }
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = Value::Object(Map::new());
    }
    match object.get_mut("metadata") {
        Some(Value::Object(map)) => map,
        _ => unreachable!("metadata was just made a map"),
    }
}

pub fn finalizers(object: &Value) -> Vec<String> {
    object["metadata"]["finalizers"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

pub fn is_deleting(object: &Value) -> bool {
    object["metadata"].get("deletionTimestamp").is_some_and(|v| !v.is_null())
}

pub fn now_string() -> String {
    Timestamp::now().round(k8s_openapi::jiff::Unit::Second).unwrap_or_else(|_| Timestamp::now()).to_string()
}

/// 64 random bits from the standard library's per-process random hasher keys and a counter.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// A version 4 UUID.
pub fn new_uid() -> String {
    let (a, b) = (random_u64(), random_u64());
    let bytes: [u8; 16] = {
        let mut x = [0u8; 16];
        x[..8].copy_from_slice(&a.to_be_bytes());
        x[8..].copy_from_slice(&b.to_be_bytes());
        x[6] = (x[6] & 0x0f) | 0x40;
        x[8] = (x[8] & 0x3f) | 0x80;
        x
    };
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// Kubernetes' name suffix alphabet (no vowels, no look-alikes).
pub fn random_suffix(len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = random_u64();
    (0..len)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
            n /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

#[cfg(test)]
mod tests;
