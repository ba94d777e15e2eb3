//! PostgreSQL fixtures against the real engine, no registry: a shared
//! server, a fresh database per test cloned from a template of
//! `fixtures/sql`, isolation, parallel tests, schema changes, failing tests,
//! broken migrations, the connection cap. A real client (tokio-postgres)
//! proves the URLs work.

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use testdock::postgres::{Migrations, Postgres, SharedPostgres, TestDatabase};
use testdock::Error;
use tokio_postgres::{Client, NoTls};

static PG: SharedPostgres = SharedPostgres::new(|| Postgres::new().migrations_dir("fixtures/sql"));

/// Connects with the URL from the host, as a test's own code would.
async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(connection);
    client
}

async fn user_names(client: &Client) -> Vec<String> {
    client
        .query("SELECT name FROM users ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Polls `check` until it returns true or `within` passes.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "not true within {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn the_schema_from_fixtures_is_in_every_fresh_database() {
    for _ in 0..3 {
        let db = PG.fresh_database().await.unwrap();
        let client = connect(db.url()).await;
        assert_eq!(user_names(&client).await, ["ada", "grace"]);
        let orders: i64 = client
            .query_one("SELECT count(*) FROM orders", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(orders, 0);
        assert!(db.template().starts_with("tmpl_"), "{}", db.template());
        db.drop_now().await.unwrap();
    }
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn the_host_client_connects_with_the_url() {
    let db = PG.fresh_database().await.unwrap();
    let server = PG.server().await.unwrap();
    assert_eq!(
        db.url(),
        format!(
            "postgres://postgres:postgres@{}:{}/{}",
            server.host(),
            server.port(),
            db.name()
        )
    );
    let client = connect(db.url()).await;
    let row = client
        .query_one("SELECT current_database(), current_user", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), db.name());
    assert_eq!(row.get::<_, String>(1), "postgres");
    // Named after this test, unique, a valid identifier: the test's path
    // whole, a hash of it, this process's tag, a counter — or, taken from
    // the process's own ready clones (other tests took databases first),
    // `t_ready_…`.
    assert!(
        db.name()
            .starts_with("t_the_host_client_connects_with_the_url_")
            || db.name().starts_with("t_ready_"),
        "{}",
        db.name()
    );
    assert!(db.name().len() <= 63);
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_client_configured_by_parts_connects() {
    let server = Postgres::new()
        .user("app")
        .password("p@ss word")
        .database("appdb")
        .start()
        .await
        .unwrap();
    assert_eq!(server.admin_database(), "appdb");
    let db = server.fresh_database().await.unwrap();
    assert_eq!(
        (db.host(), db.port(), db.user(), db.password()),
        (server.host(), server.port(), "app", "p@ss word")
    );
    // The parts, not the URL, as an application's config struct holds them.
    let (client, connection) = tokio_postgres::Config::new()
        .host(db.host())
        .port(db.port())
        .dbname(db.name())
        .user(db.user())
        .password(db.password())
        .connect(NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let row = client
        .query_one("SELECT current_database(), current_user", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), db.name());
    assert_eq!(row.get::<_, String>(1), "app");
    // The admin database by its name, too.
    let (admin, connection) = tokio_postgres::Config::new()
        .host(server.host())
        .port(server.port())
        .dbname(server.admin_database())
        .user(server.user())
        .password(server.password())
        .connect(NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let found: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&db.name()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(found, 1);
    drop((client, admin));
    db.drop_now().await.unwrap();
    server.teardown().await.unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn writes_in_one_database_are_invisible_to_another() {
    let (a, b) = tokio::try_join!(PG.fresh_database(), PG.fresh_database()).unwrap();
    assert_ne!(a.name(), b.name());
    let (ca, cb) = (connect(a.url()).await, connect(b.url()).await);
    ca.execute("INSERT INTO users (name) VALUES ('only in a')", &[])
        .await
        .unwrap();
    cb.execute("DELETE FROM users WHERE name = 'ada'", &[])
        .await
        .unwrap();
    assert_eq!(user_names(&ca).await, ["ada", "grace", "only in a"]);
    assert_eq!(user_names(&cb).await, ["grace"]);
    // And a database made later starts from the template, not from either.
    let c = PG.fresh_database().await.unwrap();
    assert_eq!(user_names(&connect(c.url()).await).await, ["ada", "grace"]);
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn twenty_tests_in_parallel_each_get_their_own_database() {
    let tasks = (0..20).map(|i| {
        tokio::spawn(async move {
            let db: TestDatabase = PG.fresh_database().await.unwrap();
            let client = connect(db.url()).await;
            let me = format!("task {i}");
            client
                .execute("INSERT INTO users (name) VALUES ($1)", &[&me])
                .await
                .unwrap();
            assert_eq!(user_names(&client).await, ["ada", "grace", me.as_str()]);
            db.name().to_string()
        })
    });
    let mut names = Vec::new();
    for t in tasks {
        names.push(t.await.unwrap());
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 20, "names collided: {names:?}");
}

/// Many small tests on the one shared server, run in parallel by libtest.
macro_rules! small_tests {
    ($($name:ident),*) => {$(
        #[tokio::test]
        #[ignore = "requires Docker"]
        async fn $name() {
            let db = PG.fresh_database().await.unwrap();
            let client = connect(db.url()).await;
            let me = stringify!($name);
            client.execute("INSERT INTO users (name) VALUES ($1)", &[&me]).await.unwrap();
            assert_eq!(user_names(&client).await, ["ada", "grace", me]);
        }
    )*};
}
small_tests!(small_1, small_2, small_3, small_4, small_5, small_6, small_7, small_8);

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_passing_tests_database_is_dropped() {
    let server = PG.server().await.unwrap();
    let db = PG.fresh_database().await.unwrap();
    let name = db.name().to_string();
    // A session left open must not keep it alive.
    let client = connect(db.url()).await;
    assert!(server.databases().await.unwrap().contains(&name));
    drop(db);
    eventually(Duration::from_secs(10), "database dropped", || async {
        !server.databases().await.unwrap().contains(&name)
    })
    .await;
    assert!(client.query_one("SELECT 1", &[]).await.is_err());
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_failing_tests_database_is_kept() {
    let server = PG.server().await.unwrap();
    let db = PG.fresh_database().await.unwrap();
    let name = db.name().to_string();
    // The guard is dropped while its thread panics, as in a failing test.
    let panicked = std::thread::spawn(move || {
        let _db = db;
        panic!("the test failed");
    })
    .join();
    assert!(panicked.is_err());
    assert!(
        server.databases().await.unwrap().contains(&name),
        "the failing test's database was dropped"
    );
    server.drop_database(&name).await.unwrap();
    assert!(!server.databases().await.unwrap().contains(&name));
}

/// Run by `a_failing_test_prints_its_url_and_keep_on_failure_keeps_the_server`
/// in a child process, where it fails on purpose; run alone, it checks that
/// a write lands in the test's own database and passes.
#[tokio::test]
#[ignore = "requires Docker"]
async fn failing_test_helper() {
    let db = PG.fresh_database().await.unwrap();
    let client = connect(db.url()).await;
    let inserted = client
        .execute(
            "INSERT INTO users (name) VALUES ('left by a failing test')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(inserted, 1);
    if std::env::var_os("TESTDOCK_PG_FAILING_HELPER").is_none() {
        return;
    }
    println!("helper: url {}", db.url());
    panic!("this test fails on purpose");
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_failing_test_prints_its_url_and_keep_on_failure_keeps_the_server() {
    let env = [
        ("TESTDOCK_PG_FAILING_HELPER", "1"),
        ("TESTDOCK_KEEP", "on-failure"),
    ];
    // The server this run's other tests use, up before the child starts.
    let ours = PG.server().await.unwrap();
    // The kept server outlives the child: found first, so it is removed
    // whatever the checks below find.
    let (passed, text, kept) = common::run_child_test("failing_test_helper", &env).await;
    let url = text
        .lines()
        .find_map(|l| l.strip_prefix("helper: url "))
        .map(str::to_string);
    // The child has exited; its server is still up, the database in it.
    let names = match &url {
        Some(url) => match tokio_postgres::connect(url, NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                Ok(user_names(&client).await)
            }
            Err(e) => Err(e.to_string()),
        },
        None => Err("no url".to_string()),
    };
    if let Some(id) = &kept {
        common::remove_forced(id).await;
    }

    assert!(!passed, "the helper passed:\n{text}");
    assert!(kept.is_some(), "the server was not kept:\n{text}");
    // What the child kept (and was removed above) is its own server, not
    // the one this run's other tests are using.
    let kept_id = kept.as_deref().unwrap();
    assert!(
        !ours.container().id().starts_with(kept_id),
        "the run's shared server was kept and removed"
    );
    // Marked once, though the database and the server's guard both ask.
    assert_eq!(
        text.matches("testdock: kept container ").count(),
        1,
        "{text}"
    );
    assert!(!text.contains("could not mark"), "{text}");
    let url = url.unwrap_or_else(|| panic!("no url printed:\n{text}"));
    let name = url.rsplit('/').next().unwrap();
    assert!(
        text.contains(&format!(
            "testdock: kept database {name} of the failing test: {url}"
        )),
        "the failure does not show the database and its URL:\n{text}"
    );
    assert_eq!(names.unwrap(), ["ada", "grace", "left by a failing test"]);
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_schema_change_makes_a_new_template_and_an_unchanged_one_is_reused() {
    let server = PG.server().await.unwrap();
    let dir = std::env::temp_dir().join(format!("testdock-pg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("001_notes.sql");
    std::fs::write(&file, "CREATE TABLE notes (body text);\n").unwrap();
    let m = Migrations::new().dir(&dir);

    let oid_of = |name: String| async move {
        server
            .psql(
                "postgres",
                format!("SELECT oid FROM pg_database WHERE datname = '{name}'"),
            )
            .await
            .unwrap()
    };
    let first = server.template_for(&m).await.unwrap();
    let oid = oid_of(first.clone()).await;
    assert!(!oid.trim().is_empty(), "template {first} missing");
    assert_eq!(server.template_for(&m).await.unwrap(), first);
    assert_eq!(
        oid_of(first.clone()).await,
        oid,
        "an unchanged schema was rebuilt"
    );

    std::fs::write(&file, "CREATE TABLE notes (body text, pinned bool);\n").unwrap();
    let second = m.template_name().unwrap();
    let db = server.fresh_database_from(&m).await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_ne!(second, first, "a changed schema kept its template name");
    assert_eq!(db.template(), second);
    let client = connect(db.url()).await;
    client
        .execute("INSERT INTO notes VALUES ('x', true)", &[])
        .await
        .unwrap();
    // Both templates exist, the old one for tests still on the old schema.
    assert!(!oid_of(first).await.trim().is_empty());
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn bad_sql_in_a_migration_is_an_error_naming_the_file_and_line() {
    let server = PG.server().await.unwrap();
    let broken = Migrations::new().dir("fixtures/sql-broken");
    let err = server.fresh_database_from(&broken).await.unwrap_err();
    let msg = err.to_string();
    match &err {
        Error::Migration {
            file,
            line,
            message,
        } => {
            assert_eq!(file, "fixtures/sql-broken/002_broken.sql");
            assert_eq!(*line, 5);
            assert!(
                message.contains("syntax error at or near \"SELEC\""),
                "{message}"
            );
        }
        other => panic!("expected Error::Migration, got {other:?}"),
    }
    assert!(
        msg.starts_with("migration `fixtures/sql-broken/002_broken.sql` failed at line 5: ERROR:"),
        "{msg}"
    );
    // The half-made template is gone, so a fixed file is applied afresh.
    let template = broken.template_name().unwrap();
    let all = server
        .psql("postgres", "SELECT datname FROM pg_database")
        .await
        .unwrap();
    assert!(!all.contains(&template), "{template} left behind: {all}");

    // SQL given as text is named as given.
    let text = Migrations::new().sql(
        "seed",
        "CREATE TABLE t (x int);\nINSERT INTO t VALUES ('x');\n",
    );
    let msg = server
        .fresh_database_from(&text)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(
            "migration `seed` failed at line 2: ERROR:  invalid input syntax for type integer"
        ),
        "{msg}"
    );
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn the_connection_cap_is_respected() {
    let server = Postgres::new().max_connections(5).start().await.unwrap();
    let max = server
        .psql("postgres", "SHOW max_connections")
        .await
        .unwrap();
    assert_eq!(max.trim(), "5");
    // testdock holds one connection; take the other four.
    let first = server.fresh_database().await.unwrap();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect(first.url()).await);
    }
    let refused = tokio_postgres::connect(first.url(), NoTls).await;
    let code = refused.err().and_then(|e| e.code().cloned());
    assert_eq!(
        code,
        Some(tokio_postgres::error::SqlState::TOO_MANY_CONNECTIONS),
        "the server took a sixth connection"
    );
    // A full server still hands out databases, one at a time or twenty.
    let dbs = futures_util::future::try_join_all((0..20).map(|_| server.fresh_database()))
        .await
        .unwrap();
    assert_eq!(dbs.len(), 20);
    drop(held);
    drop(dbs);
    drop(first);
    server.teardown().await.unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn other_credentials_follow_the_official_images_contract() {
    // A password that needs quoting in SQL and encoding in the URL.
    let server = Postgres::new()
        .user("app")
        .password("it's s3cret/@")
        .database("appdb")
        .init_sql("CREATE TABLE t (x int)")
        .start()
        .await
        .unwrap();
    let db = server.fresh_database().await.unwrap();
    assert!(
        db.url()
            .starts_with("postgres://app:it%27s%20s3cret%2F%40@"),
        "{}",
        db.url()
    );
    let client = connect(db.url()).await;
    let row = client
        .query_one("SELECT current_user, count(*) FROM t", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "app");
    assert_eq!(row.get::<_, i64>(1), 0);
    let admin = server.url("appdb");
    connect(&admin).await;
    // The password is checked, not trusted.
    let wrong = db.url().replace("s3cret", "guess");
    let err = tokio_postgres::connect(&wrong, NoTls)
        .await
        .err()
        .expect("a wrong password is refused");
    assert_eq!(
        err.as_db_error().map(|e| e.code()),
        Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD),
        "{err:?}"
    );
    drop(client);
    db.drop_now().await.unwrap();
    server.teardown().await.unwrap();
}

/// The local image with its `psql` behind a wrapper that makes it meet
/// testdock as psql `major` would, for what testdock's sessions use: `\warn`
/// (psql 13+) is an invalid command, as psql 12 says; for `major` below 11
/// the `ERROR` variable (psql 11+) is unknown, so `:ERROR` stays as it is;
/// and `SHOW server_version_num` answers `major`, so the fixture takes its
/// branches for that server. The server itself stays the local one.
async fn image_with_old_psql(major: u32) -> String {
    let wrapper = r#"#!/bin/sh
while IFS= read -r line; do
  case "$line" in
    '\warn'*) printf 'invalid command \\warn\nTry \\? for help.\n' >&2 ;;
    'SHOW server_version_num'*) printf 'SELECT %s0023;\n' "$FAKE_PSQL" ;;
    '\echo '*' :ERROR')
      if [ "$FAKE_PSQL" -lt 11 ]; then printf '%s :NO_ERROR_VARIABLE\n' "${line% :ERROR}"
      else printf '%s\n' "$line"; fi ;;
    *) printf '%s\n' "$line" ;;
  esac
done | exec REAL "$@"
"#;
    let base = testdock::postgres::local_image().await.unwrap();
    let dir =
        std::env::temp_dir().join(format!("testdock-old-psql-{major}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("psql"), wrapper).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        format!(
            "FROM {base}\nUSER root\nCOPY psql /tmp/psql\n\
             RUN p=$(command -v psql) && cp \"$p\" \"$p.real\" \
             && sed \"s#REAL#$p.real#\" /tmp/psql > \"$p\" && chmod 755 \"$p\" && rm /tmp/psql\n\
             USER 999:999\nENV FAKE_PSQL={major}\n"
        ),
    )
    .unwrap();
    let image = testdock::DockerfileImage::new("testdock/test-old-psql", &dir)
        .build()
        .await;
    let _ = std::fs::remove_dir_all(&dir);
    image.unwrap()
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_psql_12_runs_the_session_and_the_pre_13_and_pre_15_branches_work() {
    let image = image_with_old_psql(12).await;
    let server = Postgres::new()
        .image(image.as_str())
        .setting("log_statement", "ddl")
        .startup_timeout(Duration::from_secs(30))
        .start()
        .await
        .unwrap();
    // The premise: this psql refuses `\warn` as psql 12 does.
    let out = server
        .container()
        .exec(["psql", "-X", "-U", "postgres", "-d", "postgres"])
        .stdin("\\warn hello\n")
        .await
        .unwrap();
    assert!(
        out.stderr_text().contains("invalid command \\warn"),
        "{}",
        out.stderr_text()
    );
    assert_eq!(server.version(), 120_023, "the fixture sees PostgreSQL 12");

    // Before 15 a clone has no STRATEGY; before 13 a drop has no FORCE, and
    // still ends the sessions a test left open.
    let db = server.fresh_database().await.unwrap();
    let client = connect(db.url()).await;
    client.query_one("SELECT 1", &[]).await.unwrap();
    let name = db.name().to_string();
    db.drop_now().await.unwrap();
    assert!(!server.databases().await.unwrap().contains(&name));
    assert!(client.query_one("SELECT 1", &[]).await.is_err());

    // A failing statement: its own message, and the session goes on.
    let template = server.template().await.unwrap();
    match server.drop_database(&template).await {
        Err(Error::ExecFailed { stderr_tail, .. }) => {
            assert!(
                stderr_tail.contains("cannot drop a template database"),
                "{stderr_tail}"
            )
        }
        other => panic!("dropping a template: {other:?}"),
    }
    let again = server.fresh_database().await.unwrap();
    assert!(server
        .databases()
        .await
        .unwrap()
        .contains(&again.name().to_string()));
    again.drop_now().await.unwrap();

    let logs = server.container().logs().await.unwrap();
    let logs = logs.stderr_text();
    let ddl: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("CREATE DATABASE") || l.contains("DROP DATABASE"))
        .collect();
    assert!(
        ddl.iter()
            .any(|l| l.contains(&format!("CREATE DATABASE \"{name}\" TEMPLATE"))),
        "{ddl:#?}"
    );
    assert!(
        ddl.iter()
            .any(|l| l.contains(&format!("DROP DATABASE IF EXISTS \"{name}\""))),
        "{ddl:#?}"
    );
    assert!(
        !ddl.iter()
            .any(|l| l.contains("STRATEGY") || l.contains("FORCE")),
        "{ddl:#?}"
    );
    server.teardown().await.unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_psql_older_than_11_is_refused_at_once_and_nothing_is_left() {
    let image = image_with_old_psql(10).await;
    let started = Instant::now();
    let err = Postgres::new()
        .image(image.as_str())
        .start()
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    match &err {
        Error::InvalidSpec(why) => {
            assert!(
                why.contains(&image) && why.contains("psql 11 or newer"),
                "{why}"
            )
        }
        other => panic!("{other:?}"),
    }
    let docker = testdock::docker().await.unwrap();
    let filters = std::collections::HashMap::from([
        ("ancestor".to_string(), vec![image.clone()]),
        (
            "label".to_string(),
            vec![format!("testdock.session={}", testdock::session_id())],
        ),
    ]);
    let opts = testdock::bollard::query_parameters::ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let left = docker.bollard().list_containers(Some(opts)).await.unwrap();
    assert!(left.is_empty(), "left behind: {left:?}");
}
