//! Following output as it comes, the consumer hook, recreate(), and a
//! failing test's logs printed from Drop.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{assert_gone, eventually, exists, shell, sleeper, unique};
use futures_util::StreamExt;
use testdock::{ContainerSpec, LogSource, WaitFor};

/// Set in the child that `a_failing_tests_logs_survive_a_closed_stderr`
/// starts: the name its container gets.
const PROBE: &str = "TESTDOCK_LOGS_PROBE";

#[tokio::test]
#[ignore = "requires Docker"]
async fn follow_logs_yields_lines_as_they_come_streams_apart() {
    let c = ContainerSpec::new(shell())
        .cmd([
            "sh",
            "-c",
            "echo one; echo two >&2; sleep 0.3; printf 'three\\nno newline'; exit 0",
        ])
        .start()
        .await
        .unwrap();
    let lines: Vec<_> = c.follow_logs().map(|l| l.unwrap()).collect().await;
    let got: Vec<(LogSource, String)> = lines
        .iter()
        .map(|l| (l.source, l.text().into_owned()))
        .collect();
    let stdout: Vec<&str> = got
        .iter()
        .filter(|(s, _)| *s == LogSource::Stdout)
        .map(|(_, t)| t.as_str())
        .collect();
    let stderr: Vec<&str> = got
        .iter()
        .filter(|(s, _)| *s == LogSource::Stderr)
        .map(|(_, t)| t.as_str())
        .collect();
    assert_eq!(stdout, ["one", "three", "no newline"]);
    assert_eq!(stderr, ["two"]);
    c.teardown().await.unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_log_consumer_sees_every_line() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let c = ContainerSpec::new(shell())
        .cmd([
            "sh",
            "-c",
            "for i in 1 2 3; do echo line-$i; done; exec sleep infinity",
        ])
        .log_consumer(move |line| sink.lock().unwrap().push(line.text().into_owned()))
        .start()
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "three lines consumed", || {
        std::future::ready(seen.lock().unwrap().len() == 3)
    })
    .await;
    assert_eq!(*seen.lock().unwrap(), ["line-1", "line-2", "line-3"]);
    c.teardown().await.unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn recreate_gives_a_fresh_container_from_the_same_spec() {
    let c = sleeper().env("KEPT", "from spec").start().await.unwrap();
    c.exec_ok(["touch", "/tmp/dirty"]).await.unwrap();
    let old = c.id().to_string();
    let c = c.recreate().await.unwrap();
    assert_ne!(c.id(), old);
    assert!(!exists(&old).await);
    let out = c
        .exec(["sh", "-c", "echo $KEPT; test -e /tmp/dirty"])
        .await
        .unwrap();
    assert_eq!(out.stdout_text(), "from spec\n");
    assert_eq!(out.exit_code, 1, "state survived the recreate");
    c.teardown().await.unwrap();
}

/// The child's side: a test that fails while holding a guard whose
/// container has printed something, so Drop prints it. Run alone (no
/// `TESTDOCK_LOGS_PROBE`), it fails inside `catch_unwind` and checks that
/// the container goes.
#[test]
#[ignore = "requires Docker"]
fn panicking_probe() {
    let child = std::env::var(PROBE).ok();
    let name = child.clone().unwrap_or_else(|| unique("panicking"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = rt
        .block_on(
            ContainerSpec::new(shell())
                .name(name.clone())
                .cmd(["sh", "-c", "echo probe-log-line; exec sleep infinity"])
                .wait_for(WaitFor::stdout_line("probe-log-line"))
                .start(),
        )
        .unwrap();
    if child.is_some() {
        panic!("the probe fails holding {name}");
    }
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _c = c;
        panic!("the probe fails holding a guard");
    }));
    assert!(failed.is_err());
    rt.block_on(assert_gone(&name));
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_failing_tests_logs_survive_a_closed_stderr() {
    // `cargo test -- --nocapture 2>&1 | head`: stderr is a pipe nobody
    // reads any more. Printing the logs from Drop must not panic there: a
    // panic while the test panics aborts the whole binary.
    for keep in ["never", "on-failure"] {
        let name = unique("closedstderr");
        probe_with_closed_stderr(&name, keep);
        if keep == "on-failure" {
            // Kept, and marked so: ours to remove.
            let kept = format!("{name}.kept");
            assert!(exists(&kept).await, "{kept} was not kept");
            let docker = testdock::docker().await.unwrap();
            let opts = testdock::bollard::query_parameters::RemoveContainerOptionsBuilder::new()
                .force(true)
                .build();
            docker
                .bollard()
                .remove_container(&kept, Some(opts))
                .await
                .unwrap();
        } else {
            assert_gone(&name).await;
        }
    }
}

/// Runs `panicking_probe` with stderr a pipe whose reader is gone, and
/// checks it ends as a failing test does.
fn probe_with_closed_stderr(name: &str, keep: &str) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "panicking_probe",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PROBE, name)
        .env("TESTDOCK_KEEP", keep)
        .stdin(Stdio::null())
        .stderr(writer)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        (out.status.code(), out.status.signal()),
        (Some(101), None),
        "TESTDOCK_KEEP={keep}: not a plain test failure: {stdout}"
    );
    assert!(
        stdout.contains("test panicking_probe ... FAILED"),
        "{stdout}"
    );
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_failing_tests_logs_are_captured_beside_the_failure() {
    // Captured, libtest prints a failing test's output under its name.
    let name = unique("captured");
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "panicking_probe", "--include-ignored"])
        .env(PROBE, &name)
        .env("TESTDOCK_KEEP", "never")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let section = stdout
        .split_once("---- panicking_probe stdout ----")
        .map(|(_, s)| s)
        .unwrap_or_else(|| panic!("no captured output: {stdout}"));
    assert!(
        section.contains(&format!(
            "testdock: last 50 lines of {name} stdout:\nprobe-log-line"
        )),
        "{stdout}"
    );
    assert_gone(&name).await;
}
