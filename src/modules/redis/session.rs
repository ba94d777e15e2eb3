//! One `redis-cli` kept running in the server's container, fed commands on
//! its stdin. A `docker exec` per command costs ~20 ms or more; through the
//! session a command costs its round trip, well under a millisecond.
//!
//! With stdin not a terminal, redis-cli reads one command a line and
//! answers each at once, unbuffered. `--no-raw` keeps its typed output, so
//! an error (`(error) ERR …`) is told from a string (`"…"`). After each
//! command it is sent `ECHO <marker>`; everything before the quoted
//! marker is the command's answer.

use tokio::sync::oneshot;

use super::COMMAND_TIMEOUT;
use crate::{ExecSession, Result, TestContainer};

/// A redis-cli session.
#[derive(Debug)]
pub(super) struct Cli {
    session: ExecSession,
    seq: u64,
}

/// Why a command did not succeed.
#[derive(Debug)]
pub(super) enum Failure {
    /// The server answered an error; the session is still good.
    Reply(String),
    /// redis-cli ended or did not answer in time; the session is done.
    Ended(String),
}

impl Cli {
    pub(super) async fn open(c: &TestContainer) -> Result<Cli> {
        let session = c
            .exec(["redis-cli", "-p", &super::PORT.to_string(), "--no-raw"])
            .interactive()
            .await?;
        Ok(Cli { session, seq: 0 })
    }

    /// Runs one command line (arguments split as redis-cli splits them:
    /// by spaces, `"…"` quoted) and returns its answer, as redis-cli
    /// prints it without a terminal.
    pub(super) async fn run(&mut self, line: &str) -> std::result::Result<String, Failure> {
        let mut answers = self.run_all(&[line.to_string()]).await;
        answers.pop().expect("one answer a line")
    }

    /// Runs command lines in order, written at once (pipelined: redis-cli
    /// answers each as it reads it), and returns an answer for each. Once
    /// redis-cli ends, the rest are `Ended` too.
    pub(super) async fn run_all(
        &mut self,
        lines: &[String],
    ) -> Vec<std::result::Result<String, Failure>> {
        let first = self.seq + 1;
        let mut script = String::new();
        for line in lines {
            self.seq += 1;
            script.push_str(&format!("{line}\nECHO __testdock_{}__\n", self.seq));
        }
        let mut ended = self.session.write(script).err().map(|e| e.to_string());
        let mut answers = Vec::with_capacity(lines.len());
        for seq in first..=self.seq {
            if let Some(why) = &ended {
                answers.push(Err(Failure::Ended(why.clone())));
                continue;
            }
            let quoted = format!("\"__testdock_{seq}__\"\n");
            match self.session.read_until(&quoted, COMMAND_TIMEOUT).await {
                Ok(out) => {
                    let answer = out[..out.len() - quoted.len()].trim_end_matches('\n');
                    answers.push(match answer.strip_prefix("(error) ") {
                        Some(error) => Err(Failure::Reply(error.to_string())),
                        None => Ok(answer.to_string()),
                    });
                }
                Err(e) => {
                    ended = Some(e.to_string());
                    answers.push(Err(Failure::Ended(e.to_string())));
                }
            }
        }
        answers
    }
}

type Reply = std::result::Result<String, Failure>;

/// The session shared by every caller of a process, with group commit:
/// commands asked for while a batch is in flight are queued and sent
/// together as the next batch, so eight takers at once cost about one round
/// trip each rather than eight in a row.
#[derive(Debug)]
pub(super) struct Pipe {
    queue: std::sync::Mutex<Vec<(String, oneshot::Sender<Reply>)>>,
    cli: tokio::sync::Mutex<Option<Cli>>,
}

impl Pipe {
    pub(super) fn new(cli: Cli) -> Pipe {
        Pipe {
            queue: Default::default(),
            cli: tokio::sync::Mutex::new(Some(cli)),
        }
    }

