//! `doctor()`: one screen on the engine testdock found and what works with
//! it — useful at the top of a CI log.

use std::fmt;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use crate::engine::{docker, host_bind_address, on_engine};
use crate::error::Result;
use crate::host_image::HostImage;
use crate::spec::ContainerSpec;

/// The outcome of one check: whether it passed, and what was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// Whether it works.
    pub ok: bool,
    /// What was seen, or why it fails.
    pub detail: String,
}

impl Check {
    fn ok(detail: impl Into<String>) -> Self {
        Check {
            ok: true,
            detail: detail.into(),
        }
    }

    fn failed(detail: impl Into<String>) -> Self {
        Check {
            ok: false,
            detail: detail.into(),
        }
    }
}

/// What [`doctor`] found.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Report {
    /// The endpoint in use, e.g. `unix:///var/run/docker.sock`.
    pub endpoint: String,
    /// Why that one: `DOCKER_HOST`, the current context, "default socket"….
    pub source: String,
    /// The directory whose `ca.pem` verifies the engine, when it is reached
    /// over TLS.
    pub tls: Option<std::path::PathBuf>,
    /// The engine's name and version, e.g. `Docker 20.10.24`.
    pub engine: String,
    /// The engine's API version.
    pub api_version: String,
    /// The engine host's OS and kernel.
    pub os: String,
    /// Whether the engine runs rootless.
    pub rootless: bool,
    /// Containers reaching a server on this machine via
    /// `host.docker.internal`.
    pub host_gateway: Check,
    /// Bind mounts of this machine's paths.
    pub bind_mounts: Check,
    /// Whether the engine can reach a registry (Docker Hub).
    pub registry: Check,
    /// testdock resources of other sessions on the engine (left by a
    /// running or a dead process, or kept).
    pub others: usize,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = |c: &Check| if c.ok { "ok  " } else { "FAIL" };
        writeln!(f, "testdock doctor")?;
        writeln!(f, "  endpoint      {} ({})", self.endpoint, self.source)?;
        if let Some(dir) = &self.tls {
            writeln!(
                f,
                "  tls           verified, certificates in {}",
                dir.display()
            )?;
        }
        writeln!(
            f,
            "  engine        {} (API {})",
            self.engine, self.api_version
        )?;
        writeln!(f, "  host          {}", self.os)?;
        writeln!(
            f,
            "  rootless      {}",
            if self.rootless { "yes" } else { "no" }
        )?;
        writeln!(
            f,
            "  host-gateway  {} {}",
            mark(&self.host_gateway),
            self.host_gateway.detail
        )?;
        writeln!(
            f,
            "  bind mounts   {} {}",
            mark(&self.bind_mounts),
            self.bind_mounts.detail
        )?;
        writeln!(
            f,
            "  registry      {} {}",
            mark(&self.registry),
            self.registry.detail
        )?;
        write!(f, "  other testdock resources: {}", self.others)
    }
}

/// Finds the engine and checks what tests rely on: reaching the host from
/// a container, bind mounts, a registry. Starts one short-lived container
/// from [`HostImage::shell`].
///
/// # Errors
///
/// [`Error::DockerUnavailable`](crate::Error::DockerUnavailable) if no
/// engine answers; the checks themselves report failures in the [`Report`].
pub async fn doctor() -> Result<Report> {
    let engine = docker().await?;
    let d = engine.bollard().clone();
    let (version, info) = on_engine(async move { (d.version().await, d.info().await) }).await;
    let version = version.map_err(|e| crate::Error::docker("read the engine's version", e))?;
    let info = info.map_err(|e| crate::Error::docker("read the engine's info", e))?;
    let product = if engine.is_podman() {
        "Podman"
    } else {
        "Docker"
    };
    let rootless = engine.is_rootless();
    let (host_gateway, bind_mounts) = container_checks(engine.is_local(), rootless).await;
    Ok(Report {
        endpoint: engine.endpoint().to_string(),
        source: engine.source().to_string(),
        tls: engine.tls_cert_dir().map(|d| d.to_path_buf()),
        engine: format!("{product} {}", version.version.unwrap_or_default()),
        api_version: version.api_version.unwrap_or_default(),
        os: format!(
            "{}, kernel {}",
            info.operating_system.unwrap_or_default(),
            info.kernel_version.unwrap_or_default()
        ),
        rootless,
        host_gateway,
        bind_mounts,
        registry: registry_check(engine.bollard().clone()).await,
        others: others(engine.bollard().clone()).await,
    })
}

