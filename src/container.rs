//! `TestContainer`: the RAII guard of one running container.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthConfig, HostConfig, Mount, MountType,
    NetworkingConfig, PortBinding, VolumeCreateRequest,
};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, LogsOptionsBuilder,
    StopContainerOptionsBuilder, WaitContainerOptions,
};
use futures_util::StreamExt;

use crate::engine::{client, engine, on_engine};
use crate::error::{status_of, Error, Result};
use crate::exec::{Exec, ExecOutput, Io};
use crate::image::ensure_named;
use crate::logs::report;
use crate::reaper::{self, Owned};
use crate::run::Run;
use crate::session::{labels, LABEL_SESSION};
use crate::spec::ContainerSpec;
use crate::trace::{ms, short};
use crate::util::shell_join;
use crate::wait::{wait_ready, Target, WaitFor};

/// A running container, removed when the guard goes away.
///
/// [`teardown`](TestContainer::teardown) removes it and reports errors;
/// dropping the guard without it queues a forced removal on testdock's own
/// runtime and returns at once — it never blocks and never panics, with or
/// without a runtime, on any executor. Queued removals are waited for at
/// process exit, so a test binary that ends leaves nothing behind.
///
/// `let _ = spec.start().await?` drops the guard at once, removing the
/// container: bind it to a name.
#[must_use = "dropping a TestContainer removes its container; bind it: `let c = spec.start().await?`"]
#[derive(Debug)]
pub struct TestContainer {
    id: String,
    name: String,
    image: String,
    host: String,
    owned: Owned,
    /// Container port → host port, read once after (re)start.
    ports: Mutex<Option<HashMap<u16, u16>>>,
    /// What it was made from, for `recreate`.
    spec: Arc<ContainerSpec>,
    armed: bool,
}

/// What a container has printed, streams apart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Logs {
    /// Everything written to stdout.
    pub stdout: Vec<u8>,
    /// Everything written to stderr.
    pub stderr: Vec<u8>,
}

impl Logs {
    /// stdout as text (invalid UTF-8 replaced).
    pub fn stdout_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stdout)
    }

    /// stderr as text (invalid UTF-8 replaced).
    pub fn stderr_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stderr)
    }
}

impl ContainerSpec {
    /// Creates and starts the container.
    ///
    /// The guard exists from the moment Docker has created the container,
    /// so a failed start removes it before returning.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSpec`] and [`Error::BindPathMissing`] before anything
    /// is created; [`Error::DockerUnavailable`], [`Error::ImageUnavailable`],
    /// or [`Error::Docker`] when the engine refuses.
    pub async fn start(self) -> Result<TestContainer> {
        on_engine(async move {
            let starting = reaper::Starting::begin();
            let t0 = std::time::Instant::now();
            let (c, mut made) = create(&self, false, true).await?;
            let mut c = crate::files::upload_all_or_remove(c, &self.files).await?;
            let docker = client().await?;
            let mut started = docker.start_container(&c.id, None).await;
            if started.is_err() && made.from_spare {
                // Made before something changed (its network removed,
                // say): a fresh container sees the world as it is now.
                let _ = c.teardown_on_engine().await;
                let (fresh, fresh_made) = create(&self, false, false).await?;
                c = crate::files::upload_all_or_remove(fresh, &self.files).await?;
                made = fresh_made;
                started = docker.start_container(&c.id, None).await;
            }
            drop(starting);
            let mut started = started
                .map_err(|e| Error::docker(format!("start container {} ({})", c.name, c.image), e));
            if started.is_ok() {
                tracing::debug!(
                    id = short(&c.id),
                    name = %c.name,
                    image = %c.image,
                    elapsed_ms = ms(t0),
                    "container started"
                );
            }
            if let (Ok(()), Some((shape, body))) = (&started, made.shape) {
                crate::spare::prepare(shape, body);
            }
            if let (Ok(()), Some(consumer)) = (&started, &self.log_consumer) {
                crate::logs::consume(c.id.clone(), consumer.clone());
            }
            if started.is_ok() && !self.waits.is_empty() {
                started = wait_ready(&c.target(), &self.waits, self.startup_timeout).await;
            }
            if let Err(err) = started {
                tracing::debug!(
                    id = short(&c.id),
                    name = %c.name,
                    error = %err,
                    elapsed_ms = ms(t0),
                    "container failed to start"
                );
                // Awaited, not left to Drop: the caller sees the error only
                // once nothing is left.
                let _ = c.teardown_on_engine().await;
                return Err(err);
            }
            Ok(c)
        })
        .await
    }

