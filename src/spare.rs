//! Spares: when a process keeps starting containers of one shape (the same
//! create request: image, command, env, mounts, labels, and no fixed name),
//! testdock creates the next one while the current test runs, so that the
//! next `start()` only has to start it. Creating is about a third of a
//! start. At most one spare per shape, and only for a shape started twice.
//!
//! A spare is an ordinary container of the session, created and never
//! started: the exit hook, the watchdog and the sweep remove it like any
//! other. `TESTDOCK_SPARES=0` turns spares off.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::CreateContainerOptionsBuilder;
use once_cell::sync::Lazy;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use crate::engine::client;
use crate::reaper::{self, Owned};
use crate::session::LABEL_EXPIRES;

/// A created, never started container, waiting for its shape's next start.
pub(crate) struct Spare {
    pub(crate) id: String,
    pub(crate) name: String,
    made: Instant,
}

#[derive(Default)]
struct State {
    /// Starts per shape (a digest): a spare is made only for a shape that
    /// came back.
    starts: HashMap<String, u32>,
    /// The spare of a shape, being created or ready.
    ready: HashMap<String, oneshot::Receiver<Option<Spare>>>,
    /// Set at exit: no more spares.
    closed: bool,
}

static STATE: Lazy<Mutex<State>> = Lazy::new(Default::default);

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether spares are on (`TESTDOCK_SPARES=0` turns them off).
pub(crate) fn enabled() -> bool {
    static ON: Lazy<bool> = Lazy::new(|| std::env::var("TESTDOCK_SPARES").as_deref() != Ok("0"));
    *ON
}

/// The shape of a create request: a digest of the body without what
/// differs between two creates of one spec (the expiry label), its maps in
/// sorted order whatever serde_json keeps.
pub(crate) fn shape(body: &ContainerCreateBody) -> Option<String> {
    let mut v = serde_json::to_value(body).ok()?;
    if let Some(labels) = v.get_mut("Labels").and_then(|l| l.as_object_mut()) {
        labels.remove(LABEL_EXPIRES);
    }
    // Another crate may turn on serde_json's `preserve_order`.
    v.sort_all_objects();
    Some(crate::util::hex(&Sha256::digest(v.to_string().as_bytes())))
}

/// The shape's spare, if one is ready or being created (then awaited: it is
/// further along than a new create would be).
pub(crate) async fn take(shape: &str) -> Option<Spare> {
    let pending = state().ready.remove(shape)?;
    let spare = pending.await.ok().flatten()?;
    // Its expiry label was set when it was made: one waiting for long
    // would soon be fair game for other sweepers.
    if spare.made.elapsed() > crate::session::ttl() / 4 {
        reaper::remove_in_background(spare.id, Owned::default());
        return None;
    }
    Some(spare)
}

/// Counts a start of `shape`; from the second on, creates the next spare
/// in the background unless one is there. Call once the container started,
/// so the create does not compete with the start.
pub(crate) fn prepare(shape: String, mut body: ContainerCreateBody) {
    let (tx, rx) = oneshot::channel();
    {
        let mut st = state();
        let starts = st.starts.entry(shape.clone()).or_insert(0);
        *starts += 1;
        let came_back = *starts >= 2;
        if st.closed || !came_back || st.ready.contains_key(&shape) {
            return;
        }
        st.ready.insert(shape, rx);
    }
    // Queued, so the exit hook waits for it before its last sweep.
    // Labels as of now: the expiry counts from the spare's own creation.
    body.labels
        .get_or_insert_with(Default::default)
        .extend(crate::session::labels());
    reaper::queue(async move {
        let name = crate::container::unique_name();
        let created = match client().await {
            Ok(docker) => {
                let opts = CreateContainerOptionsBuilder::new().name(&name).build();
                docker.create_container(Some(opts), body).await.ok()
            }
            Err(_) => None,
        };
        let spare = created.map(|r| Spare {
            id: r.id,
            name,
            made: Instant::now(),
        });
        // Nobody will take it (the process is exiting): remove it now.
        if let Err(Some(spare)) = tx.send(spare) {
            let _ = reaper::remove(&spare.id, &Owned::default()).await;
        }
    });
}

/// Makes no more spares and removes those nobody took. The exit hook calls
/// it first, so `TESTDOCK_KEEP=always` does not keep them.
pub(crate) async fn discard() {
    let pending: Vec<_> = {
        let mut st = state();
        st.closed = true;
        st.ready.drain().map(|(_, rx)| rx).collect()
    };
    for rx in pending {
        if let Ok(Some(spare)) = rx.await {
            let _ = reaper::remove(&spare.id, &Owned::default()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shape_ignores_the_expiry_and_the_order_of_labels() {
        let body = |labels: &[(&str, &str)]| ContainerCreateBody {
            image: Some("img:1".into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        };
        let a = body(&[("a", "1"), ("b", "2"), (LABEL_EXPIRES, "100")]);
        let b = body(&[(LABEL_EXPIRES, "200"), ("b", "2"), ("a", "1")]);
        assert_eq!(shape(&a), shape(&b));
        let c = body(&[("a", "1"), ("b", "3"), (LABEL_EXPIRES, "100")]);
        assert_ne!(shape(&a), shape(&c));
    }
}