/// Runs a container that reads a marker through a bind mount and connects
/// to a listener on this machine through `host.docker.internal`.
async fn container_checks(local: bool, rootless: bool) -> (Check, Check) {
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let dir = std::env::temp_dir().join(format!("testdock-doctor-{marker}"));
    let mut spec = ContainerSpec::new(HostImage::shell()).cmd(["sleep", "infinity"]);
    if local
        && std::fs::create_dir_all(&dir).is_ok()
        && std::fs::write(dir.join("marker"), &marker).is_ok()
    {
        spec = spec.bind_mount_ro(&dir, "/doctor");
    }
    let c = match spec.start().await {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            let why = format!("no container could start: {e}");
            return (Check::failed(why.clone()), Check::failed(why));
        }
    };
    let binds = if !local {
        Check::failed("the engine is on another machine: copy files in (ContainerSpec::copy_file, copy_dir) instead")
    } else {
        match c.exec(["cat", "/doctor/marker"]).await {
            Ok(out) if out.stdout == marker.as_bytes() => {
                Check::ok("host paths are visible in containers")
            }
            Ok(out) => Check::failed(format!(
                "the mounted path shows other content: {}",
                out.stderr_text().trim()
            )),
            Err(e) => Check::failed(e.to_string()),
        }
    };
    let gateway = if local {
        gateway_check(&c, rootless).await
    } else {
        Check::failed(
            "the engine is on another machine: host.docker.internal reaches that machine, not this one",
        )
    };
    let _ = c.teardown().await;
    let _ = std::fs::remove_dir_all(&dir);
    (gateway, binds)
}

async fn gateway_check(c: &crate::TestContainer, rootless: bool) -> Check {
    let addr = match host_bind_address().await {
        Ok(a) => a,
        Err(e) => return Check::failed(e.to_string()),
    };
    let listener = match TcpListener::bind((addr, 0)) {
        Ok(l) => l,
        Err(e) => return Check::failed(format!("cannot listen on {addr}: {e}")),
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    // Accept once, off the async threads; give up with the exec's timeout.
    let _ = listener.set_nonblocking(false);
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let _ = s.write_all(b"doctor\n");
            let mut sink = [0u8; 1];
            let _ = s.read(&mut sink);
        }
    });
    let script = format!("exec 3<>/dev/tcp/host.docker.internal/{port} && head -n 1 <&3");
    match c
        .exec(["bash", "-c", &script])
        .timeout(Duration::from_secs(5))
        .await
    {
        Ok(out) if out.stdout_text() == "doctor\n" => {
            Check::ok(format!("containers reach {addr} as host.docker.internal"))
        }
        Ok(out) => Check::failed(format!(
            "no connection to {addr}:{port}: {}{}",
            out.stderr_text().trim(),
            if rootless {
                "; a rootless daemon must let containers reach this machine's loopback: \
                 DOCKERD_ROOTLESS_ROOTLESSKIT_DISABLE_HOST_LOOPBACK=false for Docker, \
                 slirp4netns allow_host_loopback=true for Podman"
            } else {
                ""
            }
        )),
        Err(e) => Check::failed(e.to_string()),
    }
}

async fn registry_check(d: bollard::Docker) -> Check {
    let probe = async move {
        tokio::time::timeout(
            Duration::from_secs(10),
            d.inspect_registry_image("hello-world:latest", None),
        )
        .await
    };
    match on_engine(probe).await {
        Ok(Ok(_)) => Check::ok("reachable: named images can be pulled"),
        Ok(Err(e)) if crate::error::status_of(&e) == Some(404) => Check::failed(format!(
            "cannot tell: the engine has no registry probe ({e})"
        )),
        Ok(Err(e)) => Check::failed(format!(
            "unreachable ({e}); use images testdock makes (HostImage, DockerfileImage, RootfsImage)"
        )),
        Err(_) => Check::failed("no answer within 10s; use images testdock makes"),
    }
}

async fn others(d: bollard::Docker) -> usize {
    let session = crate::session::session_id().to_string();
    on_engine(async move {
        match crate::reaper::list(&d, crate::session::LABEL_MANAGED).await {
            Ok(found) => found
                .iter()
                .filter(|f| f.labels.get(crate::session::LABEL_SESSION) != Some(&session))
                .count(),
            Err(_) => 0,
        }
    })
    .await
}
