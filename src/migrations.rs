//! `Migrations`: the SQL a template database is made from, and the hash
//! that names it; shared by the database fixtures.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// What a template database is made from, applied in the order added,
/// once per server (once per run when the server is shared run-wide):
/// directories of SQL in the layouts of the ecosystem's migrators, SQL
/// given as text, and the user's own migrator code.
///
/// The template is named `tmpl_<hash>`, the hash covering every script's
/// name and text and every code step's [`TemplateKey`]: a changed schema
/// makes a new template, an unchanged one is reused. Directories are read
/// when a template is asked for, so an edit between two calls is seen.
///
/// # Directory layouts
///
/// [`dir`](Migrations::dir) tells the layout from the files; the named
/// constructors insist on one. Only the "up" half is applied:
///
/// | layout | files | order |
/// |---|---|---|
/// | sqlx | `<version>_<name>.sql`, or `.up.sql`/`.down.sql` pairs | version, as a number |
/// | refinery | `V<n>__<name>.sql` (`U<n>__` undo files ignored) | `n`, as a number |
/// | diesel | `<timestamp>_<name>/up.sql` (and `down.sql`) | directory name |
/// | plain | any `*.sql` | file name |
///
/// A directory that fits none of them (no migrations at all, layouts mixed,
/// a diesel directory without `up.sql`, refinery's Rust migrations, two
/// files with one version) is [`Error::MigrationLayout`] saying what it
/// found — never a silently empty schema.
///
/// # Examples
///
/// ```
/// use testdock::postgres::Migrations;
///
/// let m = Migrations::new()
///     .dir("fixtures/sql") // layout detected from the files
///     .sql("seed", "INSERT INTO users (name) VALUES ('ada')");
/// # let _ = m;
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Migrations {
    sources: Vec<Source>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    Dir(PathBuf, Option<Layout>),
    Sql { name: String, text: String },
    Code(TemplateCode),
}

/// How a migrations directory is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    Sqlx,
    Refinery,
    Diesel,
    Plain,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::Sqlx => "sqlx",
            Layout::Refinery => "refinery",
            Layout::Diesel => "diesel",
            Layout::Plain => "plain SQL",
        }
    }
}

/// One script, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Script {
    /// As errors name it: the path as given, or the name of an SQL string.
    pub(crate) name: String,
    pub(crate) text: String,
}

/// One step of making a template, read and ready to apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Sql(Script),
    /// The user's code, with its key resolved (files hashed).
    Code(TemplateCode, String),
}

impl Migrations {
    /// No scripts: the template is an empty database.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the migrations in `dir` (relative paths are from the current
    /// directory, the package root under `cargo test`), its layout told
    /// from its files: see [Directory layouts](Migrations#directory-layouts).
    pub fn dir(self, dir: impl Into<PathBuf>) -> Self {
        self.source(Source::Dir(dir.into(), None))
    }

    /// Adds a directory of sqlx migrations (`migrations/` of
    /// `sqlx::migrate!()`): `<version>_<name>.sql`, or reversible
    /// `<version>_<name>.up.sql` (the `.down.sql` is skipped), by version.
    pub fn sqlx(self, dir: impl Into<PathBuf>) -> Self {
        self.source(Source::Dir(dir.into(), Some(Layout::Sqlx)))
    }

    /// Adds a directory of refinery migrations: `V<n>__<name>.sql` by `n`;
    /// `U<n>__` undo files are skipped.
    pub fn refinery(self, dir: impl Into<PathBuf>) -> Self {
        self.source(Source::Dir(dir.into(), Some(Layout::Refinery)))
    }

    /// Adds a diesel `migrations/` directory: `up.sql` of each
    /// `<timestamp>_<name>/` directory, in directory order.
    pub fn diesel(self, dir: impl Into<PathBuf>) -> Self {
        self.source(Source::Dir(dir.into(), Some(Layout::Diesel)))
    }

    /// Adds every `*.sql` file in `dir`, in name order; nothing else in it
    /// is read.
    pub fn plain(self, dir: impl Into<PathBuf>) -> Self {
        self.source(Source::Dir(dir.into(), Some(Layout::Plain)))
    }

    /// Adds a script given as text; `name` stands for it in errors.
    pub fn sql(self, name: impl Into<String>, text: impl Into<String>) -> Self {
        self.source(Source::Sql {
            name: name.into(),
            text: text.into(),
        })
    }

