//! Forty database tests in the shape of a real suite: each takes a fresh
//! database from the shared server and runs a few queries with a real
//! client. `examples/sharing.sh` times this file under `cargo nextest run`
//! and `cargo test`, with sharing on and with `TESTDOCK_SHARE=process`.

use testdock::postgres::{Postgres, SharedPostgres};

static PG: SharedPostgres = SharedPostgres::new(|| Postgres::new().migrations_dir("fixtures/sql"));

async fn a_test(n: i64) {
    // `RUST_LOG=testdock=debug` shows what a test process costs, step by step.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let db = PG.fresh_database().await.unwrap();
    // examples/sharing.sh counts the servers the tests were given.
    if let Some(log) = std::env::var_os("TESTDOCK_BENCH_SERVERS") {
        use std::io::Write as _;
        let id = PG.server().await.unwrap().container().id().to_string();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        writeln!(f, "{id}").unwrap();
    }
    let (client, conn) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .execute(
            "CREATE TABLE mine (id bigint PRIMARY KEY, note text NOT NULL)",
            &[],
        )
        .await
        .unwrap();
    for i in 0..5 {
        client
            .execute("INSERT INTO mine VALUES ($1, $2)", &[&(n * 10 + i), &"x"])
            .await
            .unwrap();
    }
    let row = client
        .query_one("SELECT count(*), min(id) FROM mine", &[])
        .await
        .unwrap();
    // Nothing of another test's is visible here.
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (5, n * 10));
}

macro_rules! suite {
    ($($name:ident = $n:expr),* $(,)?) => {$(
        #[tokio::test]
        #[ignore = "requires Docker"]
        async fn $name() {
            a_test($n).await;
        }
    )*};
}

suite!(
    db_01 = 1,
    db_02 = 2,
    db_03 = 3,
    db_04 = 4,
    db_05 = 5,
    db_06 = 6,
    db_07 = 7,
    db_08 = 8,
    db_09 = 9,
    db_10 = 10,
    db_11 = 11,
    db_12 = 12,
    db_13 = 13,
    db_14 = 14,
    db_15 = 15,
    db_16 = 16,
    db_17 = 17,
    db_18 = 18,
    db_19 = 19,
    db_20 = 20,
    db_21 = 21,
    db_22 = 22,
    db_23 = 23,
    db_24 = 24,
    db_25 = 25,
    db_26 = 26,
    db_27 = 27,
    db_28 = 28,
    db_29 = 29,
    db_30 = 30,
    db_31 = 31,
    db_32 = 32,
    db_33 = 33,
    db_34 = 34,
    db_35 = 35,
    db_36 = 36,
    db_37 = 37,
    db_38 = 38,
    db_39 = 39,
    db_40 = 40,
);
