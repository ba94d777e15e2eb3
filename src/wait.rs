//! Readiness: what to wait for before a test talks to a container.

use std::fmt;
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::models::HealthStatusEnum;
use bollard::query_parameters::LogsOptionsBuilder;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::engine::client;
use crate::error::{Error, Result};
use crate::util::{shell_join, tail_lines};

/// The default startup timeout, for every strategy together.
pub(crate) const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// How often polling strategies look again.
const POLL: Duration = Duration::from_millis(50);

/// Something to wait for before a container counts as ready.
///
/// Give one or more to [`ContainerSpec::wait_for`]; `start()` returns once
/// all hold, within the spec's startup timeout (60 s by default). If the
/// container exits or turns unhealthy meanwhile, `start()` fails at once
/// with [`Error::NotReady`], naming the strategy, the time waited and the
/// container's last log lines.
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> testdock::Result<()> {
/// use testdock::{ContainerSpec, HostImage, WaitFor};
///
/// let c = ContainerSpec::new(HostImage::shell())
///     .cmd(["sh", "-c", "sleep 1; echo listening; exec sleep infinity"])
///     .wait_for(WaitFor::stdout_line("listening"))
///     .start()
///     .await?;
/// # Ok(()) }
/// ```
///
/// [`ContainerSpec::wait_for`]: crate::ContainerSpec::wait_for
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitFor {
    kind: Kind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Log {
        text: String,
        stream: Stream,
        times: usize,
    },
    Port(u16),
    Http {
        port: u16,
        path: String,
        status: u16,
    },
    Healthy,
    Command(Vec<String>),
    Exit(Option<i64>),
    Delay(Duration),
    All(Vec<WaitFor>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
    Either,
}

impl WaitFor {
    fn new(kind: Kind) -> Self {
        WaitFor { kind }
    }

    /// A line containing `text` on stdout or stderr.
    pub fn log_line(text: impl Into<String>) -> Self {
        Self::new(Kind::Log {
            text: text.into(),
            stream: Stream::Either,
            times: 1,
        })
    }

    /// A line containing `text` on stdout.
    pub fn stdout_line(text: impl Into<String>) -> Self {
        Self::new(Kind::Log {
            text: text.into(),
            stream: Stream::Stdout,
            times: 1,
        })
    }

    /// A line containing `text` on stderr.
    pub fn stderr_line(text: impl Into<String>) -> Self {
        Self::new(Kind::Log {
            text: text.into(),
            stream: Stream::Stderr,
            times: 1,
        })
    }

    /// For a log line strategy: wait for the `n`th such line (a server
    /// that restarts once after initialising prints "ready" twice).
    pub fn times(mut self, n: usize) -> Self {
        if let Kind::Log { times, .. } = &mut self.kind {
            *times = n.max(1);
        }
        self
    }

    /// TCP port `port` (in the container) accepting connections that are
    /// really served. A published port is probed from the host: bytes from
    /// the server count, a connection the engine's proxy accepts but closes
    /// (no server behind it yet) does not. When the connection stays
    /// silent (a server that waits for the client to speak first), and for
    /// an unpublished port, the container's own socket table decides: read
    /// from this machine through the container's process when the engine
    /// runs here (no tool needed in the image, so an image holding one
    /// binary works), else with `cat` in the image. Where neither works (a
    /// remote engine and an image without `cat`) the wait fails at once
    /// and says what to wait for instead: an unknown answer is not a yes.
    pub fn port(port: u16) -> Self {
        Self::new(Kind::Port(port))
    }

    /// An HTTP `GET path` on published port `port` answering 200; change
    /// the status with [`status`](WaitFor::status).
    pub fn http(port: u16, path: impl Into<String>) -> Self {
        Self::new(Kind::Http {
            port,
            path: path.into(),
            status: 200,
        })
    }

    /// For an HTTP strategy: the status to wait for.
    pub fn status(mut self, code: u16) -> Self {
        if let Kind::Http { status, .. } = &mut self.kind {
            *status = code;
        }
        self
    }

    /// Docker's healthcheck reporting healthy — the image's, or one set
    /// with [`ContainerSpec::healthcheck`](crate::ContainerSpec::healthcheck).
    pub fn healthy() -> Self {
        Self::new(Kind::Healthy)
    }

    /// A command run in the container exiting 0.
    pub fn command(cmd: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self::new(Kind::Command(cmd.into_iter().map(Into::into).collect()))
    }

    /// The container exiting, with any code.
    pub fn exit() -> Self {
        Self::new(Kind::Exit(None))
    }

    /// The container exiting with `code`; another code fails at once.
    pub fn exit_code(code: i64) -> Self {
        Self::new(Kind::Exit(Some(code)))
    }

    /// A fixed delay. Prefer a condition: a delay is either too long or,
    /// on a slow machine, too short.
    pub fn delay(d: Duration) -> Self {
        Self::new(Kind::Delay(d))
    }

    /// All of these, in order.
    pub fn all(all: impl IntoIterator<Item = WaitFor>) -> Self {
        Self::new(Kind::All(all.into_iter().collect()))
    }
}

impl fmt::Display for WaitFor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Log {
                text,
                stream,
                times,
            } => {
                let on = match stream {
                    Stream::Stdout => "stdout",
                    Stream::Stderr => "stderr",
                    Stream::Either => "stdout or stderr",
                };
                write!(f, "log line {text:?} on {on}")?;
                if *times > 1 {
                    write!(f, " {times} times")?;
                }
                Ok(())
            }
            Kind::Port(p) => write!(f, "port {p}/tcp served"),
            Kind::Http { port, path, status } => {
                write!(f, "HTTP {status} from GET {path} on port {port}")
            }
            Kind::Healthy => write!(f, "healthcheck healthy"),
            Kind::Command(c) => write!(f, "`{}` succeeding", shell_join(c)),
            Kind::Exit(None) => write!(f, "exit"),
            Kind::Exit(Some(c)) => write!(f, "exit with code {c}"),
            Kind::Delay(d) => write!(f, "{d:?} delay"),
            Kind::All(all) => {
                let parts: Vec<String> = all.iter().map(ToString::to_string).collect();
                write!(f, "all of [{}]", parts.join(", "))
            }
        }
    }
}

