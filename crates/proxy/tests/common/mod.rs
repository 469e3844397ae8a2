//! Helpers shared by the store tests.

#![allow(dead_code)]

const POSTGRES_ENV: &str = "STEAD_TEST_POSTGRES_URL";

/// A connection config whose tables live in a fresh schema of the test database, so that tests
/// do not see each other's data; `None` (with a message) when no test database is configured.
pub async fn postgres_schema() -> Option<tokio_postgres::Config> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let Ok(url) = std::env::var(POSTGRES_ENV) else {
        eprintln!(
            "skipping: {POSTGRES_ENV} is not set, so there is no PostgreSQL to test against. \
             Set it to a database URL such as postgres://postgres@127.0.0.1:5432/stead_test"
        );
        return None;
    };
    let mut config: tokio_postgres::Config = url.parse().expect("STEAD_TEST_POSTGRES_URL is a postgres URL");
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let schema = format!("stead_test_{}_{n}", std::process::id());
    let (client, connection) =
        config.connect(tokio_postgres::NoTls).await.expect("connects to the test database");
    let connection = tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"))
        .await
        .expect("creates a test schema");
    drop(client);
    connection.await.expect("connection task ends").expect("connection closes cleanly");
    config.options(format!("-c search_path={schema}"));
    Some(config)
}
