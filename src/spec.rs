//! `ContainerSpec`: what to start, as a builder.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::image::Image;
use crate::logs::{Consumer, LogLine};
use crate::wait::{WaitFor, DEFAULT_STARTUP_TIMEOUT};

/// Everything needed to start a container; inert until [`start`] or [`run`].
///
/// Options chain by value. A bad input (say a negative CPU limit) does not
/// panic: the first one is kept and returned by [`start`]/[`run`] as
/// [`Error::InvalidSpec`](crate::Error::InvalidSpec), before anything is
/// created.
///
/// Defaults keep tests safe and reachable: a unique name, published ports on
/// `127.0.0.1` only, `host.docker.internal` mapped to the host, not
/// privileged, no added capabilities.
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> testdock::Result<()> {
/// use testdock::{ContainerSpec, HostImage};
///
/// let c = ContainerSpec::new(HostImage::shell())
///     .cmd(["sleep", "infinity"])
///     .env("GREETING", "hi")
///     .bind_mount_ro("fixtures/config", "/config")
///     .memory_limit(256 * 1024 * 1024)
///     .start()
///     .await?;
/// let out = c.exec(["sh", "-c", "echo $GREETING"]).await?;
/// assert_eq!(out.stdout_text(), "hi\n");
/// c.teardown().await?;
/// # Ok(()) }
/// ```
///
/// [`start`]: ContainerSpec::start
/// [`run`]: ContainerSpec::run
#[must_use = "a ContainerSpec does nothing until `.start()` or `.run()` is awaited"]
#[derive(Clone, Debug)]
pub struct ContainerSpec {
    pub(crate) image: Image,
    pub(crate) cmd: Option<Vec<String>>,
    pub(crate) entrypoint: Option<Vec<String>>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) labels: HashMap<String, String>,
    pub(crate) name: Option<String>,
    pub(crate) workdir: Option<String>,
    pub(crate) user: Option<String>,
    pub(crate) binds: Vec<Bind>,
    pub(crate) volumes: Vec<(String, String, bool)>,
    pub(crate) tmpfs: Vec<(String, String)>,
    pub(crate) ports: Vec<u16>,
    pub(crate) host_gateway: bool,
    pub(crate) extra_hosts: Vec<String>,
    pub(crate) memory: Option<i64>,
    pub(crate) nano_cpus: Option<i64>,
    pub(crate) network: Option<String>,
    pub(crate) privileged: bool,
    pub(crate) cap_add: Vec<String>,
    pub(crate) cap_drop: Vec<String>,
    pub(crate) shm_size: Option<i64>,
    pub(crate) init: bool,
    pub(crate) stop_signal: Option<String>,
    pub(crate) read_only_rootfs: bool,
    pub(crate) stdin: Option<Vec<u8>>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) waits: Vec<WaitFor>,
    pub(crate) startup_timeout: Duration,
    pub(crate) healthcheck: Option<(Vec<String>, Duration)>,
    pub(crate) aliases: Vec<String>,
    pub(crate) log_consumer: Option<Consumer>,
    pub(crate) files: Vec<crate::files::FileCopy>,
    pub(crate) runtime: Option<String>,
    pub(crate) error: Option<String>,
}

#[derive(Clone, Debug)]
pub(crate) struct Bind {
    pub(crate) host: PathBuf,
    pub(crate) target: String,
    pub(crate) read_only: bool,
}

impl ContainerSpec {
    /// A spec for `image`: a name like `"postgres:16"`, a [`HostImage`]
    /// packed from this machine's binaries, or an [`Image`] chain. A name
    /// that is not a valid Docker reference (empty, with whitespace or
    /// capitals in the repository, a bad tag or digest) makes
    /// [`start`](ContainerSpec::start) fail with
    /// [`Error::InvalidSpec`](crate::Error::InvalidSpec) naming it, before
    /// any engine call.
    ///
    /// [`HostImage`]: crate::HostImage
    pub fn new(image: impl Into<Image>) -> Self {
        let image = image.into();
        // A malformed reference fails `start()` before any engine call.
        let error = image.error();
        ContainerSpec {
            image,
            cmd: None,
            entrypoint: None,
            env: Vec::new(),
            labels: HashMap::new(),
            name: None,
            workdir: None,
            user: None,
            binds: Vec::new(),
            volumes: Vec::new(),
            tmpfs: Vec::new(),
            ports: Vec::new(),
            host_gateway: true,
            extra_hosts: Vec::new(),
            memory: None,
            nano_cpus: None,
            network: None,
            privileged: false,
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            shm_size: None,
            init: false,
            stop_signal: None,
            read_only_rootfs: false,
            stdin: None,
            timeout: None,
            waits: Vec::new(),
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            healthcheck: None,
            aliases: Vec::new(),
            log_consumer: None,
            files: Vec::new(),
            runtime: None,
            error,
        }
    }

    fn invalid(mut self, why: String) -> Self {
        self.error.get_or_insert(why);
        self
    }

