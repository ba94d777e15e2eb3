//! The crate's own runtime and its one connection to the Docker engine.
//!
//! Every Docker call runs on a small runtime that testdock owns and that lives
//! as long as the process. Public async methods spawn their work here and
//! await the `JoinHandle`, which any executor can await. So the bollard client
//! never hops between test runtimes (each `#[tokio::test]` has its own, and
//! it is gone when the test ends), and `Drop` can queue work without a
//! runtime of its own.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use once_cell::sync::Lazy;
use tokio::runtime::Runtime;

use crate::discovery::{Candidate, Tls};
use crate::error::{Error, Result};

/// Two workers: one is enough for the I/O, the second keeps a slow
/// removal from delaying an exec round trip.
static RUNTIME: Lazy<Runtime> = Lazy::new(|| {
    RUNTIME_PID.store(std::process::id(), std::sync::atomic::Ordering::Relaxed);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("testdock-engine")
        .enable_all()
        .build()
        .expect("testdock: cannot start its engine runtime (out of threads?)")
});

/// The process that started the runtime: a child forked from it has none.
static RUNTIME_PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

static ENGINE: tokio::sync::OnceCell<Docker> = tokio::sync::OnceCell::const_new();

/// Requests sent to the engine by this process, counted as they are built.
static REQUESTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How long one endpoint may take to answer a ping.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// How long the engine may take to describe itself once it has answered.
const INFO_TIMEOUT: Duration = Duration::from_secs(15);

/// Requests are bounded by our own timeouts (exec, wait, run); bollard's
/// per-request limit only covers the response head, so keep it generous.
const REQUEST_TIMEOUT_SECS: u64 = 600;

/// The Docker engine testdock talks to.
///
/// A cheap `Clone`: the bollard client inside is reference counted.
#[derive(Clone, Debug)]
pub struct Docker {
    client: bollard::Docker,
    endpoint: String,
    source: String,
    host: String,
    podman: bool,
    rootless: bool,
    tls: Tls,
}

impl Docker {
    /// How the engine is reached over TLS, for child processes that
    /// connect to it too.
    pub(crate) fn tls(&self) -> &Tls {
        &self.tls
    }

    /// The endpoint that answered, e.g. `unix:///var/run/docker.sock`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Why this endpoint was chosen: `DOCKER_HOST`, the current Docker
    /// context, "default socket", "rootless Docker", "Podman", ….
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The address where published ports are reached: `127.0.0.1`, or the
    /// host of a `tcp://` `DOCKER_HOST`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether the engine runs on this machine (a unix socket, or TCP on a
    /// loopback address), so that bind mounts of local paths work.
    pub fn is_local(&self) -> bool {
        is_loopback(&self.host)
    }

    /// Where the certificates that verify the engine come from, when it is
    /// reached over TLS (`DOCKER_TLS_VERIFY`, or a context with TLS).
    pub fn tls_cert_dir(&self) -> Option<&Path> {
        match &self.tls {
            Tls::Verify(dir) => Some(dir),
            _ => None,
        }
    }

    /// Whether the engine runs rootless (as a user, behind a user-mode
    /// network); see [`host_bind_address`].
    pub fn is_rootless(&self) -> bool {
        self.rootless
    }

    /// Whether the engine is Podman's Docker-compatible service.
    pub fn is_podman(&self) -> bool {
        self.podman
    }

