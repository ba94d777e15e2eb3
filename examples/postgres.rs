//! A shared PostgreSQL server, the schema from `fixtures/sql` applied once
//! into a template, and a fresh database per test cloned from it.
//!
//! `cargo run --example postgres` — needs a Docker engine, no registry: where
//! the official image cannot be had, the image is made from this machine's
//! PostgreSQL install (the first time takes a few seconds).

use std::time::{Duration, Instant};

use testdock::postgres::{Postgres, SharedPostgres};
use tokio_postgres::NoTls;

/// What a test suite puts in a `static`: started on first use, once per
/// process, removed when the process exits.
static PG: SharedPostgres = SharedPostgres::new(|| Postgres::new().migrations_dir("fixtures/sql"));

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let server = PG.server().await?;
    println!(
        "server {} ({}) ready in {:?}",
        server.container().name(),
        server.container().image(),
        started.elapsed()
    );

    let started = Instant::now();
    let template = server.template().await?;
    println!(
        "template {template} (fixtures/sql applied) in {:?}",
        started.elapsed()
    );

    // What each test does: its own database, any client, the URL.
    let db = PG.fresh_database().await?;
    println!("fresh database {}\n  url: {}", db.name(), db.url());
    let (client, connection) = tokio_postgres::connect(db.url(), NoTls).await?;
    tokio::spawn(connection);
    client
        .execute("INSERT INTO users (name) VALUES ('linus')", &[])
        .await?;
    let names: Vec<String> = client
        .query("SELECT name FROM users ORDER BY id", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    println!("  users: {names:?}");
    drop(client);
    db.drop_now().await?; // or let it drop: a passing test's database is dropped

    // Twenty more, one after the other, as twenty tests would take them.
    let mut times: Vec<Duration> = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let db = PG.fresh_database().await?;
        times.push(t.elapsed());
        drop(db);
    }
    times.sort();
    println!(
        "20 fresh databases: median {:?}, min {:?}, max {:?}",
        times[10], times[0], times[19]
    );

    // A failing test keeps its database and prints where it is.
    let db = PG.fresh_database().await?;
    let name = db.name().to_string();
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {})); // this panic is staged
    let _ = std::thread::spawn(move || {
        let _db = db;
        panic!("a test failed");
    })
    .join();
    std::panic::set_hook(quiet);
    println!(
        "kept after the failure: {}",
        server.databases().await?.contains(&name)
    );
    server.drop_database(&name).await?;
    Ok(())
}
