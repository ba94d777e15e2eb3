//! A conversation with a command: write its stdin while reading its output.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::exec::ResizeExecOptions;
use futures_util::future::{select, Either};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

use crate::container::TestContainer;
use crate::engine::{client, on_engine, spawn_detached};
use crate::error::{Error, Result};
use crate::exec::{ExecOpts, ExecOutput};
use crate::util::shell_join;

/// Ctrl-C and Ctrl-D as a terminal sends them.
const INTERRUPT: u8 = 0x03;
const END_OF_FILE: u8 = 0x04;

/// An exec to converse with; await it to start it.
///
/// Made by [`Exec::interactive`](crate::Exec::interactive); it keeps the
/// exec's `env`, `user`, `workdir` and `timeout` (which bounds
/// [`ExecSession::wait`]).
///
/// # Examples
///
/// ```no_run
/// # async fn run(c: &testdock::TestContainer) -> testdock::Result<()> {
/// use std::time::Duration;
///
/// let mut sh = c.exec(["sh"]).interactive().await?;
/// sh.write_line("echo hi")?;
/// sh.read_until("hi", Duration::from_secs(5)).await?;
/// sh.write_line("exit 3")?;
/// assert_eq!(sh.wait().await?.exit_code, 3);
/// # Ok(()) }
/// ```
#[must_use = "an Interactive does nothing until it is awaited"]
#[derive(Debug)]
pub struct Interactive<'a> {
    container: &'a TestContainer,
    cmd: Vec<String>,
    opts: ExecOpts,
    tty: bool,
    window: Option<(u16, u16)>,
}

impl<'a> Interactive<'a> {
    pub(crate) fn new(container: &'a TestContainer, cmd: Vec<String>, opts: ExecOpts) -> Self {
        Interactive {
            container,
            cmd,
            opts,
            tty: false,
            window: None,
        }
    }

    /// Allocates a terminal: one merged output stream, as a terminal gives.
    ///
    /// A terminal echoes what is written (so [`ExecSession::read_until`] may
    /// match the echo of the input) and turns `\n` into `\r\n`.
    pub fn tty(mut self, tty: bool) -> Self {
        self.tty = tty;
        self
    }

    /// The terminal's size in columns and rows; implies [`tty(true)`](Self::tty).
    pub fn window(mut self, cols: u16, rows: u16) -> Self {
        self.tty = true;
        self.window = Some((cols, rows));
        self
    }
}

impl<'a> IntoFuture for Interactive<'a> {
    type Output = Result<ExecSession>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            if self.cmd.is_empty() {
                return Err(Error::InvalidSpec("exec needs a command".into()));
            }
            let id = self.container.id().to_string();
            let name = self.container.name().to_string();
            let (cmd, opts, tty, window) = (self.cmd, self.opts, self.tty, self.window);
            let image = self.container.image().to_string();
            on_engine(async move { start(id, name, image, cmd, opts, tty, window).await }).await
        })
    }
}

/// What the writer task is asked to do.
enum Input {
    Bytes(Vec<u8>),
    Close,
}

/// What the reader task passes on.
enum Frame {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// The output ended, with the engine's error if it failed.
    End(Option<bollard::errors::Error>),
}