/// The container being waited on.
pub(crate) struct Target<'a> {
    pub(crate) id: &'a str,
    pub(crate) name: &'a str,
    pub(crate) host: &'a str,
}

/// Why a wait ended early.
enum Stop {
    TimedOut,
    Failed(String),
}

type Step = std::result::Result<(), Stop>;

/// Waits for every strategy within `timeout`. Call on the engine runtime.
pub(crate) async fn wait_ready(t: &Target<'_>, waits: &[WaitFor], timeout: Duration) -> Result<()> {
    let started = Instant::now();
    let deadline = started + timeout;
    for w in waits {
        // After a few seconds, say what is awaited: a slow start looks hung.
        let (what, on) = (w.to_string(), t.name.to_string());
        let _still = crate::progress::Ticker::start(move |_| {
            crate::progress::still_waiting(&what, &on, started.elapsed(), timeout)
        });
        // Every engine call of a wait stays under its deadline, a wedged
        // daemon's too: whatever a strategy awaits, the deadline ends it.
        let remaining = deadline.saturating_duration_since(Instant::now());
        let step = tokio::time::timeout(remaining, wait_one(t, w, deadline))
            .await
            .unwrap_or(Err(Stop::TimedOut));
        if let Err(stop) = step {
            tracing::debug!(
                id = crate::trace::short(t.id),
                name = t.name,
                strategy = %w,
                elapsed_ms = crate::trace::ms(started),
                "container not ready"
            );
            let outcome = match stop {
                Stop::TimedOut => "timed out".to_string(),
                Stop::Failed(why) => why,
            };
            return Err(Error::NotReady {
                container: t.name.to_string(),
                strategy: w.to_string(),
                outcome,
                waited: started.elapsed(),
                logs_tail: logs_tail(t.id).await,
            });
        }
        tracing::debug!(
            id = crate::trace::short(t.id),
            name = t.name,
            strategy = %w,
            elapsed_ms = crate::trace::ms(started),
            "container ready"
        );
    }
    Ok(())
}