    /// Runs the command as the container's main process and returns its
    /// output once it exits; the container is removed in every case,
    /// timeout included. A sandbox's staple: combine with
    /// `.network("none")`, limits, a `.timeout(..)` and a workspace mount.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> testdock::Result<()> {
    /// use std::time::Duration;
    /// use testdock::{ContainerSpec, HostImage};
    ///
    /// let out = ContainerSpec::new(HostImage::shell())
    ///     .cmd(["sh", "-c", "ls /work && exit 4"])
    ///     .bind_mount_ro(".", "/work")
    ///     .network("none")
    ///     .memory_limit(64 << 20)
    ///     .timeout(Duration::from_secs(10))
    ///     .run()
    ///     .await?;
    /// assert_eq!(out.exit_code, 4);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`start`](ContainerSpec::start), and [`Error::Timeout`] carrying
    /// what was printed before the timeout.
    pub async fn run(self) -> Result<ExecOutput> {
        on_engine(async move {
            let t0 = std::time::Instant::now();
            let (c, _) = create(&self, true, false).await?;
            let result = run_attached(&c, &self).await;
            if let Ok(out) = &result {
                tracing::debug!(
                    id = short(&c.id),
                    name = %c.name,
                    exit_code = out.exit_code,
                    elapsed_ms = ms(t0),
                    "container run finished"
                );
            }
            let removed = c.teardown_on_engine().await;
            let out = result?;
            removed?;
            Ok(out)
        })
        .await
    }
}

async fn run_attached(c: &TestContainer, spec: &ContainerSpec) -> Result<ExecOutput> {
    let docker = client().await?;
    let command = spec
        .entrypoint
        .iter()
        .flatten()
        .chain(spec.cmd.iter().flatten())
        .cloned()
        .collect::<Vec<_>>();
    let op = || format!("run `{}` in {}", shell_join(&command), c.name);
    // Attach before start so not a byte of output is missed.
    let attach = AttachContainerOptionsBuilder::new()
        .stream(true)
        .stdout(true)
        .stderr(true)
        .stdin(spec.stdin.is_some())
        .build();
    let attached = docker
        .attach_container(&c.id, Some(attach))
        .await
        .map_err(|e| Error::docker(op(), e))?;
    crate::files::upload_all(c, &spec.files).await?;
    docker
        .start_container(&c.id, None)
        .await
        .map_err(|e| Error::docker(op(), e))?;
    let io = Io {
        output: attached.output,
        input: attached.input,
        stdin: spec.stdin.clone(),
        timeout: spec.timeout,
    };
    let out = io
        .run(&c.name, &shell_join(&command))
        .await
        .map_err(|e| e.or_docker(op()))?;
    let code = wait_exit(docker, &c.id)
        .await
        .map_err(|e| Error::docker(op(), e))?;
    Ok(ExecOutput::new(out.stdout, out.stderr, code).with_context(&c.name, &c.image, &command))
}

/// Waits for the container to exit and returns its code. bollard reports a
/// non-zero exit as an error; here it is just the answer.
pub(crate) async fn wait_exit(
    docker: &bollard::Docker,
    id: &str,
) -> std::result::Result<i64, bollard::errors::Error> {
    let mut stream = docker.wait_container(id, None::<WaitContainerOptions>);
    match stream.next().await {
        Some(Ok(r)) => Ok(r.status_code),
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
        Some(Err(e)) => Err(e),
        None => Ok(-1),
    }
}

/// How a container came to be, for spares.
pub(crate) struct Made {
    /// Its shape and create request, when spares may stand in for it.
    shape: Option<(String, ContainerCreateBody)>,
    /// Taken from a spare rather than created now.
    from_spare: bool,
}