    /// Adds the user's own code — a migrator — run once per template into
    /// the template database, whose URL it is handed; what it records of
    /// itself (`_sqlx_migrations`, `seaql_migrations`, …) lands in the
    /// template, so the same migrator run again on a fresh database finds
    /// nothing to do. `key` names what the code makes: the code itself is
    /// not hashed, so change the key (or name the files it reads) when the
    /// schema changes. An error it returns, or a panic, is
    /// [`Error::Template`] for every caller waiting on the template.
    pub fn code<F, Fut, E>(self, key: impl Into<TemplateKey>, make: F) -> Self
    where
        F: Fn(TemplateDb) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        self.source(Source::Code(TemplateCode::new(key.into(), make)))
    }

    /// Adds the steps of `other` after these.
    pub fn append(mut self, other: Migrations) -> Self {
        self.sources.extend(other.sources);
        self
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    fn source(mut self, source: Source) -> Self {
        self.sources.push(source);
        self
    }

    /// The name of the template these steps make, `tmpl_<16 hex digits>`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when a directory or a file cannot be read;
    /// [`Error::MigrationLayout`] for a directory in no known layout.
    pub fn template_name(&self) -> Result<String> {
        Ok(template_name(&self.load()?))
    }

    /// [`load`](Migrations::load) on a blocking thread: file reads must not
    /// hold one of the engine runtime's two workers.
    pub(crate) async fn load_off_runtime(&self) -> Result<Vec<Step>> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.load())
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// What the files this reads look like from their metadata (paths,
    /// sizes, modification times): when it is unchanged, so are the steps,
    /// and a take need not read them again. `None` — read them — when a
    /// file cannot be seen or changed in the last two seconds: timestamps
    /// are coarse, and a second edit within one tick would keep them.
    pub(crate) fn fingerprint(&self) -> Option<u64> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let recent = std::time::SystemTime::now() - std::time::Duration::from_secs(2);
        let mut files = Vec::new();
        for source in &self.sources {
            match source {
                Source::Dir(dir, _) => stat_tree(dir, &mut files).ok()?,
                Source::Code(code) => {
                    if let KeySource::Files(paths) = &code.key.0 {
                        for root in paths {
                            stat_tree(root, &mut files).ok()?;
                        }
                    }
                }
                Source::Sql { .. } => {}
            }
        }
        for (path, meta) in files {
            let modified = meta.modified().ok()?;
            if modified > recent {
                return None;
            }
            (path, meta.len(), modified).hash(&mut h);
        }
        Some(h.finish())
    }

    /// Every step, read, in order.
    pub(crate) fn load(&self) -> Result<Vec<Step>> {
        let mut steps = Vec::new();
        for source in &self.sources {
            match source {
                Source::Dir(dir, layout) => {
                    steps.extend(read_dir(dir, *layout)?.into_iter().map(Step::Sql));
                }
                Source::Sql { name, text } => steps.push(Step::Sql(Script {
                    name: name.clone(),
                    text: text.clone(),
                })),
                Source::Code(code) => steps.push(Step::Code(code.clone(), code.key.resolve()?)),
            }
        }
        Ok(steps)
    }
}

/// A migration file found in a directory: its sort key and path.
type Found = (u128, String, PathBuf);

/// Reads `dir` in `layout`, or in the one layout its files fit.
fn read_dir(dir: &Path, layout: Option<Layout>) -> Result<Vec<Script>> {
    let io = |e| {
        Error::io(
            format!("cannot read the migrations directory `{}`", dir.display()),
            e,
        )
    };
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let Some(name) = name.filter(|n| !n.starts_with('.')) else {
            continue;
        };
        if path.is_dir() {
            dirs.push((name, path));
        } else {
            files.push((name, path));
        }
    }
    files.sort();
    dirs.sort();
    let bad = |found: String| Error::MigrationLayout {
        dir: dir.display().to_string(),
        found,
    };
    let layout = match layout {
        Some(layout) => layout,
        None => detect(&files, &dirs).map_err(bad)?,
    };
    let mut found = list(layout, &files, &dirs).map_err(bad)?;
    found.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let numbered = matches!(layout, Layout::Sqlx | Layout::Refinery);
    if let Some(w) = found.windows(2).find(|w| numbered && w[0].0 == w[1].0) {
        return Err(bad(format!(
            "two migrations have version {}: `{}` and `{}`",
            w[0].0, w[0].1, w[1].1
        )));
    }
    found
        .into_iter()
        .map(|(_, _, path)| {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Error::io(format!("cannot read migration `{}`", path.display()), e))?;
            Ok(Script {
                name: path.to_string_lossy().into_owned(),
                text,
            })
        })
        .collect()
}

