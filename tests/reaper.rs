//! Nothing leaks, however the process ends. Each scenario runs this test
//! binary again as a child (the `probe` test, with `TESTDOCK_PROBE` set),
//! lets it start containers, ends it one way or another, and waits for its
//! session's resources to disappear.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{eventually, shell, sleeper, unique};
use testdock::bollard::models::ContainerCreateBody;
use testdock::bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListVolumesOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use testdock::{ContainerSpec, SharedContainer};

const PROBE: &str = "TESTDOCK_PROBE";

/// Removed only by the exit hook or the watchdog: statics never drop.
static SHARED: SharedContainer =
    SharedContainer::new(|| ContainerSpec::new(shell()).cmd(["sleep", "infinity"]));

/// The child's side. Run alone (no `TESTDOCK_PROBE`), a plain test of a
/// shared container next to a guard. In a child it starts the same, prints
/// `READY <session> <watchdog pid> <container id>`, and ends as told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "requires Docker"]
async fn probe() {
    let mode = std::env::var(PROBE).unwrap_or_default();
    // A non-interactive parent may have left SIGINT ignored; Ctrl-C must
    // act on the probe as on any test.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
    if mode == "midstart" {
        // The watchdog starts with the first create of the process's own,
        // before that create is sent: the parent kills once one exists.
        let starts = (0..4).map(|_| sleeper().start());
        let starts = tokio::spawn(futures_util::future::join_all(starts));
        let watchdog = wait_for_watchdog().await;
        println!("READY {} {watchdog} -", testdock::session_id());
        let _all = starts.await;
        std::future::pending::<()>().await;
    }
    if mode == "fixed" {
        let name = std::env::var("PROBE_NAME").unwrap();
        let c = sleeper().name(name).start().await.unwrap();
        println!(
            "READY {} {} {}",
            testdock::session_id(),
            wait_for_watchdog().await,
            c.id()
        );
        tokio::task::spawn_blocking(|| {
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new())
        })
        .await
        .unwrap()
        .unwrap();
        panic!("the probe fails while holding a fixed-name container");
    }
    let shared = SHARED.get().await.unwrap();
    let c = ContainerSpec::new(shell())
        .cmd(["sh", "-c", "echo probe-log-line; exec sleep infinity"])
        .volume(unique("probevol"), "/v")
        .start()
        .await
        .unwrap();
    c.exec_ok(["true"]).await.unwrap();
    shared.exec_ok(["true"]).await.unwrap();
    let watchdog = wait_for_watchdog().await;
    println!("READY {} {watchdog} {}", testdock::session_id(), c.id());
    if mode == "fork" || mode == "fork-exit" {
        // A forked child inherits the session's statics and the watchdog
        // pipe, but none of the engine's threads.
        let t0 = Instant::now();
        let child = unsafe { libc::fork() };
        if child == 0 {
            if mode == "fork" {
                unsafe { libc::sleep(120) };
            }
            // Runs the exit hooks, testdock's among them.
            unsafe { libc::exit(0) };
        }
        if mode == "fork-exit" {
            let mut status = 0;
            unsafe { libc::waitpid(child, &mut status, 0) };
            let took = t0.elapsed();
            // The parent's session is intact.
            c.exec_ok(["true"]).await.unwrap();
            shared.exec_ok(["true"]).await.unwrap();
            println!("CHILD {child} {}", took.as_millis());
        } else {
            println!("CHILD {child} -");
        }
        std::future::pending::<()>().await;
    }
    // A probe that ends by itself waits until the parent has counted what
    // it owns (stdin closes): a fast engine would remove it all first. Run
    // alone, it has no parent, and its stdin may be a terminal.
    if std::env::var_os(PROBE).is_some() && mode != "wait" {
        tokio::task::spawn_blocking(|| {
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new())
        })
        .await
        .unwrap()
        .unwrap();
    }
    match mode.as_str() {
        "" => {
            assert!(
                std::ptr::eq(shared, SHARED.get().await.unwrap()),
                "one shared container per process"
            );
            c.teardown().await.unwrap();
        }
        "return" => {}
        "panic" => panic!("the probe fails while holding containers"),
        "exit" => std::process::exit(1),
        "wait" => std::future::pending::<()>().await,
        other => panic!("unknown probe mode {other}"),
    }
}

