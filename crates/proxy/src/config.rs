//! [`ProxyConfig`]: every setting of the sidecar, read only from its environment, with the names
//! render gives the sidecar container (`crates/render/src/workload.rs`, `store_env.rs`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;
use stead_sidecar_env as vars;

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A variable holds something that is not what it must be.
    #[error("environment variable {name} is {value:?}, expected {expected}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// What it holds.
        value: String,
        /// What it must hold.
        expected: &'static str,
    },
    /// A required variable is missing.
    #[error("environment variable {name} is not set, but {why}")]
    Missing {
        /// The variable.
        name: &'static str,
        /// Why it is needed.
        why: &'static str,
    },
}

/// What the sidecar does with client traffic (`STEAD_PROXY_MODE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyMode {
    /// The user container is a CloudState user function; the proxy keeps entity state.
    Entity,
    /// Client connections are forwarded to the user port, with metrics.
    Passthrough,
}

/// Where entity state lives (`STEAD_STORE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreConfig {
    /// No store: only actions can be served (`none`).
    None,
    /// Process memory (`in-memory`): lost when the proxy stops.
    Memory,
    /// A redb file (`embedded`, `STEAD_STORE_PATH`).
    Embedded {
        /// The file.
        path: PathBuf,
    },
    /// PostgreSQL (`postgres`, `POSTGRES_*`).
    Postgres(PostgresConfig),
}

/// The `POSTGRES_*` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresConfig {
    /// `POSTGRES_SERVICE`: host name or address.
    pub host: String,
    /// `POSTGRES_PORT`, default 5432.
    pub port: u16,
    /// `POSTGRES_DATABASE`, default `cloudstate`.
    pub database: String,
    /// `POSTGRES_USERNAME`, default `cloudstate`.
    pub username: String,
    /// `POSTGRES_PASSWORD`, default `cloudstate`.
    pub password: String,
    /// `POSTGRES_SCHEMA`: tables go into this schema (search path) when set.
    pub schema: Option<String>,
    /// Connections in the pool (`STEAD_POSTGRES_POOL`, default 16).
    pub pool_size: usize,
}

impl PostgresConfig {
    /// The tokio-postgres connection settings.
    pub fn connection(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .dbname(&self.database)
            .user(&self.username)
            .password(&self.password)
            .application_name("stead-proxy");
        if let Some(schema) = &self.schema {
            config.options(format!("-c search_path={schema}"));
        }
        config
    }
}

/// Every setting of the sidecar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyConfig {
    /// `STEAD_PROXY_MODE`: `entity` (default) or `passthrough`.
    pub mode: ProxyMode,
    /// Where clients connect (`HTTP_PORT`, default 8013, on every address).
    pub listen: SocketAddr,
    /// The user container (`USER_FUNCTION_PORT`, default 8080, on loopback; `USER_FUNCTION_HOST`).
    pub user_function: SocketAddr,
    /// `/ready` and `/alive` (`MANAGEMENT_PORT`, default 8558).
    pub health: SocketAddr,
    /// Prometheus `/metrics` (`METRICS_PORT`, default 9090).
    pub metrics: SocketAddr,
    /// The entity store (`STEAD_STORE`, default `in-memory`).
    pub store: StoreConfig,
    /// `STEAD_SERVICE_NAME`, for logs and discovery.
    pub service_name: String,
    /// How long an idle entity stays active (`STEAD_PASSIVATION_TIMEOUT_MS`, default 30 s); an
    /// entity's own passivation strategy from discovery wins.
    pub passivation_timeout: Duration,
    /// How long a client's call may wait for its entity (`STEAD_RELAY_TIMEOUT_MS`, default 60 s).
    pub relay_timeout: Duration,
    /// Delays between discovery attempts grow from this (`STEAD_DISCOVERY_BACKOFF_MS`, 100 ms)...
    pub discovery_backoff_min: Duration,
    /// ... up to this (10 s).
    pub discovery_backoff_max: Duration,
    /// Open the embedded store even when its write-ahead log lost acknowledged writes,
    /// discarding them with a warning (`STEAD_DISCARD_DAMAGED_LOG=true`, or `stead proxy
    /// --discard-damaged-log`); by default the proxy refuses to start.
    pub discard_damaged_log: bool,
    /// Timeouts and the connection limit of the client port.
    pub connections: ConnectionConfig,
    /// Origins whose browsers may call gRPC-Web across origins (`STEAD_CORS_ALLOWED_ORIGINS`).
    pub cors: AllowedOrigins,
}