    /// How many requests this process has sent to the engine so far:
    /// testdock's own and those made through [`bollard`](Self::bollard) —
    /// to see what a test costs the engine.
    pub fn requests_sent(&self) -> u64 {
        REQUESTS.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The underlying bollard client, for what testdock does not wrap.
    ///
    /// bollard opens a connection per request, so the client may be used
    /// from any tokio runtime (not from outside one: its timeouts need
    /// tokio's timer).
    pub fn bollard(&self) -> &bollard::Docker {
        &self.client
    }
}

/// Connects (once per process) and returns the engine.
///
/// Honours `DOCKER_HOST` (`unix://`, `tcp://`, `http://`); without it tries
/// the default socket, then rootless Docker and Podman sockets, and keeps the
/// first that answers a ping.
///
/// # Errors
///
/// [`Error::DockerUnavailable`] listing every endpoint tried and why it
/// failed.
pub async fn docker() -> Result<Docker> {
    on_engine(async { engine().await.cloned() }).await
}

/// The address a server on this machine should listen on so that
/// containers reach it as `host.docker.internal` — the default bridge's
/// gateway (e.g. `172.17.0.1`). A server on `127.0.0.1` is not reachable
/// from containers; this address is, and unlike `0.0.0.0` it is not exposed
/// to the network.
///
/// A rootless engine is the exception: its containers sit behind a
/// user-mode network (slirp4netns) that forwards `10.0.2.2` to this
/// machine's loopback, so the answer there is `127.0.0.1` — if the daemon
/// allows it (rootless Docker:
/// `DOCKERD_ROOTLESS_ROOTLESSKIT_DISABLE_HOST_LOOPBACK=false`; rootless
/// Podman: slirp4netns `allow_host_loopback=true`).
///
/// # Errors
///
/// [`Error::Docker`] if the engine has no `bridge` network with a gateway.
pub async fn host_bind_address() -> Result<std::net::IpAddr> {
    on_engine(async {
        if engine().await?.rootless {
            Ok(std::net::Ipv4Addr::LOCALHOST.into())
        } else {
            gateway_on_engine().await
        }
    })
    .await
}

/// Where the containers of a rootless engine (Docker's rootlesskit,
/// Podman's slirp4netns) reach this machine's loopback:
/// `host.docker.internal` there.
pub(crate) const ROOTLESS_HOST: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 0, 2, 2);

/// The default network's gateway: what `host-gateway` means. Call on the
/// engine runtime.
pub(crate) async fn gateway_on_engine() -> Result<std::net::IpAddr> {
    // Asked on every create on Podman: look it up once per process.
    static GATEWAY: tokio::sync::OnceCell<std::net::IpAddr> = tokio::sync::OnceCell::const_new();
    GATEWAY.get_or_try_init(find_gateway).await.copied()
}

async fn find_gateway() -> Result<std::net::IpAddr> {
    let engine = engine().await?;
    // Podman calls its default network `podman`.
    let network = if engine.is_podman() {
        "podman"
    } else {
        "bridge"
    };
    let net = engine
        .client
        .inspect_network(
            network,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .map_err(|e| Error::docker(format!("inspect network {network}"), e))?;
    // Docker 20.10 leaves the default bridge's gateway out of IPAM and
    // gives docker0 the subnet's first address, as host-gateway does.
    net.ipam
        .and_then(|i| i.config)
        .unwrap_or_default()
        .into_iter()
        .find_map(|c| match c.gateway {
            Some(g) => g.parse().ok(),
            None => first_host(c.subnet.as_deref()?),
        })
        .ok_or_else(|| {
            Error::InvalidSpec(format!(
                "the engine's {network} network has no IPv4 gateway or subnet"
            ))
        })
}

/// Runs `fut` on the engine runtime and awaits it from whatever executor
/// the caller is on. A panic inside is re-raised in the caller.
pub(crate) async fn on_engine<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match RUNTIME.spawn(fut).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // The runtime is a static that is never shut down, so tasks are never
        // cancelled.
        Err(e) => unreachable!("testdock engine task cancelled: {e}"),
    }
}

/// Spawns without waiting, for `Drop`. Never blocks, never panics.
pub(crate) fn spawn_detached<F>(fut: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    RUNTIME.spawn(fut);
}

/// The process whose runtime it is, once started. A child forked from it
/// inherits the statics, not the runtime's threads.
pub(crate) fn runtime_pid() -> Option<u32> {
    match RUNTIME_PID.load(std::sync::atomic::Ordering::Relaxed) {
        0 => None,
        pid => Some(pid),
    }
}

/// The runtime if something already started it. The exit hook uses this so
/// it never starts a runtime of its own.
pub(crate) fn runtime_if_started() -> Option<&'static Runtime> {
    Lazy::get(&RUNTIME)
}

/// The connected engine. Call from the engine runtime.
pub(crate) async fn engine() -> Result<&'static Docker> {
    ENGINE.get_or_try_init(connect).await
}

/// Where published ports are reached, once connected (else loopback).
pub(crate) fn host_if_connected() -> String {
    ENGINE
        .get()
        .map_or_else(|| "127.0.0.1".to_string(), |e| e.host.clone())
}

/// The shared client, for code already on the engine runtime.
pub(crate) async fn client() -> Result<&'static bollard::Docker> {
    Ok(&engine().await?.client)
}

