//! `RedisServer`: a running server, and the leases of its logical
//! databases, kept in database 0 and taken by Lua scripts so that they
//! are atomic across every process sharing the server.

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::session::{self, quote, Failure, Pipe};
use super::TestRedisDb;
use crate::engine::on_engine;
use crate::session::{liveness, process_start_ticks, Liveness};
use crate::{Error, Result, TestContainer};

/// The hash in database 0: database number → owner.
const LEASES: &str = "testdock:leases";

/// Takes the lowest free database: `HSETNX` is the lease. ARGV: owner,
/// number of databases. Returns the number, or 0 when all are leased.
const LEASE: &str = "for i = 1, tonumber(ARGV[2]) - 1 do \
     if redis.call('HSETNX', KEYS[1], i, ARGV[1]) == 1 then return i end \
     end return 0";

/// Flushes a database and gives it back, if `owner` still holds it. ARGV:
/// number, owner. A script's `SELECT` is its own: the caller stays on 0.
const RELEASE: &str = "if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end \
     redis.call('SELECT', tonumber(ARGV[1])) redis.call('FLUSHDB') redis.call('SELECT', 0) \
     redis.call('HDEL', KEYS[1], ARGV[1]) return 1";

/// Takes over a dead owner's database, flushed, if the dead one still holds
/// it (another process may have been first). ARGV: number, dead owner,
/// new owner.
const RECLAIM: &str = "if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end \
     redis.call('SELECT', tonumber(ARGV[1])) redis.call('FLUSHDB') redis.call('SELECT', 0) \
     redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) return 1";

/// How often a lease that found none free looks again.
const POLL: Duration = Duration::from_millis(25);

/// A running Redis server; removed when the guard and every
/// [`TestRedisDb`] leased from it are gone, or by
/// [`teardown`](RedisServer::teardown).
#[derive(Debug)]
pub struct RedisServer {
    pub(super) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) container: TestContainer,
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) version: String,
    pub(super) databases: u32,
    pub(super) lease_wait: Duration,
    /// The redis-cli session, opened again if it ends.
    pub(super) cli: Pipe,
    /// Whether the container was marked kept for a failing test.
    pub(super) kept: AtomicBool,
}

impl RedisServer {
    /// Its container (logs, exec, stats).
    pub fn container(&self) -> &TestContainer {
        &self.inner.container
    }

    /// The host this process reaches it at (`127.0.0.1` for a local engine).
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// The host port 6379 is published on.
    pub fn port(&self) -> u16 {
        self.inner.port
    }

    /// The server's version, e.g. `7.0.15`.
    pub fn version(&self) -> &str {
        &self.inner.version
    }

    /// How many logical databases it has, database 0 (the leases') included.
    pub fn databases(&self) -> u32 {
        self.inner.databases
    }

    /// `redis://host:port/number`.
    pub fn url(&self, number: u32) -> String {
        self.inner.url(number)
    }

    /// A logical database of its own for the calling test, empty. See
    /// [`TestRedisDb`]. When all are leased by live processes it waits for
    /// one (saying so on stderr) up to [`Redis::lease_wait`](super::Redis::lease_wait).
    ///
    /// # Errors
    ///
    /// [`Error::Exhausted`] when none came free in time;
    /// [`Error::ExecFailed`] if the server cannot be reached.
    pub fn fresh_db(&self) -> impl Future<Output = Result<TestRedisDb>> + Send + 'static {
        let inner = self.inner.clone();
        on_engine(async move { Inner::fresh(inner).await })
    }

    /// The numbers of the databases leased now, by any process, sorted.
    ///
    /// # Errors
    ///
    /// [`Error::ExecFailed`] if the server cannot be reached.
    pub async fn leased(&self) -> Result<Vec<u32>> {
        let inner = self.inner.clone();
        let leases = on_engine(async move { inner.leases().await }).await?;
        let mut numbers: Vec<u32> = leases.into_iter().map(|(n, _)| n).collect();
        numbers.sort_unstable();
        Ok(numbers)
    }

    /// Runs one command line with `redis-cli` in the container, on
    /// database 0 unless it selects another (`-n`-less; arguments split by
    /// spaces, `"…"` quoted), and returns what redis-cli printed.
    ///
    /// # Errors
    ///
    /// [`Error::ExecFailed`] with the server's error.
    pub async fn command(&self, line: impl Into<String>) -> Result<String> {
        let (inner, line) = (self.inner.clone(), line.into());
        on_engine(async move { inner.run(&line).await }).await
    }

    /// Removes the container, awaited; leased databases go with it (their
    /// guards then find nothing to give back). Fails with [`Error::Docker`]
    /// if the engine refuses.
    pub async fn teardown(self) -> Result<()> {
        super::fixture::teardown(self.inner, |i| i.container, |i| &i.container).await
    }
}

