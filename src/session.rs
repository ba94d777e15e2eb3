//! The session (one per process) and the labels every resource carries.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use once_cell::sync::Lazy;

/// Marks every resource testdock creates; leak checks filter on it.
pub const LABEL_MANAGED: &str = "testdock.managed";
/// The creating process's session id (a UUID v4 made once per process).
pub const LABEL_SESSION: &str = "testdock.session";
/// The creating process's pid.
pub const LABEL_PID: &str = "testdock.pid";
/// The creating process's start time (clock ticks since boot), so a reused
/// pid is not mistaken for the owner.
pub const LABEL_PID_START: &str = "testdock.pidstart";
/// The creating machine's hostname.
pub const LABEL_HOST: &str = "testdock.host";
/// The creating process's pid namespace and boot: pids are only comparable
/// within one, so the sweep judges owners by pid only there.
pub const LABEL_PID_NS: &str = "testdock.pidns";
/// Unix seconds after which any sweeper may remove the resource.
pub const LABEL_EXPIRES: &str = "testdock.expires";

/// How long a resource lives at most when its owner cannot clean it up.
/// `TESTDOCK_TTL` (seconds) overrides it.
const DEFAULT_TTL: Duration = Duration::from_secs(4 * 3600);

static SESSION: Lazy<String> = Lazy::new(|| uuid::Uuid::new_v4().to_string());

/// This process's session id.
pub fn session_id() -> &'static str {
    &SESSION
}

/// How long a resource may live before any sweeper may remove it.
pub(crate) fn ttl() -> Duration {
    std::env::var("TESTDOCK_TTL")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TTL)
}

/// The labels of a resource created now by this process.
pub(crate) fn labels() -> HashMap<String, String> {
    let expires = (SystemTime::now() + ttl())
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut l = HashMap::new();
    l.insert(LABEL_MANAGED.into(), "true".into());
    l.insert(LABEL_SESSION.into(), session_id().into());
    l.insert(LABEL_PID.into(), std::process::id().to_string());
    if let Some(start) = process_start_ticks(std::process::id()) {
        l.insert(LABEL_PID_START.into(), start.to_string());
    }
    l.insert(LABEL_HOST.into(), hostname().into());
    if let Some(ns) = pid_namespace() {
        l.insert(LABEL_PID_NS.into(), ns.into());
    }
    l.insert(LABEL_EXPIRES.into(), expires.to_string());
    l
}

/// This machine's hostname, read once.
pub(crate) fn hostname() -> &'static str {
    static HOST: Lazy<String> = Lazy::new(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".into())
    });
    &HOST
}

/// This process's pid namespace and the boot it belongs to, e.g.
/// `pid:[4026531836]@<boot id>`; read once.
pub(crate) fn pid_namespace() -> Option<&'static str> {
    static NS: Lazy<Option<String>> = Lazy::new(|| {
        let ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        Some(format!("{}@{}", ns.display(), boot.trim()))
    });
    NS.as_deref()
}

/// What can be told of a process from here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// Running, started at these clock ticks since boot.
    Alive(u64),
    /// No such process.
    Gone,
    /// Neither: its `/proc` entry cannot be read (`hidepid`, another
    /// user's), so it may well be alive.
    Unknown,
}

/// Whether `pid` lives. Only "no such process" from the kernel counts as
/// gone: under `/proc` mounted `hidepid=1|2` another user's live process
/// has no readable entry, and it must not read as dead.
pub(crate) fn liveness(pid: u32) -> Liveness {
    if let Some(start) = process_start_ticks(pid) {
        return Liveness::Alive(start);
    }
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return Liveness::Gone;
    };
    // Signal 0 checks existence and permission; it sends nothing.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return Liveness::Unknown;
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::ESRCH) => Liveness::Gone,
        _ => Liveness::Unknown,
    }
}

/// Field 22 of `/proc/<pid>/stat`: the start time in clock ticks since boot.
pub(crate) fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: skip past
    // its last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_this_process() {
        let l = labels();
        assert_eq!(l[LABEL_MANAGED], "true");
        assert_eq!(l[LABEL_SESSION], session_id());
        assert_eq!(l[LABEL_PID], std::process::id().to_string());
        assert_eq!(l[LABEL_HOST], hostname());
        let expires: u64 = l[LABEL_EXPIRES].parse().unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(expires > now);
        assert!(uuid::Uuid::parse_str(session_id()).is_ok());
    }

    #[test]
    fn start_time_is_stable_and_distinguishes_processes() {
        let me = process_start_ticks(std::process::id()).unwrap();
        assert_eq!(process_start_ticks(std::process::id()), Some(me));
        // pid 1 started before this test process.
        assert!(process_start_ticks(1).unwrap() <= me);
        assert_eq!(process_start_ticks(u32::MAX), None);
    }

    #[test]
    fn only_no_such_process_is_gone() {
        let me = process_start_ticks(std::process::id()).unwrap();
        assert_eq!(liveness(std::process::id()), Liveness::Alive(me));
        // pid_max is at most 2^22: this one cannot exist.
        assert_eq!(liveness(4_194_304 + 7), Liveness::Gone);
    }
}
