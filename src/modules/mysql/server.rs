//! `MysqlServer`: a running server, its templates, the copies prefetched
//! from them, and the client sessions that make and drop databases.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use super::copy::Recipe;
use super::session::{self, Session};
use super::{ident, lit, Migrations, Origin, TestDatabase, ADMIN_TIMEOUT, MAX_NAME, SQL_DIR};
use crate::engine::on_engine;
use crate::migrations::{Script, Step, TemplateDb};
use crate::{Error, Result, TestContainer};

/// How long a process waits for another to make a template it needs.
const TEMPLATE_WAIT: Duration = Duration::from_secs(600);

/// A running MariaDB (or MySQL) server; removed when the guard and every
/// [`TestDatabase`] made from it are gone, or by
/// [`teardown`](MysqlServer::teardown).
#[derive(Debug)]
pub struct MysqlServer {
    pub(super) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) container: TestContainer,
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) version: String,
    /// `mariadb` or `mysql`: the client in the image.
    pub(super) client: String,
    pub(super) user: String,
    pub(super) password: String,
    pub(super) root_password: String,
    pub(super) migrations: Migrations,
    pub(super) prefetch: usize,
    /// Template name → made and recorded once, however many ask at once.
    pub(super) templates: Mutex<HashMap<String, Arc<OnceCell<Arc<Template>>>>>,
    /// The session that copies for a waiting test and drops databases.
    pub(super) session: tokio::sync::Mutex<Option<Session>>,
    /// The session that prefetches, so a test never queues behind it.
    pub(super) background: tokio::sync::Mutex<Option<Session>>,
    /// The session that drops passing tests' databases, off the path of
    /// the next copy.
    pub(super) dropper: tokio::sync::Mutex<Option<Session>>,
    /// Makes database names unique within the process.
    pub(super) next: AtomicU64,
    /// Whether the container was marked kept for a failing test.
    pub(super) kept: AtomicBool,
}

/// A made template: how to copy it, and the copies ready to be taken.
#[derive(Debug)]
pub(super) struct Template {
    pub(super) name: String,
    recipe: Recipe,
    pool: Mutex<Pool>,
}

#[derive(Debug, Default)]
struct Pool {
    ready: VecDeque<String>,
    making: usize,
    taken: u64,
}

impl MysqlServer {
    /// The container, for logs or exec.
    pub fn container(&self) -> &TestContainer {
        &self.inner.container
    }

    /// Where the server is reached from this process, usually `127.0.0.1`.
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// The published port.
    pub fn port(&self) -> u16 {
        self.inner.port
    }

    /// The user the URLs carry.
    pub fn user(&self) -> &str {
        &self.inner.user
    }

    /// Its password.
    pub fn password(&self) -> &str {
        &self.inner.password
    }

    /// `VERSION()`, e.g. `10.11.6-MariaDB`.
    pub fn version(&self) -> &str {
        &self.inner.version
    }

    /// `mysql://user:password@host:port/database`.
    pub fn url(&self, database: &str) -> String {
        self.inner.url(database)
    }

    /// Runs SQL as root through testdock's client session and returns the
    /// rows it printed: one a line, columns separated by tabs, no headers.
    ///
    /// # Errors
    ///
    /// [`Error::ExecFailed`] with the client's message when the SQL fails.
    pub async fn sql(&self, sql: impl Into<String>) -> Result<String> {
        let (inner, sql) = (self.inner.clone(), sql.into());
        on_engine(async move { inner.sql(&sql).await }).await
    }

    /// The names of the databases (schemas) but the server's own and
    /// testdock's templates, sorted.
    ///
    /// # Errors
    ///
    /// [`Error::ExecFailed`] if the server cannot be queried.
    pub async fn databases(&self) -> Result<Vec<String>> {
        let out = self
            .sql(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME NOT IN \
                 ('mysql', 'information_schema', 'performance_schema', 'sys', 'testdock') \
                 AND SCHEMA_NAME NOT LIKE 'tmpl\\_%' ORDER BY 1",
            )
            .await?;
        Ok(out.lines().map(str::to_string).collect())
    }

    /// Makes the template of the server's migrations, once per server, and
    /// returns its name, `tmpl_<hash>`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when a script cannot be read; [`Error::Migration`]
    /// naming the file and line when a script fails; [`Error::Template`]
    /// when the template code fails (the half-made template is dropped, so
    /// the next call tries again).
    pub async fn template(&self) -> Result<String> {
        let inner = self.inner.clone();
        on_engine(async move { Ok(inner.template().await?.name.clone()) }).await
    }