/// Creates the container (not started) and its guard — or takes a spare
/// of the same shape when `spares`.
async fn create(spec: &ContainerSpec, attach: bool, spares: bool) -> Result<(TestContainer, Made)> {
    match create_as(spec, attach, spares, None).await? {
        Created::New(c, made) => Ok((c, *made)),
        Created::Exists { name } => Err(Error::InvalidSpec(format!(
            "a container named {name} exists already"
        ))),
    }
}

/// Starts a container made by `create_as` and waits until it is ready;
/// on failure it is removed before the error returns. For containers that
/// never come from spares.
pub(crate) async fn boot(c: TestContainer, spec: &ContainerSpec) -> Result<TestContainer> {
    let c = crate::files::upload_all_or_remove(c, &spec.files).await?;
    let docker = client().await?;
    let mut started = docker
        .start_container(&c.id, None)
        .await
        .map_err(|e| Error::docker(format!("start container {} ({})", c.name, c.image), e));
    if let (Ok(()), Some(consumer)) = (&started, &spec.log_consumer) {
        crate::logs::consume(c.id.clone(), consumer.clone());
    }
    if started.is_ok() && !spec.waits.is_empty() {
        started = wait_ready(&c.target(), &spec.waits, spec.startup_timeout).await;
    }
    if let Err(err) = started {
        let _ = c.teardown_on_engine().await;
        return Err(err);
    }
    Ok(c)
}

/// What `create_as` found.
pub(crate) enum Created {
    New(TestContainer, Box<Made>),
    /// The run's container of this spec, made by another process.
    Exists {
        name: String,
    },
}

/// `create`, for `run` when given: labelled as the run's, named after the
/// run and the spec, so that of all the processes asking at once the
/// engine lets exactly one create it (the others get a 409).
pub(crate) async fn create_as(
    spec: &ContainerSpec,
    attach: bool,
    spares: bool,
    run: Option<&Run>,
) -> Result<Created> {
    if let Some(why) = &spec.error {
        return Err(Error::InvalidSpec(why.clone()));
    }
    let t0 = std::time::Instant::now();
    // Before any Docker call: a typo in a path must create nothing.
    let binds = check_binds(spec)?;
    let engine = engine().await?;
    let docker = engine.bollard();
    if let (false, Some((path, _, _))) = (engine.is_local(), binds.first()) {
        return Err(Error::RemoteBindMount {
            endpoint: engine.endpoint().to_string(),
            path: path.clone(),
        });
    }
    // `host-gateway` is the bridge's gateway; a rootless engine's host is
    // elsewhere, and Podman 4 has no `host-gateway`: give the address.
    let gateway = match (spec.host_gateway, engine.is_rootless(), engine.is_podman()) {
        (true, true, _) => crate::engine::ROOTLESS_HOST.to_string(),
        (true, false, true) => crate::engine::gateway_on_engine().await?.to_string(),
        _ => "host-gateway".to_string(),
    };
    let (image, pull_if_missing) = spec.image.resolve_lazily().await?;
    let base_labels = run.map_or_else(labels, crate::run::labels);
    // The run's resources are the run's watchdog's; this process's own
    // need its watchdog up before the first create.
    if run.is_none() {
        reaper::note_created().await;
    }
    // In flight until this returns, for the exit hook and the watchdog.
    let _creating = reaper::Starting::begin();
    let owned = Owned {
        volumes: create_volumes(docker, spec, &base_labels).await?,
    };
    let body = body(
        spec,
        &image,
        binds,
        engine.is_local(),
        &gateway,
        attach,
        base_labels,
    );
    // A fixed name is one container's, and so are its volumes. A
    // test's own network comes and goes with the test (and Podman will not
    // remove one a spare is attached to). `none` and the defaults stay.
    let own_network = spec
        .network
        .as_deref()
        .is_some_and(|n| !matches!(n, "none" | "bridge" | "host" | "default"));
    // A spare pins the image it was made from: only for references that
    // cannot move.
    let poolable = spares
        && run.is_none()
        && !attach
        && spec.image.is_content_addressed()
        && spec.name.is_none()
        && spec.volumes.is_empty()
        && !own_network
        && crate::spare::enabled();
    let shape = if poolable {
        crate::spare::shape(&body)
    } else {
        None
    };
    let guard = |id: String, name: String, owned: Owned| TestContainer {
        id,
        name,
        image: image.clone(),
        host: engine.host().to_string(),
        owned,
        ports: Mutex::new(None),
        spec: Arc::new(spec.clone()),
        armed: true,
    };
    if let Some(shape) = &shape {
        if let Some(spare) = crate::spare::take(shape).await {
            let made = Made {
                shape: Some((shape.clone(), body)),
                from_spare: true,
            };
            tracing::debug!(
                id = short(&spare.id),
                name = %spare.name,
                image = %image,
                elapsed_ms = ms(t0),
                "container created (a spare)"
            );
            return Ok(Created::New(
                guard(spare.id, spare.name, owned),
                Box::new(made),
            ));
        }
    }
    let name = match run {
        Some(run) => crate::run::container_name(run, &body, spec),
        None => spec.name.clone().unwrap_or_else(unique_name),
    };
    let opts = CreateContainerOptionsBuilder::new().name(&name).build();
    let mut created = docker
        .create_container(Some(opts.clone()), body.clone())
        .await;
    if pull_if_missing && matches!(&created, Err(e) if is_missing_image(e)) {
        if let Err(e) = ensure_named(&image).await {
            reaper::remove_volumes(&owned).await;
            return Err(e);
        }
        created = docker.create_container(Some(opts), body.clone()).await;
    }
    let id = match created {
        Ok(r) => r.id,
        Err(e) if run.is_some() && status_of(&e) == Some(409) => {
            reaper::remove_volumes(&owned).await;
            return Ok(Created::Exists { name });
        }
        Err(e) => {
            reaper::remove_volumes(&owned).await;
            return Err(Error::docker(
                format!("create container {name} from {image}"),
                e,
            ));
        }
    };
    let made = Made {
        shape: shape.map(|s| (s, body)),
        from_spare: false,
    };
    tracing::debug!(
        id = short(&id),
        name = %name,
        image = %image,
        elapsed_ms = ms(t0),
        "container created"
    );
    Ok(Created::New(guard(id, name, owned), Box::new(made)))
}