async fn wait_one(t: &Target<'_>, w: &WaitFor, deadline: Instant) -> Step {
    match &w.kind {
        Kind::Log {
            text,
            stream,
            times,
        } => log_line(t, text, *stream, *times, deadline).await,
        Kind::Port(p) => poll(t, deadline, false, || port_served(t, *p)).await,
        Kind::Http { port, path, status } => {
            poll(t, deadline, false, || http_status(t, *port, path, *status)).await
        }
        Kind::Healthy => poll(t, deadline, true, || async { Ok(false) }).await,
        Kind::Command(cmd) => poll(t, deadline, false, || command_ok(t, cmd)).await,
        Kind::Exit(code) => exited(t, *code, deadline).await,
        Kind::Delay(d) => {
            if Instant::now() + *d > deadline {
                return Err(Stop::TimedOut);
            }
            tokio::time::sleep(*d).await;
            Ok(())
        }
        Kind::All(all) => {
            for w in all {
                Box::pin(wait_one(t, w, deadline)).await?;
            }
            Ok(())
        }
    }
}

/// The container's state, as far as waiting cares: `Err` if it can no
/// longer become ready; else its healthcheck's verdict (`None`: it has
/// none).
async fn check_state(t: &Target<'_>) -> std::result::Result<Option<bool>, Stop> {
    let (state, has_check) = inspect_state(t).await?;
    if state.running != Some(true) {
        let code = state.exit_code.unwrap_or(-1);
        let oom = if state.oom_killed == Some(true) {
            " (out of memory)"
        } else {
            ""
        };
        return Err(Stop::Failed(format!("it exited with code {code}{oom}")));
    }
    if !has_check {
        return Ok(None);
    }
    match state.health.and_then(|h| h.status) {
        Some(HealthStatusEnum::UNHEALTHY) => Err(Stop::Failed("it turned unhealthy".into())),
        Some(HealthStatusEnum::HEALTHY) => Ok(Some(true)),
        _ => Ok(Some(false)),
    }
}

/// The container's state, and whether it has a healthcheck at all.
async fn inspect_state(
    t: &Target<'_>,
) -> std::result::Result<(bollard::models::ContainerState, bool), Stop> {
    let docker = client().await.map_err(|e| Stop::Failed(e.to_string()))?;
    match docker.inspect_container(t.id, None).await {
        Ok(info) => {
            let test = info.config.and_then(|c| c.healthcheck).and_then(|h| h.test);
            let has_check = test.is_some_and(|t| !t.is_empty() && t[0] != "NONE");
            Ok((info.state.unwrap_or_default(), has_check))
        }
        // Podman names a stopped container's state "stopped", which bollard
        // cannot read: it is not running either way.
        Err(bollard::errors::Error::JsonDataError { .. }) => Err(Stop::Failed("it stopped".into())),
        Err(e) => Err(Stop::Failed(format!("it could not be inspected: {e}"))),
    }
}

/// Polls `probe` until it says ready, watching the container between
/// tries so an exit fails at once. For the healthcheck strategy
/// (`healthcheck`), the state check is the probe.
async fn poll<F, Fut>(t: &Target<'_>, deadline: Instant, healthcheck: bool, mut probe: F) -> Step
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<bool, Stop>>,
{
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        // Every engine call stays under the deadline, a wedged daemon too.
        let health = match tokio::time::timeout(remaining, check_state(t)).await {
            Ok(r) => r?,
            Err(_) => return Err(Stop::TimedOut),
        };
        if healthcheck {
            match health {
                Some(true) => return Ok(()),
                None => {
                    return Err(Stop::Failed(
                        "it has no healthcheck; set one with ContainerSpec::healthcheck(cmd, interval) \
                         or wait for something else"
                            .into(),
                    ))
                }
                Some(false) => {}
            }
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(Stop::TimedOut);
        }
        if !healthcheck {
            let ready = match tokio::time::timeout(remaining, probe()).await {
                Ok(r) => r?,
                Err(_) => return Err(Stop::TimedOut),
            };
            if ready {
                return Ok(());
            }
        }
        tokio::time::sleep(POLL.min(remaining)).await;
    }
}