/// The layout whose files these are: diesel if there are only migration
/// directories, else the one every `.sql` file fits.
fn detect(
    files: &[(String, PathBuf)],
    dirs: &[(String, PathBuf)],
) -> std::result::Result<Layout, String> {
    let sql: Vec<&str> = files
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    if !dirs.is_empty() && sql.is_empty() {
        return Ok(Layout::Diesel);
    }
    if sql.is_empty() {
        return Err(nothing_found(files, dirs));
    }
    if !dirs.is_empty() && dirs.iter().any(|(_, p)| p.join("up.sql").is_file()) {
        return Err(format!(
            "both diesel directories ({}) and SQL files ({}); keep one layout",
            sample(dirs.iter().map(|(n, _)| n.as_str())),
            sample(sql.iter().copied())
        ));
    }
    if sql.iter().all(|n| refinery_version(n).is_some() || undo(n)) {
        return Ok(Layout::Refinery);
    }
    if sql.iter().any(|n| refinery_version(n).is_some()) {
        return Err(format!(
            "refinery files (V<n>__<name>.sql) mixed with others: {}",
            sample(
                sql.iter()
                    .copied()
                    .filter(|n| refinery_version(n).is_none() && !undo(n))
            )
        ));
    }
    if sql.iter().all(|n| sqlx_version(n).is_some()) {
        return Ok(Layout::Sqlx);
    }
    if sql
        .iter()
        .any(|n| n.ends_with(".down.sql") || n.ends_with(".up.sql"))
    {
        return Err(format!(
            "reversible migrations (.up.sql/.down.sql) whose names do not all start with a \
             version: {}",
            sample(sql.iter().copied().filter(|n| sqlx_version(n).is_none()))
        ));
    }
    Ok(Layout::Plain)
}

/// The files of `layout`, or what about the directory does not fit it.
fn list(
    layout: Layout,
    files: &[(String, PathBuf)],
    dirs: &[(String, PathBuf)],
) -> std::result::Result<Vec<Found>, String> {
    let mut found = Vec::new();
    let mut misfits = Vec::new();
    match layout {
        Layout::Diesel => {
            for (name, path) in dirs {
                let up = path.join("up.sql");
                if up.is_file() {
                    found.push((0, format!("{name}/up.sql"), up));
                } else {
                    misfits.push(format!("{name}/ (no up.sql)"));
                }
            }
        }
        Layout::Sqlx | Layout::Refinery | Layout::Plain => {
            for (name, path) in files {
                if layout == Layout::Refinery
                    && name.ends_with(".rs")
                    && refinery_version(&name.replace(".rs", ".sql")).is_some()
                {
                    misfits.push(format!(
                        "{name} (a Rust migration: run refinery from Migrations::code)"
                    ));
                    continue;
                }
                if !name.ends_with(".sql") {
                    continue;
                }
                let version = match layout {
                    Layout::Sqlx if name.ends_with(".down.sql") => continue,
                    Layout::Sqlx => sqlx_version(name),
                    Layout::Refinery if undo(name) => continue,
                    Layout::Refinery => refinery_version(name),
                    _ => Some(0),
                };
                match version {
                    Some(v) => found.push((v, name.clone(), path.clone())),
                    None => misfits.push(name.clone()),
                }
            }
        }
    }
    if !misfits.is_empty() {
        return Err(format!(
            "{} that do not fit the {} layout ({}): {}",
            misfits.len(),
            layout.name(),
            expected(layout),
            sample(misfits.iter().map(String::as_str))
        ));
    }
    if found.is_empty() {
        return Err(format!(
            "no {} migrations ({}); {}",
            layout.name(),
            expected(layout),
            nothing_found(files, dirs)
        ));
    }
    Ok(found)
}

fn expected(layout: Layout) -> &'static str {
    match layout {
        Layout::Sqlx => "<version>_<name>.sql or <version>_<name>.up.sql",
        Layout::Refinery => "V<n>__<name>.sql",
        Layout::Diesel => "<timestamp>_<name>/up.sql",
        Layout::Plain => "*.sql",
    }
}

fn nothing_found(files: &[(String, PathBuf)], dirs: &[(String, PathBuf)]) -> String {
    if files.is_empty() && dirs.is_empty() {
        return "the directory is empty".into();
    }
    let mut all: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
    all.extend(dirs.iter().map(|(n, _)| format!("{n}/")));
    format!(
        "found only {} (expected *.sql files, or diesel's <timestamp>_<name>/up.sql directories)",
        sample(all.iter().map(String::as_str))
    )
}

/// A few names, for an error.
fn sample<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    let mut s = names
        .iter()
        .take(5)
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > 5 {
        s.push_str(&format!(" and {} more", names.len() - 5));
    }
    s
}

