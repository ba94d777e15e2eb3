//! The startup sweep: remove what dead owners left and what has expired —
//! never a live owner's resources.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::engine::{client, on_engine};
use crate::error::Result;
use crate::reaper::{list, remove_all, Found};
use crate::session::{
    liveness, pid_namespace, session_id, Liveness, LABEL_EXPIRES, LABEL_MANAGED, LABEL_PID,
    LABEL_PID_NS, LABEL_PID_START, LABEL_SESSION,
};

/// Removes testdock resources whose owner is dead — in this pid namespace
/// (this host, this boot), its pid is gone or now belongs to a process that
/// started later — or whose
/// `testdock.expires` has passed. Resources of a live owner are never
/// touched, on this host or another; kept containers (`TESTDOCK_KEEP`)
/// stay until they expire.
///
/// Runs by itself in the background, once per process, when the process
/// first creates something — a resource of its own or the run's server — so
/// once per run under nextest, not in every process that only joins; call
/// it to clean up on demand. Returns how many resources were removed.
///
/// # Errors
///
/// [`Error::Docker`](crate::Error::Docker) if listing fails, or the first
/// removal that failed for another reason than "gone" or "in use".
pub async fn sweep() -> Result<usize> {
    on_engine(sweep_on_engine()).await
}

/// Starts the startup sweep in the background, the first time only. For
/// code on the engine runtime.
pub(crate) fn sweep_once() {
    static DONE: std::sync::Once = std::sync::Once::new();
    if crate::watchdog::is_watchdog() {
        return;
    }
    DONE.call_once(|| {
        crate::engine::spawn_detached(async {
            if let Err(e) = sweep_on_engine().await {
                tracing::warn!(error = %e, "sweeping stale resources failed");
                eprintln!("testdock: sweeping stale resources failed: {e}");
            }
        })
    });
}

pub(crate) async fn sweep_on_engine() -> Result<usize> {
    let docker = client().await?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let found = list(docker, LABEL_MANAGED).await?;
    let stale: Vec<Found> = found
        .into_iter()
        .filter(|f| {
            crate::run::idle_verdict(&f.labels, f.is_kept()).unwrap_or_else(|| {
                is_stale(&f.labels, f.is_kept(), now, pid_namespace(), &liveness)
            })
        })
        .collect();
    let t0 = std::time::Instant::now();
    for f in &stale {
        tracing::debug!(
            kind = ?f.kind,
            id = crate::trace::short(&f.id),
            name = %f.name,
            reason = %stale_reason(&f.labels, now),
            "sweep: removing"
        );
    }
    let (found, removed) = (stale.len(), remove_all(docker, stale).await?);
    if removed > 0 {
        tracing::info!(
            removed,
            found,
            elapsed_ms = crate::trace::ms(t0),
            "sweep removed stale resources"
        );
    } else {
        tracing::debug!(
            found,
            elapsed_ms = crate::trace::ms(t0),
            "sweep removed nothing"
        );
    }
    Ok(removed)
}

/// Why the sweep judged a resource stale, for its event: `is_stale` said
/// yes, so it expired or its owner is gone.
fn stale_reason(labels: &HashMap<String, String>, now: u64) -> String {
    let expires = labels
        .get(LABEL_EXPIRES)
        .and_then(|e| e.parse::<u64>().ok());
    match (expires, labels.get(LABEL_PID)) {
        (Some(e), _) if e <= now => format!("expired {} s ago", now - e),
        (_, Some(pid)) => format!("its owner, pid {pid}, is gone"),
        _ => "its owner is gone".into(),
    }
}

