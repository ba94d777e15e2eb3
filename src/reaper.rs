//! Cleanup: what `Drop` queues, the registry of live containers, and the
//! exit hook that waits for both.
//!
//! Layers, from the test's point of view:
//! 1. `teardown().await` removes and reports errors;
//! 2. `Drop` queues a forced remove on the engine runtime and returns;
//! 3. at process exit, [`at_exit`] waits (bounded) for queued removals, then
//!    removes whatever is still registered — containers held in statics are
//!    never dropped.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bollard::query_parameters::RemoveContainerOptionsBuilder;
use once_cell::sync::Lazy;

use crate::engine::{client, runtime_if_started, spawn_detached};
use crate::error::{status_of, Error, Result};

/// Removing 100 containers took ~8 s on the reference machine; 15 s covers
/// a large suite without letting a wedged daemon hang the exit forever.
const EXIT_WAIT: Duration = Duration::from_secs(15);

/// What a live container owns besides itself: named volumes testdock made.
#[derive(Clone, Debug, Default)]
pub(crate) struct Owned {
    pub(crate) volumes: Vec<String>,
}

/// Containers created and not yet removed, by id.
static LIVE: Lazy<Mutex<HashMap<String, Owned>>> = Lazy::new(Default::default);

/// Removals queued by `Drop` and not finished, and a signal when one ends.
static PENDING: Lazy<(Mutex<usize>, Condvar)> = Lazy::new(Default::default);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not stop cleanup.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn track(id: &str, owned: Owned) {
    lock(&LIVE).insert(id.to_string(), owned);
}

/// Removes a container (forced, with its anonymous volumes) and the named
/// volumes it owns. Already gone counts as done.
pub(crate) async fn remove(id: &str, owned: &Owned) -> Result<()> {
    let docker = client().await?;
    let opts = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(id, Some(opts)).await {
        // 409: a removal of it is already in progress.
        Err(e) if !matches!(status_of(&e), Some(404 | 409)) => {
            return Err(Error::docker(format!("remove container {id}"), e))
        }
        _ => {}
    }
    lock(&LIVE).remove(id);
    remove_volumes(owned).await;
    Ok(())
}

/// Removes the named volumes testdock created. Best effort: one still in
/// use (409) is removed by whoever removes its last user, or by the
/// session cleanup.
pub(crate) async fn remove_volumes(owned: &Owned) {
    let Ok(docker) = client().await else { return };
    for v in &owned.volumes {
        if let Err(e) = docker
            .remove_volume(v, None::<bollard::query_parameters::RemoveVolumeOptions>)
            .await
        {
            if !matches!(status_of(&e), Some(404 | 409)) {
                let _ = writeln!(
                    std::io::stderr(),
                    "testdock: could not remove volume {v}: {e}"
                );
            }
        }
    }
}

/// Queues a removal and returns at once. For `Drop`.
pub(crate) fn remove_in_background(id: String, owned: Owned) {
    *lock(&PENDING.0) += 1;
    spawn_detached(async move {
        if let Err(e) = remove(&id, &owned).await {
            let _ = writeln!(
                std::io::stderr(),
                "testdock: could not remove container {id}: {e}"
            );
        }
        let (count, done) = &*PENDING;
        *lock(count) -= 1;
        done.notify_all();
    });
}

/// Waits until no queued removal is left, or `deadline`. True if none is.
fn wait_pending(deadline: Instant) -> bool {
    let Some(pending) = Lazy::get(&PENDING) else {
        return true;
    };
    let (count, done) = pending;
    let mut n = lock(count);
    while *n > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        n = done
            .wait_timeout(n, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    true
}

/// Runs from `.fini_array` after `main` returns or `process::exit`. The
/// engine's worker threads are still alive then, so queued work finishes;
/// this only waits for it. Starts nothing new unless something is left.
#[dtor::dtor(unsafe)]
fn at_exit() {
    if runtime_if_started().is_none() {
        return;
    }
    let deadline = Instant::now() + EXIT_WAIT;
    let drained = wait_pending(deadline);
    let left: Vec<(String, Owned)> = match Lazy::get(&LIVE) {
        Some(live) => lock(live).drain().collect(),
        None => Vec::new(),
    };
    if left.is_empty() && drained {
        return;
    }
    for (id, owned) in left {
        remove_in_background(id, owned);
    }
    if !wait_pending(deadline) {
        let _ = writeln!(
            std::io::stderr(),
            "testdock: gave up waiting for container removal after {EXIT_WAIT:?}; \
             list leftovers with `docker ps -a --filter label=testdock.managed`"
        );
    }
}
