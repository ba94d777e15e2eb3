//! Following a container's output as it is written: a stream of lines, and
//! a consumer hook set on the spec.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptionsBuilder;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;

use crate::container::TestContainer;
use crate::engine::{client, spawn_detached};
use crate::error::{Error, Result};

/// Prints a line to stderr through `eprintln!`, so that libtest captures it
/// beside the failing test's output (`std::io::stderr()` would bypass the
/// capture), without ever panicking: `eprintln!` panics when stderr is a pipe
/// nobody reads any more (`cargo test -- --nocapture 2>&1 | head`), and a
/// panic in a guard's Drop while the test panics aborts the process. For
/// what Drop and the exit path print.
pub(crate) fn report(line: fmt::Arguments<'_>) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| eprintln!("{line}")));
}

/// Which stream a log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogSource {
    /// The main process's stdout.
    Stdout,
    /// The main process's stderr.
    Stderr,
}

/// One line of a container's output, without its newline (a last line
/// without one is delivered when the stream ends).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// stdout or stderr.
    pub source: LogSource,
    /// The line's bytes.
    pub bytes: Vec<u8>,
}

impl LogLine {
    /// The line as text (invalid UTF-8 replaced).
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.bytes)
    }
}

impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// A callback for every line a container prints, set with
/// [`ContainerSpec::log_consumer`](crate::ContainerSpec::log_consumer).
#[derive(Clone)]
pub(crate) struct Consumer(pub(crate) Arc<dyn Fn(&LogLine) + Send + Sync>);

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Consumer(..)")
    }
}

/// The lines of a container's output as they come, from its start; ends
/// when the container stops. Made by [`TestContainer::follow_logs`].
///
/// Dropping it stops following.
#[derive(Debug)]
pub struct LogStream {
    rx: mpsc::Receiver<Result<LogLine>>,
}

impl Stream for LogStream {
    type Item = Result<LogLine>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl TestContainer {
    /// Follows the container's stdout and stderr, line by line, from the
    /// start of its output.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(c: &testdock::TestContainer) -> testdock::Result<()> {
    /// use futures_util::StreamExt;
    ///
    /// let mut lines = c.follow_logs();
    /// while let Some(line) = lines.next().await {
    ///     if line?.text().contains("ready") {
    ///         break;
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn follow_logs(&self) -> LogStream {
        // The log request lives on the engine runtime; lines cross over a
        // channel, so the stream can be polled from any executor.
        let (tx, rx) = mpsc::channel(1024);
        let id = self.id().to_string();
        spawn_detached(async move {
            let sink = |line: Result<LogLine>| {
                let tx = tx.clone();
                async move { tx.send(line).await.is_ok() }
            };
            follow(&id, sink).await;
        });
        LogStream { rx }
    }
}

/// Starts calling `consumer` for every line of container `id`, in the
/// background, until the container stops.
pub(crate) fn consume(id: String, consumer: Consumer) {
    spawn_detached(async move {
        follow(&id, |line: Result<LogLine>| {
            if let Ok(line) = &line {
                (consumer.0)(line);
            }
            std::future::ready(true)
        })
        .await;
    });
}

/// Follows the logs of `id`, handing each complete line to `sink` until
/// the logs end or `sink` says stop (returns false).
async fn follow<F, Fut>(id: &str, mut sink: F)
where
    F: FnMut(Result<LogLine>) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let docker = match client().await {
        Ok(d) => d,
        Err(e) => {
            sink(Err(e)).await;
            return;
        }
    };
    let opts = LogsOptionsBuilder::new()
        .follow(true)
        .stdout(true)
        .stderr(true)
        .build();
    let mut logs = docker.logs(id, Some(opts));
    // Frames are not lines: keep each stream's unfinished tail, and count
    // what arrived.
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (mut out_seen, mut err_seen) = (0, 0);
    while let Some(frame) = logs.next().await {
        let (source, buf, bytes) = match frame {
            Ok(LogOutput::StdErr { message }) => {
                err_seen += message.len();
                (LogSource::Stderr, &mut err, message)
            }
            Ok(other) => {
                let bytes = other.into_bytes();
                out_seen += bytes.len();
                (LogSource::Stdout, &mut out, bytes)
            }
            Err(e) => {
                sink(Err(Error::docker(format!("follow logs of {id}"), e))).await;
                return;
            }
        };
        buf.extend_from_slice(&bytes);
        if !flush_lines(source, buf, &mut sink).await {
            return;
        }
    }
    // A following reader can end with the container before the engine has
    // logged its last output; the stored logs have it.
    if let Ok(all) = crate::container::read_logs(id.to_string()).await {
        out.extend_from_slice(all.stdout.get(out_seen..).unwrap_or_default());
        err.extend_from_slice(all.stderr.get(err_seen..).unwrap_or_default());
    }
    for (source, mut rest) in [(LogSource::Stdout, out), (LogSource::Stderr, err)] {
        if !flush_lines(source, &mut rest, &mut sink).await {
            return;
        }
        if !rest.is_empty()
            && !sink(Ok(LogLine {
                source,
                bytes: rest,
            }))
            .await
        {
            return;
        }
    }
}

/// Hands every complete line in `buf` to `sink`; false if it said stop.
async fn flush_lines<F, Fut>(source: LogSource, buf: &mut Vec<u8>, sink: &mut F) -> bool
where
    F: FnMut(Result<LogLine>) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
        let mut line: Vec<u8> = buf.drain(..=nl).collect();
        line.pop();
        if !sink(Ok(LogLine {
            source,
            bytes: line,
        }))
        .await
        {
            return false;
        }
    }
    true
}
