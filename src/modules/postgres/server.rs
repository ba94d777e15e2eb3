//! `PostgresServer`: a running server, its templates and the session that
//! creates and drops databases.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OnceCell, Semaphore};

use super::migrations::parse_failure;
use super::session::{self, Session};
use super::{ident, Migrations, Origin, TestDatabase, ADMIN_TIMEOUT, CONNECTION_WAIT, SQL_DIR};
use crate::engine::{client, on_engine};
use crate::migrations::{self, Script, Step};
use crate::TemplateDb;
use crate::{Error, ExecOutput, Result, TestContainer};

/// How long a process waits for another to make a template it needs.
const TEMPLATE_WAIT: Duration = Duration::from_secs(600);

/// A running PostgreSQL server; removed when the guard and every
/// [`TestDatabase`] made from it are gone, or by
/// [`teardown`](PostgresServer::teardown).
#[derive(Debug)]
pub struct PostgresServer {
    pub(super) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) container: TestContainer,
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) version: u32,
    pub(super) user: String,
    pub(super) password: String,
    pub(super) admin_db: String,
    pub(super) migrations: Migrations,
    /// Template name → built once, however many tests ask at once.
    pub(super) templates: Mutex<HashMap<String, Arc<OnceCell<()>>>>,
    /// Migrations read so far, their files' fingerprint and their
    /// template's name: files unchanged since are not read again.
    pub(super) read: Mutex<Vec<(Migrations, u64, String)>>,
    /// The psql session that makes templates and clones and drops
    /// databases, opened on first use and again if psql ends.
    pub(super) session: tokio::sync::Mutex<Option<Session>>,
    /// Sessions that only hand out ready clones, so a test taking one
    /// never waits behind a clone being made.
    pub(super) claimers: [tokio::sync::Mutex<Option<Session>>; 2],
    /// How many of the claimers may be opened: with the background
    /// session, testdock keeps to a tenth of `max_connections`.
    pub(super) claim_sessions: usize,
    /// Takes of ready clones, sent to the server in batches.
    pub(super) claims: super::prefetch::Claims,
    /// Ready clones kept per template ([`Postgres::prefetch`](super::Postgres::prefetch)).
    pub(super) pools: Mutex<HashMap<String, Arc<super::prefetch::Pool>>>,
    /// How many ready clones a template may have at most; 0: none.
    pub(super) prefetch: usize,
    /// Bounds testdock's other sessions (one-shot psql runs), so they never
    /// take the connections the tests need.
    pub(super) admin: Semaphore,
    /// Makes database names unique within the server.
    pub(super) next: AtomicU64,
    /// Whether the container was marked kept for a failing test.
    pub(super) kept: AtomicBool,
}

impl PostgresServer {
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

    /// The superuser's name.
    pub fn user(&self) -> &str {
        &self.inner.user
    }

    /// The superuser's password.
    pub fn password(&self) -> &str {
        &self.inner.password
    }

    /// The database testdock connects to to create and drop the others
    /// ([`Postgres::database`](super::Postgres::database); default
    /// `postgres`).
    pub fn admin_database(&self) -> &str {
        &self.inner.admin_db
    }

    /// `server_version_num`, e.g. `150005`.
    pub fn version(&self) -> u32 {
        self.inner.version
    }

    /// `postgres://user:password@host:port/database`.
    pub fn url(&self, database: &str) -> String {
        self.inner.url(database)
    }

    /// Runs SQL in `database` with `psql` in the container (fed on stdin,
    /// stopping at the first error) and returns what it printed: rows one a
    /// line, columns separated by `|`, no headers.
    ///
    /// # Errors
    ///
    /// [`Error::ExecFailed`] with psql's message when the SQL fails.
    pub async fn psql(&self, database: &str, sql: impl Into<String>) -> Result<String> {
        let (inner, db, sql) = (self.inner.clone(), database.to_string(), sql.into());
        on_engine(async move {
            let out = inner.psql(&db, Vec::new(), Some(sql)).await?;
            Ok(out.stdout_text().into_owned())
        })
        .await
    }

