//! The run: which processes share a fixture, and how long it lives.
//!
//! A test run is many processes — `cargo nextest run` starts one per test,
//! `cargo test` one per test binary — so an expensive fixture (a database
//! server) is shared by the run, not the process. This module decides what
//! the run is ([`current`]), labels what belongs to it ([`labels`]) and
//! keeps it alive exactly as long as the run ([`ensure_watch`]).
//!
//! How the run is found, first match wins:
//! 1. `TESTDOCK_SHARE=process`: no run; one fixture per process.
//! 2. `TESTDOCK_REUSE=<duration>` (not when `CI` is set): one scope per
//!    user and machine that outlives runs, removed once idle that long.
//! 3. `TESTDOCK_RUN_ID=<id>`: a run named by hand, removed once idle (10
//!    minutes, or `TESTDOCK_REUSE`'s duration).
//! 4. `NEXTEST_RUN_ID` with a `cargo-nextest` ancestor: that nextest run,
//!    until that process exits.
//! 5. A `cargo` parent: that cargo invocation (`cargo test` running the
//!    test binaries one after another), until it exits.
//! 6. Otherwise the process alone — never a shell or an IDE, whose lifetime
//!    is not a run's.
//!
//! Ancestors running this same executable are passed over: a test binary
//! that re-executes itself stays in its run.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use once_cell::sync::{Lazy, OnceCell};
use sha2::{Digest, Sha256};

use crate::session::{process_start_ticks, LABEL_PID, LABEL_PID_START, LABEL_SESSION};

/// Which run owns a run-wide resource, as a reader would name it.
pub const LABEL_RUN: &str = "testdock.run";
/// The process that created a run-wide resource, `pid:start ticks`: while
/// it lives, a half-started container is its to finish.
pub(crate) const LABEL_CREATOR: &str = "testdock.creator";
/// Seconds a run-wide resource with no owner process may sit unused.
pub const LABEL_IDLE: &str = "testdock.idle";

/// A run named by hand lives until unused for this long.
const MANUAL_IDLE: Duration = Duration::from_secs(10 * 60);
/// Set in a scope watchdog's environment to the session it guards.
const MARKER: &str = "TESTDOCK_RUN_WATCHDOG";
const MARKER_OWNER: &str = "TESTDOCK_RUN_WATCHDOG_OWNER";
const MARKER_IDLE: &str = "TESTDOCK_RUN_WATCHDOG_IDLE";

/// How long a run's resources live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Lifetime {
    /// Until this process — the runner — exits.
    Owner { pid: u32, start: u64 },
    /// Until no process has used them for this long.
    Idle(Duration),
}

/// A run: the processes that share fixtures, and for how long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    /// Shown in labels and messages: `nextest <uuid>`, `cargo pid 42`, ….
    pub(crate) id: String,
    /// The `testdock.session` of its resources.
    pub(crate) session: String,
    pub(crate) lifetime: Lifetime,
}

/// What detection reads, so it can be tested without real processes.
pub(crate) trait Host {
    fn var(&self, key: &str) -> Option<String>;
    fn me(&self) -> u32;
    fn parent(&self, pid: u32) -> Option<u32>;
    fn comm(&self, pid: u32) -> Option<String>;
    fn exe(&self, pid: u32) -> Option<PathBuf>;
    fn start(&self, pid: u32) -> Option<u64>;
    /// User id, hostname and pid namespace: what makes two runs distinct.
    fn identity(&self) -> String;
}

struct RealHost;

impl Host for RealHost {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
    fn me(&self) -> u32 {
        std::process::id()
    }
    fn parent(&self, pid: u32) -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Field 4, after the command name in parentheses.
        let rest = &stat[stat.rfind(')')? + 2..];
        rest.split_whitespace().nth(1)?.parse().ok()
    }
    fn comm(&self, pid: u32) -> Option<String> {
        let c = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        Some(c.trim_end().to_string())
    }
    fn exe(&self, pid: u32) -> Option<PathBuf> {
        std::fs::read_link(format!("/proc/{pid}/exe")).ok()
    }
    fn start(&self, pid: u32) -> Option<u64> {
        process_start_ticks(pid)
    }
    fn identity(&self) -> String {
        format!(
            "uid {} on {} in {}",
            unsafe { libc::getuid() },
            crate::session::hostname(),
            crate::session::pid_namespace().unwrap_or("?")
        )
    }
}

