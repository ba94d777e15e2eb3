//! MariaDB fixtures against the real engine, no registry: a shared server,
//! a fresh database per test copied from a template of `fixtures/mysql`
//! (tables, foreign keys, views, a trigger, a generated column, seed rows,
//! an auto-increment gap), isolation, parallel tests, templates made by
//! code, failing tests, broken migrations. A real client (mysql_async)
//! proves the URLs work.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{assert_gone, eventually};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use testdock::mysql::{Mysql, SharedMysql, TemplateDb};
use testdock::Error;

static MY: SharedMysql = SharedMysql::new(|| Mysql::new().migrations_dir("fixtures/mysql"));

/// Connects with the URL from the host, as a test's own code would.
async fn connect(url: &str) -> Conn {
    Conn::from_url(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

async fn user_names(conn: &mut Conn) -> Vec<String> {
    conn.query("SELECT name FROM users ORDER BY id")
        .await
        .unwrap()
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn the_whole_schema_is_in_every_fresh_database() {
    for _ in 0..3 {
        let db = MY.fresh_database().await.unwrap();
        assert!(db.url().starts_with("mysql://root:root@"), "{}", db.url());
        let mut c = connect(db.url()).await;
        // Seed rows, and the generated column computes.
        assert_eq!(user_names(&mut c).await, ["ada", "grace"]);
        let email: Option<String> = c
            .query_first("SELECT email FROM users WHERE name = 'ada'")
            .await
            .unwrap();
        assert_eq!(email.as_deref(), Some("ada@example.com"));
        // The auto-increment counter continues where the template left it.
        c.query_drop("INSERT INTO users (name) VALUES ('linus')")
            .await
            .unwrap();
        let id: Option<u64> = c.query_first("SELECT LAST_INSERT_ID()").await.unwrap();
        assert_eq!(id, Some(11));
        // The trigger fires, once per insert; the seed's audit rows came along.
        let audit: Vec<String> = c.query("SELECT what FROM audit ORDER BY id").await.unwrap();
        assert_eq!(audit, ["user ada", "user grace", "user linus"]);
        // The foreign key is enforced, and cascades.
        let orphan = c
            .query_drop("INSERT INTO posts (user_id, title) VALUES (999, 'orphan')")
            .await;
        assert!(
            orphan.is_err_and(|e| e.to_string().contains("foreign key constraint")),
            "an orphan post was accepted"
        );
        // Views, one on top of the other, read this database's tables.
        let counts: Vec<(String, i64)> = c
            .query("SELECT name, posts FROM post_counts ORDER BY name")
            .await
            .unwrap();
        assert_eq!(
            counts,
            [("ada".into(), 1), ("grace".into(), 0), ("linus".into(), 0)]
        );
        c.query_drop("DELETE FROM users WHERE name = 'ada'")
            .await
            .unwrap();
        let busy: Vec<String> = c.query("SELECT name FROM busy_users").await.unwrap();
        assert!(busy.is_empty(), "{busy:?}");
        let posts: Option<i64> = c.query_first("SELECT COUNT(*) FROM posts").await.unwrap();
        assert_eq!(posts, Some(0), "ON DELETE CASCADE did not cascade");
        c.disconnect().await.unwrap();
    }
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_client_configured_by_parts_connects() {
    let db = MY.fresh_database().await.unwrap();
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(db.host())
        .tcp_port(db.port())
        .user(Some(db.user()))
        .pass(Some(db.password()))
        .db_name(Some(db.name()));
    let mut c = Conn::new(opts).await.unwrap();
    let here: Option<String> = c.query_first("SELECT DATABASE()").await.unwrap();
    assert_eq!(here.as_deref(), Some(db.name()));
    assert!(
        db.name().len() <= 64 && db.name().starts_with("t_"),
        "{}",
        db.name()
    );
    c.disconnect().await.unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn writes_in_one_database_are_invisible_to_another() {
    let (a, b) = (
        MY.fresh_database().await.unwrap(),
        MY.fresh_database().await.unwrap(),
    );
    assert_ne!(a.name(), b.name());
    let mut ca = connect(a.url()).await;
    let mut cb = connect(b.url()).await;
    ca.query_drop("INSERT INTO users (name) VALUES ('only in a')")
        .await
        .unwrap();
    assert_eq!(user_names(&mut ca).await, ["ada", "grace", "only in a"]);
    assert_eq!(user_names(&mut cb).await, ["ada", "grace"]);
}

/// Many small tests on the one shared server, run in parallel by libtest.
macro_rules! small_tests {
    ($($name:ident),*) => {$(
        #[tokio::test]
        #[ignore = "requires Docker"]
        async fn $name() {
            let db = MY.fresh_database().await.unwrap();
            let mut c = connect(db.url()).await;
            let me = stringify!($name);
            c.exec_drop("INSERT INTO users (name) VALUES (?)", (me,)).await.unwrap();
            assert_eq!(user_names(&mut c).await, ["ada", "grace", me]);
        }
    )*};
}
small_tests!(small_1, small_2, small_3, small_4, small_5, small_6, small_7, small_8);

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_passing_tests_database_is_dropped() {
    let server = MY.server().await.unwrap();
    let db = MY.fresh_database().await.unwrap();
    let name = db.name().to_string();
    // A session left open must not keep it alive.
    let _c = connect(db.url()).await;
    assert!(server.databases().await.unwrap().contains(&name));
    drop(db);
    eventually(Duration::from_secs(10), "database dropped", || async {
        !server.databases().await.unwrap().contains(&name)
    })
    .await;
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_failing_tests_database_is_kept() {
    let server = MY.server().await.unwrap();
    let db = MY.fresh_database().await.unwrap();
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
    let db = MY.fresh_database().await.unwrap();
    let mut c = connect(db.url()).await;
    c.query_drop("INSERT INTO users (name) VALUES ('left by a failing test')")
        .await
        .unwrap();
    assert_eq!(c.affected_rows(), 1);
    if std::env::var_os("TESTDOCK_MYSQL_FAILING_HELPER").is_none() {
        return;
    }
    println!("helper: url {}", db.url());
    panic!("this test fails on purpose");
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_failing_test_prints_its_url_and_keep_on_failure_keeps_the_server() {
    let exe = std::env::current_exe().unwrap();
    // A blocking wait on a blocking thread: the child takes seconds.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(exe)
            .args([
                "failing_test_helper",
                "--exact",
                "--include-ignored",
                "--test-threads=1",
            ])
            .env("TESTDOCK_MYSQL_FAILING_HELPER", "1")
            .env("TESTDOCK_KEEP", "on-failure")
            // Its own server: one shared with this run would not be kept.
            .env("TESTDOCK_SHARE", "process")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The kept server outlives the child: find it first, so it is removed
    // whatever the checks below find.
    let kept = text
        .lines()
        .find_map(|l| l.split("testdock: kept container ").nth(1))
        .and_then(|rest| rest.split(['(', ')']).nth(1))
        .map(str::to_string);
    let url = text
        .lines()
        .find_map(|l| l.strip_prefix("helper: url "))
        .map(str::to_string);
    // The child has exited; its server is still up, the database in it.
    let names = match &url {
        Some(url) => match Conn::from_url(url.as_str()).await {
            Ok(mut c) => Ok(user_names(&mut c).await),
            Err(e) => Err(e.to_string()),
        },
        None => Err("no url".to_string()),
    };
    if let Some(id) = &kept {
        let opts = testdock::bollard::query_parameters::RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        let docker = testdock::docker().await.unwrap();
        docker
            .bollard()
            .remove_container(id, Some(opts))
            .await
            .unwrap();
    }
    assert!(!out.status.success(), "the helper passed:\n{text}");
    assert!(kept.is_some(), "the server was not kept:\n{text}");
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

/// How often the template code below ran.
static MADE: AtomicUsize = AtomicUsize::new(0);

async fn make_by_code(db: TemplateDb) -> Result<(), mysql_async::Error> {
    MADE.fetch_add(1, Ordering::SeqCst);
    let mut c = Conn::from_url(db.url()).await?;
    c.query_drop(
        "CREATE TABLE items (id INT AUTO_INCREMENT PRIMARY KEY, label TEXT NOT NULL); \
         INSERT INTO items (label) VALUES ('made by code')",
    )
    .await?;
    c.disconnect().await
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_template_by_code_is_made_once_and_a_new_key_makes_a_new_one() {
    let server = Mysql::new()
        .template("items-v1", make_by_code)
        .start()
        .await
        .unwrap();
    let before = MADE.load(Ordering::SeqCst);
    // Taken at once: the code still runs once.
    let dbs = futures_util::future::join_all((0..4).map(|_| server.fresh_database())).await;
    assert_eq!(MADE.load(Ordering::SeqCst), before + 1);
    for db in dbs {
        let db = db.unwrap();
        let mut c = connect(db.url()).await;
        let labels: Vec<String> = c.query("SELECT label FROM items").await.unwrap();
        assert_eq!(labels, ["made by code"]);
    }
    let v1 = server.template().await.unwrap();
    assert_eq!(MADE.load(Ordering::SeqCst), before + 1);
    server.teardown().await.unwrap();

    // The name follows the key: the same key names the same template, a
    // new one a new template.
    let again = Mysql::new()
        .template("items-v1", make_by_code)
        .start()
        .await
        .unwrap();
    assert_eq!(again.template().await.unwrap(), v1);
    again.teardown().await.unwrap();
    let v2 = Mysql::new()
        .template("items-v2", make_by_code)
        .start()
        .await
        .unwrap();
    assert_ne!(v2.template().await.unwrap(), v1);
    v2.teardown().await.unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn template_code_that_fails_or_panics_is_a_template_error() {
    let server = Mysql::new()
        .template("fails", |_db: TemplateDb| async {
            Err::<(), _>(std::io::Error::other("the migrator gave up"))
        })
        .start()
        .await
        .unwrap();
    match server.fresh_database().await.unwrap_err() {
        Error::Template { key, message } => {
            assert_eq!(key, "fails");
            assert!(message.contains("the migrator gave up"), "{message}");
        }
        other => panic!("expected Error::Template, got {other:?}"),
    }
    // The half-made template is gone.
    assert!(server
        .sql("SHOW DATABASES LIKE 'tmpl\\_%'")
        .await
        .unwrap()
        .trim()
        .is_empty());
    server.teardown().await.unwrap();

    let server = Mysql::new()
        .template("panics", |_db: TemplateDb| async {
            panic!("boom");
            #[allow(unreachable_code)]
            Ok::<(), std::io::Error>(())
        })
        .start()
        .await
        .unwrap();
    let msg = server.fresh_database().await.unwrap_err().to_string();
    assert!(msg.contains("panicked: boom"), "{msg}");
    server.teardown().await.unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn bad_sql_in_a_migration_is_an_error_naming_the_file_and_line_and_leaves_nothing() {
    let server = Mysql::new()
        .migrations_dir("fixtures/mysql-broken")
        .start()
        .await
        .unwrap();
    let err = server.fresh_database().await.unwrap_err();
    match &err {
        Error::Migration {
            file,
            line,
            message,
        } => {
            assert_eq!(file, "fixtures/mysql-broken/002_broken.sql");
            assert_eq!(*line, 3);
            assert!(message.contains("ERROR 1064"), "{message}");
            assert!(message.contains("'SELEC 1'"), "{message}");
        }
        other => panic!("expected Error::Migration, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.starts_with(
            "migration `fixtures/mysql-broken/002_broken.sql` failed at line 3: ERROR 1064"
        ),
        "{msg}"
    );
    // Neither the half-made template nor a test database is left.
    assert!(server
        .sql("SHOW DATABASES LIKE 'tmpl\\_%'")
        .await
        .unwrap()
        .trim()
        .is_empty());
    assert_eq!(server.databases().await.unwrap(), ["test"]);
    server.teardown().await.unwrap();

    // SQL given as text is named as given.
    let server = Mysql::new()
        .init_sql("CREATE TABLE t (x INT NOT NULL);\nINSERT INTO t VALUES (NULL);\n")
        .start()
        .await
        .unwrap();
    let msg = server.fresh_database().await.unwrap_err().to_string();
    assert!(
        msg.starts_with("migration `init_sql #1` failed at line 2: ERROR 1048"),
        "{msg}"
    );
    server.teardown().await.unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn another_user_follows_the_official_images_contract_and_nothing_is_left() {
    let server = Mysql::new()
        .user("app")
        .password("s3cr:t@")
        .migrations_dir("fixtures/mysql")
        .start()
        .await
        .unwrap();
    let id = server.container().id().to_string();
    let db = server.fresh_database().await.unwrap();
    assert!(
        db.url().starts_with("mysql://app:s3cr%3At%40@"),
        "{}",
        db.url()
    );
    let mut c = connect(db.url()).await;
    assert_eq!(user_names(&mut c).await, ["ada", "grace"]);
    let me: Option<String> = c.query_first("SELECT CURRENT_USER()").await.unwrap();
    assert_eq!(me.as_deref(), Some("app@%"));
    // MARIADB_DATABASE was made and granted.
    c.query_drop("CREATE TABLE test.mine (x INT)")
        .await
        .unwrap();
    c.disconnect().await.unwrap();
    drop(db);
    server.teardown().await.unwrap();
    assert_gone(&id).await;
}
