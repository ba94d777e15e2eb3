//! Whatever engine DOCKER_HOST (or discovery) picks — Docker, Podman, a
//! TCP endpoint — the doctor describes it and the basics work. `.ci/run`
//! runs this file against each engine it starts.

mod common;

use std::io::Read;
use std::net::TcpStream;

use common::{bound_ips, exists, greeter, sleeper, unique};
use testdock::{Error, WaitFor};

#[tokio::test]
#[ignore = "requires Docker"]
async fn the_doctor_describes_the_engine_and_its_checks_pass() {
    let report = testdock::doctor().await.unwrap();
    let engine = testdock::docker().await.unwrap();
    assert_eq!(report.endpoint, engine.endpoint());
    if let Ok(host) = std::env::var("DOCKER_HOST") {
        assert_eq!(report.endpoint, host);
        assert_eq!(report.source, "DOCKER_HOST");
    }
    let product = if engine.is_podman() {
        "Podman "
    } else {
        "Docker "
    };
    assert!(report.engine.starts_with(product), "{}", report.engine);
    assert!(!report.api_version.is_empty());
    let text = report.to_string();
    assert!(text.contains(engine.endpoint()), "{text}");
    assert_eq!(report.rootless, engine.is_rootless());
    // CI says which engine it started (rootless ones found by discovery
    // itself), so misjudging rootless shows.
    if let Ok(source) = std::env::var("TESTDOCK_TEST_EXPECT_SOURCE") {
        assert_eq!(report.source, source);
        let rootless = source.starts_with("rootless");
        assert_eq!(report.rootless, rootless);
        let line = if rootless { "yes" } else { "no" };
        assert!(text.contains(&format!("rootless      {line}")), "{text}");
    }
    if engine.is_local() {
        assert!(report.host_gateway.ok, "{}", report.host_gateway.detail);
        assert!(report.bind_mounts.ok, "{}", report.bind_mounts.detail);
        assert!(text.contains("host-gateway  ok"), "{text}");
    } else {
        // Both would reach the engine's machine, not this one: said so.
        for check in [&report.host_gateway, &report.bind_mounts] {
            assert!(!check.ok);
            assert!(check.detail.contains("another machine"), "{}", check.detail);
        }
    }
    assert_eq!(report.tls.is_some(), engine.tls_cert_dir().is_some());
    // What the environment asked for, as the Docker CLI reads it.
    if let Ok(host) = std::env::var("DOCKER_HOST") {
        let verify = std::env::var("DOCKER_TLS_VERIFY").is_ok_and(|v| !v.is_empty());
        assert_eq!(
            report.tls.is_some(),
            verify && host.starts_with("tcp://"),
            "{text}"
        );
    }
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn published_ports_are_reached_at_the_engines_host() {
    let engine = testdock::docker().await.unwrap();
    let c = greeter("hello from the engine")
        .wait_for(WaitFor::port(8080))
        .start()
        .await
        .unwrap();
    assert_eq!(c.host(), engine.host());
    let port = c.host_port(8080).await.unwrap();
    let mut reply = String::new();
    TcpStream::connect((c.host(), port))
        .unwrap()
        .read_to_string(&mut reply)
        .unwrap();
    assert_eq!(reply, "hello from the engine\n");

    // Loopback only where loopback is ours; a remote engine's loopback is
    // not, so there the port listens on the engine's interfaces.
    let want = if engine.is_local() {
        "127.0.0.1"
    } else {
        "0.0.0.0"
    };
    let bound = bound_ips(c.id(), 8080).await;
    assert!(
        !bound.is_empty() && bound.iter().all(|ip| ip == want),
        "{bound:?}"
    );
    c.teardown().await.unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn bind_mounts_work_on_a_local_engine_and_are_refused_by_a_remote_one() {
    let engine = testdock::docker().await.unwrap();
    let dir = std::env::temp_dir().join(unique("testdock-engines"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("marker"), "from this machine").unwrap();
    let name = unique("bind");
    let started = sleeper()
        .name(&name)
        .bind_mount_ro(&dir, "/mnt/here")
        .start()
        .await;
    if engine.is_local() {
        let c = started.unwrap();
        let out = c.exec(["cat", "/mnt/here/marker"]).await.unwrap();
        assert_eq!(out.stdout_text(), "from this machine");
        c.teardown().await.unwrap();
    } else {
        let err = started.unwrap_err();
        assert!(matches!(err, Error::RemoteBindMount { .. }), "{err:?}");
        assert!(err.to_string().contains("copy_file"), "{err}");
        // Refused before anything was created.
        assert!(!exists(&name).await);
    }
    std::fs::remove_dir_all(dir).unwrap();
}
