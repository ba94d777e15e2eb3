//! A shared MariaDB server, the schema from `fixtures/mysql` applied once
//! into a template, and a fresh database per test copied from it.
//!
//! `cargo run --example mysql` — needs a Docker engine, no registry: where
//! the official image cannot be had, the image is made from this machine's
//! MariaDB install (the first time takes a few seconds).

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use testdock::mysql::{Mysql, SharedMysql};

/// What a test suite puts in a `static`: started on first use, shared by
/// the run, removed when it ends.
static MY: SharedMysql = SharedMysql::new(|| Mysql::new().migrations_dir("fixtures/mysql"));

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let server = MY.server().await?;
    println!(
        "server {} ({}, {}) ready in {:?}",
        server.container().name(),
        server.container().image(),
        server.version(),
        started.elapsed()
    );

    let started = Instant::now();
    let template = server.template().await?;
    println!(
        "template {template} (fixtures/mysql applied) in {:?}",
        started.elapsed()
    );

    // What each test does: its own database, any client, the URL.
    let db = MY.fresh_database().await?;
    println!("fresh database {}\n  url: {}", db.name(), db.url());
    let mut conn = mysql_async::Conn::from_url(db.url()).await?;
    conn.query_drop("INSERT INTO users (name) VALUES ('linus')")
        .await?;
    let users: Vec<(u32, String)> = conn.query("SELECT id, name FROM users ORDER BY id").await?;
    println!("  users: {users:?}");
    conn.disconnect().await?;
    db.drop_now().await?; // or let it drop: a passing test's database is dropped

    // Twenty more, one after the other, as twenty tests would take them.
    let mut times: Vec<Duration> = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let db = MY.fresh_database().await?;
        times.push(t.elapsed());
        drop(db);
    }
    times.sort();
    println!(
        "20 fresh databases: median {:?}, min {:?}, max {:?}",
        times[10], times[0], times[19]
    );

    // A failing test keeps its database and prints where it is.
    let db = MY.fresh_database().await?;
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