/// This process's run, found once; `None` when fixtures are per process.
pub(crate) fn current() -> Option<&'static Run> {
    static RUN: Lazy<Option<Run>> = Lazy::new(|| detect(&RealHost));
    RUN.as_ref()
}

fn session_of(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    format!("run-{}", crate::util::hex(&h.finalize()[..12]))
}

/// `10m`, `90s`, `2h`, `600` (seconds).
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "s" | "sec" => n,
        "m" | "min" => n * 60,
        "h" => n * 3600,
        _ => return None,
    };
    (secs > 0).then(|| Duration::from_secs(secs))
}

fn ci(h: &dyn Host) -> bool {
    h.var("CI")
        .is_some_and(|v| !matches!(v.as_str(), "0" | "false"))
}

pub(crate) fn detect(h: &dyn Host) -> Option<Run> {
    if h.var("TESTDOCK_SHARE").as_deref() == Some("process") {
        return None;
    }
    let me = h.identity();
    let reuse = h.var("TESTDOCK_REUSE");
    let reuse_for = reuse.as_deref().and_then(parse_duration);
    if let (Some(text), None) = (&reuse, reuse_for) {
        say_once(&format!(
            "testdock: TESTDOCK_REUSE={text} is not a duration (e.g. 10m, 90s, 2h); not reusing"
        ));
    }
    if let Some(idle) = reuse_for {
        if ci(h) {
            say_once("testdock: TESTDOCK_REUSE is ignored because CI is set: CI runs start clean");
        } else {
            return Some(Run {
                id: format!("reuse ({me})"),
                session: session_of(&["reuse", &me]),
                lifetime: Lifetime::Idle(idle),
            });
        }
    }
    if let Some(id) = h.var("TESTDOCK_RUN_ID") {
        return Some(Run {
            session: session_of(&["manual", &id, &me]),
            id: format!("manual {id}"),
            lifetime: Lifetime::Idle(reuse_for.unwrap_or(MANUAL_IDLE)),
        });
    }
    let nextest = h.var("NEXTEST_RUN_ID");
    let my_exe = h.exe(h.me());
    let mut pid = h.me();
    for _ in 0..8 {
        let Some(p) = h.parent(pid).filter(|&p| p > 1) else {
            break;
        };
        let comm = h.comm(p).unwrap_or_default();
        let runner = match &nextest {
            Some(_) => comm == "cargo-nextest",
            None => comm == "cargo",
        };
        if runner {
            let start = h.start(p)?;
            let (id, session) = match &nextest {
                Some(run) => (format!("nextest {run}"), session_of(&["nextest", run])),
                None => (
                    format!("cargo pid {p}"),
                    session_of(&["cargo", &p.to_string(), &start.to_string(), &me]),
                ),
            };
            return Some(Run {
                id,
                session,
                lifetime: Lifetime::Owner { pid: p, start },
            });
        }
        if my_exe.is_some() && h.exe(p) == my_exe {
            pid = p;
            continue;
        }
        break;
    }
    None
}

/// Prints `line` on stderr once per distinct text; never panics.
fn say_once(line: &str) {
    use std::io::Write as _;
    static SAID: Lazy<std::sync::Mutex<std::collections::HashSet<String>>> =
        Lazy::new(Default::default);
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    if said.insert(line.to_string()) {
        let _ = writeln!(std::io::stderr(), "{line}");
    }
}

