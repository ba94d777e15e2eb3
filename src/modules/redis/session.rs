//! One `redis-cli` kept running in the server's container, fed commands on
//! its stdin. A `docker exec` per command costs ~20 ms or more; through the
//! session a command costs its round trip, well under a millisecond.
//!
//! With stdin not a terminal, redis-cli reads one command a line and
//! answers each at once, unbuffered. `--no-raw` keeps its typed output, so
//! an error (`(error) ERR …`) is told from a string (`"…"`). After each
//! command it is sent `ECHO <marker>`; everything before the quoted
//! marker is the command's answer.

use std::time::Duration;

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
        self.run_within(line, super::COMMAND_TIMEOUT).await
    }

    async fn run_within(
        &mut self,
        line: &str,
        timeout: Duration,
    ) -> std::result::Result<String, Failure> {
        self.seq += 1;
        let mark = format!("__testdock_{}__", self.seq);
        self.session
            .write(format!("{line}\nECHO {mark}\n"))
            .map_err(|e| Failure::Ended(e.to_string()))?;
        let quoted = format!("\"{mark}\"\n");
        let out = self
            .session
            .read_until(&quoted, timeout)
            .await
            .map_err(|e| Failure::Ended(e.to_string()))?;
        let answer = out[..out.len() - quoted.len()].trim_end_matches('\n');
        match answer.strip_prefix("(error) ") {
            Some(error) => Err(Failure::Reply(error.to_string())),
            None => Ok(answer.to_string()),
        }
    }
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
