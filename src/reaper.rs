//! Cleanup: removals queued by `Drop`, the session cleanup the exit hook and
//! the watchdog share, and keep-on-failure.
//!
//! Layers, from the test's point of view:
//! 1. `teardown().await` removes and reports errors;
//! 2. `Drop` queues a forced remove on the engine runtime and returns;
//! 3. at process exit, [`at_exit`] waits (bounded) for queued removals, then
//!    removes whatever this session still owns — statics are never dropped;
//! 4. the watchdog (`watchdog.rs`) does the same from outside when the
//!    process dies any other way, SIGKILL included;
//! 5. the sweep (`sweep.rs`) removes what dead owners left and what expired.

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveVolumeOptions, RenameContainerOptionsBuilder,
};
use once_cell::sync::Lazy;

use crate::engine::{client, runtime_if_started, spawn_detached};
use crate::error::{status_of, Error, Result};
use crate::session::{session_id, LABEL_SESSION};
use crate::trace::{guarded, ms, short};

/// Removing 100 containers took ~8 s on the reference machine; 15 s covers
/// a large suite without letting a wedged daemon hang the exit forever.
const EXIT_WAIT: Duration = Duration::from_secs(15);
/// The final session cleanup's own bound, after the queue's: a queue that
/// used all of `EXIT_WAIT` must not leave statics and spares unremoved.
const FINAL_WAIT: Duration = Duration::from_secs(10);
/// After this long the exit hook says what it is waiting for.
const SAY_AFTER: Duration = Duration::from_secs(2);

/// Appended to the name of a container kept for inspection. Names are the
/// one thing Docker lets us change after creation, and the watchdog and the
/// sweep must see the mark after this process is gone.
pub(crate) const KEPT_SUFFIX: &str = ".kept";

/// What a container owns besides itself: named volumes testdock made.
#[derive(Clone, Debug, Default)]
pub(crate) struct Owned {
    pub(crate) volumes: Vec<String>,
}

/// Whether this session has created anything; if not, exit costs nothing.
static CREATED: AtomicBool = AtomicBool::new(false);

/// Removals queued by `Drop` and not finished, and a signal when one ends.
static PENDING: Lazy<(Mutex<usize>, Condvar)> = Lazy::new(Default::default);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not stop cleanup.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Called before this process creates a resource of its own (labelled
/// with its session, not a run's): the exit hook then looks for what is
/// left, and the watchdog — started here, once, and up before the first
/// create is sent — removes it should the process be killed. The startup
/// sweep starts here too. A process that only uses the run's resources
/// (joins its server) owns nothing: it starts no watchdog, sweeps nothing
/// and lists nothing at exit — the run's watchdog and the creator's sweep
/// cover it.
pub(crate) async fn note_created() {
    CREATED.store(true, Ordering::Relaxed);
    crate::watchdog::ensure_started().await;
    crate::sweep::sweep_once();
}

/// Whether this process has created a resource of its own.
pub(crate) fn owns_anything() -> bool {
    CREATED.load(Ordering::Relaxed)
}

/// Whether a guard dropped now keeps its container, per `TESTDOCK_KEEP`
/// (`on-failure`: when the thread is panicking; `always`; default never).
pub(crate) fn keep(panicking: bool) -> bool {
    keep_policy(std::env::var("TESTDOCK_KEEP").ok().as_deref(), panicking)
}

fn keep_policy(setting: Option<&str>, panicking: bool) -> bool {
    match setting {
        Some("always") => true,
        Some("on-failure") => panicking,
        _ => false,
    }
}

/// Keeps a container for inspection: marks its name so neither the exit
/// hook nor the watchdog nor the sweep (until it expires) removes it, and
/// says how to get in. Queued, like a removal.
pub(crate) fn keep_in_background(id: String, name: String) {
    // Once per container: a database fixture and its server's guard may
    // both ask for the same one.
    static MARKED: Lazy<Mutex<HashSet<String>>> = Lazy::new(Default::default);
    if !MARKED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id.clone())
    {
        return;
    }
    let short: String = id.chars().take(12).collect();
    tracing::info!(id = %short, name = %name, "container kept");
    // Not a raw write: libtest captures it and shows it with the failing
    // test's output. Never panics: this runs in Drop while the test panics.
    crate::logs::report(format_args!(
        "testdock: kept container {name}{KEPT_SUFFIX} ({short}); get in with `docker exec -it {short} sh`, \
         remove with `docker rm -f {short}`"
    ));
    queue(async move {
        let Ok(docker) = client().await else { return };
        if let Err(e) = mark_kept(docker, &id, &name).await {
            tracing::warn!(name = %name, error = %e, "could not mark a kept container");
            let _ = writeln!(
                std::io::stderr(),
                "testdock: could not mark {name} as kept: {e}"
            );
        }
    });
}

