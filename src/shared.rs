//! Shared containers: one per process, or one per test run across all its
//! processes ([`crate::run`]), started on first use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::models::ContainerStateStatusEnum as State;
use once_cell::sync::Lazy;
use tokio::sync::OnceCell;

use crate::container::{boot, create_as, Created, TestContainer};
use crate::engine::{client, on_engine};
use crate::error::{status_of, Error, Result};
use crate::run::{self, Run};
use crate::spec::ContainerSpec;

/// A container started once, on first use, and shared by every test of the
/// run — every process of `cargo nextest run`, every test binary of one
/// `cargo test` — for a server that is expensive to start and that tests
/// can share (each using its own database, bucket, key prefix…).
///
/// Put it in a `static`. The first process to ask creates and starts it;
/// the others, at once or later, join it and wait for the same readiness.
/// It belongs to the run: it outlives the process that made it and is
/// removed when the run ends, however it ends. Different specs never share.
/// With no runner (a test binary run by hand) or `TESTDOCK_SHARE=process`
/// it is the process's, removed at its exit. See the README's "Sharing".
///
/// If the start fails, that caller gets the error and the next caller tries
/// again.
///
/// # Examples
///
/// ```no_run
/// use testdock::{ContainerSpec, HostImage, SharedContainer};
///
/// static SERVER: SharedContainer = SharedContainer::new(|| {
///     ContainerSpec::new(HostImage::shell()).cmd(["sleep", "infinity"])
/// });
///
/// # async fn a_test() -> testdock::Result<()> {
/// let c = SERVER.get().await?;
/// c.exec_ok(["true"]).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SharedContainer {
    spec: fn() -> ContainerSpec,
    cell: OnceCell<TestContainer>,
}

impl SharedContainer {
    /// A shared container made from `spec` on first use.
    pub const fn new(spec: fn() -> ContainerSpec) -> Self {
        SharedContainer {
            spec,
            cell: OnceCell::const_new(),
        }
    }

    /// The container, started by the first caller of the run; concurrent
    /// first callers wait for that one start.
    ///
    /// # Errors
    ///
    /// As [`ContainerSpec::start`]; [`Error::NotReady`] when the run's
    /// container, started by another process, exited or never became ready.
    pub async fn get(&self) -> Result<&TestContainer> {
        self.cell
            .get_or_try_init(|| start_shared((self.spec)()))
            .await
    }
}

impl ContainerSpec {
    /// The container of this spec shared by the process and the run, as
    /// with a [`SharedContainer`] — for code that cannot declare a
    /// `static`, such as a per-test attribute macro. The same spec gives the
    /// same container for as long as the process lives.
    ///
    /// # Errors
    ///
    /// As [`SharedContainer::get`].
    pub async fn shared(self) -> Result<&'static TestContainer> {
        once_per_key(format!("{self:?}"), || start_shared(self)).await
    }
}

/// One `&'static T` per key for the process, made by `make` once however
/// many ask at once; after a failure the next caller tries again. Leaked on
/// purpose: it lives as long as the process, like a static's.
pub(crate) async fn once_per_key<T, F, Fut>(key: String, make: F) -> Result<&'static T>
where
    T: Send + Sync + 'static,
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    type Made = &'static (dyn std::any::Any + Send + Sync);
    type Cells = Mutex<HashMap<(std::any::TypeId, String), Arc<OnceCell<Made>>>>;
    static CELLS: Lazy<Cells> = Lazy::new(Default::default);
    let cell = CELLS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry((std::any::TypeId::of::<T>(), key))
        .or_default()
        .clone();
    let made = cell
        .get_or_try_init(|| async {
            let made: Made = Box::leak(Box::new(make().await?));
            Ok::<_, Error>(made)
        })
        .await?;
    Ok(made.downcast_ref::<T>().expect("cells are keyed by type"))
}

/// Starts `spec` for the run, or for the process when there is no run.
pub(crate) async fn start_shared(spec: ContainerSpec) -> Result<TestContainer> {
    match run::current() {
        Some(run) => on_engine(start_in_run(spec, run)).await,
        None => {
            let c = spec.start().await?;
            crate::reaper::register_shared(c.id(), c.name());
            Ok(c)
        }
    }
}

/// How many times a caller goes round when the container it joined went
/// away (its creator failed, or died before starting it). A name taken by a
/// create still in flight does not count.
const ATTEMPTS: usize = 4;
/// What a joiner allows the creator beyond the startup timeout: the image,
/// the create and the start.
const CREATE_GRACE: Duration = Duration::from_secs(60);