/// Timeouts and the connection limit of the client port (the management ports have their own
/// small limit, so that probes are answered while clients saturate the client port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// How long a client may take to send a request's headers, or for HTTP/2 the connection
    /// preface and first frame (`STEAD_HEADER_READ_TIMEOUT_MS`, default 10 s). For HTTP/1 it also
    /// bounds the wait for the next request on a kept-alive connection.
    pub header_read_timeout: Duration,
    /// A connection with no bytes in either direction for this long is closed
    /// (`STEAD_IDLE_TIMEOUT_MS`, default 300 s; 0: never).
    pub idle_timeout: Option<Duration>,
    /// Client connections served at once (`STEAD_MAX_CONNECTIONS`); more wait in the kernel's
    /// accept queue. `None`: derived from the open-file limit at start.
    pub max_connections: Option<usize>,
}

/// The most client connections `STEAD_MAX_CONNECTIONS` may ask for (far beyond any open-file
/// limit, and within what the connection semaphore can count).
pub const MAX_CONNECTIONS: usize = 1_000_000;

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(300)),
            max_connections: None,
        }
    }
}

/// The origins allowed to make cross-origin gRPC-Web calls.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// None (the default): no CORS headers, preflights refused.
    #[default]
    None,
    /// Any origin (`*`).
    Any,
    /// These origins (`scheme://host[:port]`, compared without regard to case).
    List(Vec<String>),
}

impl AllowedOrigins {
    /// Whether a request's `Origin` is allowed.
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            AllowedOrigins::None => false,
            AllowedOrigins::Any => true,
            AllowedOrigins::List(origins) => origins.iter().any(|o| o.eq_ignore_ascii_case(origin)),
        }
    }
}

impl ProxyConfig {
    /// Defaults for a proxy in front of `user_function`, listening on `listen`: in-memory store,
    /// health and metrics on ports 0 of loopback (chosen by the system). For tests and embedding.
    pub fn local(listen: SocketAddr, user_function: SocketAddr) -> Self {
        let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        Self {
            mode: ProxyMode::Entity,
            listen,
            user_function,
            health: any,
            metrics: any,
            store: StoreConfig::Memory,
            service_name: String::new(),
            passivation_timeout: Duration::from_secs(30),
            relay_timeout: Duration::from_secs(60),
            discovery_backoff_min: Duration::from_millis(100),
            discovery_backoff_max: Duration::from_secs(10),
            discard_damaged_log: false,
            connections: ConnectionConfig::default(),
            cors: AllowedOrigins::None,
        }
    }