/// An RFC 3339 UTC timestamp as a sortable key: `2024-05-01T10:00:00.5Z`
/// and `…00.500000000Z` compare equal.
fn time_key(ts: &str) -> Option<(String, String)> {
    let ts = ts.strip_suffix('Z')?;
    let (secs, frac) = ts.split_once('.').unwrap_or((ts, ""));
    (secs.len() == 19).then(|| (secs.to_string(), format!("{frac:0<9}")))
}

async fn log_line(
    t: &Target<'_>,
    text: &str,
    stream: Stream,
    times: usize,
    deadline: Instant,
) -> Step {
    let docker = client().await.map_err(|e| Stop::Failed(e.to_string()))?;
    // Only lines of the current run count: after a restart, the previous
    // run's "ready" is still in the log. Its lines all precede the moment
    // it finished; the current run's start time is no boundary, as a fast
    // process prints before the engine records it.
    let since = docker
        .inspect_container(t.id, None)
        .await
        .ok()
        .and_then(|i| i.state?.finished_at)
        .filter(|f| !f.starts_with("0001-"))
        .and_then(|s| time_key(&s));
    let opts = LogsOptionsBuilder::new()
        .follow(true)
        .timestamps(true)
        .stdout(stream != Stream::Stderr)
        .stderr(stream != Stream::Stdout)
        .build();
    // "<timestamp> <text>": the text, if the line is of the current run.
    let current = |line: &[u8]| -> Option<String> {
        let line = String::from_utf8_lossy(line);
        let (ts, text) = line.split_once(' ')?;
        match (&since, time_key(ts)) {
            (Some(since), Some(at)) if at <= *since => None,
            _ => Some(text.to_string()),
        }
    };
    let mut logs = docker.logs(t.id, Some(opts));
    let mut seen = 0;
    // Frames are not lines: keep the unfinished tail of each stream.
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let search = async {
        while let Some(frame) = logs.next().await {
            let (buf, bytes) =
                match frame.map_err(|e| Stop::Failed(format!("reading its logs failed: {e}")))? {
                    LogOutput::StdErr { message } => (&mut err, message),
                    other => (&mut out, other.into_bytes()),
                };
            buf.extend_from_slice(&bytes);
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                if current(&line).is_some_and(|l| l.contains(text)) {
                    seen += 1;
                    if seen >= times {
                        return Ok(());
                    }
                }
            }
        }
        // The log stream ends when the container stops.
        let last = [&out, &err]
            .iter()
            .any(|b| current(b).is_some_and(|l| l.contains(text)));
        if last && seen + 1 >= times {
            return Ok(());
        }
        check_state(t).await?;
        Err(Stop::Failed("its log stream ended".into()))
    };
    // Docker ends a followed log when the container stops; Podman may not.
    // Watch the state too, so an exit fails at once on either.
    let watch = async {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            check_state(t).await?;
        }
    };
    let remaining = deadline.saturating_duration_since(Instant::now());
    let raced = async {
        tokio::pin!(search);
        tokio::select! {
            found = &mut search => found,
            stopped = watch => {
                // Lines printed just before the exit may still be in flight.
                match tokio::time::timeout(Duration::from_millis(500), &mut search).await {
                    Ok(Ok(())) => Ok(()),
                    _ => stopped,
                }
            }
        }
    };
    tokio::time::timeout(remaining, raced)
        .await
        .unwrap_or(Err(Stop::TimedOut))
}