    /// Runs one command line: queued, then sent by whichever caller holds
    /// the session next (this one, or another that takes it along). A
    /// session that ended is opened again, and the batch's failed commands
    /// sent once more.
    pub(super) async fn run(&self, c: &TestContainer, line: &str) -> crate::Result<Reply> {
        let (tx, mut rx) = oneshot::channel();
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((line.to_string(), tx));
        let mut cli = tokio::select! {
            biased;
            answer = &mut rx => return Ok(answer.unwrap_or_else(|_| dropped())),
            cli = self.cli.lock() => cli,
        };
        let batch = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()));
        if !batch.is_empty() {
            let (lines, senders): (Vec<String>, Vec<_>) = batch.into_iter().unzip();
            let mut answers = run_batch(&mut cli, c, &lines).await?;
            for (tx, answer) in senders.into_iter().zip(answers.drain(..)) {
                let _ = tx.send(answer);
            }
        }
        drop(cli);
        // Ours was in this batch or in the one before it.
        Ok(rx.await.unwrap_or_else(|_| dropped()))
    }
}

/// What a caller gets whose batch was abandoned (its sender cancelled).
fn dropped() -> Reply {
    Err(Failure::Ended(
        "the batch carrying this command was abandoned".into(),
    ))
}

/// Runs `lines` on the session (opened if there is none); the ones that
/// found redis-cli ended are run again once on a new session.
async fn run_batch(
    cli: &mut Option<Cli>,
    c: &TestContainer,
    lines: &[String],
) -> crate::Result<Vec<Reply>> {
    let session = match cli {
        Some(s) => s,
        None => cli.insert(Cli::open(c).await?),
    };
    let mut answers = session.run_all(lines).await;
    let again: Vec<usize> = (0..answers.len())
        .filter(|&i| matches!(answers[i], Err(Failure::Ended(_))))
        .collect();
    if again.is_empty() {
        return Ok(answers);
    }
    *cli = None;
    let session = cli.insert(Cli::open(c).await?);
    let retry: Vec<String> = again.iter().map(|&i| lines[i].clone()).collect();
    for (i, answer) in again.into_iter().zip(session.run_all(&retry).await) {
        answers[i] = answer;
    }
    if answers.iter().any(|a| matches!(a, Err(Failure::Ended(_)))) {
        *cli = None;
    }
    Ok(answers)
}

/// An argument quoted for redis-cli's line splitting.
pub(super) fn quote(arg: &str) -> String {
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('"');
    for c in arg.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `(integer) 5` → 5.
pub(super) fn integer(answer: &str) -> Option<i64> {
    answer.trim().strip_prefix("(integer) ")?.parse().ok()
}

/// The strings of an array answer, `1) "a"` a line; an empty array
/// (`(empty array)`, redis-cli 6: `(empty list or set)`) gives none.
pub(super) fn strings(answer: &str) -> Vec<String> {
    answer
        .lines()
        .filter_map(|l| {
            let (_, item) = l.trim_start().split_once(") ")?;
            unquote(item)
        })
        .collect()
}

/// A string as redis-cli prints it: `"a \"b\""` → `a "b"`.
fn unquote(s: &str) -> Option<String> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_parsed_as_redis_cli_prints_them() {
        assert_eq!(integer("(integer) 17"), Some(17));
        assert_eq!(integer("\"17\""), None);
        let list = "1) \"1\"\n2) \"a|b \\\"c\\\"\"\n3) \"12\"\n4) \"x\"";
        assert_eq!(strings(list), ["1", "a|b \"c\"", "12", "x"]);
        assert!(strings("(empty array)").is_empty());
        assert!(strings("(empty list or set)").is_empty());
        assert_eq!(quote("a \"b\"\\"), "\"a \\\"b\\\"\\\\\"");
        assert_eq!(unquote(&quote("x\ny")).unwrap(), "x\ny");
    }
}