/// The labels of a resource created now for `run`: the process's labels,
/// with the run as the session and the runner as the owner the sweep
/// judges by.
pub(crate) fn labels(run: &Run) -> HashMap<String, String> {
    let mut l = crate::session::labels();
    let me = format!(
        "{}:{}",
        std::process::id(),
        process_start_ticks(std::process::id()).unwrap_or(0)
    );
    l.insert(LABEL_CREATOR.into(), me);
    l.insert(LABEL_SESSION.into(), run.session.clone());
    l.insert(LABEL_RUN.into(), run.id.clone());
    match run.lifetime {
        Lifetime::Owner { pid, start } => {
            l.insert(LABEL_PID.into(), pid.to_string());
            l.insert(LABEL_PID_START.into(), start.to_string());
        }
        Lifetime::Idle(idle) => {
            l.remove(LABEL_PID);
            l.remove(LABEL_PID_START);
            l.insert(LABEL_IDLE.into(), idle.as_secs().to_string());
        }
    }
    l
}

/// Whether the process in `label` (`pid:start`) is alive; `None` when
/// that cannot be told.
pub(crate) fn creator_alive(label: Option<&String>) -> Option<bool> {
    let (pid, start) = label?.split_once(':')?;
    let (pid, start): (u32, u64) = (pid.parse().ok()?, start.parse().ok()?);
    match process_start_ticks(pid) {
        Some(now) => Some(now == start),
        None if std::path::Path::new(&format!("/proc/{pid}")).exists() => None,
        None => Some(false),
    }
}

/// The name of `run`'s container of this spec: one per run and spec, so
/// the engine's refusal of a second container of that name (409) decides
/// which process creates it. The key covers the whole create request
/// (image, command, env, mounts, ports, limits, labels) but what differs
/// between processes (creator, expiry), and the files copied in, the
/// readiness checks and the startup timeout.
pub(crate) fn container_name(
    run: &Run,
    body: &bollard::models::ContainerCreateBody,
    spec: &crate::ContainerSpec,
) -> String {
    let mut body = body.clone();
    if let Some(l) = body.labels.as_mut() {
        l.remove(LABEL_CREATOR);
    }
    let mut h = Sha256::new();
    h.update(crate::spare::shape(&body).unwrap_or_default().as_bytes());
    for f in &spec.files {
        f.share_key(&mut h);
    }
    h.update(format!("{:?}|{:?}", spec.waits, spec.startup_timeout).as_bytes());
    let key = crate::util::hex(&h.finalize()[..8]);
    let run_part = run.session.trim_start_matches("run-");
    format!("testdock-{}-{key}", &run_part[..run_part.len().min(10)])
}

/// The sweep's verdict on a resource of an idle scope made on this
/// machine (its files are here): stale once nobody uses the scope and its
/// last use is the idle time ago. `None` for anything else.
pub(crate) fn idle_verdict(labels: &HashMap<String, String>, kept: bool) -> Option<bool> {
    let idle = labels
        .get(LABEL_IDLE)?
        .parse()
        .ok()
        .map(Duration::from_secs)?;
    let here = crate::session::pid_namespace()?;
    if kept || labels.get(crate::session::LABEL_PID_NS).map(String::as_str) != Some(here) {
        return None;
    }
    let session = labels.get(LABEL_SESSION)?;
    Some(idle::is_idle(session, idle))
}

// --- keeping the run's resources exactly as long as the run -------------

/// Makes sure something removes `run`'s resources when the run is over.
/// For a runner: a watchdog that waits for it to exit, started by the
/// process that `created` a resource (joiners rely on the creator's). For
/// an idle scope: every user counts as one until it exits, and one
/// watchdog removes the scope once it has had no user for the idle time.
/// Once per process.
pub(crate) async fn ensure_watch(run: &'static Run, created: bool) {
    static DONE: OnceCell<()> = OnceCell::new();
    let owner = matches!(run.lifetime, Lifetime::Owner { .. });
    if (owner && !created) || crate::watchdog::is_watchdog() || DONE.set(()).is_err() {
        return;
    }
    let Ok(engine) = crate::engine::engine().await else {
        return;
    };
    let (endpoint, tls) = (engine.endpoint().to_string(), engine.tls().clone());
    let _ = tokio::task::spawn_blocking(move || {
        if !owner && !idle::join(&run.session) {
            return; // a watchdog guards the scope already
        }
        if let Err(e) = spawn(run, &endpoint, &tls) {
            say_once(&format!(
                "testdock: could not start the watchdog of run {} ({e}); its resources are \
                 removed by a later sweep",
                run.id
            ));
        }
    })
    .await;
}

