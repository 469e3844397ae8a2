//! [`PostgresStore`]: a PostgreSQL database shared by every replica of a service.
//!
//! The primary keys carry the rules that matter across replicas: `(persistence_id,
//! sequence_number)` is unique, so of two replicas appending the same sequence number one
//! commits and the other gets [`StoreError::EventConflict`]; value updates are conditional on the
//! stored revision. PostgreSQL's own group commit batches concurrent transactions.

use deadpool_postgres::{GenericClient as _, Manager, ManagerConfig, Pool, RecyclingMethod};
use prost_types::Any;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use super::rules::{check_append, check_revision, check_snapshot};
use super::{Append, Snapshot, Store, StoreError, StoredEvent, ValueKey, ValueState};

/// The store's name in error messages.
const STORE: &str = "postgres";

/// Created on connect if missing. Serialized by an advisory lock, since several replicas may
/// start at once.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS stead_journal (
    persistence_id  TEXT   NOT NULL,
    sequence_number BIGINT NOT NULL,
    type_url        TEXT   NOT NULL,
    payload         BYTEA  NOT NULL,
    PRIMARY KEY (persistence_id, sequence_number)
);
CREATE TABLE IF NOT EXISTS stead_snapshot (
    persistence_id  TEXT   PRIMARY KEY,
    sequence_number BIGINT NOT NULL,
    type_url        TEXT   NOT NULL,
    payload         BYTEA  NOT NULL
);
CREATE TABLE IF NOT EXISTS stead_value (
    persistence_id TEXT   NOT NULL,
    entity_id      TEXT   NOT NULL,
    revision       BIGINT NOT NULL,
    type_url       TEXT,
    payload        BYTEA,
    PRIMARY KEY (persistence_id, entity_id)
);
";

/// An arbitrary constant naming the advisory lock that serializes schema creation.
const SCHEMA_LOCK: i64 = 0x5374_6561_6450_7278;

const HIGHEST: &str = "SELECT sequence_number FROM stead_journal WHERE persistence_id = $1 ORDER BY sequence_number DESC LIMIT 1";
const INSERT_EVENTS: &str = "INSERT INTO stead_journal (persistence_id, sequence_number, type_url, payload) \
     SELECT $1, * FROM UNNEST($2::BIGINT[], $3::TEXT[], $4::BYTEA[])";
/// An append without a snapshot in one statement (one round trip, autocommit): the events go in
/// only if the journal's highest sequence number is still `$5`. Zero rows inserted means the
/// check failed (the slow path then reads the journal to say why); a concurrent writer that
/// passed the same check loses on the primary key instead.
const APPEND_EVENTS: &str = "WITH current AS (SELECT COALESCE(MAX(sequence_number), 0) AS highest \
     FROM stead_journal WHERE persistence_id = $1) \
     INSERT INTO stead_journal (persistence_id, sequence_number, type_url, payload) \
     SELECT $1, e.seq, e.type_url, e.payload \
     FROM UNNEST($2::BIGINT[], $3::TEXT[], $4::BYTEA[]) AS e(seq, type_url, payload), current \
     WHERE current.highest = $5";
const UPSERT_SNAPSHOT: &str = "INSERT INTO stead_snapshot (persistence_id, sequence_number, type_url, payload) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (persistence_id) DO UPDATE \
     SET sequence_number = EXCLUDED.sequence_number, type_url = EXCLUDED.type_url, payload = EXCLUDED.payload \
     WHERE stead_snapshot.sequence_number <= EXCLUDED.sequence_number";
const READ_EVENTS: &str = "SELECT sequence_number, type_url, payload FROM stead_journal \
     WHERE persistence_id = $1 AND sequence_number > $2 ORDER BY sequence_number";
const LATEST_SNAPSHOT: &str =
    "SELECT sequence_number, type_url, payload FROM stead_snapshot WHERE persistence_id = $1";
const GET_VALUE: &str =
    "SELECT revision, type_url, payload FROM stead_value WHERE persistence_id = $1 AND entity_id = $2";
const CREATE_VALUE: &str = "INSERT INTO stead_value (persistence_id, entity_id, revision, type_url, payload) \
     VALUES ($1, $2, 1, $3, $4) ON CONFLICT (persistence_id, entity_id) DO NOTHING";
const UPDATE_VALUE: &str = "UPDATE stead_value SET revision = revision + 1, type_url = $4, payload = $5 \
     WHERE persistence_id = $1 AND entity_id = $2 AND revision = $3 RETURNING revision";