    /// The command (replaces the image's `CMD`).
    pub fn cmd(mut self, cmd: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.cmd = Some(cmd.into_iter().map(Into::into).collect());
        self
    }

    /// The entrypoint (replaces the image's `ENTRYPOINT`).
    pub fn entrypoint(mut self, entrypoint: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.entrypoint = Some(entrypoint.into_iter().map(Into::into).collect());
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        if key.is_empty() || key.contains('=') {
            return self.invalid(format!(
                "environment variable name `{key}` is empty or contains `=`"
            ));
        }
        self.env.push((key, value.into()));
        self
    }

    /// Adds a label. The `testdock.*` labels are set by testdock and cannot
    /// be overridden.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        if key.starts_with("testdock.") {
            return self.invalid(format!("label `{key}` is reserved for testdock"));
        }
        self.labels.insert(key, value.into());
        self
    }

    /// The container's name. By default a unique `testdock-<random>` name is
    /// used, so parallel tests never collide.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The working directory of the main process and of execs.
    pub fn workdir(mut self, dir: impl Into<String>) -> Self {
        self.workdir = Some(dir.into());
        self
    }

    /// The user (`name`, `uid` or `uid:gid`) the main process runs as.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    fn bind(mut self, host: PathBuf, target: String, read_only: bool) -> Self {
        if !target.starts_with('/') {
            return self.invalid(format!("mount target `{target}` is not an absolute path"));
        }
        self.binds.push(Bind {
            host,
            target,
            read_only,
        });
        self
    }

    /// Bind-mounts a host path (relative paths are from the current
    /// directory) read-write at `target`. The path must exist: a missing one
    /// is reported by `start` as [`Error::BindPathMissing`] before anything is
    /// created.
    ///
    /// [`Error::BindPathMissing`]: crate::Error::BindPathMissing
    pub fn bind_mount(self, host: impl Into<PathBuf>, target: impl Into<String>) -> Self {
        self.bind(host.into(), target.into(), false)
    }

    /// Bind-mounts a host path read-only at `target`.
    pub fn bind_mount_ro(self, host: impl Into<PathBuf>, target: impl Into<String>) -> Self {
        self.bind(host.into(), target.into(), true)
    }

    /// Mounts a named volume at `target`. A volume that does not exist yet
    /// is created with testdock's labels and removed with the container.
    pub fn volume(mut self, name: impl Into<String>, target: impl Into<String>) -> Self {
        let target = target.into();
        if !target.starts_with('/') {
            return self.invalid(format!("mount target `{target}` is not an absolute path"));
        }
        self.volumes.push((name.into(), target, false));
        self
    }

    /// Mounts a tmpfs at `target`; `options` as for `docker run --tmpfs`,
    /// e.g. `"size=64m,uid=999,gid=999"`, or empty.
    pub fn tmpfs(mut self, target: impl Into<String>, options: impl Into<String>) -> Self {
        self.tmpfs.push((target.into(), options.into()));
        self
    }

    /// Publishes a TCP port on `127.0.0.1` at a random host port; read it
    /// with [`TestContainer::host_port`](crate::TestContainer::host_port).
    pub fn expose(mut self, port: u16) -> Self {
        if port == 0 {
            return self.invalid("port 0 cannot be exposed".into());
        }
        self.ports.push(port);
        self
    }

    /// Whether `host.docker.internal` resolves to the host in the
    /// container (default: yes).
    pub fn host_gateway(mut self, enabled: bool) -> Self {
        self.host_gateway = enabled;
        self
    }

    /// Adds an `/etc/hosts` entry in the container.
    pub fn extra_host(mut self, name: impl Into<String>, ip: impl Into<String>) -> Self {
        self.extra_hosts
            .push(format!("{}:{}", name.into(), ip.into()));
        self
    }

    /// Limits memory, in bytes (at least 6 MiB, Docker's minimum).
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        match i64::try_from(bytes) {
            Ok(b) if b >= 6 * 1024 * 1024 => self.memory = Some(b),
            _ => {
                return self.invalid(format!(
                    "memory limit {bytes} is below Docker's 6 MiB minimum or too large"
                ))
            }
        }
        self
    }

    /// Limits CPU, in cores (e.g. `0.5`).
    pub fn cpu_limit(mut self, cores: f64) -> Self {
        if !(cores > 0.0 && cores <= 1024.0) {
            return self.invalid(format!("cpu limit {cores} must be above 0"));
        }
        self.nano_cpus = Some((cores * 1e9) as i64);
        self
    }

    /// The network mode: `"none"` (no network at all), `"host"`, `"bridge"`,
    /// or a network's name.
    pub fn network(mut self, mode: impl Into<String>) -> Self {
        self.network = Some(mode.into());
        self
    }

    /// Runs privileged (default: no).
    pub fn privileged(mut self, privileged: bool) -> Self {
        self.privileged = privileged;
        self
    }

    /// Adds a Linux capability, e.g. `"NET_ADMIN"`.
    pub fn cap_add(mut self, cap: impl Into<String>) -> Self {
        self.cap_add.push(cap.into());
        self
    }

    /// Drops a Linux capability, e.g. `"ALL"`.
    pub fn cap_drop(mut self, cap: impl Into<String>) -> Self {
        self.cap_drop.push(cap.into());
        self
    }

    /// Size of `/dev/shm`, in bytes (Docker's default is 64 MiB).
    pub fn shm_size(mut self, bytes: u64) -> Self {
        self.shm_size = i64::try_from(bytes).ok();
        self
    }

    /// Runs a tiny init as PID 1 that forwards signals and reaps zombies
    /// (default: no). Useful when the command ignores SIGTERM.
    pub fn init(mut self, init: bool) -> Self {
        self.init = init;
        self
    }

    /// The signal that stops the container, e.g. `"SIGINT"`.
    pub fn stop_signal(mut self, signal: impl Into<String>) -> Self {
        self.stop_signal = Some(signal.into());
        self
    }

    /// Mounts the image's root filesystem read-only.
    pub fn read_only_rootfs(mut self, read_only: bool) -> Self {
        self.read_only_rootfs = read_only;
        self
    }

    /// Bytes fed to the main process's stdin, then closed. Used by
    /// [`run`](ContainerSpec::run).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// How long [`run`](ContainerSpec::run) lets the command run before it
    /// removes the container and returns [`Error::Timeout`](crate::Error::Timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Waits for this before `start()` returns; several `wait_for`s must
    /// all hold, in order. See [`WaitFor`].
    pub fn wait_for(mut self, wait: WaitFor) -> Self {
        self.waits.push(wait);
        self
    }

    /// How long `start()` waits for readiness, all strategies together
    /// (default 60 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Sets Docker's healthcheck: `cmd` run in the container every
    /// `interval` (exit 0 = healthy; three failures in a row = unhealthy).
    /// Wait for it with [`WaitFor::healthy`], which fails at once on
    /// unhealthy: pick an interval that lets the service start.
    pub fn healthcheck(
        mut self,
        cmd: impl IntoIterator<Item = impl Into<String>>,
        interval: Duration,
    ) -> Self {
        self.healthcheck = Some((cmd.into_iter().map(Into::into).collect(), interval));
        self
    }

    /// A name other containers on the same network reach this one by
    /// (with [`network`](ContainerSpec::network) set to a user-defined
    /// network, e.g. a [`TestNetwork`](crate::TestNetwork)'s).
    pub fn network_alias(mut self, alias: impl Into<String>) -> Self {
        self.aliases.push(alias.into());
        self
    }

    /// Calls `consumer` with every line the container prints, from its
    /// start until it stops, on testdock's runtime — e.g. to forward it to
    /// your logger.
    pub fn log_consumer(mut self, consumer: impl Fn(&LogLine) + Send + Sync + 'static) -> Self {
        self.log_consumer = Some(Consumer(std::sync::Arc::new(consumer)));
        self
    }

    /// Prints every line the container prints to stderr, after `prefix`
    /// (e.g. `"[db]"`). Lines go straight to the process's stderr, so they
    /// show even for passing tests under `cargo test`.
    pub fn print_logs(self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        self.log_consumer(move |line| eprintln!("{prefix} {line}"))
    }

    /// The image as given.
    pub fn image(&self) -> &Image {
        &self.image
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe() {
        let s = ContainerSpec::new("img:1");
        assert!(s.host_gateway);
        assert!(!s.privileged);
        assert!(s.cap_add.is_empty());
        assert!(s.name.is_none());
        assert!(s.error.is_none());
    }

    #[test]
    fn first_bad_input_is_kept() {
        let s = ContainerSpec::new("img")
            .cpu_limit(-1.0)
            .env("A=B", "x")
            .memory_limit(10);
        assert_eq!(s.error.as_deref(), Some("cpu limit -1 must be above 0"));
    }

    #[test]
    fn reserved_labels_and_relative_targets_are_refused() {
        let s = ContainerSpec::new("img").label("testdock.session", "x");
        assert!(s.error.unwrap().contains("reserved"));
        let s = ContainerSpec::new("img").bind_mount(".", "data");
        assert!(s.error.unwrap().contains("not an absolute path"));
    }

    #[test]
    fn options_accumulate() {
        let s = ContainerSpec::new("img")
            .cmd(["a", "b"])
            .env("K", "V")
            .expose(80)
            .expose(443)
            .cpu_limit(0.5)
            .memory_limit(64 << 20);
        assert_eq!(s.cmd.unwrap(), ["a", "b"]);
        assert_eq!(s.env, [("K".to_string(), "V".to_string())]);
        assert_eq!(s.ports, [80, 443]);
        assert_eq!(s.nano_cpus, Some(500_000_000));
        assert_eq!(s.memory, Some(64 << 20));
    }
}
