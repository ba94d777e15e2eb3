//! Following output as it comes, the consumer hook, and recreate().

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, exists, shell, sleeper};
use futures_util::StreamExt;
use testdock::{ContainerSpec, LogSource};

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
