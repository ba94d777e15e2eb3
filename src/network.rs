//! `TestNetwork`: a private, labelled network, removed like a container.

use std::time::{Duration, Instant};

use bollard::models::NetworkCreateRequest;

use crate::engine::{client, on_engine};
use crate::error::{status_of, Error, Result};
use crate::reaper;
use crate::session::labels;

/// How long removing a network waits for its containers' queued removals.
const DETACH_WAIT: Duration = Duration::from_secs(10);

/// A user-defined bridge network for a test; containers on it reach each
/// other by name and alias. Removed on [`teardown`](TestNetwork::teardown)
/// or `Drop`, like a [`TestContainer`](crate::TestContainer), and by the
/// exit hook, the watchdog and the sweep.
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> testdock::Result<()> {
/// use testdock::{ContainerSpec, HostImage, TestNetwork};
///
/// let net = TestNetwork::new().await?;
/// let server = ContainerSpec::new(HostImage::shell())
///     .cmd(["sleep", "infinity"])
///     .network(net.name())
///     .network_alias("db")
///     .start()
///     .await?;
/// // Another container with `.network(net.name())` reaches it as `db`.
/// # Ok(()) }
/// ```
#[must_use = "dropping a TestNetwork removes it"]
#[derive(Debug)]
pub struct TestNetwork {
    id: String,
    name: String,
    armed: bool,
}

impl TestNetwork {
    /// Creates a network with a unique name.
    ///
    /// # Errors
    ///
    /// [`Error::Docker`] if the engine refuses.
    pub async fn new() -> Result<Self> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self::with_name(format!("testdock-net-{}", &id[..12])).await
    }

    /// Creates a network called `name`.
    ///
    /// # Errors
    ///
    /// [`Error::Docker`] if the engine refuses (e.g. the name is taken).
    pub async fn with_name(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        on_engine(async move {
            let docker = client().await?;
            reaper::note_created().await;
            let _creating = reaper::Starting::begin();
            let req = NetworkCreateRequest {
                name: name.clone(),
                driver: Some("bridge".into()),
                labels: Some(labels()),
                ..Default::default()
            };
            let created = docker
                .create_network(req)
                .await
                .map_err(|e| Error::docker(format!("create network {name}"), e))?;
            tracing::debug!(id = crate::trace::short(&created.id), name = %name, "network created");
            Ok(TestNetwork {
                id: created.id,
                name,
                armed: true,
            })
        })
        .await
    }

    /// The network's name, for [`ContainerSpec::network`](crate::ContainerSpec::network).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The network's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Removes the network, waiting (up to 10 s) for the removal of
    /// containers still attached.
    ///
    /// # Errors
    ///
    /// [`Error::Docker`] if the engine refuses, e.g. a container still
    /// holds it after the wait.
    pub async fn teardown(mut self) -> Result<()> {
        self.armed = false;
        if reaper::keep(false) {
            // Kept containers still use it; it goes when they expire.
            return Ok(());
        }
        let id = std::mem::take(&mut self.id);
        on_engine(async move { remove(&id).await }).await
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        // A failing test's kept containers still use it; the sweep removes
        // it when they expire.
        if self.armed && !reaper::keep(std::thread::panicking()) {
            let id = std::mem::take(&mut self.id);
            reaper::queue(async move {
                if let Err(e) = remove(&id).await {
                    tracing::warn!(
                        id = crate::trace::short(&id),
                        error = %e,
                        "could not remove a network"
                    );
                    eprintln!("testdock: could not remove network {id}: {e}");
                }
            });
        }
    }
}

/// Removes a network. Containers dropped just before it are removed in the
/// background, so "active endpoints" (403) is retried for a while.
async fn remove(id: &str) -> Result<()> {
    let docker = client().await?;
    let deadline = Instant::now() + DETACH_WAIT;
    loop {
        match docker.remove_network(id).await {
            Ok(()) => {
                let waited = DETACH_WAIT.saturating_sub(deadline - Instant::now());
                tracing::debug!(
                    id = crate::trace::short(id),
                    elapsed_ms = waited.as_millis() as u64,
                    "network removed"
                );
                return Ok(());
            }
            Err(e) if status_of(&e) == Some(404) => return Ok(()),
            Err(e) if status_of(&e) == Some(403) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(Error::docker(format!("remove network {id}"), e)),
        }
    }
}
