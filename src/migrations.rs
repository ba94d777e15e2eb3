//! `Migrations`: the SQL a template database is made from, and the hash
//! that names it; shared by the database fixtures.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

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

/// What names a template made by code ([`Postgres::template`]): a
/// version the user bumps, or a hash of the files the code reads, so an
/// edit makes a new template and an unchanged one is reused.
///
/// [`Postgres::template`]: crate::postgres::Postgres::template
///
/// # Examples
///
/// ```
/// use testdock::TemplateKey;
///
/// let by_hand = TemplateKey::version("schema-v7");
/// let by_files = TemplateKey::files(["migrations", "src/migrator"]); // hashed when used
/// # let _ = (by_hand, by_files);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TemplateKey(KeySource);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum KeySource {
    Version(String),
    Files(Vec<PathBuf>),
}

impl TemplateKey {
    /// A key given by hand: change it when the migrations change.
    pub fn version(version: impl Into<String>) -> Self {
        TemplateKey(KeySource::Version(version.into()))
    }

    /// A key that is a hash of these files and of every file under these
    /// directories (names relative to each path given, and contents), read
    /// each time a template is asked for.
    pub fn files<P: Into<PathBuf>>(paths: impl IntoIterator<Item = P>) -> Self {
        TemplateKey(KeySource::Files(
            paths.into_iter().map(Into::into).collect(),
        ))
    }

    /// How errors name the key.
    pub(crate) fn label(&self) -> String {
        match &self.0 {
            KeySource::Version(v) => v.clone(),
            KeySource::Files(paths) => {
                let names: Vec<_> = paths.iter().map(|p| p.display().to_string()).collect();
                format!("files {}", names.join(", "))
            }
        }
    }

    /// What goes into the template's hash: the version, or the files.
    pub(crate) fn resolve(&self) -> Result<String> {
        match &self.0 {
            KeySource::Version(v) => Ok(format!("version:{v}")),
            KeySource::Files(paths) => {
                let mut h = Sha256::new();
                for root in paths {
                    let mut files = Vec::new();
                    walk(root, root, &mut files)?;
                    files.sort();
                    h.update(root.to_string_lossy().as_bytes());
                    for (rel, path) in files {
                        let text = std::fs::read(&path).map_err(|e| {
                            Error::io(
                                format!("cannot read `{}` for a template key", path.display()),
                                e,
                            )
                        })?;
                        for part in [rel.as_bytes(), &text[..]] {
                            h.update((part.len() as u64).to_le_bytes());
                            h.update(part);
                        }
                    }
                }
                Ok(format!("files:{}", crate::util::hex(&h.finalize())))
            }
        }
    }
}

impl From<&str> for TemplateKey {
    fn from(version: &str) -> Self {
        TemplateKey::version(version)
    }
}

impl From<String> for TemplateKey {
    fn from(version: String) -> Self {
        TemplateKey::version(version)
    }
}

/// Every file under `path` (or `path` itself), with its name relative to
/// `root`.
fn walk(root: &Path, path: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
    let io = |e| {
        Error::io(
            format!("cannot read `{}` for a template key", path.display()),
            e,
        )
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_file() {
        let rel = path.strip_prefix(root).unwrap_or(path);
        out.push((rel.to_string_lossy().into_owned(), path.to_path_buf()));
        return Ok(());
    }
    for entry in std::fs::read_dir(path).map_err(io)? {
        walk(root, &entry.map_err(io)?.path(), out)?;
    }
    Ok(())
}

/// The template database the user's code migrates, as that code is
/// handed it: a URL for any client, and its parts.
#[derive(Clone, Debug)]
pub struct TemplateDb {
    pub(crate) url: String,
    pub(crate) name: String,
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl TemplateDb {
    /// A URL to the template database, with the superuser's credentials.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the server is reached from this process.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The server's published port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// Any error the user's code returns.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

type CodeFn = dyn Fn(TemplateDb) -> Pin<Box<dyn Future<Output = std::result::Result<(), BoxError>> + Send>>
    + Send
    + Sync;

/// The user's code that makes a template, and the key that names it.
#[derive(Clone)]
pub(crate) struct TemplateCode {
    pub(crate) key: TemplateKey,
    make: Arc<CodeFn>,
}

impl std::fmt::Debug for TemplateCode {
    // The key stands for the code: it is what tells two templates apart.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemplateCode")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl PartialEq for TemplateCode {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for TemplateCode {}

impl TemplateCode {
    pub(crate) fn new<F, Fut, E>(key: TemplateKey, make: F) -> Self
    where
        F: Fn(TemplateDb) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        let make: Arc<CodeFn> = Arc::new(move |db| {
            let fut = make(db);
            Box::pin(async move { fut.await.map_err(Into::into) })
        });
        TemplateCode { key, make }
    }

    /// Runs the code on its own task, so a panic in it is an error for the
    /// callers, never a hang, and it never holds one of the engine
    /// runtime's workers longer than it awaits.
    pub(crate) async fn run(&self, db: TemplateDb) -> Result<()> {
        let failed = |message: String| Error::Template {
            key: self.key.label(),
            message,
        };
        match tokio::spawn((self.make)(db)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(failed(e.to_string())),
            Err(e) => {
                let why = match e.try_into_panic() {
                    Ok(p) => p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".into()),
                    Err(e) => e.to_string(),
                };
                Err(failed(format!("it panicked: {why}")))
            }
        }
    }
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
    fn a_missing_directory_is_an_io_error_naming_it() {
        let err = Migrations::new().dir("no/such/dir").load().unwrap_err();
        assert!(err.to_string().contains("`no/such/dir`"), "{err}");
    }
}
