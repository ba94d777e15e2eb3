//! Running commands in a container: the `Exec` builder and `ExecOutput`.

use std::borrow::Cow;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::container::TestContainer;
use crate::engine::{client, on_engine};
use crate::error::{Error, Result};
use crate::util::{shell_join, tail_lines};

/// What a command printed and how it ended.
///
/// stdout and stderr are kept apart and byte-exact; a non-zero exit is data,
/// not an error — call [`success`](ExecOutput::success) to make it one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    /// Everything written to stdout.
    pub stdout: Vec<u8>,
    /// Everything written to stderr.
    pub stderr: Vec<u8>,
    /// The exit code (137 for SIGKILL, as in a shell; -1 when unknown).
    pub exit_code: i64,
    context: Context,
}

/// Where the output came from, for error messages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Context {
    container: String,
    image: String,
    command: String,
}

impl ExecOutput {
    pub(crate) fn new(stdout: Vec<u8>, stderr: Vec<u8>, exit_code: i64) -> Self {
        ExecOutput {
            stdout,
            stderr,
            exit_code,
            context: Context::default(),
        }
    }

    pub(crate) fn with_context(mut self, container: &str, image: &str, command: &[String]) -> Self {
        self.context = Context {
            container: container.into(),
            image: image.into(),
            command: shell_join(command),
        };
        self
    }

    /// stdout as text (invalid UTF-8 replaced).
    pub fn stdout_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stdout)
    }

    /// stderr as text (invalid UTF-8 replaced).
    pub fn stderr_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stderr)
    }

    /// Whether the exit code is 0.
    pub fn is_success(&self) -> bool {
        self.exit_code == 0
    }

    /// `self` if the exit code is 0.
    ///
    /// # Errors
    ///
    /// [`Error::ExecFailed`] naming the command, the exit code and the tail
    /// of stderr (of stdout if stderr is empty).
    pub fn success(self) -> Result<Self> {
        if self.is_success() {
            return Ok(self);
        }
        let text = if self.stderr.is_empty() {
            self.stdout_text()
        } else {
            self.stderr_text()
        };
        let tail = tail_lines(&text, 20);
        Err(Error::ExecFailed {
            container: self.context.container.clone(),
            image: self.context.image.clone(),
            command: self.context.command.clone(),
            exit_code: self.exit_code,
            stderr_tail: if tail.is_empty() {
                "(no output)".into()
            } else {
                tail
            },
        })
    }
}

/// A command to run in a running container; await it to run it.
///
/// Made by [`TestContainer::exec`] and [`TestContainer::exec_ok`].
///
/// # Examples
///
/// ```no_run
/// # async fn run(c: &testdock::TestContainer) -> testdock::Result<()> {
/// use std::time::Duration;
///
/// let out = c
///     .exec(["sh", "-c", "cd /tmp && tr a-z A-Z"])
///     .stdin("hello")
///     .env("LANG", "C")
///     .user("nobody")
///     .timeout(Duration::from_secs(5))
///     .await?;
/// assert_eq!(out.stdout, b"HELLO");
/// # Ok(()) }
/// ```
///
/// A process started in the background that keeps stdout open (`cmd &`)
/// keeps the exec open too: redirect its output (`cmd >/dev/null 2>&1 &`).
#[must_use = "an Exec does nothing until it is awaited"]
#[derive(Debug)]
pub struct Exec<'a> {
    container: &'a TestContainer,
    cmd: Vec<String>,
    opts: ExecOpts,
    check: bool,
}

/// Options of one exec, apart from the command.
#[derive(Debug, Default)]
pub(crate) struct ExecOpts {
    pub(crate) stdin: Option<Vec<u8>>,
    pub(crate) env: Vec<String>,
    pub(crate) workdir: Option<String>,
    pub(crate) user: Option<String>,
    pub(crate) timeout: Option<Duration>,
}

impl<'a> Exec<'a> {
    pub(crate) fn new(container: &'a TestContainer, cmd: Vec<String>, check: bool) -> Self {
        Exec {
            container,
            cmd,
            opts: ExecOpts::default(),
            check,
        }
    }

