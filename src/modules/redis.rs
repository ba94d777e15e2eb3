//! Redis for tests: one server per test run, and a logical database of its
//! own per test, leased in well under a millisecond.
//!
//! ```no_run
//! use testdock::redis::{Redis, SharedRedis};
//!
//! static REDIS: SharedRedis = SharedRedis::new(|| Redis::new());
//!
//! #[tokio::test]
//! #[ignore = "requires Docker"]
//! async fn caches_a_page() {
//!     let r = REDIS.fresh_db().await.unwrap(); // its own logical database
//!     let url = r.url(); // redis://127.0.0.1:PORT/N
//!     // connect with any client; the database is flushed and given back
//!     // when the test passes, kept and its URL printed when it fails
//! }
//! ```
//!
//! - The server is tuned for tests: no persistence (`--save ""`,
//!   `--appendonly no`), 1024 logical databases, protected mode off (the
//!   published port is reached from the host). It counts as ready once
//!   `redis-cli PING` in the container answers `PONG`.
//! - Database 0 is testdock's: it holds the leases. Tests get 1 and up.
//!   A lease is taken by a Lua script in the server, so it is atomic
//!   across every process sharing the server, and records its owner
//!   (session, pid and its start time, host); a lease whose owner died (a
//!   test killed by a timeout) is flushed and taken over when no database
//!   is free.
//! - When every database is leased by live processes, a new lease waits
//!   for one to be given back, saying so on stderr, for up to
//!   [`Redis::lease_wait`] (default 2 minutes), then fails with
//!   [`Error::Exhausted`]. One server with more databases beats a second
//!   server: raise [`Redis::databases`] (Redis allows thousands).
//! - The image is the official [`OFFICIAL_IMAGE`] where it is present or can
//!   be pulled, else one testdock makes from this machine's `redis-server`
//!   ([`local_image`]); [`Redis::image`] sets another.
//! - Commands run through one `redis-cli` kept running in the container:
//!   the crate has no Redis client of its own.

mod database;
mod image;
mod server;
mod session;
mod shared;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use super::fixture::{self, ImageChoice};
use crate::engine::on_engine;
use crate::{ContainerSpec, Error, Image, Result, TestContainer, WaitFor};

pub use database::TestRedisDb;
pub use image::{local_image, OFFICIAL_IMAGE};
use server::Inner;
pub use server::RedisServer;
use session::Cli;
pub use shared::SharedRedis;

