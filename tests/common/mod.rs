//! Shared helpers for the integration tests: images made on this machine
//! (no registry) and waiting on conditions with a deadline.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use testdock::{ContainerSpec, HostImage, Image};

pub mod runner;

/// `sh`, `bash`, core tools — what most tests exec into.
pub fn shell() -> Image {
    HostImage::shell().into()
}

/// The shell image plus perl and its core modules, for a tiny TCP server
/// inside a container.
pub fn shell_with_perl() -> Image {
    let out = std::process::Command::new("perl")
        .args([
            "-e",
            r#"print((grep { -f "$_/IO/Socket/INET.pm" } @INC)[0])"#,
        ])
        .output()
        .expect("perl is part of every Debian system");
    let lib = String::from_utf8(out.stdout).unwrap();
    assert!(!lib.is_empty(), "no perl library dir with IO::Socket::INET");
    HostImage::shell().binary("perl").path(lib).into()
}

/// A container whose TCP port 8080 answers every connection with `line`
/// (a newline added) and closes it; published.
pub fn greeter(line: &str) -> ContainerSpec {
    let server = format!(
        r#"use IO::Socket::INET;
        my $s = IO::Socket::INET->new(LocalPort => 8080, Listen => 5, ReuseAddr => 1) or die "listen: $!";
        while (my $c = $s->accept) {{ print $c "{line}\n"; close $c }}"#
    );
    ContainerSpec::new(shell_with_perl())
        .cmd(["perl", "-e", &server])
        .expose(8080)
}

/// The host addresses the engine bound container port `port` to.
pub async fn bound_ips(id: &str, port: u16) -> Vec<String> {
    let docker = testdock::docker().await.unwrap();
    let info = docker.bollard().inspect_container(id, None).await.unwrap();
    let ports = info.network_settings.unwrap().ports.unwrap();
    ports[&format!("{port}/tcp")]
        .iter()
        .flatten()
        .map(|b| b.host_ip.clone().unwrap_or_default())
        .collect()
}

/// A long-running container of the shell image.
pub fn sleeper() -> ContainerSpec {
    ContainerSpec::new(shell()).cmd(["sleep", "infinity"])
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// Polls `check` until it returns true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not true within {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether a container with this id or name exists.
pub async fn exists(id_or_name: &str) -> bool {
    use testdock::bollard::errors::Error;
    let docker = testdock::docker().await.unwrap();
    match docker.bollard().inspect_container(id_or_name, None).await {
        Ok(_) => true,
        Err(Error::DockerResponseServerError {
            status_code: 404, ..
        }) => false,
        // Podman, while removing: "does not exist in database".
        Err(Error::DockerResponseServerError {
            status_code: 500,
            message,
        }) if message.contains("no such container") => false,
        // Podman reports a state ("stopped") bollard cannot read: it is
        // there.
        Err(Error::JsonDataError { .. }) => true,
        Err(e) => panic!("inspect {id_or_name}: {e}"),
    }
}

/// Waits until the container is gone (10 s at most).
pub async fn assert_gone(id: &str) {
    let id = id.to_string();
    eventually(
        Duration::from_secs(10),
        &format!("container {id} removed"),
        || {
            let id = id.clone();
            async move { !exists(&id).await }
        },
    )
    .await;
}

/// Runs this test binary's `test` alone in a child process with `env` (a
/// test made to fail there); returns whether it passed, its stdout and
/// stderr together, and the id of the container it said it kept. The child
/// shares nothing with the run: what it keeps, the caller removes, and the
/// run's servers are in use by the other tests.
pub async fn run_child_test(test: &str, env: &[(&str, &str)]) -> (bool, String, Option<String>) {
    let exe = std::env::current_exe().unwrap();
    let (test, env): (String, Vec<(String, String)>) = (
        test.to_string(),
        env.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    // A blocking wait on a blocking thread: the child takes seconds.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(exe)
            .args([&test, "--exact", "--include-ignored", "--test-threads=1"])
            .env("TESTDOCK_SHARE", "process")
            .envs(env)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let kept = text
        .lines()
        .find_map(|l| l.split("testdock: kept container ").nth(1))
        .and_then(|rest| rest.split(['(', ')']).nth(1))
        .map(str::to_string);
    (out.status.success(), text, kept)
}

/// Removes a container, forced, with its volumes: what a kept one needs.
pub async fn remove_forced(id: &str) {
    let opts = testdock::bollard::query_parameters::RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    let docker = testdock::docker().await.unwrap();
    docker
        .bollard()
        .remove_container(id, Some(opts))
        .await
        .unwrap();
}
