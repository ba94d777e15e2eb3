//! `Migrations`: the SQL a template database is made from, and the hash
//! that names it.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// SQL scripts applied, in order, once per server into a template database
/// that every fresh database is cloned from.
///
/// The template is named `tmpl_<hash>`, the hash covering every script's
/// name and text: a changed schema makes a new template, an unchanged one is
/// reused. Directories are read when a template is asked for, so an edit
/// between two calls is seen.
///
/// # Examples
///
/// ```
/// use testdock::postgres::Migrations;
///
/// let m = Migrations::new()
///     .dir("fixtures/sql") // every *.sql in it, in name order
///     .sql("seed", "INSERT INTO users (name) VALUES ('ada')");
/// # let _ = m;
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Migrations {
    sources: Vec<Source>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    Dir(PathBuf),
    Sql { name: String, text: String },
}

/// One script, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Script {
    /// As errors name it: the path as given, or the name of an SQL string.
    pub(crate) name: String,
    pub(crate) text: String,
}

impl Migrations {
    /// No scripts: the template is an empty database.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds every `*.sql` file in `dir` (relative paths are from the current
    /// directory, the package root under `cargo test`), in name order.
    /// Other files and subdirectories are ignored.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.sources.push(Source::Dir(dir.into()));
        self
    }

    /// Adds a script given as text; `name` stands for it in errors.
    pub fn sql(mut self, name: impl Into<String>, text: impl Into<String>) -> Self {
        self.sources.push(Source::Sql {
            name: name.into(),
            text: text.into(),
        });
        self
    }

    /// Adds the scripts of `other` after these.
    pub fn append(mut self, other: Migrations) -> Self {
        self.sources.extend(other.sources);
        self
    }

    /// Whether no script was added.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// The name of the template these scripts make, `tmpl_<16 hex digits>`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when a directory or a file cannot be read.
    pub fn template_name(&self) -> Result<String> {
        Ok(template_name(&self.load()?))
    }

    /// Every script, read, in order.
    /// [`load`](Migrations::load) on a blocking thread: file reads must not
    /// hold one of the engine runtime's two workers.
    pub(crate) async fn load_off_runtime(&self) -> Result<Vec<Script>> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.load())
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    pub(crate) fn load(&self) -> Result<Vec<Script>> {
        let mut scripts = Vec::new();
        for source in &self.sources {
            match source {
                Source::Dir(dir) => scripts.extend(read_dir(dir)?),
                Source::Sql { name, text } => scripts.push(Script {
                    name: name.clone(),
                    text: text.clone(),
                }),
            }
        }
        Ok(scripts)
    }
}

fn read_dir(dir: &Path) -> Result<Vec<Script>> {
    let io = |e| {
        Error::io(
            format!("cannot read the migrations directory `{}`", dir.display()),
            e,
        )
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql") && p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Error::io(format!("cannot read migration `{}`", path.display()), e))?;
            Ok(Script {
                name: path.to_string_lossy().into_owned(),
                text,
            })
        })
        .collect()
}

/// `tmpl_` and 64 bits of a hash over each script's file name (not its
/// directory: moving the fixtures does not change the schema) and text.
pub(crate) fn template_name(scripts: &[Script]) -> String {
    let mut h = Sha256::new();
    for s in scripts {
        let base = Path::new(&s.name)
            .file_name()
            .map_or_else(|| s.name.clone(), |n| n.to_string_lossy().into_owned());
        for part in [base.as_bytes(), s.text.as_bytes()] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
    }
    format!("tmpl_{}", crate::util::hex(&h.finalize()[..8]))
}

/// A failed script, as psql reports it: `psql:<file>:<line>: ERROR:  …`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) file: String,
    pub(crate) line: u32,
    /// The error and what psql printed after it (LINE, DETAIL, HINT).
    pub(crate) message: String,
}

/// Finds the first error psql reported for a file in its stderr.
pub(crate) fn parse_failure(stderr: &str) -> Option<Failure> {
    let mut lines = stderr.lines();
    let (file, line, first) = lines.by_ref().find_map(|l| {
        let rest = l.strip_prefix("psql:")?;
        // The file name may contain ':'; the line number and the severity
        // follow the last "<digits>: " before the severity.
        let (head, message) = ["ERROR:", "FATAL:", "PANIC:"].iter().find_map(|sev| {
            rest.find(&format!(": {sev}"))
                .map(|i| (&rest[..i], &rest[i + 2..]))
        })?;
        let (file, line) = head.rsplit_once(':')?;
        Some((file.to_string(), line.parse().ok()?, message.to_string()))
    })?;
    let mut message = first;
    for l in lines.take_while(|l| !l.starts_with("psql:")) {
        message.push('\n');
        message.push_str(l);
    }
    Some(Failure {
        file,
        line,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(name: &str, text: &str) -> Script {
        Script {
            name: name.into(),
            text: text.into(),
        }
    }

    #[test]
    fn the_template_name_follows_the_sql_not_the_directory() {
        let a = template_name(&[script("a/001.sql", "create table t (x int);")]);
        let b = template_name(&[script("b/001.sql", "create table t (x int);")]);
        let c = template_name(&[script("a/001.sql", "create table t (x bigint);")]);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.starts_with("tmpl_") && a.len() == 21, "{a}");
        // Moving text from one script to the next is a different schema.
        let d = template_name(&[script("1.sql", "ab"), script("2.sql", "c")]);
        let e = template_name(&[script("1.sql", "a"), script("2.sql", "bc")]);
        assert_ne!(d, e);
    }

    #[test]
    fn psql_errors_name_file_and_line() {
        let stderr = "psql:/tmp/testdock-sql/tmpl_x/002_bad.sql:3: ERROR:  syntax error at or near \"SELEC\"\n\
                      LINE 1: SELEC 1;\n        ^\n";
        assert_eq!(
            parse_failure(stderr),
            Some(Failure {
                file: "/tmp/testdock-sql/tmpl_x/002_bad.sql".into(),
                line: 3,
                message: "ERROR:  syntax error at or near \"SELEC\"\nLINE 1: SELEC 1;\n        ^"
                    .into(),
            })
        );
        assert_eq!(parse_failure("ERROR:  no file here\n"), None);
        let odd = parse_failure("psql:/tmp/a:b.sql:12: FATAL:  boom\n").unwrap();
        assert_eq!((odd.file.as_str(), odd.line), ("/tmp/a:b.sql", 12));
    }

    #[test]
    fn a_missing_directory_is_an_io_error_naming_it() {
        let err = Migrations::new().dir("no/such/dir").load().unwrap_err();
        assert!(err.to_string().contains("`no/such/dir`"), "{err}");
    }
}
