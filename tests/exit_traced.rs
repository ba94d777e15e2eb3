//! The exit hook under a formatting subscriber, in a program whose main
//! thread emitted events (as under `#[tokio::main]`): by the time the hook
//! runs, that thread's thread-locals are gone, and tracing-subscriber's fmt
//! needs them. Its own `main` (`harness = false` in Cargo.toml): libtest's
//! main thread never emits, so a libtest child would not show it.

mod common;

use std::process::Command;

/// Set in the child's environment.
const CHILD: &str = "TESTDOCK_TEST_EXIT_TRACED";

fn main() {
    if std::env::var_os(CHILD).is_some() {
        return child();
    }
    // The Docker tests' gate: `--include-ignored` or `--ignored`.
    if !std::env::args().any(|a| a == "--include-ignored" || a == "--ignored") {
        println!("exit_traced: ignored, requires Docker (run with --include-ignored)");
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for message in [
        "container teardown",
        "container dropped; removal queued",
        "exit hook: waiting for queued removals",
        "exit hook done",
    ] {
        assert!(stderr.contains(message), "no {message:?} in:\n{stderr}");
    }
    println!("exit_traced: ok");
}

/// Traced as the README shows; one container torn down from this thread,
/// one dropped, so the exit hook has a removal to wait for.
#[tokio::main]
async fn child() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("testdock=debug"))
        .with_writer(std::io::stderr)
        .try_init();
    let c = common::sleeper().start().await.unwrap();
    c.teardown().await.unwrap();
    let dropped = common::sleeper().start().await.unwrap();
    drop(dropped);
}
