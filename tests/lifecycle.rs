//! The guard's lifecycle: teardown, Drop from every kind of test, panics,
//! failed starts, one-shot runs, stop/start, logs, limits.

mod common;

use std::time::Duration;

use common::{assert_gone, eventually, exists, shell, sleeper, unique};
use testdock::{ContainerSpec, Error};

#[tokio::test]
#[ignore = "requires Docker"]
async fn teardown_removes_and_reports() {
    let c = sleeper().start().await.unwrap();
    let id = c.id().to_string();
    assert!(exists(&id).await);
    c.teardown().await.unwrap();
    assert!(
        !exists(&id).await,
        "teardown returned before the container was gone"
    );
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn teardown_of_a_container_already_gone_is_ok() {
    let c = sleeper().start().await.unwrap();
    let docker = testdock::docker().await.unwrap();
    let opts = testdock::bollard::query_parameters::RemoveContainerOptionsBuilder::new()
        .force(true)
        .build();
    docker
        .bollard()
        .remove_container(c.id(), Some(opts))
        .await
        .unwrap();
    c.teardown().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
#[ignore = "requires Docker"]
async fn drop_in_current_thread_runtime_returns_at_once_and_removes() {
    let c = sleeper().start().await.unwrap();
    let id = c.id().to_string();
    drop(c);
    let returned = unix_nanos(std::time::SystemTime::now());
    assert_gone(&id).await;
    // The engine stamps the removal when it happens. Asking whether the
    // container still exists after `drop` would race the removal on a busy
    // machine; the engine's clock orders the two whatever the load.
    let removed = removal_nanos(&id).await;
    assert!(
        removed > returned,
        "Drop returned {} µs after the engine's last event for the container",
        (returned - removed) / 1000
    );
}

fn unix_nanos(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
}

/// When the engine recorded the removal of a container that is gone
/// (Docker's `destroy`, Podman's `remove`). Read as a stream up to that
/// event, not as a window with `until`: Podman stops reading its event log
/// when `until` passes, so on a long log under load the window came back
/// empty.
async fn removal_nanos(id: &str) -> i64 {
    use futures_util::StreamExt;
    let docker = testdock::docker().await.unwrap();
    let now = unix_nanos(std::time::SystemTime::now()) / 1_000_000_000;
    let filters = std::collections::HashMap::from([("container", vec![id])]);
    let opts = testdock::bollard::query_parameters::EventsOptionsBuilder::new()
        .since(&(now - 120).to_string())
        .filters(&filters)
        .build();
    let mut events = docker.bollard().events(Some(opts));
    let removal = async {
        while let Some(event) = events.next().await {
            let event = event.unwrap();
            if matches!(event.action.as_deref(), Some("destroy" | "remove")) {
                return event.time_nano;
            }
        }
        None
    };
    tokio::time::timeout(Duration::from_secs(30), removal)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("the engine reported no removal of {id} within 30 s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "requires Docker"]
async fn drop_in_multi_thread_runtime_removes() {
    let c = sleeper().start().await.unwrap();
    let id = c.id().to_string();
    drop(c);
    assert_gone(&id).await;
}

#[test]
#[ignore = "requires Docker"]
fn drop_in_plain_test_with_any_block_on_removes() {
    // futures' executor has no tokio reactor at all: everything must still
    // work, because testdock runs the I/O on its own runtime.
    let id = futures_executor::block_on(async {
        let c = sleeper().start().await.unwrap();
        let out = c.exec(["echo", "hi"]).await.unwrap();
        assert_eq!(out.stdout_text(), "hi\n");
        c.id().to_string()
        // c is dropped here, outside any tokio runtime
    });
    // The check itself uses raw bollard, which needs a tokio runtime.
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(assert_gone(&id));
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_panic_while_holding_a_guard_leaves_nothing() {
    let name = unique("panics");
    let n = name.clone();
    let handle = tokio::spawn(async move {
        let _c = sleeper().name(n).start().await.unwrap();
        panic!("test failure while the container runs");
    });
    assert!(handle.await.unwrap_err().is_panic());
    assert_gone(&name).await;
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn parallel_starts_never_collide() {
    let starts = (0..8).map(|i| async move {
        let c = sleeper().env("N", i.to_string()).start().await.unwrap();
        let out = c.exec(["sh", "-c", "echo $N"]).await.unwrap();
        assert_eq!(out.stdout_text(), format!("{i}\n"));
        (c.name().to_string(), c)
    });
    let started = futures_util::future::join_all(starts).await;
    let mut names: Vec<_> = started.iter().map(|(n, _)| n.clone()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 8);
    for (_, c) in started {
        c.teardown().await.unwrap();
    }
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_failed_start_removes_what_was_created() {
    let name = unique("badcmd");
    let err = sleeper()
        .name(name.clone())
        .cmd(["/no/such/binary"])
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Docker { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!("start container {name}")),
        "{err}"
    );
    assert!(
        !exists(&name).await,
        "the created container was left behind"
    );
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_name_in_use_is_an_error_and_the_first_container_stays() {
    let name = unique("taken");
    let first = sleeper().name(name.clone()).start().await.unwrap();
    let err = sleeper().name(name.clone()).start().await.unwrap_err();
    assert!(err.to_string().contains("create container"), "{err}");
    assert!(first.exec(["true"]).await.unwrap().is_success());
    first.teardown().await.unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn logs_keep_streams_apart_and_wait_returns_the_exit_code() {
    let c = ContainerSpec::new(shell())
        .cmd(["sh", "-c", "echo to-out; echo to-err >&2; exit 7"])
        .start()
        .await
        .unwrap();
    assert_eq!(c.wait().await.unwrap(), 7);
    let logs = c.logs().await.unwrap();
    assert_eq!(logs.stdout_text(), "to-out\n");
    assert_eq!(logs.stderr_text(), "to-err\n");
    c.teardown().await.unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn stop_start_and_restart() {
    let c = sleeper().init(true).start().await.unwrap();
    c.exec_ok(["touch", "/tmp/kept"]).await.unwrap();
    c.stop(Duration::from_secs(5)).await.unwrap();
    let err = c.exec(["true"]).await.unwrap_err();
    // Docker: "is not running"; Podman: "only ... on running containers".
    assert!(
        matches!(err, Error::Docker { .. }) && err.to_string().contains("running"),
        "{err}"
    );
    c.start().await.unwrap();
    c.exec_ok(["sh", "-c", "test -f /tmp/kept"]).await.unwrap();
    c.restart(Duration::from_secs(5)).await.unwrap();
    c.exec_ok(["sh", "-c", "test -f /tmp/kept"]).await.unwrap();
    c.teardown().await.unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn memory_and_cpu_limits_show_in_inspect() {
    let c = sleeper()
        .memory_limit(64 * 1024 * 1024)
        .cpu_limit(0.5)
        .start()
        .await
        .unwrap();
    let docker = testdock::docker().await.unwrap();
    let info = docker
        .bollard()
        .inspect_container(c.id(), None)
        .await
        .unwrap();
    let hc = info.host_config.unwrap();
    // Rootless Podman without cgroups v2 cannot apply limits, and drops
    // them (with a warning in its log).
    let cgroup_v2 = docker.bollard().info().await.unwrap().cgroup_version
        == Some(testdock::bollard::models::SystemInfoCgroupVersionEnum::_2);
    if cgroup_v2 || !(docker.is_podman() && docker.is_rootless()) {
        assert_eq!(hc.memory, Some(64 * 1024 * 1024));
        assert_eq!(hc.nano_cpus, Some(500_000_000));
    }
    assert_eq!(hc.privileged, Some(false));
    let labels = info.config.unwrap().labels.unwrap();
    assert_eq!(labels["testdock.managed"], "true");
    assert_eq!(labels["testdock.session"], testdock::session_id());
    assert_eq!(labels["testdock.pid"], std::process::id().to_string());
    c.teardown().await.unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn invalid_spec_is_refused_before_anything_is_created() {
    let name = unique("invalid");
    let err = sleeper()
        .name(name.clone())
        .cpu_limit(0.0)
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidSpec(_)), "{err:?}");
    assert!(!exists(&name).await);
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn run_returns_the_output_and_removes_the_container() {
    let name = unique("run");
    let out = ContainerSpec::new(shell())
        .name(name.clone())
        .cmd(["sh", "-c", "cat; echo err >&2; exit 4"])
        .stdin("from stdin\n")
        .network("none")
        .memory_limit(64 << 20)
        .timeout(Duration::from_secs(30))
        .run()
        .await
        .unwrap();
    assert_eq!(out.stdout_text(), "from stdin\n");
    assert_eq!(out.stderr_text(), "err\n");
    assert_eq!(out.exit_code, 4);
    assert!(!exists(&name).await);
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn run_times_out_with_partial_output_and_removes_the_container() {
    let name = unique("runhang");
    let err = ContainerSpec::new(shell())
        .name(name.clone())
        .cmd(["sh", "-c", "echo begun; sleep 60"])
        .timeout(Duration::from_secs(1))
        .run()
        .await
        .unwrap_err();
    match &err {
        Error::Timeout { output, .. } => assert_eq!(output.stdout_text(), "begun\n"),
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(!exists(&name).await, "timed-out run left its container");
}

/// Containers labelled `spare-test=<tag>` that were created and never
/// started: spares.
async fn spares_of(tag: &str) -> Vec<String> {
    let docker = testdock::docker().await.unwrap();
    let filters = std::collections::HashMap::from([
        ("label", vec![format!("spare-test={tag}")]),
        ("status", vec!["created".to_string()]),
    ]);
    let opts = testdock::bollard::query_parameters::ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let list = docker.bollard().list_containers(Some(opts)).await.unwrap();
    list.into_iter().filter_map(|c| c.id).collect()
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_shape_started_again_gets_a_spare_and_the_next_start_takes_it() {
    let tag = unique("shape");
    let spec = || sleeper().label("spare-test", &tag).env("SHAPE", "1");

    // Once is not a pattern: no spare.
    let first = spec().start().await.unwrap();
    first.teardown().await.unwrap();
    assert!(spares_of(&tag).await.is_empty());

    // Twice is: the next one is made in the background.
    let second = spec().start().await.unwrap();
    let tag2 = tag.clone();
    eventually(Duration::from_secs(10), "a spare is created", || {
        let tag = tag2.clone();
        async move { spares_of(&tag).await.len() == 1 }
    })
    .await;
    let spare = spares_of(&tag).await;

    // The next start takes it, and a new spare is made for the one after.
    let third = spec().start().await.unwrap();
    assert_eq!(third.id(), spare[0]);
    let out = third.exec(["sh", "-c", "echo $SHAPE"]).await.unwrap();
    assert_eq!(out.stdout_text(), "1\n");
    let (tag2, taken) = (tag.clone(), spare[0].clone());
    eventually(Duration::from_secs(10), "the next spare is created", || {
        let (tag, taken) = (tag2.clone(), taken.clone());
        async move {
            let now = spares_of(&tag).await;
            now.len() == 1 && now[0] != taken
        }
    })
    .await;

    // Another shape does not take it.
    let other = sleeper()
        .label("spare-test", &tag)
        .env("SHAPE", "2")
        .start()
        .await
        .unwrap();
    assert_eq!(spares_of(&tag).await.len(), 1);
    for c in [second, third, other] {
        c.teardown().await.unwrap();
    }
    // The last spare goes at exit, with the session (CI's leak check).
}