    /// Feeds these bytes to the command's stdin, then closes it.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.opts.stdin = Some(bytes.into());
        self
    }

    /// Sets an environment variable for this command.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.opts
            .env
            .push(format!("{}={}", key.into(), value.into()));
        self
    }

    /// The working directory for this command.
    pub fn workdir(mut self, dir: impl Into<String>) -> Self {
        self.opts.workdir = Some(dir.into());
        self
    }

    /// The user (`name`, `uid` or `uid:gid`) for this command.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.opts.user = Some(user.into());
        self
    }

    /// Gives up after `timeout` with [`Error::Timeout`], which carries what
    /// was printed so far. The process itself runs on until it ends or the
    /// container is removed: Docker cannot kill an exec.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.opts.timeout = Some(timeout);
        self
    }

    /// Makes it a conversation: await the result for an
    /// [`ExecSession`](crate::ExecSession) whose stdin is written while its
    /// output is read. Keeps this exec's options.
    pub fn interactive(self) -> crate::interactive::Interactive<'a> {
        crate::interactive::Interactive::new(self.container, self.cmd, self.opts)
    }
}

impl<'a> IntoFuture for Exec<'a> {
    type Output = Result<ExecOutput>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        let id = self.container.id().to_string();
        let (container, cmd, opts, check) = (self.container, self.cmd, self.opts, self.check);
        Box::pin(async move {
            if cmd.is_empty() {
                return Err(Error::InvalidSpec("exec needs a command".into()));
            }
            let name = container.name().to_string();
            let c = cmd.clone();
            let t0 = Instant::now();
            let result = on_engine(async move { run_exec(&id, &name, c, opts).await })
                .await?
                .with_context(container.name(), container.image(), &cmd);
            tracing::debug!(
                id = crate::trace::short(container.id()),
                name = container.name(),
                command = %shell_join(&cmd),
                exit_code = result.exit_code,
                elapsed_ms = crate::trace::ms(t0),
                "exec finished"
            );
            if check {
                result.success()
            } else {
                Ok(result)
            }
        })
    }
}

/// An exec's output stream, as bollard gives it.
pub(crate) type Output =
    Pin<Box<dyn Stream<Item = std::result::Result<LogOutput, bollard::errors::Error>> + Send>>;
/// An exec's stdin, as bollard gives it.
pub(crate) type Input = Pin<Box<dyn AsyncWrite + Send>>;

/// Creates `cmd` in container `id` as an exec attached to stdout and stderr
/// (and stdin when `attach_stdin`), with a terminal when `tty`, and starts
/// it: its id and its streams. `opts` gives env, user and workdir; errors
/// name `op()`.
pub(crate) async fn start_attached(
    docker: &bollard::Docker,
    id: &str,
    cmd: Vec<String>,
    opts: &mut ExecOpts,
    attach_stdin: bool,
    tty: bool,
    op: &(dyn Fn() -> String + Sync),
) -> Result<(String, Output, Input)> {
    let config = ExecConfig {
        attach_stdin: Some(attach_stdin),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(tty),
        env: (!opts.env.is_empty()).then(|| std::mem::take(&mut opts.env)),
        cmd: Some(cmd),
        user: opts.user.take(),
        working_dir: opts.workdir.take(),
        ..Default::default()
    };
    let exec_id = docker
        .create_exec(id, config)
        .await
        .map_err(|e| Error::docker(op(), e))?
        .id;
    let started = docker
        .start_exec(
            &exec_id,
            Some(StartExecOptions {
                tty,
                output_capacity: Some(64 * 1024),
                ..Default::default()
            }),
        )
        .await
        .map_err(|e| Error::docker(op(), e))?;
    let StartExecResults::Attached { output, input } = started else {
        unreachable!("exec started detached although detach was false")
    };
    Ok((exec_id, output, input))
}

/// Runs `cmd` in container `id` (called `name` in messages): create the
/// exec, attach, feed stdin, drain both streams to the end, then read the
/// exit code. Call on the engine runtime.
pub(crate) async fn run_exec(
    id: &str,
    name: &str,
    cmd: Vec<String>,
    mut opts: ExecOpts,
) -> Result<ExecOutput> {
    let docker = client().await?;
    let command = shell_join(&cmd);
    let op = || format!("exec `{command}` in {name}");
    let attach_stdin = opts.stdin.is_some();
    let (exec_id, output, input) =
        start_attached(docker, id, cmd, &mut opts, attach_stdin, false, &op).await?;
    let io = Io {
        output,
        input,
        stdin: opts.stdin,
        timeout: opts.timeout,
    };
    let out = io
        .run(name, &command)
        .await
        .map_err(|e| e.or_docker(op()))?;
    let exit_code = exit_code(docker, &exec_id)
        .await
        .map_err(|e| Error::docker(op(), e))?;
    Ok(ExecOutput::new(out.stdout, out.stderr, exit_code))
}

