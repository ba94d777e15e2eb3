//! The crate's one error type.

use std::path::PathBuf;
use std::time::Duration;

use crate::exec::ExecOutput;

/// `Result` with testdock's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, each variant with the context needed to act
/// on it.
///
/// Messages are one lowercase sentence and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No Docker-compatible engine answered a ping.
    #[error("cannot reach a Docker engine; tried {tried} (is the daemon running? set DOCKER_HOST to point at it)")]
    DockerUnavailable {
        /// Every endpoint tried, with why it failed.
        tried: String,
    },

    /// An image is not present and could not be pulled.
    #[error("image `{image}` is not available: {reason}")]
    ImageUnavailable {
        /// The image reference, or every reference of a fallback chain.
        image: String,
        /// Why, and what to do.
        reason: String,
    },

    /// A Dockerfile build failed.
    #[error("building image `{image}` failed: {reason}; last build output:\n{output_tail}")]
    BuildFailed {
        /// The reference being built.
        image: String,
        /// The engine's error.
        reason: String,
        /// The last lines the build printed.
        output_tail: String,
    },

    /// A bind mount's host path does not exist. Nothing was created.
    #[error("bind mount source `{}` does not exist (for `{target}` in the container); create it or fix the path", path.display())]
    BindPathMissing {
        /// The host path as given.
        path: PathBuf,
        /// Where it was to be mounted.
        target: String,
    },

    /// Bind mounts need the engine on this machine, and this one is not.
    #[error("cannot bind-mount `{}`: the engine at {endpoint} is not on this machine; copy the files in instead (`ContainerSpec::copy_file`, `TestContainer::copy_dir_in`)", path.display())]
    RemoteBindMount {
        /// The engine's endpoint.
        endpoint: String,
        /// The first host path that was to be mounted.
        path: PathBuf,
    },

    /// A builder was given something it cannot use. Nothing was created.
    #[error("invalid container spec: {0}")]
    InvalidSpec(String),

    /// A container port was asked for that the spec did not publish.
    #[error("port {port}/tcp of {container} is not published; add `.expose({port})` to its spec")]
    PortNotPublished {
        /// Container name.
        container: String,
        /// The container port asked for.
        port: u16,
    },

    /// An SQL script (a migration or init SQL) failed while building a
    /// template database; the half-made template has been dropped.
    #[error("migration `{file}` failed at line {line}: {message}")]
    Migration {
        /// The script: its path as given, or the name of an SQL string.
        file: String,
        /// psql's line number: where the failing statement ends.
        line: u32,
        /// The server's error, with psql's LINE/DETAIL/HINT lines.
        message: String,
    },

    /// A migrations directory is in no layout testdock can read, or mixes
    /// layouts: nothing was applied, rather than a silently empty schema.
    #[error("cannot read the migrations in `{dir}`: {found}")]
    MigrationLayout {
        /// The directory as given.
        dir: String,
        /// What was found there, and what each layout expects.
        found: String,
    },

    /// The user's own code that makes a template (a migrator run by
    /// `template(key, …)`) returned an error or panicked; the half-made
    /// template has been dropped, so the next call tries again.
    #[error("template `{key}` could not be made by its code: {message}")]
    Template {
        /// The template's key, as given (a version, or the files hashed).
        key: String,
        /// The code's error, or what it panicked with.
        message: String,
    },

    /// A command exited with a non-zero code where success was required.
    #[error("command `{command}` in {container} ({image}) exited with {exit_code}: {stderr_tail}")]
    ExecFailed {
        /// Container name.
        container: String,
        /// Image of the container.
        image: String,
        /// The command, shell-quoted for reading.
        command: String,
        /// The exit code.
        exit_code: i64,
        /// The last lines of its stderr (or stdout when stderr was empty).
        stderr_tail: String,
    },

    /// A command did not finish within its timeout. For a one-shot run the
    /// container has been removed; for an exec the process may still run
    /// until the container is removed.
    #[error(
        "command `{command}` in {container} did not finish within {timeout:?}; it printed: {}",
        tail_of(output)
    )]
    Timeout {
        /// Container name.
        container: String,
        /// The command, shell-quoted for reading.
        command: String,
        /// The timeout that ran out.
        timeout: Duration,
        /// What the command printed before the timeout (exit code -1).
        output: Box<ExecOutput>,
    },

    /// An interactive exec did not print what a read waited for: the read
    /// timed out, or the output ended first. The output stays to be read.
    #[error(
        "command `{command}` in {container} did not print `{pattern}`: {outcome} after {waited:?} (wait for what it prints, or give it longer); it printed: {}",
        tail_of(output)
    )]
    NotPrinted {
        /// Container name.
        container: String,
        /// The command, shell-quoted for reading.
        command: String,
        /// What the read waited for.
        pattern: String,
        /// "timed out" or "its output ended".
        outcome: String,
        /// How long the read waited.
        waited: Duration,
        /// What was printed and not yet read (exit code -1).
        output: Box<ExecOutput>,
    },

    /// A container did not become ready: the wait timed out, or the
    /// container exited or turned unhealthy while waited on. It has been
    /// removed.
    #[error("container {container} was not ready after {waited:?}: waited for {strategy}, but {outcome}; last log lines:\n{logs_tail}")]
    NotReady {
        /// Container name.
        container: String,
        /// What was waited for.
        strategy: String,
        /// What happened instead: "timed out", "it exited with code 1", ….
        outcome: String,
        /// How long it was waited for.
        waited: Duration,
        /// The tail of the container's stdout and stderr.
        logs_tail: String,
    },

    /// Reading or packing a local file failed.
    #[error("{context}: {cause}")]
    Io {
        /// What was being done, naming the path.
        context: String,
        /// The underlying error.
        cause: std::io::Error,
    },

    /// The Docker API refused or failed an operation.
    #[error("docker {op} failed: {cause}")]
    Docker {
        /// The operation and the object it was on.
        op: String,
        /// The engine's answer.
        cause: bollard::errors::Error,
    },
}

