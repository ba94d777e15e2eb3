//! Lifecycle extras: pause and unpause, stats snapshots, the OCI runtime.

mod common;

use std::time::Duration;

use common::{assert_gone, eventually, exists, shell, sleeper, unique};
use testdock::bollard::errors::Error as DockerError;
use testdock::{ContainerSpec, Error, TestContainer};

/// A container whose main process counts, 20 a second, into a file:
/// progress that can be seen from outside, without the log pipeline's
/// delay (lines printed before a pause may still reach the logs after it).
fn counter() -> ContainerSpec {
    ContainerSpec::new(shell()).cmd([
        "sh",
        "-c",
        "i=0; while :; do i=$((i+1)); echo $i > /tmp/n.new; mv /tmp/n.new /tmp/n; sleep 0.05; done",
    ])
}

/// The count so far (read through the archive API, which works paused),
/// or none before the first.
async fn count(c: &TestContainer) -> Option<u64> {
    let n = c.read_file("/tmp/n").await.ok()?;
    Some(String::from_utf8_lossy(&n).trim().parse().unwrap())
}

fn status(e: &Error) -> Option<u16> {
    match e {
        Error::Docker {
            cause: DockerError::DockerResponseServerError { status_code, .. },
            ..
        } => Some(*status_code),
        _ => None,
    }
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_paused_container_makes_no_progress_and_resumes_on_unpause() {
    let c = counter().start().await.unwrap();
    eventually(Duration::from_secs(10), "the counter runs", || async {
        count(&c).await >= Some(3)
    })
    .await;

    c.pause().await.unwrap();
    let err = c.exec(["true"]).await.unwrap_err();
    assert_eq!(status(&err), Some(409), "{err}");
    assert!(err.to_string().contains("paused"), "{err}");
    let err = c.pause().await.unwrap_err();
    // Docker answers 409, Podman 500 ("already paused").
    assert!(
        matches!(status(&err), Some(409 | 500)),
        "pausing twice: {err}"
    );
    assert!(err.to_string().contains("paused"), "pausing twice: {err}");

    // Not a wait for something to happen but a check that nothing does: at
    // 20 a second, half a second without a step means frozen.
    let frozen = count(&c).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        count(&c).await,
        Some(frozen),
        "a paused container counted on"
    );
    // Files can still be read while paused.
    assert!(!c.read_file("/etc/passwd").await.unwrap().is_empty());

    c.unpause().await.unwrap();
    eventually(Duration::from_secs(10), "the counter resumes", || async {
        count(&c).await > Some(frozen + 2)
    })
    .await;
    c.exec_ok(["true"]).await.unwrap();
    let err = c.unpause().await.unwrap_err();
    assert!(err.to_string().contains("not paused"), "{err}");
    c.teardown().await.unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_paused_container_is_still_removed() {
    let c = sleeper().start().await.unwrap();
    c.pause().await.unwrap();
    let id = c.id().to_string();
    c.teardown().await.unwrap();
    assert!(!exists(&id).await);

    let c = sleeper().start().await.unwrap();
    c.pause().await.unwrap();
    let id = c.id().to_string();
    drop(c);
    assert_gone(&id).await;
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn stats_report_memory_in_use_and_the_limit_set() {
    let c = sleeper().memory_limit(64 << 20).start().await.unwrap();
    let s = c.stats().await.unwrap();
    assert!(s.memory_bytes > 0, "{s:?}");
    assert!(s.memory_bytes < 64 << 20, "{s:?}");
    assert_eq!(s.memory_limit_bytes, 64 << 20, "{s:?}");
    assert!(s.pids >= 1, "{s:?}");

    // 16 MiB written to /dev/shm (a tmpfs: memory, not reclaimable
    // cache) is charged to the container.
    let idle = s.memory_bytes;
    c.exec_ok(["sh", "-c", "head -c 16777216 /dev/zero > /dev/shm/fill"])
        .await
        .unwrap();
    eventually(
        Duration::from_secs(20),
        "memory use grows by 16 MiB",
        || async { c.stats().await.unwrap().memory_bytes >= idle + (16 << 20) },
    )
    .await;
    c.teardown().await.unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn stats_report_cpu_use_of_a_busy_container() {
    let c = sleeper().start().await.unwrap();
    let idle = c.stats().await.unwrap();
    assert!(idle.cpu_percent < 50.0, "{idle:?}");

    c.exec_ok(["sh", "-c", "sh -c 'while :; do :; done' >/dev/null 2>&1 &"])
        .await
        .unwrap();
    // Others may share the machine: a busy loop gets well over a tenth of
    // a core all the same.
    eventually(Duration::from_secs(20), "a busy loop shows", || async {
        c.stats().await.unwrap().cpu_percent > 10.0
    })
    .await;
    let busy = c.stats().await.unwrap();
    assert!(busy.cpu_time > idle.cpu_time, "{busy:?}");
    assert!(busy.cpu_percent <= 100.0 * 2.0 + 1.0, "{busy:?}");
    c.teardown().await.unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn an_unknown_runtime_is_refused_by_start_and_runc_runs() {
    let name = unique("td-runtime");
    if testdock::docker().await.unwrap().is_podman() {
        // Podman's Docker API ignores `HostConfig.Runtime`: nothing to refuse.
        return;
    }
    let err = sleeper()
        .name(&name)
        .runtime("no-such-runtime")
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Docker { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-runtime"), "{err}");
    assert!(!exists(&name).await, "{name} was left behind");

    let c = sleeper().runtime("runc").start().await.unwrap();
    let info = testdock::docker()
        .await
        .unwrap()
        .bollard()
        .inspect_container(c.id(), None)
        .await
        .unwrap();
    assert_eq!(
        info.host_config.and_then(|h| h.runtime).as_deref(),
        Some("runc")
    );
    c.exec_ok(["true"]).await.unwrap();
    c.teardown().await.unwrap();
}
