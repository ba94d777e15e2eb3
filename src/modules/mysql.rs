//! MariaDB (and MySQL) for tests: one server per test run, migrations
//! applied once into a template schema, and a fresh database per test
//! copied from it in milliseconds.
//!
//! ```no_run
//! use testdock::mysql::{Mysql, SharedMysql};
//!
//! static MY: SharedMysql = SharedMysql::new(|| Mysql::new().migrations_dir("fixtures/mysql"));
//!
//! #[tokio::test]
//! #[ignore = "requires Docker"]
//! async fn creates_user() {
//!     let db = MY.fresh_database().await.unwrap(); // its own database, schema applied
//!     let url = db.url(); // mysql://root:root@127.0.0.1:PORT/t_creates_user_…
//!     // connect with any client; the database is dropped when the test
//!     // passes and kept, its URL printed, when it fails
//! }
//! ```
//!
//! - The server is tuned for tests: data on a tmpfs, the redo log flushed
//!   about once a second and never synced, no doublewrite buffer, no binary
//!   log, a small buffer pool, a crash-like shutdown. It counts as ready
//!   once a real query over TCP succeeds (the official image restarts once
//!   after its init).
//! - MariaDB has no template databases: a fresh database is a copy of the
//!   template schema made from what the template holds — each table's
//!   `SHOW CREATE TABLE` (indexes, foreign keys, the auto-increment
//!   counter), its rows by `INSERT … SELECT`, then views, triggers and
//!   routines — in one round trip. Copies are prefetched in the background
//!   once a process has taken two, so a test usually finds one ready.
//! - The image is the official [`OFFICIAL_IMAGE`] where it is present or can
//!   be pulled, else one testdock makes from this machine's MariaDB install
//!   ([`local_image`]); [`Mysql::image`] sets another.
//! - SQL runs through the `mariadb` (or `mysql`) client in the container:
//!   the crate has no MySQL client of its own.

mod copy;
mod database;
mod image;
mod server;
mod session;
mod shared;

use std::fmt::Write as _;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::engine::on_engine;
use crate::migrations::BoxError;
use crate::{ContainerSpec, Error, Image, Result, TestContainer, WaitFor};

use super::fixture::{self, ImageChoice};
use super::naming::Origin;
pub use crate::migrations::{Migrations, TemplateDb, TemplateKey};
pub use database::TestDatabase;
pub use image::{local_image, OFFICIAL_IMAGE};
use server::Inner;
pub use server::MysqlServer;
use session::Session;
pub use shared::SharedMysql;

/// The port the server listens on in the container.
const PORT: u16 = 3306;
/// The data directory, on a tmpfs; the official images' default too.
const DATA_DIR: &str = "/var/lib/mysql";
/// The uid the official image and testdock's own run the server as.
const SERVER_UID: u32 = 999;
/// Where migration scripts are copied in the container, one directory per
/// template, so the client reports a file and a line for an error.
const SQL_DIR: &str = "/tmp/testdock-sql";
/// One admin statement (a copy, a drop); far above what it takes.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(60);
/// MariaDB's and MySQL's longest identifier, in bytes.
const MAX_NAME: usize = 64;