impl Error {
    pub(crate) fn docker(op: impl Into<String>, cause: bollard::errors::Error) -> Self {
        Error::Docker {
            op: op.into(),
            cause,
        }
    }

    pub(crate) fn io(context: impl Into<String>, cause: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            cause,
        }
    }
}

/// HTTP status of a Docker API error, if it is one.
pub(crate) fn status_of(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn tail_of(out: &ExecOutput) -> String {
    let mut s = String::new();
    for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let tail = crate::util::tail_lines(&String::from_utf8_lossy(bytes), 10);
        if !tail.is_empty() {
            s.push_str(&format!("\n--- {name} ---\n{tail}"));
        }
    }
    if s.is_empty() {
        s.push_str("nothing");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_sentence_with_the_fix() {
        let e = Error::BindPathMissing {
            path: "/no/such".into(),
            target: "/data".into(),
        };
        assert_eq!(
            e.to_string(),
            "bind mount source `/no/such` does not exist (for `/data` in the container); create it or fix the path"
        );
        let e = Error::ExecFailed {
            container: "td-1".into(),
            image: "img".into(),
            command: "false".into(),
            exit_code: 1,
            stderr_tail: "boom".into(),
        };
        assert_eq!(
            e.to_string(),
            "command `false` in td-1 (img) exited with 1: boom"
        );
    }

    #[test]
    fn timeout_shows_partial_output() {
        let out = ExecOutput::new(b"so far\n".to_vec(), Vec::new(), -1);
        let e = Error::Timeout {
            container: "c".into(),
            command: "sleep 9".into(),
            timeout: Duration::from_millis(500),
            output: Box::new(out),
        };
        let msg = e.to_string();
        assert!(msg.contains("within 500ms"), "{msg}");
        assert!(msg.contains("--- stdout ---\nso far"), "{msg}");
    }
}