async fn start(
    id: String,
    name: String,
    image: String,
    cmd: Vec<String>,
    mut opts: ExecOpts,
    tty: bool,
    window: Option<(u16, u16)>,
) -> Result<ExecSession> {
    let docker = client().await?;
    let command = shell_join(&cmd);
    let op = || format!("exec `{command}` in {name}");
    let (exec_id, mut output, mut input) =
        crate::exec::start_attached(docker, &id, cmd.clone(), &mut opts, true, tty, &op).await?;
    if let Some((cols, rows)) = window {
        resize_on_engine(&exec_id, cols, rows)
            .await
            .map_err(|e| Error::docker(format!("resize of {}", op()), e))?;
    }

    // Unbounded both ways: a write is queued and never waits for the
    // process; output is kept until read, as a finished exec keeps it.
    let (in_tx, mut in_rx) = mpsc::unbounded_channel::<Input>();
    let (out_tx, out_rx) = mpsc::unbounded_channel::<Frame>();
    spawn_detached(async move {
        while let Some(msg) = in_rx.recv().await {
            match msg {
                Input::Bytes(b) => {
                    // A process that stopped reading is its business.
                    if input.write_all(&b).await.is_err() || input.flush().await.is_err() {
                        break;
                    }
                }
                Input::Close => break,
            }
        }
        // Closed, or the handle is gone: EOF for the process.
        let _ = input.shutdown().await;
    });
    spawn_detached(async move {
        let end = loop {
            match output.next().await {
                None => break None,
                Some(Err(e)) => break Some(e),
                Some(Ok(frame)) => {
                    let frame = match frame {
                        LogOutput::StdErr { message } => Frame::Stderr(message.to_vec()),
                        LogOutput::StdOut { message } | LogOutput::Console { message } => {
                            Frame::Stdout(message.to_vec())
                        }
                        LogOutput::StdIn { .. } => continue,
                    };
                    if out_tx.send(frame).is_err() {
                        return;
                    }
                }
            }
        };
        let _ = out_tx.send(Frame::End(end));
    });
    let session = ExecSession {
        container: name,
        image,
        cmd,
        command,
        exec_id,
        tty,
        timeout: opts.timeout,
        input: Some(in_tx),
        output: out_rx,
        stdout: Vec::new(),
        stderr: Vec::new(),
        ended: None,
    };
    if let Some(bytes) = opts.stdin {
        session.write(bytes)?;
    }
    Ok(session)
}

async fn resize_on_engine(
    exec_id: &str,
    cols: u16,
    rows: u16,
) -> std::result::Result<(), bollard::errors::Error> {
    let docker = match client().await {
        Ok(d) => d,
        Err(_) => unreachable!("the engine answered when the exec was created"),
    };
    docker
        .resize_exec(
            exec_id,
            ResizeExecOptions {
                height: rows,
                width: cols,
            },
        )
        .await
}

/// A running exec to converse with: write its stdin, read its output until
/// a pattern, then [`wait`](Self::wait) for its exit code.
///
/// Made by awaiting [`Interactive`]. Works from any executor: the streams
/// are driven on testdock's own runtime.
///
/// Dropping it never blocks: it closes stdin (without a TTY the process
/// reads EOF). With a TTY Docker has no hang-up, so dropping first types
/// Ctrl-C then Ctrl-D — best effort: a process that ignores both runs on
/// until the container is removed.
#[must_use = "an ExecSession is a running process; wait() for its exit code"]
pub struct ExecSession {
    container: String,
    image: String,
    cmd: Vec<String>,
    command: String,
    exec_id: String,
    tty: bool,
    timeout: Option<Duration>,
    input: Option<mpsc::UnboundedSender<Input>>,
    output: mpsc::UnboundedReceiver<Frame>,
    /// Received and not yet returned by a read.
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// Set once the output ended: the engine's error, if any.
    ended: Option<Option<bollard::errors::Error>>,
}

impl std::fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecSession")
            .field("container", &self.container)
            .field("command", &self.command)
            .field("exec_id", &self.exec_id)
            .field("tty", &self.tty)
            .field("stdin_open", &self.input.is_some())
            .field("output_ended", &self.ended.is_some())
            .finish_non_exhaustive()
    }
}

/// Which stream a read looks at.
#[derive(Clone, Copy)]
enum Which {
    Stdout,
    Stderr,
}

impl ExecSession {
    /// The engine's id of this exec (for `inspect_exec`).
    pub fn exec_id(&self) -> &str {
        &self.exec_id
    }

    /// Queues `bytes` for the process's stdin; never waits for it to read.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] (broken pipe) once stdin was closed.
    pub fn write(&self, bytes: impl Into<Vec<u8>>) -> Result<()> {
        let sent = match &self.input {
            Some(tx) => tx.send(Input::Bytes(bytes.into())).is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            Err(Error::io(
                format!(
                    "writing to stdin of `{}` in {}: stdin is closed",
                    self.command, self.container
                ),
                std::io::ErrorKind::BrokenPipe.into(),
            ))
        }
    }

    /// Queues `line` and a newline (`\n`; a TTY shows it back as `\r\n`).
    ///
    /// # Errors
    ///
    /// As [`write`](Self::write).
    pub fn write_line(&self, line: &str) -> Result<()> {
        self.write(format!("{line}\n"))
    }

