//! Copying files, directories and bytes into and out of containers: the
//! API. The tar streams and Docker calls are in `files/transfer.rs`.

use std::fmt;
use std::fs;
use std::future::{Future, IntoFuture};
use std::io::{self, Read};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use crate::container::TestContainer;
use crate::engine::on_engine;
use crate::error::{Error, Result};
use crate::spec::ContainerSpec;

mod transfer;

/// Something to copy into a container: a host file, a host directory or
/// bytes, the path it gets in the container, its mode and its owner.
///
/// Made by [`file`](FileCopy::file), [`dir`](FileCopy::dir) or
/// [`bytes`](FileCopy::bytes); given to
/// [`ContainerSpec::copy_in`] (uploaded before the container starts) or
/// [`TestContainer::copy_in`] (into a running one).
///
/// - The owner is `0:0` (root) unless [`owner`](FileCopy::owner) says
///   otherwise — in the container, not as on the host — and applies to
///   everything copied, and to the missing parent directories that are
///   created (mode `0755`).
/// - [`mode`](FileCopy::mode) is the permission bits of the file, or of the
///   directory itself for a directory copy; the files inside a directory
///   keep their host modes, so executables stay executable. Without it a
///   host file keeps its mode and bytes get `0644`.
/// - A directory copy merges into an existing directory; a file replaces an
///   existing file, never a directory.
/// - Symbolic links inside a directory are copied as links.
///
/// Docker writes beneath a tmpfs mount, not into it: copy there with
/// `exec` and stdin instead.
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> testdock::Result<()> {
/// use testdock::{ContainerSpec, FileCopy, HostImage};
///
/// let c = ContainerSpec::new(HostImage::shell())
///     .cmd(["sleep", "infinity"])
///     .copy_in(FileCopy::bytes("secret", "/run/secrets/token").mode(0o600).owner(65534, 65534))
///     .copy_dir("fixtures", "/srv/fixtures")
///     .start()
///     .await?;
/// assert_eq!(c.read_file("/run/secrets/token").await?, b"secret");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FileCopy {
    source: Source,
    target: String,
    mode: Option<u32>,
    uid: u64,
    gid: u64,
}

#[derive(Clone)]
enum Source {
    File(PathBuf),
    Dir(PathBuf),
    Bytes(Arc<[u8]>),
}

impl fmt::Debug for FileCopy {
    // Bytes are summarised: a 20 MB fixture must not flood a failing
    // test's output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("FileCopy");
        match &self.source {
            Source::File(p) => d.field("file", p),
            Source::Dir(p) => d.field("dir", p),
            Source::Bytes(b) => d.field("bytes", &format_args!("<{} bytes>", b.len())),
        };
        d.field("target", &self.target)
            .field("mode", &self.mode.map(|m| format!("{m:o}")))
            .field("owner", &format_args!("{}:{}", self.uid, self.gid))
            .finish()
    }
}

impl FileCopy {
    /// Feeds what tells two copies apart — bytes included, where given as
    /// bytes — to `h`, for the key of a run-wide container.
    pub(crate) fn share_key(&self, h: &mut sha2::Sha256) {
        use sha2::Digest;
        h.update(format!("{self:?}").as_bytes());
        if let Source::Bytes(b) = &self.source {
            h.update(b);
        }
    }

    fn new(source: Source, target: String) -> Self {
        FileCopy {
            source,
            target,
            mode: None,
            uid: 0,
            gid: 0,
        }
    }

    /// The host file at `host` (relative paths are from the current
    /// directory), copied to the absolute path `target` in the container.
    pub fn file(host: impl Into<PathBuf>, target: impl Into<String>) -> Self {
        Self::new(Source::File(host.into()), target.into())
    }

    /// The host directory `host` and everything in it, copied so that it
    /// becomes the directory `target` in the container (`cp -r host/.
    /// target`).
    pub fn dir(host: impl Into<PathBuf>, target: impl Into<String>) -> Self {
        Self::new(Source::Dir(host.into()), target.into())
    }

    /// A file with these contents at `target` (mode `0644` unless
    /// [`mode`](FileCopy::mode) says otherwise).
    pub fn bytes(bytes: impl Into<Vec<u8>>, target: impl Into<String>) -> Self {
        let bytes: Vec<u8> = bytes.into();
        Self::new(Source::Bytes(bytes.into()), target.into())
    }

