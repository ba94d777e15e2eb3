//! What every per-test unit's guard (a database) does when it goes away,
//! shared by the database fixtures: dropped when the test passed, kept
//! with its URL printed when it fails.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::{Error, Result, TestContainer};

/// The unit `name` (reached at `url`) of the server in `server` is going
/// away: when the thread is panicking (a failing test) it is kept and
/// reported — the server's container too with `TESTDOCK_KEEP=on-failure`,
/// marked once per server through `kept` — else `drop_it` is queued on
/// the reaper. Never blocks, never panics.
pub(crate) fn release<F>(
    name: &str,
    url: &str,
    server: &TestContainer,
    kept: &AtomicBool,
    drop_it: F,
) where
    F: Future<Output = Result<()>> + Send + 'static,
{
    let panicking = std::thread::panicking();
    if panicking || crate::reaper::keep(false) {
        if panicking {
            report_kept(name, url, server, kept);
        }
        return;
    }
    let name = name.to_string();
    crate::reaper::queue(async move {
        if let Err(e) = drop_it.await {
            // A server already removed took the database with it.
            if !matches!(e, Error::Docker { .. }) {
                tracing::warn!(database = %name, error = %e, "could not drop a database");
                eprintln!("testdock: could not drop database {name}: {e}");
            }
        }
    });
}

fn report_kept(name: &str, url: &str, c: &TestContainer, kept: &AtomicBool) {
    // Not a raw write: libtest shows it with the failure. Never panics:
    // this runs in Drop while the test panics.
    if crate::reaper::keep(true) {
        crate::logs::report(format_args!(
            "testdock: kept database {name} of the failing test: {url}"
        ));
        if !kept.swap(true, Ordering::Relaxed) {
            crate::reaper::keep_in_background(c.id().to_string(), c.name().to_string());
        }
    } else {
        crate::logs::report(format_args!(
            "testdock: kept database {name} of the failing test: {url} (until the server {} is \
             removed at exit; TESTDOCK_KEEP=on-failure keeps it)",
            c.name()
        ));
    }
}
