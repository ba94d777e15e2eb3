//! `SharedRedis`: one server per test run, a logical database per test.

use tokio::sync::OnceCell;

use super::{Inner, Redis, RedisServer, TestRedisDb};
use crate::engine::on_engine;
use crate::Result;

/// One Redis server per test run, started on first use and shared by every
/// test of every process of the run; each test leases its own logical
/// database from it.
///
/// Put it in a `static`. It is removed when the run ends, however it ends;
/// with no runner (or `TESTDOCK_SHARE=process`) it is the process's and
/// goes at its exit. See [`SharedContainer`](crate::SharedContainer) and
/// the README's "Sharing".
///
/// If the start fails, that caller gets the error and the next caller tries
/// again.
///
/// # Examples
///
/// ```no_run
/// use testdock::redis::{Redis, SharedRedis};
///
/// static REDIS: SharedRedis = SharedRedis::new(|| Redis::new());
///
/// # async fn a_test() -> testdock::Result<()> {
/// let r = REDIS.fresh_db().await?;
/// let url = r.url(); // redis://127.0.0.1:PORT/N
/// # let _ = url; Ok(()) }
/// ```
#[derive(Debug)]
pub struct SharedRedis {
    config: fn() -> Redis,
    cell: OnceCell<RedisServer>,
}

impl SharedRedis {
    /// A shared server configured by `config` on first use.
    pub const fn new(config: fn() -> Redis) -> Self {
        SharedRedis {
            config,
            cell: OnceCell::const_new(),
        }
    }

    /// The server, started by the first caller; concurrent first callers
    /// wait for that one start.
    ///
    /// # Errors
    ///
    /// As [`Redis::start`].
    pub async fn server(&self) -> Result<&RedisServer> {
        self.cell
            .get_or_try_init(|| (self.config)().start_as(true))
            .await
    }

    /// A logical database of its own for the calling test. See
    /// [`TestRedisDb`].
    ///
    /// # Errors
    ///
    /// As [`Redis::start`] and [`RedisServer::fresh_db`].
    pub async fn fresh_db(&self) -> Result<TestRedisDb> {
        let inner = self.server().await?.inner.clone();
        on_engine(Inner::fresh(inner)).await
    }
}
