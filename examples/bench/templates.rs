//! Per-test PostgreSQL databases from a realistic schema (24 tables with
//! indexes and foreign keys, a view, a trigger, seed rows): testdock's
//! `fresh_database()` with prefetched clones, without, and the
//! `#[sqlx::test]` way — create an empty database and run the migrations in
//! it — on the same server, at 1, 8 and 32 concurrent takers; and the two
//! clone strategies on a small and on a larger template.

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
enum Way<'a> {
    /// The server and its prefetch bound.
    Testdock(&'a PostgresServer, usize),
    Migrate(&'a PostgresServer),
}

/// `rounds` bursts of `takers` tests starting at once, each taking a
/// database and using it; between bursts (untimed, as while tests run)
/// the ready clones are refilled. How long each take took.
async fn bursts(way: Way<'_>, takers: usize, rounds: usize) -> Result<Samples> {
    let scripts = scripts()?;
    let mut samples = Samples::default();
    let scripts = std::sync::Arc::new(scripts);
    for round in 0..rounds {
        // Each test a task of its own, as each test is a thread of its own
        // under `cargo test`: one test's connecting is not another's wait.
        let takes = (0..takers).map(|t| {
            let t0 = Instant::now();
            match way {
                Way::Testdock(server, _) => {
                    let take = server.fresh_database();
                    tokio::spawn(async move {
                        let db = take.await?;
                        let took = t0.elapsed();
                        use_it(db.url()).await?;
                        Ok::<_, super::Error>((took, db.name().to_string()))
                    })
                }
                Way::Migrate(server) => {
                    let name = format!("m_{}_{round}_{t}", std::process::id());
                    let (admin_url, url) = (server.url("postgres"), server.url(&name));
                    let scripts = scripts.clone();
                    tokio::spawn(async move {
                        let admin = connect(&admin_url).await?;
                        let t0 = Instant::now();
                        admin
                            .batch_execute(&format!("CREATE DATABASE {name}"))
                            .await?;
                        let client = connect(&url).await?;
                        for sql in scripts.iter() {
                            client.batch_execute(sql).await?;
                        }
                        let took = t0.elapsed();
                        drop(client);
                        use_it(&url).await?;
                        admin
                            .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
                            .await?;
                        Ok((took, name))
                    })
                }
            }
        });
        let takes: Vec<_> = takes.collect();
        let mut names = Vec::new();
        for take in takes {
            let (took, name) = take.await??;
            samples.push(took);
            names.push(name);
        }
        if let Way::Testdock(server, prefetch) = way {
            settle(server, prefetch.min(takers), &names).await?;
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
    let wide = start(32).await?;
    // Two takes first, untimed: a process that takes more than one
    // database, as a test binary does, keeps ready clones of its own.
    for server in [&with, &wide] {
        for _ in 0..2 {
            drop(server.fresh_database().await?);
        }
    }
    let rounds = if plan.quick { 2 } else { 8 };
    let mut rows = Vec::new();
    for takers in [1, 8, 32] {
        let warm = |server, prefetch| async move {
            // A first burst, untimed: the template made, the strategy
            // measured, the ready clones grown to this burst's size.
            bursts(Way::Testdock(server, prefetch), takers, 1).await
        };
        warm(&with, 8).await?;
        warm(&without, 0).await?;
        let pre = bursts(Way::Testdock(&with, 8), takers, rounds).await?;
        let none = bursts(Way::Testdock(&without, 0), takers, rounds).await?;
        let migrate = bursts(Way::Migrate(&with), takers, rounds).await?;
        rows.push(Row {
            name: format!("fresh db, prefetch, {takers:>2} at once"),
            testdock: pre,
            raw: migrate.clone(),
            target: Target::BelowAndRatio(Duration::from_millis(2), 1.0 / 50.0),
        });
        if takers == 32 {
            warm(&wide, 32).await?;
            rows.push(Row {
                name: "  prefetch(32), 32 at once".into(),
                testdock: bursts(Way::Testdock(&wide, 32), takers, rounds).await?,
                raw: migrate.clone(),
                target: Target::BelowAndRatio(Duration::from_millis(2), 1.0 / 50.0),
            });
        }
        rows.push(Row {
            name: format!("  no prefetch, {takers:>2} at once"),
            testdock: none,
            raw: migrate,
            target: Target::None,
        });
    }
    rows.extend(strategies(&without, plan).await?);
    for server in [with, without, wide] {
        server.teardown().await?;
    }
    Ok(Some(rows))
}

/// Waits (30 s at most) until the burst's databases are dropped and the
/// process has `want` ready clones of its own again (and the server its
/// spare, when prefetching), as while the tests of a burst run.
async fn settle(server: &PostgresServer, want: usize, burst: &[String]) -> Result<()> {
    let admin = connect(&server.url("postgres")).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let sql = "SELECT count(*) FILTER (WHERE datname LIKE 't\\_ready\\_%'), \
                      count(*) FILTER (WHERE datname LIKE 'tdp\\_%'), \
                      count(*) FILTER (WHERE datname = ANY($1)) \
               FROM pg_database";
    while Instant::now() < deadline {
        let row = admin.query_one(sql, &[&burst]).await?;
        let (own, spare, left): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        // The burst's own-clone takes are still named `t_ready_`.
        if left == 0 && own as usize >= want && (want == 0 || spare >= 1) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("{want} ready clones not made within 30 s").into())
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
        .batch_execute(&format!("DROP DATABASE IF EXISTS {large}"))
        .await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {large} TEMPLATE {small}"))
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
