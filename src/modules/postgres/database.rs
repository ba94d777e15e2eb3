//! `TestDatabase`: one test's database, dropped when the test passes and
//! kept when it fails; and how it is named.

use std::panic::Location;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::Inner;
use crate::engine::on_engine;
use crate::modules::fixture;
use crate::Result;

/// A database of its own for one test, cloned from a template.
///
/// Named `t_<test path>_<hash of it>_<process>_<n>` (63 bytes at most:
/// the path's end, fn name first, is kept), so a printed URL says whose it
/// is, and unique across the processes sharing a server. When the guard goes away:
/// - the test passed: the database is dropped (queued on testdock's
///   runtime; `Drop` never blocks and never panics);
/// - the test is failing (the thread is panicking): the database is kept
///   and its URL printed beside the failure. With `TESTDOCK_KEEP=on-failure`
///   the server's container is kept too, so the URL still works after the
///   test binary has exited; without it the server goes at exit.
///
/// [`drop_now`](TestDatabase::drop_now) drops it and reports errors.
#[must_use = "dropping a TestDatabase drops the database; bind it: `let db = PG.fresh_database().await?`"]
#[derive(Debug)]
pub struct TestDatabase {
    pub(super) name: String,
    pub(super) url: String,
    pub(super) template: String,
    pub(super) server: Arc<Inner>,
    pub(super) armed: bool,
}

impl TestDatabase {
    /// The database's name, as a client's `dbname`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `postgres://user:password@127.0.0.1:PORT/name`, for any client.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where the server is reached from this process, usually `127.0.0.1`;
    /// for a client configured by parts rather than by [`url`](Self::url).
    pub fn host(&self) -> &str {
        &self.server.host
    }

    /// The server's published port.
    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// The user the URL carries (the server's superuser).
    pub fn user(&self) -> &str {
        &self.server.user
    }

    /// Its password.
    pub fn password(&self) -> &str {
        &self.server.password
    }

    /// The template it was cloned from.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// Drops the database now, closing any session still on it.
    ///
    /// # Errors
    ///
    /// [`Error::ExecFailed`](crate::Error::ExecFailed) if the server refuses.
    pub async fn drop_now(mut self) -> Result<()> {
        self.armed = false;
        let (server, name) = (self.server.clone(), std::mem::take(&mut self.name));
        on_engine(async move { server.drop_database(&name).await }).await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if !self.armed || !fixture::goes_on_drop(|| self.report_kept()) {
            return;
        }
        let (server, name) = (self.server.clone(), std::mem::take(&mut self.name));
        fixture::queue(format!("drop database {name}"), async move {
            server.drop_database(&name).await
        });
    }
}

impl TestDatabase {
    fn report_kept(&self) {
        let what = format_args!("database {}", self.name);
        let s = &self.server;
        fixture::report_kept(what, &self.url, &s.container, &s.kept);
    }
}

/// Where a fresh database was asked for: the test (libtest names each
/// test's thread after it) and the call site.
#[derive(Clone, Debug)]
pub(super) struct Origin {
    test: Option<String>,
    location: &'static Location<'static>,
}

impl Origin {
    #[track_caller]
    pub(super) fn here() -> Self {
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
    pub(super) fn database_name(&self, n: u64) -> String {
        self.database_name_in(process_tag(std::process::id(), crate::session_id()), n)
    }

    fn database_name_in(&self, process: String, n: u64) -> String {
        let key = match &self.test {
            Some(t) => format!("{}|{t}", self.location.file()),
            None => format!("{}:{}", self.location.file(), self.location.line()),
        };
        let hash = Sha256::digest(key.as_bytes());
        let suffix = format!("_{}_{process}_{n}", crate::util::hex(&hash[..4]));
        let budget = MAX_NAME.saturating_sub("t_".len() + suffix.len());
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

/// PostgreSQL's longest identifier, in bytes (`NAMEDATALEN - 1`).
const MAX_NAME: usize = 63;

/// Tells this process's names from those of the other processes on one
/// server: the pid (unique among live processes on a host) and two
/// characters of the session id (for a pid reused later in a run, while
/// an earlier owner's kept databases are still there), in base 36.
pub(super) fn process_tag(pid: u32, session: &str) -> String {
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
        let max = a.database_name_in(process_tag(u32::MAX, "s"), u64::MAX);
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
        let mine = o.database_name_in(process_tag(4242, s1), 1);
        let theirs = o.database_name_in(process_tag(4243, s2), 1);
        assert_ne!(mine, theirs);
        // A pid reused later in the run, by another session.
        let reused = o.database_name_in(process_tag(4242, s2), 1);
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