fn is_missing_image(e: &bollard::errors::Error) -> bool {
    match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            message,
        } => message.to_ascii_lowercase().contains("image"),
        _ => false,
    }
}

pub(crate) fn unique_name() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("testdock-{}", &id[..12])
}

/// Absolute, existing host paths for every bind mount.
fn check_binds(spec: &ContainerSpec) -> Result<Vec<(PathBuf, String, bool)>> {
    spec.binds
        .iter()
        .map(|b| match std::fs::canonicalize(&b.host) {
            Ok(abs) => Ok((abs, b.target.clone(), b.read_only)),
            Err(_) => Err(Error::BindPathMissing {
                path: b.host.clone(),
                target: b.target.clone(),
            }),
        })
        .collect()
}

/// Creates the spec's named volumes that do not exist yet, labelled; returns
/// the ones this session owns (and so removes).
async fn create_volumes(
    docker: &bollard::Docker,
    spec: &ContainerSpec,
    labels: &HashMap<String, String>,
) -> Result<Vec<String>> {
    let session = labels.get(LABEL_SESSION).cloned();
    let mut owned = Vec::new();
    for (name, _, _) in &spec.volumes {
        let req = VolumeCreateRequest {
            name: Some(name.clone()),
            labels: Some(labels.clone()),
            ..Default::default()
        };
        match docker.create_volume(req).await {
            // Creating an existing volume returns it unchanged: it is ours
            // only if it carries our session.
            Ok(v) if v.labels.get(LABEL_SESSION) == session.as_ref() => owned.push(name.clone()),
            Ok(_) => {}
            Err(e) => {
                reaper::remove_volumes(&Owned { volumes: owned }).await;
                return Err(Error::docker(format!("create volume {name}"), e));
            }
        }
    }
    Ok(owned)
}

