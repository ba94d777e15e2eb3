//! Ready clones of each template, made in the background so a test's
//! `fresh_database()` costs no clone; and the clone strategy, chosen by
//! measuring both on the server and template at hand.
//!
//! Two kinds, both bounded by [`Postgres::prefetch`](super::Postgres::prefetch):
//! - **The server's spare**, `tdp_<template hash>_…`: one per template, for
//!   any process sharing the server — the first take of a process (under
//!   nextest, a process's only one). Taking it is an atomic
//!   `ALTER DATABASE … RENAME` to the test's own name (PostgreSQL re-checks
//!   the name once it holds the database's lock, so of two takers of one
//!   clone the second sees "does not exist" and tries the next).
//! - **A process's own**, `t_ready_<template hash>_<process>_<n>`, for a
//!   process that takes more than one database (`cargo test`): as many as
//!   it has taken, up to the bound. Taking one costs no round trip at all —
//!   the test gets the clone under that name. Those left at exit are
//!   renamed back to spares of a server that outlives the process, for the
//!   next test binary of the run.
//!
//! All go with the server.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::OnceCell;

use super::{ident, Inner};
use crate::Result;

/// What a server knows of one template's ready clones, in this process.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    /// Databases this process took from the template.
    takes: AtomicU64,
    /// Whether this process is refilling now.
    refilling: AtomicBool,
    /// How many ready clones of its own the takes so far call for.
    want: AtomicUsize,
    /// ` STRATEGY …` for clones of this template, or nothing before 15.
    strategy: OnceCell<&'static str>,
    /// Names the clones this process makes.
    next: AtomicU64,
    /// This process's own ready clones, handed out without a round trip.
    own: Mutex<Vec<String>>,
    /// The own clone being made now.
    making: Mutex<Option<String>>,
    /// Told when a refill ends, for the exit hook to wait on.
    idle: tokio::sync::Notify,
}

type Sender = tokio::sync::oneshot::Sender<bool>;

/// Takes waiting to go to the server together.
#[derive(Debug, Default)]
pub(crate) struct Claims {
    /// Template, the name asked for, and where to say whether it was taken.
    queue: Mutex<Vec<(String, String, Sender)>>,
    /// Whether a task is sending batches.
    running: AtomicBool,
    /// Ready clones per template, as the last listing showed them.
    known: Mutex<std::collections::HashMap<String, Vec<String>>>,
    /// Set at exit: no more own clones are made.
    closing: AtomicBool,
}

/// The comment on a template that records the measured choice, so every
/// process sharing the server uses it without measuring again.
const CHOICE: &str = "testdock:strategy=";

/// `tdp_<the template's hash>_`: what spares of `template` start with.
fn prefix(template: &str) -> String {
    format!("tdp_{}_", template.trim_start_matches("tmpl_"))
}

/// What a process's own ready clones start with.
const OWN: &str = "t_ready_";

/// The spare a process's own clone becomes again: `t_ready_<rest>` →
/// `tdp_<rest>`, a name no other process uses (it carries the process tag).
fn as_spare(own: &str) -> Option<String> {
    own.strip_prefix(OWN).map(|rest| format!("tdp_{rest}"))
}

/// The servers whose processes' own clones go back at exit.
static GIVE_BACK: Mutex<Vec<std::sync::Weak<Inner>>> = Mutex::new(Vec::new());

impl Inner {
    fn pool(&self, template: &str) -> Arc<Pool> {
        self.pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(template.to_string())
            .or_default()
            .clone()
    }

