//! Per-test PostgreSQL databases from a realistic schema (24 tables with
//! indexes and foreign keys, a view, a trigger, seed rows): testdock's
//! `fresh_database()` with prefetched clones, without, and the
//! `#[sqlx::test]` way — create an empty database and run the migrations in
//! it — on the same server, at 1, 8 and 32 concurrent takers; and the two
//! clone strategies on a small and on a larger template.

use std::sync::Arc;
use std::time::{Duration, Instant};

use testdock::postgres::{Postgres, PostgresServer};
use tokio_postgres::{Client, NoTls};

use super::{Plan, Result, Row, Samples, Target};

const SCHEMA: &str = "fixtures/migrations/realistic";

async fn connect(url: &str) -> Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// What a test does with its database: connect and query it.
async fn use_it(url: &str) -> Result<()> {
    let client = connect(url).await?;
    let n: i64 = client
        .query_one("SELECT count(*) FROM open_issues", &[])
        .await?
        .get(0);
    if n != 50 {
        return Err(format!("expected 50 open issues, found {n}").into());
    }
    Ok(())
}

/// The migrations as files, read once, as a migrator would apply them.
fn scripts() -> Result<Vec<String>> {
    let mut files: Vec<_> = std::fs::read_dir(SCHEMA)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    files.sort();
    Ok(files
        .iter()
        .map(std::fs::read_to_string)
        .collect::<std::io::Result<_>>()?)
}

#[derive(Clone, Copy)]
enum Way {
    Prefetch,
    NoPrefetch,
    Migrate,
}

/// `takers` tasks taking `per_taker` databases each, one after another;
/// how long each take took.
async fn takes(
    way: Way,
    servers: &Arc<(PostgresServer, PostgresServer)>,
    takers: usize,
    per_taker: usize,
) -> Result<Samples> {
    let scripts = Arc::new(scripts()?);
    let mut tasks = Vec::new();
    for t in 0..takers {
        let (servers, scripts) = (servers.clone(), scripts.clone());
        tasks.push(tokio::spawn(async move {
            let mut took = Vec::new();
            let admin = match way {
                Way::Migrate => Some(connect(&servers.0.url("postgres")).await?),
                _ => None,
            };
            for i in 0..per_taker {
                match way {
                    Way::Prefetch | Way::NoPrefetch => {
                        let server = match way {
                            Way::Prefetch => &servers.0,
                            _ => &servers.1,
                        };
                        let t0 = Instant::now();
                        let db = server.fresh_database().await?;
                        took.push(t0.elapsed());
                        use_it(db.url()).await?;
                    }
                    Way::Migrate => {
                        let admin = admin.as_ref().expect("made above");
                        let name = format!("m_{}_{t}_{i}", std::process::id());
                        let t0 = Instant::now();
                        admin
                            .batch_execute(&format!("CREATE DATABASE {name}"))
                            .await?;
                        let url = servers.0.url(&name);
                        let client = connect(&url).await?;
                        for sql in scripts.iter() {
                            client.batch_execute(sql).await?;
                        }
                        took.push(t0.elapsed());
                        drop(client);
                        use_it(&url).await?;
                        admin
                            .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
                            .await?;
                    }
                }
            }
            Ok::<_, super::Error>(took)
        }));
    }
    let mut samples = Samples::default();
    for task in tasks {
        for d in task.await?? {
            samples.push(d);
        }
    }
    Ok(samples)
}

