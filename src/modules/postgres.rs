//! PostgreSQL for tests: one server per test run, migrations applied once
//! into a template database, and a fresh database per test cloned from it
//! in milliseconds.
//!
//! ```no_run
//! use testdock::postgres::{Postgres, SharedPostgres};
//!
//! static PG: SharedPostgres = SharedPostgres::new(|| Postgres::new().migrations_dir("fixtures/sql"));
//!
//! #[tokio::test]
//! #[ignore = "requires Docker"]
//! async fn creates_user() {
//!     let db = PG.fresh_database().await.unwrap(); // its own database, schema applied
//!     let url = db.url(); // postgres://postgres:postgres@127.0.0.1:PORT/t_creates_user_…
//!     // connect with any client; the database is dropped when the test
//!     // passes and kept, its URL printed, when it fails
//! }
//! ```
//!
//! - The server is tuned for tests: `fsync`, `synchronous_commit` and
//!   `full_page_writes` off, data on a tmpfs, a 256 MiB `/dev/shm`, stopped
//!   by SIGINT (a fast shutdown). It counts as ready once a real query over
//!   TCP succeeds (the official image restarts once after its init).
//! - The image is the official [`OFFICIAL_IMAGE`] where it is present or can
//!   be pulled, else one testdock makes from this machine's PostgreSQL
//!   install ([`local_image`]); [`Postgres::image`] sets another.
//! - SQL runs through `psql` in the container: the crate has no PostgreSQL
//!   client of its own.

mod database;
mod image;
mod migrations;
mod prefetch;
mod server;
mod session;
mod shared;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use super::fixture::{self, ImageChoice};
use crate::engine::on_engine;
use crate::{ContainerSpec, Error, Image, Result, TestContainer, WaitFor};

use super::naming::Origin;
pub use crate::migrations::{Migrations, TemplateDb, TemplateKey};
pub use database::TestDatabase;
pub use image::{local_image, OFFICIAL_IMAGE};
use server::Inner;
pub use server::PostgresServer;
use session::Session;
pub use shared::SharedPostgres;

/// The port the server listens on in the container.
const PORT: u16 = 5432;
/// `PGDATA`, on a tmpfs; the official images' default too.
const DATA_DIR: &str = "/var/lib/postgresql/data";
/// The uid the official (Debian) image and testdock's own run the server
/// as; the tmpfs is mounted owned by it.
const SERVER_UID: u32 = 999;
/// Where migration scripts are copied in the container, one directory per
/// template, so psql reports a file and a line for an error.
const SQL_DIR: &str = "/tmp/testdock-sql";
/// How long an admin command waits for a free connection when the server
/// answers "too many clients".
const CONNECTION_WAIT: Duration = Duration::from_secs(30);
/// Creating or dropping one database; far above the ~15 ms it takes.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(60);