    /// The names of the databases that are not templates, sorted; ready
    /// clones kept by [`prefetch`](super::Postgres::prefetch) are not listed
    /// (those of other processes sharing the server, `t_ready_…`, are).
    ///
    /// # Errors
    ///
    /// [`Error::ExecFailed`] if the server cannot be queried.
    pub async fn databases(&self) -> Result<Vec<String>> {
        let inner = self.inner.clone();
        let sql = "SELECT datname FROM pg_database \
                   WHERE NOT datistemplate AND datname NOT LIKE 'tdp\\_%' ORDER BY 1";
        let (out, own) =
            on_engine(async move { Ok((inner.sql(sql).await?, inner.own_ready())) }).await?;
        Ok(out
            .lines()
            .filter(|n| !own.iter().any(|o| o == n))
            .map(str::to_string)
            .collect())
    }

    /// Makes the template of the server's migrations, once, and returns its
    /// name.
    ///
    /// # Errors
    ///
    /// As [`template_for`](PostgresServer::template_for).
    pub async fn template(&self) -> Result<String> {
        let inner = self.inner.clone();
        on_engine(async move { inner.template(&inner.migrations).await }).await
    }

    /// Makes the template of `migrations`, once per server, and returns its
    /// name, `tmpl_<hash>`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when a script cannot be read; [`Error::Migration`]
    /// naming the file and line when a script fails (the half-made template
    /// is dropped, so the next call tries again).
    pub async fn template_for(&self, migrations: &Migrations) -> Result<String> {
        let (inner, m) = (self.inner.clone(), migrations.clone());
        on_engine(async move { inner.template(&m).await }).await
    }

    /// A new database cloned from the template of the server's migrations,
    /// named after the calling test (or a ready clone of the process's own,
    /// as it is named). See [`TestDatabase`].
    ///
    /// # Errors
    ///
    /// As [`template_for`](PostgresServer::template_for), and
    /// [`Error::ExecFailed`] if `CREATE DATABASE` fails.
    #[track_caller]
    pub fn fresh_database(&self) -> impl Future<Output = Result<TestDatabase>> + Send + 'static {
        let (inner, origin) = (self.inner.clone(), Origin::here());
        on_engine(async move {
            let m = inner.migrations.clone();
            Inner::fresh(inner, &m, origin).await
        })
    }

    /// As [`fresh_database`](PostgresServer::fresh_database), cloned from
    /// the template of other migrations.
    ///
    /// # Errors
    ///
    /// As [`fresh_database`](PostgresServer::fresh_database).
    #[track_caller]
    pub fn fresh_database_from(
        &self,
        migrations: &Migrations,
    ) -> impl Future<Output = Result<TestDatabase>> + Send + 'static {
        let (inner, m, origin) = (self.inner.clone(), migrations.clone(), Origin::here());
        on_engine(async move { Inner::fresh(inner, &m, origin).await })
    }

    /// Drops a database, closing its sessions (`WITH (FORCE)`); one that
    /// does not exist is not an error.
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
        super::fixture::teardown(self.inner, |i| i.container, |i| &i.container).await
    }
}

impl Inner {
    pub(super) fn url(&self, database: &str) -> String {
        crate::modules::fixture::database_url(
            "postgres",
            &self.user,
            &self.password,
            &self.host,
            self.port,
            database,
        )
    }

    /// Runs psql once as the superuser over the container's Unix socket
    /// (trusted locally in the official image and in testdock's), with
    /// `args` and `stdin`, stopping at the first error. A full server ("too
    /// many clients") is waited out.
    async fn psql(&self, db: &str, args: Vec<String>, stdin: Option<String>) -> Result<ExecOutput> {
        self.psql_raw(db, args, stdin).await?.success()
    }

