//! What the server fixtures (PostgreSQL, Redis, MariaDB) share: which
//! image runs, how the server starts (alone, or for the run) until it
//! answers, how it is removed, and what a test's unit of it (a database)
//! does when its guard drops.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::local::{self, Install};
use crate::engine::on_engine;
use crate::{ContainerSpec, Error, Image, Result, TestContainer};

/// Which image a fixture runs.
#[derive(Clone, Debug)]
pub(crate) enum ImageChoice {
    /// The official image if present or pullable, else the local one.
    Default,
    /// The one made from this machine's install, always.
    Local,
    /// The user's.
    Given(Image),
}

impl ImageChoice {
    /// The image to run; `local` makes (once) the one of install `I`.
    pub(crate) async fn resolve<I, F>(&self, local: fn() -> F) -> Result<Image>
    where
        I: Install,
        F: Future<Output = Result<String>>,
    {
        Ok(match self {
            ImageChoice::Given(i) => i.clone(),
            ImageChoice::Local => Image::named(local().await?),
            ImageChoice::Default => Image::named(local::default_image::<I, _>(local).await?),
        })
    }
}

/// Starts `spec` for this process alone, or — `shared` — creates or joins
/// the run's container of it, then runs `ready` on it. If `ready` fails,
/// the process's own container is removed before the error is returned (so
/// nothing is left when the caller sees it); a shared one is the run's.
pub(crate) async fn start<R>(
    spec: ContainerSpec,
    shared: bool,
    ready: impl AsyncFnOnce(&TestContainer) -> Result<R>,
) -> Result<(TestContainer, R)> {
    let container = match shared {
        true => crate::shared::start_shared(spec).await?,
        false => spec.start().await?,
    };
    match ready(&container).await {
        Ok(r) => Ok((container, r)),
        Err(e) if shared => Err(e),
        Err(e) => {
            let _ = container.teardown().await;
            Err(e)
        }
    }
}

/// Removes the server and waits until it is gone, whoever else still holds
/// its state `S` (the guards of its databases); `into` and `get` reach the
/// container in it.
pub(crate) async fn teardown<S: Send + Sync + 'static>(
    server: Arc<S>,
    into: fn(S) -> TestContainer,
    get: fn(&S) -> &TestContainer,
) -> Result<()> {
    match Arc::try_unwrap(server) {
        Ok(s) => into(s).teardown().await,
        Err(shared) => {
            let id = get(&shared).id().to_string();
            drop(shared);
            let owned = crate::reaper::Owned::default();
            on_engine(async move { crate::reaper::remove(&id, &owned).await }).await
        }
    }
}

/// Whether a test's unit goes as its guard drops: yes when the test passed;
/// no when the thread is panicking (a failing test: `report` then says so)
/// or with `TESTDOCK_KEEP=always`.
pub(crate) fn goes_on_drop(report: impl FnOnce()) -> bool {
    let panicking = std::thread::panicking();
    if panicking || crate::reaper::keep(false) {
        if panicking {
            report();
        }
        return false;
    }
    true
}

/// Queues `work`, which removes or gives back a passed test's unit; says
/// so if it fails (`what`: `drop database t_x`), unless the server went
/// first and took the unit with it.
pub(crate) fn queue(what: String, work: impl Future<Output = Result<()>> + Send + 'static) {
    crate::reaper::queue(async move {
        if let Err(e) = work.await {
            if !matches!(e, Error::Docker { .. }) {
                tracing::warn!(what = %what, error = %e, "could not clean up after a test");
                eprintln!("testdock: could not {what}: {e}");
            }
        }
    });
}

/// `scheme://user:password@host:port/database`, user, password and
/// database percent-encoded, for any client.
pub(crate) fn database_url(
    scheme: &str,
    user: &str,
    password: &str,
    host: &str,
    port: u16,
    database: &str,
) -> String {
    let (user, password, database) = (
        percent_encode(user),
        percent_encode(password),
        percent_encode(database),
    );
    format!("{scheme}://{user}:{password}@{host}:{port}/{database}")
}

/// Percent-encodes all but URL-unreserved characters.
fn percent_encode(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Says, beside the failure, that `what` of the failing test is kept at
/// `url`; with `TESTDOCK_KEEP=on-failure` keeps the server's container too
/// (marked once, however many units ask). Never panics: it runs in `Drop`
/// while the test panics.
pub(crate) fn report_kept(
    what: fmt::Arguments<'_>,
    url: &str,
    c: &TestContainer,
    marked: &AtomicBool,
) {
    // Not a raw write: libtest shows it with the failure.
    if crate::reaper::keep(true) {
        crate::logs::report(format_args!(
            "testdock: kept {what} of the failing test: {url}"
        ));
        if !marked.swap(true, Ordering::Relaxed) {
            crate::reaper::keep_in_background(c.id().to_string(), c.name().to_string());
        }
    } else {
        crate::logs::report(format_args!(
            "testdock: kept {what} of the failing test: {url} (until the server {} is removed \
             at exit; TESTDOCK_KEEP=on-failure keeps it)",
            c.name()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_credentials_and_name() {
        assert_eq!(percent_encode("p@ss:w/rd"), "p%40ss%3Aw%2Frd");
        assert_eq!(percent_encode("plain-1.x_~"), "plain-1.x_~");
        assert_eq!(
            database_url("mysql", "u", "p@ss", "127.0.0.1", 3306, "t_a b"),
            "mysql://u:p%40ss@127.0.0.1:3306/t_a%20b"
        );
    }
}