    /// A new database copied from the template, named after the calling
    /// test (or one prefetched). See [`TestDatabase`].
    ///
    /// # Errors
    ///
    /// As [`template`](MysqlServer::template), and [`Error::ExecFailed`] if
    /// the copy fails.
    #[track_caller]
    pub fn fresh_database(&self) -> impl Future<Output = Result<TestDatabase>> + Send + 'static {
        let (inner, origin) = (self.inner.clone(), Origin::here());
        on_engine(async move { Inner::fresh(inner, origin).await })
    }

    /// Drops a database; one that does not exist is not an error.
    ///
    /// # Errors
    ///
    /// [`Error::ExecFailed`] if the server refuses.
    pub async fn drop_database(&self, name: &str) -> Result<()> {
        let (inner, name) = (self.inner.clone(), name.to_string());
        on_engine(async move { inner.drop_database(&name).await }).await
    }

    /// Removes the server and waits until it is gone. Databases still held
    /// by [`TestDatabase`] guards go with it; their guards then do nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Docker`] if the engine refuses.
    pub async fn teardown(self) -> Result<()> {
        crate::modules::fixture::teardown(self.inner, |i| i.container, |i| &i.container).await
    }
}

impl Inner {
    pub(super) fn url(&self, database: &str) -> String {
        crate::modules::fixture::database_url(
            "mysql",
            &self.user,
            &self.password,
            &self.host,
            self.port,
            database,
        )
    }

    pub(super) async fn fresh(this: Arc<Inner>, origin: Origin) -> Result<TestDatabase> {
        let template = this.template().await?;
        let (ready, taken) = {
            let mut pool = template.pool.lock().unwrap_or_else(|e| e.into_inner());
            pool.taken += 1;
            (pool.ready.pop_front(), pool.taken)
        };
        // A process that takes one database (nextest runs a process per
        // test) never prefetches: the copies would be wasted.
        if taken >= 2 {
            Inner::refill(&this, &template);
        }
        let t0 = Instant::now();
        let name = match ready {
            Some(name) => name,
            None => {
                let n = this.next.fetch_add(1, Ordering::Relaxed);
                let name = origin.database_name_within(MAX_NAME, n);
                this.copy(&this.session, &template, &name).await?;
                name
            }
        };
        tracing::debug!(
            database = %name,
            template = %template.name,
            server = this.container.name(),
            elapsed_ms = crate::trace::ms(t0),
            "database ready"
        );
        Ok(TestDatabase {
            url: this.url(&name),
            name,
            template: template.name.clone(),
            server: this,
            armed: true,
        })
    }

    /// Starts background copies until `prefetch` are ready or being made.
    fn refill(this: &Arc<Inner>, template: &Arc<Template>) {
        let mut pool = template.pool.lock().unwrap_or_else(|e| e.into_inner());
        while pool.ready.len() + pool.making < this.prefetch {
            pool.making += 1;
            let (this, template) = (this.clone(), template.clone());
            crate::engine::spawn_detached(async move {
                let n = this.next.fetch_add(1, Ordering::Relaxed);
                let name = super::super::naming::process_name(
                    &format!("t_ready_{}", &template.name["tmpl_".len()..]),
                    n,
                );
                let made = this.copy(&this.background, &template, &name).await;
                let mut pool = template.pool.lock().unwrap_or_else(|e| e.into_inner());
                pool.making -= 1;
                match made {
                    Ok(()) => pool.ready.push_back(name),
                    Err(e) => tracing::warn!(error = %e, "could not prefetch a database"),
                }
            });
        }
    }

