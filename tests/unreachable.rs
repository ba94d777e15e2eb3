//! With no engine at the configured endpoint, every call fails with one
//! clear error naming what was tried. Needs no Docker: it runs everywhere.
//! Its own test binary, since the connection is made once per process.

use testdock::{ContainerSpec, Error};

#[tokio::test]
async fn an_unreachable_daemon_names_the_endpoint_and_the_fix() {
    // The only test in this process, so no other thread reads the
    // environment while it changes.
    std::env::set_var("DOCKER_HOST", "unix:///nonexistent/testdock.sock");
    let err = ContainerSpec::new("any:1").start().await.unwrap_err();
    match &err {
        Error::DockerUnavailable { tried } => {
            assert!(
                tried.contains("unix:///nonexistent/testdock.sock (no such socket)"),
                "{tried}"
            )
        }
        other => panic!("expected DockerUnavailable, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.starts_with("cannot reach a Docker engine"), "{msg}");
    assert!(msg.contains("set DOCKER_HOST"), "{msg}");

    // Nothing is cached: the next call tries again, and says the same.
    let again = testdock::docker().await.unwrap_err();
    assert!(matches!(again, Error::DockerUnavailable { .. }));

    // A bad bind path is reported before Docker is even asked.
    let err = ContainerSpec::new("any:1")
        .bind_mount("/definitely/not/here", "/x")
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BindPathMissing { .. }), "{err:?}");
}
