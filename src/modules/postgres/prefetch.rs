//! Ready clones of each template, made in the background so a test's
//! `fresh_database()` only renames one; and the clone strategy, chosen by
//! measuring both on the server and template at hand.
//!
//! Ready clones live in the server, named `tdp_<template hash>_…`, so any
//! process sharing the server can take one: taking is an atomic
//! `ALTER DATABASE … RENAME` to the test's own name (PostgreSQL re-checks
//! the name once it holds the database's lock, so of two takers of one
//! clone the second sees "does not exist" and tries the next). They go
//! with the server.

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
    /// How many ready clones the takes so far call for.
    want: AtomicUsize,
    /// ` STRATEGY …` for clones of this template, or nothing before 15.
    strategy: OnceCell<&'static str>,
    /// Names the clones this process makes.
    next: AtomicU64,
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
}

/// The comment on a template that records the measured choice, so every
/// process sharing the server uses it without measuring again.
const CHOICE: &str = "testdock:strategy=";

/// `tdp_<the template's hash>_`: what ready clones of `template` start with.
fn prefix(template: &str) -> String {
    format!("tdp_{}_", template.trim_start_matches("tmpl_"))
}

impl Inner {
    fn pool(&self, template: &str) -> Arc<Pool> {
        self.pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(template.to_string())
            .or_default()
            .clone()
    }

    /// Makes `name` from `template`: a ready clone renamed when there is
    /// one, else a clone made now; then tops the ready clones up in the
    /// background. Whether a ready one was taken.
    pub(super) async fn take(self: &Arc<Self>, template: &str, name: &str) -> Result<bool> {
        let pool = self.pool(template);
        let takes = pool.takes.fetch_add(1, Ordering::Relaxed) + 1;
        if self.prefetch == 0 {
            let strategy = self.strategy(template, &pool).await?;
            self.copy_template(template, name, strategy).await?;
            return Ok(false);
        }
        let claimed = self.claim(template, name).await?;
        if !claimed {
            // Made now, on a test's session: not queued behind the
            // refills and drops of the background one.
            let strategy = self.strategy(template, &pool).await?;
            let sql = create_sql(template, name, strategy);
            self.sql_in(self.test_session(), &sql).await?;
        }
        // One ready clone after a first take, as many as were taken after
        // that: a template asked for once costs at most one spare.
        pool.want
            .fetch_max((takes as usize).min(self.prefetch), Ordering::AcqRel);
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
            }
            this.refill(&template, &pool).await
        });
        Ok(claimed)
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
        for _round in 0..2 {
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
            let rows = match self.sql_in(self.test_session(), &sql).await {
                Ok(rows) => rows,
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

    /// Makes ready clones of `template` until the server has as many as
    /// the takes call for. One
    /// process refills a template at a time (an advisory lock), so
    /// processes sharing the server never overshoot the bound together.
    async fn refill(&self, template: &str, pool: &Pool) {
        if pool.refilling.swap(true, Ordering::AcqRel) {
            return;
        }
        let key = lock_key(template);
        let locked = self
            .sql(&format!("SELECT pg_try_advisory_lock({key})"))
            .await
            .is_ok_and(|r| r.trim() == "t");
        if locked {
            if let Err(e) = self.top_up(template, pool).await {
                tracing::debug!(template, error = %e, "could not refill ready clones");
            }
            let _ = self.sql(&format!("SELECT pg_advisory_unlock({key})")).await;
        }
        pool.refilling.store(false, Ordering::Release);
    }

    /// Counted again before each clone: takes meanwhile, in this process
    /// or another, use some up, and more takes may call for more.
    async fn top_up(&self, template: &str, pool: &Pool) -> Result<()> {
        let strategy = self.strategy(template, pool).await?;
        let like = prefix(template).replace('_', "\\_") + "%";
        let count = format!("SELECT count(*) FROM pg_database WHERE datname LIKE '{like}'");
        loop {
            let ready: usize = self.sql(&count).await?.trim().parse().unwrap_or(usize::MAX);
            if ready >= pool.want.load(Ordering::Acquire) {
                return Ok(());
            }
            let t0 = Instant::now();
            let name = self.ready_name(template, pool);
            self.copy_template(template, &name, strategy).await?;
            tracing::debug!(
                database = %name,
                template,
                elapsed_ms = crate::trace::ms(t0),
                "ready clone made"
            );
            self.claims
                .known
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(template.to_string())
                .or_default()
                .push(name);
        }
    }

    fn ready_name(&self, template: &str, pool: &Pool) -> String {
        let n = pool.next.fetch_add(1, Ordering::Relaxed);
        format!(
            "{}{}_{n}",
            prefix(template),
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
                    let name = self.ready_name(template, pool);
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