fn body(
    spec: &ContainerSpec,
    image: &str,
    binds: Vec<(PathBuf, String, bool)>,
    local_engine: bool,
    gateway: &str,
    attach: bool,
    base_labels: HashMap<String, String>,
) -> ContainerCreateBody {
    let mut all_labels = spec.labels.clone();
    all_labels.extend(base_labels);

    let mut mounts: Vec<Mount> = binds
        .into_iter()
        .map(|(src, target, ro)| Mount {
            typ: Some(MountType::BIND),
            source: Some(src.to_string_lossy().into_owned()),
            target: Some(target),
            read_only: Some(ro),
            ..Default::default()
        })
        .collect();
    mounts.extend(spec.volumes.iter().map(|(name, target, ro)| Mount {
        typ: Some(MountType::VOLUME),
        source: Some(name.clone()),
        target: Some(target.clone()),
        read_only: Some(*ro),
        ..Default::default()
    }));

    // Published ports listen on loopback only — a test's database must not
    // be reachable from the network. A remote engine's loopback is not ours,
    // so there they listen on all its interfaces.
    let host_ip = if local_engine { "127.0.0.1" } else { "0.0.0.0" };
    let port_bindings: HashMap<String, Option<Vec<PortBinding>>> = spec
        .ports
        .iter()
        .map(|p| {
            let binding = PortBinding {
                host_ip: Some(host_ip.into()),
                host_port: Some(String::new()),
            };
            (format!("{p}/tcp"), Some(vec![binding]))
        })
        .collect();

    let mut extra_hosts = spec.extra_hosts.clone();
    if spec.host_gateway {
        extra_hosts.push(format!("host.docker.internal:{gateway}"));
    }

    let stdin = attach && spec.stdin.is_some();
    ContainerCreateBody {
        image: Some(image.into()),
        cmd: spec.cmd.clone(),
        entrypoint: spec.entrypoint.clone(),
        env: (!spec.env.is_empty())
            .then(|| spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(all_labels),
        working_dir: spec.workdir.clone(),
        user: spec.user.clone(),
        exposed_ports: (!spec.ports.is_empty())
            .then(|| spec.ports.iter().map(|p| format!("{p}/tcp")).collect()),
        stop_signal: spec.stop_signal.clone(),
        healthcheck: spec.healthcheck.as_ref().map(|(cmd, every)| HealthConfig {
            test: Some(
                std::iter::once("CMD".to_string())
                    .chain(cmd.iter().cloned())
                    .collect(),
            ),
            interval: Some(every.as_nanos() as i64),
            timeout: Some((every.as_nanos() as i64).max(1_000_000_000)),
            start_interval: None,
            retries: Some(3),
            start_period: None,
        }),
        networking_config: (!spec.aliases.is_empty()).then(|| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                spec.network.clone().unwrap_or_else(|| "bridge".into()),
                EndpointSettings {
                    aliases: Some(spec.aliases.clone()),
                    ..Default::default()
                },
            )])),
        }),
        attach_stdout: Some(attach),
        attach_stderr: Some(attach),
        attach_stdin: Some(stdin),
        open_stdin: Some(stdin),
        stdin_once: Some(stdin),
        tty: Some(false),
        host_config: Some(HostConfig {
            mounts: (!mounts.is_empty()).then_some(mounts),
            tmpfs: (!spec.tmpfs.is_empty()).then(|| spec.tmpfs.iter().cloned().collect()),
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            extra_hosts: (!extra_hosts.is_empty()).then_some(extra_hosts),
            memory: spec.memory,
            nano_cpus: spec.nano_cpus,
            network_mode: spec.network.clone(),
            privileged: Some(spec.privileged),
            cap_add: (!spec.cap_add.is_empty()).then(|| spec.cap_add.clone()),
            cap_drop: (!spec.cap_drop.is_empty()).then(|| spec.cap_drop.clone()),
            shm_size: spec.shm_size,
            init: spec.init.then_some(true),
            readonly_rootfs: spec.read_only_rootfs.then_some(true),
            runtime: spec.runtime.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl TestContainer {
    /// The container's full id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The container's name (unique unless the spec set one).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The image reference it was created from.
    pub fn image(&self) -> &str {
        &self.image
    }

    /// The address where published ports are reached from this process:
    /// `127.0.0.1`, or the host of a `tcp://` `DOCKER_HOST`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Runs a command and returns its output, whatever its exit code.
    /// Chain options on the returned [`Exec`] before awaiting it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(c: &testdock::TestContainer) -> testdock::Result<()> {
    /// let out = c.exec(["sh", "-c", "echo out; echo err >&2; exit 3"]).await?;
    /// assert_eq!(out.stdout_text(), "out\n");
    /// assert_eq!(out.stderr_text(), "err\n");
    /// assert_eq!(out.exit_code, 3);
    /// # Ok(()) }
    /// ```
    pub fn exec(&self, cmd: impl IntoIterator<Item = impl Into<String>>) -> Exec<'_> {
        Exec::new(self, cmd.into_iter().map(Into::into).collect(), false)
    }

    /// As [`exec`](TestContainer::exec), but a non-zero exit is an
    /// [`Error::ExecFailed`] naming the command, the code and stderr.
    pub fn exec_ok(&self, cmd: impl IntoIterator<Item = impl Into<String>>) -> Exec<'_> {
        Exec::new(self, cmd.into_iter().map(Into::into).collect(), true)
    }

    /// The host port that container port `port` (TCP) is published on.
    ///
    /// # Errors
    ///
    /// [`Error::PortNotPublished`] if the spec did not
    /// [`expose`](ContainerSpec::expose) it.
    pub async fn host_port(&self, port: u16) -> Result<u16> {
        if let Some(map) = &*self.ports.lock().unwrap_or_else(|e| e.into_inner()) {
            return map
                .get(&port)
                .copied()
                .ok_or_else(|| self.not_published(port));
        }
        let id = self.id.clone();
        let map = on_engine(async move {
            let docker = client().await?;
            let info = docker
                .inspect_container(&id, None)
                .await
                .map_err(|e| Error::docker(format!("inspect container {id}"), e))?;
            Ok::<_, Error>(published_ports(info))
        })
        .await?;
        let found = map.get(&port).copied();
        // Only a running container has its ports bound; cache only then.
        if !map.is_empty() {
            *self.ports.lock().unwrap_or_else(|e| e.into_inner()) = Some(map);
        }
        found.ok_or_else(|| self.not_published(port))
    }

    fn not_published(&self, port: u16) -> Error {
        Error::PortNotPublished {
            container: self.name.clone(),
            port,
        }
    }

    /// Everything the main process has printed so far.
    ///
    /// # Errors
    ///
    /// [`Error::Docker`] if the engine cannot read the logs.
    pub async fn logs(&self) -> Result<Logs> {
        on_engine(read_logs(self.id.clone())).await
    }

    /// Stops the container: its stop signal, then SIGKILL after `grace`.
    ///
    /// # Errors
    ///
    /// [`Error::Docker`] if the engine refuses.
    pub async fn stop(&self, grace: Duration) -> Result<()> {
        let id = self.id.clone();
        self.forget_ports();
        on_engine(async move {
            let opts = StopContainerOptionsBuilder::new()
                .t((grace.as_secs() + u64::from(grace.subsec_nanos() > 0))
                    .try_into()
                    .unwrap_or(i32::MAX))
                .build();
            match client().await?.stop_container(&id, Some(opts)).await {
                // 304: already stopped.
                Err(e) if status_of(&e) != Some(304) => {
                    Err(Error::docker(format!("stop container {id}"), e))
                }
                _ => Ok(()),
            }
        })
        .await
    }

    /// Starts the container again after [`stop`](TestContainer::stop).
    /// Published ports may change.
    ///
    /// # Errors
    ///
    /// [`Error::Docker`] if the engine refuses.
    pub async fn start(&self) -> Result<()> {
        let id = self.id.clone();
        self.forget_ports();
        on_engine(async move {
            match client().await?.start_container(&id, None).await {
                Err(e) if status_of(&e) != Some(304) => {
                    Err(Error::docker(format!("start container {id}"), e))
                }
                _ => Ok(()),
            }
        })
        .await
    }

    /// Stops (with `grace`) and starts the container.
    ///
    /// # Errors
    ///
    /// [`Error::Docker`] if the engine refuses.
    pub async fn restart(&self, grace: Duration) -> Result<()> {
        self.stop(grace).await?;
        self.start().await
    }

    /// Waits for the main process to exit and returns its exit code.
    ///
    /// # Errors
    ///
    /// [`Error::Docker`] if the container is gone.
    pub async fn wait(&self) -> Result<i64> {
        let id = self.id.clone();
        on_engine(async move {
            let docker = client().await?;
            wait_exit(docker, &id)
                .await
                .map_err(|e| Error::docker(format!("wait for container {id}"), e))
        })
        .await
    }

    /// Waits until `wait` holds, e.g. after a restart; fails at once if
    /// the container exits meanwhile.
    ///
    /// # Errors
    ///
    /// [`Error::NotReady`] naming the strategy, the time waited and the
    /// container's last log lines. The container is left as it is.
    pub async fn wait_for(&self, wait: WaitFor, timeout: Duration) -> Result<()> {
        let (id, name, host) = (self.id.clone(), self.name.clone(), self.host.clone());
        on_engine(async move {
            let t = Target {
                id: &id,
                name: &name,
                host: &host,
            };
            wait_ready(&t, &[wait], timeout).await
        })
        .await
    }

    pub(crate) fn target(&self) -> Target<'_> {
        Target {
            id: &self.id,
            name: &self.name,
            host: &self.host,
        }
    }

    fn forget_ports(&self) {
        *self.ports.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Removes the container (forced, with its anonymous volumes and the
    /// named volumes testdock created for it) and waits until it is gone.
    /// A container already gone counts as removed.
    ///
    /// # Errors
    ///
    /// [`Error::Docker`] if the engine refuses; the exit hook tries again.
    pub async fn teardown(mut self) -> Result<()> {
        self.armed = false;
        tracing::debug!(id = short(&self.id), name = %self.name, "container teardown");
        if reaper::keep(false) {
            reaper::keep_in_background(std::mem::take(&mut self.id), self.name.clone());
            return Ok(());
        }
        let (id, owned) = (
            std::mem::take(&mut self.id),
            std::mem::take(&mut self.owned),
        );
        on_engine(async move { reaper::remove(&id, &owned).await }).await
    }

    /// Removes this container and starts a fresh one from the same spec —
    /// the "reset" pattern: a clean server without a new test binary.
    /// Published ports change; ask [`host_port`](TestContainer::host_port)
    /// again.
    ///
    /// # Errors
    ///
    /// As [`teardown`](TestContainer::teardown) and
    /// [`ContainerSpec::start`].
    pub async fn recreate(self) -> Result<TestContainer> {
        let spec = (*self.spec).clone();
        self.teardown().await?;
        spec.start().await
    }

    /// A guard for a container another process made, or one that outlives
    /// this process: it never removes the container.
    pub(crate) fn joined(id: String, name: String, image: String, spec: ContainerSpec) -> Self {
        TestContainer {
            id,
            name,
            image,
            host: crate::engine::host_if_connected(),
            owned: Owned::default(),
            ports: Mutex::new(None),
            spec: Arc::new(spec),
            armed: false,
        }
    }

    /// Whether the container goes when this process ends (its guard is
    /// armed): not one joined or handed over to its run.
    pub(crate) fn removed_with_process(&self) -> bool {
        self.armed
    }

    /// Hands the container over to its run: dropping the guard then leaves
    /// it alone.
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }

    /// `teardown` for code already on the engine runtime.
    pub(crate) async fn teardown_on_engine(mut self) -> Result<()> {
        self.armed = false;
        reaper::remove(&self.id, &self.owned).await
    }
}