/// An attached process's streams, its stdin, and how long it may take.
pub(crate) struct Io {
    pub(crate) output:
        Pin<Box<dyn Stream<Item = std::result::Result<LogOutput, bollard::errors::Error>> + Send>>,
    pub(crate) input: Pin<Box<dyn AsyncWrite + Send>>,
    pub(crate) stdin: Option<Vec<u8>>,
    pub(crate) timeout: Option<Duration>,
}

/// Why draining stopped early.
pub(crate) enum IoError {
    /// The engine's stream failed.
    Docker(bollard::errors::Error),
    /// The timeout ran out; the error carries what was printed.
    Timeout(Error),
}

impl IoError {
    pub(crate) fn or_docker(self, op: String) -> Error {
        match self {
            IoError::Docker(e) => Error::docker(op, e),
            IoError::Timeout(e) => e,
        }
    }
}

impl Io {
    /// Feeds stdin and drains both streams to the end, within the timeout.
    /// `container` and `command` name it in a timeout error.
    pub(crate) async fn run(
        self,
        container: &str,
        command: &str,
    ) -> std::result::Result<Streams, IoError> {
        let mut out = Streams::default();
        let io = drive(self.output, self.input, self.stdin, &mut out);
        let finished = match self.timeout {
            Some(t) => tokio::time::timeout(t, io).await.ok(),
            None => Some(io.await),
        };
        match finished {
            Some(r) => r.map(|()| out).map_err(IoError::Docker),
            None => Err(IoError::Timeout(Error::Timeout {
                container: container.to_string(),
                command: command.to_string(),
                timeout: self.timeout.unwrap_or_default(),
                output: Box::new(ExecOutput::new(out.stdout, out.stderr, -1)),
            })),
        }
    }
}

/// The two output streams, appended to as frames arrive.
#[derive(Default)]
pub(crate) struct Streams {
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
}

/// Writes `stdin` (then closes it) while draining the output to its end.
/// Both at once: a command that echoes a large stdin back would otherwise
/// block on a full pipe while we block on writing.
pub(crate) async fn drive(
    mut output: Pin<
        Box<dyn Stream<Item = std::result::Result<LogOutput, bollard::errors::Error>> + Send>,
    >,
    mut input: Pin<Box<dyn AsyncWrite + Send>>,
    stdin: Option<Vec<u8>>,
    out: &mut Streams,
) -> std::result::Result<(), bollard::errors::Error> {
    let write = async move {
        if let Some(bytes) = stdin {
            // A command that exits without reading its stdin closes the pipe;
            // that is its business, not an error.
            let _ = input.write_all(&bytes).await;
            let _ = input.shutdown().await;
        }
        // Keep the write half alive until the end: dropping it early is fine
        // for hyper, but holding it makes the lifetime obvious.
        input
    };
    let read = async {
        while let Some(frame) = output.next().await {
            match frame? {
                LogOutput::StdErr { message } => out.stderr.extend_from_slice(&message),
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    out.stdout.extend_from_slice(&message)
                }
                LogOutput::StdIn { .. } => {}
            }
        }
        Ok(())
    };
    let (_input, read) = tokio::join!(write, read);
    read
}

/// Reads the exit code once the output has ended. Docker 20.10 always had it
/// at the first inspect; other engines may lag a moment, so retry briefly.
async fn exit_code(
    docker: &bollard::Docker,
    exec_id: &str,
) -> std::result::Result<i64, bollard::errors::Error> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut pause = Duration::from_millis(1);
    loop {
        let inspect = docker.inspect_exec(exec_id).await?;
        match (inspect.running, inspect.exit_code) {
            (Some(false) | None, Some(code)) => return Ok(code),
            _ if Instant::now() >= deadline => return Ok(-1),
            _ => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(50));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_passes_zero_and_explains_the_rest() {
        let ok = ExecOutput::new(b"x".to_vec(), vec![], 0);
        assert!(ok.clone().success().is_ok());

        let cmd = ["psql".to_string(), "-c".into(), "select 1".into()];
        let failed = ExecOutput::new(vec![], b"line1\nFATAL: no role\n".to_vec(), 2).with_context(
            "td-1",
            "postgres:16",
            &cmd,
        );
        let msg = failed.success().unwrap_err().to_string();
        assert_eq!(
            msg,
            "command `psql -c 'select 1'` in td-1 (postgres:16) exited with 2: line1\nFATAL: no role"
        );
    }

    #[test]
    fn text_accessors_are_lossy_not_failing() {
        let out = ExecOutput::new(vec![0xff, b'a'], b"e\n".to_vec(), 0);
        assert_eq!(out.stdout_text(), "\u{fffd}a");
        assert_eq!(out.stderr_text(), "e\n");
    }
}
