//! One psql kept running in the server's container, fed statements on its
//! stdin. A `docker exec` costs ~100 ms here; through the session a clone
//! costs only its SQL (~15 ms).
//!
//! The protocol uses only what psql 11 has: `\echo` and `\qecho` (every
//! version), `\o FILE` (every version) and the `ERROR` variable (psql 11).
//! Not `\warn` (psql 13): psql 12 answers it "invalid command". A psql
//! older than 11 prints `:ERROR` as it is, and is refused at once.

use std::pin::Pin;

use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::engine::client;
use crate::{Error, Result};

type Output =
    Pin<Box<dyn Stream<Item = std::result::Result<LogOutput, bollard::errors::Error>> + Send>>;

/// A psql session, to be used on the engine runtime only: its streams
/// belong to that runtime.
pub(crate) struct Session {
    input: Pin<Box<dyn AsyncWrite + Send>>,
    output: Output,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    seq: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("seq", &self.seq).finish()
    }
}

/// Why a statement did not succeed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The server refused it; psql's message. The session is still good.
    Sql(String),
    /// psql ended (it could not connect, or lost the connection); what it
    /// printed to stderr last. The session is done.
    Ended(String),
    /// This psql cannot run the protocol (older than 11); why. Trying
    /// again cannot help.
    Unsupported(String),
}

impl Session {
    /// Starts `psql` as `user` on `db` over the container's Unix socket.
    /// No `ON_ERROR_STOP`: a failed statement is reported and the session
    /// goes on.
    pub(crate) async fn open(container_id: &str, user: &str, db: &str) -> Result<Session> {
        let docker = client().await?;
        let cmd = ["psql", "-X", "-w", "-q", "-A", "-t", "-U", user, "-d", db];
        let op = || format!("start a psql session in {container_id}");
        let config = ExecConfig {
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        let id = docker
            .create_exec(container_id, config)
            .await
            .map_err(|e| Error::docker(op(), e))?
            .id;
        let started = docker
            .start_exec(&id, None::<StartExecOptions>)
            .await
            .map_err(|e| Error::docker(op(), e))?;
        let StartExecResults::Attached { output, input } = started else {
            unreachable!("exec started detached although detach was false")
        };
        Ok(Session {
            input,
            output,
            stdout: Vec::new(),
            stderr: Vec::new(),
            seq: 0,
        })
    }

    /// Runs one statement (no trailing `;`) and returns the rows it printed.
    ///
    /// After it, psql echoes a marker and whether it failed to stdout, and
    /// the marker to stderr: everything before the markers is this
    /// statement's.
    pub(crate) async fn run(&mut self, sql: &str) -> std::result::Result<String, Failure> {
        self.seq += 1;
        let mark = format!("__testdock_{}__", self.seq);
        let script = script(sql, &mark);
        if let Err(e) = self.send(script.as_bytes()).await {
            return Err(self.ended(&format!("cannot write to psql: {e}")));
        }
        let (mut result, mut errors) = (None, None);
        loop {
            if result.is_none() {
                result = take_through_line(&mut self.stdout, |l| {
                    let rest = l.strip_prefix(&mark)?.strip_prefix(' ')?;
                    Some(match rest.trim() {
                        "true" => Outcome::Failed,
                        "false" => Outcome::Succeeded,
                        other => Outcome::Unknown(other.to_string()),
                    })
                });
            }
            if let Some((_, Outcome::Unknown(what))) = &result {
                return Err(Failure::Unsupported(format!(
                    "psql printed `{what}` for its ERROR variable: it is older than 11, and \
                     testdock's admin session needs psql 11 or newer (a PostgreSQL 11+ image)"
                )));
            }
            if errors.is_none() {
                errors = take_through_line(&mut self.stderr, |l| (l == mark).then_some(()));
            }
            if let (Some((rows, outcome)), Some((stderr, ()))) = (&result, &errors) {
                let text = String::from_utf8_lossy(stderr).trim_end().to_string();
                return if matches!(outcome, Outcome::Failed) {
                    Err(Failure::Sql(text))
                } else {
                    Ok(String::from_utf8_lossy(rows).into_owned())
                };
            }
            match self.output.next().await {
                Some(Ok(LogOutput::StdErr { message })) => self.stderr.extend_from_slice(&message),
                Some(Ok(LogOutput::StdOut { message } | LogOutput::Console { message })) => {
                    self.stdout.extend_from_slice(&message)
                }
                Some(Ok(LogOutput::StdIn { .. })) => {}
                Some(Err(e)) => return Err(self.ended(&format!("reading psql failed: {e}"))),
                None => return Err(self.ended("psql exited")),
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.input.write_all(bytes).await?;
        self.input.flush().await
    }

    fn ended(&mut self, why: &str) -> Failure {
        let stderr = String::from_utf8_lossy(&self.stderr);
        let tail = crate::util::tail_lines(&stderr, 10);
        Failure::Ended(if tail.is_empty() {
            why.to_string()
        } else {
            format!("{why}: {tail}")
        })
    }
}

/// What the stdout marker said of a statement.
enum Outcome {
    Succeeded,
    Failed,
    /// Neither `true` nor `false`: psql has no `ERROR` variable.
    Unknown(String),
}

/// A statement and its markers: `mark` and `ERROR` to stdout (`\echo`),
/// then `mark` to stderr by pointing the query output there for one
/// `\qecho` (`\o` alone points it back). psql writes errors to stderr
/// unbuffered and closes the `\o` file at once, so the stderr marker comes
/// after the statement's messages.
fn script(sql: &str, mark: &str) -> String {
    format!("{sql};\n\\echo {mark} :ERROR\n\\o /dev/stderr\n\\qecho {mark}\n\\o\n")
}

/// Finds the first complete line for which `matches` says yes, and takes
/// everything before it (and the line) out of `buf`.
fn take_through_line<T>(
    buf: &mut Vec<u8>,
    matches: impl Fn(&str) -> Option<T>,
) -> Option<(Vec<u8>, T)> {
    let mut start = 0;
    while let Some(len) = buf[start..].iter().position(|b| *b == b'\n') {
        let line = String::from_utf8_lossy(&buf[start..start + len]);
        if let Some(found) = matches(&line) {
            let before = buf[..start].to_vec();
            buf.drain(..start + len + 1);
            return Some((before, found));
        }
        start += len + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_taken_only_when_complete() {
        let mark = |l: &str| (l == "M").then_some(());
        let mut buf = b"row 1\nrow 2\nM".to_vec();
        assert!(take_through_line(&mut buf, mark).is_none());
        buf.extend_from_slice(b"\nnext\n");
        let (before, ()) = take_through_line(&mut buf, mark).unwrap();
        assert_eq!(before, b"row 1\nrow 2\n");
        assert_eq!(buf, b"next\n");
    }
}