    /// Copies `template` into a new database `name` in one round trip on
    /// `session`; a failed copy leaves nothing.
    async fn copy(
        &self,
        session: &tokio::sync::Mutex<Option<Session>>,
        template: &Template,
        name: &str,
    ) -> Result<()> {
        let script = template.recipe.script(&template.name, name);
        match self.sql_on(session, &script).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let _ = self.drop_database(name).await;
                Err(e)
            }
        }
    }

    pub(super) async fn template(&self) -> Result<Arc<Template>> {
        let steps = self.migrations.load_off_runtime().await?;
        let name = crate::migrations::template_name(&steps);
        let cell = self
            .templates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.clone())
            .or_default()
            .clone();
        cell.get_or_try_init(|| async {
            self.template_once(&name, &steps).await?;
            let recipe = Recipe::record(self, &name).await?;
            Ok(Arc::new(Template {
                name: name.clone(),
                recipe,
                pool: Mutex::default(),
            }))
        })
        .await
        .cloned()
    }

    /// Makes the template unless it is made already: once per server, even
    /// when many processes of a run share the server. The builder holds
    /// `GET_LOCK` named after the template on a session of its own, so the
    /// others wait for it and then find the template listed as made in
    /// `testdock.templates`; the lock goes with the builder's connection, so
    /// a builder that dies frees the others, and the next one drops the
    /// half-made template and makes it again.
    async fn template_once(&self, name: &str, steps: &[Step]) -> Result<()> {
        let lock = tokio::sync::Mutex::new(Some(
            Session::open(&self.container, &self.client, &self.root_password).await?,
        ));
        let deadline = Instant::now() + TEMPLATE_WAIT;
        let get = format!("SELECT GET_LOCK({}, 5)", lit(&format!("testdock:{name}")));
        while self.sql_on(&lock, &get).await?.trim() != "1" {
            if Instant::now() >= deadline {
                return Err(self.sql_failed(
                    &get,
                    format!(
                        "another process has been making template {name} for {TEMPLATE_WAIT:?}"
                    ),
                ));
            }
        }
        let made = self
            .sql_on(
                &lock,
                &format!(
                    "SELECT COUNT(*) FROM testdock.templates WHERE name = {}",
                    lit(name)
                ),
            )
            .await?;
        if made.trim() == "1" {
            return Ok(());
        }
        let t0 = Instant::now();
        let db = ident(name);
        self.sql_on(
            &lock,
            &format!("DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db}"),
        )
        .await?;
        if let Err(e) = self.apply(name, steps).await {
            let _ = self
                .sql_on(&lock, &format!("DROP DATABASE IF EXISTS {db}"))
                .await;
            return Err(e);
        }
        self.sql_on(
            &lock,
            &format!(
                "INSERT INTO testdock.templates (name) VALUES ({})",
                lit(name)
            ),
        )
        .await?;
        tracing::info!(
            template = name,
            steps = steps.len(),
            server = self.container.name(),
            elapsed_ms = crate::trace::ms(t0),
            "template built"
        );
        // The lock goes with the session's connection.
        Ok(())
    }

    /// Applies the steps in order: each run of SQL scripts in one client
    /// run, the user's code against the template's URL.
    async fn apply(&self, name: &str, steps: &[Step]) -> Result<()> {
        let mut done = 0;
        for group in steps.chunk_by(|a, b| matches!((a, b), (Step::Sql(_), Step::Sql(_)))) {
            if let [Step::Code(code, _)] = group {
                code.run(TemplateDb {
                    url: self.url(name),
                    name: name.to_string(),
                    host: self.host.clone(),
                    port: self.port,
                })
                .await?;
            } else {
                let scripts: Vec<&Script> = group
                    .iter()
                    .filter_map(|s| match s {
                        Step::Sql(s) => Some(s),
                        Step::Code(..) => None,
                    })
                    .collect();
                self.migrate(name, &scripts, done).await?;
            }
            done += group.len();
        }
        Ok(())
    }

    /// Applies the scripts in one client run, each `source`d from a file so
    /// the client names it and the line in an error, stopping at the first
    /// error. `done` steps came before.
    async fn migrate(&self, name: &str, scripts: &[&Script], done: usize) -> Result<()> {
        let mut files = Vec::new();
        for (i, s) in scripts.iter().enumerate() {
            let n = done + i + 1;
            let path = format!("{SQL_DIR}/{name}/{n:03}_{}", safe_file_name(&s.name));
            self.container
                .copy_bytes_in(s.text.clone().into_bytes(), path.clone())
                .await?;
            files.push(path);
        }
        let input: String = files.iter().map(|f| format!("source {f}\n")).collect();
        let db = format!("--database={name}");
        let mut cmd = session::client_command(&self.client, &[&db]);
        cmd.retain(|a| a != "--force");
        if self.client == "mariadb" {
            // Else a failed file is reported and the next one still runs.
            cmd.push("--abort-source-on-error".into());
        }
        let out = self
            .container
            .exec(cmd)
            .env("MYSQL_PWD", &self.root_password)
            .stdin(input)
            .timeout(TEMPLATE_WAIT)
            .await?;
        if out.is_success() {
            return Ok(());
        }
        let stderr = out.stderr_text();
        match parse_failure(&stderr) {
            Some((file, line, message)) => {
                let script = files
                    .iter()
                    .position(|f| *f == file)
                    .map_or(file.clone(), |i| scripts[i].name.clone());
                Err(Error::Migration {
                    file: script,
                    line,
                    message,
                })
            }
            None => out.success().map(drop),
        }
    }

    pub(super) async fn drop_database(&self, name: &str) -> Result<()> {
        let t0 = Instant::now();
        let dropped = self
            .sql_on(
                &self.dropper,
                &format!("DROP DATABASE IF EXISTS {}", ident(name)),
            )
            .await;
        match dropped {
            // The server is being removed, and the database with it: the
            // client could not start in the stopping container.
            Err(Error::ExecFailed { stderr_tail, .. })
                if stderr_tail.contains("stopped container")
                    || stderr_tail.contains("is not running") =>
            {
                return Ok(())
            }
            other => other?,
        };
        tracing::debug!(
            database = name,
            server = self.container.name(),
            elapsed_ms = crate::trace::ms(t0),
            "database dropped"
        );
        Ok(())
    }

    /// Runs SQL through the main session and returns its rows.
    pub(super) async fn sql(&self, sql: &str) -> Result<String> {
        self.sql_on(&self.session, sql).await
    }

    /// Runs SQL through `session` (opened again if the client ended) and
    /// returns its rows.
    pub(super) async fn sql_on(
        &self,
        session: &tokio::sync::Mutex<Option<Session>>,
        sql: &str,
    ) -> Result<String> {
        let mut session = session.lock().await;
        let s = match &mut *session {
            Some(s) => s,
            None => session
                .insert(Session::open(&self.container, &self.client, &self.root_password).await?),
        };
        match s.run(sql, ADMIN_TIMEOUT).await {
            Ok(rows) => Ok(rows),
            Err(session::Failure::Sql(message)) => Err(self.sql_failed(sql, message)),
            Err(session::Failure::Ended(why)) => {
                *session = None;
                Err(self.sql_failed(sql, why))
            }
        }
    }

    /// A statement's failure, worded as `mariadb -e` would have ended.
    fn sql_failed(&self, sql: &str, message: String) -> Error {
        Error::ExecFailed {
            container: self.container.name().to_string(),
            image: self.container.image().to_string(),
            command: crate::util::shell_join(&[self.client.clone(), "-e".into(), sql.into()]),
            exit_code: 1,
            stderr_tail: message,
        }
    }
}