/// Failure to connect to PostgreSQL or to prepare its tables.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The connection pool could not be built.
    #[error("building the postgres connection pool for {target}: {source}")]
    Pool {
        /// Host, port and database.
        target: String,
        /// Why.
        source: deadpool_postgres::BuildError,
    },
    /// No connection could be made.
    #[error("connecting to postgres at {target}: {source}")]
    Connect {
        /// Host, port and database.
        target: String,
        /// Why.
        source: deadpool_postgres::PoolError,
    },
    /// The tables could not be created.
    #[error("creating the stead tables in postgres at {target}: {source}")]
    Schema {
        /// Host, port and database.
        target: String,
        /// Why.
        source: tokio_postgres::Error,
    },
}

/// A store in PostgreSQL, through a connection pool. Clones share the pool.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: Pool,
}

impl PostgresStore {
    /// Connects with at most `max_connections` connections and creates the tables if needed.
    pub async fn connect(
        config: tokio_postgres::Config,
        max_connections: usize,
    ) -> Result<Self, ConnectError> {
        let target = describe(&config);
        let manager =
            Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(max_connections.max(1))
            .build()
            .map_err(|source| ConnectError::Pool { target: target.clone(), source })?;
        let mut client =
            pool.get().await.map_err(|source| ConnectError::Connect { target: target.clone(), source })?;
        let schema = async {
            let txn = client.transaction().await?;
            txn.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK]).await?;
            txn.batch_execute(SCHEMA).await?;
            txn.commit().await
        };
        schema.await.map_err(|source| ConnectError::Schema { target, source })?;
        drop(client);
        Ok(Self { pool })
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool.get().await.map_err(backend)
    }
}

fn describe(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{}:{port}/{}", hosts.join(","), config.get_dbname().unwrap_or(""))
}

fn backend(source: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend { store: STORE, source: Box::new(source) }
}

/// Sequence numbers and revisions are BIGINT columns.
fn to_db(number: u64, persistence_id: &str) -> Result<i64, StoreError> {
    i64::try_from(number)
        .map_err(|_| StoreError::SequenceOverflow { persistence_id: persistence_id.to_string() })
}

fn from_db(number: i64) -> u64 {
    // Only non-negative numbers are ever written.
    u64::try_from(number).unwrap_or(0)
}

impl Store for PostgresStore {
    async fn append(&self, append: Append) -> Result<u64, StoreError> {
        if append.events.is_empty() {
            return check_append(&append, 0);
        }
        let pid = append.persistence_id.as_str();
        let first = to_db(append.first_sequence, pid)?;
        let count = i64::try_from(append.events.len())
            .map_err(|_| StoreError::SequenceOverflow { persistence_id: pid.to_string() })?;
        let last = first
            .checked_add(count - 1)
            .ok_or_else(|| StoreError::SequenceOverflow { persistence_id: pid.to_string() })?;
        let sequence_numbers: Vec<i64> = (first..=last).collect();
        let type_urls: Vec<&str> = append.events.iter().map(|e| e.type_url.as_str()).collect();
        let payloads: Vec<&[u8]> = append.events.iter().map(|e| e.value.as_slice()).collect();
        let conflict = |error: tokio_postgres::Error| {
            if error.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                // Another replica appended between our check and our insert.
                StoreError::EventConflict {
                    persistence_id: pid.to_string(),
                    sequence_number: append.first_sequence,
                }
            } else {
                backend(error)
            }
        };
        let mut client = self.client().await?;
        if append.snapshot.is_none() {
            // The common case: one statement, one round trip (statements cached per connection).
            let statement = client.prepare_cached(APPEND_EVENTS).await.map_err(backend)?;
            let expected_highest = first - 1;
            let inserted = client
                .execute(&statement, &[&pid, &sequence_numbers, &type_urls, &payloads, &expected_highest])
                .await
                .map_err(conflict)?;
            if inserted == 0 {
                let highest = client.prepare_cached(HIGHEST).await.map_err(backend)?;
                let highest = client
                    .query_opt(&highest, &[&pid])
                    .await
                    .map_err(backend)?
                    .map_or(0, |r| from_db(r.get(0)));
                // Reports the conflict or gap; if the journal moved on meanwhile, still a conflict.
                check_append(&append, highest)?;
                return Err(StoreError::EventConflict {
                    persistence_id: pid.to_string(),
                    sequence_number: append.first_sequence,
                });
            }
            return Ok(from_db(last));
        }
        let txn = client.transaction().await.map_err(backend)?;
        let highest = txn.prepare_cached(HIGHEST).await.map_err(backend)?;
        let highest =
            txn.query_opt(&highest, &[&pid]).await.map_err(backend)?.map_or(0, |r| from_db(r.get(0)));
        let last = check_append(&append, highest)?;
        let insert = txn.prepare_cached(INSERT_EVENTS).await.map_err(backend)?;
        txn.execute(&insert, &[&pid, &sequence_numbers, &type_urls, &payloads]).await.map_err(conflict)?;
        if let Some(snapshot) = &append.snapshot {
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
                [&pid, &to_db(last, pid)?, &snapshot.type_url, &snapshot.value];
            let upsert = txn.prepare_cached(UPSERT_SNAPSHOT).await.map_err(backend)?;
            txn.execute(&upsert, &params).await.map_err(backend)?;
        }
        txn.commit().await.map_err(conflict)?;
        Ok(last)
    }

    async fn read_events(&self, persistence_id: &str, after: u64) -> Result<Vec<StoredEvent>, StoreError> {
        let Ok(after) = i64::try_from(after) else { return Ok(Vec::new()) };
        let client = self.client().await?;
        let rows = client.query(READ_EVENTS, &[&persistence_id, &after]).await.map_err(backend)?;
        Ok(rows
            .iter()
            .map(|row| StoredEvent {
                sequence_number: from_db(row.get(0)),
                payload: Any { type_url: row.get(1), value: row.get(2) },
            })
            .collect())
    }

    async fn highest_sequence(&self, persistence_id: &str) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let row = client.query_opt(HIGHEST, &[&persistence_id]).await.map_err(backend)?;
        Ok(row.map_or(0, |row| from_db(row.get(0))))
    }

    async fn save_snapshot(&self, persistence_id: &str, snapshot: Snapshot) -> Result<(), StoreError> {
        let client = self.client().await?;
        // Events are never removed, so a check against the journal stays true once passed.
        let highest = client
            .query_opt(HIGHEST, &[&persistence_id])
            .await
            .map_err(backend)?
            .map_or(0, |row| from_db(row.get(0)));
        check_snapshot(persistence_id, snapshot.sequence_number, highest)?;
        let sequence_number = to_db(snapshot.sequence_number, persistence_id)?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
            [&persistence_id, &sequence_number, &snapshot.payload.type_url, &snapshot.payload.value];
        client.execute(UPSERT_SNAPSHOT, &params).await.map_err(backend)?;
        Ok(())
    }

    async fn latest_snapshot(&self, persistence_id: &str) -> Result<Option<Snapshot>, StoreError> {
        let client = self.client().await?;
        let row = client.query_opt(LATEST_SNAPSHOT, &[&persistence_id]).await.map_err(backend)?;
        Ok(row.map(|row| Snapshot {
            sequence_number: from_db(row.get(0)),
            payload: Any { type_url: row.get(1), value: row.get(2) },
        }))
    }

    async fn get_value(&self, key: &ValueKey) -> Result<ValueState, StoreError> {
        let client = self.client().await?;
        read_value(&client, key).await
    }

    async fn update_value(
        &self,
        key: &ValueKey,
        expected_revision: u64,
        value: Any,
    ) -> Result<u64, StoreError> {
        self.write_value(key, expected_revision, Some(value)).await
    }

    async fn delete_value(&self, key: &ValueKey, expected_revision: u64) -> Result<u64, StoreError> {
        self.write_value(key, expected_revision, None).await
    }
}