/// A PostgreSQL server to start: image, credentials, settings, migrations.
///
/// Defaults: user, password and admin database `postgres`; the official
/// image where it can be had, else [`local_image`]; `max_connections=200`;
/// no migrations.
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> testdock::Result<()> {
/// use testdock::postgres::Postgres;
///
/// let server = Postgres::new()
///     .migrations_dir("fixtures/sql")
///     .init_sql("CREATE EXTENSION IF NOT EXISTS pgcrypto")
///     .setting("log_min_duration_statement", "100")
///     .start()
///     .await?;
/// let db = server.fresh_database().await?;
/// println!("{}", db.url());
/// db.drop_now().await?;
/// server.teardown().await?;
/// # Ok(()) }
/// ```
#[must_use = "a Postgres does nothing until `.start()` is awaited"]
#[derive(Clone, Debug)]
pub struct Postgres {
    image: ImageChoice,
    user: String,
    password: String,
    database: String,
    migrations: Migrations,
    init_sql_count: usize,
    settings: Vec<(String, String)>,
    max_connections: u32,
    prefetch: usize,
    shm_size: u64,
    startup_timeout: Duration,
}

impl Default for Postgres {
    fn default() -> Self {
        Self::new()
    }
}

impl Postgres {
    /// A server with the defaults.
    pub fn new() -> Self {
        Postgres {
            image: ImageChoice::Default,
            user: "postgres".into(),
            password: "postgres".into(),
            database: "postgres".into(),
            migrations: Migrations::new(),
            init_sql_count: 0,
            settings: Vec::new(),
            max_connections: 200,
            prefetch: 8,
            shm_size: 256 << 20,
            startup_timeout: Duration::from_secs(60),
        }
    }

    /// Runs this image, which must follow the official image's contract
    /// (`POSTGRES_USER`, `POSTGRES_PASSWORD`, `POSTGRES_DB`, `PGDATA`, the
    /// server started by the command `postgres`). Any [`Image`]:
    /// `"postgres:15"`, or a chain with [`Image::first_of`].
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

    /// The superuser the URLs carry (`POSTGRES_USER`; default `postgres`).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = user.into();
        self
    }

    /// Its password (`POSTGRES_PASSWORD`; default `postgres`).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = password.into();
        self
    }

    /// The database testdock connects to to create and drop the others
    /// (`POSTGRES_DB`; default `postgres`).
    pub fn database(mut self, name: impl Into<String>) -> Self {
        self.database = name.into();
        self
    }

    /// Adds the migrations of `dir` — sqlx, refinery, diesel or plain SQL,
    /// told from its files (see [`Migrations::dir`]).
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

    /// Adds the user's own code — a migrator — to the migrations, run once
    /// per server (once per run when the server is shared run-wide) into
    /// the template database after the SQL given before it; see
    /// [`Migrations::code`]. `key` names the result: a version you bump, or
    /// [`TemplateKey::files`] over what the migrator reads.
    ///
    /// ```no_run
    /// # async fn run() -> testdock::Result<()> {
    /// use testdock::postgres::{Postgres, TemplateKey};
    ///
    /// let server = Postgres::new()
    ///     .template(TemplateKey::files(["migrations"]), |db| async move {
    ///         // e.g. sqlx: `sqlx::migrate!().run(&PgPool::connect(db.url()).await?).await`
    ///         let _ = db.url();
    ///         Ok::<(), std::io::Error>(())
    ///     })
    ///     .start()
    ///     .await?;
    /// let db = server.fresh_database().await?; // migrated, `_sqlx_migrations` and all
    /// # let _ = db; Ok(()) }
    /// ```
    pub fn template<F, Fut, E>(mut self, key: impl Into<TemplateKey>, make: F) -> Self
    where
        F: Fn(TemplateDb) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: Into<crate::BoxError>,
    {
        self.migrations = self.migrations.code(key, make);
        self
    }

    /// A server setting, passed as `-c key=value` (after testdock's own, so
    /// it wins).
    pub fn setting(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((key.into(), value.into()));
        self
    }

    /// The server's `max_connections` (default 200). testdock's own
    /// sessions take at most a tenth of them (one at least), and wait for a
    /// free slot when the server is full rather than fail.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// How many clones of each template a process may keep ready in the
    /// background (default 8; 0 turns prefetching off), so
    /// [`fresh_database`](PostgresServer::fresh_database) hands one over
    /// (no round trip) or renames the server's spare (one) instead of
    /// copying the template (~15–30 ms). A template gets one spare in the
    /// server after its first use, and a process that takes a second
    /// database keeps as many of its own as it took, up to this bound; see
    /// the README's "Prefetched clones".
    pub fn prefetch(mut self, clones: usize) -> Self {
        self.prefetch = clones;
        self
    }

    /// Size of `/dev/shm`, in bytes (default 256 MiB; Docker's 64 MiB
    /// breaks parallel hash joins).
    pub fn shm_size(mut self, bytes: u64) -> Self {
        self.shm_size = bytes;
        self
    }

    /// How long the server may take to answer a query (default 60 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// The container this server runs in.
    fn spec(&self, image: impl Into<Image>) -> ContainerSpec {
        let mut cmd: Vec<String> = vec!["postgres".into()];
        let defaults = [
            ("fsync", "off".to_string()),
            ("synchronous_commit", "off".into()),
            ("full_page_writes", "off".into()),
            ("listen_addresses", "*".into()),
            ("max_connections", self.max_connections.to_string()),
        ];
        let settings = defaults
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .chain(self.settings.iter().cloned());
        for (k, v) in settings {
            cmd.push("-c".into());
            cmd.push(format!("{k}={v}"));
        }
        ContainerSpec::new(image)
            .env("POSTGRES_USER", &self.user)
            .env("POSTGRES_PASSWORD", &self.password)
            .env("POSTGRES_DB", &self.database)
            .env("PGDATA", DATA_DIR)
            // A tmpfs takes the directory's mode but not its owner.
            .tmpfs(
                DATA_DIR,
                format!("uid={SERVER_UID},gid={SERVER_UID},mode=0700"),
            )
            .shm_size(self.shm_size)
            // SIGTERM is a "smart" shutdown that waits for clients.
            .stop_signal("SIGINT")
            .expose(PORT)
            .cmd(cmd)
            // A real query over TCP: the official image's first server,
            // during init, listens on no TCP port and is then restarted.
            .wait_for(WaitFor::command([
                "env",
                "PGSSLMODE=disable",
                "PGGSSENCMODE=disable",
                "PGCONNECT_TIMEOUT=2",
                &format!("PGPASSWORD={}", self.password),
                "psql",
                "-X",
                "-w",
                "-A",
                "-t",
                "-h",
                "127.0.0.1",
                "-U",
                &self.user,
                "-d",
                &self.database,
                "-c",
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
    /// [`Error::ImageUnavailable`] when neither
    /// the official image nor the local one can be had;
    /// [`Error::NotReady`] with the server's last log lines when it does
    /// not answer within the startup timeout or exits;
    /// [`Error::InvalidSpec`] when the image's psql is older than 11 (the
    /// container is removed first).
    pub async fn start(self) -> Result<PostgresServer> {
        self.start_as(false).await
    }

    /// The server of this configuration shared by the process and the run,
    /// as with a [`SharedPostgres`] — for code that cannot declare a
    /// `static`, such as a per-test attribute macro:
    /// `Postgres::new().migrations_dir("migrations").shared().await?.fresh_database().await?`.
    /// The same configuration gives the same server for as long as the
    /// process lives.
    ///
    /// # Errors
    ///
    /// As [`Postgres::start`].
    pub async fn shared(self) -> Result<&'static PostgresServer> {
        crate::shared::once_per_key(format!("{self:?}"), || self.start_as(true)).await
    }

    /// Starts the server for this process alone, or — `shared` — creates
    /// or joins the run's server of this configuration.
    pub(super) async fn start_as(self, shared: bool) -> Result<PostgresServer> {
        on_engine(async move {
            // A typo in a path must create nothing.
            self.migrations.load_off_runtime().await?;
            let image = self.image.resolve::<image::Install, _>(local_image).await?;
            let spec = self.spec(image);
            let (container, (version, port, session)) =
                fixture::start(spec, shared, async |c| ready(c, &self).await).await?;
            Ok(PostgresServer {
                inner: Arc::new(Inner {
                    host: container.host().to_string(),
                    container,
                    port,
                    version,
                    user: self.user,
                    password: self.password,
                    admin_db: self.database,
                    migrations: self.migrations,
                    templates: Mutex::default(),
                    read: Mutex::default(),
                    session: tokio::sync::Mutex::new(Some(session)),
                    claimers: Default::default(),
                    claim_sessions: (self.max_connections as usize / 10)
                        .saturating_sub(1)
                        .min(2),
                    claims: Default::default(),
                    pools: Mutex::default(),
                    prefetch: self.prefetch,
                    admin: Semaphore::new((self.max_connections as usize / 10).max(1)),
                    next: AtomicU64::new(1),
                    kept: AtomicBool::new(false),
                }),
            })
        })
        .await
    }
}

/// `server_version_num`, the published port, and the admin session (opened
/// now, so the first clone does not pay for it) of a server that answers.
async fn ready(c: &TestContainer, config: &Postgres) -> Result<(u32, u16, Session)> {
    let query = "SHOW server_version_num";
    let failed = |why: String| Error::ExecFailed {
        container: c.name().to_string(),
        image: c.image().to_string(),
        command: format!("psql -c '{query}'"),
        exit_code: 1,
        stderr_tail: why,
    };
    let mut session = Session::open(c.id(), &config.user, &config.database).await?;
    let answer = tokio::time::timeout(ADMIN_TIMEOUT, session.run(query))
        .await
        .unwrap_or_else(|_| Err(session::Failure::Ended("no answer".into())));
    let version = match answer {
        Ok(rows) => rows
            .trim()
            .parse()
            .map_err(|_| failed(format!("not a version: {rows:?}")))?,
        Err(session::Failure::Sql(why) | session::Failure::Ended(why)) => return Err(failed(why)),
        Err(session::Failure::Unsupported(why)) => {
            return Err(Error::InvalidSpec(format!("image {}: {why}", c.image())))
        }
    };
    tracing::info!(
        id = crate::trace::short(c.id()),
        name = c.name(),
        image = c.image(),
        version,
        "postgres server ready"
    );
    Ok((version, c.host_port(PORT).await?, session))
}

/// A double-quoted SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_credentials() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn the_spec_is_tuned_for_tests() {
        let spec = Postgres::new().setting("work_mem", "8MB").spec("img");
        let cmd = spec.cmd.clone().unwrap();
        for s in [
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
            "work_mem=8MB",
        ] {
            assert!(cmd.iter().any(|a| a == s), "{s} missing from {cmd:?}");
        }
        assert_eq!(spec.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(spec.shm_size, Some(256 << 20));
        assert_eq!(spec.tmpfs[0].0, DATA_DIR);
        assert!(spec.tmpfs[0].1.contains("uid=999,gid=999"));
        assert_eq!(spec.ports, [PORT]);
    }
}
