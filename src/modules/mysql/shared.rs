//! `SharedMysql`: one server per test run, a database per test.

use std::future::Future;

use tokio::sync::OnceCell;

use super::{Inner, Mysql, MysqlServer, Origin, TestDatabase};
use crate::engine::on_engine;
use crate::Result;

/// One MariaDB (or MySQL) server per test run, started on first use and shared by
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
/// use testdock::mysql::{Mysql, SharedMysql};
///
/// static MY: SharedMysql = SharedMysql::new(|| Mysql::new().migrations_dir("fixtures/mysql"));
///
/// # async fn a_test() -> testdock::Result<()> {
/// let db = MY.fresh_database().await?;
/// let url = db.url(); // hand it to your client
/// # let _ = url; Ok(()) }
/// ```
#[derive(Debug)]
pub struct SharedMysql {
    config: fn() -> Mysql,
    cell: OnceCell<MysqlServer>,
}

impl SharedMysql {
    /// A shared server configured by `config` on first use.
    pub const fn new(config: fn() -> Mysql) -> Self {
        SharedMysql {
            config,
            cell: OnceCell::const_new(),
        }
    }

    /// The server, started by the first caller; concurrent first callers
    /// wait for that one start.
    ///
    /// # Errors
    ///
    /// As [`Mysql::start`].
    pub async fn server(&self) -> Result<&MysqlServer> {
        self.cell
            .get_or_try_init(|| (self.config)().start_as(true))
            .await
    }

    /// A new database for the calling test, cloned from the template of
    /// the migrations. See [`TestDatabase`].
    ///
    /// # Errors
    ///
    /// As [`Mysql::start`] and [`MysqlServer::fresh_database`].
    #[track_caller]
    pub fn fresh_database(&self) -> impl Future<Output = Result<TestDatabase>> + Send + '_ {
        let origin = Origin::here();
        async move {
            let inner = self.server().await?.inner.clone();
            on_engine(Inner::fresh(inner, origin)).await
        }
    }
}