/// Creates the run's container of `spec` or joins the one another process
/// created, and returns once it is ready. The guard never removes it: the
/// run does.
async fn start_in_run(spec: ContainerSpec, run: &'static Run) -> Result<TestContainer> {
    // An idle scope counts this process as a user before anything else, so
    // its watchdog cannot remove what we are about to join.
    run::ensure_watch(run, false).await;
    let mut why_again = String::new();
    let mut attempts = 0;
    let in_flight_until = Instant::now() + CREATE_GRACE;
    while attempts < ATTEMPTS {
        match create_as(&spec, false, false, Some(run)).await? {
            Created::New(c, _) => {
                run::ensure_watch(run, true).await;
                // Once per run: the processes that join sweep nothing.
                crate::sweep::sweep_once();
                let mut c = boot(c, &spec).await?;
                c.disarm();
                mark_ready(run, c.name(), c.id()).await;
                crate::reaper::register_shared(c.id(), c.name());
                return Ok(c);
            }
            Created::Exists { name } => match join(&spec, &name).await? {
                Joined::Ready(c) => {
                    crate::reaper::register_shared(c.id(), c.name());
                    return Ok(c);
                }
                Joined::Gone(why) => {
                    attempts += 1;
                    why_again = why;
                }
                // A 404 right after our 409 is most often a create in
                // flight: the engine reserves the name first.
                Joined::NotFound if Instant::now() < in_flight_until => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Joined::NotFound => {
                    attempts += 1;
                    why_again = format!("{name} was removed");
                }
            },
        }
    }
    Err(Error::InvalidSpec(format!(
        "the run's shared container of {:?} kept going away ({why_again}); tried {ATTEMPTS} times",
        spec.image
    )))
}

enum Joined {
    Ready(TestContainer),
    /// Removed, or taken over from a dead creator: try again.
    Gone(String),
    /// Not there (yet): create it again.
    NotFound,
}

/// Waits until the container another process created is running and
/// ready, by the spec's own readiness checks.
async fn join(spec: &ContainerSpec, name: &str) -> Result<Joined> {
    let docker = client().await?;
    let started = Instant::now();
    let deadline = started + spec.startup_timeout + CREATE_GRACE;
    let (id, image) = loop {
        let info = match docker.inspect_container(name, None).await {
            Ok(info) => info,
            // Removed — or not yet inspectable: the engine reserves the
            // name before the creator's create is done. Either way, ask
            // to create it again.
            Err(e) if status_of(&e) == Some(404) => return Ok(Joined::NotFound),
            Err(e) => return Err(Error::docker(format!("inspect container {name}"), e)),
        };
        let labels = info
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        let image = info
            .config
            .as_ref()
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        let status = info.state.as_ref().and_then(|s| s.status);
        let creator = run::creator_alive(labels.get(run::LABEL_CREATOR));
        match status {
            Some(State::RUNNING) => {
                break (info.id.clone().unwrap_or_else(|| name.to_string()), image)
            }
            // The creator died between create and start: take over.
            Some(State::CREATED) if creator == Some(false) => {
                let _ = crate::reaper::remove(name, &Default::default()).await;
                return Ok(Joined::Gone(format!(
                    "its creator died before starting {name}"
                )));
            }
            Some(State::EXITED | State::DEAD) if creator != Some(true) => {
                let logs = crate::container::read_logs_tail(name.to_string(), 20)
                    .await
                    .map(|l| format!("{}{}", l.stdout_text(), l.stderr_text()))
                    .unwrap_or_default();
                return Err(Error::NotReady {
                    container: name.to_string(),
                    strategy: "the run's shared container, started by another process".into(),
                    outcome: "it is not running".into(),
                    waited: started.elapsed(),
                    logs_tail: logs,
                });
            }
            Some(State::REMOVING) => return Ok(Joined::Gone(format!("{name} is being removed"))),
            // Created, or exited while its live creator removes it: wait.
            _ => {}
        }
        if Instant::now() >= deadline {
            return Err(Error::NotReady {
                container: name.to_string(),
                strategy: "the run's shared container, started by another process".into(),
                outcome: format!("still {status:?} after {:?}", started.elapsed()),
                waited: started.elapsed(),
                logs_tail: String::new(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let c = TestContainer::joined(id.clone(), name.to_string(), image, spec.clone());
    let waits = &spec.waits;
    if !waits.is_empty() && !marked_ready(name, &id).await {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Err(e) = crate::wait::wait_ready(&c.target(), waits, left).await {
            if !crate::container::exists(&id).await {
                return Ok(Joined::Gone(format!("{name} went away while starting")));
            }
            return Err(e);
        }
    }
    Ok(Joined::Ready(c))
}

/// The creator's word that the run's container passed its readiness
/// checks: a volume named after it, labelled as the run's (so it goes with
/// the run). A joiner that finds it skips the checks — one exec fewer per
/// test process under nextest.
/// Named after the container's id too: a container of the same name made
/// later (the first one kept for a failing test) is not yet ready.
fn ready_mark(name: &str, id: &str) -> String {
    format!("{name}.ready.{}", &id[..id.len().min(12)])
}

async fn mark_ready(run: &Run, name: &str, id: &str) {
    let Ok(docker) = client().await else { return };
    let req = bollard::models::VolumeCreateRequest {
        name: Some(ready_mark(name, id)),
        labels: Some(run::labels(run)),
        ..Default::default()
    };
    // Best effort: without it, joiners run the checks themselves.
    let _ = docker.create_volume(req).await;
}

async fn marked_ready(name: &str, id: &str) -> bool {
    match client().await {
        Ok(docker) => docker.inspect_volume(&ready_mark(name, id)).await.is_ok(),
        Err(_) => false,
    }
}