impl Inner {
    pub(super) fn url(&self, number: u32) -> String {
        format!("redis://{}:{}/{number}", self.host, self.port)
    }

    pub(super) async fn fresh(this: Arc<Inner>) -> Result<TestRedisDb> {
        let t0 = Instant::now();
        let (number, owner) = this.lease().await?;
        tracing::debug!(
            database = number,
            server = this.container.name(),
            elapsed_ms = crate::trace::ms(t0),
            "redis database leased"
        );
        Ok(TestRedisDb {
            url: this.url(number),
            number,
            owner,
            server: this,
            armed: true,
        })
    }

    /// A free database, else a dead owner's, else — after waiting up to
    /// `lease_wait` — an error naming who holds them.
    async fn lease(&self) -> Result<(u32, String)> {
        let me = owner();
        let lease = format!(
            "EVAL {} 1 {LEASES} {} {}",
            quote(LEASE),
            quote(&me),
            self.databases
        );
        let deadline = Instant::now() + self.lease_wait;
        let mut said = false;
        loop {
            let n = self.integer(&lease).await?;
            if n > 0 {
                return Ok((n as u32, me));
            }
            let leases = self.leases().await?;
            for (n, holder) in &leases {
                if verdict(holder) != Holder::Dead {
                    continue;
                }
                let reclaim = format!(
                    "EVAL {} 1 {LEASES} {n} {} {}",
                    quote(RECLAIM),
                    quote(holder),
                    quote(&me)
                );
                if self.integer(&reclaim).await? == 1 {
                    tracing::info!(
                        database = n,
                        dead_owner = %holder,
                        server = self.container.name(),
                        "took over a dead process's redis database"
                    );
                    return Ok((*n, me));
                }
            }
            let holders = holders(&leases);
            if Instant::now() >= deadline {
                return Err(Error::Exhausted {
                    what: format!(
                        "logical databases of redis server {}",
                        self.container.name()
                    ),
                    capacity: self.databases.saturating_sub(1) as usize,
                    waited: self.lease_wait,
                    holders,
                });
            }
            if !said {
                said = true;
                crate::progress::say(format!(
                    "all {} logical databases of redis server {} are leased ({holders}); \
                     waiting up to {} s for one to be given back (Redis::databases raises the \
                     number)",
                    self.databases.saturating_sub(1),
                    self.container.name(),
                    self.lease_wait.as_secs()
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Flushes `number` and gives it back, if `owner` still holds it.
    pub(super) async fn release(&self, number: u32, owner: &str) -> Result<()> {
        let release = format!(
            "EVAL {} 1 {LEASES} {number} {}",
            quote(RELEASE),
            quote(owner)
        );
        self.integer(&release).await.map(drop)
    }

    /// Every lease: number and owner.
    async fn leases(&self) -> Result<Vec<(u32, String)>> {
        let all = self.run(&format!("HGETALL {LEASES}")).await?;
        let items = session::strings(&all);
        Ok(items
            .chunks(2)
            .filter_map(|kv| Some((kv.first()?.parse().ok()?, kv.get(1)?.clone())))
            .collect())
    }

    async fn integer(&self, line: &str) -> Result<i64> {
        let answer = self.run(line).await?;
        session::integer(&answer)
            .ok_or_else(|| self.failed(line, format!("not an integer: {answer:?}")))
    }

    /// Runs a command through the session, opening it again once if
    /// redis-cli ended.
    async fn run(&self, line: &str) -> Result<String> {
        match self.cli.run(&self.container, line).await? {
            Ok(answer) => Ok(answer),
            Err(Failure::Reply(why) | Failure::Ended(why)) => Err(self.failed(line, why)),
        }
    }

    fn failed(&self, line: &str, why: String) -> Error {
        failed(&self.container, line, Failure::Ended(why))
    }
}

/// A command's failure, worded as `redis-cli` in the container would have
/// ended.
pub(super) fn failed(c: &TestContainer, line: &str, f: Failure) -> Error {
    let why = match f {
        Failure::Reply(why) | Failure::Ended(why) => why,
    };
    Error::ExecFailed {
        container: c.name().to_string(),
        image: c.image().to_string(),
        command: format!("redis-cli {line}"),
        exit_code: 1,
        stderr_tail: why,
    }
}

/// This process as a lease's owner: `session|pid|start ticks|host|pid
/// namespace`, enough to tell from any process of the machine whether it
/// still lives.
fn owner() -> String {
    let pid = std::process::id();
    format!(
        "{}|{pid}|{}|{}|{}",
        crate::session_id(),
        process_start_ticks(pid).unwrap_or(0),
        crate::session::hostname(),
        crate::session::pid_namespace().unwrap_or("")
    )
}

#[derive(Debug, PartialEq, Eq)]
enum Holder {
    Mine,
    Alive,
    Dead,
    /// Another machine's or another pid namespace's process, or one that
    /// cannot be told: never taken from.
    Unknown,
}

fn verdict(holder: &str) -> Holder {
    verdict_in(
        holder,
        crate::session_id(),
        crate::session::hostname(),
        crate::session::pid_namespace().unwrap_or(""),
        liveness,
    )
}

fn verdict_in(
    holder: &str,
    session: &str,
    host: &str,
    ns: &str,
    alive: impl Fn(u32) -> Liveness,
) -> Holder {
    let parts: Vec<&str> = holder.split('|').collect();
    let [s, pid, start, h, n] = parts[..] else {
        return Holder::Unknown;
    };
    if s == session {
        return Holder::Mine;
    }
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return Holder::Unknown;
    };
    if h != host || n != ns || ns.is_empty() {
        return Holder::Unknown;
    }
    match alive(pid) {
        Liveness::Gone => Holder::Dead,
        // The pid was reused by another process.
        Liveness::Alive(t) if start != 0 && t != start => Holder::Dead,
        Liveness::Alive(_) => Holder::Alive,
        Liveness::Unknown => Holder::Unknown,
    }
}

/// Who holds the leases, for a message: `3 by this process, 2 by pid 4242`.
fn holders(leases: &[(u32, String)]) -> String {
    let mut by: Vec<(String, usize)> = Vec::new();
    for (_, holder) in leases {
        let who = match verdict(holder) {
            Holder::Mine => "this process".to_string(),
            _ => match holder.split('|').nth(1) {
                Some(pid) => format!("pid {pid}"),
                None => "an unknown owner".to_string(),
            },
        };
        match by.iter_mut().find(|(w, _)| *w == who) {
            Some((_, n)) => *n += 1,
            None => by.push((who, 1)),
        }
    }
    if by.is_empty() {
        return "no lease is recorded".into();
    }
    by.iter()
        .map(|(who, n)| format!("{n} by {who}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_is_dead_only_when_its_process_is_gone_on_this_machine() {
        let alive = |pid: u32| match pid {
            10 => Liveness::Alive(500),
            11 => Liveness::Gone,
            _ => Liveness::Unknown,
        };
        let v = |h: &str| verdict_in(h, "me", "box", "ns", alive);
        assert_eq!(v("me|10|500|box|ns"), Holder::Mine);
        assert_eq!(v("s|10|500|box|ns"), Holder::Alive);
        assert_eq!(v("s|10|499|box|ns"), Holder::Dead, "pid reused");
        assert_eq!(v("s|11|500|box|ns"), Holder::Dead);
        assert_eq!(v("s|11|500|other|ns"), Holder::Unknown, "another host");
        assert_eq!(v("s|11|500|box|ns2"), Holder::Unknown, "another namespace");
        assert_eq!(v("s|12|500|box|ns"), Holder::Unknown);
        assert_eq!(v("garbage"), Holder::Unknown);
    }

    #[test]
    fn the_owner_names_this_process() {
        let me = owner();
        assert_eq!(verdict(&me), Holder::Mine);
        assert_eq!(me.split('|').nth(1), Some(&*std::process::id().to_string()));
        assert!(!me.contains('"') && !me.contains('\n'), "{me}");
    }
}
