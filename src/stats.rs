//! Lifecycle extras: pause and unpause, a resource-usage snapshot, and the
//! OCI runtime a container runs under.

use std::time::Duration;

use bollard::models::ContainerStatsResponse;
use bollard::query_parameters::StatsOptionsBuilder;
use futures_util::StreamExt;

use crate::container::TestContainer;
use crate::engine::{client, on_engine};
use crate::error::{Error, Result};
use crate::spec::ContainerSpec;

/// The window over which [`TestContainer::stats`] measures CPU use: long
/// enough for the kernel's tick-based system time to be meaningful, short
/// enough to call in a polling loop.
const CPU_WINDOW: Duration = Duration::from_millis(200);

/// One snapshot of a container's resource use; see
/// [`TestContainer::stats`].
///
/// A container that is not running reports zeros.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// Memory in use, in bytes, without the reclaimable page cache — the
    /// figure `docker stats` shows.
    pub memory_bytes: u64,
    /// The memory limit, in bytes: the spec's
    /// [`memory_limit`](ContainerSpec::memory_limit), or the host's memory
    /// when there is none.
    pub memory_limit_bytes: u64,
    /// CPU use over the last ~200 ms, in percent of one core (`150.0` is
    /// one and a half cores busy), as `docker stats` computes it.
    pub cpu_percent: f64,
    /// CPU time used since the container started.
    pub cpu_time: Duration,
    /// Processes and threads in the container.
    pub pids: u64,
    /// Bytes received, over all network interfaces.
    pub network_rx_bytes: u64,
    /// Bytes sent, over all network interfaces.
    pub network_tx_bytes: u64,
}

impl Stats {
    /// From two samples `CPU_WINDOW` apart; everything but CPU from the
    /// later one.
    fn from_samples(before: &ContainerStatsResponse, now: &ContainerStatsResponse) -> Stats {
        let memory = now.memory_stats.clone().unwrap_or_default();
        let usage = memory.usage.unwrap_or(0);
        // Page cache the kernel can drop is not "used": cgroup v1 names it
        // `total_inactive_file`, v2 `inactive_file` (as the docker CLI).
        let cache = memory
            .stats
            .as_ref()
            .and_then(|s| {
                s.get("total_inactive_file")
                    .or_else(|| s.get("inactive_file"))
            })
            .copied()
            .filter(|&c| c < usage)
            .unwrap_or(0);
        let cpu = |s: &ContainerStatsResponse| {
            let c = s.cpu_stats.clone().unwrap_or_default();
            let total = c.cpu_usage.and_then(|u| u.total_usage).unwrap_or(0);
            (
                total,
                c.system_cpu_usage.unwrap_or(0),
                c.online_cpus.unwrap_or(1),
            )
        };
        let ((total0, system0, _), (total1, system1, cpus)) = (cpu(before), cpu(now));
        let cpu_delta = total1.saturating_sub(total0) as f64;
        let system_delta = system1.saturating_sub(system0) as f64;
        let cpu_percent = if system_delta > 0.0 {
            cpu_delta / system_delta * f64::from(cpus) * 100.0
        } else {
            0.0
        };
        let networks = now.networks.clone().unwrap_or_default();
        Stats {
            memory_bytes: usage - cache,
            memory_limit_bytes: memory.limit.unwrap_or(0),
            cpu_percent,
            cpu_time: Duration::from_nanos(total1),
            pids: now.pids_stats.as_ref().and_then(|p| p.current).unwrap_or(0),
            network_rx_bytes: networks.values().filter_map(|n| n.rx_bytes).sum(),
            network_tx_bytes: networks.values().filter_map(|n| n.tx_bytes).sum(),
        }
    }
}

impl TestContainer {
    /// Freezes every process in the container (the cgroup freezer): they
    /// get no CPU time until [`unpause`](TestContainer::unpause), and exec
    /// is refused meanwhile. Removing a paused container works.
    ///
    /// # Errors
    ///
    /// [`Error::Docker`] (status 409) if the container is not running or
    /// already paused.
    pub async fn pause(&self) -> Result<()> {
        let (id, name) = (self.id().to_string(), self.name().to_string());
        on_engine(async move {
            client()
                .await?
                .pause_container(&id)
                .await
                .map_err(|e| Error::docker(format!("pause container {name}"), e))
        })
        .await
    }

    /// Resumes a container frozen by [`pause`](TestContainer::pause).
    ///
    /// # Errors
    ///
    /// [`Error::Docker`] if the container is not paused.
    pub async fn unpause(&self) -> Result<()> {
        let (id, name) = (self.id().to_string(), self.name().to_string());
        on_engine(async move {
            client()
                .await?
                .unpause_container(&id)
                .await
                .map_err(|e| Error::docker(format!("unpause container {name}"), e))
        })
        .await
    }

