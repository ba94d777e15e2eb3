//! The Redis fixture against a real engine: a logical database per test,
//! leases unique across processes, kept on failure, flushed on pass, and a
//! real client (the `redis` crate) on the host.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::time::{Duration, Instant};

use common::runner::{serve, Runner, ROLE};
use common::{eventually, exists};
use redis::aio::MultiplexedConnection;
use testdock::redis::{Redis, SharedRedis};
use testdock::Error;

static REDIS: SharedRedis = SharedRedis::new(Redis::new);

/// What the children of the fake runner share: three databases for tests.
static SMALL: SharedRedis = SharedRedis::new(|| {
    Redis::new()
        .databases(4)
        .lease_wait(Duration::from_secs(120))
});

async fn connect(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn set(con: &mut MultiplexedConnection, key: &str, value: &str) {
    redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async::<()>(con)
        .await
        .unwrap();
}

async fn get(con: &mut MultiplexedConnection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query_async(con).await.unwrap()
}

async fn dbsize(con: &mut MultiplexedConnection) -> i64 {
    redis::cmd("DBSIZE").query_async(con).await.unwrap()
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn the_host_client_connects_with_the_url() {
    let db = REDIS.fresh_db().await.unwrap();
    assert!(db.number() >= 1, "database 0 holds the leases");
    assert_eq!(
        db.url(),
        format!("redis://{}:{}/{}", db.host(), db.port(), db.number())
    );
    let mut con = connect(db.url()).await;
    set(&mut con, "greeting", "hello").await;
    assert_eq!(get(&mut con, "greeting").await.as_deref(), Some("hello"));
    // The URL selected the test's database, not 0.
    let server = REDIS.server().await.unwrap();
    let in_zero = server.command("EXISTS greeting").await.unwrap();
    assert_eq!(in_zero, "(integer) 0");
    assert!(server.version().starts_with('7'), "{}", server.version());
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn writes_in_one_database_are_invisible_to_another() {
    let (a, b) = (
        REDIS.fresh_db().await.unwrap(),
        REDIS.fresh_db().await.unwrap(),
    );
    assert_ne!(a.number(), b.number());
    let (mut ca, mut cb) = (connect(a.url()).await, connect(b.url()).await);
    tokio::join!(set(&mut ca, "k", "from a"), set(&mut cb, "k", "from b"));
    set(&mut ca, "only-a", "1").await;
    assert_eq!(get(&mut ca, "k").await.as_deref(), Some("from a"));
    assert_eq!(get(&mut cb, "k").await.as_deref(), Some("from b"));
    assert_eq!(get(&mut cb, "only-a").await, None);
    assert_eq!((dbsize(&mut ca).await, dbsize(&mut cb).await), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "requires Docker"]
async fn twenty_tests_in_parallel_each_get_their_own_database() {
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            tokio::spawn(async move {
                let db = REDIS.fresh_db().await.unwrap();
                let mut con = connect(db.url()).await;
                assert_eq!(dbsize(&mut con).await, 0, "a fresh database is empty");
                set(&mut con, "who", &i.to_string()).await;
                tokio::task::yield_now().await;
                assert_eq!(get(&mut con, "who").await, Some(i.to_string()));
                assert_eq!(dbsize(&mut con).await, 1);
                db
            })
        })
        .collect();
    // All held until all are checked: one dropped early is given back and
    // may rightly go to a task that leases late.
    let mut dbs = Vec::new();
    for t in tasks {
        dbs.push(t.await.unwrap());
    }
    let mut numbers = HashSet::new();
    for db in &dbs {
        assert!(numbers.insert(db.number()), "{} given twice", db.number());
    }
    assert_eq!(numbers.len(), 20);
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_passing_tests_database_is_flushed_and_given_back_for_the_next() {
    // One database for tests: the next lease can only be the same one.
    let server = Redis::new().databases(2).start().await.unwrap();
    let db = server.fresh_db().await.unwrap();
    assert_eq!(db.number(), 1);
    let mut con = connect(db.url()).await;
    set(&mut con, "left", "behind").await;
    assert_eq!(server.leased().await.unwrap(), [1]);
    drop(db); // as at the end of a passing test
    eventually(Duration::from_secs(10), "the lease given back", || async {
        server.leased().await.unwrap().is_empty()
    })
    .await;
    assert_eq!(dbsize(&mut con).await, 0, "flushed when given back");
    let again = server.fresh_db().await.unwrap();
    assert_eq!(again.number(), 1, "reused");
    assert_eq!(dbsize(&mut connect(again.url()).await).await, 0);
    // Only its own database was flushed: the leases in 0 are intact.
    assert_eq!(server.leased().await.unwrap(), [1]);
    again.release().await.unwrap();
    assert!(server.leased().await.unwrap().is_empty());
    let id = server.container().id().to_string();
    server.teardown().await.unwrap();
    assert!(!exists(&id).await, "nothing left");
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_failing_tests_database_is_kept_leased_with_its_data() {
    let server = Redis::new().databases(4).start().await.unwrap();
    let db = server.fresh_db().await.unwrap();
    let (n, url) = (db.number(), db.url().to_string());
    let mut con = connect(&url).await;
    set(&mut con, "evidence", "here").await;
    // The guard is dropped while its thread panics, as in a failing test.
    let panicked = std::thread::spawn(move || {
        let _db = db;
        panic!("the test failed");
    })
    .join();
    assert!(panicked.is_err());
    assert_eq!(server.leased().await.unwrap(), [n], "still leased");
    assert_eq!(get(&mut con, "evidence").await.as_deref(), Some("here"));
    // It is not handed out while this process lives.
    let next = server.fresh_db().await.unwrap();
    assert_ne!(next.number(), n);
    server.teardown().await.unwrap();
}

/// Run by `a_failing_test_prints_its_url_and_keep_on_failure_keeps_the_server`
/// in a child process, where it fails on purpose; run alone, it passes.
#[tokio::test]
#[ignore = "requires Docker"]
async fn failing_test_helper() {
    let db = REDIS.fresh_db().await.unwrap();
    let mut con = connect(db.url()).await;
    set(&mut con, "left-by", "a failing test").await;
    if std::env::var_os("TESTDOCK_REDIS_FAILING_HELPER").is_none() {
        return;
    }
    println!("helper: url {}", db.url());
    panic!("this test fails on purpose");
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_failing_test_prints_its_url_and_keep_on_failure_keeps_the_server() {
    let env = [
        ("TESTDOCK_REDIS_FAILING_HELPER", "1"),
        ("TESTDOCK_KEEP", "on-failure"),
    ];
    let (passed, text, kept) = common::run_child_test("failing_test_helper", &env).await;
    let url = text
        .lines()
        .find_map(|l| l.strip_prefix("helper: url "))
        .map(str::to_string);
    // The child has exited; its server is still up, the data in it.
    let left = match &url {
        Some(url) => match redis::Client::open(url.as_str()) {
            Ok(c) => match c.get_multiplexed_async_connection().await {
                Ok(mut con) => Ok(get(&mut con, "left-by").await),
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.to_string()),
        },
        None => Err("no url".to_string()),
    };
    if let Some(id) = &kept {
        common::remove_forced(id).await;
    }
    assert!(!passed, "the helper passed:\n{text}");
    assert!(kept.is_some(), "the server was not kept:\n{text}");
    let url = url.unwrap_or_else(|| panic!("no url printed:\n{text}"));
    let n = url.rsplit('/').next().unwrap();
    assert!(
        text.contains(&format!(
            "testdock: kept redis database {n} of the failing test: {url}"
        )),
        "the failure does not show the database and its URL:\n{text}"
    );
    assert_eq!(left.unwrap().as_deref(), Some("a failing test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "requires Docker"]
async fn when_all_are_leased_a_lease_waits_for_one_then_fails_naming_the_holders() {
    let server = Redis::new()
        .databases(3)
        .lease_wait(Duration::from_secs(3))
        .start()
        .await
        .unwrap();
    let a = server.fresh_db().await.unwrap();
    let b = server.fresh_db().await.unwrap();
    // A third waits, and gets the one given back.
    let third = tokio::spawn(server.fresh_db());
    let freed = a.number();
    a.release().await.unwrap();
    let c = third.await.unwrap().unwrap();
    assert_eq!(c.number(), freed);
    // None comes back now: a typed error once the wait is over.
    let t0 = Instant::now();
    let err = server.fresh_db().await.unwrap_err();
    assert!(t0.elapsed() >= Duration::from_secs(3), "{:?}", t0.elapsed());
    match &err {
        Error::Exhausted {
            capacity, holders, ..
        } => {
            assert_eq!(*capacity, 2);
            assert_eq!(holders, "2 by this process");
        }
        other => panic!("not Exhausted: {other}"),
    }
    let text = err.to_string();
    assert!(
        text.starts_with("all 2 logical databases of redis server"),
        "{text}"
    );
    drop((b, c));
    server.teardown().await.unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn bad_input_is_a_typed_error_and_leaves_nothing() {
    let err = Redis::new().databases(1).start().await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidSpec(m) if m.contains("databases(1)")),
        "{err}"
    );
    let err = Redis::new()
        .setting("no-such-setting", "1")
        .startup_timeout(Duration::from_secs(20))
        .start()
        .await
        .unwrap_err();
    let Error::NotReady {
        container,
        logs_tail,
        ..
    } = &err
    else {
        panic!("not NotReady: {err}")
    };
    assert!(logs_tail.contains("no-such-setting"), "{err}");
    assert!(!exists(container).await, "{container} left behind");
}

/// Both sides of the cross-process scenario: as the fake runner, it runs
/// children; as a child, it leases from the run's server as its mode says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "requires Docker"]
async fn redis_probe() {
    unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
    let out = |line: String| {
        println!("{line}");
        std::io::stdout().flush().unwrap();
    };
    match std::env::var(ROLE).as_deref() {
        Ok("runner") => tokio::task::spawn_blocking(|| serve("redis_probe"))
            .await
            .unwrap(),
        Ok("hold") => {
            let db = SMALL.fresh_db().await.unwrap();
            let server = SMALL.server().await.unwrap();
            set(&mut connect(db.url()).await, "holder", "alive").await;
            out(format!("DB {} {}", db.number(), server.container().id()));
            tokio::task::spawn_blocking(|| {
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new())
            })
            .await
            .unwrap()
            .unwrap();
        }
        Ok("take") => {
            let db = SMALL.fresh_db().await.unwrap();
            let server = SMALL.server().await.unwrap();
            let size = dbsize(&mut connect(db.url()).await).await;
            out(format!(
                "DB {} {} {size}",
                db.number(),
                server.container().id()
            ));
        }
        Ok(other) => panic!("unknown child mode {other}"),
        Err(_) => {}
    }
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn leases_are_unique_across_processes_and_a_dead_processs_is_taken_over() {
    let mut run = Runner::start("redis_probe", &[]);
    for n in 0..3 {
        run.spawn(n, "hold", "-");
    }
    let held: Vec<Vec<String>> = (0..3)
        .map(|n| run.expect(n, "DB").split(' ').map(str::to_string).collect())
        .collect();
    let numbers: HashSet<&str> = held.iter().map(|h| h[0].as_str()).collect();
    let servers: HashSet<&str> = held.iter().map(|h| h[1].as_str()).collect();
    assert_eq!(servers.len(), 1, "one server for the run: {held:?}");
    assert_eq!(numbers, HashSet::from(["1", "2", "3"]), "{held:?}");
    // All three are held by live processes: a fourth waits, and says why.
    run.spawn(3, "take", "-");
    run.expect_stderr(3, "logical databases of redis server");
    // A test killed by its runner leaves its lease behind; it is taken
    // over, flushed.
    run.say("kill 0");
    let took: Vec<String> = run.expect(3, "DB").split(' ').map(str::to_string).collect();
    assert_eq!(took[0], held[0][0], "the dead process's database: {took:?}");
    assert_eq!(took[1], held[0][1]);
    assert_eq!(took[2], "0", "flushed before it was handed over");
    run.expect_exit(3);
    for n in 1..3 {
        run.say(&format!("close {n}"));
        run.expect_exit(n);
    }
    run.end();
    let id = held[0][1].clone();
    eventually(Duration::from_secs(20), "the run's server removed", || {
        let id = id.clone();
        async move { !exists(&id).await }
    })
    .await;
}
