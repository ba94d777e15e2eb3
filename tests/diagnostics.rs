//! What testdock tells: `tracing` events for what it did and how long it
//! took, and progress lines on stderr while something slow runs.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use testdock::{ContainerSpec, WaitFor};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// One event as a subscriber saw it.
#[derive(Clone, Debug)]
struct Seen {
    target: String,
    message: String,
    fields: HashMap<String, String>,
}

/// A layer that keeps every event it is given.
struct Capture(Arc<Mutex<Vec<Seen>>>);

#[derive(Default)]
struct Fields(HashMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let message = f.0.remove("message").unwrap_or_default();
        self.0.lock().unwrap().push(Seen {
            target: event.metadata().target().into(),
            message,
            fields: f.0,
        });
    }
}

/// Installs, once, a global subscriber filtered as the README says
/// (`testdock=debug`): testdock emits from its own runtime's threads, which
/// a thread-local default would not see.
fn events() -> Arc<Mutex<Vec<Seen>>> {
    static EVENTS: OnceLock<Arc<Mutex<Vec<Seen>>>> = OnceLock::new();
    EVENTS
        .get_or_init(|| {
            let store = Arc::new(Mutex::new(Vec::new()));
            let subscriber = Registry::default()
                .with(EnvFilter::new("testdock=debug"))
                .with(Capture(store.clone()));
            tracing::subscriber::set_global_default(subscriber).unwrap();
            store
        })
        .clone()
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_container_lifecycle_is_traced_with_ids_names_and_durations() {
    let events = events();
    let c = common::sleeper()
        .wait_for(WaitFor::command(["cat", "/proc/1/cmdline"]))
        .start()
        .await
        .unwrap();
    let (id, name) = (c.id()[..12].to_string(), c.name().to_string());
    let out = c.exec(["sh", "-c", "exit 3"]).await.unwrap();
    assert_eq!(out.exit_code, 3);
    c.teardown().await.unwrap();

    // Every event below was emitted before the call that caused it returned.
    let seen = events.lock().unwrap().clone();
    let find = |message: &str| {
        seen.iter()
            .find(|e| e.message == message && e.fields.get("id") == Some(&id))
            .unwrap_or_else(|| panic!("no {message:?} event for {id}; saw {seen:#?}"))
    };
    for message in [
        "container created",
        "container started",
        "container ready",
        "exec finished",
        "container teardown",
        "container removed",
    ] {
        let e = find(message);
        assert!(e.target.starts_with("testdock"), "{e:?}");
        if message != "container removed" {
            assert_eq!(e.fields.get("name"), Some(&name), "{e:?}");
        }
        if message != "container teardown" {
            let ms = e.fields.get("elapsed_ms").map(|v| v.parse::<u64>());
            assert!(matches!(ms, Some(Ok(_))), "no duration in {e:?}");
        }
    }
    let ready = find("container ready");
    assert_eq!(ready.fields["strategy"], "`cat /proc/1/cmdline` succeeding");
    let exec = find("exec finished");
    assert_eq!(exec.fields["command"], "sh -c 'exit 3'");
    assert_eq!(exec.fields["exit_code"], "3");
}

/// Set for the child run of [`slow_wait_child`]: the container's name.
const SLOW_CHILD: &str = "TESTDOCK_TEST_SLOW_WAIT_NAME";

/// A container that becomes ready only after ~12 s (well after the notice
/// at 5 s, however late the start returns); run as a child process
/// by the test below (it does nothing otherwise).
#[tokio::test]
#[ignore = "requires Docker"]
async fn slow_wait_child() {
    let Ok(name) = std::env::var(SLOW_CHILD) else {
        return;
    };
    let c = ContainerSpec::new(common::shell())
        .name(name)
        .cmd([
            "sh",
            "-c",
            "sleep 12; touch /tmp/ready; exec sleep infinity",
        ])
        .wait_for(WaitFor::command(["cat", "/tmp/ready"]))
        .startup_timeout(Duration::from_secs(30))
        .start()
        .await
        .unwrap();
    c.teardown().await.unwrap();
}

#[test]
#[ignore = "requires Docker"]
fn a_slow_readiness_wait_says_what_it_waits_for() {
    let name = common::unique("testdock-slow");
    // Captured as libtest runs any test (no --nocapture): the line must get
    // through to the terminal anyway.
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "slow_wait_child", "--include-ignored"])
        .env(SLOW_CHILD, &name)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child failed: {stderr}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let line =
        format!("testdock: still waiting for `cat /tmp/ready` succeeding on {name} (5 s of 30 s)");
    assert!(
        stderr.lines().any(|l| l == line),
        "no {line:?} in stderr:\n{stderr}"
    );
}
