//! `TestRedisDb`: one test's logical database, flushed and given back when
//! the test passes, kept when it fails.

use std::sync::Arc;

use super::Inner;
use crate::engine::on_engine;
use crate::modules::fixture;
use crate::Result;

/// A logical database of its own for one test, leased from a
/// [`RedisServer`](super::RedisServer) and empty when handed out.
///
/// No other process sharing the server is given it while it is leased.
/// When the guard goes away:
/// - the test passed: the database is flushed (`FLUSHDB`, never
///   `FLUSHALL`) and given back (queued on testdock's runtime; `Drop` never
///   blocks and never panics);
/// - the test is failing (the thread is panicking): it is kept, leased,
///   and its number and URL printed beside the failure. With
///   `TESTDOCK_KEEP=on-failure` the server's container is kept too, so the
///   URL still works after the test binary has exited. A kept database is
///   taken over (flushed first) only once its process has exited and no
///   other database is free.
///
/// [`release`](TestRedisDb::release) gives it back now and reports errors.
#[must_use = "dropping a TestRedisDb gives the database back; bind it: `let r = REDIS.fresh_db().await?`"]
#[derive(Debug)]
pub struct TestRedisDb {
    pub(super) number: u32,
    pub(super) url: String,
    pub(super) owner: String,
    pub(super) server: Arc<Inner>,
    pub(super) armed: bool,
}

impl TestRedisDb {
    /// The logical database's number, for `SELECT` (1 and up).
    pub fn number(&self) -> u32 {
        self.number
    }

    /// `redis://127.0.0.1:PORT/N`, for any client.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's host as this process reaches it (`127.0.0.1` for a
    /// local engine), for a client configured by parts.
    pub fn host(&self) -> &str {
        &self.server.host
    }

    /// The host port the server's 6379 is published on.
    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// Flushes the database and gives it back now.
    ///
    /// # Errors
    ///
    /// [`Error::ExecFailed`](crate::Error::ExecFailed) if the server cannot be reached.
    pub async fn release(mut self) -> Result<()> {
        self.armed = false;
        let (server, n, owner) = (self.server.clone(), self.number, self.owner.clone());
        on_engine(async move { server.release(n, &owner).await }).await
    }
}

impl Drop for TestRedisDb {
    fn drop(&mut self) {
        if !self.armed || !fixture::goes_on_drop(|| self.report_kept()) {
            return;
        }
        let (server, n, owner) = (self.server.clone(), self.number, self.owner.clone());
        fixture::queue(format!("give back redis database {n}"), async move {
            server.release(n, &owner).await
        });
    }
}

impl TestRedisDb {
    fn report_kept(&self) {
        let what = format_args!("redis database {}", self.number);
        let s = &self.server;
        fixture::report_kept(what, &self.url, &s.container, &s.kept);
    }
}
