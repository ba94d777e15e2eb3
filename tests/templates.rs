//! Templates made by the user's own migrator code, migration directories in
//! the ecosystem's layouts, and prefetched clones, against the real engine
//! (no registry). tokio-postgres stands in for the user's migrator.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use testdock::postgres::{Migrations, Postgres, SharedPostgres, TemplateDb, TemplateKey};
use testdock::Error;
use tokio_postgres::{Client, NoTls};

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// A migrator as Rust projects have them: it connects with the URL, applies
/// what its bookkeeping table says is missing and records it there.
async fn migrate(db: TemplateDb) -> Result<(), tokio_postgres::Error> {
    migrate_url(db.url()).await
}

/// Where [`migrate_counted`] notes each run: one file per server, so every
/// process sharing the server (under nextest) counts into it.
static RUNS_FILE: OnceLock<PathBuf> = OnceLock::new();

/// [`migrate`], noting that it ran.
async fn migrate_counted(db: TemplateDb) -> Result<(), tokio_postgres::Error> {
    let path = RUNS_FILE.get().expect("set before the first take");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    writeln!(f, "ran in {}", std::process::id()).unwrap();
    migrate(db).await
}

async fn migrate_url(url: &str) -> Result<(), tokio_postgres::Error> {
    let client = connect(url).await;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS _app_migrations (version bigint PRIMARY KEY);
             CREATE TABLE IF NOT EXISTS notes (id bigserial PRIMARY KEY, body text NOT NULL);",
        )
        .await?;
    let applied = client
        .query_opt("SELECT 1 FROM _app_migrations WHERE version = 1", &[])
        .await?;
    if applied.is_none() {
        client
            .batch_execute(
                "INSERT INTO notes (body) VALUES ('seeded by the migrator');
                 INSERT INTO _app_migrations VALUES (1);",
            )
            .await?;
    }
    // The client stays connected past the end: a pool not yet closed.
    std::mem::forget(client);
    Ok(())
}

