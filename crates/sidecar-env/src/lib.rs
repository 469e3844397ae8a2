//! The sidecar's environment: the variables `stead-render` writes into the sidecar container and
//! `stead-proxy`'s configuration reads.
//!
//! **API boundary.** Pods rendered by one version of stead run the sidecar of another during an
//! upgrade, and users set some of these variables by hand (`spec.proxy.env`). So a name here is
//! never renamed or given a new meaning; a new setting gets a new name, and the proxy keeps
//! reading the old one. Values are documented beside the proxy's reader (`ProxyConfig::from_env`).
//!
//! Both sides use these constants, and `stead-proxy`'s `render_roundtrip` test feeds what render
//! writes to the proxy's reader, so the two cannot drift apart unnoticed.

// Written by render for every sidecar.

/// `entity` (the sidecar runs the CloudState protocol) or `passthrough` (it forwards bytes).
pub const PROXY_MODE: &str = "STEAD_PROXY_MODE";
/// The StatefulService's name (metrics labels, discovery).
pub const SERVICE_NAME: &str = "STEAD_SERVICE_NAME";
/// The pod's name, from the downward API.
pub const POD_NAME: &str = "POD_NAME";
/// The pod's namespace, from the downward API.
pub const POD_NAMESPACE: &str = "POD_NAMESPACE";
/// The port the sidecar serves clients on (CloudState's name).
pub const HTTP_PORT: &str = "HTTP_PORT";
/// The user function's port (CloudState's name).
pub const USER_FUNCTION_PORT: &str = "USER_FUNCTION_PORT";
/// The user function's address; loopback when unset (CloudState's name).
pub const USER_FUNCTION_HOST: &str = "USER_FUNCTION_HOST";
/// The Prometheus metrics port.
pub const METRICS_PORT: &str = "METRICS_PORT";
/// The health port (`/alive`, `/ready`; CloudState's name).
pub const MANAGEMENT_PORT: &str = "MANAGEMENT_PORT";
/// The autoscaler's target of in-flight requests per pod.
pub const TARGET_CONCURRENCY: &str = "STEAD_TARGET_CONCURRENCY";

// The store, written by render from the StatefulStore.

/// `none`, `in-memory`, `embedded` or `postgres` (`cassandra` and `spanner` are rendered for
/// CloudState's proxies and refused by stead's).
pub const STORE: &str = "STEAD_STORE";
/// The embedded store's file.
pub const STORE_PATH: &str = "STEAD_STORE_PATH";
/// PostgreSQL's host (CloudState's name).
pub const POSTGRES_SERVICE: &str = "POSTGRES_SERVICE";
/// PostgreSQL's port.
pub const POSTGRES_PORT: &str = "POSTGRES_PORT";
/// The database.
pub const POSTGRES_DATABASE: &str = "POSTGRES_DATABASE";
/// The user, from a Secret.
pub const POSTGRES_USERNAME: &str = "POSTGRES_USERNAME";
/// The password, from a Secret.
pub const POSTGRES_PASSWORD: &str = "POSTGRES_PASSWORD";
/// The schema.
pub const POSTGRES_SCHEMA: &str = "POSTGRES_SCHEMA";
/// libpq's `sslmode`.
pub const POSTGRES_SSLMODE: &str = "POSTGRES_SSLMODE";

// Read by the proxy only; set by hand (`spec.proxy.env`) when the defaults do not fit.

/// How long an idle entity stays in memory, in milliseconds.
pub const PASSIVATION_TIMEOUT_MS: &str = "STEAD_PASSIVATION_TIMEOUT_MS";
/// How long a command may wait for the user function, in milliseconds.
pub const RELAY_TIMEOUT_MS: &str = "STEAD_RELAY_TIMEOUT_MS";
/// The first wait before discovery of the user function is tried again, in milliseconds.
pub const DISCOVERY_BACKOFF_MS: &str = "STEAD_DISCOVERY_BACKOFF_MS";
/// `true` opens an embedded store whose write-ahead log is damaged, discarding what follows.
pub const DISCARD_DAMAGED_LOG: &str = "STEAD_DISCARD_DAMAGED_LOG";
/// How long a client may take to send a request's headers, in milliseconds.
pub const HEADER_READ_TIMEOUT_MS: &str = "STEAD_HEADER_READ_TIMEOUT_MS";
/// How long a connection may stay idle, in milliseconds (0: forever).
pub const IDLE_TIMEOUT_MS: &str = "STEAD_IDLE_TIMEOUT_MS";
/// The most client connections served at once.
pub const MAX_CONNECTIONS: &str = "STEAD_MAX_CONNECTIONS";
/// The origins browsers may call from (`*`, or origins separated by commas).
pub const CORS_ALLOWED_ORIGINS: &str = "STEAD_CORS_ALLOWED_ORIGINS";
/// The size of the PostgreSQL connection pool.
pub const POSTGRES_POOL: &str = "STEAD_POSTGRES_POOL";
