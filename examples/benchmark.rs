//! testdock against raw bollard: the same work, interleaved, on the same image.
//!
//! ```sh
//! cargo run --release --example benchmark              # full run, 2–3 min
//! cargo run --release --example benchmark -- --mysql   # the MariaDB rows only
//! cargo run --release --example benchmark -- --quick   # 3–5 iterations, ~15 s, for CI
//! TESTDOCK_BENCH_QUICK=1 cargo run --release --example benchmark
//! TESTDOCK_BENCH_ONLY=templates cargo run --release --example benchmark   # realistic-schema rows only
//! ```
//!
//! Needs a Docker engine and nothing else: the image is packed from this
//! machine's binaries by [`HostImage::shell`], and both sides use its
//! reference, so neither pays for resolving or building it.
//!
//! # What is measured
//!
//! Each testdock measurement has a raw counterpart written with the fewest
//! bollard calls that do the same work: `create_container`,
//! `start_container`, `create_exec`, `start_exec` (drained), `inspect_exec`,
//! `remove_container` (forced). Iterations alternate between the two sides,
//! and which side goes first alternates too, so drift in a noisy machine
//! affects both alike.
//!
//! | row | testdock | raw |
//! | --- | --- | --- |
//! | exec round trip | `c.exec(["echo", "hello"])` | create, start, drain, inspect exec |
//! | lifecycle | `start` + exec + `teardown().await` | create + start + exec + remove |
//! | start / exec / teardown | the phases of that lifecycle | the same phases |
//! | lifecycle as a test sees it | `start` + exec + `drop` | as the lifecycle |
//! | start+exec (removal overlaps) | its phases, beside the queued removal | the same phases, alone |
//! | `drop(guard)` returns | how long `drop` blocks | the awaited remove |
//! | 16 parallel lifecycles | wall time of 16 at once (4 when quick) | the same |
//! | per-test PostgreSQL database | `fresh_database()` + dropping its guard | `psql -c` execs: `CREATE DATABASE … TEMPLATE`, `DROP DATABASE` |
//! | create | `fresh_database()` | the `CREATE DATABASE` exec |
//! | fresh db, prefetch, N takers | `fresh_database()` with ready clones, N tasks at once | `#[sqlx::test]`'s way: `CREATE DATABASE` + the migrations, from the host |
//! | no prefetch, N takers | `fresh_database()` with `.prefetch(0)` | the same |
//! | clone FILE_COPY/WAL_LOG | `CREATE DATABASE … STRATEGY FILE_COPY` | `… STRATEGY WAL_LOG` |
//! | per-test Redis database, 1 and 8 takers | `fresh_db()` (its guard dropped) | a server container per test: create, start, `redis-cli PING` execs until `PONG` |
//!
//! The realistic-schema rows (`examples/bench/templates.rs`) use
//! `fixtures/migrations/realistic`: 24 tables with indexes and foreign
//! keys, a view, a trigger and seed rows.
//! | MariaDB db, prefetch/no prefetch, 1 or 8 takers | `fresh_database()` (prefetch on, or `prefetch(0)`) | `CREATE DATABASE` and the migrations from a host client, as `#[sqlx::test]` does |
//!
//! The database rows share one server, started once (untimed) from the
//! image [`Postgres`] makes of this machine's PostgreSQL install; without
//! one they are skipped, saying why. A dropped database guard queues its
//! `DROP DATABASE` on the same psql session, so the next clone waits for
//! it and the testdock figure includes it. The Redis rows share one
//! server too (1024 logical databases, leased through one `redis-cli`
//! session); the raw side starts one per test from the same image.
//!
//! "As a test sees it" runs in blocks of iterations per side: the removal a
//! `drop` queues overlaps the next testdock iteration, as it would the next
//! test, and is waited out (untimed) before the raw block, so it never slows
//! the raw side.
//!
//! Targets are judged on medians. Nothing here asserts on timings: the
//! numbers are printed, and the run fails only if a command's output is
//! wrong or Docker refuses.
//!
//! Every container carries `testdock.managed=true` and this process's
//! `testdock.session`, raw ones included, so leak checks see them; raw ones
//! are removed as they go and swept again at the end, whatever happened.