async fn read_value(client: &deadpool_postgres::Client, key: &ValueKey) -> Result<ValueState, StoreError> {
    let row = client.query_opt(GET_VALUE, &[&key.persistence_id, &key.entity_id]).await.map_err(backend)?;
    Ok(row.map_or_else(ValueState::default, |row| {
        let type_url: Option<String> = row.get(1);
        let payload: Option<Vec<u8>> = row.get(2);
        let value = type_url.map(|type_url| Any { type_url, value: payload.unwrap_or_default() });
        ValueState { revision: from_db(row.get(0)), value }
    }))
}

impl PostgresStore {
    /// A conditional insert (revision 0) or update; on a miss, reads the revision for the error.
    async fn write_value(
        &self,
        key: &ValueKey,
        expected: u64,
        value: Option<Any>,
    ) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let type_url = value.as_ref().map(|v| v.type_url.as_str());
        let payload = value.as_ref().map(|v| v.value.as_slice());
        let (pid, eid) = (key.persistence_id.as_str(), key.entity_id.as_str());
        let written = if expected == 0 {
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [&pid, &eid, &type_url, &payload];
            let inserted = client.execute(CREATE_VALUE, &params).await.map_err(backend)?;
            (inserted == 1).then_some(1)
        } else {
            let expected_db = to_db(expected, pid)?;
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
                [&pid, &eid, &expected_db, &type_url, &payload];
            let row = client.query_opt(UPDATE_VALUE, &params).await.map_err(backend)?;
            row.map(|row| from_db(row.get(0)))
        };
        match written {
            Some(revision) => Ok(revision),
            None => {
                let actual = read_value(&client, key).await?.revision;
                // Revisions only grow, but other writers may have advanced the row to exactly
                // `expected` since our write missed; it is a conflict all the same.
                Err(check_revision(key, expected, actual).err().unwrap_or(StoreError::ValueConflict {
                    persistence_id: key.persistence_id.clone(),
                    entity_id: key.entity_id.clone(),
                    expected,
                    actual,
                }))
            }
        }
    }
}