/// The port the server listens on in the container.
const PORT: u16 = 6379;
/// One command through the session; far above the ~0.1 ms it takes.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A Redis server to start: image, number of logical databases, settings.
///
/// Defaults: the official image where it can be had, else [`local_image`];
/// 1024 logical databases (1023 for tests); no persistence; a lease waits
/// up to 2 minutes for a free database.
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> testdock::Result<()> {
/// use testdock::redis::Redis;
///
/// let server = Redis::new()
///     .databases(64)
///     .setting("maxmemory", "256mb")
///     .start()
///     .await?;
/// let db = server.fresh_db().await?;
/// println!("{}", db.url()); // redis://127.0.0.1:PORT/1
/// db.release().await?;
/// server.teardown().await?;
/// # Ok(()) }
/// ```
#[must_use = "a Redis does nothing until `.start()` is awaited"]
#[derive(Clone, Debug)]
pub struct Redis {
    image: ImageChoice,
    databases: u32,
    settings: Vec<(String, String)>,
    startup_timeout: Duration,
    lease_wait: Duration,
    /// The first bad input, reported by `start`.
    error: Option<String>,
}

impl Default for Redis {
    fn default() -> Self {
        Self::new()
    }
}

impl Redis {
    /// A server with the defaults.
    pub fn new() -> Self {
        Redis {
            image: ImageChoice::Default,
            databases: 1024,
            settings: Vec::new(),
            startup_timeout: Duration::from_secs(30),
            lease_wait: Duration::from_secs(120),
            error: None,
        }
    }

    /// Runs this image, which must start the server with the command
    /// `redis-server` and have `sh` and `redis-cli` (as the official
    /// images do). Any [`Image`]: `"redis:6"`, or a chain with
    /// [`Image::first_of`].
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

    /// How many logical databases the server has (`--databases`, default
    /// 1024): database 0 holds the leases, the others go to tests, so at
    /// most `n - 1` tests hold one at a time. At least 2.
    pub fn databases(mut self, n: u32) -> Self {
        if n < 2 && self.error.is_none() {
            self.error = Some(format!(
                "Redis::databases({n}): at least 2 are needed (database 0 holds the leases)"
            ));
        }
        self.databases = n;
        self
    }

    /// A server setting, passed as `--key value` (after testdock's own, so
    /// it wins): `.setting("maxmemory", "256mb")`.
    pub fn setting(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        let bad = key.is_empty() || key.starts_with('-') || key.contains(char::is_whitespace);
        if bad && self.error.is_none() {
            self.error = Some(format!(
                "Redis::setting({key:?}, ..): a setting's name is one word without leading dashes, \
                 as in redis.conf"
            ));
        }
        self.settings.push((key, value.into()));
        self
    }

    /// How long the server may take to answer `PING` (default 30 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// How long a new lease waits when every database is leased by live
    /// processes (default 2 minutes), before [`Error::Exhausted`].
    pub fn lease_wait(mut self, wait: Duration) -> Self {
        self.lease_wait = wait;
        self
    }

    /// The `redis-server` command line.
    fn command(&self) -> Vec<String> {
        let mut cmd: Vec<String> = vec!["redis-server".into()];
        let defaults = [
            ("save", String::new()),
            ("appendonly", "no".into()),
            ("databases", self.databases.to_string()),
            // The host reaches the published port from outside the
            // container's loopback, which protected mode refuses.
            ("protected-mode", "no".into()),
        ];
        let settings = defaults
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .chain(self.settings.iter().cloned());
        for (k, v) in settings {
            cmd.push(format!("--{k}"));
            cmd.push(v);
        }
        cmd
    }

    /// The container this server runs in.
    fn spec(&self, image: impl Into<Image>) -> ContainerSpec {
        ContainerSpec::new(image)
            .expose(PORT)
            .cmd(self.command())
            // A real PING and its PONG: a server still loading answers
            // `LOADING`, a closed port nothing.
            .wait_for(WaitFor::command([
                "sh",
                "-c",
                &format!("[ \"$(redis-cli -p {PORT} PING 2>&1)\" = PONG ]"),
            ]))
            .startup_timeout(self.startup_timeout)
    }

    /// Starts a server of this process's own and returns once it answers
    /// `PING`.
    ///
    /// # Errors
    ///
    /// Before anything is created, [`Error::InvalidSpec`] for a bad
    /// [`databases`](Redis::databases) count or [`setting`](Redis::setting)
    /// name. Then [`ContainerSpec::start`]'s errors, and
    /// [`Error::ImageUnavailable`] if no image can be had (official or
    /// local); [`Error::NotReady`], with the log's tail, if no `PONG` comes
    /// in time or the server exits (it does on an unknown setting).
    pub async fn start(self) -> Result<RedisServer> {
        self.start_as(false).await
    }

    /// The run's server of this configuration, started or joined once per
    /// process (a [`SharedRedis`] without the `static`, for code that
    /// cannot declare one): `Redis::new().shared().await?.fresh_db().await?`.
    /// Errors are [`Redis::start`]'s.
    pub async fn shared(self) -> Result<&'static RedisServer> {
        crate::shared::once_per_key(format!("{self:?}"), || self.start_as(true)).await
    }

    /// This process's own server, or (`shared`) the run's.
    pub(super) async fn start_as(self, shared: bool) -> Result<RedisServer> {
        if let Some(why) = &self.error {
            return Err(Error::InvalidSpec(why.clone()));
        }
        on_engine(async move {
            let image = self.image.resolve::<image::Install, _>(local_image).await?;
            let (container, (version, port, cli)) =
                fixture::start(self.spec(image), shared, ready).await?;
            Ok(RedisServer {
                inner: Arc::new(Inner {
                    host: container.host().to_string(),
                    container,
                    port,
                    version,
                    databases: self.databases,
                    lease_wait: self.lease_wait,
                    cli: session::Pipe::new(cli),
                    kept: AtomicBool::new(false),
                }),
            })
        })
        .await
    }
}

/// The server's version, the published port, and the session (opened now,
/// so the first lease does not pay for it) of a server that answers.
async fn ready(c: &TestContainer) -> Result<(String, u16, Cli)> {
    let mut cli = Cli::open(c).await?;
    let info = cli
        .run("INFO server")
        .await
        .map_err(|f| server::failed(c, "INFO server", f))?;
    let version = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    tracing::info!(
        id = crate::trace::short(c.id()),
        name = c.name(),
        image = c.image(),
        version = %version,
        "redis server ready"
    );
    Ok((version, c.host_port(PORT).await?, cli))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_is_tuned_for_tests_and_settings_come_last() {
        let cmd = Redis::new().setting("maxmemory", "64mb").command();
        let at = |a: &str| cmd.iter().position(|x| x == a).unwrap();
        assert_eq!(cmd[0], "redis-server");
        assert_eq!(cmd[at("--save") + 1], "");
        assert_eq!(cmd[at("--appendonly") + 1], "no");
        assert_eq!(cmd[at("--databases") + 1], "1024");
        assert_eq!(cmd[at("--protected-mode") + 1], "no");
        assert_eq!(cmd[at("--maxmemory") + 1], "64mb");
        assert!(at("--maxmemory") > at("--databases"));
        let spec = Redis::new().spec("img");
        assert_eq!(spec.ports, [PORT]);
    }

    #[test]
    fn bad_input_is_kept_for_start() {
        let e = Redis::new().databases(1).databases(8).error.unwrap();
        assert!(e.contains("databases(1)"), "{e}");
        let e = Redis::new().setting("--save", "").error.unwrap();
        assert!(e.contains("\"--save\""), "{e}");
        assert!(Redis::new().databases(2).error.is_none());
    }
}