use std::collections::HashMap;
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use testdock::bollard;
use testdock::bollard::container::LogOutput;
use testdock::bollard::exec::StartExecResults;
use testdock::bollard::models::{ContainerCreateBody, ExecConfig};
use testdock::bollard::query_parameters::{
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use testdock::postgres::{Postgres, PostgresServer};
use testdock::redis::Redis;
use testdock::{ContainerSpec, HostImage, LABEL_EXPIRES, LABEL_MANAGED, LABEL_PID, LABEL_SESSION};

#[path = "bench/templates.rs"]
mod templates;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;

/// Tells the two sides' containers apart when waiting and sweeping.
const SIDE: &str = "benchmark.side";
/// The exec both sides run.
const HELLO: [&str; 2] = ["echo", "hello"];
/// What keeps a container up between execs.
const SLEEP: [&str; 2] = ["sleep", "infinity"];
/// Longest wait for queued removals, between blocks and at the end.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// How much of each measurement to do.
#[derive(Clone, Copy, Debug)]
struct Plan {
    quick: bool,
    exec: usize,
    lifecycle: usize,
    /// Iterations of "as a test sees it", per side, in blocks of `block`.
    visible: usize,
    block: usize,
    parallel_rounds: usize,
    parallel_width: usize,
    /// Per-test databases, per side.
    databases: usize,
    /// MariaDB databases per side at one taker; rounds of eight takers.
    mysql: usize,
    mysql_rounds: usize,
    /// Only the MariaDB rows.
    only_mysql: bool,
}

impl Plan {
    fn from_args() -> Result<Self> {
        let mut quick = std::env::var("TESTDOCK_BENCH_QUICK")
            .is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
        let mut only_mysql = false;
        for arg in std::env::args().skip(1) {
            match arg.as_str() {
                "--quick" => quick = true,
                "--mysql" => only_mysql = true,
                _ => {
                    return Err(format!(
                        "unknown argument `{arg}`; usage: benchmark [--quick] [--mysql]"
                    )
                    .into())
                }
            }
        }
        let plan = if quick {
            // Proves every path works; a lifecycle is ~0.3 s, so keep them few.
            Plan {
                quick,
                exec: 5,
                lifecycle: 3,
                visible: 3,
                block: 3,
                parallel_rounds: 1,
                parallel_width: 4,
                databases: 3,
                mysql: 5,
                mysql_rounds: 1,
                only_mysql,
            }
        } else {
            // Blocks of 5: four in five drops overlap a following iteration,
            // as in a suite, and the sides still alternate every few seconds.
            // Six parallel rounds, as four proved too noisy on a busy host.
            Plan {
                quick,
                exec: 100,
                lifecycle: 20,
                visible: 40,
                block: 5,
                parallel_rounds: 6,
                parallel_width: 16,
                databases: 40,
                mysql: 40,
                mysql_rounds: 6,
                only_mysql,
            }
        };
        Ok(plan)
    }
}

#[derive(Clone, Copy, Debug)]
enum Side {
    Testdock,
    Raw,
}

/// Both sides once, the first one alternating with `i`.
fn order(i: usize) -> [Side; 2] {
    if i.is_multiple_of(2) {
        [Side::Testdock, Side::Raw]
    } else {
        [Side::Raw, Side::Testdock]
    }
}

/// Durations of one kind, for median and p90.
#[derive(Clone, Debug, Default)]
struct Samples(Vec<Duration>);

impl Samples {
    fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    /// Nearest-rank percentile: with few samples p90 is simply the largest.
    fn percentile(&self, p: f64) -> Duration {
        let mut v = self.0.clone();
        v.sort_unstable();
        if v.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    }

    fn median(&self) -> Duration {
        self.percentile(50.0)
    }

    fn p90(&self) -> Duration {
        self.percentile(90.0)
    }
}

/// What issue #7 asks of a row.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// testdock median at most this multiple of raw's.
    Ratio(f64),
    /// testdock median below this, whatever raw does.
    Below(Duration),
    /// testdock median below this and at most this multiple of raw's.
    BelowAndRatio(Duration, f64),
    /// Shown for diagnosis only.
    None,
}

impl Target {
    fn describe(self) -> String {
        match self {
            Target::Ratio(r) => format!("≤ {r:.2}×"),
            Target::Below(d) => format!("< {}", fmt_duration(d)),
            Target::BelowAndRatio(d, r) => format!("≤ {}, ≤ {r:.2}×", fmt_duration(d)),
            Target::None => "—".into(),
        }
    }

    fn met(self, testdock: Duration, raw: Duration) -> Option<bool> {
        match self {
            Target::Ratio(r) => Some(ratio(testdock, raw) <= r),
            Target::Below(d) => Some(testdock < d),
            Target::BelowAndRatio(d, r) => Some(testdock <= d && ratio(testdock, raw) <= r),
            Target::None => None,
        }
    }
}

/// One line of the table.
#[derive(Debug)]
struct Row {
    name: String,
    testdock: Samples,
    raw: Samples,
    target: Target,
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(f64::MIN_POSITIVE)
}

fn fmt_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 10_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else if us < 1_000_000.0 {
        format!("{:.1} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<32} {:>10} {:>10} {:>10} {:>10} {:>7}  {:<9} result",
        "measurement", "td median", "raw median", "td p90", "raw p90", "ratio", "target"
    );
    for r in rows {
        let (td, raw) = (r.testdock.median(), r.raw.median());
        let result = match r.target.met(td, raw) {
            Some(true) => "met",
            Some(false) => "NOT MET",
            None => "",
        };
        println!(
            "{:<32} {:>10} {:>10} {:>10} {:>10} {:>6.2}×  {:<9} {}",
            r.name,
            fmt_duration(td),
            fmt_duration(raw),
            fmt_duration(r.testdock.p90()),
            fmt_duration(r.raw.p90()),
            ratio(td, raw),
            r.target.describe(),
            result
        );
    }
}

/// Runs `fut` and says how long it took.
async fn timed<F: IntoFuture>(fut: F) -> (F::Output, Duration) {
    let t = Instant::now();
    let out = fut.await;
    (out, t.elapsed())
}

/// stdout, stderr, exit code: what both sides must agree on.
type Output = (Vec<u8>, Vec<u8>, i64);