    /// Reads the settings through `var` (pass `|name| std::env::var(name).ok()` for the process
    /// environment). An empty variable counts as unset.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| var(name).filter(|v| !v.is_empty());
        let port = |name: &'static str, default: u16| -> Result<u16, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(v) => v.trim().parse::<u16>().map_err(|_| ConfigError::Invalid {
                    name,
                    value: v,
                    expected: "a port number (0 to 65535)",
                }),
            }
        };
        let millis = |name: &'static str, default: u64| -> Result<Duration, ConfigError> {
            match get(name) {
                None => Ok(Duration::from_millis(default)),
                Some(v) => v.trim().parse::<u64>().map(Duration::from_millis).map_err(|_| {
                    ConfigError::Invalid { name, value: v, expected: "a whole number of milliseconds" }
                }),
            }
        };
        let mode = match get(vars::PROXY_MODE).as_deref() {
            None | Some("entity") => ProxyMode::Entity,
            Some("passthrough") => ProxyMode::Passthrough,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: vars::PROXY_MODE,
                    value: other.to_string(),
                    expected: "entity or passthrough",
                });
            }
        };
        let user_host = match get(vars::USER_FUNCTION_HOST) {
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Some(v) => v.parse().map_err(|_| ConfigError::Invalid {
                name: vars::USER_FUNCTION_HOST,
                value: v,
                expected: "an IP address",
            })?,
        };
        let all = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let store = match mode {
            ProxyMode::Passthrough => StoreConfig::None,
            ProxyMode::Entity => store_from_env(&get)?,
        };
        Ok(Self {
            mode,
            listen: SocketAddr::new(all, port(vars::HTTP_PORT, 8013)?),
            user_function: SocketAddr::new(user_host, port(vars::USER_FUNCTION_PORT, 8080)?),
            health: SocketAddr::new(all, port(vars::MANAGEMENT_PORT, 8558)?),
            metrics: SocketAddr::new(all, port(vars::METRICS_PORT, 9090)?),
            store,
            service_name: get(vars::SERVICE_NAME).unwrap_or_default(),
            passivation_timeout: millis(vars::PASSIVATION_TIMEOUT_MS, 30_000)?,
            relay_timeout: millis(vars::RELAY_TIMEOUT_MS, 60_000)?,
            discovery_backoff_min: millis(vars::DISCOVERY_BACKOFF_MS, 100)?,
            discovery_backoff_max: Duration::from_secs(10),
            discard_damaged_log: match get(vars::DISCARD_DAMAGED_LOG).as_deref() {
                None | Some("false") => false,
                Some("true") => true,
                Some(other) => {
                    return Err(ConfigError::Invalid {
                        name: vars::DISCARD_DAMAGED_LOG,
                        value: other.to_string(),
                        expected: "true or false",
                    });
                }
            },
            connections: connections_from_env(&get)?,
            cors: cors_from_env(&get)?,
        })
    }
}

fn connections_from_env(get: &impl Fn(&str) -> Option<String>) -> Result<ConnectionConfig, ConfigError> {
    let number = |name: &'static str, expected: &'static str| -> Result<Option<u64>, ConfigError> {
        get(name)
            .map(|v| v.trim().parse::<u64>().map_err(|_| ConfigError::Invalid { name, value: v, expected }))
            .transpose()
    };
    let defaults = ConnectionConfig::default();
    let header_read_timeout =
        match number(vars::HEADER_READ_TIMEOUT_MS, "a positive whole number of milliseconds")? {
            None => defaults.header_read_timeout,
            Some(0) => {
                return Err(ConfigError::Invalid {
                    name: vars::HEADER_READ_TIMEOUT_MS,
                    value: "0".into(),
                    expected: "a positive whole number of milliseconds",
                });
            }
            Some(ms) => Duration::from_millis(ms),
        };
    let idle_timeout = match number(vars::IDLE_TIMEOUT_MS, "a whole number of milliseconds (0: never)")? {
        None => defaults.idle_timeout,
        Some(0) => None,
        Some(ms) => Some(Duration::from_millis(ms)),
    };
    let expected = "a number of connections from 1 to 1000000";
    let max_connections =
        match number(vars::MAX_CONNECTIONS, expected)? {
            None => None,
            Some(n) => Some(usize::try_from(n).ok().filter(|n| (1..=MAX_CONNECTIONS).contains(n)).ok_or(
                ConfigError::Invalid { name: vars::MAX_CONNECTIONS, value: n.to_string(), expected },
            )?),
        };
    Ok(ConnectionConfig { header_read_timeout, idle_timeout, max_connections })
}

/// Whether `text` is an origin as browsers send it: `scheme://host[:port]`, nothing after.
fn is_origin(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once("://") else { return false };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    scheme_ok && !rest.is_empty() && !rest.contains(['/', '?', '#', '@', ' ', ','])
}

fn cors_from_env(get: &impl Fn(&str) -> Option<String>) -> Result<AllowedOrigins, ConfigError> {
    const NAME: &str = vars::CORS_ALLOWED_ORIGINS;
    let Some(value) = get(NAME) else { return Ok(AllowedOrigins::None) };
    let entries: Vec<&str> = value.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
    if entries.contains(&"*") {
        return Ok(AllowedOrigins::Any);
    }
    if entries.is_empty() || !entries.iter().all(|e| is_origin(e)) {
        return Err(ConfigError::Invalid {
            name: NAME,
            value,
            expected: "*, or origins like https://app.example or http://localhost:3000 separated by commas",
        });
    }
    Ok(AllowedOrigins::List(entries.into_iter().map(str::to_string).collect()))
}

