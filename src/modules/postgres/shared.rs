//! `SharedPostgres`: one server per test run, a database per test.

use std::future::Future;

use tokio::sync::OnceCell;

use super::{Inner, Origin, Postgres, PostgresServer, TestDatabase};
use crate::engine::on_engine;
use crate::Result;

/// One PostgreSQL server per test run, started on first use and shared by
/// every test of every process of the run (`cargo nextest run`, or all the
/// test binaries of one `cargo test`); each test takes its own database
/// from it, and each template is made once for the run.
///
/// Put it in a `static`. It is removed when the run ends, however it ends;
/// with no runner (or `TESTDOCK_SHARE=process`) it is the process's and
/// goes at its exit. See [`SharedContainer`](crate::SharedContainer) and
/// the README's "Sharing".
///
/// If the start fails, that caller gets the error and the next caller tries
/// again.
///
/// # Examples
///
/// ```no_run
/// use testdock::postgres::{Postgres, SharedPostgres};
///
/// static PG: SharedPostgres = SharedPostgres::new(|| Postgres::new().migrations_dir("fixtures/sql"));
///
/// # async fn a_test() -> testdock::Result<()> {
/// let db = PG.fresh_database().await?;
/// let url = db.url(); // hand it to your client
/// # let _ = url; Ok(()) }
/// ```
#[derive(Debug)]
pub struct SharedPostgres {
    config: fn() -> Postgres,
    cell: OnceCell<PostgresServer>,
}

impl SharedPostgres {
    /// A shared server configured by `config` on first use.
    pub const fn new(config: fn() -> Postgres) -> Self {
        SharedPostgres {
            config,
            cell: OnceCell::const_new(),
        }
    }

    /// The server, started by the first caller; concurrent first callers
    /// wait for that one start.
    ///
    /// # Errors
    ///
    /// As [`Postgres::start`].
    pub async fn server(&self) -> Result<&PostgresServer> {
        self.cell
            .get_or_try_init(|| (self.config)().start_as(true))
            .await
    }

    /// A new database for the calling test, cloned from the template of
    /// the migrations. See [`TestDatabase`].
    ///
    /// # Errors
    ///
    /// As [`Postgres::start`] and [`PostgresServer::fresh_database`].
    #[track_caller]
    pub fn fresh_database(&self) -> impl Future<Output = Result<TestDatabase>> + Send + '_ {
        let origin = Origin::here();
        async move {
            let inner = self.server().await?.inner.clone();
            on_engine(async move {
                let m = inner.migrations.clone();
                Inner::fresh(inner, &m, origin).await
            })
            .await
        }
    }
}