    /// Makes a database from `template` for a test that would name it
    /// `name`: one of this process's own ready clones when it has one (the
    /// test gets it under its `t_ready_…` name), else the server's spare
    /// renamed to `name`, else a clone made now; then tops the ready clones
    /// up in the background. The database's name, and whether it was ready.
    pub(super) async fn take(
        self: &Arc<Self>,
        template: &str,
        name: &str,
    ) -> Result<(String, bool)> {
        let pool = self.pool(template);
        let takes = pool.takes.fetch_add(1, Ordering::Relaxed) + 1;
        if self.prefetch == 0 {
            let strategy = self.strategy(template, &pool).await?;
            self.copy_template(template, name, strategy).await?;
            return Ok((name.to_string(), false));
        }
        let own = pool.own.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let (name, ready) = match own {
            Some(own) => (own, true),
            None => {
                let claimed = self.claim(template, name).await?;
                if !claimed {
                    // Made now, on a test's session: not queued behind the
                    // refills and drops of the background one.
                    let strategy = self.strategy(template, &pool).await?;
                    let sql = create_sql(template, name, strategy);
                    self.sql_in(self.test_session(), &sql).await?;
                }
                (name.to_string(), claimed)
            }
        };
        // A process that takes a second database will likely take more:
        // it gets its own ready clones, as many as it took, up to the
        // bound. One that takes one (nextest's) leaves one spare.
        pool.want.fetch_max(
            if takes >= 2 {
                (takes as usize).min(self.prefetch)
            } else {
                0
            },
            Ordering::AcqRel,
        );
        let this = self.clone();
        let template = template.to_string();
        tokio::spawn(async move {
            if takes == 2 {
                // Opened now, off any test's path, rather than by the first
                // take that finds the admin session busy; not in a process
                // that takes one database (nextest's, a process a test).
                for slot in &this.claimers[..this.claim_sessions] {
                    let _ = this.sql_in(slot, "SELECT 1").await;
                }
                this.give_back_at_exit();
            }
            this.refill(&template, &pool).await
        });
        Ok((name, ready))
    }