    /// Permission bits, e.g. `0o600` or `0o755` (at most `0o7777`).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Owner in the container, as numeric ids (default `0:0`).
    pub fn owner(mut self, uid: u32, gid: u32) -> Self {
        self.uid = uid.into();
        self.gid = gid.into();
        self
    }

    /// Why this copy cannot be made as given, if it cannot.
    fn invalid(&self) -> Option<String> {
        let t = &self.target;
        if !t.starts_with('/') {
            return Some(format!("copy target `{t}` is not an absolute path"));
        }
        if t.split('/').any(|c| c == "..") {
            return Some(format!("copy target `{t}` contains `..`"));
        }
        if components(t).is_empty() {
            return Some("copy target `/` names no file; copy to a path below it".into());
        }
        match self.mode {
            Some(m) if m > 0o7777 => Some(format!(
                "mode {m:o} for `{t}` has bits beyond 7777 (octal); write it as 0o644"
            )),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match &self.source {
            Source::File(p) | Source::Dir(p) => format!("`{}`", p.display()),
            Source::Bytes(b) if b.len() == 1 => "1 byte".into(),
            Source::Bytes(b) => format!("{} bytes", b.len()),
        }
    }
}

/// The normal components of an absolute container path.
fn components(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect()
}

impl ContainerSpec {
    /// Copies a file, a directory or bytes into the container after it is
    /// created and before it starts, so the main process finds it in
    /// place. See [`FileCopy`] for modes and owners.
    ///
    /// A bad target is reported by `start`/`run` as
    /// [`Error::InvalidSpec`] before anything is created; a missing host
    /// file as [`Error::Io`] naming it, once the container is removed.
    pub fn copy_in(mut self, copy: FileCopy) -> Self {
        if let Some(why) = copy.invalid() {
            self.error.get_or_insert(why);
            return self;
        }
        self.files.push(copy);
        self
    }

    /// Copies the host file `host` to `target` before the container starts,
    /// keeping its mode; owned by root. Shorthand for
    /// [`copy_in`](ContainerSpec::copy_in)`(FileCopy::file(host, target))`.
    pub fn copy_file(self, host: impl Into<PathBuf>, target: impl Into<String>) -> Self {
        self.copy_in(FileCopy::file(host, target))
    }

    /// Copies the host directory `host` to become `target` before the
    /// container starts; owned by root. Shorthand for
    /// [`copy_in`](ContainerSpec::copy_in)`(FileCopy::dir(host, target))`.
    pub fn copy_dir(self, host: impl Into<PathBuf>, target: impl Into<String>) -> Self {
        self.copy_in(FileCopy::dir(host, target))
    }

    /// Writes `bytes` to `target` with permission bits `mode` (e.g.
    /// `0o644`) before the container starts; owned by root. Shorthand for
    /// [`copy_in`](ContainerSpec::copy_in)`(FileCopy::bytes(bytes,
    /// target).mode(mode))`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> testdock::Result<()> {
    /// use testdock::{ContainerSpec, HostImage};
    ///
    /// let out = ContainerSpec::new(HostImage::shell())
    ///     .copy_bytes("port = 8080\n", "/etc/app.toml", 0o644)
    ///     .cmd(["cat", "/etc/app.toml"])
    ///     .run()
    ///     .await?;
    /// assert_eq!(out.stdout_text(), "port = 8080\n");
    /// # Ok(()) }
    /// ```
    pub fn copy_bytes(
        self,
        bytes: impl Into<Vec<u8>>,
        target: impl Into<String>,
        mode: u32,
    ) -> Self {
        self.copy_in(FileCopy::bytes(bytes, target).mode(mode))
    }
}

/// Uploads the spec's copies into a created container. Call on the engine
/// runtime, before starting it.
pub(crate) async fn upload_all(c: &TestContainer, files: &[FileCopy]) -> Result<()> {
    // Every host path first: a typo is reported before anything is copied.
    for copy in files {
        check_source(copy, c.name())?;
    }
    for copy in files {
        transfer::upload(c.id(), c.name(), copy.clone()).await?;
    }
    Ok(())
}

/// [`upload_all`] for `ContainerSpec::start`: on failure the container is
/// removed before the error is returned, as for a failed start.
pub(crate) async fn upload_all_or_remove(
    c: TestContainer,
    files: &[FileCopy],
) -> Result<TestContainer> {
    match upload_all(&c, files).await {
        Ok(()) => Ok(c),
        Err(e) => {
            let _ = c.teardown().await;
            Err(e)
        }
    }
}

/// Copies something into a running container; await it to copy.
///
/// Made by [`TestContainer::copy_in`], [`copy_file_in`], [`copy_dir_in`]
/// and [`copy_bytes_in`]; chain [`mode`](CopyIn::mode) and
/// [`owner`](CopyIn::owner) first. See [`FileCopy`] for what they mean.
///
/// # Examples
///
/// ```no_run
/// # async fn run(c: &testdock::TestContainer) -> testdock::Result<()> {
/// c.copy_bytes_in("#!/bin/sh\necho hi\n", "/usr/local/bin/hi").mode(0o755).await?;
/// c.copy_dir_in("fixtures/www", "/srv/www").owner(33, 33).await?;
/// assert_eq!(c.exec(["hi"]).await?.stdout_text(), "hi\n");
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`Error::InvalidSpec`] for a relative target or a bad mode;
/// [`Error::Io`] naming a host path that is missing or unreadable (checked
/// before anything is copied), or when a directory is at the target of a
/// file (a file never replaces one) or a file where a parent directory
/// should be; [`Error::Docker`] when the engine refuses, e.g. a read-only
/// root filesystem.
///
/// [`copy_file_in`]: TestContainer::copy_file_in
/// [`copy_dir_in`]: TestContainer::copy_dir_in
/// [`copy_bytes_in`]: TestContainer::copy_bytes_in
#[must_use = "a CopyIn does nothing until it is awaited"]
#[derive(Debug)]
pub struct CopyIn<'a> {
    container: &'a TestContainer,
    copy: FileCopy,
}

