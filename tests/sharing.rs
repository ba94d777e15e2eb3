//! One server for the whole run, across processes. Each scenario starts a
//! fake runner (`common::runner`) and has it start children (this binary
//! again) that use shared fixtures, kill them, and end the run in the ways
//! runs end.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use common::runner::{serve, Runner, ROLE, TAG};
use common::{eventually, shell, unique};
use testdock::bollard::query_parameters::ListContainersOptionsBuilder;
use testdock::postgres::{Postgres, SharedPostgres};
use testdock::{ContainerSpec, SharedContainer, WaitFor};

const TAG_LABEL: &str = "test.sharing";

/// What the children share: a sleeper, or (`fail-*` tags) a server that
/// dies at once, labelled with the scenario's tag so scenarios never share.
static SHARED: SharedContainer = SharedContainer::new(|| {
    let tag = std::env::var(TAG).unwrap_or_default();
    let spec = ContainerSpec::new(shell()).label(TAG_LABEL, &tag);
    if tag.starts_with("fail-") {
        spec.cmd(["sh", "-c", "echo boom-from-the-server; exit 3"])
            .wait_for(WaitFor::log_line("never printed"))
    } else {
        spec.cmd(["sleep", "infinity"])
    }
});

/// Each scenario's own server: the tag goes into a setting.
static PG: SharedPostgres = SharedPostgres::new(|| {
    Postgres::new()
        .setting("application_name", std::env::var(TAG).unwrap_or_default())
        .init_sql("CREATE TABLE built (at text NOT NULL); INSERT INTO built SELECT clock_timestamp()::text")
});

/// Both sides. Run by the suite, it does nothing; as the fake runner it
/// starts and kills children as told on stdin; as a child it uses the
/// shared fixture as its mode says and prints what it got.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "requires Docker"]
async fn sharing_probe() {
    unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
    match std::env::var(ROLE).as_deref() {
        Ok("runner") => tokio::task::spawn_blocking(|| serve("sharing_probe"))
            .await
            .unwrap(),
        Ok(mode) => child(mode).await,
        Err(_) => {}
    }
}

async fn child(mode: &str) {
    let out = |line: String| {
        println!("{line}");
        std::io::stdout().flush().unwrap();
    };
    match mode {
        "hold" | "once" => {
            let c = SHARED.get().await.unwrap();
            c.exec_ok(["true"]).await.unwrap();
            out(format!("ID {}", c.id()));
            if mode == "hold" {
                tokio::task::spawn_blocking(|| {
                    std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new())
                })
                .await
                .unwrap()
                .unwrap();
            }
        }
        // testdock's events on stderr, and whether a watchdog started.
        "traced" | "traced-hold" => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new("testdock=debug"))
                .with_writer(std::io::stderr)
                .try_init();
            let c = SHARED.get().await.unwrap();
            c.exec_ok(["true"]).await.unwrap();
            out(format!("ID {}", c.id()));
            let watchdog = testdock::watchdog_pid().map_or("none".into(), |p| p.to_string());
            out(format!("WATCHDOG {watchdog}"));
            if mode == "traced-hold" {
                tokio::task::spawn_blocking(|| {
                    std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new())
                })
                .await
                .unwrap()
                .unwrap();
            }
        }
        "fail" => match SHARED.get().await {
            Ok(c) => out(format!("ID {}", c.id())),
            Err(e) => out(format!("ERR {e}")),
        },
        "pg" => {
            let db = PG.fresh_database().await.unwrap();
            let server = PG.server().await.unwrap();
            let built = server
                .psql(db.name(), "SELECT at FROM built")
                .await
                .unwrap();
            out(format!(
                "PG {} {} {} {}",
                server.container().id(),
                db.name(),
                db.template(),
                built.trim().replace(' ', "_")
            ));
        }
        // Takes two databases, waits until a ready clone of its own is
        // made, takes it, and exits holding the rest.
        "pg-many" => {
            let held = [
                PG.fresh_database().await.unwrap(),
                PG.fresh_database().await.unwrap(),
            ];
            let server = PG.server().await.unwrap();
            let mut held = Vec::from(held);
            let deadline = Instant::now() + Duration::from_secs(60);
            let own = loop {
                assert!(Instant::now() < deadline, "no ready clone of its own");
                let ready = server
                    .psql(
                        "postgres",
                        "SELECT count(*) FROM pg_database WHERE datname LIKE 't\\_ready\\_%'",
                    )
                    .await
                    .unwrap();
                if ready.trim() == "0" {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                let db = PG.fresh_database().await.unwrap();
                if db.name().starts_with("t_ready_") {
                    break db;
                }
                held.push(db);
            };
            out(format!("PG-OWN {}", own.name()));
            drop((own, held));
        }
        "pg-list" => {
            let server = PG.server().await.unwrap();
            let names = server
                .psql(
                    "postgres",
                    "SELECT string_agg(datname, ',') FROM pg_database \
                     WHERE datname LIKE 't\\_ready\\_%' OR datname LIKE 'tdp\\_%'",
                )
                .await
                .unwrap();
            out(format!("LIST {}", names.trim()));
        }
        other => panic!("unknown child mode {other}"),
    }
}

