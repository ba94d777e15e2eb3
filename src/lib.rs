//! Throw-away Docker containers for integration tests: start real
//! containers, talk to them, and never leave one behind.
//!
//! ```no_run
//! # async fn run() -> testdock::Result<()> {
//! use testdock::{ContainerSpec, HostImage};
//!
//! let c = ContainerSpec::new(HostImage::shell())
//!     .cmd(["sleep", "infinity"])
//!     .start()
//!     .await?;
//! let out = c.exec(["sh", "-c", "echo out; echo err >&2; exit 3"]).await?;
//! assert_eq!((out.stdout_text().as_ref(), out.stderr_text().as_ref(), out.exit_code), ("out\n", "err\n", 3));
//! c.teardown().await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`ContainerSpec`] (`spec.rs`): what to start, as a builder;
//!   `start()` gives a [`TestContainer`], `run()` a one-shot [`ExecOutput`].
//! - [`TestContainer`] (`container.rs`): the RAII guard — ports, logs,
//!   lifecycle, `teardown()`, and a `Drop` that only queues removal.
//! - [`Exec`] / [`ExecOutput`] (`exec.rs`): exact stdout, stderr, exit code.
//! - [`Interactive`] / [`ExecSession`] (`interactive.rs`): an exec to
//!   converse with — write stdin, read until a pattern, optional TTY.
//! - [`FileCopy`] / [`CopyIn`] (`files.rs`): files, directories and bytes
//!   into and out of containers.
//! - [`Stats`] (`stats.rs`): pause, unpause, resource use, OCI runtime.
//! - [`Image`] / [`HostImage`] (`image.rs`): named images pulled only when
//!   missing, images packed from this machine's binaries, fallback chains.
//! - `engine.rs`: the crate's own runtime and Docker connection ([`docker`]).
//! - `session.rs`: the session id and labels every resource carries.
//! - `reaper.rs`: queued removals, the exit hook, keep-on-failure.
//! - `watchdog.rs`: the process that cleans up after a killed one.
//! - [`sweep`] (`sweep.rs`): removes what dead sessions left.
//! - [`SharedContainer`] (`shared.rs`): one container per test run, shared
//!   across its processes (created by one, joined by the others).
//! - `run.rs`: what the run is (nextest, cargo, by hand, reuse), its labels
//!   and the watchdog that removes its resources when it ends.
//! - [`postgres`] (`modules/postgres.rs`): a shared PostgreSQL server and a
//!   fresh database per test, cloned from a template of the migrations.
//! - [`redis`] (`modules/redis.rs`): a shared Redis server and a logical
//!   database leased per test. `modules/local.rs`: the fixtures' images
//!   made from this machine's install.
//!
//! All Docker traffic runs on one small runtime owned by testdock, so every
//! async method works from `#[tokio::test]` (either flavour), from a plain
//! `#[test]` with any `block_on`, and from other executors.
#![deny(missing_docs, missing_debug_implementations)]

mod build;
mod container;
mod discovery;
mod doctor;
mod engine;
mod error;
mod exec;
mod files;
mod host_image;
mod image;
mod interactive;
mod logs;
mod migrations;
mod modules;
mod network;
mod progress;
mod reaper;
mod run;
mod session;
mod shared;
mod spare;
mod spec;
mod stack;
mod stats;
mod sweep;
mod trace;
mod util;
mod wait;
mod watchdog;

pub use bollard;
pub use build::{DockerfileImage, RootfsImage};
pub use container::{Logs, TestContainer};
pub use doctor::{doctor, Check, Report};
pub use engine::{docker, host_bind_address, Docker};
pub use error::{Error, Result};
pub use exec::{Exec, ExecOutput};
pub use files::{CopyIn, FileCopy};
pub use host_image::HostImage;
pub use image::{ensure_image, Image, PullPolicy, LABEL_IMAGE};
pub use interactive::{ExecSession, Interactive};
pub use logs::{LogLine, LogSource, LogStream};
pub use migrations::{BoxError, Migrations, TemplateDb, TemplateKey};
pub use modules::{mysql, postgres, redis};
pub use network::TestNetwork;
pub use run::{LABEL_IDLE, LABEL_RUN};
pub use session::{
    session_id, LABEL_EXPIRES, LABEL_HOST, LABEL_MANAGED, LABEL_PID, LABEL_PID_NS, LABEL_PID_START,
    LABEL_SESSION,
};
pub use shared::SharedContainer;
pub use spec::ContainerSpec;
pub use stack::{Stack, TestStack};
pub use stats::Stats;
pub use sweep::sweep;
pub use wait::WaitFor;
pub use watchdog::watchdog_pid;

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[allow(dead_code)]
fn _assert_impls() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Docker>();
    send_sync::<TestContainer>();
    send_sync::<Error>();
    send_sync::<ContainerSpec>();
    send_sync::<ExecOutput>();
    send_sync::<ExecSession>();
    send_sync::<TestNetwork>();
    send_sync::<TestStack>();
    send_sync::<postgres::TestDatabase>();
    send_sync::<postgres::PostgresServer>();
    send_sync::<postgres::SharedPostgres>();
    send_sync::<redis::TestRedisDb>();
    send_sync::<redis::RedisServer>();
    send_sync::<redis::SharedRedis>();
    send_sync::<mysql::TestDatabase>();
    send_sync::<mysql::MysqlServer>();
    send_sync::<mysql::SharedMysql>();
}