/// A MariaDB (or MySQL) server to start: image, credentials, settings,
/// migrations.
///
/// Defaults: user `root`, password `root`; the official image where it can
/// be had, else [`local_image`]; `max_connections=500`; no migrations; up
/// to 8 copies prefetched.
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> testdock::Result<()> {
/// use testdock::mysql::Mysql;
///
/// let server = Mysql::new()
///     .migrations_dir("fixtures/mysql")
///     .setting("sql_mode", "STRICT_ALL_TABLES")
///     .start()
///     .await?;
/// let db = server.fresh_database().await?;
/// println!("{}", db.url());
/// db.drop_now().await?;
/// server.teardown().await?;
/// # Ok(()) }
/// ```
#[must_use = "a Mysql does nothing until `.start()` is awaited"]
#[derive(Clone, Debug)]
pub struct Mysql {
    image: ImageChoice,
    user: String,
    password: String,
    root_password: Option<String>,
    database: String,
    migrations: Migrations,
    init_sql_count: usize,
    settings: Vec<(String, String)>,
    max_connections: u32,
    prefetch: usize,
    startup_timeout: Duration,
}

impl Default for Mysql {
    fn default() -> Self {
        Self::new()
    }
}

impl Mysql {
    /// A server with the defaults.
    pub fn new() -> Self {
        Mysql {
            image: ImageChoice::Default,
            user: "root".into(),
            password: "root".into(),
            root_password: None,
            database: "test".into(),
            migrations: Migrations::new(),
            init_sql_count: 0,
            settings: Vec::new(),
            max_connections: 500,
            prefetch: 8,
            startup_timeout: Duration::from_secs(60),
        }
    }

    /// Runs this image, which must follow the official MariaDB image's
    /// contract (`MARIADB_ROOT_PASSWORD`, `MARIADB_USER`,
    /// `MARIADB_PASSWORD`, `MARIADB_DATABASE`, data in `/var/lib/mysql`, the
    /// server started by the command `mariadbd`); an image whose name
    /// contains `mysql` is run as the official MySQL image (`MYSQL_*`,
    /// `mysqld`, the `mysql` client). Any [`Image`]: `"mariadb:10.11"`, or
    /// a chain with [`Image::first_of`].
    pub fn image(mut self, image: impl Into<Image>) -> Self {
        self.image = ImageChoice::Given(image.into());
        self
    }

    /// Always runs the image made from this machine's install
    /// ([`local_image`]), without trying the official one first.
    pub fn local_image(mut self) -> Self {
        self.image = ImageChoice::Local;
        self
    }

    /// The user the URLs carry (default `root`). Another user is created
    /// (`MARIADB_USER`) and granted everything on the test databases.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = user.into();
        self
    }

    /// Its password (default `root`); root's too when the user is root.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = password.into();
        self
    }

    /// Root's password (`MARIADB_ROOT_PASSWORD`; default: the user's
    /// password when the user is root, else `root`). testdock's own client
    /// runs as root.
    pub fn root_password(mut self, password: impl Into<String>) -> Self {
        self.root_password = Some(password.into());
        self
    }

    /// A database created at start (`MARIADB_DATABASE`; default `test`).
    pub fn database(mut self, name: impl Into<String>) -> Self {
        self.database = name.into();
        self
    }

    /// Adds the `*.sql` files of `dir`, in name order, to the migrations
    /// (see [`Migrations::dir`]).
    pub fn migrations_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.migrations = self.migrations.dir(dir);
        self
    }

    /// Adds SQL text to the migrations; errors name it `init_sql #N`.
    pub fn init_sql(mut self, sql: impl Into<String>) -> Self {
        self.init_sql_count += 1;
        let name = format!("init_sql #{}", self.init_sql_count);
        self.migrations = self.migrations.sql(name, sql);
        self
    }

    /// Adds a whole [`Migrations`] after those already given.
    pub fn migrations(mut self, migrations: Migrations) -> Self {
        self.migrations = self.migrations.append(migrations);
        self
    }

    /// Adds your own code to the migrations (see [`Migrations::code`]):
    /// your migrator, run once per template against the template schema,
    /// whose URL `make` is handed, after the steps given before it. `key`
    /// names what it makes: change it (or use [`TemplateKey::files`]) when
    /// the migrations change.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use testdock::mysql::{Mysql, TemplateDb, TemplateKey};
    ///
    /// let my = Mysql::new().template(TemplateKey::files(["migrations"]), |db: TemplateDb| async move {
    ///     // e.g. sqlx::migrate!().run(&MySqlPool::connect(db.url()).await?).await?;
    ///     let _ = db.url();
    ///     Ok::<_, std::io::Error>(())
    /// });
    /// # let _ = my;
    /// ```
    pub fn template<F, Fut, E>(mut self, key: impl Into<TemplateKey>, make: F) -> Self
    where
        F: Fn(TemplateDb) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        self.migrations = self.migrations.code(key, make);
        self
    }

    /// A server option, passed as `--key=value` (after testdock's own, so
    /// it wins): `setting("sql_mode", "ANSI")`.
    pub fn setting(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((key.into(), value.into()));
        self
    }

    /// The server's `max_connections` (default 500).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// How many copies of a template are kept ready (default 8; 0 turns
    /// prefetching off). A process starts prefetching when it takes its
    /// second database of a template, and refills as it takes them.
    pub fn prefetch(mut self, copies: usize) -> Self {
        self.prefetch = copies;
        self
    }

    /// How long the server may take to answer a query (default 60 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    fn root_pw(&self) -> String {
        match (&self.root_password, self.user == "root") {
            (Some(p), _) => p.clone(),
            (None, true) => self.password.clone(),
            (None, false) => "root".into(),
        }
    }

    /// The password the URLs carry.
    fn url_password(&self) -> String {
        if self.user == "root" {
            self.root_pw()
        } else {
            self.password.clone()
        }
    }

    /// The container this server runs in. `mysql` selects the official
    /// MySQL image's names.
    fn spec(&self, image: impl Into<Image>, mysql: bool) -> ContainerSpec {
        let (server, client, env) = match mysql {
            true => ("mysqld", "mysql", "MYSQL"),
            false => ("mariadbd", "mariadb", "MARIADB"),
        };
        let mut cmd: Vec<String> = vec![server.into()];
        let mut defaults = vec![
            ("port", PORT.to_string()),
            ("bind-address", "0.0.0.0".into()),
            ("skip-name-resolve", "ON".into()),
            ("skip-log-bin", String::new()),
            ("innodb-flush-log-at-trx-commit", "0".into()),
            ("sync-binlog", "0".into()),
            ("innodb-doublewrite", "0".into()),
            ("innodb-flush-method", "fsync".into()),
            ("innodb-buffer-pool-size", "64M".into()),
            ("innodb-log-file-size", "16M".into()),
            ("innodb-stats-persistent", "OFF".into()),
            ("innodb-fast-shutdown", "2".into()),
            ("performance-schema", "OFF".into()),
            ("character-set-server", "utf8mb4".into()),
            ("max-connections", self.max_connections.to_string()),
        ];
        if !mysql {
            // MySQL 8 has neither.
            defaults.push(("innodb-use-native-aio", "0".into()));
        }
        let settings = defaults
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .chain(self.settings.iter().cloned());
        for (k, v) in settings {
            let k = k.replace('_', "-");
            cmd.push(match v.is_empty() {
                true => format!("--{k}"),
                false => format!("--{k}={v}"),
            });
        }
        let root = self.root_pw();
        let mut spec = ContainerSpec::new(image)
            .env(format!("{env}_ROOT_PASSWORD"), &root)
            .env(format!("{env}_DATABASE"), &self.database);
        if self.user != "root" {
            spec = spec
                .env(format!("{env}_USER"), &self.user)
                .env(format!("{env}_PASSWORD"), &self.password);
        }
        spec.tmpfs(
            DATA_DIR,
            format!("uid={SERVER_UID},gid={SERVER_UID},mode=0750"),
        )
        .expose(PORT)
        .cmd(cmd)
        // A real query over TCP: the official image's first server,
        // during init, listens on no TCP port and is then restarted.
        .wait_for(WaitFor::command([
            "env",
            &format!("MYSQL_PWD={root}"),
            client,
            "--protocol=tcp",
            "-h127.0.0.1",
            &format!("-P{PORT}"),
            "-uroot",
            "--connect-timeout=2",
            "-e",
            "SELECT 1",
        ]))
        .startup_timeout(self.startup_timeout)
    }

    /// Starts the server and waits until it answers a query over TCP. The
    /// migrations are checked now and applied on the first fresh database.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] naming a migration that cannot be read, before
    /// anything is created; as [`ContainerSpec::start`];
    /// [`Error::ImageUnavailable`] when neither the official image nor the
    /// local one can be had; [`Error::NotReady`] with the server's last log
    /// lines when it does not answer within the startup timeout or exits.
    pub async fn start(self) -> Result<MysqlServer> {
        self.start_as(false).await
    }

    /// The server of this configuration shared by the process and the run,
    /// as with a [`SharedMysql`] — for code that cannot declare a `static`:
    /// `Mysql::new().migrations_dir("migrations").shared().await?.fresh_database().await?`.
    /// The same configuration gives the same server for as long as the
    /// process lives.
    ///
    /// # Errors
    ///
    /// As [`Mysql::start`].
    pub async fn shared(self) -> Result<&'static MysqlServer> {
        crate::shared::once_per_key(format!("mysql {self:?}"), || self.start_as(true)).await
    }

    /// Starts the server for this process alone, or — `shared` — creates
    /// or joins the run's server of this configuration.
    pub(super) async fn start_as(self, shared: bool) -> Result<MysqlServer> {
        on_engine(async move {
            // A typo in a path must create nothing.
            self.migrations.load_off_runtime().await?;
            let image = self.image.resolve::<image::Install, _>(local_image).await?;
            // The official MySQL image (`mysql:8`, `…/mysql-server:8`).
            let shown = format!("{image:?}");
            let mysql = shown.contains("mysql:") || shown.contains("mysql-server");
            let client = if mysql { "mysql" } else { "mariadb" };
            let spec = self.spec(image, mysql);
            let (container, (version, port, session)) =
                fixture::start(spec, shared, async |c| ready(c, &self, client).await).await?;
            Ok(MysqlServer {
                inner: Arc::new(Inner {
                    host: container.host().to_string(),
                    container,
                    port,
                    version,
                    client: client.into(),
                    user: self.user.clone(),
                    password: self.url_password(),
                    root_password: self.root_pw(),
                    migrations: self.migrations,
                    prefetch: self.prefetch,
                    templates: Mutex::default(),
                    session: tokio::sync::Mutex::new(Some(session)),
                    background: tokio::sync::Mutex::new(None),
                    dropper: tokio::sync::Mutex::new(None),
                    next: AtomicU64::new(1),
                    kept: AtomicBool::new(false),
                }),
            })
        })
        .await
    }
}