    /// A snapshot of the container's memory, CPU, process and network use.
    ///
    /// Takes about 200 ms: Docker's single samples carry no CPU rate, so
    /// CPU use is measured between two of them (Docker's own two-sample
    /// answer takes two seconds).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> testdock::Result<()> {
    /// use testdock::{ContainerSpec, HostImage};
    ///
    /// let c = ContainerSpec::new(HostImage::shell())
    ///     .cmd(["sleep", "infinity"])
    ///     .memory_limit(64 << 20)
    ///     .start()
    ///     .await?;
    /// let s = c.stats().await?;
    /// assert_eq!(s.memory_limit_bytes, 64 << 20);
    /// assert!(s.memory_bytes < s.memory_limit_bytes);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Docker`] if the container is gone.
    pub async fn stats(&self) -> Result<Stats> {
        let (id, name) = (self.id().to_string(), self.name().to_string());
        on_engine(async move {
            let before = sample(&id, &name).await?;
            tokio::time::sleep(CPU_WINDOW).await;
            let now = sample(&id, &name).await?;
            Ok(Stats::from_samples(&before, &now))
        })
        .await
    }
}

/// One sample, at once: `one-shot` skips the engine's wait for a second
/// sample to fill `precpu_stats`.
async fn sample(id: &str, name: &str) -> Result<ContainerStatsResponse> {
    let docker = client().await?;
    let opts = StatsOptionsBuilder::new()
        .stream(false)
        .one_shot(true)
        .build();
    let op = || format!("read stats of container {name}");
    match docker.stats(id, Some(opts)).next().await {
        Some(Ok(s)) => Ok(s),
        Some(Err(e)) => Err(Error::docker(op(), e)),
        None => Err(Error::docker(
            op(),
            bollard::errors::Error::DockerResponseServerError {
                status_code: 500,
                message: "the engine sent no stats".into(),
            },
        )),
    }
}

impl ContainerSpec {
    /// The OCI runtime to run the container with, e.g. `"runsc"` (gVisor)
    /// or `"kata"`, as configured in the engine's `daemon.json`; default:
    /// the engine's default (usually `runc`). See `docker info` for the
    /// runtimes it has.
    ///
    /// An unknown runtime is refused by `start()` with [`Error::Docker`]
    /// naming it; nothing is left behind.
    pub fn runtime(mut self, runtime: impl Into<String>) -> Self {
        let runtime = runtime.into();
        if runtime.is_empty() {
            self.error
                .get_or_insert_with(|| "runtime name is empty".into());
            return self;
        }
        self.runtime = Some(runtime);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerCpuStats, ContainerCpuUsage, ContainerMemoryStats};

    fn sample(total: u64, system: u64) -> ContainerStatsResponse {
        ContainerStatsResponse {
            cpu_stats: Some(ContainerCpuStats {
                cpu_usage: Some(ContainerCpuUsage {
                    total_usage: Some(total),
                    ..Default::default()
                }),
                system_cpu_usage: Some(system),
                online_cpus: Some(2),
                ..Default::default()
            }),
            memory_stats: Some(ContainerMemoryStats {
                usage: Some(10_000),
                limit: Some(64 << 20),
                stats: Some([("total_inactive_file".to_string(), 4_000)].into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn cpu_percent_is_of_one_core_and_cache_is_not_usage() {
        // 2 CPUs, 400 ms of system time in the window, 300 ms used by the
        // container: one and a half cores.
        let s = Stats::from_samples(
            &sample(0, 1_000_000_000),
            &sample(300_000_000, 1_400_000_000),
        );
        assert!((s.cpu_percent - 150.0).abs() < 1e-9, "{}", s.cpu_percent);
        assert_eq!(s.cpu_time, Duration::from_millis(300));
        assert_eq!((s.memory_bytes, s.memory_limit_bytes), (6_000, 64 << 20));
    }

    #[test]
    fn a_stopped_container_reports_zeros() {
        let empty = ContainerStatsResponse::default();
        let s = Stats::from_samples(&empty, &empty);
        assert_eq!((s.memory_bytes, s.cpu_percent, s.pids), (0, 0.0, 0));
    }

    #[test]
    fn an_empty_runtime_is_refused() {
        let s = ContainerSpec::new("img").runtime("");
        assert_eq!(s.error.as_deref(), Some("runtime name is empty"));
        assert_eq!(
            ContainerSpec::new("img").runtime("runc").runtime.as_deref(),
            Some("runc")
        );
    }
}