async fn wait_for_watchdog() -> u32 {
    let mut pid = None;
    eventually(Duration::from_secs(10), "watchdog started", || {
        pid = testdock::watchdog_pid();
        std::future::ready(pid.is_some())
    })
    .await;
    pid.unwrap()
}

struct Probe {
    child: Child,
    /// Closed by `go`: a self-ending probe then ends.
    stdin: Option<std::process::ChildStdin>,
    session: String,
    watchdog: u32,
    container: String,
    stderr: mpsc::Receiver<String>,
    /// Later lines: `CHILD <pid> <ms>` from the fork modes.
    lines: mpsc::Receiver<String>,
}

impl Probe {
    /// Lets a probe that ends by itself go on and end.
    fn go(&mut self) {
        self.stdin.take();
    }
}

/// Starts the probe in `mode`, in its own process group, and waits for it
/// to report ready.
fn spawn_probe(mode: &str, env: &[(&str, &str)]) -> Probe {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "probe",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PROBE, mode)
        // The probe's shared container is the probe's own: these tests are
        // about a process's cleanup (tests/sharing.rs has the run's).
        .env("TESTDOCK_SHARE", "process")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let out = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            // libtest may have printed "test probe ... " on the same line.
            if let Some((_, rest)) = line.split_once("READY ") {
                let _ = tx.send(rest.to_string());
            } else if let Some((_, rest)) = line.split_once("CHILD ") {
                let _ = tx.send(format!("CHILD {rest}"));
            }
        }
    });
    let (etx, erx) = mpsc::channel();
    let err = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in err.lines().map_while(Result::ok) {
            let _ = etx.send(line);
        }
    });
    let ready = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| {
            panic!(
                "probe {mode} never got ready; stderr: {:?}",
                erx.try_iter().collect::<Vec<_>>()
            )
        });
    let parts: Vec<&str> = ready.split(' ').collect();
    Probe {
        stdin: child.stdin.take(),
        child,
        session: parts[0].to_string(),
        watchdog: parts[1].parse().unwrap(),
        container: parts[2].to_string(),
        stderr: erx,
        lines: rx,
    }
}

impl Drop for Probe {
    /// A failed assertion must not leave a probe running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: i32, sig: i32) {
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
}