impl Drop for TestContainer {
    /// Queues the removal and returns. While the thread is panicking (a
    /// failed test) it first prints the container's last log lines, waiting
    /// for them at most 2 s (`FAILURE_LOGS_WAIT`): they belong beside the
    /// failure, and a failing test is not waiting on anything else. The
    /// printing cannot panic: a panic here would abort the process.
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let panicking = std::thread::panicking();
        if panicking {
            print_logs_tail(&self.id, &self.name);
        }
        let id = std::mem::take(&mut self.id);
        if reaper::keep(panicking) {
            reaper::keep_in_background(id, self.name.clone());
        } else {
            tracing::debug!(
                id = short(&id),
                name = %self.name,
                "container dropped; removal queued"
            );
            reaper::remove_in_background(id, std::mem::take(&mut self.owned));
        }
    }
}

/// How long a failing test's guard waits for the container's logs.
const FAILURE_LOGS_WAIT: Duration = Duration::from_secs(2);
/// How many of the last lines of each stream a failing test shows.
const FAILURE_LOG_LINES: usize = 50;

fn print_logs_tail(id: &str, name: &str) {
    let (tx, rx) = std::sync::mpsc::channel();
    let id = id.to_string();
    crate::engine::spawn_detached(async move {
        let _ = tx.send(read_logs_tail(id, FAILURE_LOG_LINES).await);
    });
    let logs = match rx.recv_timeout(FAILURE_LOGS_WAIT) {
        Ok(Ok(logs)) => logs,
        Ok(Err(e)) => return report(format_args!("testdock: no logs of {name}: {e}")),
        Err(_) => {
            return report(format_args!(
                "testdock: no logs of {name} within {FAILURE_LOGS_WAIT:?}"
            ))
        }
    };
    for (stream, text) in [
        ("stdout", logs.stdout_text()),
        ("stderr", logs.stderr_text()),
    ] {
        let tail = crate::util::tail_lines(&text, FAILURE_LOG_LINES);
        if !tail.is_empty() {
            report(format_args!(
                "testdock: last {FAILURE_LOG_LINES} lines of {name} {stream}:\n{tail}"
            ));
        }
    }
}