async fn connect() -> Result<Docker> {
    let mut tried = Vec::new();
    for c in crate::discovery::candidates(&crate::discovery::Env::from_process()) {
        match try_endpoint(&c).await {
            Ok(engine) => {
                tracing::debug!(
                    endpoint = %engine.endpoint,
                    source = %engine.source,
                    session = crate::session::session_id(),
                    "connected to the engine"
                );
                return Ok(engine);
            }
            Err(why) => tried.push(format!("{} ({why})", c.endpoint)),
        }
    }
    Err(Error::DockerUnavailable {
        tried: tried.join(", "),
    })
}

async fn try_endpoint(c: &Candidate) -> std::result::Result<Docker, String> {
    let endpoint = c.endpoint.as_str();
    if let Some(name) = endpoint.strip_prefix("context:") {
        return Err(format!(
            "no Docker context named `{name}`; see `docker context ls` or unset DOCKER_CONTEXT"
        ));
    }
    // Who owns the socket: a user's own engine is a rootless one.
    let mut socket_owner = None;
    let (client, host) = if let Some(path) = endpoint.strip_prefix("unix://") {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(path) {
            Ok(meta) => socket_owner = Some(meta.uid()),
            Err(_) => return Err("no such socket".into()),
        }
        let c = bollard::Docker::connect_with_unix(
            path,
            REQUEST_TIMEOUT_SECS,
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(|e| e.to_string())?;
        (c, "127.0.0.1".to_string())
    } else if let Some(rest) = endpoint
        .strip_prefix("tcp://")
        .or_else(|| endpoint.strip_prefix("http://"))
    {
        let client = match &c.tls {
            Tls::Off => bollard::Docker::connect_with_http(
                &format!("http://{rest}"),
                REQUEST_TIMEOUT_SECS,
                bollard::API_DEFAULT_VERSION,
            )
            .map_err(|e| e.to_string())?,
            Tls::Verify(dir) => connect_tls(rest, dir)?,
            Tls::Unverified => {
                return Err(
                    "TLS without checking the engine's certificate was asked for \
                     (DOCKER_TLS, or the context's SkipTLSVerify), and testdock always checks it: \
                     set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH to a directory with \
                     ca.pem, cert.pem and key.pem"
                        .into(),
                )
            }
        };
        (client, tcp_host(rest))
    } else {
        return Err("unsupported scheme; use unix:// or tcp://".into());
    };
    let client = client.with_request_modifier(|req| {
        REQUESTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::trace!(method = %req.method(), uri = %req.uri().path(), "request");
        req
    });
    match tokio::time::timeout(PING_TIMEOUT, client.ping()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(with_causes(&e)),
        Err(_) => return Err(format!("no answer within {PING_TIMEOUT:?}")),
    }
    // Podman differs in a few places (no host-gateway in 4.x), and so do
    // rootless engines (the host is elsewhere): asked once per process.
    // Bounded: a daemon too busy to say what it is must not hang every
    // test binary's first start.
    let (version, info) = match tokio::time::timeout(INFO_TIMEOUT, async {
        tokio::join!(client.version(), client.info())
    })
    .await
    {
        Ok(answers) => answers,
        Err(_) => {
            return Err(format!(
                "answered ping, but not /version and /info within {INFO_TIMEOUT:?}"
            ))
        }
    };
    let podman = match version {
        Ok(v) => v
            .components
            .unwrap_or_default()
            .iter()
            .any(|c| c.name.to_ascii_lowercase().contains("podman")),
        Err(_) => false,
    };
    // Docker says so in its security options; Podman only in a field of its
    // own, read raw; failing that, its rootless service's socket is a user's.
    let podman_rootless = match (podman, endpoint.strip_prefix("unix://")) {
        (true, Some(path)) => podman_rootless(path)
            .await
            .unwrap_or(socket_owner.is_some_and(|uid| uid != 0)),
        _ => false,
    };
    let rootless = podman_rootless
        || info
            .ok()
            .and_then(|i| i.security_options)
            .unwrap_or_default()
            .iter()
            .any(|o| o.contains("rootless"));
    Ok(Docker {
        client,
        endpoint: endpoint.to_string(),
        source: c.source.clone(),
        host,
        podman,
        rootless,
        tls: c.tls.clone(),
    })
}

/// `Rootless` from Podman's `/info`, a field bollard's model has no place
/// for: one plain HTTP/1.0 request on the socket.
async fn podman_rootless(path: &str) -> Option<bool> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let read = async {
        let mut s = tokio::net::UnixStream::connect(path).await.ok()?;
        s.write_all(b"GET /info HTTP/1.0\r\nHost: podman\r\n\r\n")
            .await
            .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let body = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let info: serde_json::Value = serde_json::from_slice(&buf[body..]).ok()?;
        info.get("Rootless")?.as_bool()
    };
    tokio::time::timeout(PING_TIMEOUT, read).await.ok()?
}