/// The sweep's verdict on one resource. `liveness(pid)` tells whether the
/// owner lives. An owner confirmed alive wins over expiry — expiry is
/// wall-clock, written on the creator's clock and read on ours, and a
/// run-wide server is meant to outlive it — so expiry judges only owners
/// whose liveness cannot be told: another pid namespace, no pid labels, an
/// unreadable `/proc` entry, and kept containers.
fn is_stale(
    labels: &HashMap<String, String>,
    kept: bool,
    now: u64,
    this_pid_ns: Option<&str>,
    liveness: &dyn Fn(u32) -> Liveness,
) -> bool {
    if labels.get(LABEL_SESSION).map(String::as_str) == Some(session_id()) {
        return false;
    }
    // A pid means something only in the pid namespace (and boot) it was
    // read in: two CI jobs in containers on one daemon share a hostname but
    // not their pids.
    let same_ns =
        this_pid_ns.is_some() && labels.get(LABEL_PID_NS).map(String::as_str) == this_pid_ns;
    let pid = labels.get(LABEL_PID).and_then(|p| p.parse().ok());
    if let (false, true, Some(pid)) = (kept, same_ns, pid) {
        let owner_start = labels
            .get(LABEL_PID_START)
            .and_then(|s| s.parse::<u64>().ok());
        match (liveness(pid), owner_start) {
            (Liveness::Gone, _) => return true,
            // The pid was reused by a later process: the owner is gone.
            (Liveness::Alive(now_start), Some(start)) if now_start != start => return true,
            (Liveness::Alive(_), _) => return false,
            (Liveness::Unknown, _) => {}
        }
    }
    labels
        .get(LABEL_EXPIRES)
        .and_then(|e| e.parse::<u64>().ok())
        .is_some_and(|e| e <= now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const NOW: u64 = 1_000_000;

    fn owner(pid: &str, start: &str, expires: &str) -> HashMap<String, String> {
        labels(&[
            (LABEL_SESSION, "other-session"),
            (LABEL_PID_NS, "here"),
            (LABEL_PID, pid),
            (LABEL_PID_START, start),
            (LABEL_EXPIRES, expires),
        ])
    }

    #[test]
    fn dead_owner_on_this_host_is_stale() {
        let none = |_| Liveness::Gone;
        assert!(is_stale(
            &owner("42", "7", "2000000"),
            false,
            NOW,
            Some("here"),
            &none
        ));
    }

    #[test]
    fn a_live_owner_wins_over_expiry() {
        let alive = |_| Liveness::Alive(7);
        assert!(!is_stale(
            &owner("42", "7", "2000000"),
            false,
            NOW,
            Some("here"),
            &alive
        ));
        // Expired on the creator's clock, but its owner is alive.
        assert!(!is_stale(
            &owner("42", "7", "999999"),
            false,
            NOW,
            Some("here"),
            &alive
        ));
    }

    #[test]
    fn an_owner_that_cannot_be_judged_waits_for_expiry() {
        let unknown = |_| Liveness::Unknown;
        assert!(!is_stale(
            &owner("42", "7", "2000000"),
            false,
            NOW,
            Some("here"),
            &unknown
        ));
        assert!(is_stale(
            &owner("42", "7", "999999"),
            false,
            NOW,
            Some("here"),
            &unknown
        ));
    }

    #[test]
    fn reused_pid_means_the_owner_is_gone() {
        let reused = |_| Liveness::Alive(8);
        assert!(is_stale(
            &owner("42", "7", "2000000"),
            false,
            NOW,
            Some("here"),
            &reused
        ));
    }

    #[test]
    fn other_pid_namespaces_and_kept_containers_wait_for_expiry() {
        let none = |_| Liveness::Gone;
        // No namespace of our own to compare with: never judged by pid.
        assert!(!is_stale(
            &owner("42", "7", "2000000"),
            false,
            NOW,
            None,
            &none
        ));
        assert!(!is_stale(
            &owner("42", "7", "2000000"),
            false,
            NOW,
            Some("elsewhere"),
            &none
        ));
        assert!(!is_stale(
            &owner("42", "7", "2000000"),
            true,
            NOW,
            Some("here"),
            &none
        ));
        assert!(is_stale(
            &owner("42", "7", "1"),
            true,
            NOW,
            Some("here"),
            &none
        ));
    }

    #[test]
    fn the_sweep_says_why() {
        assert_eq!(
            stale_reason(&owner("42", "7", "999990"), NOW),
            "expired 10 s ago"
        );
        assert_eq!(
            stale_reason(&owner("42", "7", "2000000"), NOW),
            "its owner, pid 42, is gone"
        );
    }

    #[test]
    fn own_session_is_never_swept() {
        let mut l = owner("42", "7", "1");
        l.insert(LABEL_SESSION.into(), session_id().into());
        assert!(!is_stale(&l, false, NOW, Some("here"), &|_| Liveness::Gone));
    }
}