fn store_from_env(get: &impl Fn(&str) -> Option<String>) -> Result<StoreConfig, ConfigError> {
    match get(vars::STORE).as_deref() {
        None | Some("in-memory") => Ok(StoreConfig::Memory),
        Some("none") => Ok(StoreConfig::None),
        Some("embedded") => {
            let path = get(vars::STORE_PATH).ok_or(ConfigError::Missing {
                name: vars::STORE_PATH,
                why: "STEAD_STORE is embedded and the store needs a file",
            })?;
            Ok(StoreConfig::Embedded { path: PathBuf::from(path) })
        }
        Some("postgres") => {
            let host = get(vars::POSTGRES_SERVICE).ok_or(ConfigError::Missing {
                name: vars::POSTGRES_SERVICE,
                why: "STEAD_STORE is postgres and the store needs a host",
            })?;
            let port = match get(vars::POSTGRES_PORT) {
                None => 5432,
                Some(v) => v.trim().parse().map_err(|_| ConfigError::Invalid {
                    name: vars::POSTGRES_PORT,
                    value: v,
                    expected: "a port number (0 to 65535)",
                })?,
            };
            let pool_size = match get(vars::POSTGRES_POOL) {
                None => 16,
                Some(v) => v.trim().parse().ok().filter(|n| *n > 0).ok_or(ConfigError::Invalid {
                    name: vars::POSTGRES_POOL,
                    value: v,
                    expected: "a positive number of connections",
                })?,
            };
            if let Some(mode) =
                get(vars::POSTGRES_SSLMODE).filter(|m| m != "disable" && m != "allow" && m != "prefer")
            {
                return Err(ConfigError::Invalid {
                    name: vars::POSTGRES_SSLMODE,
                    value: mode,
                    expected: "disable, allow or prefer (TLS to PostgreSQL is not supported yet)",
                });
            }
            Ok(StoreConfig::Postgres(PostgresConfig {
                host,
                port,
                database: get(vars::POSTGRES_DATABASE).unwrap_or_else(|| "cloudstate".into()),
                username: get(vars::POSTGRES_USERNAME).unwrap_or_else(|| "cloudstate".into()),
                password: get(vars::POSTGRES_PASSWORD).unwrap_or_else(|| "cloudstate".into()),
                schema: get(vars::POSTGRES_SCHEMA),
                pool_size,
            }))
        }
        Some(other) => Err(ConfigError::Invalid {
            name: vars::STORE,
            value: other.to_string(),
            expected: "none, in-memory, embedded or postgres (cassandra and spanner are not supported)",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn defaults_are_cloudstates_ports_and_memory() {
        let config = ProxyConfig::from_env(env(&[])).expect("defaults");
        assert_eq!(config.mode, ProxyMode::Entity);
        assert_eq!(config.listen.port(), 8013);
        assert_eq!(config.user_function, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(config.health.port(), 8558);
        assert_eq!(config.metrics.port(), 9090);
        assert_eq!(config.store, StoreConfig::Memory);
        assert!(!config.discard_damaged_log);
    }

    #[test]
    fn discarding_a_damaged_log_is_asked_for_explicitly() {
        let config = ProxyConfig::from_env(env(&[("STEAD_DISCARD_DAMAGED_LOG", "true")])).expect("valid");
        assert!(config.discard_damaged_log);
        let error = ProxyConfig::from_env(env(&[("STEAD_DISCARD_DAMAGED_LOG", "yes")])).expect_err("invalid");
        assert_eq!(
            error.to_string(),
            "environment variable STEAD_DISCARD_DAMAGED_LOG is \"yes\", expected true or false"
        );
    }

    #[test]
    fn postgres_settings_are_read_as_render_gives_them() {
        let config = ProxyConfig::from_env(env(&[
            ("STEAD_STORE", "postgres"),
            ("POSTGRES_SERVICE", "db.example"),
            ("POSTGRES_PORT", "6543"),
            ("POSTGRES_DATABASE", "carts"),
            ("POSTGRES_USERNAME", "u"),
            ("POSTGRES_PASSWORD", "p"),
            ("HTTP_PORT", "9000"),
            ("USER_FUNCTION_PORT", "8090"),
        ]))
        .expect("valid");
        let StoreConfig::Postgres(pg) = config.store else { panic!("postgres expected") };
        assert_eq!((pg.host.as_str(), pg.port, pg.database.as_str()), ("db.example", 6543, "carts"));
        assert_eq!((pg.username.as_str(), pg.password.as_str(), pg.schema), ("u", "p", None));
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.user_function.port(), 8090);
    }

    #[test]
    fn bad_values_name_the_variable_and_value() {
        let error = ProxyConfig::from_env(env(&[("HTTP_PORT", "80000")])).expect_err("too big");
        assert_eq!(
            error.to_string(),
            "environment variable HTTP_PORT is \"80000\", expected a port number (0 to 65535)"
        );
        let error = ProxyConfig::from_env(env(&[("STEAD_STORE", "cassandra")])).expect_err("unsupported");
        assert!(
            error.to_string().starts_with("environment variable STEAD_STORE is \"cassandra\""),
            "{error}"
        );
        let error = ProxyConfig::from_env(env(&[("STEAD_STORE", "embedded")])).expect_err("no path");
        assert!(matches!(error, ConfigError::Missing { name: "STEAD_STORE_PATH", .. }));
        let passthrough = ProxyConfig::from_env(env(&[("STEAD_PROXY_MODE", "passthrough")])).expect("ok");
        assert_eq!((passthrough.mode, passthrough.store), (ProxyMode::Passthrough, StoreConfig::None));
    }

    #[test]
    fn connection_settings_have_safe_defaults_and_are_read() {
        let config = ProxyConfig::from_env(env(&[])).expect("defaults");
        assert_eq!(config.connections, ConnectionConfig::default());
        assert_eq!(config.connections.header_read_timeout, Duration::from_secs(10));
        assert_eq!(config.connections.idle_timeout, Some(Duration::from_secs(300)));
        assert_eq!(config.cors, AllowedOrigins::None);
        let config = ProxyConfig::from_env(env(&[
            ("STEAD_HEADER_READ_TIMEOUT_MS", "250"),
            ("STEAD_IDLE_TIMEOUT_MS", "0"),
            ("STEAD_MAX_CONNECTIONS", "64"),
        ]))
        .expect("valid");
        assert_eq!(
            config.connections,
            ConnectionConfig {
                header_read_timeout: Duration::from_millis(250),
                idle_timeout: None,
                max_connections: Some(64),
            }
        );
        for (name, value) in [
            ("STEAD_HEADER_READ_TIMEOUT_MS", "0"),
            ("STEAD_IDLE_TIMEOUT_MS", "soon"),
            ("STEAD_MAX_CONNECTIONS", "0"),
            ("STEAD_MAX_CONNECTIONS", "4611686018427387904"),
        ] {
            let error = ProxyConfig::from_env(env(&[(name, value)])).expect_err("invalid");
            assert!(
                error.to_string().starts_with(&format!("environment variable {name} is {value:?}")),
                "{error}"
            );
        }
    }

    #[test]
    fn allowed_origins_are_a_list_or_an_explicit_star() {
        let origins = |value: &str| ProxyConfig::from_env(env(&[("STEAD_CORS_ALLOWED_ORIGINS", value)]));
        assert_eq!(origins("*").expect("star").cors, AllowedOrigins::Any);
        let list = origins("https://shop.example, http://localhost:3000").expect("list").cors;
        assert_eq!(
            list,
            AllowedOrigins::List(vec!["https://shop.example".into(), "http://localhost:3000".into()])
        );
        assert!(list.allows("https://SHOP.example"));
        assert!(list.allows("http://localhost:3000"));
        assert!(!list.allows("http://localhost:3001"));
        assert!(!list.allows("https://evil.example"));
        assert!(!AllowedOrigins::None.allows("https://shop.example"));
        for bad in ["shop.example", "https://shop.example/", "https://a.example/path", ","] {
            let error = origins(bad).expect_err("not an origin");
            assert!(error.to_string().contains("STEAD_CORS_ALLOWED_ORIGINS"), "{error}");
        }
    }
}