    /// Registers this server so the process's own ready clones become the
    /// server's spares again at exit, when the server outlives the process.
    fn give_back_at_exit(self: &Arc<Self>) {
        let mut servers = GIVE_BACK.lock().unwrap_or_else(|e| e.into_inner());
        if servers
            .iter()
            .any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(self)))
        {
            return;
        }
        let first = servers.is_empty();
        servers.push(Arc::downgrade(self));
        if first {
            crate::reaper::on_exit(|| Box::pin(give_back()));
        }
    }

    /// This process's own ready clones, not databases of any test.
    pub(super) fn own_ready(&self) -> Vec<String> {
        let pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let mut names = Vec::new();
        for pool in pools.values() {
            // `making` first: a clone moves from it to `own` under its lock.
            let making = pool.making.lock().unwrap_or_else(|e| e.into_inner());
            names.extend(making.clone());
            names.extend(pool.own.lock().unwrap_or_else(|e| e.into_inner()).clone());
        }
        names
    }

    /// `CREATE DATABASE name TEMPLATE template`.
    async fn copy_template(&self, template: &str, name: &str, strategy: &str) -> Result<()> {
        self.sql(&create_sql(template, name, strategy))
            .await
            .map(drop)
    }

    /// The session for a statement a test waits on: the background
    /// session when it is idle (opening another costs an exec: most of a
    /// test process's first take under nextest); else a free claim
    /// session, else the first; the background session again where the
    /// server has too few connections to spare one.
    fn test_session(&self) -> &tokio::sync::Mutex<Option<super::Session>> {
        let slots = &self.claimers[..self.claim_sessions];
        Some(&self.session)
            .filter(|s| s.try_lock().is_ok())
            .or_else(|| slots.iter().find(|s| s.try_lock().is_ok()))
            .or(slots.first())
            .unwrap_or(&self.session)
    }

    /// Renames a ready clone of `template` to `name`; false when none is
    /// ready. Takes asked for while one is in flight go together as the
    /// next batch: one statement, one round trip, however many tests start
    /// at once.
    async fn claim(self: &Arc<Self>, template: &str, name: &str) -> Result<bool> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.claims
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((template.to_string(), name.to_string(), tx));
        if !self.claims.running.swap(true, Ordering::AcqRel) {
            let this = self.clone();
            // Its own task: a taker that gives up must not strand the others.
            tokio::spawn(async move { this.drain_claims().await });
        }
        Ok(rx.await.unwrap_or(false))
    }

    async fn drain_claims(&self) {
        loop {
            let batch =
                std::mem::take(&mut *self.claims.queue.lock().unwrap_or_else(|e| e.into_inner()));
            if batch.is_empty() {
                self.claims.running.store(false, Ordering::Release);
                // One pushed after the take and before the store has no
                // drainer unless this one goes on.
                let pending = !self
                    .claims
                    .queue
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_empty();
                if !pending || self.claims.running.swap(true, Ordering::AcqRel) {
                    return;
                }
                continue;
            }
            let taken = self.claim_batch(&batch).await;
            for (_, name, tx) in batch {
                let _ = tx.send(taken.contains(&name));
            }
        }
    }

    /// Renames a ready clone to each name asked for, in one round trip:
    /// plain `ALTER DATABASE … RENAME` statements for ready clones known
    /// from the last listing (a `DO` block would cost milliseconds of
    /// PL/pgSQL compiling each time), then a listing of which names now
    /// exist and which clones are still ready. PostgreSQL re-checks a name
    /// once it holds the database's lock, so of two takers of one clone the
    /// second sees "does not exist". Names not served, when the listing
    /// shows clones not tried, get one more round.
    async fn claim_batch(&self, batch: &[(String, String, Sender)]) -> Vec<String> {
        let mut taken = Vec::new();
        let mut tried: Vec<String> = Vec::new();
        for round in 0..2 {
            let mut sql = String::new();
            let mut wanted = Vec::new();
            {
                let mut known = self.claims.known.lock().unwrap_or_else(|e| e.into_inner());
                for (template, name, _) in batch {
                    if taken.contains(name) {
                        continue;
                    }
                    wanted.push(name.clone());
                    let ready = known.entry(template.clone()).or_default();
                    if let Some(i) = ready.iter().position(|r| !tried.contains(r)) {
                        let r = ready.swap_remove(i);
                        sql.push_str(&format!(
                            "ALTER DATABASE {} RENAME TO {};\n",
                            ident(&r),
                            ident(name)
                        ));
                        tried.push(r);
                    }
                }
            }
            if wanted.is_empty() {
                break;
            }
            let quote = |s: &String| format!("'{}'", s.replace('\'', "''"));
            let targets: Vec<String> = wanted.iter().map(quote).collect();
            sql.push_str(&format!(
                "SELECT datname FROM pg_database WHERE datname IN ({}) OR datname LIKE 'tdp\\_%'",
                targets.join(", ")
            ));
            let t0 = Instant::now();
            let rows = match self.sql_in(self.test_session(), &sql).await {
                Ok(rows) => {
                    tracing::debug!(
                        takes = wanted.len(),
                        round,
                        elapsed_us = t0.elapsed().as_micros() as u64,
                        "ready clones claimed"
                    );
                    rows
                }
                Err(e) => {
                    // Making the clones now still works.
                    tracing::debug!(error = %e, "could not take ready clones");
                    break;
                }
            };
            let mut known = self.claims.known.lock().unwrap_or_else(|e| e.into_inner());
            known.clear();
            let mut untried = false;
            for row in rows.lines() {
                if wanted.iter().any(|w| w == row) {
                    taken.push(row.to_string());
                } else if let Some(hash) =
                    row.strip_prefix("tdp_").and_then(|r| r.split('_').next())
                {
                    untried |= !tried.iter().any(|t| t == row);
                    known
                        .entry(format!("tmpl_{hash}"))
                        .or_default()
                        .push(row.to_string());
                }
            }
            if taken.len() == batch.len() || !untried {
                break;
            }
        }
        taken
    }

    /// Tops up this process's own ready clones of `template` to what its
    /// takes call for, then the server's spare. One process makes spares
    /// of a template at a time (an advisory lock), so processes sharing
    /// the server never make more than one together.
    async fn refill(self: &Arc<Self>, template: &str, pool: &Pool) {
        // A take while this one ran may have called for more, and found
        // it running: go on until none is wanted.
        while !self.claims.closing.load(Ordering::Acquire)
            && !pool.refilling.swap(true, Ordering::AcqRel)
        {
            let own = self.top_up_own(template, pool).await;
            if let Err(e) = &own {
                tracing::debug!(template, error = %e, "could not make ready clones");
            }
            let key = lock_key(template);
            let locked = self
                .sql(&format!("SELECT pg_try_advisory_lock({key})"))
                .await
                .is_ok_and(|r| r.trim() == "t");
            if locked {
                if let Err(e) = self.top_up_spare(template, pool).await {
                    tracing::debug!(template, error = %e, "could not make a spare clone");
                }
                let _ = self.sql(&format!("SELECT pg_advisory_unlock({key})")).await;
            }
            pool.refilling.store(false, Ordering::Release);
            pool.idle.notify_waiters();
            let have = pool.own.lock().unwrap_or_else(|e| e.into_inner()).len();
            // Failed: the next take tries again.
            if own.is_err() || have >= pool.want.load(Ordering::Acquire) {
                return;
            }
        }
    }

    /// The process's own: a spare of the server renamed when there is one
    /// (a clone another process gave back costs nothing), else made.
    /// Counted again before each: takes meanwhile use some up and may call
    /// for more.
    async fn top_up_own(self: &Arc<Self>, template: &str, pool: &Pool) -> Result<()> {
        let strategy = self.strategy(template, pool).await?;
        loop {
            let have = pool.own.lock().unwrap_or_else(|e| e.into_inner()).len();
            if have >= pool.want.load(Ordering::Acquire)
                || self.claims.closing.load(Ordering::Acquire)
            {
                return Ok(());
            }
            let name = self.ready_name(OWN, template, pool);
            let t0 = Instant::now();
            // Known as being made, so `databases()` never lists it.
            *pool.making.lock().unwrap_or_else(|e| e.into_inner()) = Some(name.clone());
            let made = async {
                if !self.spare_known(template) || !self.claim(template, &name).await? {
                    self.copy_template(template, &name, strategy).await?;
                }
                Ok::<_, crate::Error>(())
            }
            .await;
            let mut making = pool.making.lock().unwrap_or_else(|e| e.into_inner());
            if made.is_ok() {
                pool.own
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(name.clone());
            }
            *making = None;
            drop(making);
            made?;
            tracing::debug!(
                database = %name,
                template,
                elapsed_ms = crate::trace::ms(t0),
                "ready clone made"
            );
        }
    }

    /// Whether the last listing or this process's refills saw a spare.
    fn spare_known(&self, template: &str) -> bool {
        let known = self.claims.known.lock().unwrap_or_else(|e| e.into_inner());
        known.get(template).is_some_and(|k| !k.is_empty())
    }

    /// The server's one spare of `template`, unless it has one.
    async fn top_up_spare(&self, template: &str, pool: &Pool) -> Result<()> {
        let strategy = self.strategy(template, pool).await?;
        let like = prefix(template).replace('_', "\\_") + "%";
        let count = format!("SELECT count(*) FROM pg_database WHERE datname LIKE '{like}'");
        let ready: usize = self.sql(&count).await?.trim().parse().unwrap_or(usize::MAX);
        if ready >= 1 {
            return Ok(());
        }
        let name = self.ready_name("tdp_", template, pool);
        self.copy_template(template, &name, strategy).await?;
        self.claims
            .known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(template.to_string())
            .or_default()
            .push(name);
        Ok(())
    }

    /// Renames this process's own ready clones back to spares, in one
    /// round trip, where the server outlives the process.
    async fn give_back(&self) {
        self.claims.closing.store(true, Ordering::Release);
        if self.container.removed_with_process() {
            return;
        }
        let pools: Vec<Arc<Pool>> = {
            let pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
            pools.values().cloned().collect()
        };
        // A clone being made now is given back too: wait for it.
        let deadline = tokio::time::Instant::now() + GIVE_BACK_WAIT;
        for pool in &pools {
            loop {
                let idle = pool.idle.notified();
                if !pool.refilling.load(Ordering::Acquire) {
                    break;
                }
                if tokio::time::timeout_at(deadline, idle).await.is_err() {
                    break;
                }
            }
        }
        let own: Vec<String> = pools
            .iter()
            .flat_map(|p| std::mem::take(&mut *p.own.lock().unwrap_or_else(|e| e.into_inner())))
            .collect();
        let sql: String = own
            .iter()
            .filter_map(|o| {
                Some(format!(
                    "ALTER DATABASE {} RENAME TO {};\n",
                    ident(o),
                    ident(&as_spare(o)?)
                ))
            })
            .collect();
        if sql.is_empty() {
            return;
        }
        let t0 = Instant::now();
        let done = tokio::time::timeout(
            GIVE_BACK_WAIT,
            self.sql(sql.trim_end().trim_end_matches(';')),
        )
        .await;
        tracing::debug!(
            clones = own.len(),
            ok = matches!(done, Ok(Ok(_))),
            elapsed_ms = crate::trace::ms(t0),
            "own ready clones given back"
        );
    }

    /// `<kind><template hash>_<process>_<n>`: unique across the processes
    /// sharing the server.
    fn ready_name(&self, kind: &str, template: &str, pool: &Pool) -> String {
        let n = pool.next.fetch_add(1, Ordering::Relaxed);
        format!(
            "{kind}{}_{}_{n}",
            template.trim_start_matches("tmpl_"),
            super::super::naming::process_tag(std::process::id(), crate::session_id())
        )
    }

    /// The faster of `FILE_COPY` and `WAL_LOG` for clones of `template`:
    /// the choice recorded on the template by whoever measured first, else
    /// measured now — two clones each way, alternating, kept as ready
    /// clones when prefetching (dropped otherwise) — and recorded.
    /// Before PostgreSQL 15 there is no choice to make.
    async fn strategy(&self, template: &str, pool: &Pool) -> Result<&'static str> {
        if self.version < 150_000 {
            return Ok("");
        }
        pool.strategy
            .get_or_try_init(|| async {
                let literal = template.replace('\'', "''");
                let noted = self
                    .sql(&format!(
                        "SELECT shobj_description(oid, 'pg_database') FROM pg_database \
                         WHERE datname = '{literal}'"
                    ))
                    .await?;
                if let Some(choice) = noted.trim().strip_prefix(CHOICE) {
                    return Ok(strategy_clause(choice.split_whitespace().next()));
                }
                let mut took = [0u128; 2];
                let mut made = Vec::new();
                for round in 0..4 {
                    let (i, clause) = match round % 2 {
                        0 => (0, " STRATEGY FILE_COPY"),
                        _ => (1, " STRATEGY WAL_LOG"),
                    };
                    let name = self.ready_name("tdp_", template, pool);
                    let t0 = Instant::now();
                    self.copy_template(template, &name, clause).await?;
                    took[i] += t0.elapsed().as_micros();
                    made.push(name);
                }
                let choice = if took[0] <= took[1] { "FILE_COPY" } else { "WAL_LOG" };
                tracing::info!(
                    template,
                    file_copy_us = took[0] / 2,
                    wal_log_us = took[1] / 2,
                    choice,
                    "clone strategy measured"
                );
                let _ = self
                    .sql(&format!(
                        "COMMENT ON DATABASE {} IS '{CHOICE}{choice} file_copy_us={} wal_log_us={}'",
                        ident(template),
                        took[0] / 2,
                        took[1] / 2
                    ))
                    .await;
                // Beyond the bound they are not ready clones but waste.
                for name in made.iter().skip(self.prefetch) {
                    let _ = self.drop_database(name).await;
                }
                Ok(strategy_clause(Some(choice)))
            })
            .await
            .copied()
    }
}

