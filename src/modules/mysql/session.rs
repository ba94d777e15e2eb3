//! One `mariadb` (or `mysql`) client kept running in the server's
//! container, fed statements on its stdin. A `docker exec` costs 20–100 ms
//! here; through the session a statement costs only its SQL.
//!
//! The client runs with `--force`, so a failed statement is reported and
//! the session goes on. After each statement come two markers: a
//! `SELECT '<mark>'` (a row on stdout) and a `SELECT <mark>` that fails as
//! an unknown column (an error line on stderr). The client writes a statement's
//! rows and its error before the next statement's, so everything before
//! the markers is the statement's.

use std::time::Duration;

use crate::{ExecSession, Result, TestContainer};

/// A client session in the server's container.
#[derive(Debug)]
pub(crate) struct Session {
    exec: ExecSession,
    seq: u64,
}

/// Why a statement did not succeed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The server refused it; the client's message. The session is good.
    Sql(String),
    /// The client ended or stopped answering; why. The session is done.
    Ended(String),
}

impl Session {
    /// Starts `client` as `root` over the container's Unix socket, in no
    /// database.
    pub(crate) async fn open(c: &TestContainer, client: &str, password: &str) -> Result<Session> {
        let exec = c
            .exec(client_command(client, &[]))
            .env("MYSQL_PWD", password)
            .interactive()
            .await?;
        Ok(Session { exec, seq: 0 })
    }

    /// Runs SQL (one or more statements) and returns the rows it printed,
    /// tab-separated, one a line; within `timeout`.
    pub(crate) async fn run(
        &mut self,
        sql: &str,
        timeout: Duration,
    ) -> std::result::Result<String, Failure> {
        self.seq += 1;
        let mark = format!("__testdock_mark_{}__", self.seq);
        let sql = sql.trim_end().trim_end_matches(';');
        let script = format!("{sql};\nSELECT '{mark}';\nSELECT {mark};\n");
        if let Err(e) = self.exec.write(script) {
            return Err(Failure::Ended(e.to_string()));
        }
        let ended = |e: crate::Error| Failure::Ended(e.to_string());
        let rows = self
            .exec
            .read_until(&format!("{mark}\n"), timeout)
            .await
            .map_err(ended)?;
        // With --force the client frames a failed statement's text in
        // dashes before its error: the marker's own error line is the one
        // that names it as a column.
        let errors = self
            .exec
            .read_until_stderr(&format!("Unknown column '{mark}'"), timeout)
            .await
            .map_err(ended)?;
        // The rest of the marker's error line.
        self.exec
            .read_until_stderr("\n", timeout)
            .await
            .map_err(ended)?;
        let errors: Vec<&str> = errors
            .lines()
            .filter(|l| l.starts_with("ERROR") && !l.contains(&mark))
            .collect();
        if !errors.is_empty() {
            return Err(Failure::Sql(errors.join("\n")));
        }
        let rows = &rows[..rows.len() - mark.len() - 1];
        Ok(rows.to_string())
    }
}

/// The client's command line: batch output (tab-separated, no headers,
/// not buffered), over the socket, as root (the password in `MYSQL_PWD`).
pub(crate) fn client_command(client: &str, extra: &[&str]) -> Vec<String> {
    let mut cmd = vec![
        client.to_string(),
        "--protocol=socket".into(),
        "-uroot".into(),
        "--batch".into(),
        "--skip-column-names".into(),
        "--unbuffered".into(),
        "--force".into(),
    ];
    cmd.extend(extra.iter().map(|s| s.to_string()));
    cmd
}