/// A script's file name, for a path in the container.
fn safe_file_name(name: &str) -> String {
    let base = Path::new(name)
        .file_name()
        .map_or_else(|| name.to_string(), |n| n.to_string_lossy().into_owned());
    base.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The first error the client reported for a sourced file:
/// `ERROR 1064 (42000) at line 3 in file: '/path': message`.
fn parse_failure(stderr: &str) -> Option<(String, u32, String)> {
    stderr.lines().find_map(|l| {
        let rest = l.strip_prefix("ERROR ")?;
        let (_, rest) = rest.split_once(" at line ")?;
        let (line, rest) = rest.split_once(" in file: '")?;
        let (file, message) = rest.split_once("': ")?;
        Some((
            file.to_string(),
            line.parse().ok()?,
            l.split_once(" at line ")?.0.to_string() + ": " + message,
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_name_file_and_line() {
        let stderr =
            "ERROR 1064 (42000) at line 3 in file: '/tmp/testdock-sql/tmpl_x/002_bad.sql': \
                      You have an error in your SQL syntax near 'SELEC 1' at line 1\n";
        let (file, line, message) = parse_failure(stderr).unwrap();
        assert_eq!(file, "/tmp/testdock-sql/tmpl_x/002_bad.sql");
        assert_eq!(line, 3);
        assert_eq!(
            message,
            "ERROR 1064 (42000): You have an error in your SQL syntax near 'SELEC 1' at line 1"
        );
        assert_eq!(parse_failure("ERROR 2002 (HY000): Can't connect\n"), None);
    }
}