    /// Ends the input: EOF without a TTY; with one, types Ctrl-D (which a
    /// program reading a line sees as end of input).
    pub fn close_stdin(&mut self) {
        if self.tty {
            let _ = self.write([END_OF_FILE]);
        } else if let Some(tx) = &self.input {
            let _ = tx.send(Input::Close);
        }
        self.input = None;
    }

    /// Waits until stdout (with a TTY: the merged output) contains
    /// `pattern`, and returns everything up to and including it; what
    /// follows stays for the next read.
    ///
    /// With a TTY the echo of what was written counts: to wait for a
    /// command's answer, wait for something the echo does not contain.
    ///
    /// # Errors
    ///
    /// [`Error::NotPrinted`], with what was printed and not yet read, when
    /// `timeout` runs out or the output ends first; that output stays to
    /// be read.
    pub async fn read_until(&mut self, pattern: &str, timeout: Duration) -> Result<String> {
        self.read(Which::Stdout, pattern, timeout).await
    }

    /// As [`read_until`](Self::read_until), on stderr (empty with a TTY).
    ///
    /// # Errors
    ///
    /// As [`read_until`](Self::read_until).
    pub async fn read_until_stderr(&mut self, pattern: &str, timeout: Duration) -> Result<String> {
        self.read(Which::Stderr, pattern, timeout).await
    }

    /// Sets the terminal's size in columns and rows.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSpec`] without a TTY; [`Error::Docker`] if the
    /// engine refuses.
    pub async fn resize(&self, cols: u16, rows: u16) -> Result<()> {
        if !self.tty {
            return Err(Error::InvalidSpec(format!(
                "cannot resize `{}` in {}: it has no terminal; start it with `.tty(true)`",
                self.command, self.container
            )));
        }
        let exec_id = self.exec_id.clone();
        let op = format!("resize of exec `{}` in {}", self.command, self.container);
        on_engine(async move { resize_on_engine(&exec_id, cols, rows).await })
            .await
            .map_err(|e| Error::docker(op, e))
    }

    /// Closes stdin, waits for the output to end, and returns what was not
    /// yet read with the exit code. Bounded by the exec's
    /// [`timeout`](crate::Exec::timeout), if one was set.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] (with the output) if the timeout ran out;
    /// [`Error::Docker`] if the engine failed.
    pub async fn wait(mut self) -> Result<ExecOutput> {
        self.close_stdin();
        let timeout = self.timeout;
        let drain = async {
            while self.ended.is_none() {
                self.receive().await;
            }
        };
        let drained = match timeout {
            Some(t) => matches!(select(Box::pin(drain), timer(t)).await, Either::Left(_)),
            None => {
                drain.await;
                true
            }
        };
        let (stdout, stderr) = (
            std::mem::take(&mut self.stdout),
            std::mem::take(&mut self.stderr),
        );
        if !drained {
            return Err(Error::Timeout {
                container: self.container.clone(),
                command: self.command.clone(),
                timeout: self.timeout.unwrap_or_default(),
                output: Box::new(ExecOutput::new(stdout, stderr, -1)),
            });
        }
        let op = format!("exec `{}` in {}", self.command, self.container);
        if let Some(Some(e)) = self.ended.take() {
            return Err(Error::docker(op, e));
        }
        let exec_id = self.exec_id.clone();
        let exit_code = on_engine(async move { exit_code(&exec_id).await })
            .await
            .map_err(|e| Error::docker(op, e))?;
        Ok(ExecOutput::new(stdout, stderr, exit_code).with_context(
            &self.container,
            &self.image,
            &self.cmd,
        ))
    }

    /// Takes the next frame into the buffers; marks the end.
    async fn receive(&mut self) {
        match self.output.recv().await {
            Some(Frame::Stdout(b)) => self.stdout.extend_from_slice(&b),
            Some(Frame::Stderr(b)) => self.stderr.extend_from_slice(&b),
            Some(Frame::End(e)) => self.ended = Some(e),
            None => self.ended = Some(None),
        }
    }