static CODE: SharedPostgres = SharedPostgres::new(|| {
    Postgres::new()
        .init_sql("CREATE TABLE from_sql (x int)")
        .template("notes-v1", migrate_counted)
});

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_template_made_by_code_is_made_once_and_carries_its_bookkeeping() {
    let server = CODE.server().await.unwrap();
    let runs = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("migrator-runs-{}", server.container().id()));
    RUNS_FILE.get_or_init(|| runs.clone());
    let takes = (0..6).map(|_| CODE.fresh_database());
    let dbs = futures_util::future::try_join_all(takes).await.unwrap();
    // However many processes share the server, and whichever made it.
    let ran = std::fs::read_to_string(&runs).unwrap();
    assert_eq!(ran.lines().count(), 1, "the migrator ran once: {ran}");
    for db in &dbs {
        let client = connect(db.url()).await;
        // The SQL given before the code ran first, into the same template.
        client
            .query_one("SELECT count(*) FROM from_sql", &[])
            .await
            .unwrap();
        let body: String = client
            .query_one("SELECT body FROM notes", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(body, "seeded by the migrator");
        let version: i64 = client
            .query_one("SELECT version FROM _app_migrations", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(version, 1, "the migrator's own bookkeeping is in the clone");
    }
    // Run again on a fresh database, the migrator finds nothing to do.
    let db = &dbs[0];
    migrate_url(db.url()).await.unwrap();
    let notes: i64 = connect(db.url())
        .await
        .query_one("SELECT count(*) FROM notes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(notes, 1);
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_changed_key_makes_a_new_template() {
    let server = CODE.server().await.unwrap();
    let a = server
        .template_for(&Migrations::new().code("k1", migrate))
        .await
        .unwrap();
    let again = server
        .template_for(&Migrations::new().code("k1", migrate))
        .await
        .unwrap();
    let b = server
        .template_for(&Migrations::new().code("k2", migrate))
        .await
        .unwrap();
    assert_eq!(a, again);
    assert_ne!(a, b);
    // A key over files follows their contents.
    let dir = std::env::temp_dir().join(format!("testdock-key-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("m.sql"), "v1").unwrap();
    let files = || Migrations::new().code(TemplateKey::files([&dir]), migrate);
    let f1 = server.template_for(&files()).await.unwrap();
    std::fs::write(dir.join("m.sql"), "v2").unwrap();
    let f2 = server.template_for(&files()).await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_ne!(f1, f2, "an edited file makes a new template");
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_failing_or_panicking_migrator_is_a_typed_error_for_every_caller() {
    let server = CODE.server().await.unwrap();
    let failing = Migrations::new().code("fails", |db: TemplateDb| async move {
        let client = connect(db.url()).await;
        client.batch_execute("SELEC 1").await
    });
    let callers = (0..4).map(|_| server.fresh_database_from(&failing));
    for result in futures_util::future::join_all(callers).await {
        match result {
            Err(Error::Template { key, message }) => {
                assert_eq!(key, "fails");
                assert!(message.contains("syntax error"), "{message}");
            }
            other => panic!("expected Error::Template, got {other:?}"),
        }
    }
    let panicking = Migrations::new().code("panics", |_db: TemplateDb| async move {
        if std::hint::black_box(true) {
            panic!("the migrator blew up");
        }
        Ok::<(), std::io::Error>(())
    });
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        server.fresh_database_from(&panicking),
    )
    .await
    .expect("a panicking migrator must not hang its callers")
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Template { .. }), "{err:?}");
    assert!(text.contains("panicked: the migrator blew up"), "{text}");
    // Nothing half made is left to clone from.
    let names = [
        failing.template_name().unwrap(),
        panicking.template_name().unwrap(),
    ];
    let listed = server
        .psql("postgres", "SELECT datname FROM pg_database")
        .await
        .unwrap();
    for name in names {
        assert!(!listed.lines().any(|l| l == name), "{name} was left");
    }
}

static LAYOUTS: SharedPostgres = SharedPostgres::new(Postgres::new);

#[tokio::test]
#[ignore = "requires Docker"]
async fn each_migration_layout_gives_the_right_schema() {
    let server = LAYOUTS.server().await.unwrap();
    for layout in ["sqlx", "sqlx-reversible", "refinery", "diesel", "plain"] {
        let m = Migrations::new().dir(format!("fixtures/migrations/{layout}"));
        let db = server
            .fresh_database_from(&m)
            .await
            .unwrap_or_else(|e| panic!("{layout}: {e}"));
        let client = connect(db.url()).await;
        let tables: Vec<String> = client
            .query(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(tables, ["posts", "users"], "{layout}");
        let index: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_indexes WHERE indexname = 'posts_by_user'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(index, 1, "{layout}: the last migration ran");
        // The foreign key holds: the up half ran, the down half did not.
        let err = client
            .execute("INSERT INTO posts (user_id, title) VALUES (42, 'x')", &[])
            .await
            .unwrap_err();
        let why = err.as_db_error().map(|e| e.message().to_string());
        assert!(
            why.as_deref().is_some_and(|m| m.contains("foreign key")),
            "{layout}: {err:?}"
        );
    }
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn an_unreadable_layout_is_an_error_and_starts_nothing() {
    let err = Postgres::new()
        .migrations_dir("fixtures/migrations/mixed")
        .start()
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::MigrationLayout { .. }), "{err:?}");
    assert!(text.contains("fixtures/migrations/mixed"), "{text}");
    assert!(text.contains("`2_posts.sql`"), "{text}");
}

static PREFETCHED: SharedPostgres =
    SharedPostgres::new(|| Postgres::new().migrations_dir("fixtures/migrations/realistic"));

#[tokio::test]
#[ignore = "requires Docker"]
async fn prefetched_clones_are_isolated_and_taken_by_rename() {
    let server = PREFETCHED.server().await.unwrap();
    // The first take makes the template and measures the clone strategy,
    // leaving ready clones behind.
    drop(PREFETCHED.fresh_database().await.unwrap());
    let ready = || async {
        server
            .psql(
                "postgres",
                "SELECT count(*) FROM pg_database WHERE datname LIKE 'tdp\\_%'",
            )
            .await
            .unwrap()
            .trim()
            .parse::<usize>()
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while ready().await == 0 {
        assert!(Instant::now() < deadline, "no clone was made ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let oids = |sql: String| async move {
        server
            .psql("postgres", sql)
            .await
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let ready_before =
        oids("SELECT oid FROM pg_database WHERE datname LIKE 'tdp\\_%'".into()).await;
    let dbs = futures_util::future::try_join_all((0..8).map(|_| PREFETCHED.fresh_database()))
        .await
        .unwrap();
    let list: Vec<String> = dbs.iter().map(|d| format!("'{}'", d.name())).collect();
    let taken = oids(format!(
        "SELECT oid FROM pg_database WHERE datname IN ({})",
        list.join(", ")
    ))
    .await;
    assert!(
        taken.iter().any(|oid| ready_before.contains(oid)),
        "no test got a ready clone: ready {ready_before:?}, taken {taken:?}"
    );
    let mut names: Vec<&str> = dbs.iter().map(|d| d.name()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 8, "eight distinct databases");
    assert!(names.iter().all(|n| n.starts_with("t_")), "{names:?}");
    // Each write stays in its own database.
    for (i, db) in dbs.iter().enumerate() {
        connect(db.url())
            .await
            .execute(
                "UPDATE users SET name = $1 WHERE id = 1",
                &[&format!("mine-{i}")],
            )
            .await
            .unwrap();
    }
    for (i, db) in dbs.iter().enumerate() {
        let client = connect(db.url()).await;
        let name: String = client
            .query_one("SELECT name FROM users WHERE id = 1", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(name, format!("mine-{i}"));
        let tables: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(tables, 24);
    }
    // Ready clones are testdock's: not listed among the databases.
    let listed = server.databases().await.unwrap();
    assert!(listed.iter().all(|n| !n.starts_with("tdp_")), "{listed:?}");
    // The measured choice is recorded on the template for other processes.
    let template = server.template().await.unwrap();
    let note = server
        .psql(
            "postgres",
            format!("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '{template}'"),
        )
        .await
        .unwrap();
    assert!(note.starts_with("testdock:strategy="), "{note}");

    // Having taken nine, the process keeps ready clones of its own: a take
    // gets one under its own name, with no round trip to the server.
    let own_ready = || async {
        let held: Vec<String> = dbs.iter().map(|d| d.name().to_string()).collect();
        let all =
            oids("SELECT datname FROM pg_database WHERE datname LIKE 't\\_ready\\_%'".into()).await;
        all.into_iter()
            .filter(|n| !held.contains(n))
            .collect::<Vec<_>>()
    };
    // Its own are named for this template (another static's server on the
    // same container is another owner, as another process would be); the
    // refill may still be making more, and a take gets the newest. One is
    // listed before the process has it (the server commits, then answers);
    // the refill makes them one at a time, so with two listed it has one.
    let mine = format!("t_ready_{}_", template.trim_start_matches("tmpl_"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while own_ready()
        .await
        .iter()
        .filter(|n| n.starts_with(&mine))
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "no ready clone of its own was made"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let own = PREFETCHED.fresh_database().await.unwrap();
    // Only a take from its own handed out a `t_ready_` name: any other
    // gets the test's own name.
    assert!(
        own.name().starts_with(&mine),
        "{} is not of its own",
        own.name()
    );
    assert!(
        dbs.iter().all(|d| d.name() != own.name()),
        "{} twice",
        own.name()
    );
    let tables: i64 = connect(own.url())
        .await
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 24);
    // Listed once taken; those not taken are testdock's.
    let listed = server.databases().await.unwrap();
    assert!(listed.contains(&own.name().to_string()), "{listed:?}");
    let still: Vec<_> = own_ready()
        .await
        .into_iter()
        .filter(|n| n != own.name() && n.starts_with(&mine))
        .collect();
    assert!(
        still.iter().all(|n| !listed.contains(n)),
        "{listed:?} lists {still:?}"
    );
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn with_prefetch_off_no_clone_is_made_ahead() {
    let server = Postgres::new().prefetch(0).start().await.unwrap();
    for _ in 0..3 {
        drop(server.fresh_database().await.unwrap());
    }
    let ready = server
        .psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'tdp\\_%'",
        )
        .await
        .unwrap();
    assert_eq!(ready.trim(), "0");
    server.teardown().await.unwrap();
}
