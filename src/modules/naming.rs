//! Per-test database names, shared by the database fixtures: readable
//! (the test's path), within an engine's identifier limit, and unique
//! across the processes sharing one server.

use std::panic::Location;

use sha2::{Digest, Sha256};

/// Where a fresh database was asked for: the test (libtest names each
/// test's thread after it) and the call site.
#[derive(Clone, Debug)]
pub(crate) struct Origin {
    test: Option<String>,
    location: &'static Location<'static>,
}

impl Origin {
    #[track_caller]
    pub(crate) fn here() -> Self {
        let thread = std::thread::current();
        let test = thread
            .name()
            .filter(|n| *n != "main" && !n.starts_with("tokio-") && !n.starts_with("testdock-"))
            .map(str::to_string);
        Origin {
            test,
            location: Location::caller(),
        }
    }

    /// `t_<test path>_<8 hex digits>_<process>_<n>`, 63 bytes at most
    /// (PostgreSQL's limit): the end of the test's path (fn name and as
    /// many module segments before it as fit, cut from the left), a hash of
    /// the full path (or the call site), this process's tag and the
    /// counter, so names are unique across processes sharing one server.
    pub(crate) fn database_name(&self, n: u64) -> String {
        self.database_name_within(MAX_NAME, n)
    }

    /// As [`database_name`](Self::database_name), at most `max` bytes.
    pub(crate) fn database_name_within(&self, max: usize, n: u64) -> String {
        self.database_name_in(max, process_tag(std::process::id(), crate::session_id()), n)
    }

    fn database_name_in(&self, max: usize, process: String, n: u64) -> String {
        let key = match &self.test {
            Some(t) => format!("{}|{t}", self.location.file()),
            None => format!("{}:{}", self.location.file(), self.location.line()),
        };
        let hash = Sha256::digest(key.as_bytes());
        let suffix = format!("_{}_{process}_{n}", crate::util::hex(&hash[..4]));
        let budget = max.saturating_sub("t_".len() + suffix.len());
        let mut slug = String::new();
        for c in self.test.as_deref().unwrap_or("db").chars() {
            let c = if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            };
            // `a::b` and runs of other characters become one `_`.
            if c != '_' || !slug.ends_with('_') {
                slug.push(c);
            }
        }
        let slug = slug.trim_matches('_');
        // ASCII only, so any byte offset is a char boundary.
        let slug = slug[slug.len().saturating_sub(budget)..].trim_start_matches('_');
        let slug = if slug.is_empty() { "db" } else { slug };
        format!("t_{slug}{suffix}")
    }
}

/// `<stem>_<process tag>_<n>`: a name unique across the processes sharing
/// one server, for units no test has asked for yet (prefetched copies).
pub(crate) fn process_name(stem: &str, n: u64) -> String {
    format!(
        "{stem}_{}_{n}",
        process_tag(std::process::id(), crate::session_id())
    )
}

/// PostgreSQL's longest identifier, in bytes (`NAMEDATALEN - 1`); the
/// default, as the tightest of the engines.
const MAX_NAME: usize = 63;

/// Tells this process's names from those of the other processes on one
/// server: the pid (unique among live processes on a host) and two
/// characters of the session id (for a pid reused later in a run, while
/// an earlier owner's kept databases are still there), in base 36.
pub(crate) fn process_tag(pid: u32, session: &str) -> String {
    let h = Sha256::digest(session.as_bytes());
    let mut tag = base36(u64::from(pid));
    tag.push_str(&format!(
        "{:0>2}",
        base36(u64::from(u16::from_be_bytes([h[0], h[1]])) % 1296)
    ));
    tag
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII digits")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(test: Option<&str>) -> Origin {
        Origin {
            test: test.map(str::to_string),
            location: Location::caller(),
        }
    }

    /// The part of a name before the hash.
    fn readable(name: &str) -> &str {
        let mut parts = name.rsplitn(4, '_');
        let (_, _, _) = (parts.next(), parts.next(), parts.next());
        parts.next().unwrap()
    }

    #[test]
    fn database_names_are_readable_unique_and_short() {
        let a = origin(Some("tests::creates_user"));
        let n1 = a.database_name(1);
        let n2 = a.database_name(2);
        assert!(
            n1.starts_with("t_tests_creates_user_") && n1.ends_with("_1"),
            "{n1}"
        );
        assert_ne!(n1, n2);
        let other = origin(Some("other::creates_user")).database_name(1);
        assert_ne!(n1, other, "same fn name, other module");
        assert!(origin(None).database_name(7).starts_with("t_db_"));
        let weird = origin(Some("Üñí::Cödé-Test")).database_name(1);
        assert!(
            weird
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{weird}"
        );
        assert!(!weird.contains("__"), "{weird}");
    }

    #[test]
    fn long_names_keep_the_end_of_the_path_within_63_bytes() {
        let path = "integration::cache::postgres_test_get_total_cached_items_for_user";
        let (a, b) = (
            origin(Some(&format!("{path}_a"))),
            origin(Some(&format!("{path}_b"))),
        );
        let (na, nb) = (a.database_name(3), b.database_name(3));
        assert!(na.len() <= 63 && nb.len() <= 63, "{na} {nb}");
        // Told apart by what a reader sees, not only by the hash.
        assert!(readable(&na).ends_with("for_user_a"), "{na}");
        assert!(readable(&nb).ends_with("for_user_b"), "{nb}");
        assert_ne!(readable(&na), readable(&nb));
        // The whole budget is used: far more than the old 30 bytes.
        assert!(readable(&na).len() > 35, "{na}");
        let max = a.database_name_in(MAX_NAME, process_tag(u32::MAX, "s"), u64::MAX);
        assert!(max.len() <= 63, "{max}");
        assert!(readable(&max).ends_with("for_user_a"), "{max}");
        // A short path is kept whole.
        let short = origin(Some("api::users::creates_user")).database_name(1);
        assert!(short.starts_with("t_api_users_creates_user_"), "{short}");
    }

    #[test]
    fn two_processes_never_make_the_same_name() {
        let o = origin(Some("tests::creates_user"));
        let (s1, s2) = (
            "6f1c3b8e-0d52-4a4e-9f0a-1b2c3d4e5f60",
            "0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d",
        );
        // The counter alone repeats in every process; the tag does not.
        let mine = o.database_name_in(MAX_NAME, process_tag(4242, s1), 1);
        let theirs = o.database_name_in(MAX_NAME, process_tag(4243, s2), 1);
        assert_ne!(mine, theirs);
        // A pid reused later in the run, by another session.
        let reused = o.database_name_in(MAX_NAME, process_tag(4242, s2), 1);
        assert_ne!(mine, reused);
        assert_ne!(process_tag(4242, s1), process_tag(4242, s2));
        // Tags are short base 36.
        let tag = process_tag(4_194_304, s1);
        assert!(tag.len() <= 7, "{tag}");
        assert!(tag
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
        // This process's own names carry its tag.
        let here = o.database_name(1);
        let tag = process_tag(std::process::id(), crate::session_id());
        assert!(here.ends_with(&format!("_{tag}_1")), "{here}");
    }
}