fn spawn(run: &Run, endpoint: &str, tls: &crate::discovery::Tls) -> std::io::Result<()> {
    let mut cmd = crate::watchdog::command(endpoint, tls)?;
    cmd.env(MARKER, &run.session);
    match run.lifetime {
        Lifetime::Owner { pid, start } => cmd.env(MARKER_OWNER, format!("{pid}:{start}")),
        Lifetime::Idle(d) => cmd.env(MARKER_IDLE, d.as_secs().to_string()),
    };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()?;
    // Reaped in the background so it never lingers as a zombie of ours.
    std::thread::Builder::new()
        .name("testdock-reap".into())
        .spawn(move || {
            let _ = child.wait();
        })?;
    Ok(())
}

/// Whether this process is a scope watchdog.
pub(crate) fn is_run_watchdog() -> bool {
    std::env::var_os(MARKER).is_some()
}

#[ctor::ctor(unsafe)]
fn intercept() {
    let Ok(session) = std::env::var(MARKER) else {
        return;
    };
    let owner = std::env::var(MARKER_OWNER).ok().and_then(|o| {
        let (p, s) = o.split_once(':')?;
        Some((p.parse::<u32>().ok()?, s.parse::<u64>().ok()?))
    });
    let idle = std::env::var(MARKER_IDLE)
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs);
    match (owner, idle) {
        (Some((pid, start)), _) => {
            wait_for_exit(pid, start);
            // The run's processes may have been killed mid-create with it.
            crate::reaper::finish_settled(&session, false);
        }
        // Idle: every user has been gone that long, so nothing is in
        // flight (unless the idle time is shorter than a settle); and a
        // user waiting to join must not wait on a settle.
        (None, Some(idle)) => idle::watch(&session, idle, || {
            crate::reaper::finish_settled(&session, idle >= crate::reaper::SETTLE)
        }),
        _ => {}
    }
    std::process::exit(0);
}