/// A TLS client for `host:port`, with `ca.pem`, `cert.pem` and `key.pem`
/// from `dir`, as `docker --tlsverify` uses them.
#[cfg(feature = "tls")]
fn connect_tls(addr: &str, dir: &Path) -> std::result::Result<bollard::Docker, String> {
    // ca.pem checks the engine; cert.pem and key.pem, together, show who
    // we are (an engine may not ask).
    let has = |f: &str| dir.join(f).is_file();
    let problem = match (has("ca.pem"), has("cert.pem"), has("key.pem")) {
        (false, _, _) => Some("ca.pem is missing"),
        (true, true, false) => Some("cert.pem is there but key.pem is missing"),
        (true, false, true) => Some("key.pem is there but cert.pem is missing"),
        _ => None,
    };
    if let Some(problem) = problem {
        return Err(format!(
            "TLS is on (DOCKER_TLS_VERIFY, or the context has TLS files) but in {} {problem}; \
             DOCKER_CERT_PATH names the directory with ca.pem, cert.pem and key.pem",
            dir.display()
        ));
    }
    // bollard asks rustls for the process's default provider at each
    // handshake; if another crate also enabled aws-lc-rs there is none
    // until someone installs one. An already installed one stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
    bollard::Docker::connect_with_ssl(
        &format!("tcp://{addr}"),
        &dir.join("key.pem"),
        &dir.join("cert.pem"),
        &dir.join("ca.pem"),
        REQUEST_TIMEOUT_SECS,
        bollard::API_DEFAULT_VERSION,
    )
    .map_err(|e| format!("TLS setup from {}: {e}", dir.display()))
}

#[cfg(not(feature = "tls"))]
fn connect_tls(_addr: &str, _dir: &Path) -> std::result::Result<bollard::Docker, String> {
    Err(
        "the engine wants TLS (DOCKER_TLS_VERIFY, or the context has certificates) \
         and testdock was built without its default `tls` feature; enable it"
            .into(),
    )
}

/// An error and what caused it: hyper's own message for a failed TLS
/// handshake is only "client error (Connect)"; the reason is underneath.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.contains(&next) {
            text = format!("{text}: {next}");
        }
        cause = c.source();
    }
    text
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The first host address of an IPv4 subnet: `172.17.0.0/16` → `172.17.0.1`.
fn first_host(subnet: &str) -> Option<std::net::IpAddr> {
    let (net, _) = subnet.split_once('/')?;
    let net: std::net::Ipv4Addr = net.parse().ok()?;
    Some(std::net::Ipv4Addr::from(u32::from(net) + 1).into())
}

/// `host:port/...` → `host` (brackets of an IPv6 literal removed).
fn tcp_host(rest: &str) -> String {
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => &authority[..i],
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host == "0.0.0.0" {
        "127.0.0.1".into()
    } else {
        host.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_host_is_the_authority_without_port() {
        assert_eq!(tcp_host("10.1.2.3:2375"), "10.1.2.3");
        assert_eq!(tcp_host("docker.example:2376/"), "docker.example");
        assert_eq!(tcp_host("[::1]:2375"), "::1");
        assert_eq!(tcp_host("0.0.0.0:2375"), "127.0.0.1");
        assert_eq!(tcp_host("localhost"), "localhost");
    }

    #[test]
    fn loopback_engines_are_local() {
        for host in ["127.0.0.1", "localhost", "::1", "127.0.0.2"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["10.1.2.3", "docker.example", "0.0.0.1"] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn first_host_of_a_subnet() {
        assert_eq!(
            first_host("172.17.0.0/16"),
            Some("172.17.0.1".parse().unwrap())
        );
        assert_eq!(first_host("fd00::/64"), None);
    }
}
