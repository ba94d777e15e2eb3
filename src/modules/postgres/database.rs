//! `TestDatabase`: one test's database, dropped when the test passes and
//! kept when it fails; and how it is named.

use std::panic::Location;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::Inner;
use crate::engine::on_engine;
use crate::{Error, Result};

/// A database of its own for one test, cloned from a template.
///
/// Named `t_<test fn>_<hash of the test's path>_<n>` (63 bytes at most),
/// so a printed URL says whose it is. When the guard goes away:
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
    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `postgres://user:password@127.0.0.1:PORT/name`, for any client.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The template it was cloned from.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// Drops the database now, closing any session still on it.
    ///
    /// # Errors
    ///
    /// [`Error::ExecFailed`] if the server refuses.
    pub async fn drop_now(mut self) -> Result<()> {
        self.armed = false;
        let (server, name) = (self.server.clone(), std::mem::take(&mut self.name));
        on_engine(async move { server.drop_database(&name).await }).await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let panicking = std::thread::panicking();
        if panicking || crate::reaper::keep(false) {
            if panicking {
                self.report_kept();
            }
            return;
        }
        let (server, name) = (self.server.clone(), std::mem::take(&mut self.name));
        crate::reaper::queue(async move {
            if let Err(e) = server.drop_database(&name).await {
                // A server already removed took the database with it.
                if !matches!(e, Error::Docker { .. }) {
                    tracing::warn!(database = %name, error = %e, "could not drop a database");
                    eprintln!("testdock: could not drop database {name}: {e}");
                }
            }
        });
    }
}

impl TestDatabase {
    fn report_kept(&self) {
        let c = &self.server.container;
        // eprintln!, not a raw write: libtest shows it with the failure.
        if crate::reaper::keep(true) {
            eprintln!(
                "testdock: kept database {} of the failing test: {}",
                self.name, self.url
            );
            if !self.server.kept.swap(true, Ordering::Relaxed) {
                crate::reaper::keep_in_background(c.id().to_string(), c.name().to_string());
            }
        } else {
            eprintln!(
                "testdock: kept database {} of the failing test: {} (until the server {} is \
                 removed at exit; TESTDOCK_KEEP=on-failure keeps it)",
                self.name,
                self.url,
                c.name()
            );
        }
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

    /// `t_<fn name, 30 bytes at most>_<8 hex digits>_<n>`: the hash covers
    /// the test's full path (or the call site), the counter makes it unique.
    pub(super) fn database_name(&self, n: u64) -> String {
        let key = match &self.test {
            Some(t) => format!("{}|{t}", self.location.file()),
            None => format!("{}:{}", self.location.file(), self.location.line()),
        };
        let slug: String = self
            .test
            .as_deref()
            .and_then(|t| t.rsplit("::").next())
            .unwrap_or("db")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(30)
            .collect();
        let hash = Sha256::digest(key.as_bytes());
        format!("t_{slug}_{}_{n}", crate::util::hex(&hash[..4]))
    }
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

    #[test]
    fn database_names_are_readable_unique_and_short() {
        let a = origin(Some("tests::creates_user"));
        let n1 = a.database_name(1);
        let n2 = a.database_name(2);
        assert!(
            n1.starts_with("t_creates_user_") && n1.ends_with("_1"),
            "{n1}"
        );
        assert_ne!(n1, n2);
        let other = origin(Some("other::creates_user")).database_name(1);
        assert_ne!(n1, other, "same fn name, other module");
        let long = origin(Some(
            "m::a_very_long_test_name_that_goes_on_and_on_and_on_forever",
        ));
        assert!(long.database_name(u64::MAX).len() <= 63);
        assert!(origin(None).database_name(7).starts_with("t_db_"));
        let weird = origin(Some("Üñí::Cödé-Test")).database_name(1);
        assert!(
            weird
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{weird}"
        );
    }
}