/// Blocks until the process `pid` that started at `start` is gone.
fn wait_for_exit(pid: u32, start: u64) {
    // A pidfd turns readable when the process exits: no polling. It is
    // opened before the start time is checked, so a pid reused after the
    // check cannot fool it.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) } as i32;
    if process_start_ticks(pid) != Some(start) {
        if fd >= 0 {
            unsafe { libc::close(fd) };
        }
        return;
    }
    if fd >= 0 {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        while unsafe { libc::poll(&mut p, 1, -1) } < 0 {}
        unsafe { libc::close(fd) };
        return;
    }
    // Kernels before 5.3 have no pidfd: look every quarter second.
    while process_start_ticks(pid) == Some(start) {
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The idle scope's bookkeeping, in files of this user on this machine:
/// `<session>.lock`, held shared by every process using the scope until it
/// exits (the kernel lets go even on SIGKILL); `<session>.use`, whose
/// modification time is the last use; `<session>.wd`, held by the one
/// watchdog.
pub(crate) mod idle {
    use super::*;
    use std::os::fd::AsRawFd;

    pub(crate) fn dir() -> PathBuf {
        let uid = unsafe { libc::getuid() };
        std::env::temp_dir().join(format!("testdock-{uid}"))
    }

    fn open(session: &str, ext: &str) -> std::io::Result<File> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = dir();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(dir.join(format!("{session}.{ext}")))
    }

    fn flock(f: &File, op: libc::c_int) -> bool {
        loop {
            if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
                return true;
            }
            if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                return false;
            }
        }
    }

    pub(crate) fn touch(session: &str) {
        if let Ok(f) = open(session, "use") {
            let _ = f.set_modified(SystemTime::now());
        }
    }

    fn last_use(session: &str) -> Option<SystemTime> {
        std::fs::metadata(dir().join(format!("{session}.use")))
            .and_then(|m| m.modified())
            .ok()
    }

    /// Counts this process as a user of the scope until it exits; true if
    /// no watchdog guards the scope yet (then start one).
    pub(crate) fn join(session: &str) -> bool {
        static HELD: OnceCell<File> = OnceCell::new();
        if let Ok(lock) = open(session, "lock") {
            // Blocks only while a watchdog is removing the scope: after
            // that this process starts afresh.
            if flock(&lock, libc::LOCK_SH) {
                let _ = HELD.set(lock);
            }
        }
        touch(session);
        match open(session, "wd") {
            Ok(wd) => flock(&wd, libc::LOCK_EX | libc::LOCK_NB),
            Err(_) => false,
        }
    }

    /// Whether the scope is idle now: nobody holds it and its last use is
    /// `idle` ago or more. For the sweep, on this machine.
    pub(crate) fn is_idle(session: &str, idle: Duration) -> bool {
        let Ok(lock) = open(session, "lock") else {
            return false;
        };
        if !flock(&lock, libc::LOCK_EX | libc::LOCK_NB) {
            return false;
        }
        last_use(session).is_none_or(|t| t + idle <= SystemTime::now())
    }

    /// The watchdog of an idle scope: waits until no process has used it
    /// for `idle`, then calls `finish` and exits.
    pub(crate) fn watch(session: &str, idle: Duration, finish: impl FnOnce()) {
        let (Ok(wd), Ok(lock)) = (open(session, "wd"), open(session, "lock")) else {
            return;
        };
        if !flock(&wd, libc::LOCK_EX | libc::LOCK_NB) {
            return; // another watchdog guards it
        }
        loop {
            // Returns once no user is left: the idle time counts from here.
            if !flock(&lock, libc::LOCK_EX) {
                return;
            }
            touch(session);
            flock(&lock, libc::LOCK_UN);
            loop {
                let due = last_use(session).unwrap_or(UNIX_EPOCH) + idle;
                match due.duration_since(SystemTime::now()) {
                    Ok(left) if !left.is_zero() => std::thread::sleep(left),
                    _ => break,
                }
            }
            if !flock(&lock, libc::LOCK_EX | libc::LOCK_NB) {
                continue; // in use again: wait for its users to leave
            }
            let still_idle = last_use(session).is_none_or(|t| t + idle <= SystemTime::now());
            if still_idle {
                finish();
                // The watchdog's own lock goes first: a user waiting on the
                // scope lock then finds no watchdog and starts one.
                drop(wd);
                drop(lock);
                return;
            }
            flock(&lock, libc::LOCK_UN);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Fake {
        vars: HashMap<String, String>,
        /// pid → (parent, comm, exe, start)
        procs: HashMap<u32, (u32, &'static str, &'static str, u64)>,
    }

    impl Fake {
        fn var(mut self, k: &str, v: &str) -> Self {
            self.vars.insert(k.into(), v.into());
            self
        }
        fn proc(mut self, pid: u32, parent: u32, comm: &'static str, exe: &'static str) -> Self {
            self.procs.insert(pid, (parent, comm, exe, pid as u64 * 10));
            self
        }
    }

    impl Host for Fake {
        fn var(&self, key: &str) -> Option<String> {
            self.vars.get(key).cloned()
        }
        fn me(&self) -> u32 {
            100
        }
        fn parent(&self, pid: u32) -> Option<u32> {
            self.procs.get(&pid).map(|p| p.0)
        }
        fn comm(&self, pid: u32) -> Option<String> {
            self.procs.get(&pid).map(|p| p.1.to_string())
        }
        fn exe(&self, pid: u32) -> Option<PathBuf> {
            self.procs.get(&pid).map(|p| PathBuf::from(p.2))
        }
        fn start(&self, pid: u32) -> Option<u64> {
            self.procs.get(&pid).map(|p| p.3)
        }
        fn identity(&self) -> String {
            "uid 1 on h".into()
        }
    }

    fn test_binary_under(parent_comm: &'static str) -> Fake {
        Fake::default()
            .proc(100, 50, "it-abc123", "/t/deps/it-abc123")
            .proc(50, 10, parent_comm, "/usr/bin/x")
            .proc(10, 1, "bash", "/bin/bash")
    }

    #[test]
    fn cargo_test_is_the_cargo_process() {
        let run = detect(&test_binary_under("cargo")).unwrap();
        assert_eq!(
            run.lifetime,
            Lifetime::Owner {
                pid: 50,
                start: 500
            }
        );
        assert_eq!(run.id, "cargo pid 50");
        assert!(run.session.starts_with("run-"));
    }

    #[test]
    fn nextest_is_its_run_id_and_process() {
        let h = test_binary_under("cargo-nextest").var("NEXTEST_RUN_ID", "u-1");
        let run = detect(&h).unwrap();
        assert_eq!(
            run.lifetime,
            Lifetime::Owner {
                pid: 50,
                start: 500
            }
        );
        assert_eq!(run.id, "nextest u-1");
        // Every process of the run agrees on the session.
        let other = Fake::default()
            .proc(100, 50, "it-other", "/t/deps/it-other")
            .proc(50, 10, "cargo-nextest", "/usr/bin/x")
            .var("NEXTEST_RUN_ID", "u-1");
        assert_eq!(detect(&other).unwrap().session, run.session);
        let next = test_binary_under("cargo-nextest").var("NEXTEST_RUN_ID", "u-2");
        assert_ne!(detect(&next).unwrap().session, run.session);
    }

    #[test]
    fn a_shell_or_an_ide_is_no_run() {
        assert_eq!(detect(&test_binary_under("bash")), None);
        assert_eq!(detect(&test_binary_under("rust-analyzer")), None);
        // NEXTEST_RUN_ID inherited by a process nextest did not start.
        assert_eq!(
            detect(&test_binary_under("cargo").var("NEXTEST_RUN_ID", "u")),
            None
        );
    }

    #[test]
    fn a_re_executed_test_binary_stays_in_its_run() {
        let h = Fake::default()
            .proc(100, 60, "it-abc123", "/t/deps/it-abc123")
            .proc(60, 50, "it-abc123", "/t/deps/it-abc123")
            .proc(50, 10, "cargo", "/usr/bin/cargo");
        assert_eq!(
            detect(&h).unwrap().lifetime,
            Lifetime::Owner {
                pid: 50,
                start: 500
            }
        );
    }

    #[test]
    fn share_process_turns_it_off_and_a_manual_id_names_it() {
        let off = test_binary_under("cargo").var("TESTDOCK_SHARE", "process");
        assert_eq!(detect(&off), None);
        let manual = detect(&test_binary_under("bash").var("TESTDOCK_RUN_ID", "ci-7")).unwrap();
        assert_eq!(manual.lifetime, Lifetime::Idle(MANUAL_IDLE));
        assert_eq!(manual.id, "manual ci-7");
    }

    #[test]
    fn reuse_is_per_user_and_machine_and_refused_in_ci() {
        let h = test_binary_under("cargo").var("TESTDOCK_REUSE", "10m");
        let run = detect(&h).unwrap();
        assert_eq!(run.lifetime, Lifetime::Idle(Duration::from_secs(600)));
        let in_ci = test_binary_under("cargo")
            .var("TESTDOCK_REUSE", "10m")
            .var("CI", "true");
        assert_eq!(
            detect(&in_ci).unwrap().lifetime,
            Lifetime::Owner {
                pid: 50,
                start: 500
            }
        );
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("45"), Some(Duration::from_secs(45)));
        assert_eq!(parse_duration("0"), None);
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn run_labels_name_the_runner_as_owner() {
        let run = Run {
            id: "cargo pid 50".into(),
            session: "run-x".into(),
            lifetime: Lifetime::Owner { pid: 50, start: 7 },
        };
        let l = labels(&run);
        assert_eq!(l[LABEL_SESSION], "run-x");
        assert_eq!(l[LABEL_PID], "50");
        assert_eq!(l[LABEL_PID_START], "7");
        assert_eq!(l[LABEL_RUN], "cargo pid 50");
        let idle = labels(&Run {
            lifetime: Lifetime::Idle(Duration::from_secs(60)),
            ..run
        });
        assert!(!idle.contains_key(LABEL_PID));
        assert_eq!(idle[LABEL_IDLE], "60");
    }
}
