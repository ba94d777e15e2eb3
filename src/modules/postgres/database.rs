//! `TestDatabase`: one test's database, dropped when the test passes and
//! kept when it fails; and how it is named.

use std::sync::Arc;

use super::Inner;
use crate::engine::on_engine;
use crate::modules::fixture;
use crate::Result;

/// A database of its own for one test, cloned from a template.
///
/// Named `t_<test path>_<hash of it>_<process>_<n>` (63 bytes at most:
/// the path's end, fn name first, is kept), so a printed URL says whose it
/// is — or `t_ready_<template hash>_<process>_<n>` when it was one of the
/// process's own ready clones — and unique across the processes sharing a
/// server. When the guard goes away:
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