/// Containers carrying the scenario's tag, running or not.
async fn tagged(tag: &str) -> Vec<String> {
    let docker = testdock::docker().await.unwrap();
    let filters = HashMap::from([("label", vec![format!("{TAG_LABEL}={tag}")])]);
    let opts = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let list = docker.bollard().list_containers(Some(opts)).await.unwrap();
    list.into_iter().filter_map(|c| c.id).collect()
}

async fn gone_within(tag: &str, within: Duration, how: &str) {
    let t = tag.to_string();
    eventually(
        within,
        &format!("{tag}'s container gone after {how}"),
        || {
            let t = t.clone();
            async move { tagged(&t).await.is_empty() }
        },
    )
    .await;
}

/// Containers of a PostgreSQL server carrying the scenario's tag.
async fn pg_servers(tag: &str) -> usize {
    let docker = testdock::docker().await.unwrap();
    let filters = HashMap::from([("label", vec!["testdock.managed".to_string()])]);
    let opts = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let list = docker.bollard().list_containers(Some(opts)).await.unwrap();
    list.iter()
        .filter(|c| {
            c.command
                .as_deref()
                .is_some_and(|cmd| cmd.contains(&format!("application_name={tag}")))
        })
        .count()
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn first_callers_at_once_start_exactly_one_and_other_specs_their_own() {
    let (a, b) = (unique("share-a"), unique("share-b"));
    let mut run = Runner::start("sharing_probe", &[]);
    for n in 0..4 {
        run.spawn(n, "hold", &a);
    }
    run.spawn(4, "hold", &b);
    let ids: Vec<String> = (0..5).map(|n| run.expect(n, "ID")).collect();
    assert!(
        ids[..4].iter().all(|id| *id == ids[0]),
        "one container for one spec: {ids:?}"
    );
    assert_ne!(ids[4], ids[0], "another spec has its own");
    assert_eq!(tagged(&a).await.len(), 1, "exactly one was created");
    // The run ends normally: its last test process exits, then the runner.
    let ended = Instant::now();
    run.end();
    gone_within(&a, Duration::from_secs(15), "the run ended").await;
    gone_within(&b, Duration::from_secs(15), "the run ended").await;
    eprintln!("removed {:?} after the run ended", ended.elapsed());
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn the_creator_leaving_or_being_killed_leaves_it_to_the_others() {
    let a = unique("share-creator");
    let mut run = Runner::start("sharing_probe", &[]);
    run.spawn(0, "hold", &a);
    let id = run.expect(0, "ID");
    // The creator exits normally first.
    run.say("close 0");
    run.expect_exit(0);
    assert!(
        common::exists(&id).await,
        "the run's container outlives its creator"
    );
    run.spawn(1, "hold", &a);
    assert_eq!(run.expect(1, "ID"), id);
    // A test process killed mid-run (a nextest timeout) takes nothing.
    run.say("kill 1");
    run.expect_exit(1);
    run.spawn(2, "once", &a);
    assert_eq!(run.expect(2, "ID"), id, "still there, still working");
    run.expect_exit(2);
    assert_eq!(tagged(&a).await, vec![id]);
    // The runner is killed: the run is over all the same.
    let pid = run.pid();
    unsafe { libc::kill(pid, libc::SIGKILL) };
    gone_within(&a, Duration::from_secs(15), "SIGKILL of the runner").await;
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn ctrl_c_to_the_runners_group_ends_the_run() {
    let a = unique("share-ctrlc");
    let mut run = Runner::start("sharing_probe", &[]);
    run.spawn(0, "hold", &a);
    run.expect(0, "ID");
    unsafe { libc::kill(-run.pid(), libc::SIGINT) };
    gone_within(&a, Duration::from_secs(15), "SIGINT to the runner's group").await;
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_process_that_joins_costs_no_watchdog_no_sweep_and_no_exit_listing() {
    let a = unique("share-cost");
    let mut run = Runner::start("sharing_probe", &[]);
    run.spawn(0, "traced-hold", &a);
    let id = run.expect(0, "ID");
    // The run's container is the run's watchdog's, not the creator's.
    assert_eq!(run.expect(0, "WATCHDOG"), "none");
    // The creator sweeps, once for the run.
    run.expect_stderr(0, "sweep removed");
    run.spawn(1, "traced", &a);
    assert_eq!(run.expect(1, "ID"), id);
    assert_eq!(run.expect(1, "WATCHDOG"), "none");
    run.expect_exit(1);
    run.expect_stderr(1, "<closed>");
    let said: Vec<&String> = run.seen().filter(|l| l.starts_with("1: stderr ")).collect();
    assert!(
        said.iter().any(|l| l.contains("connected to the engine")),
        "the joiner's events are seen: {said:#?}"
    );
    for costly in ["sweep", "watchdog started", "session finished", "exit hook"] {
        assert!(
            !said.iter().any(|l| l.contains(costly)),
            "the joiner did {costly:?}: {said:#?}"
        );
    }
    run.end();
    gone_within(&a, Duration::from_secs(15), "the run ended").await;
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn share_process_gives_each_process_its_own() {
    let a = unique("share-off");
    let mut run = Runner::start("sharing_probe", &[("TESTDOCK_SHARE", "process")]);
    run.spawn(0, "hold", &a);
    run.spawn(1, "hold", &a);
    let (id0, id1) = (run.expect(0, "ID"), run.expect(1, "ID"));
    assert_ne!(id0, id1);
    run.say("close 0");
    run.expect_exit(0);
    common::assert_gone(&id0).await;
    assert!(common::exists(&id1).await, "the other process's is its own");
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_start_that_fails_is_an_error_naming_the_cause_for_every_caller() {
    let a = unique("fail-share");
    let mut run = Runner::start("sharing_probe", &[]);
    for n in 0..3 {
        run.spawn(n, "fail", &a);
    }
    for n in 0..3 {
        let err = run.expect(n, "ERR");
        assert!(
            err.contains("boom-from-the-server")
                || err.contains("exited")
                || err.contains("not running"),
            "child {n}: {err}"
        );
    }
    gone_within(&a, Duration::from_secs(15), "the failed starts").await;
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn one_postgres_server_and_one_template_for_the_run() {
    let tag = unique("pgshare").replace('-', "_");
    let mut run = Runner::start("sharing_probe", &[]);
    for n in 0..4 {
        run.spawn(n, "pg", &tag);
    }
    let got: Vec<Vec<String>> = (0..4)
        .map(|n| run.expect(n, "PG").split(' ').map(str::to_string).collect())
        .collect();
    let servers: std::collections::HashSet<_> = got.iter().map(|g| &g[0]).collect();
    let names: std::collections::HashSet<_> = got.iter().map(|g| &g[1]).collect();
    let built: std::collections::HashSet<_> = got.iter().map(|g| &g[3]).collect();
    assert_eq!(servers.len(), 1, "one server: {got:?}");
    assert_eq!(names.len(), 4, "a database of its own each: {got:?}");
    assert_eq!(built.len(), 1, "the template was made once: {got:?}");
    assert_eq!(pg_servers(&tag).await, 1);
    run.end();
    eventually(Duration::from_secs(15), "the run's server removed", || {
        let tag = tag.clone();
        async move { pg_servers(&tag).await == 0 }
    })
    .await;
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_process_taking_many_gets_clones_of_its_own_and_gives_them_back_at_exit() {
    let tag = unique("pgown").replace('-', "_");
    let mut run = Runner::start("sharing_probe", &[]);
    run.spawn(0, "pg-many", &tag);
    // t_ready_<template hash>_<process tag>_<n>
    let own = run.expect(0, "PG-OWN");
    let process = own.rsplit_once('_').unwrap().0.to_string();
    run.expect_exit(0);
    run.spawn(1, "pg-list", &tag);
    let list = run.expect(1, "LIST");
    let names: Vec<&str> = list.split(',').collect();
    assert!(
        !names.iter().any(|n| n.starts_with(&process)),
        "a clone of the exited process is still its own: {names:?}"
    );
    let spare = process.replacen("t_ready_", "tdp_", 1);
    assert!(
        names.iter().any(|n| n.starts_with(&spare)),
        "its clones were not given back as spares ({spare}…): {names:?}"
    );
    run.end();
    eventually(Duration::from_secs(15), "the run's server removed", || {
        let tag = tag.clone();
        async move { pg_servers(&tag).await == 0 }
    })
    .await;
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn reuse_keeps_it_for_the_next_run_then_removes_it_once_idle() {
    let a = unique("share-reuse");
    // Long enough for a loaded machine to start the next run's processes.
    let reuse = [("TESTDOCK_REUSE", "12s")];
    let mut first = Runner::start("sharing_probe", &reuse);
    first.spawn(0, "once", &a);
    let id = first.expect(0, "ID");
    first.end();
    assert!(common::exists(&id).await, "kept after its run for the next");
    let mut second = Runner::start("sharing_probe", &reuse);
    let asked = Instant::now();
    second.spawn(0, "once", &a);
    assert_eq!(second.expect(0, "ID"), id, "the next run joins it");
    eprintln!("a warm child process got it in {:?}", asked.elapsed());
    second.end();
    // Idle for 12 s, then removed, with no test running anywhere.
    gone_within(&a, Duration::from_secs(45), "12 s idle").await;
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn reuse_is_refused_in_ci_and_says_so() {
    let a = unique("share-ci");
    let mut run = Runner::start(
        "sharing_probe",
        &[("TESTDOCK_REUSE", "10m"), ("CI", "true")],
    );
    run.spawn(0, "once", &a);
    run.expect(0, "ID");
    run.expect_stderr(0, "TESTDOCK_REUSE is ignored because CI is set");
    run.end();
    gone_within(&a, Duration::from_secs(15), "the CI run ended").await;
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn the_same_spec_asked_twice_without_a_static_is_one_container() {
    let tag = unique("share-nostatic");
    let spec = || {
        ContainerSpec::new(shell())
            .label(TAG_LABEL, &tag)
            .cmd(["sleep", "infinity"])
    };
    let (a, b) = (
        spec().shared().await.unwrap(),
        spec().shared().await.unwrap(),
    );
    assert!(std::ptr::eq(a, b), "one guard for one spec");
    assert_eq!(tagged(&tag).await, vec![a.id().to_string()]);
}