/// `CREATE DATABASE name TEMPLATE template`. The template refuses
/// connections (ALLOW_CONNECTIONS false): no session on it can make a
/// clone fail.
fn create_sql(template: &str, name: &str, strategy: &str) -> String {
    format!(
        "CREATE DATABASE {} TEMPLATE {}{strategy}",
        ident(name),
        ident(template)
    )
}

fn strategy_clause(choice: Option<&str>) -> &'static str {
    match choice {
        Some("WAL_LOG") => " STRATEGY WAL_LOG",
        _ => " STRATEGY FILE_COPY",
    }
}

/// How long the exit hook gives the renaming back of a process's own clones.
const GIVE_BACK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// At exit: every registered server's own clones back to spares.
async fn give_back() {
    let servers: Vec<_> = std::mem::take(&mut *GIVE_BACK.lock().unwrap_or_else(|e| e.into_inner()));
    for server in servers.iter().filter_map(std::sync::Weak::upgrade) {
        server.give_back().await;
    }
}

/// The advisory lock one refiller of `template` holds.
fn lock_key(template: &str) -> i64 {
    super::server::advisory_key(&format!("refill {template}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_clones_are_named_after_their_template() {
        assert_eq!(prefix("tmpl_0123456789abcdef"), "tdp_0123456789abcdef_");
        // 4 + 16 + 1 + a process tag and a counter: well within 63 bytes.
        assert!(prefix("tmpl_0123456789abcdef").len() + 12 < 63);
        assert_eq!(strategy_clause(Some("WAL_LOG")), " STRATEGY WAL_LOG");
        assert_eq!(strategy_clause(None), " STRATEGY FILE_COPY");
    }
}