    async fn read(&mut self, which: Which, pattern: &str, timeout: Duration) -> Result<String> {
        let t0 = Instant::now();
        let mut timer = timer(timeout);
        let pat = pattern.as_bytes();
        let mut from = 0;
        loop {
            let buf = match which {
                Which::Stdout => &mut self.stdout,
                Which::Stderr => &mut self.stderr,
            };
            if let Some(end) = find(buf, pat, from) {
                let rest = buf.split_off(end);
                let got = std::mem::replace(buf, rest);
                return Ok(String::from_utf8_lossy(&got).into_owned());
            }
            from = resume_at(buf.len(), pat.len());
            let outcome = if self.ended.is_some() {
                "its output ended"
            } else {
                match select(Box::pin(self.receive()), &mut timer).await {
                    Either::Left(_) => continue,
                    Either::Right(_) => "timed out",
                }
            };
            return Err(Error::NotPrinted {
                container: self.container.clone(),
                command: self.command.clone(),
                pattern: pattern.to_string(),
                outcome: outcome.to_string(),
                waited: t0.elapsed(),
                output: Box::new(ExecOutput::new(
                    self.stdout.clone(),
                    self.stderr.clone(),
                    -1,
                )),
            });
        }
    }
}

/// Fires after `after`. The clock runs on the engine runtime, so a read
/// times out on any executor, tokio or not.
fn timer(after: Duration) -> oneshot::Receiver<()> {
    let (mut tx, rx) = oneshot::channel();
    spawn_detached(async move {
        let elapsed = tokio::select! {
            () = tokio::time::sleep(after) => true,
            // The read finished first: stop the clock.
            () = tx.closed() => false,
        };
        if elapsed {
            let _ = tx.send(());
        }
    });
    rx
}

impl Drop for ExecSession {
    fn drop(&mut self) {
        // Only channel sends: the writer task closes stdin once the sender
        // is gone.
        if self.tty {
            let _ = self.write([INTERRUPT, END_OF_FILE]);
        }
        self.input = None;
    }
}

/// The end of the first `pat` in `buf` at or after `from`.
fn find(buf: &[u8], pat: &[u8], from: usize) -> Option<usize> {
    if pat.is_empty() {
        return Some(from.min(buf.len()));
    }
    buf.get(from..)?
        .windows(pat.len())
        .position(|w| w == pat)
        .map(|i| from + i + pat.len())
}

/// Where the next search starts once `len` bytes held no match: far enough
/// back that a pattern split across two chunks is still found.
fn resume_at(len: usize, pat_len: usize) -> usize {
    len.saturating_sub(pat_len.saturating_sub(1))
}

/// The exit code once the output ended; other engines may lag a moment.
async fn exit_code(exec_id: &str) -> std::result::Result<i64, bollard::errors::Error> {
    let docker = match client().await {
        Ok(d) => d,
        Err(_) => unreachable!("the engine answered when the exec was created"),
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let inspect = docker.inspect_exec(exec_id).await?;
        match (inspect.running, inspect.exit_code) {
            (Some(false) | None, Some(code)) => return Ok(code),
            _ if Instant::now() >= deadline => return Ok(-1),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` one at a time as `read` does, resuming each search.
    fn search_chunks(chunks: &[&str], pat: &str) -> Option<usize> {
        let mut buf = Vec::new();
        let mut from = 0;
        for c in chunks {
            buf.extend_from_slice(c.as_bytes());
            if let Some(end) = find(&buf, pat.as_bytes(), from) {
                return Some(end);
            }
            from = resume_at(buf.len(), pat.len());
        }
        None
    }

    #[test]
    fn a_pattern_split_across_chunks_is_found() {
        assert_eq!(search_chunks(&["xx he", "llo"], "hello"), Some(8));
        assert_eq!(search_chunks(&["h", "e", "l", "l", "o!"], "hello"), Some(5));
        assert_eq!(search_chunks(&["name", "? "], "? "), Some(6));
        assert_eq!(search_chunks(&["hell", "xo"], "hello"), None);
    }

    #[test]
    fn find_returns_the_end_of_the_first_match() {
        assert_eq!(find(b"a$ b$ ", b"$ ", 0), Some(3));
        assert_eq!(find(b"a$ b$ ", b"$ ", 3), Some(6));
        assert_eq!(find(b"ab", b"abc", 0), None);
        assert_eq!(find(b"ab", b"b", 5), None);
        assert_eq!(resume_at(2, 5), 0);
        assert_eq!(resume_at(10, 1), 10);
    }
}