/// The benchmark measures a correct exec, so check that it was one.
fn check_hello(side: Side, (stdout, stderr, code): &Output) -> Result<()> {
    if stdout != b"hello\n" || !stderr.is_empty() || *code != 0 {
        return Err(format!(
            "{side:?} exec returned stdout {:?}, stderr {:?}, exit {code}",
            String::from_utf8_lossy(stdout),
            String::from_utf8_lossy(stderr)
        )
        .into());
    }
    Ok(())
}

/// Raw bollard, as a test would write it by hand.
#[derive(Debug)]
struct Raw {
    docker: bollard::Docker,
    image: String,
    labels: HashMap<String, String>,
}

/// One lifecycle's phases, either side.
#[derive(Clone, Copy, Debug)]
struct Phases {
    start: Duration,
    exec: Duration,
    /// `teardown().await`, `drop`, or the raw remove.
    end: Duration,
    /// Requests sent; raw side only (testdock's are not observable here).
    requests: u32,
}

impl Phases {
    fn total(&self) -> Duration {
        self.start + self.exec + self.end
    }
}

impl Raw {
    /// Its own client, on the endpoint testdock chose, so both sides talk
    /// to the same engine over separate connections.
    fn connect(endpoint: &str, image: String) -> Result<Self> {
        let docker = match endpoint.strip_prefix("unix://") {
            Some(path) => {
                bollard::Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION)?
            }
            None => {
                bollard::Docker::connect_with_http(endpoint, 120, bollard::API_DEFAULT_VERSION)?
            }
        };
        let expires = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() + 3600;
        // The labels testdock's sweepers and leak checks look for.
        let labels = HashMap::from([
            (LABEL_MANAGED.to_string(), "true".to_string()),
            (
                LABEL_SESSION.to_string(),
                testdock::session_id().to_string(),
            ),
            (LABEL_PID.to_string(), std::process::id().to_string()),
            (LABEL_EXPIRES.to_string(), expires.to_string()),
            (SIDE.to_string(), "raw".to_string()),
        ]);
        Ok(Raw {
            docker,
            image,
            labels,
        })
    }

    /// create + start: two requests.
    async fn start(&self) -> Result<String> {
        let body = ContainerCreateBody {
            image: Some(self.image.clone()),
            cmd: Some(SLEEP.map(String::from).to_vec()),
            labels: Some(self.labels.clone()),
            ..Default::default()
        };
        let id = self.docker.create_container(None, body).await?.id;
        if let Err(e) = self.docker.start_container(&id, None).await {
            let _ = self.remove(&id).await;
            return Err(e.into());
        }
        Ok(id)
    }

    /// `echo hello`: create, start (drained), inspect until exited: three
    /// requests plus one per extra inspect, returned with the output.
    async fn exec(&self, id: &str) -> Result<(Output, u32)> {
        self.exec_cmd(id, HELLO.map(String::from).to_vec()).await
    }

    /// Any command, as [`exec`](Raw::exec).
    async fn exec_cmd(&self, id: &str, cmd: Vec<String>) -> Result<(Output, u32)> {
        let config = ExecConfig {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(cmd),
            ..Default::default()
        };
        let exec_id = self.docker.create_exec(id, config).await?.id;
        let StartExecResults::Attached {
            mut output,
            input: _input, // held until drained, as testdock does
        } = self.docker.start_exec(&exec_id, None).await?
        else {
            return Err("exec started detached".into());
        };
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        while let Some(frame) = output.next().await {
            match frame? {
                LogOutput::StdErr { message } => stderr.extend_from_slice(&message),
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    stdout.extend_from_slice(&message)
                }
                LogOutput::StdIn { .. } => {}
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut requests = 2;
        loop {
            requests += 1;
            let info = self.docker.inspect_exec(&exec_id).await?;
            match (info.running, info.exit_code) {
                (Some(false) | None, Some(code)) => return Ok(((stdout, stderr, code), requests)),
                _ if Instant::now() >= deadline => return Err("exec exit code never came".into()),
                _ => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    }

    /// One statement through `psql -c` in the server's container, as a
    /// hand-written fixture would run it; fails unless psql exits 0.
    async fn psql(&self, server: &PostgresServer, sql: String) -> Result<()> {
        let cmd = [
            "psql",
            "-X",
            "-w",
            "-q",
            "-U",
            server.user(),
            "-d",
            "postgres",
            "-c",
        ]
        .map(String::from)
        .into_iter()
        .chain([sql])
        .collect();
        let ((_, stderr, code), _) = self.exec_cmd(server.container().id(), cmd).await?;
        if code != 0 {
            return Err(format!("psql exited {code}: {}", String::from_utf8_lossy(&stderr)).into());
        }
        Ok(())
    }

    /// A Redis server container for one test, as a fixture without leases
    /// makes it: create, start, then `redis-cli PING` until `PONG`. Returns
    /// how long the test waited; the container is removed after, untimed.
    async fn redis_per_test(&self, image: &str) -> Result<Duration> {
        let t = Instant::now();
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            cmd: Some(
                ["redis-server", "--save", "", "--appendonly", "no"]
                    .map(String::from)
                    .to_vec(),
            ),
            labels: Some(self.labels.clone()),
            ..Default::default()
        };
        let id = self.docker.create_container(None, body).await?.id;
        let ready = async {
            self.docker.start_container(&id, None).await?;
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let ping = ["redis-cli", "PING"].map(String::from).to_vec();
                let ((stdout, _, _), _) = self.exec_cmd(&id, ping).await?;
                if stdout == b"PONG\n" {
                    return Ok::<_, Error>(t.elapsed());
                }
                if Instant::now() >= deadline {
                    return Err("the raw Redis container never answered PONG".into());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        .await;
        self.remove(&id).await?;
        ready
    }

    /// Forced remove: one request.
    async fn remove(&self, id: &str) -> Result<()> {
        let opts = RemoveContainerOptionsBuilder::new().force(true).build();
        Ok(self.docker.remove_container(id, Some(opts)).await?)
    }

    async fn lifecycle(&self) -> Result<Phases> {
        let (id, start) = timed(self.start()).await;
        let id = id?;
        let (out, exec) = timed(self.exec(&id)).await;
        let (removed, end) = timed(self.remove(&id)).await;
        let (out, exec_requests) = out?;
        removed?;
        check_hello(Side::Raw, &out)?;
        Ok(Phases {
            start,
            exec,
            end,
            requests: 2 + exec_requests + 1,
        })
    }

    /// This session's containers of one side that were started (a spare
    /// testdock made ahead is only created).
    async fn list(&self, side: &str) -> Result<Vec<String>> {
        let filters = HashMap::from([
            (
                "label",
                vec![
                    format!("{LABEL_SESSION}={}", testdock::session_id()),
                    format!("{SIDE}={side}"),
                ],
            ),
            (
                "status",
                [
                    "running",
                    "paused",
                    "restarting",
                    "removing",
                    "exited",
                    "dead",
                ]
                .map(String::from)
                .to_vec(),
            ),
        ]);
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let list = self.docker.list_containers(Some(opts)).await?;
        Ok(list.into_iter().filter_map(|c| c.id).collect())
    }

    /// Waits (bounded) until the removals `drop` queued are done; returns
    /// how many containers are still there.
    async fn wait_testdock_gone(&self) -> Result<usize> {
        let deadline = Instant::now() + DRAIN_LIMIT;
        loop {
            let left = self.list("testdock").await?.len();
            if left == 0 || Instant::now() >= deadline {
                return Ok(left);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The testdock container both sides' specs mirror: a sleeper, labelled.
///
/// The image is given as a user gives it, `HostImage::shell()`: the very
/// image the raw side names by reference, and one testdock knows cannot
/// move, so spares may stand in for it.
fn spec() -> ContainerSpec {
    ContainerSpec::new(HostImage::shell())
        .cmd(SLEEP)
        .label(SIDE, "testdock")
}

/// How a testdock lifecycle ends.
#[derive(Clone, Copy, Debug)]
enum End {
    Teardown,
    Drop,
}

async fn testdock_lifecycle(end: End) -> Result<Phases> {
    let engine = testdock::docker().await?;
    let before = engine.requests_sent();
    let (c, start) = timed(spec().start()).await;
    let c = c?;
    let (out, exec) = timed(c.exec(HELLO)).await;
    let out = out?;
    let end = match end {
        End::Teardown => {
            let (removed, d) = timed(c.teardown()).await;
            removed?;
            d
        }
        End::Drop => {
            let t = Instant::now();
            drop(c);
            t.elapsed()
        }
    };
    check_hello(Side::Testdock, &(out.stdout, out.stderr, out.exit_code))?;
    // Counted by testdock itself (after a drop, the removal is still
    // queued: only teardown's counts are reported).
    let sent = engine.requests_sent() - before;
    Ok(Phases {
        start,
        exec,
        end,
        requests: u32::try_from(sent).unwrap_or(u32::MAX),
    })
}

/// Exec round trips into one long-lived container per side.
async fn bench_exec(plan: Plan, raw: &Raw) -> Result<Row> {
    let mut row = Row {
        name: "exec round trip (echo hello)".into(),
        testdock: Samples::default(),
        raw: Samples::default(),
        target: Target::Ratio(1.10),
    };
    let c = spec().start().await?;
    let id = raw.start().await?;
    for i in 0..plan.exec {
        for side in order(i) {
            match side {
                Side::Testdock => {
                    let (out, d) = timed(c.exec(HELLO)).await;
                    let out = out?;
                    check_hello(side, &(out.stdout, out.stderr, out.exit_code))?;
                    row.testdock.push(d);
                }
                Side::Raw => {
                    let (out, d) = timed(raw.exec(&id)).await;
                    check_hello(side, &out?.0)?;
                    row.raw.push(d);
                }
            }
        }
    }
    c.teardown().await?;
    raw.remove(&id).await?;
    Ok(row)
}

/// start + exec + awaited teardown, and its phases. Returns the rows and
/// the mean requests per lifecycle, testdock's and raw's.
async fn bench_lifecycle(plan: Plan, raw: &Raw) -> Result<(Vec<Row>, (f64, f64))> {
    let mut td: Vec<Phases> = Vec::new();
    let mut rw: Vec<Phases> = Vec::new();
    for i in 0..plan.lifecycle {
        for side in order(i) {
            match side {
                Side::Testdock => td.push(testdock_lifecycle(End::Teardown).await?),
                Side::Raw => rw.push(raw.lifecycle().await?),
            }
        }
    }
    let pick = |v: &[Phases], f: fn(&Phases) -> Duration| Samples(v.iter().map(f).collect());
    let row = |name: &str, f: fn(&Phases) -> Duration, target| Row {
        name: name.into(),
        testdock: pick(&td, f),
        raw: pick(&rw, f),
        target,
    };
    let mean =
        |v: &[Phases]| v.iter().map(|p| f64::from(p.requests)).sum::<f64>() / v.len().max(1) as f64;
    let requests = (mean(&td), mean(&rw));
    Ok((
        vec![
            row(
                "lifecycle (start+exec+teardown)",
                Phases::total,
                Target::Ratio(1.05),
            ),
            row("  start", |p| p.start, Target::None),
            row("  exec", |p| p.exec, Target::None),
            row("  teardown().await", |p| p.end, Target::None),
        ],
        requests,
    ))
}

/// start + exec + drop, in blocks so that each queued removal overlaps the
/// next testdock iteration but never a raw one.
async fn bench_visible(plan: Plan, raw: &Raw) -> Result<Vec<Row>> {
    let (mut td, mut rw) = (Vec::new(), Vec::new());
    let blocks = plan.visible.div_ceil(plan.block);
    for b in 0..blocks {
        for side in order(b) {
            match side {
                Side::Testdock => {
                    for _ in 0..plan.block {
                        td.push(testdock_lifecycle(End::Drop).await?);
                    }
                    let left = raw.wait_testdock_gone().await?;
                    if left > 0 {
                        return Err(format!(
                            "{left} dropped containers not removed within {DRAIN_LIMIT:?}"
                        )
                        .into());
                    }
                }
                Side::Raw => {
                    for _ in 0..plan.block {
                        rw.push(raw.lifecycle().await?);
                    }
                }
            }
        }
    }
    let samples = |v: &[Phases], f: fn(&Phases) -> Duration| Samples(v.iter().map(f).collect());
    Ok(vec![
        Row {
            name: "lifecycle as a test sees it".into(),
            testdock: samples(&td, Phases::total),
            raw: samples(&rw, Phases::total),
            target: Target::Ratio(0.75),
        },
        // What the queued removals cost the next test: testdock's start
        // and exec here run alongside the previous container's removal.
        Row {
            name: "  start+exec (removal overlaps)".into(),
            testdock: samples(&td, |p| p.start + p.exec),
            raw: samples(&rw, |p| p.start + p.exec),
            target: Target::None,
        },
        Row {
            name: "  drop(guard) vs raw remove".into(),
            testdock: samples(&td, |p| p.end),
            raw: samples(&rw, |p| p.end),
            target: Target::Below(Duration::from_millis(1)),
        },
    ])
}

/// Wall time of `width` lifecycles at once, rounds alternating sides.
async fn bench_parallel(plan: Plan, raw: &Arc<Raw>) -> Result<Row> {
    let mut row = Row {
        name: format!("{} parallel lifecycles (wall)", plan.parallel_width),
        testdock: Samples::default(),
        raw: Samples::default(),
        target: Target::Ratio(1.05),
    };
    for round in 0..plan.parallel_rounds {
        for side in order(round) {
            // Spawned, not joined in place: each lifecycle gets a task, as
            // each test would, and both runtimes' workers can share them.
            let t = Instant::now();
            let tasks: Vec<_> = (0..plan.parallel_width)
                .map(|_| {
                    let raw = Arc::clone(raw);
                    tokio::spawn(async move {
                        match side {
                            Side::Testdock => testdock_lifecycle(End::Teardown).await,
                            Side::Raw => raw.lifecycle().await,
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await??;
            }
            match side {
                Side::Testdock => row.testdock.push(t.elapsed()),
                Side::Raw => row.raw.push(t.elapsed()),
            }
        }
    }
    Ok(row)
}

/// A database per test on one shared server, cloned from a template of a
/// small schema: testdock's `fresh_database` and its guard's drop, against
/// the same `CREATE DATABASE … TEMPLATE` and `DROP DATABASE` through
/// `psql -c` execs. `None` (with why) where no PostgreSQL image can be had.
async fn bench_postgres(plan: Plan, raw: &Raw) -> Result<Option<Vec<Row>>> {
    let server = match Postgres::new()
        .init_sql("CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL)")
        .start()
        .await
    {
        Ok(server) => server,
        Err(e @ testdock::Error::ImageUnavailable { .. }) => {
            println!("per-test PostgreSQL database: skipped: {e}");
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let template = server.template().await?;
    // Both sides clone the same way: FILE_COPY where the server has it.
    let strategy = if server.version() >= 150_000 {
        " STRATEGY FILE_COPY"
    } else {
        ""
    };
    let engine = testdock::docker().await?;
    let (mut create, mut test) = (
        Row {
            name: "  create".into(),
            testdock: Samples::default(),
            raw: Samples::default(),
            target: Target::None,
        },
        Row {
            name: "per-test PostgreSQL database".into(),
            testdock: Samples::default(),
            raw: Samples::default(),
            target: Target::None,
        },
    );
    let before = engine.requests_sent();
    for i in 0..plan.databases {
        for side in order(i) {
            match side {
                Side::Testdock => {
                    let (db, made) = timed(server.fresh_database()).await;
                    let db = db?;
                    let t = Instant::now();
                    drop(db); // queued; the next clone waits behind it
                    create.testdock.push(made);
                    test.testdock.push(made + t.elapsed());
                }
                Side::Raw => {
                    let name = format!("raw_{i}");
                    let sql = format!("CREATE DATABASE {name} TEMPLATE \"{template}\"{strategy}");
                    let (made, m) = timed(raw.psql(&server, sql)).await;
                    made?;
                    let (dropped, d) =
                        timed(raw.psql(&server, format!("DROP DATABASE {name}"))).await;
                    dropped?;
                    create.raw.push(m);
                    test.raw.push(m + d);
                }
            }
        }
    }
    let requests = engine.requests_sent() - before;
    println!(
        "per-test database: testdock sent {requests} engine request(s) for {} databases \
         (one psql session serves them all); raw sends 6 per database",
        plan.databases
    );
    server.teardown().await?;
    Ok(Some(vec![test, create]))
}

/// The migrations of `fixtures/mysql` as one multi-statement text for a
/// plain client: the server parses trigger bodies itself, so the client's
/// `DELIMITER` lines go and `//` ends a statement as `;` does.
fn mysql_migrations_for_a_client() -> Result<String> {
    let mut files: Vec<_> = std::fs::read_dir("fixtures/mysql")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    let mut sql = String::new();
    for f in files {
        for line in std::fs::read_to_string(f)?.lines() {
            if line.trim_start().starts_with("DELIMITER") {
                continue;
            }
            sql.push_str(line.strip_suffix("//").map_or(line, |l| l));
            sql.push_str(if line.ends_with("//") { ";\n" } else { "\n" });
        }
    }
    Ok(sql)
}

/// A migration history as applications accumulate one: 10 tables, each
/// created and then altered four times (columns, indexes, a foreign key to
/// the one before), and seeded: 51 scripts.
fn mysql_history() -> Vec<(String, String)> {
    let mut steps = Vec::new();
    for t in 0..10 {
        steps.push(format!(
            "CREATE TABLE t{t} (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(50) NOT NULL)"
        ));
        steps.push(format!(
            "ALTER TABLE t{t} ADD COLUMN score INT NOT NULL DEFAULT 0"
        ));
        steps.push(format!("ALTER TABLE t{t} ADD INDEX t{t}_score (score)"));
        steps.push(format!("ALTER TABLE t{t} ADD COLUMN note TEXT NULL"));
        if t > 0 {
            steps.push(format!(
                "ALTER TABLE t{t} ADD COLUMN parent_id INT NULL, \
                 ADD CONSTRAINT t{t}_parent FOREIGN KEY (parent_id) REFERENCES t{}(id)",
                t - 1
            ));
        }
    }
    steps.push(
        (0..10)
            .map(|t| format!("INSERT INTO t{t} (name) VALUES ('a'), ('b'), ('c')"))
            .collect::<Vec<_>>()
            .join(";\n"),
    );
    steps
        .into_iter()
        .enumerate()
        .map(|(i, sql)| (format!("{:03}.sql", i + 1), sql))
        .collect()
}

/// What a test does with its database before the next one is taken:
/// connect with the URL and read. Untimed; it gives prefetching the time
/// a suite's tests give it.
async fn use_mysql_db(url: &str, check: &str, expect: i64) -> Result<()> {
    use mysql_async::prelude::Queryable;
    let mut c = mysql_async::Conn::from_url(url).await?;
    let n: Option<i64> = c.query_first(check).await?;
    if n != Some(expect) {
        return Err(format!("`{check}` in the copy gave {n:?}, not {expect}").into());
    }
    c.disconnect().await?;
    Ok(())
}

/// Per-test MariaDB databases: the schema of `fixtures/mysql` (small, with
/// views and a trigger) and a 51-script history.
async fn bench_mysql(plan: Plan) -> Result<Option<Vec<Row>>> {
    use testdock::mysql::{Migrations, Mysql};
    let fixture = Mysql::new().migrations_dir("fixtures/mysql");
    let Some(mut rows) = bench_mysql_case(
        plan,
        "fixtures/mysql",
        fixture,
        mysql_migrations_for_a_client()?,
        ("SELECT COUNT(*) FROM users", 2),
    )
    .await?
    else {
        return Ok(None);
    };
    let history = mysql_history();
    let migrations = history
        .iter()
        .fold(Migrations::new(), |m, (name, sql)| m.sql(name, sql));
    let raw: Vec<&str> = history.iter().map(|(_, sql)| sql.as_str()).collect();
    rows.extend(
        bench_mysql_case(
            plan,
            "51 migrations",
            Mysql::new().migrations(migrations),
            raw.join(";\n"),
            ("SELECT COUNT(*) FROM t9", 3),
        )
        .await?
        .unwrap_or_default(),
    );
    Ok(Some(rows))
}

/// One schema: `fresh_database()` with prefetching and without
/// (`prefetch(0)`), each on its own server, against creating a database
/// and running the same migrations from a host client (what
/// `#[sqlx::test]` does per test), at one taker and at eight at once.
/// `None` (with why) where no MariaDB image can be had.
async fn bench_mysql_case(
    plan: Plan,
    label: &str,
    config: testdock::mysql::Mysql,
    migrations: String,
    (check, expect): (&str, i64),
) -> Result<Option<Vec<Row>>> {
    use mysql_async::prelude::Queryable;
    let (prefetching, plain) =
        match tokio::try_join!(config.clone().start(), config.prefetch(0).start()) {
            Ok(servers) => servers,
            Err(e @ testdock::Error::ImageUnavailable { .. }) => {
                println!("per-test MariaDB database: skipped: {e}");
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
    let admin = plain.url("mysql");
    // Templates made (and a first copy taken) untimed.
    for s in [&prefetching, &plain] {
        drop(s.fresh_database().await?);
        drop(s.fresh_database().await?);
    }
    let raw_db = |n: usize| {
        let (admin, migrations) = (admin.clone(), migrations.clone());
        async move {
            let mut c = mysql_async::Conn::from_url(admin.as_str()).await?;
            let name = format!("raw_{n}");
            let t = Instant::now();
            c.query_drop(format!("CREATE DATABASE {name}; USE {name}; {migrations}"))
                .await?;
            let took = t.elapsed();
            c.query_drop(format!("DROP DATABASE {name}")).await?;
            c.disconnect().await?;
            Ok::<_, Error>(took)
        }
    };
    let row = |what: &str| Row {
        name: format!("MariaDB {label}, {what}"),
        testdock: Samples::default(),
        raw: Samples::default(),
        target: Target::None,
    };
    let (mut pre1, mut plain1) = (row("prefetch, 1"), row("no prefetch, 1"));
    let mut raw1 = Samples::default();
    let mut n = 0;
    for _ in 0..plan.mysql {
        for (server, row) in [(&prefetching, &mut pre1), (&plain, &mut plain1)] {
            let (db, t) = timed(server.fresh_database()).await;
            let db = db?;
            row.testdock.push(t);
            use_mysql_db(db.url(), check, expect).await?;
            drop(db);
        }
        n += 1;
        raw1.push(raw_db(n).await?);
    }
    let (mut pre8, mut plain8) = (row("prefetch, 8"), row("no prefetch, 8"));
    let mut raw8 = Samples::default();
    for _ in 0..plan.mysql_rounds {
        for (server, row) in [(&prefetching, &mut pre8), (&plain, &mut plain8)] {
            let takes = (0..8).map(|_| async {
                let (db, t) = timed(server.fresh_database()).await;
                let db = db?;
                use_mysql_db(db.url(), check, expect).await?;
                drop(db);
                Ok::<_, Error>(t)
            });
            for t in futures_util::future::try_join_all(takes).await? {
                row.testdock.push(t);
            }
        }
        let base = n + 1;
        let takes = (0..8).map(|i| raw_db(base + i));
        n += 8;
        for t in futures_util::future::try_join_all(takes).await? {
            raw8.push(t);
        }
    }
    pre1.raw = raw1.clone();
    plain1.raw = raw1;
    pre8.raw = raw8.clone();
    plain8.raw = raw8;
    // The goal: 5 ms, and 20× faster than migrating, with prefetching.
    pre1.target = Target::Below(Duration::from_millis(5));
    pre8.target = Target::Ratio(0.05);
    println!(
        "per-test MariaDB database ({label}): raw = CREATE DATABASE + the migrations from a \
         host client, one multi-statement query ({}, {})",
        prefetching.version(),
        prefetching.container().image()
    );
    tokio::try_join!(prefetching.teardown(), plain.teardown())?;
    Ok(Some(vec![pre1, plain1, pre8, plain8]))
}

/// A Redis database per test: testdock's `fresh_db()` (its guard dropped
/// at once, the flush and release queued) on one shared server, against
/// the alternative without leases, a server container per test — create,
/// start, and `redis-cli PING` execs until it answers `PONG` (its removal
/// untimed). At 1 and at 8 concurrent takers, each taker timing its own.
/// `None` (with why) where no Redis image can be had.
async fn bench_redis(plan: Plan, raw: &Arc<Raw>) -> Result<Option<Vec<Row>>> {
    let server = match Redis::new().start().await {
        Ok(server) => server,
        Err(e @ testdock::Error::ImageUnavailable { .. }) => {
            println!("per-test Redis database: skipped: {e}");
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let server = Arc::new(server);
    let image = server.container().image().to_string();
    let row = |takers: usize| Row {
        name: format!("per-test Redis database, {takers} taker(s)"),
        testdock: Samples::default(),
        raw: Samples::default(),
        target: Target::Below(Duration::from_millis(2)),
    };
    let mut rows = vec![row(1), row(8)];
    let rounds = [plan.databases, plan.parallel_rounds];
    for (r, takers) in [1usize, 8].into_iter().enumerate() {
        for i in 0..rounds[r] {
            for side in order(i) {
                let tasks: Vec<_> = (0..takers)
                    .map(|_| {
                        let (raw, server, image) =
                            (Arc::clone(raw), Arc::clone(&server), image.clone());
                        tokio::spawn(async move {
                            match side {
                                Side::Testdock => {
                                    let (db, took) = timed(server.fresh_db()).await;
                                    drop(db?);
                                    Ok::<_, Error>(took)
                                }
                                Side::Raw => raw.redis_per_test(&image).await,
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    let took = task.await??;
                    match side {
                        Side::Testdock => rows[r].testdock.push(took),
                        Side::Raw => rows[r].raw.push(took),
                    }
                }
            }
        }
    }
    // Every queued release is done once nothing is leased.
    let deadline = Instant::now() + DRAIN_LIMIT;
    while !server.leased().await?.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    match Arc::try_unwrap(server) {
        Ok(server) => server.teardown().await?,
        Err(_) => return Err("the Redis server is still in use".into()),
    }
    Ok(Some(rows))
}

/// All measurements, in order. Returns the rows and the requests per
/// lifecycle, testdock's and raw's.
async fn run(plan: Plan, raw: Arc<Raw>) -> Result<(Vec<Row>, (f64, f64))> {
    // Only the realistic-schema rows, for working on them.
    if std::env::var("TESTDOCK_BENCH_ONLY").is_ok_and(|v| v == "templates") {
        let rows = templates::bench(plan).await?.unwrap_or_default();
        return Ok((rows, (0.0, 0.0)));
    }
    if plan.only_mysql {
        eprintln!("· per-test MariaDB database");
        return Ok((bench_mysql(plan).await?.unwrap_or_default(), (0.0, 0.0)));
    }
    // Warm-up, untimed: connections, the engine runtime, page cache.
    testdock_lifecycle(End::Teardown).await?;
    raw.lifecycle().await?;

    let mut rows = Vec::new();
    eprintln!("· exec round trip, {} × 2", plan.exec);
    rows.push(bench_exec(plan, &raw).await?);
    eprintln!("· lifecycle with teardown().await, {} × 2", plan.lifecycle);
    let (lifecycle, requests) = bench_lifecycle(plan, &raw).await?;
    rows.extend(lifecycle);
    eprintln!(
        "· lifecycle with drop, {} × 2 in blocks of {}",
        plan.visible, plan.block
    );
    rows.extend(bench_visible(plan, &raw).await?);
    eprintln!(
        "· {} parallel lifecycles, {} round(s) × 2",
        plan.parallel_width, plan.parallel_rounds
    );
    rows.push(bench_parallel(plan, &raw).await?);
    eprintln!("· per-test PostgreSQL database, {} × 2", plan.databases);
    rows.extend(bench_postgres(plan, &raw).await?.unwrap_or_default());
    eprintln!("· per-test databases from a realistic schema: prefetch, none, migrate per test");
    rows.extend(templates::bench(plan).await?.unwrap_or_default());
    eprintln!("· per-test MariaDB database");
    rows.extend(bench_mysql(plan).await?.unwrap_or_default());
    eprintln!(
        "· per-test Redis database, {} × 2 alone, {} × 8 × 2 at once",
        plan.databases, plan.parallel_rounds
    );
    rows.extend(bench_redis(plan, &raw).await?.unwrap_or_default());
    Ok((rows, requests))
}

/// Removes this session's raw containers and waits for testdock's queued
/// removals; returns how many containers of this session are left.
async fn clean_up(raw: &Raw) -> Result<usize> {
    for id in raw.list("raw").await? {
        // Gone meanwhile is fine; anything else shows in the count below.
        let _ = raw.remove(&id).await;
    }
    let left = raw.wait_testdock_gone().await?;
    Ok(left + raw.list("raw").await?.len())
}

/// The process's peak resident set, as the kernel reports it.
fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().to_string()))
        })
        .unwrap_or_else(|| "unknown (no /proc/self/status)".into())
}

#[tokio::main]
async fn main() -> Result<()> {
    let plan = Plan::from_args()?;
    let began = Instant::now();
    if std::env::var_os("RUST_LOG").is_some() {
        // `RUST_LOG=testdock=debug` shows where a figure's time goes.
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }

    let (image, built_in) = timed(HostImage::shell().build()).await;
    let image = image?;
    let engine = testdock::docker().await?;
    let raw = Arc::new(Raw::connect(engine.endpoint(), image.clone())?);
    let version = raw.docker.version().await?;

    println!(
        "testdock benchmark ({} mode): testdock vs raw bollard, interleaved",
        if plan.quick { "quick" } else { "full" }
    );
    println!(
        "engine:  Docker {} (API {}) at {}",
        version.version.as_deref().unwrap_or("?"),
        version.api_version.as_deref().unwrap_or("?"),
        engine.endpoint()
    );
    println!(
        "image:   {image} (HostImage::shell, ready in {})",
        fmt_duration(built_in)
    );
    println!("session: {}", testdock::session_id());
    println!();

    // Run in a task so a panic still reaches the clean-up below.
    let outcome = tokio::spawn(run(plan, Arc::clone(&raw))).await;
    let left = clean_up(&raw).await;

    let (rows, (testdock_requests, raw_requests)) = match outcome {
        Ok(result) => result?,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => return Err(e.into()),
    };
    print_table(&rows);
    println!();
    println!(
        "requests per lifecycle (counted, mean): testdock {testdock_requests:.2}, raw {raw_requests:.2} \
         (target: no more than raw's)"
    );
    println!("targets are judged on medians; ratio = testdock median / raw median");
    match left? {
        0 => println!("left behind: nothing"),
        n => println!(
            "left behind: {n} container(s) of session {}",
            testdock::session_id()
        ),
    }
    println!("peak RSS: {}", peak_rss());
    println!("total time: {}", fmt_duration(began.elapsed()));
    Ok(())
}