/// Containers, networks and volumes of `session`.
async fn owned_by(session: &str) -> usize {
    let d = testdock::docker().await.unwrap();
    let d = d.bollard();
    let filters = HashMap::from([("label", vec![format!("testdock.session={session}")])]);
    let opts = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let c = loop {
        match d.list_containers(Some(opts.clone())).await {
            // Podman's transient "stopped" state, unreadable by bollard:
            // something is still there.
            Err(testdock::bollard::errors::Error::JsonDataError { .. }) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => break other.unwrap().len(),
        }
    };
    let n = d
        .list_networks(Some(
            testdock::bollard::query_parameters::ListNetworksOptionsBuilder::new()
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap()
        .len();
    let v = d
        .list_volumes(Some(
            ListVolumesOptionsBuilder::new().filters(&filters).build(),
        ))
        .await
        .unwrap()
        .volumes
        .unwrap_or_default()
        .len();
    c + n + v
}

/// Waits (10 s at most) until nothing of `session` is left; returns how long
/// that took from `since`.
async fn gone_within_10s(session: &str, since: Instant, how: &str) -> Duration {
    let s = session.to_string();
    eventually(
        Duration::from_secs(10),
        &format!("{how}: session {session} cleaned up"),
        || {
            let s = s.clone();
            async move { owned_by(&s).await == 0 }
        },
    )
    .await;
    let took = since.elapsed();
    eprintln!("reaper: {how}: everything gone {took:?} after the end");
    took
}

fn process_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

async fn end_and_check(mode: &str, how: &str, end: impl FnOnce(&Probe)) {
    let mut p = spawn_probe(mode, &[]);
    assert!(
        owned_by(&p.session).await >= 3,
        "probe owns two containers and a volume"
    );
    let since = Instant::now();
    p.go();
    end(&p);
    let status = tokio::task::spawn_blocking(move || {
        let s = p.child.wait().unwrap();
        (s, p)
    })
    .await
    .unwrap();
    let (_status, p) = status;
    let exited = Instant::now();
    gone_within_10s(&p.session, since, how).await;
    // The exit hook ran (return, panic, exit): it told the watchdog, which
    // looks once. Else the watchdog keeps looking for 5 s from the death,
    // for creates that land late.
    let clean = matches!(mode, "return" | "panic" | "exit");
    if clean {
        eventually(
            Duration::from_millis(4500),
            "watchdog exited before a settle could have ended",
            || std::future::ready(!process_alive(p.watchdog)),
        )
        .await;
    } else {
        tokio::time::sleep_until((exited + Duration::from_secs(2)).into()).await;
        assert!(
            process_alive(p.watchdog),
            "the watchdog stopped looking within 2 s of an unclean death ({how})"
        );
    }
    eventually(Duration::from_secs(30), "watchdog exited", || {
        std::future::ready(!process_alive(p.watchdog))
    })
    .await;
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn normal_return_leaves_nothing() {
    end_and_check("return", "return", |_| {}).await;
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn panic_leaves_nothing() {
    end_and_check("panic", "panic", |_| {}).await;
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn process_exit_leaves_nothing() {
    end_and_check("exit", "process::exit(1)", |_| {}).await;
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn sigterm_leaves_nothing() {
    end_and_check("wait", "SIGTERM", |p| {
        signal(p.child.id() as i32, libc::SIGTERM)
    })
    .await;
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn ctrl_c_to_the_process_group_leaves_nothing() {
    // As a terminal does: SIGINT to the whole foreground group. The
    // watchdog has its own group and survives to clean up.
    end_and_check("wait", "SIGINT to the group", |p| {
        signal(-(p.child.id() as i32), libc::SIGINT)
    })
    .await;
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn sigkill_leaves_nothing() {
    end_and_check("wait", "SIGKILL", |p| {
        signal(p.child.id() as i32, libc::SIGKILL)
    })
    .await;
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn sigkill_mid_start_leaves_nothing() {
    let mut p = spawn_probe("midstart", &[]);
    // Kill as soon as the first of its four containers exists: the others
    // are then somewhere between create and start.
    let s = p.session.clone();
    eventually(Duration::from_secs(20), "a first container created", || {
        let s = s.clone();
        async move { owned_by(&s).await > 0 }
    })
    .await;
    let since = Instant::now();
    signal(p.child.id() as i32, libc::SIGKILL);
    p.child.wait().unwrap();
    gone_within_10s(&p.session, since, "SIGKILL mid-start").await;
    // Creates in flight when the owner died land late; the watchdog looks
    // again before it exits.
    eventually(Duration::from_secs(30), "watchdog exited", || {
        std::future::ready(!process_alive(p.watchdog))
    })
    .await;
    assert_eq!(owned_by(&p.session).await, 0);
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_forked_child_neither_finishes_nor_holds_its_parents_session() {
    // A child that exits at once does not wait in the exit hook, and
    // removes nothing of its parent's.
    let p = spawn_probe("fork-exit", &[]);
    let line = p.lines.recv_timeout(Duration::from_secs(60)).unwrap();
    let ms: u64 = line.split(' ').nth(2).unwrap().parse().unwrap();
    assert!(ms < 5_000, "the forked child took {ms} ms to exit");
    assert!(
        owned_by(&p.session).await >= 2,
        "the child removed the parent's containers"
    );
    drop(p);

    // A child alive when its parent is killed does not keep the parent's
    // watchdog from firing.
    let p = spawn_probe("fork", &[]);
    let line = p.lines.recv_timeout(Duration::from_secs(60)).unwrap();
    let child: i32 = line.split(' ').nth(1).unwrap().parse().unwrap();
    let killed = Instant::now();
    signal(p.child.id() as i32, libc::SIGKILL);
    gone_within_10s(&p.session, killed, "SIGKILL with a forked child alive").await;
    assert!(process_alive(child as u32), "the child outlived its parent");
    signal(child, libc::SIGKILL);
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn killing_one_session_leaves_the_others_alone() {
    let mine = sleeper().start().await.unwrap();
    let mut a = spawn_probe("wait", &[]);
    let mut b = spawn_probe("wait", &[]);
    let b_before = owned_by(&b.session).await;
    let since = Instant::now();
    signal(a.child.id() as i32, libc::SIGKILL);
    a.child.wait().unwrap();
    gone_within_10s(&a.session, since, "SIGKILL of one of two").await;
    eventually(Duration::from_secs(30), "watchdog exited", || {
        std::future::ready(!process_alive(a.watchdog))
    })
    .await;

    assert_eq!(
        owned_by(&b.session).await,
        b_before,
        "the other session lost resources"
    );
    let d = testdock::docker().await.unwrap();
    let state = d
        .bollard()
        .inspect_container(&b.container, None)
        .await
        .unwrap()
        .state
        .unwrap();
    assert_eq!(state.running, Some(true));
    assert_eq!(
        mine.exec(["echo", "still here"])
            .await
            .unwrap()
            .stdout_text(),
        "still here\n"
    );

    signal(b.child.id() as i32, libc::SIGKILL);
    b.child.wait().unwrap();
    gone_within_10s(&b.session, Instant::now(), "SIGKILL of the other").await;
    mine.teardown().await.unwrap();
}

async fn kept_containers(session: &str) -> Vec<(String, String)> {
    let d = testdock::docker().await.unwrap();
    let filters = HashMap::from([("label", vec![format!("testdock.session={session}")])]);
    d.bollard()
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|c| {
            (
                c.id.unwrap(),
                c.names.unwrap()[0].trim_start_matches('/').to_string(),
            )
        })
        .collect()
}

async fn remove(id: &str) {
    let d = testdock::docker().await.unwrap();
    let opts = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    d.bollard().remove_container(id, Some(opts)).await.unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn keep_on_failure_keeps_the_failed_tests_container_and_says_how_to_get_in() {
    let mut p = spawn_probe("panic", &[("TESTDOCK_KEEP", "on-failure")]);
    p.go();
    p.child.wait().unwrap();
    eventually(Duration::from_secs(30), "watchdog exited", || {
        std::future::ready(!process_alive(p.watchdog))
    })
    .await;
    let stderr: Vec<String> = p.stderr.try_iter().collect();
    let left = kept_containers(&p.session).await;
    // The guard dropped by the panic is kept, and so is the shared one (a
    // static, never dropped): a test of the process failed.
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(
        left.iter().all(|(_, name)| name.ends_with(".kept")),
        "{left:?}"
    );
    let (id, _) = left.iter().find(|(id, _)| *id == p.container).unwrap();
    let shared = left.iter().find(|(i, _)| i != id).unwrap().0.clone();
    let short = &id[..12];
    assert!(
        stderr
            .iter()
            .any(|l| l.contains(&format!("docker exec -it {short} sh"))),
        "no hint in {stderr:?}"
    );
    // The container's last log lines were shown beside the failure.
    assert!(stderr.iter().any(|l| l == "probe-log-line"), "{stderr:?}");
    // A sweep leaves it alone: its owner is dead, but it is kept.
    testdock::sweep().await.unwrap();
    assert!(common::exists(id).await);
    remove(id).await;
    remove(&shared).await;
    // The kept container's volume stayed with it; its owner is dead, so
    // the sweep takes it now.
    testdock::sweep().await.unwrap();
    gone_within_10s(&p.session, Instant::now(), "kept container removed by hand").await;
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_fixed_name_failing_again_in_a_later_run_is_kept_again() {
    let name = unique("fixed");
    let mut kept = Vec::new();
    for _ in 0..2 {
        let mut p = spawn_probe(
            "fixed",
            &[("TESTDOCK_KEEP", "on-failure"), ("PROBE_NAME", &name)],
        );
        p.go();
        p.child.wait().unwrap();
        eventually(Duration::from_secs(30), "watchdog exited", || {
            std::future::ready(!process_alive(p.watchdog))
        })
        .await;
        kept.extend(kept_containers(&p.session).await);
    }
    let mut names: Vec<&str> = kept.iter().map(|(_, n)| n.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [format!("{name}.kept"), format!("{name}.kept.2")],
        "{kept:?}"
    );
    for (id, _) in &kept {
        remove(id).await;
    }
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn keep_always_keeps_everything() {
    let mut p = spawn_probe("return", &[("TESTDOCK_KEEP", "always")]);
    p.go();
    p.child.wait().unwrap();
    eventually(Duration::from_secs(30), "watchdog exited", || {
        std::future::ready(!process_alive(p.watchdog))
    })
    .await;
    let left = kept_containers(&p.session).await;
    let stderr: Vec<String> = p.stderr.try_iter().collect();
    assert_eq!(left.len(), 2, "{left:?}; the probe said {stderr:#?}");
    assert!(left.iter().all(|(_, n)| n.ends_with(".kept")), "{left:?}");
    for (id, _) in &left {
        remove(id).await;
    }
    // The volume was in use by a kept container; remove what is left.
    let d = testdock::docker().await.unwrap();
    let filters = HashMap::from([("label", vec![format!("testdock.session={}", p.session)])]);
    let vols = d
        .bollard()
        .list_volumes(Some(
            ListVolumesOptionsBuilder::new().filters(&filters).build(),
        ))
        .await
        .unwrap();
    for v in vols.volumes.unwrap_or_default() {
        // Its owner is gone now: another test's session may sweep it first.
        match d
            .bollard()
            .remove_volume(
                &v.name,
                None::<testdock::bollard::query_parameters::RemoveVolumeOptions>,
            )
            .await
        {
            Ok(()) => {}
            Err(testdock::bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            }) => {}
            Err(e) => panic!("removing volume {}: {e}", v.name),
        }
    }
    gone_within_10s(
        &p.session,
        Instant::now(),
        "kept containers removed by hand",
    )
    .await;
}

/// A container labelled as if another session made it.
async fn foreign(session: &str, pid: u32, pidstart: Option<u64>, expires: u64) -> String {
    foreign_in(None, session, pid, pidstart, expires).await
}

/// As `foreign`, made in pid namespace `ns` (ours when `None`).
async fn foreign_in(
    ns: Option<&str>,
    session: &str,
    pid: u32,
    pidstart: Option<u64>,
    expires: u64,
) -> String {
    let image = testdock::HostImage::shell().build().await.unwrap();
    let mut labels = HashMap::from([
        ("testdock.managed".to_string(), "true".to_string()),
        ("testdock.session".to_string(), session.to_string()),
        ("testdock.pid".to_string(), pid.to_string()),
        (
            "testdock.host".to_string(),
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap()
                .trim()
                .to_string(),
        ),
        ("testdock.expires".to_string(), expires.to_string()),
    ]);
    if let Some(s) = pidstart {
        labels.insert("testdock.pidstart".into(), s.to_string());
    }
    // The same pid namespace as ours: the sweep judges owners by pid only
    // there.
    let ns_override = ns;
    let ns = std::fs::read_link("/proc/self/ns/pid").unwrap();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    labels.insert(
        testdock::LABEL_PID_NS.to_string(),
        ns_override.map_or_else(
            || format!("{}@{}", ns.display(), boot.trim()),
            str::to_string,
        ),
    );
    let body = ContainerCreateBody {
        image: Some(image),
        cmd: Some(vec!["sleep".into(), "infinity".into()]),
        labels: Some(labels),
        ..Default::default()
    };
    let d = testdock::docker().await.unwrap();
    let opts = CreateContainerOptionsBuilder::new()
        .name(&unique("foreign"))
        .build();
    d.bollard()
        .create_container(Some(opts), body)
        .await
        .unwrap()
        .id
}

fn start_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn the_next_session_sweeps_dead_and_expired_owners_but_never_a_live_one() {
    let far = 4_000_000_000;
    let dead_pid = {
        let mut c = Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    };
    let me = std::process::id();
    let dead = foreign(&unique("dead"), dead_pid, Some(1), far).await;
    let reused = foreign(&unique("reused"), me, Some(start_ticks(me) + 1), far).await;
    // Expired by its label, but its owner (this process) is alive: the
    // owner wins — a clock step or a long-lived run-wide server must not
    // make other processes remove live containers.
    let expired_live = foreign(&unique("expired"), me, Some(start_ticks(me)), 1).await;
    // Expiry is for owners that cannot be judged: another pid namespace.
    let expired_elsewhere =
        foreign_in(Some("pid:[1]@elsewhere"), &unique("expired"), me, None, 1).await;
    let live = foreign(&unique("live"), me, Some(start_ticks(me)), far).await;

    // A new session sweeps by itself when it first creates something.
    let mut p = spawn_probe("", &[]);
    for id in [&dead, &reused, &expired_elsewhere] {
        common::assert_gone(id).await;
    }
    for id in [&live, &expired_live] {
        assert!(
            common::exists(id).await,
            "a live owner's container was swept"
        );
    }
    remove(&expired_live).await;
    p.go();
    p.child.wait().unwrap();

    // And on demand.
    // (Other tests' new sessions sweep too, and may take it first.)
    let dead2 = foreign(&unique("dead"), dead_pid, Some(1), far).await;
    let swept = testdock::sweep().await.unwrap();
    assert!(!common::exists(&dead2).await, "swept {swept}, not dead2");
    assert!(common::exists(&live).await);
    remove(&live).await;
}
