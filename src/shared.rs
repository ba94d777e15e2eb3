//! `SharedContainer`: one container per process, started on first use and
//! handed to every test in the binary.

use crate::container::TestContainer;
use crate::error::Result;
use crate::spec::ContainerSpec;

/// A container started once per process, on first use, and shared by every
/// test in the binary — for a server that is expensive to start and that
/// tests can share (each using its own database, bucket, key prefix…).
///
/// Put it in a `static`. Statics are never dropped: the container is
/// removed at process exit by testdock's exit hook, or by the watchdog if
/// the process is killed.
///
/// Under `cargo test` all tests of a binary share one container. Under
/// `cargo nextest` every test is its own process, so each gets its own
/// container: correct, but the start is paid per test.
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
    cell: tokio::sync::OnceCell<TestContainer>,
}

impl SharedContainer {
    /// A shared container made from `spec` on first use.
    pub const fn new(spec: fn() -> ContainerSpec) -> Self {
        SharedContainer {
            spec,
            cell: tokio::sync::OnceCell::const_new(),
        }
    }

    /// The container, started by the first caller; concurrent first callers
    /// wait for that one start.
    ///
    /// # Errors
    ///
    /// As [`ContainerSpec::start`].
    pub async fn get(&self) -> Result<&TestContainer> {
        self.cell.get_or_try_init(|| (self.spec)().start()).await
    }
}