async fn exited(t: &Target<'_>, want: Option<i64>, deadline: Instant) -> Step {
    let docker = client().await.map_err(|e| Stop::Failed(e.to_string()))?;
    let remaining = deadline.saturating_duration_since(Instant::now());
    let code =
        match tokio::time::timeout(remaining, crate::container::wait_exit(docker, t.id)).await {
            Ok(Ok(code)) => code,
            Ok(Err(e)) => return Err(Stop::Failed(format!("waiting for its exit failed: {e}"))),
            Err(_) => return Err(Stop::TimedOut),
        };
    match want {
        Some(w) if w != code => Err(Stop::Failed(format!("it exited with code {code}"))),
        _ => Ok(()),
    }
}

async fn command_ok(t: &Target<'_>, cmd: &[String]) -> std::result::Result<bool, Stop> {
    let out = crate::exec::run_exec(t.id, t.name, cmd.to_vec(), Default::default())
        .await
        .map_err(|e| Stop::Failed(format!("the command could not run: {e}")))?;
    Ok(out.exit_code == 0)
}

/// The container as inspected: a failure to inspect ends the wait.
async fn inspect(
    t: &Target<'_>,
) -> std::result::Result<bollard::models::ContainerInspectResponse, Stop> {
    let docker = client().await.map_err(|e| Stop::Failed(e.to_string()))?;
    docker
        .inspect_container(t.id, None)
        .await
        .map_err(|e| Stop::Failed(e.to_string()))
}

/// The host port a container port is published on, if it is.
async fn published(t: &Target<'_>, port: u16) -> std::result::Result<Option<u16>, Stop> {
    Ok(crate::container::published_ports(inspect(t).await?)
        .get(&port)
        .copied())
}

async fn port_served(t: &Target<'_>, port: u16) -> std::result::Result<bool, Stop> {
    let info = inspect(t).await?;
    let host_port = crate::container::published_ports(info.clone())
        .get(&port)
        .copied();
    if let Some(host_port) = host_port {
        match probe_from_host(t.host, host_port).await {
            Probe::Served => return Ok(true),
            Probe::Closed => return Ok(false),
            // A server that waits for the client to speak, or a proxy that
            // holds the connection with nothing behind it (rootless
            // Podman's, for ~200 ms): only the container's sockets tell.
            Probe::Silent => {}
        }
    }
    decide(port, host_port.is_some(), socket_table(t, &info).await)
}

/// The verdict once only the container's socket table can tell: a table
/// that could not be read is never a yes, and it will not become readable
/// by waiting, so the wait fails at once and says what would work.
fn decide(
    port: u16,
    published: bool,
    table: std::result::Result<String, String>,
) -> std::result::Result<bool, Stop> {
    match table {
        Ok(table) => Ok(listens_on(&table, port)),
        Err(why) if published => Err(Stop::Failed(format!(
            "port {port} accepts connections but sends nothing, and whether a server listens \
             behind the engine's proxy cannot be told: {why}; wait for a log line or a command instead"
        ))),
        Err(why) => Err(Stop::Failed(format!(
            "whether anything listens on port {port} cannot be told: {why}; publish the port \
             with `.expose({port})` to probe it from the host"
        ))),
    }
}

/// What connecting to a published port showed.
enum Probe {
    /// Bytes came: someone is there.
    Served,
    /// No connection, or the engine's proxy closed it: nothing behind.
    Closed,
    /// Open and silent for a while.
    Silent,
}

/// Connects from the host. The engine's proxy accepts even when nothing
/// listens behind it, then closes: a connection that ends is not served.
async fn probe_from_host(host: &str, port: u16) -> Probe {
    let Ok(Ok(mut s)) =
        tokio::time::timeout(Duration::from_secs(1), TcpStream::connect((host, port))).await
    else {
        return Probe::Closed;
    };
    let mut byte = [0u8; 1];
    match tokio::time::timeout(Duration::from_millis(150), s.read(&mut byte)).await {
        Err(_) => Probe::Silent,
        Ok(Ok(n)) if n > 0 => Probe::Served,
        Ok(_) => Probe::Closed,
    }
}