/// `VERSION()`, the published port, and the admin session (opened now, so
/// the first copy does not pay for it) of a server that answers; the URL
/// user granted the test databases.
async fn ready(c: &TestContainer, config: &Mysql, client: &str) -> Result<(String, u16, Session)> {
    let failed = |query: &str, why: String| Error::ExecFailed {
        container: c.name().to_string(),
        image: c.image().to_string(),
        command: format!("{client} -e '{query}'"),
        exit_code: 1,
        stderr_tail: why,
    };
    let mut session = Session::open(c, client, &config.root_pw()).await?;
    let mut run = async |query: &str| match session.run(query, ADMIN_TIMEOUT).await {
        Ok(rows) => Ok(rows),
        Err(session::Failure::Sql(why) | session::Failure::Ended(why)) => Err(failed(query, why)),
    };
    let version = run("SELECT VERSION()").await?.trim().to_string();
    let mut setup = String::from(
        "CREATE DATABASE IF NOT EXISTS testdock; \
         CREATE TABLE IF NOT EXISTS testdock.templates \
         (name VARCHAR(64) PRIMARY KEY, made TIMESTAMP DEFAULT CURRENT_TIMESTAMP)",
    );
    if config.user != "root" {
        // Every test database, by its prefix (`_` is a wildcard there).
        let user = lit(&config.user);
        for prefix in ["t\\_%", "tmpl\\_%"] {
            let _ = write!(setup, "; GRANT ALL ON `{prefix}`.* TO {user}@'%'");
        }
    }
    run(&setup).await?;
    tracing::info!(
        id = crate::trace::short(c.id()),
        name = c.name(),
        image = c.image(),
        version = %version,
        "mysql server ready"
    );
    Ok((version, c.host_port(PORT).await?, session))
}