/// Whether the container is still there (anything but a 404 counts).
pub(crate) async fn exists(id: &str) -> bool {
    match client().await {
        Ok(docker) => !matches!(
            docker.inspect_container(id, None).await,
            Err(e) if status_of(&e) == Some(404)
        ),
        Err(_) => true,
    }
}

pub(crate) async fn read_logs(id: String) -> Result<Logs> {
    read_logs_opts(id, None).await
}

/// The last `lines` lines of each stream: a bounded read, for messages.
pub(crate) async fn read_logs_tail(id: String, lines: usize) -> Result<Logs> {
    read_logs_opts(id, Some(lines)).await
}

async fn read_logs_opts(id: String, tail: Option<usize>) -> Result<Logs> {
    let docker = client().await?;
    let mut opts = LogsOptionsBuilder::new().stdout(true).stderr(true);
    if let Some(n) = tail {
        opts = opts.tail(&n.to_string());
    }
    let opts = opts.build();
    let mut stream = docker.logs(&id, Some(opts));
    let mut logs = Logs::default();
    while let Some(frame) = stream.next().await {
        match frame.map_err(|e| Error::docker(format!("read logs of {id}"), e))? {
            bollard::container::LogOutput::StdErr { message } => {
                logs.stderr.extend_from_slice(&message)
            }
            other => logs.stdout.extend_from_slice(&other.into_bytes()),
        }
    }
    Ok(logs)
}

pub(crate) fn published_ports(
    info: bollard::models::ContainerInspectResponse,
) -> HashMap<u16, u16> {
    let mut map = HashMap::new();
    let ports = info
        .network_settings
        .and_then(|n| n.ports)
        .unwrap_or_default();
    for (key, bindings) in ports {
        let Some(port) = key.strip_suffix("/tcp").and_then(|p| p.parse().ok()) else {
            continue;
        };
        let host_port = bindings
            .unwrap_or_default()
            .into_iter()
            .find_map(|b| b.host_port.and_then(|p| p.parse().ok()));
        if let Some(hp) = host_port {
            map.insert(port, hp);
        }
    }
    map
}
