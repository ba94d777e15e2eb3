//! A shared Redis server and a logical database of its own per test.
//!
//! `cargo run --example redis` — needs a Docker engine, no registry: where
//! the official image cannot be had, the image is made from this machine's
//! `redis-server` (the first time takes a few seconds).

use std::time::{Duration, Instant};

use testdock::redis::{Redis, SharedRedis};

/// What a test suite puts in a `static`: started on first use, shared by
/// the run (or the process, run by hand), removed when it ends.
static REDIS: SharedRedis = SharedRedis::new(Redis::new);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let server = REDIS.server().await?;
    println!(
        "server {} ({}, Redis {}) ready in {:?}",
        server.container().name(),
        server.container().image(),
        server.version(),
        started.elapsed()
    );

    // What each test does: its own logical database, any client, the URL.
    let db = REDIS.fresh_db().await?;
    println!("fresh database {}\n  url: {}", db.number(), db.url());
    let mut con = redis::Client::open(db.url())?
        .get_multiplexed_async_connection()
        .await?;
    redis::cmd("SET")
        .arg("greeting")
        .arg("hello")
        .query_async::<()>(&mut con)
        .await?;
    let got: String = redis::cmd("GET")
        .arg("greeting")
        .query_async(&mut con)
        .await?;
    println!("  GET greeting: {got}");
    db.release().await?; // or let it drop: a passing test's database is flushed and given back

    // Twenty more, one after the other, as twenty tests would take them.
    let mut times: Vec<Duration> = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let db = REDIS.fresh_db().await?;
        times.push(t.elapsed());
        db.release().await?;
    }
    times.sort();
    println!(
        "20 fresh databases: median {:?}, min {:?}, max {:?}",
        times[10], times[0], times[19]
    );

    // A failing test keeps its database, leased, and prints where it is:
    // its guard drops while the thread panics.
    let db = REDIS.fresh_db().await?;
    let number = db.number();
    let loud = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {})); // the panic is staged: quiet
    let failed = std::thread::spawn(move || drop_while_panicking(db)).join();
    std::panic::set_hook(loud);
    assert!(failed.is_err());
    let kept = server.leased().await?.contains(&number);
    println!("database {number} kept after the failure: {kept}");
    Ok(())
}

fn drop_while_panicking(_db: testdock::redis::TestRedisDb) {
    panic!("a test failed");
}