impl CopyIn<'_> {
    /// Permission bits, e.g. `0o600` (at most `0o7777`).
    pub fn mode(mut self, mode: u32) -> Self {
        self.copy = self.copy.mode(mode);
        self
    }

    /// Owner in the container, as numeric ids (default `0:0`).
    pub fn owner(mut self, uid: u32, gid: u32) -> Self {
        self.copy = self.copy.owner(uid, gid);
        self
    }
}

impl<'a> IntoFuture for CopyIn<'a> {
    type Output = Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        let id = self.container.id().to_string();
        let name = self.container.name().to_string();
        let copy = self.copy;
        Box::pin(async move {
            if let Some(why) = copy.invalid() {
                return Err(Error::InvalidSpec(why));
            }
            check_source(&copy, &name)?;
            on_engine(async move { transfer::upload(&id, &name, copy).await }).await
        })
    }
}

impl TestContainer {
    /// Copies a [`FileCopy`] into the running container. Chain options on
    /// the returned [`CopyIn`] before awaiting it.
    pub fn copy_in(&self, copy: FileCopy) -> CopyIn<'_> {
        CopyIn {
            container: self,
            copy,
        }
    }

    /// Copies the host file `host` to `target` (an absolute path) in the
    /// container. Missing parent directories are created.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(c: &testdock::TestContainer) -> testdock::Result<()> {
    /// c.copy_file_in("fixtures/app.toml", "/etc/app/app.toml").mode(0o640).owner(0, 999).await?;
    /// # Ok(()) }
    /// ```
    pub fn copy_file_in(&self, host: impl Into<PathBuf>, target: impl Into<String>) -> CopyIn<'_> {
        self.copy_in(FileCopy::file(host, target))
    }

    /// Copies the host directory `host` so that it becomes `target` in the
    /// container, merged into what is there.
    pub fn copy_dir_in(&self, host: impl Into<PathBuf>, target: impl Into<String>) -> CopyIn<'_> {
        self.copy_in(FileCopy::dir(host, target))
    }

    /// Writes `bytes` to the file `target` in the container.
    pub fn copy_bytes_in(
        &self,
        bytes: impl Into<Vec<u8>>,
        target: impl Into<String>,
    ) -> CopyIn<'_> {
        self.copy_in(FileCopy::bytes(bytes, target))
    }

    /// The contents of the file at `path` in the container (symbolic links
    /// followed). Works on a stopped or paused container too.
    ///
    /// # Errors
    ///
    /// [`Error::Docker`] with status 404 naming `path` if it does not exist;
    /// [`Error::Io`] if it is a directory.
    pub async fn read_file(&self, path: impl Into<String>) -> Result<Vec<u8>> {
        let (id, name, path) = (self.id().to_string(), self.name().to_string(), path.into());
        on_engine(async move {
            transfer::download_file(&id, &name, &path, |entry| {
                let mut bytes = Vec::with_capacity(entry.header().size().unwrap_or(0) as usize);
                entry.read_to_end(&mut bytes)?;
                Ok(bytes)
            })
            .await
        })
        .await
    }

    /// Copies the file at `path` in the container (symbolic links
    /// followed) to the host file `host`, with its permission bits. Missing
    /// parent directories on the host are created; an existing file is
    /// replaced.
    ///
    /// # Errors
    ///
    /// [`Error::Docker`] with status 404 naming `path` if it does not exist;
    /// [`Error::Io`] if it is a directory or `host` cannot be written.
    pub async fn copy_file_out(
        &self,
        path: impl Into<String>,
        host: impl Into<PathBuf>,
    ) -> Result<()> {
        let (id, name, path, host) = (
            self.id().to_string(),
            self.name().to_string(),
            path.into(),
            host.into(),
        );
        on_engine(async move {
            let context = format!(
                "cannot write `{}` (copied from `{path}` in {name})",
                host.display()
            );
            transfer::download_file(&id, &name, &path, move |entry| {
                // A local failure is the host path's, not the container's.
                Ok(transfer::write_entry(entry, &host).map_err(|e| Error::io(context.clone(), e)))
            })
            .await
            .and_then(|r| r)
        })
        .await
    }

    /// Copies the directory `path` in the container, and everything in it,
    /// so that it becomes the host directory `host` (created if missing,
    /// merged into if not). Modes are kept; owners are not.
    ///
    /// # Errors
    ///
    /// [`Error::Docker`] with status 404 naming `path` if it does not exist;
    /// [`Error::Io`] if it is not a directory or `host` cannot be written.
    pub async fn copy_dir_out(
        &self,
        path: impl Into<String>,
        host: impl Into<PathBuf>,
    ) -> Result<()> {
        let (id, name, path, host) = (
            self.id().to_string(),
            self.name().to_string(),
            path.into(),
            host.into(),
        );
        on_engine(async move { transfer::download_dir(&id, &name, &path, &host).await }).await
    }
}