/// Removes a container (forced, with its anonymous volumes) and the named
/// volumes it owns. Already gone counts as done.
pub(crate) async fn remove(id: &str, owned: &Owned) -> Result<()> {
    let docker = client().await?;
    let t0 = Instant::now();
    match force_remove(docker, id).await {
        // 409: a removal of it is already in progress.
        Err(e) if !matches!(status_of(&e), Some(404 | 409)) => {
            return Err(Error::docker(format!("remove container {id}"), e))
        }
        _ => {}
    }
    remove_volumes(owned).await;
    tracing::debug!(
        id = short(id),
        volumes = owned.volumes.len(),
        elapsed_ms = ms(t0),
        "container removed"
    );
    Ok(())
}

/// Removes a container at once, running or not, with its anonymous
/// volumes.
async fn force_remove(
    docker: &bollard::Docker,
    id: &str,
) -> std::result::Result<(), bollard::errors::Error> {
    let opts = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    docker.remove_container(id, Some(opts)).await
}

/// Removes the named volumes testdock created. Best effort: one still in
/// use (409) is removed by whoever removes its last user, or by the
/// session cleanup.
pub(crate) async fn remove_volumes(owned: &Owned) {
    let Ok(docker) = client().await else { return };
    for v in &owned.volumes {
        if let Err(e) = docker.remove_volume(v, None::<RemoveVolumeOptions>).await {
            if !matches!(status_of(&e), Some(404 | 409)) {
                tracing::warn!(volume = %v, error = %e, "could not remove a volume");
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
    queue(async move {
        yield_to_starts().await;
        if let Err(e) = remove(&id, &owned).await {
            tracing::warn!(id = short(&id), error = %e, "could not remove a dropped container");
            let _ = writeln!(
                std::io::stderr(),
                "testdock: could not remove container {id}: {e}"
            );
        }
    });
}

/// Creates and starts in flight, and a signal when the last one ends.
static STARTING: AtomicUsize = AtomicUsize::new(0);
static STARTS_DONE: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// How long a dropped container's removal waits for starts to finish.
const YIELD_LIMIT: Duration = Duration::from_secs(1);

/// Held while a container is created and started.
pub(crate) struct Starting(());

impl Starting {
    pub(crate) fn begin() -> Self {
        STARTING.fetch_add(1, Ordering::SeqCst);
        // Begun while the exit hook runs: it may already have told the
        // watchdog the exit is clean; this create could land after its
        // one look.
        if EXITING.load(Ordering::SeqCst) {
            crate::watchdog::unclean_exit();
        }
        Starting(())
    }
}

/// Set when the exit hook begins.
static EXITING: AtomicBool = AtomicBool::new(false);

impl Drop for Starting {
    fn drop(&mut self) {
        if STARTING.fetch_sub(1, Ordering::SeqCst) == 1 {
            STARTS_DONE.notify_waiters();
        }
    }
}

/// Lets the starts in flight finish first (for at most [`YIELD_LIMIT`]).
/// Stopping a container costs the daemon about half a start; done at the
/// same time, it slows the next test's start — the very wait a dropped
/// guard was meant to spare the test. After the start, the test is busy
/// with its container and the engine has room.
async fn yield_to_starts() {
    let deadline = tokio::time::Instant::now() + YIELD_LIMIT;
    loop {
        let done = STARTS_DONE.notified();
        tokio::pin!(done);
        // Registered before the check, so a start ending in between wakes us.
        done.as_mut().enable();
        if STARTING.load(Ordering::SeqCst) == 0 {
            return;
        }
        if tokio::time::timeout_at(deadline, done).await.is_err() {
            return;
        }
    }
}

/// Work the exit hook starts first, on the engine runtime.
type ExitWork = fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
static EXIT_WORK: Mutex<Vec<ExitWork>> = Mutex::new(Vec::new());

/// Has the exit hook run `work` (and wait for it, as for queued work):
/// for what a process holds in a server that outlives it.
pub(crate) fn on_exit(work: ExitWork) {
    lock(&EXIT_WORK).push(work);
}

/// Runs cleanup work on the engine runtime, counted so the exit hook can
/// wait for it.
pub(crate) fn queue(work: impl std::future::Future<Output = ()> + Send + 'static) {
    /// Counts the work done however it ends, a panic included, so the exit
    /// hook never waits for work that is gone.
    struct Done;
    impl Drop for Done {
        fn drop(&mut self) {
            let (count, done) = &*PENDING;
            *lock(count) -= 1;
            done.notify_all();
        }
    }
    *lock(&PENDING.0) += 1;
    spawn_detached(async move {
        let _done = Done;
        work.await;
    });
}

/// Waits until no queued work is left, or `deadline`. True if none is.
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
/// this waits for it, then removes what the session still owns (guards in
/// statics, volumes that were in use). Costs the engine nothing in a
/// process that owns nothing and queued nothing — a joiner of the run's
/// server, the watchdog.
#[dtor::dtor(unsafe)]
fn at_exit() {
    // A child forked from this process inherits the statics but not the
    // engine's threads, and must not finish its parent's session.
    if runtime_if_started().is_none() || crate::engine::runtime_pid() != Some(std::process::id()) {
        return;
    }
    keep_shared_if_a_test_failed();
    for work in std::mem::take(&mut *lock(&EXIT_WORK)) {
        queue(work());
    }
    EXITING.store(true, Ordering::SeqCst);
    let owns = owns_anything();
    if !owns && Lazy::get(&PENDING).is_none_or(|(n, _)| *lock(n) == 0) {
        return;
    }
    let deadline = Instant::now() + EXIT_WAIT;
    let t0 = Instant::now();
    let queued = Lazy::get(&PENDING).map_or(0, |(n, _)| *lock(n));
    // Events go out from the engine's threads: this thread's thread-locals
    // are gone by now, and a subscriber that uses them (tracing-subscriber's
    // fmt does) panics.
    queue(
        async move { guarded(|| tracing::debug!(queued, "exit hook: waiting for queued removals")) },
    );
    if !wait_pending(deadline.min(Instant::now() + SAY_AFTER)) {
        let left = Lazy::get(&PENDING).map_or(0, |(n, _)| *lock(n));
        // A raw write: libtest's capture is over, and it must not panic.
        let _ = writeln!(
            std::io::stderr(),
            "testdock: at exit, waiting for {left} queued cleanup step(s) (container removals, \
             database drops) — at most {EXIT_WAIT:?}"
        );
        wait_pending(deadline);
    }
    let waited = ms(t0);
    let deadline = Instant::now() + FINAL_WAIT;
    queue(async move {
        guarded(|| {
            tracing::debug!(
                queued,
                elapsed_ms = waited,
                "exit hook: queued removals done"
            )
        })
    });
    queue(async move {
        if !owns {
            return;
        }
        crate::spare::discard().await;
        // A request lost on the way (a remote engine, a busy daemon) must
        // not leave the session to the watchdog alone: try again.
        for attempt in 1..=3 {
            match finish_session(session_id()).await {
                Ok(_) => {
                    FINISHED.store(true, Ordering::SeqCst);
                    break;
                }
                Err(e) if attempt == 3 => {
                    guarded(|| tracing::warn!(error = %e, "exit hook: cleanup failed"));
                    let _ = writeln!(std::io::stderr(), "testdock: cleanup at exit failed: {e}");
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    });
    if !wait_pending(deadline) {
        let _ = writeln!(
            std::io::stderr(),
            "testdock: gave up waiting for the final cleanup after {FINAL_WAIT:?}; the watchdog will finish it \
             (see `docker ps -a --filter label=testdock.managed`)"
        );
    }
    let total = ms(t0);
    queue(async move { guarded(|| tracing::debug!(elapsed_ms = total, "exit hook done")) });
    if wait_pending(deadline)
        && (!owns || FINISHED.load(Ordering::SeqCst))
        && STARTING.load(Ordering::SeqCst) == 0
    {
        crate::watchdog::clean_exit();
    }
}

/// Set when the exit hook's final cleanup succeeded.
static FINISHED: AtomicBool = AtomicBool::new(false);

/// A resource testdock created, as listed by the engine.
#[derive(Debug)]
pub(crate) struct Found {
    pub(crate) kind: Kind,
    /// Container or network id, volume name.
    pub(crate) id: String,
    /// Container name (without the leading `/`), else the id.
    pub(crate) name: String,
    pub(crate) labels: HashMap<String, String>,
    /// A container created and never started (a spare, or a failed start):
    /// nothing in it to keep.
    pub(crate) never_started: bool,
}

/// The three kinds of resource, in the order they must be removed:
/// containers hold networks and volumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Container,
    Network,
    Volume,
}

impl Found {
    pub(crate) fn is_kept(&self) -> bool {
        self.kind == Kind::Container && has_kept_mark(&self.name)
    }
}

/// Everything carrying `label` (`key` or `key=value`), containers first.
pub(crate) async fn list(docker: &bollard::Docker, label: &str) -> Result<Vec<Found>> {
    let filters = HashMap::from([("label", vec![label.to_string()])]);
    let op = |what: &str, e| Error::docker(format!("list {what} labelled {label}"), e);
    let mut found = Vec::new();
    let opts = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    // Podman briefly reports a container being killed as "stopped", a state
    // bollard cannot read; it passes within moments, so look again.
    let mut tries = 0;
    let containers = loop {
        match docker.list_containers(Some(opts.clone())).await {
            Err(bollard::errors::Error::JsonDataError { .. }) if tries < 40 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => break other.map_err(|e| op("containers", e))?,
        }
    };
    for c in containers {
        let id = c.id.unwrap_or_default();
        let name = c
            .names
            .and_then(|n| n.into_iter().next())
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_else(|| id.clone());
        found.push(Found {
            kind: Kind::Container,
            id,
            name,
            labels: c.labels.unwrap_or_default(),
            never_started: c.state == Some(bollard::models::ContainerSummaryStateEnum::CREATED),
        });
    }
    let networks = docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::new().filters(&filters).build(),
        ))
        .await
        .map_err(|e| op("networks", e))?;
    for n in networks {
        let id = n.id.unwrap_or_default();
        let name = n.name.unwrap_or_else(|| id.clone());
        found.push(Found {
            kind: Kind::Network,
            id,
            name,
            labels: n.labels.unwrap_or_default(),
            never_started: false,
        });
    }
    let volumes = docker
        .list_volumes(Some(
            ListVolumesOptionsBuilder::new().filters(&filters).build(),
        ))
        .await
        .map_err(|e| op("volumes", e))?;
    for v in volumes.volumes.unwrap_or_default() {
        found.push(Found {
            kind: Kind::Volume,
            id: v.name.clone(),
            name: v.name,
            labels: v.labels,
            never_started: false,
        });
    }
    Ok(found)
}

/// Removes one listed resource. Gone already, or still in use by a kept
/// container (409 for volumes, 403/409 for networks), counts as not
/// removed, without error.
pub(crate) async fn remove_found(docker: &bollard::Docker, f: &Found) -> Result<bool> {
    let result = match f.kind {
        Kind::Container => force_remove(docker, &f.id).await,
        Kind::Network => docker.remove_network(&f.id).await,
        Kind::Volume => {
            docker
                .remove_volume(&f.id, None::<RemoveVolumeOptions>)
                .await
        }
    };
    match result {
        Ok(()) => Ok(true),
        Err(e) if matches!(status_of(&e), Some(403 | 404 | 409)) => Ok(false),
        Err(e) => Err(Error::docker(
            format!("remove {:?} {}", f.kind, f.name).to_lowercase(),
            e,
        )),
    }
}

/// Removes the given resources, containers before what they use. Returns
/// how many were removed; the first error is returned after trying all.
pub(crate) async fn remove_all(docker: &bollard::Docker, mut found: Vec<Found>) -> Result<usize> {
    found.sort_by_key(|f| f.kind);
    let mut removed = 0;
    let mut first_err = None;
    for kind in [Kind::Container, Kind::Network, Kind::Volume] {
        let batch = found.iter().filter(|f| f.kind == kind);
        // Containers in parallel: each removal waits on its own process.
        let results = futures_util::future::join_all(batch.map(|f| remove_found(docker, f))).await;
        for r in results {
            match r {
                Ok(true) => removed += 1,
                Ok(false) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(removed),
    }
}

/// What the exit hook and the watchdog do when a session ends: remove
/// everything labelled with `session` except kept containers — or, with
/// `TESTDOCK_KEEP=always`, mark every container kept instead. Returns how
/// many resources it removed or marked.
pub(crate) async fn finish_session(session: &str) -> Result<usize> {
    let docker = client().await?;
    let found = list(docker, &format!("{LABEL_SESSION}={session}")).await?;
    let found: Vec<Found> = found.into_iter().filter(|f| !f.is_kept()).collect();
    tracing::debug!(
        session,
        left = found.len(),
        "session finished; removing what it left"
    );
    if !keep(false) {
        return remove_all(docker, found).await;
    }
    // Kept for inspection: what ran. A spare never did.
    let (spares, found): (Vec<Found>, Vec<Found>) =
        found.into_iter().partition(|f| f.never_started);
    // A spare that cannot be removed must not stop the marking.
    let mut marked = match remove_all(docker, spares).await {
        Ok(n) => n,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "testdock: could not remove a spare: {e}");
            0
        }
    };
    for f in found.iter().filter(|f| f.kind == Kind::Container) {
        if mark_kept(docker, &f.id, &f.name).await.is_ok() {
            marked += 1;
        }
    }
    Ok(marked)
}

/// How long a watchdog keeps looking after an owner that did not exit
/// cleanly: a create the engine was still processing when the owner died
/// lands after the first look (seconds on vfs storage).
pub(crate) const SETTLE: Duration = Duration::from_secs(5);
/// How long it goes on while each look still finds something.
const SETTLE_MAX: Duration = Duration::from_secs(30);

/// What a watchdog (of a process or of a run) does once its owner is gone:
/// [`finish_session`], then again every half second until a look finds
/// nothing — after `SETTLE` has passed, unless the owner said it exited
/// `clean` (nothing in flight). Blocking, on a runtime of its own: a
/// watchdog process runs no other.
pub(crate) fn finish_settled(session: &str, clean: bool) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let fired = Instant::now();
    rt.block_on(async {
        loop {
            let removed = finish_session(session).await.unwrap_or(1);
            let settled = clean || fired.elapsed() >= SETTLE;
            if (removed == 0 && settled) || fired.elapsed() >= SETTLE_MAX {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}

/// Renames a container `<name>.kept` — or `<name>.kept.2`, `.3`… when an
/// earlier run's kept container of the same fixed name holds that name.
async fn mark_kept(
    docker: &bollard::Docker,
    id: &str,
    name: &str,
) -> std::result::Result<(), bollard::errors::Error> {
    let mut n = 1;
    loop {
        let kept = match n {
            1 => format!("{name}{KEPT_SUFFIX}"),
            n => format!("{name}{KEPT_SUFFIX}.{n}"),
        };
        let opts = RenameContainerOptionsBuilder::new().name(&kept).build();
        match docker.rename_container(id, opts).await {
            Err(e) if status_of(&e) == Some(409) && n < 100 => n += 1,
            other => return other,
        }
    }
}

/// Whether a container name carries the kept mark (`.kept`, `.kept.N`).
fn has_kept_mark(name: &str) -> bool {
    match name.rsplit_once(KEPT_SUFFIX) {
        Some((_, "")) => true,
        Some((_, rest)) => rest
            .strip_prefix('.')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
        None => false,
    }
}

/// Shared containers (statics, never dropped) of this process.
static SHARED: Lazy<Mutex<Vec<(String, String)>>> = Lazy::new(Default::default);
/// Whether a test of this process panicked (known with
/// `TESTDOCK_KEEP=on-failure` only).
static A_TEST_FAILED: AtomicBool = AtomicBool::new(false);

/// Notes a shared container, so that with `TESTDOCK_KEEP=on-failure` it is
/// kept at exit when a test of the process failed. A static is never
/// dropped, so no `Drop` sees the failure: a panic hook, chained before
/// the one in place, notes any panic on a thread that is not testdock's
/// (libtest catches a failing test's panic after its hook ran).
pub(crate) fn register_shared(id: &str, name: &str) {
    lock(&SHARED).push((id.to_string(), name.to_string()));
    static HOOK: std::sync::Once = std::sync::Once::new();
    if std::env::var("TESTDOCK_KEEP").as_deref() == Ok("on-failure") {
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                let ours = std::thread::current()
                    .name()
                    .is_some_and(|n| n.starts_with("testdock-"));
                if !ours {
                    A_TEST_FAILED.store(true, Ordering::Relaxed);
                }
                previous(info);
            }));
        });
    }
}

/// At exit: keeps the shared containers if a test failed and
/// `TESTDOCK_KEEP=on-failure` asks for it.
fn keep_shared_if_a_test_failed() {
    if !(A_TEST_FAILED.load(Ordering::Relaxed) && keep(true)) {
        return;
    }
    for (id, name) in lock(&SHARED).drain(..) {
        keep_in_background(id, name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_follows_the_setting() {
        assert!(!keep_policy(None, true));
        assert!(!keep_policy(Some("never"), true));
        assert!(keep_policy(Some("on-failure"), true));
        assert!(!keep_policy(Some("on-failure"), false));
        assert!(keep_policy(Some("always"), false));
    }

    #[test]
    fn kept_means_a_container_with_the_mark() {
        let f = |kind, name: &str| Found {
            kind,
            id: "x".into(),
            name: name.into(),
            labels: HashMap::new(),
            never_started: false,
        };
        assert!(f(Kind::Container, "testdock-abc.kept").is_kept());
        assert!(f(Kind::Container, "db.kept.2").is_kept());
        assert!(!f(Kind::Container, "db.kept.x").is_kept());
        assert!(!f(Kind::Container, "db.kept.").is_kept());
        assert!(!f(Kind::Container, "testdock-abc").is_kept());
        assert!(!f(Kind::Volume, "v.kept").is_kept());
    }
}
