//! The watchdog: a second process that cleans up after this one, however
//! this one ends — SIGKILL, SIGTERM, a nextest timeout, Ctrl-C.
//!
//! Before the process creates its first resource of its own (a process
//! that only joins the run's server owns none, and starts none), it
//! re-executes its own binary with
//! [`MARKER`] set; the constructor below sees it before `main` and runs the
//! watchdog instead of the program. The watchdog holds the read end of a
//! pipe whose write end lives in a static of this process that is never
//! dropped, so the pipe closes exactly when this process is gone. Then the
//! watchdog removes everything labelled with this session (kept containers
//! aside) and exits. No image, no privileged sidecar, works offline and on
//! any engine.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};

use once_cell::sync::OnceCell;

use crate::discovery::Tls;
use crate::reaper::finish_settled;
use crate::session::session_id;

/// Set in the watchdog's environment to the session it guards.
const MARKER: &str = "TESTDOCK_WATCHDOG_SESSION";

/// The pipe's write end: held, never dropped, written only at exit.
static PIPE: OnceCell<std::io::PipeWriter> = OnceCell::new();

/// Written by an owner whose exit hook finished its session with nothing
/// in flight: the watchdog then looks once, not for seconds.
const CLEAN: u8 = b'.';
/// Written by a create begun while the exit hook runs: whatever came
/// before, the watchdog settles.
const UNCLEAN: u8 = b'!';

/// Tells the watchdog, if there is one, that this process ends cleanly.
pub(crate) fn clean_exit() {
    tell(CLEAN);
}

/// Tells the watchdog that a create may land after this process is gone.
pub(crate) fn unclean_exit() {
    tell(UNCLEAN);
}

fn tell(byte: u8) {
    // Not in a forked child (its copy is closed), and only where SIGPIPE is
    // ignored (Rust's `main` ignores it): a watchdog that is gone must not
    // kill a host program whose `main` is not Rust's.
    if PIPE_FD.load(Ordering::Relaxed) < 0 || !sigpipe_ignored() {
        return;
    }
    if let Some(mut w) = PIPE.get() {
        let _ = w.write_all(&[byte]);
    }
}

fn sigpipe_ignored() -> bool {
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) } == 0;
    ok && old.sa_sigaction == libc::SIG_IGN
}

/// What the owner said down the pipe before it closed: clean only if it
/// said so and no create said otherwise.
fn said_clean(clean: &mut Option<bool>, bytes: &[u8]) {
    for &b in bytes {
        match b {
            CLEAN => *clean = Some(clean.unwrap_or(true)),
            UNCLEAN => *clean = Some(false),
            _ => {}
        }
    }
}
static PID: OnceCell<u32> = OnceCell::new();

/// Whether this process is a watchdog (then it must start nothing).
pub(crate) fn is_watchdog() -> bool {
    std::env::var_os(MARKER).is_some() || crate::run::is_run_watchdog()
}

/// The watchdog's pid, once started. For tests that wait for it to finish.
#[doc(hidden)]
pub fn watchdog_pid() -> Option<u32> {
    PID.get().copied()
}

/// Starts the watchdog unless it runs already, and returns once it does
/// (or could not be started): a create sent after this is guarded.
pub(crate) async fn ensure_started() {
    if is_watchdog() || PIPE.get().is_some() {
        return;
    }
    let Ok(engine) = crate::engine::engine().await else {
        return;
    };
    let (endpoint, tls) = (engine.endpoint().to_string(), engine.tls().clone());
    // Fork and exec block for a few ms: not on the runtime's workers.
    let _ = tokio::task::spawn_blocking(move || start(&endpoint, &tls)).await;
}

/// Starts the watchdog for this session, talking to `endpoint`. Once per
/// process, however many ask at once; blocking (fork and exec).
fn start(endpoint: &str, tls: &Tls) {
    static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    if is_watchdog() || PIPE.get().is_some() {
        return;
    }
    if let Err(e) = spawn(endpoint, tls) {
        tracing::warn!(error = %e, "could not start the watchdog");
        eprintln!(
            "testdock: could not start the watchdog ({e}); containers of this process are still \
             removed on a normal exit, but not if it is killed"
        );
    }
}

fn spawn(endpoint: &str, tls: &Tls) -> std::io::Result<()> {
    // Both ends are close-on-exec: no other child of ours holds the write
    // end open after we die.
    let (reader, writer) = std::io::pipe()?;
    let child = command(endpoint, tls)?
        .env(MARKER, session_id())
        .stdin(reader)
        // Inherited outputs would keep `cargo test | tee` waiting and make
        // nextest call the test leaky.
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: a terminal's Ctrl-C (and nextest's signal
        // to the test's group) must not kill it with us.
        .process_group(0)
        .spawn()?;
    let _ = PID.set(child.id());
    PIPE_FD.store(writer.as_raw_fd(), Ordering::Relaxed);
    let _ = PIPE.set(writer);
    // A forked child must not hold the write end: while it lived, our
    // death would not close the pipe and the watchdog would not fire.
    unsafe { libc::pthread_atfork(None, None, Some(close_pipe_in_child)) };
    tracing::debug!(pid = child.id(), session = session_id(), "watchdog started");
    Ok(())
}

static PIPE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn close_pipe_in_child() {
    let fd = PIPE_FD.swap(-1, Ordering::Relaxed);
    if fd >= 0 {
        unsafe { libc::close(fd) };
    }
}

/// This binary re-executed to clean up, talking to the engine at
/// `endpoint` — the one we found, however we found it (a context, say),
/// spelled as DOCKER_HOST and its TLS settings. The run's watchdogs use it
/// too.
pub(crate) fn command(endpoint: &str, tls: &Tls) -> std::io::Result<Command> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.env("DOCKER_HOST", endpoint).env_remove("DOCKER_TLS");
    match tls {
        Tls::Verify(dir) => cmd
            .env("DOCKER_TLS_VERIFY", "1")
            .env("DOCKER_CERT_PATH", dir),
        _ => cmd.env_remove("DOCKER_TLS_VERIFY"),
    };
    // Should the constructor not run, a test harness runs no test.
    cmd.args(["--exact", "__testdock_watchdog__"]);
    Ok(cmd)
}

/// Runs before `main` in every binary linking testdock; returns at once
/// unless this process is a watchdog.
#[ctor::ctor(unsafe)]
fn intercept() {
    if let Ok(session) = std::env::var(MARKER) {
        run(&session);
        std::process::exit(0);
    }
}

fn run(session: &str) {
    let mut buf = [0u8; 64];
    let mut stdin = std::io::stdin();
    let mut clean = None;
    loop {
        match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => said_clean(&mut clean, &buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    // Seen only by a subscriber in this process, which normally has none
    // (the program's `main` never runs here): then a no-op.
    tracing::debug!(session, "watchdog fired: its owner is gone");
    finish_settled(session, clean == Some(true));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_only_when_said_and_no_create_said_otherwise() {
        let verdict = |bytes: &[&[u8]]| {
            let mut clean = None;
            for b in bytes {
                said_clean(&mut clean, b);
            }
            clean == Some(true)
        };
        assert!(!verdict(&[]), "silence is an unclean death");
        assert!(verdict(&[b"."]));
        assert!(!verdict(&[b"!", b"."]), "a late create, then the hook");
        assert!(!verdict(&[b".!"]));
        assert!(!verdict(&[b"!"]));
    }
}