    /// As `psql`, a failure as data.
    async fn psql_raw(
        &self,
        db: &str,
        args: Vec<String>,
        stdin: Option<String>,
    ) -> Result<ExecOutput> {
        let mut cmd: Vec<String> = [
            "psql",
            "-X",
            "-w",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
        ]
        .map(String::from)
        .into();
        cmd.extend(["-U".into(), self.user.clone(), "-d".into(), db.into()]);
        cmd.extend(args);
        let deadline = Instant::now() + CONNECTION_WAIT;
        loop {
            let out = {
                let _permit = self
                    .admin
                    .acquire()
                    .await
                    .expect("the semaphore is never closed");
                let mut exec = self.container.exec(cmd.clone());
                if let Some(sql) = &stdin {
                    exec = exec.stdin(sql.clone());
                }
                exec.await?
            };
            let stderr = out.stderr_text();
            let full = stderr.contains("too many clients")
                || stderr.contains("remaining connection slots are reserved");
            if out.is_success() || !full || Instant::now() >= deadline {
                return Ok(out);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(super) async fn fresh(
        this: Arc<Inner>,
        migrations: &Migrations,
        origin: Origin,
    ) -> Result<TestDatabase> {
        let template = this.template(migrations).await?;
        let n = this.next.fetch_add(1, Ordering::Relaxed);
        let name = origin.database_name(n);
        let t0 = Instant::now();
        let (name, claimed) = this.take(&template, &name).await?;
        tracing::debug!(
            database = %name,
            template = %template,
            server = this.container.name(),
            prefetched = claimed,
            elapsed_ms = crate::trace::ms(t0),
            "database cloned"
        );
        Ok(TestDatabase {
            url: this.url(&name),
            name,
            template,
            server: this,
            armed: true,
        })
    }

    async fn template(&self, migrations: &Migrations) -> Result<String> {
        let made = |name: &str| {
            let cell = self.templates.lock().unwrap_or_else(|e| e.into_inner());
            cell.get(name).is_some_and(|c| c.initialized())
        };
        // The hot path: a template made already, from files unchanged
        // since they were read (a few `stat` calls, no reads).
        let fingerprint = migrations.fingerprint();
        let known = fingerprint.and_then(|fp| {
            let seen = self.read.lock().unwrap_or_else(|e| e.into_inner());
            let hit = seen.iter().find(|(m, f, _)| *f == fp && m == migrations);
            hit.map(|(_, _, n)| n.clone())
        });
        if let Some(name) = known.filter(|n| made(n)) {
            return Ok(name);
        }
        let steps = migrations.load_off_runtime().await?;
        let name = migrations::template_name(&steps);
        let cell = self
            .templates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.clone())
            .or_default()
            .clone();
        cell.get_or_try_init(|| self.template_once(&name, &steps))
            .await?;
        if let Some(fp) = fingerprint {
            let mut seen = self.read.lock().unwrap_or_else(|e| e.into_inner());
            // One entry per migrations: the files as last seen.
            seen.retain(|(m, _, _)| m != migrations);
            seen.push((migrations.clone(), fp, name.clone()));
        }
        Ok(name)
    }

    /// Makes the template unless it is made already: once per server, even
    /// when many processes of a run share the server. The builder holds a
    /// PostgreSQL advisory lock named after the template, so the others
    /// wait for it and then find the template made; the lock goes with the
    /// builder's session, so a builder that dies frees the others, and the
    /// next one drops the half-made template and builds it again.
    async fn template_once(&self, name: &str, steps: &[Step]) -> Result<()> {
        // Made already (another process of the run made it): no lock to
        // take. A template is sealed last, so "is a template" means whole.
        let made = format!(
            "SELECT datistemplate FROM pg_database WHERE datname = '{}'",
            name.replace('\'', "''")
        );
        if self.sql(&made).await?.trim() == "t" {
            return Ok(());
        }
        let key = advisory_key(name);
        let deadline = Instant::now() + TEMPLATE_WAIT;
        while self
            .sql(&format!("SELECT pg_try_advisory_lock({key})"))
            .await?
            .trim()
            != "t"
        {
            if Instant::now() >= deadline {
                return Err(self.sql_failed(
                    &format!("SELECT pg_advisory_lock({key})"),
                    format!(
                        "another process has been making template {name} for {TEMPLATE_WAIT:?}"
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let state = self
            .sql(&format!(
                "SELECT datistemplate FROM pg_database WHERE datname = '{}'",
                name.replace('\'', "''")
            ))
            .await;
        let made = match state.as_deref().map(str::trim) {
            Ok("t") => Ok(()),
            Ok("") => self.build_template(name, steps).await,
            // Half made by a builder that died.
            Ok(_) => match self.drop_database(name).await {
                Ok(()) => self.build_template(name, steps).await,
                Err(e) => Err(e),
            },
            Err(_) => state.map(drop),
        };
        let _ = self.sql(&format!("SELECT pg_advisory_unlock({key})")).await;
        made
    }

    /// Creates the template and applies the steps in order: each run of
    /// SQL scripts in one psql session, each script from a file so psql
    /// names it and the line in an error; each code step with the
    /// template's URL. Then it becomes a template no one can connect to.
    async fn build_template(&self, name: &str, steps: &[Step]) -> Result<()> {
        let t0 = Instant::now();
        let strategy = if self.version >= 150_000 {
            " STRATEGY FILE_COPY"
        } else {
            ""
        };
        self.sql(&format!("CREATE DATABASE {}{strategy}", ident(name)))
            .await?;
        let made = self.apply(name, steps).await;
        let made = match made {
            Ok(()) => self.seal(name).await,
            Err(e) => Err(e),
        };
        match &made {
            Ok(()) => tracing::info!(
                template = name,
                steps = steps.len(),
                server = self.container.name(),
                elapsed_ms = crate::trace::ms(t0),
                "template built"
            ),
            Err(_) => {
                let _ = self.drop_database(name).await;
            }
        }
        made
    }

    async fn apply(&self, name: &str, steps: &[Step]) -> Result<()> {
        let scripts: Vec<&Script> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Sql(s) => Some(s),
                Step::Code(..) => None,
            })
            .collect();
        let files = self.upload(name, &scripts).await?;
        let mut next = 0;
        for group in steps.chunk_by(|a, b| matches!((a, b), (Step::Sql(_), Step::Sql(_)))) {
            if let [Step::Code(code, _)] = group {
                code.run(TemplateDb {
                    url: self.url(name),
                    name: name.to_string(),
                    host: self.host.clone(),
                    port: self.port,
                })
                .await?;
                continue;
            }
            let paths = &files[next..next + group.len()];
            let mut args = Vec::new();
            for f in paths {
                args.extend(["-f".to_string(), f.clone()]);
            }
            let out = self.psql_raw(name, args, None).await?;
            if !out.is_success() {
                let script = parse_failure(&out.stderr_text()).and_then(|f| {
                    let i = files.iter().position(|p| *p == f.file)?;
                    Some((scripts[i], f))
                });
                return match script {
                    Some((script, f)) => Err(self.script_failed(script, f.line, &f.message)),
                    None => out.success().map(drop),
                };
            }
            next += group.len();
        }
        Ok(())
    }

    /// Makes `name` a template: no new sessions, and none left open (a
    /// migrator's pool may still hold some), since a clone fails while
    /// anyone is connected to its template.
    async fn seal(&self, name: &str) -> Result<()> {
        self.sql(&format!(
            "ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false",
            ident(name)
        ))
        .await?;
        self.sql(&format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{}'",
            name.replace('\'', "''")
        ))
        .await
        .map(drop)
    }

    /// What a failed script returns.
    fn script_failed(&self, script: &Script, line: u32, message: &str) -> Error {
        Error::Migration {
            file: script.name.clone(),
            line,
            message: message.into(),
        }
    }

    /// Copies the scripts to `SQL_DIR/<template>/NNN_<file name>` and
    /// returns those paths.
    async fn upload(&self, template: &str, scripts: &[&Script]) -> Result<Vec<String>> {
        if scripts.is_empty() {
            return Ok(Vec::new());
        }
        let dir = format!("{}/{template}", SQL_DIR.trim_start_matches('/'));
        let mut tar = tar::Builder::new(Vec::new());
        let mut paths = Vec::new();
        let io = |e| Error::io("cannot pack migrations for the container", e);
        for d in [SQL_DIR.trim_start_matches('/'), &dir] {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            tar.append_data(&mut h, format!("{d}/"), std::io::empty())
                .map_err(io)?;
        }
        for (i, s) in scripts.iter().enumerate() {
            let base = std::path::Path::new(&s.name)
                .file_name()
                .map_or_else(|| s.name.clone(), |n| n.to_string_lossy().into_owned());
            let safe: String = base
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "._-".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let path = format!("{dir}/{:03}_{safe}", i + 1);
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(s.text.len() as u64);
            tar.append_data(&mut h, &path, s.text.as_bytes())
                .map_err(io)?;
            paths.push(format!("/{path}"));
        }
        let tar = tar.into_inner().map_err(io)?;
        let opts = bollard::query_parameters::UploadToContainerOptionsBuilder::new()
            .path("/")
            .build();
        client()
            .await?
            .upload_to_container(
                self.container.id(),
                Some(opts),
                bollard::body_full(tar.into()),
            )
            .await
            .map_err(|e| {
                Error::docker(format!("copy migrations into {}", self.container.name()), e)
            })?;
        Ok(paths)
    }

    pub(super) async fn drop_database(&self, name: &str) -> Result<()> {
        let t0 = Instant::now();
        let dropped = self.drop_database_now(name).await;
        if dropped.is_ok() {
            tracing::debug!(
                database = name,
                server = self.container.name(),
                elapsed_ms = crate::trace::ms(t0),
                "database dropped"
            );
        }
        dropped
    }

    /// WITH (FORCE), PostgreSQL 13+, ends the sessions a test left open.
    async fn drop_database_now(&self, name: &str) -> Result<()> {
        if self.version >= 130_000 {
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(name));
            return self.sql(&sql).await.map(drop);
        }
        // Before 13, as FORCE does it: no new sessions, end the open ones;
        // DROP then waits (up to 5 s) for them to exit. Not on the admin
        // database: DROP refuses it anyway, and the session lives there.
        let literal = format!("'{}'", name.replace('\'', "''"));
        let db = ident(name);
        let others = self
            .sql(&format!(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = {literal} AND pid <> pg_backend_pid()"
            ))
            .await?;
        if others.trim() != "0" && name != self.admin_db {
            self.sql(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS false"))
                .await?;
            self.sql(&format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = {literal} AND pid <> pg_backend_pid()"
            ))
            .await?;
        }
        self.sql(&format!("DROP DATABASE IF EXISTS {db}"))
            .await
            .map(drop)
    }

    /// Runs one statement through the background session (templates,
    /// clones, drops) and returns its rows.
    pub(super) async fn sql(&self, sql: &str) -> Result<String> {
        self.sql_in(&self.session, sql).await
    }

    /// Runs one statement through `slot`'s session, opening it if need be.
    /// A session that cannot start because the server is full is retried
    /// until a connection frees up.
    pub(super) async fn sql_in(
        &self,
        slot: &tokio::sync::Mutex<Option<Session>>,
        sql: &str,
    ) -> Result<String> {
        let deadline = Instant::now() + CONNECTION_WAIT;
        let mut session = slot.lock().await;
        loop {
            let s = match &mut *session {
                Some(s) => s,
                None => session
                    .insert(Session::open(self.container.id(), &self.user, &self.admin_db).await?),
            };
            let why = match tokio::time::timeout(ADMIN_TIMEOUT, s.run(sql)).await {
                Ok(Ok(rows)) => return Ok(rows),
                Ok(Err(
                    session::Failure::Sql(message) | session::Failure::Unsupported(message),
                )) => return Err(self.sql_failed(sql, message)),
                Ok(Err(session::Failure::Ended(why))) => why,
                Err(_) => format!("no answer within {ADMIN_TIMEOUT:?}"),
            };
            *session = None;
            if Instant::now() >= deadline {
                return Err(self.sql_failed(sql, why));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A statement's failure, worded as `psql -c` would have ended.
    fn sql_failed(&self, sql: &str, message: String) -> Error {
        Error::ExecFailed {
            container: self.container.name().to_string(),
            image: self.container.image().to_string(),
            command: crate::util::shell_join(&["psql".into(), "-c".into(), sql.into()]),
            exit_code: 1,
            stderr_tail: message,
        }
    }
}

/// A PostgreSQL advisory lock's key for `what`: 64 bits of its hash, the
/// same in every process sharing the server.
pub(super) fn advisory_key(what: &str) -> i64 {
    let digest = <sha2::Sha256 as sha2::Digest>::digest(what.as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}
