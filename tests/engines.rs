//! Whatever engine DOCKER_HOST (or discovery) picks — Docker, Podman, a
//! TCP endpoint — the doctor describes it and the basics work. `.ci/run`
//! runs this file against each engine it starts.

mod common;

use common::sleeper;

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
    assert!(report.host_gateway.ok, "{}", report.host_gateway.detail);
    assert!(report.bind_mounts.ok, "{}", report.bind_mounts.detail);
    let text = report.to_string();
    assert!(text.contains(engine.endpoint()), "{text}");
    assert!(text.contains("host-gateway  ok"), "{text}");
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn published_ports_are_reached_at_the_engines_host() {
    let engine = testdock::docker().await.unwrap();
    let c = sleeper().expose(8080).start().await.unwrap();
    assert_eq!(c.host(), engine.host());
    // The engine publishes the port on an address this process can use.
    assert!(c.host_port(8080).await.unwrap() > 0);
    if engine.is_local() {
        assert_eq!(c.host(), "127.0.0.1");
    }
    c.teardown().await.unwrap();
}