/// The container's `/proc/net/tcp` and `tcp6`: read from this machine
/// through its main process when the engine's processes are visible here
/// (a local engine, rootless too), else with the image's `cat`. `Err`
/// says why neither worked.
async fn socket_table(
    t: &Target<'_>,
    info: &bollard::models::ContainerInspectResponse,
) -> std::result::Result<String, String> {
    let pid = info.state.as_ref().and_then(|s| s.pid).unwrap_or(0);
    let hostname = info.config.as_ref().and_then(|c| c.hostname.as_deref());
    if let Some(table) = host_socket_table(t.id, pid, hostname.unwrap_or_default()) {
        return Ok(table);
    }
    let cmd = ["cat", "/proc/net/tcp", "/proc/net/tcp6"]
        .map(String::from)
        .to_vec();
    let out = crate::exec::run_exec(t.id, t.name, cmd, Default::default())
        .await
        .map_err(|e| {
            format!("its processes are not visible here, and `cat` could not run in it: {e}")
        })?;
    // A missing executable is exit 126 or 127 with the engine's error on
    // stdout: only the table's own header counts as an answer. tcp6 may be
    // missing (IPv6 off), failing `cat` after it printed tcp.
    let text = String::from_utf8_lossy(&out.stdout);
    if text.starts_with(TABLE_HEADER) {
        return Ok(text.into_owned());
    }
    let said = [out.stdout_text(), out.stderr_text()].join(" ");
    Err(format!(
        "its processes are not visible here, and `cat /proc/net/tcp` in it exited with {}{}",
        out.exit_code,
        match said.trim() {
            "" => String::new(),
            s => format!(" ({})", crate::util::tail_lines(s, 1)),
        }
    ))
}

/// How `/proc/net/tcp` begins.
const TABLE_HEADER: &str = "  sl  local_address";

/// The socket table of process `pid`'s network namespace, if `pid` on this
/// machine is the container's process. The engine's pid may be of another
/// machine, VM or pid namespace, or reused since the inspect: what is read
/// counts only if, read after the table, the process's cgroup names the
/// container, or (engines that put it in no cgroup of its own, rootless on
/// cgroups v1) its environment has the container's default hostname, a
/// prefix of its id.
fn host_socket_table(id: &str, pid: i64, hostname: &str) -> Option<String> {
    if pid <= 0 {
        return None;
    }
    let dir = format!("/proc/{pid}");
    let tcp = std::fs::read_to_string(format!("{dir}/net/tcp")).ok()?;
    let tcp6 = std::fs::read_to_string(format!("{dir}/net/tcp6")).unwrap_or_default();
    let by_cgroup = std::fs::read_to_string(format!("{dir}/cgroup")).is_ok_and(|c| c.contains(id));
    let by_hostname = || {
        hostname.len() >= 12
            && id.starts_with(hostname)
            && std::fs::read(format!("{dir}/environ")).is_ok_and(|env| {
                env.split(|b| *b == 0)
                    .any(|var| var == format!("HOSTNAME={hostname}").as_bytes())
            })
    };
    (tcp.starts_with(TABLE_HEADER) && (by_cgroup || by_hostname())).then(|| tcp + &tcp6)
}

/// Whether `/proc/net/tcp{,6}` shows a socket listening on `port`
/// (state 0A is LISTEN).
fn listens_on(proc_net_tcp: &str, port: u16) -> bool {
    let want = format!(":{port:04X}");
    proc_net_tcp.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[1].ends_with(&want) && f[3] == "0A"
    })
}