/// A host source that cannot be read, named; checked before any copying.
fn check_source(copy: &FileCopy, container: &str) -> Result<()> {
    let (path, want_dir) = match &copy.source {
        Source::File(p) => (p, false),
        Source::Dir(p) => (p, true),
        Source::Bytes(_) => return Ok(()),
    };
    let context = || {
        format!(
            "cannot copy `{}` to `{}` in {container}",
            path.display(),
            copy.target
        )
    };
    let meta = fs::metadata(path).map_err(|e| Error::io(context(), e))?;
    match (want_dir, meta.is_dir()) {
        (false, true) => Err(Error::io(
            context(),
            io::Error::new(
                io::ErrorKind::IsADirectory,
                "it is a directory (copy it with copy_dir_in / FileCopy::dir)",
            ),
        )),
        (true, false) => Err(Error::io(
            context(),
            io::Error::new(
                io::ErrorKind::NotADirectory,
                "it is not a directory (copy it with copy_file_in / FileCopy::file)",
            ),
        )),
        _ => Ok(()),
    }
}

#[allow(dead_code)]
fn _assert_impls() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<FileCopy>();
    send_sync::<CopyIn<'static>>();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_must_be_absolute_files() {
        assert!(FileCopy::bytes("", "rel/x")
            .invalid()
            .unwrap()
            .contains("absolute"));
        assert!(FileCopy::bytes("", "/")
            .invalid()
            .unwrap()
            .contains("names no file"));
        assert!(FileCopy::bytes("", "/a/../b")
            .invalid()
            .unwrap()
            .contains(".."));
        assert!(FileCopy::bytes("", "/x")
            .mode(0o10000)
            .invalid()
            .unwrap()
            .contains("7777"));
        assert!(FileCopy::bytes("", "/a b/c")
            .mode(0o4755)
            .invalid()
            .is_none());
        let s = ContainerSpec::new("img").copy_bytes("x", "etc/x", 0o644);
        assert!(s.error.unwrap().contains("not an absolute path"));
    }

    #[test]
    fn debug_summarises_bytes() {
        let c = FileCopy::bytes(vec![0u8; 20 << 20], "/big")
            .mode(0o600)
            .owner(1, 2);
        let d = format!("{c:?}");
        assert!(
            d.contains("<20971520 bytes>") && d.contains("\"600\"") && d.contains("1:2"),
            "{d}"
        );
    }
}