/// A backquoted identifier.
fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A single-quoted string literal.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(ident("a`b"), "`a``b`");
        assert_eq!(lit("it's \\"), "'it''s \\\\'");
    }

    #[test]
    fn the_spec_is_tuned_for_tests() {
        let spec = Mysql::new().setting("sql_mode", "ANSI").spec("img", false);
        let cmd = spec.cmd.clone().unwrap();
        assert_eq!(cmd[0], "mariadbd");
        for s in [
            "--innodb-flush-log-at-trx-commit=0",
            "--sync-binlog=0",
            "--innodb-doublewrite=0",
            "--skip-log-bin",
            "--sql-mode=ANSI",
        ] {
            assert!(cmd.iter().any(|a| a == s), "{s} missing from {cmd:?}");
        }
        let mysql = Mysql::new().user("app").spec("mysql:8", true);
        assert_eq!(mysql.cmd.clone().unwrap()[0], "mysqld");
    }

    #[test]
    fn root_and_url_passwords() {
        let m = Mysql::new().password("pw");
        assert_eq!((m.root_pw(), m.url_password()), ("pw".into(), "pw".into()));
        let m = Mysql::new().user("app").password("pw");
        assert_eq!(
            (m.root_pw(), m.url_password()),
            ("root".into(), "pw".into())
        );
        let m = Mysql::new().user("app").password("pw").root_password("r");
        assert_eq!(m.root_pw(), "r");
    }
}