async fn http_status(
    t: &Target<'_>,
    port: u16,
    path: &str,
    want: u16,
) -> std::result::Result<bool, Stop> {
    let Some(host_port) = published(t, port).await? else {
        return Err(Stop::Failed(format!(
            "port {port} is not published; add `.expose({port})`"
        )));
    };
    let attempt = async {
        let mut s = TcpStream::connect((t.host, host_port)).await.ok()?;
        let req = format!(
            "GET {path} HTTP/1.0\r\nHost: {}\r\nConnection: close\r\n\r\n",
            t.host
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut head = vec![0u8; 64];
        let n = s.read(&mut head).await.ok()?;
        parse_status(&head[..n])
    };
    let status = tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten();
    Ok(status == Some(want))
}

fn parse_status(head: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(head).ok()?.lines().next()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

/// The last lines of both streams, for error messages.
async fn logs_tail(id: &str) -> String {
    let read = crate::container::read_logs_tail(id.to_string(), 20);
    match tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .unwrap_or_else(|_| Err(Error::InvalidSpec("no answer within 5s".into())))
    {
        Ok(logs) => {
            let mut s = String::new();
            for (name, text) in [
                ("stdout", logs.stdout_text()),
                ("stderr", logs.stderr_text()),
            ] {
                let tail = tail_lines(&text, 20);
                if !tail.is_empty() {
                    s.push_str(&format!("--- {name} ---\n{tail}\n"));
                }
            }
            if s.is_empty() {
                "(no output)".into()
            } else {
                s
            }
        }
        Err(e) => format!("(logs unavailable: {e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_describe_themselves() {
        assert_eq!(
            WaitFor::stdout_line("ready").times(2).to_string(),
            "log line \"ready\" on stdout 2 times"
        );
        assert_eq!(
            WaitFor::http(80, "/health").status(204).to_string(),
            "HTTP 204 from GET /health on port 80"
        );
        assert_eq!(
            WaitFor::all([WaitFor::port(5432), WaitFor::exit_code(0)]).to_string(),
            "all of [port 5432/tcp served, exit with code 0]"
        );
    }

    #[test]
    fn listen_sockets_are_found_in_proc_net_tcp() {
        let table = "  sl  local_address rem_address   st tx_queue\n\
                     \x20  0: 00000000:1F90 00000000:0000 0A 00000000:00000000\n\
                     \x20  1: 0100007F:0035 0100007F:9C40 01 00000000:00000000\n";
        assert!(listens_on(table, 8080));
        assert!(!listens_on(table, 53), "established, not listening");
        assert!(!listens_on(table, 80));
    }

    #[test]
    fn an_unreadable_socket_table_is_never_a_yes() {
        let table = "  sl  local_address rem_address   st\n   0: 00000000:1F90 00000000:0000 0A\n";
        assert!(decide(8080, true, Ok(table.into())).is_ok_and(|ready| ready));
        assert!(decide(80, false, Ok(table.into())).is_ok_and(|ready| !ready));
        let Err(Stop::Failed(why)) = decide(8080, true, Err("no `cat`".into())) else {
            panic!("an unknown answer counted as an answer");
        };
        assert!(
            why.contains("no `cat`") && why.contains("log line"),
            "{why}"
        );
        let Err(Stop::Failed(why)) = decide(8080, false, Err("no `cat`".into())) else {
            panic!("an unknown answer counted as an answer");
        };
        assert!(why.contains("`.expose(8080)`"), "{why}");
    }

    #[test]
    fn only_the_containers_own_process_is_read_from_the_host() {
        // This process is not in a container with that id: another
        // machine's pid that happens to exist here reads as nothing.
        let me = i64::from(std::process::id());
        let id = "0123456789ab".repeat(5) + "cdef";
        assert_eq!(host_socket_table(&id, me, ""), None);
        assert_eq!(host_socket_table(&id, me, &id[..12]), None);
        assert_eq!(host_socket_table(&id, 0, ""), None);
    }

    #[test]
    fn timestamps_compare_whatever_their_precision() {
        let a = time_key("2026-11-22T16:40:01.5Z").unwrap();
        assert_eq!(Some(a.clone()), time_key("2026-11-22T16:40:01.500000000Z"));
        assert!(time_key("2026-11-22T16:40:01.123456789Z").unwrap() < a);
        assert!(time_key("2026-11-22T16:40:02Z").unwrap() > a);
        assert_eq!(time_key("garbage"), None);
    }

    #[test]
    fn http_status_lines_parse() {
        assert_eq!(parse_status(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status(b""), None);
    }
}