/// sqlx's `<version>_<description>.sql`: the version is the digits before
/// the first `_`.
fn sqlx_version(name: &str) -> Option<u128> {
    let (version, rest) = name.split_once('_')?;
    (!version.is_empty() && !rest.is_empty() && version.bytes().all(|b| b.is_ascii_digit()))
        .then(|| version.parse().ok())
        .flatten()
}

/// refinery's `V<n>__<name>.sql`.
fn refinery_version(name: &str) -> Option<u128> {
    let rest = name.strip_prefix('V')?;
    let (version, name) = rest.split_once("__")?;
    (!version.is_empty() && !name.is_empty() && version.bytes().all(|b| b.is_ascii_digit()))
        .then(|| version.parse().ok())
        .flatten()
}

/// refinery's undo files, `U<n>__<name>.sql`, never applied.
fn undo(name: &str) -> bool {
    name.strip_prefix('U')
        .and_then(|r| r.split_once("__"))
        .is_some_and(|(v, _)| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
}

/// `tmpl_` and 64 bits of a hash over each script's file name (not its
/// directory: moving the fixtures does not change the schema) and text,
/// and each code step's resolved key.
pub(crate) fn template_name(steps: &[Step]) -> String {
    let mut h = Sha256::new();
    for step in steps {
        let (kind, name, text) = match step {
            Step::Sql(s) => {
                let base = Path::new(&s.name)
                    .file_name()
                    .map_or_else(|| s.name.clone(), |n| n.to_string_lossy().into_owned());
                ("sql", base, s.text.as_str())
            }
            Step::Code(_, key) => ("code", String::new(), key.as_str()),
        };
        for part in [kind.as_bytes(), name.as_bytes(), text.as_bytes()] {
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
/// Every file under `path` (or `path` itself) with its metadata.
fn stat_tree(path: &Path, out: &mut Vec<(PathBuf, std::fs::Metadata)>) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_dir() {
        out.push((path.to_path_buf(), meta));
        return Ok(());
    }
    let mut entries = std::fs::read_dir(path)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()?;
    entries.sort();
    for entry in entries {
        stat_tree(&entry, out)?;
    }
    Ok(())
}

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
            Ok(Err(e)) => {
                // Clients often say little at the top ("db error"): the
                // causes say what failed.
                let mut message = e.to_string();
                let mut cause = e.source();
                while let Some(c) = cause {
                    message.push_str(&format!(": {c}"));
                    cause = c.source();
                }
                Err(failed(message))
            }
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

    fn script(name: &str, text: &str) -> Step {
        Step::Sql(Script {
            name: name.into(),
            text: text.into(),
        })
    }

    #[test]
    fn the_fingerprint_follows_the_files_and_waits_out_fresh_edits() {
        let tmp = std::env::temp_dir().join(format!("testdock-fp-{}", std::process::id()));
        std::fs::create_dir_all(tmp.join("1_a")).unwrap();
        let file = tmp.join("1_a/up.sql");
        let age = |path: &Path| {
            let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
            std::fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(old)
                .unwrap();
        };
        std::fs::write(&file, "v1").unwrap();
        let m = Migrations::new().dir(&tmp);
        assert_eq!(m.fingerprint(), None, "a file edited just now is read");
        age(&file);
        let first = m.fingerprint().expect("files left alone");
        assert_eq!(m.fingerprint(), Some(first));
        std::fs::write(&file, "v22").unwrap();
        age(&file);
        assert_ne!(m.fingerprint(), Some(first), "a changed size");
        std::fs::remove_dir_all(&tmp).unwrap();
        assert_eq!(
            m.fingerprint(),
            None,
            "a missing directory is read (and fails)"
        );
        assert!(Migrations::new()
            .sql("a", "SELECT 1")
            .fingerprint()
            .is_some());
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
    /// The file names applied, in order, for a fixture directory.
    fn applied(m: Migrations) -> Vec<String> {
        m.load()
            .unwrap()
            .into_iter()
            .map(|s| match s {
                Step::Sql(s) => s
                    .name
                    .trim_start_matches("fixtures/migrations/")
                    .to_string(),
                Step::Code(_, key) => key,
            })
            .collect()
    }

    #[test]
    fn each_layout_is_detected_and_applied_up_only_in_its_order() {
        let dir = |d: &str| Migrations::new().dir(format!("fixtures/migrations/{d}"));
        assert_eq!(
            applied(dir("sqlx")),
            [
                "sqlx/1_users.sql",
                "sqlx/2_posts.sql",
                "sqlx/10_posts_index.sql"
            ]
        );
        assert_eq!(
            applied(dir("sqlx-reversible")),
            [
                "sqlx-reversible/20240101000000_users.up.sql",
                "sqlx-reversible/20240102000000_posts.up.sql",
                "sqlx-reversible/20240110000000_posts_index.up.sql"
            ]
        );
        assert_eq!(
            applied(dir("refinery")),
            [
                "refinery/V1__users.sql",
                "refinery/V2__posts.sql",
                "refinery/V10__posts_index.sql"
            ]
        );
        assert_eq!(
            applied(dir("diesel")),
            [
                "diesel/2024-01-01-000000_users/up.sql",
                "diesel/2024-01-02-000000_posts/up.sql",
                "diesel/2024-01-10-000000_posts_index/up.sql"
            ]
        );
        assert_eq!(
            applied(dir("plain")),
            [
                "plain/a_users.sql",
                "plain/b_posts.sql",
                "plain/c_posts_index.sql"
            ]
        );
    }

    #[test]
    fn a_named_layout_is_insisted_on() {
        let m = Migrations::new().sqlx("fixtures/migrations/sqlx");
        assert_eq!(applied(m).len(), 3);
        // Name order, as asked: 10 before 2.
        let m = Migrations::new().plain("fixtures/migrations/sqlx");
        assert_eq!(applied(m)[1], "sqlx/1_users.sql");
        let err = Migrations::new()
            .refinery("fixtures/migrations/sqlx")
            .load()
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::MigrationLayout { .. }), "{err:?}");
        assert!(
            msg.contains("do not fit the refinery layout (V<n>__<name>.sql)"),
            "{msg}"
        );
        assert!(msg.contains("`10_posts_index.sql`"), "{msg}");
    }

    #[test]
    fn an_unreadable_layout_says_what_it_found() {
        let err = |d: &str| {
            Migrations::new()
                .dir(format!("fixtures/migrations/{d}"))
                .load()
                .unwrap_err()
                .to_string()
        };
        let mixed = err("mixed");
        assert!(
            mixed.contains("refinery files (V<n>__<name>.sql) mixed with others: `2_posts.sql`"),
            "{mixed}"
        );
        let diesel = err("diesel-broken");
        assert!(
            diesel.contains("2024-01-01-000000_users/ (no up.sql)"),
            "{diesel}"
        );
        // Neither SQL nor migration directories: never an empty schema.
        let config = Migrations::new()
            .dir("fixtures/config")
            .load()
            .unwrap_err()
            .to_string();
        assert!(config.contains("found only `app.conf`"), "{config}");
    }

    #[test]
    fn two_migrations_of_one_version_are_refused() {
        let tmp = std::env::temp_dir().join(format!("testdock-mig-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::write(tmp.join("1_a.sql"), "select 1;").unwrap();
        std::fs::write(tmp.join("01_b.sql"), "select 2;").unwrap();
        let err = Migrations::new().dir(&tmp).load().unwrap_err().to_string();
        std::fs::remove_dir_all(&tmp).unwrap();
        assert!(err.contains("two migrations have version 1"), "{err}");
    }

    #[test]
    fn a_code_steps_key_names_its_template() {
        let code =
            |key: &str| Migrations::new().code(key, |_db| async { Ok::<(), std::io::Error>(()) });
        let a = code("v1").template_name().unwrap();
        assert_eq!(a, code("v1").template_name().unwrap());
        assert_ne!(a, code("v2").template_name().unwrap());
        // SQL first then code is not code then SQL.
        let sql_then_code = Migrations::new().sql("s", "select 1").append(code("v1"));
        let code_then_sql = code("v1").sql("s", "select 1");
        assert_ne!(
            sql_then_code.template_name().unwrap(),
            code_then_sql.template_name().unwrap()
        );
    }

    #[test]
    fn a_files_key_follows_the_files_contents() {
        let tmp = std::env::temp_dir().join(format!("testdock-key-{}", std::process::id()));
        std::fs::create_dir_all(tmp.join("sub")).unwrap();
        std::fs::write(tmp.join("sub/m.rs"), "one").unwrap();
        let key = TemplateKey::files([&tmp]);
        let a = key.resolve().unwrap();
        assert_eq!(a, key.resolve().unwrap());
        std::fs::write(tmp.join("sub/m.rs"), "two").unwrap();
        let b = key.resolve().unwrap();
        std::fs::remove_dir_all(&tmp).unwrap();
        assert_ne!(a, b);
        assert!(key.resolve().is_err(), "a missing path is an error");
    }
}