/// The rows; `None` (with why) where no PostgreSQL image can be had.
pub(crate) async fn bench(plan: Plan) -> Result<Option<Vec<Row>>> {
    let start = |prefetch| {
        Postgres::new()
            .migrations_dir(SCHEMA)
            .prefetch(prefetch)
            .start()
    };
    let with = match start(8).await {
        Ok(s) => s,
        Err(e @ testdock::Error::ImageUnavailable { .. }) => {
            println!("templates: skipped: {e}");
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let without = start(0).await?;
    // Templates made (and the strategy measured) before any timing.
    drop(with.fresh_database().await?);
    drop(without.fresh_database().await?);
    let servers = Arc::new((with, without));
    let mut rows = Vec::new();
    let total = if plan.quick { 8 } else { 64 };
    for takers in [1, 8, 32] {
        let per = (total / takers).max(1);
        let pre = takes(Way::Prefetch, &servers, takers, per).await?;
        // Let the ready clones refill between ways, as between test runs.
        settle(&servers.0).await?;
        let none = takes(Way::NoPrefetch, &servers, takers, per).await?;
        let migrate = takes(Way::Migrate, &servers, takers, per).await?;
        settle(&servers.0).await?;
        rows.push(Row {
            name: format!("fresh db, prefetch, {takers:>2} takers"),
            testdock: pre,
            raw: migrate.clone(),
            target: Target::BelowAndRatio(Duration::from_millis(2), 1.0 / 50.0),
        });
        rows.push(Row {
            name: format!("  no prefetch, {takers:>2} takers"),
            testdock: none,
            raw: migrate,
            target: Target::None,
        });
    }
    let servers = Arc::try_unwrap(servers).map_err(|_| "the servers are still in use")?;
    rows.extend(strategies(&servers.1, plan).await?);
    servers.0.teardown().await?;
    servers.1.teardown().await?;
    Ok(Some(rows))
}

/// Waits (10 s at most) until no clone is being made ahead.
async fn settle(server: &PostgresServer) -> Result<()> {
    let admin = connect(&server.url("postgres")).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let busy: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'CREATE DATABASE%' \
                 AND state = 'active'",
                &[],
            )
            .await?
            .get(0);
        if busy == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// `FILE_COPY` (testdock side of the row) against `WAL_LOG`, on the small
/// schema's template and on one with ~40 MB of rows.
async fn strategies(server: &PostgresServer, plan: Plan) -> Result<Vec<Row>> {
    if server.version() < 150_000 {
        println!(
            "clone strategies: PostgreSQL {} has no choice",
            server.version()
        );
        return Ok(Vec::new());
    }
    let admin = connect(&server.url("postgres")).await?;
    let small = server.template().await?;
    let large = "bench_large";
    admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {large}; CREATE DATABASE {large} TEMPLATE {small}"
        ))
        .await?;
    connect(&server.url(large))
        .await?
        .batch_execute(
            "CREATE TABLE bulk AS SELECT g AS id, md5(g::text) || repeat('x', 300) AS body \
             FROM generate_series(1, 100000) g; CREATE INDEX ON bulk (id);",
        )
        .await?;
    let size: String = admin
        .query_one(
            &format!("SELECT pg_size_pretty(pg_database_size('{large}'))"),
            &[],
        )
        .await?
        .get(0);
    let rounds = if plan.quick { 2 } else { 10 };
    let mut rows = Vec::new();
    for (label, template) in [("small", small.as_str()), ("large", large)] {
        let (mut file_copy, mut wal_log) = (Samples::default(), Samples::default());
        for i in 0..rounds {
            for (strategy, samples) in [("FILE_COPY", &mut file_copy), ("WAL_LOG", &mut wal_log)] {
                let name = format!("s_{i}_{}", strategy.to_lowercase());
                let t0 = Instant::now();
                admin
                    .batch_execute(&format!(
                        "CREATE DATABASE {name} TEMPLATE {template} STRATEGY {strategy}"
                    ))
                    .await?;
                samples.push(t0.elapsed());
                admin
                    .batch_execute(&format!("DROP DATABASE {name}"))
                    .await?;
            }
        }
        let name = match label {
            "large" => format!("clone FILE_COPY/WAL_LOG {size}"),
            _ => "clone FILE_COPY/WAL_LOG, small".to_string(),
        };
        rows.push(Row {
            name,
            testdock: file_copy,
            raw: wal_log,
            target: Target::None,
        });
    }
    let chosen: String = admin
        .query_one(
            &format!(
                "SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database \
                 WHERE datname = '{small}'"
            ),
            &[],
        )
        .await?
        .get(0);
    println!("clone strategy testdock chose for the small template: {chosen}");
    admin
        .batch_execute(&format!("DROP DATABASE {large}"))
        .await?;
    Ok(rows)
}
