//! The plumbing of `files`: tar streams packed and unpacked on a blocking
//! thread while the engine runtime moves the chunks through Docker's
//! archive API. A large file is never held in memory whole, and a slow
//! disk never stalls the engine runtime's two workers.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bollard::query_parameters::{
    ContainerArchiveInfoOptionsBuilder, DownloadFromContainerOptionsBuilder,
    UploadToContainerOptions,
};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{components, FileCopy, Source};
use crate::engine::client;
use crate::error::{status_of, Error, Result};

/// How many chunks may wait between the tar thread and the HTTP body.
const CHANNEL_CHUNKS: usize = 8;
/// Size of the chunks handed to the HTTP body.
const CHUNK_BYTES: usize = 256 * 1024;
/// How many symbolic links a copy out follows before giving up.
const MAX_LINK_HOPS: usize = 16;
/// Go's `os.ModeDir` and `os.ModeSymlink`, as Docker reports them in a
/// path stat.
const GO_MODE_DIR: u32 = 1 << 31;
const GO_MODE_SYMLINK: u32 = 1 << 27;

/// Whether a stat's mode is a directory, or a link Docker resolves (to
/// one, or it says why not).
fn dir_or_link(mode: u32) -> bool {
    mode & (GO_MODE_DIR | GO_MODE_SYMLINK) != 0
}

/// Uploads one copy. The tar is rooted at the deepest existing ancestor of
/// the target's parent, so missing parents are created with the copy's
/// owner — and existing ones are never in the archive, so their modes and
/// owners (say `/tmp`'s 1777) stay as they are.
pub(super) async fn upload(id: &str, name: &str, copy: FileCopy) -> Result<()> {
    let docker = client().await?;
    let op = || format!("copy {} to `{}` in {name}", copy.describe(), copy.target);
    let parts = components(&copy.target);
    let (parents, _) = parts.split_at(parts.len() - 1);
    let context = || {
        format!(
            "cannot copy {} to `{}` in {name}",
            copy.describe(),
            copy.target
        )
    };
    if !matches!(copy.source, Source::Dir(_)) {
        // Docker would refuse too, but naming the wrong path.
        if let Ok(mode) = stat(docker, id, &copy.target).await {
            if mode & GO_MODE_DIR != 0 {
                return Err(Error::io(
                    context(),
                    io::Error::new(
                        io::ErrorKind::IsADirectory,
                        "a directory is there, and a file never replaces one",
                    ),
                ));
            }
        }
    }
    let mut existing = parents.len();
    loop {
        let dir = format!("/{}", parents[..existing].join("/"));
        match stat(docker, id, &dir).await {
            Ok(mode) if dir_or_link(mode) => break,
            Ok(_) => {
                return Err(Error::io(
                    context(),
                    io::Error::new(
                        io::ErrorKind::NotADirectory,
                        format!("`{dir}` is not a directory"),
                    ),
                ))
            }
            Err(e) if status_of(&e) == Some(404) && existing > 0 => existing -= 1,
            // Not even `/`: the container itself is gone.
            Err(e) => return Err(Error::docker(op(), e)),
        }
    }
    let root = format!("/{}", parents[..existing].join("/"));
    let relative: Vec<String> = parts[existing..].iter().map(|s| s.to_string()).collect();

    let opts = UploadToContainerOptions {
        path: root,
        // A file must never silently replace a directory (Docker's default
        // would remove the directory).
        no_overwrite_dir_non_dir: Some("true".into()),
        copy_uidgid: None,
    };
    let (tx, rx) = mpsc::channel::<io::Result<Vec<u8>>>(CHANNEL_CHUNKS);
    let source = copy.clone();
    let packer = tokio::task::spawn_blocking(move || {
        let mut out = ChunkWriter::new(tx.clone());
        let packed = pack(&source, &relative, &mut out).and_then(|()| out.flush());
        if let Err(e) = &packed {
            // Abort the body so Docker never unpacks a truncated archive.
            let _ = tx.blocking_send(Err(io::Error::new(e.kind(), e.to_string())));
        }
        packed
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((chunk.map(Into::into), rx))
    });
    let uploaded = docker
        .upload_to_container(id, Some(opts), bollard::body_try_stream(body))
        .await;
    let packed = packer
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e.to_string())));
    match (packed, uploaded) {
        (Ok(()), Ok(())) => Ok(()),
        // A failed pack cuts the body short: the pack's error is the cause.
        (Err(e), _) if e.kind() != io::ErrorKind::BrokenPipe => Err(Error::io(context(), e)),
        (_, Err(e)) => Err(Error::docker(op(), e)),
        (Err(e), Ok(())) => Err(Error::io(context(), e)),
    }
}

/// Go file mode of `path` in the container; a 404 if it does not exist.
async fn stat(
    docker: &bollard::Docker,
    id: &str,
    path: &str,
) -> std::result::Result<u32, bollard::errors::Error> {
    let opts = ContainerArchiveInfoOptionsBuilder::new().path(path).build();
    let stat = docker.get_container_archive_info(id, Some(opts)).await?;
    Ok(stat.file_mode)
}

/// A 404 that names the path: the answer to a stat (a `HEAD`) has no
/// message, so it gets the one Docker gives a download.
fn named_404(e: bollard::errors::Error, path: &str, name: &str) -> bollard::errors::Error {
    match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            message,
        } if message.is_empty() => bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            message: format!("Could not find the file {path} in container {name}"),
        },
        other => other,
    }
}

/// Writes the tar of `copy`, its top entry at `relative` (missing parents
/// first).
fn pack(copy: &FileCopy, relative: &[String], out: &mut impl Write) -> io::Result<()> {
    let mut tar = tar::Builder::new(out);
    let (uid, gid) = (copy.uid, copy.gid);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (parents, _) = relative.split_at(relative.len() - 1);
    for i in 1..=parents.len() {
        let mut h = header(tar::EntryType::Directory, 0o755, uid, gid, now);
        tar.append_data(&mut h, parents[..i].join("/"), io::empty())?;
    }
    let top = relative.join("/");
    match &copy.source {
        Source::Bytes(bytes) => {
            let mut h = header(
                tar::EntryType::Regular,
                copy.mode.unwrap_or(0o644),
                uid,
                gid,
                now,
            );
            h.set_size(bytes.len() as u64);
            tar.append_data(&mut h, &top, &bytes[..])?;
        }
        Source::File(path) => {
            let meta = fs::metadata(path)?;
            append_file(&mut tar, path, &meta, Path::new(&top), copy.mode, uid, gid)?;
        }
        Source::Dir(path) => {
            let meta = fs::metadata(path)?;
            let mode = copy.mode.unwrap_or(meta.permissions().mode() & 0o7777);
            let mut h = header(tar::EntryType::Directory, mode, uid, gid, mtime(&meta));
            tar.append_data(&mut h, &top, io::empty())?;
            append_tree(&mut tar, path, Path::new(&top), uid, gid)?;
        }
    }
    tar.into_inner()?;
    Ok(())
}

/// Appends what is inside `dir`, sorted (a stable archive is easier to
/// debug), under `prefix`. Errors name the path inside the tree that
/// failed.
fn append_tree<W: Write>(
    tar: &mut tar::Builder<W>,
    dir: &Path,
    prefix: &Path,
    uid: u64,
    gid: u64,
) -> io::Result<()> {
    let mut entries = fs::read_dir(dir)
        .and_then(|d| d.collect::<io::Result<Vec<_>>>())
        .map_err(|e| named(dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = prefix.join(entry.file_name());
        let meta = fs::symlink_metadata(&path).map_err(|e| named(&path, e))?;
        let mode = meta.permissions().mode() & 0o7777;
        let kind = meta.file_type();
        if kind.is_dir() {
            let mut h = header(tar::EntryType::Directory, mode, uid, gid, mtime(&meta));
            tar.append_data(&mut h, &name, io::empty())?;
            append_tree(tar, &path, &name, uid, gid)?;
        } else if kind.is_symlink() {
            let target = fs::read_link(&path).map_err(|e| named(&path, e))?;
            let mut h = header(tar::EntryType::Symlink, 0o777, uid, gid, mtime(&meta));
            tar.append_link(&mut h, &name, target)?;
        } else if kind.is_file() {
            append_file(tar, &path, &meta, &name, None, uid, gid).map_err(|e| named(&path, e))?;
        } else {
            return Err(named(
                &path,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a socket, fifo or device cannot be copied",
                ),
            ));
        }
    }
    Ok(())
}

fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &Path,
    meta: &fs::Metadata,
    name: &Path,
    mode: Option<u32>,
    uid: u64,
    gid: u64,
) -> io::Result<()> {
    let file = File::open(path)?;
    let mode = mode.unwrap_or(meta.permissions().mode() & 0o7777);
    let mut h = header(tar::EntryType::Regular, mode, uid, gid, mtime(meta));
    let size = meta.len();
    h.set_size(size);
    // The header promised `size` bytes: a file that grows or shrinks while
    // read would corrupt the archive, so it is an error instead.
    let mut exact = Exact {
        inner: file.take(size),
        left: size,
    };
    tar.append_data(&mut h, name, &mut exact)?;
    if exact.left != 0 || exact.inner.into_inner().read(&mut [0])? != 0 {
        return Err(changed());
    }
    Ok(())
}

/// Reads exactly the size a header promised, erroring when the file ends
/// early.
struct Exact<R> {
    inner: io::Take<R>,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(changed());
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn changed() -> io::Error {
    io::Error::other("the file changed size while being copied")
}

fn named(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("`{}`: {e}", path.display()))
}

fn header(kind: tar::EntryType, mode: u32, uid: u64, gid: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_mtime(mtime);
    h.set_size(0);
    h
}

fn mtime(meta: &fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// Buffers tar output into chunks sent to the HTTP body. A closed channel
/// (the upload ended early) surfaces as `BrokenPipe`.
struct ChunkWriter {
    tx: mpsc::Sender<io::Result<Vec<u8>>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn new(tx: mpsc::Sender<io::Result<Vec<u8>>>) -> Self {
        ChunkWriter {
            tx,
            buf: Vec::with_capacity(CHUNK_BYTES),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload ended early"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK_BYTES - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK_BYTES {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// Reads the chunks of a download as one byte stream.
pub(super) struct ChunkReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Option<Vec<u8>>,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(chunk) = &self.chunk {
                let rest = &chunk[self.pos..];
                if !rest.is_empty() {
                    let n = rest.len().min(buf.len());
                    buf[..n].copy_from_slice(&rest[..n]);
                    self.pos += n;
                    return Ok(n);
                }
            }
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.chunk = Some(chunk?);
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
    }
}

/// Why a download failed: the engine's answer, or the local side.
enum DownloadError {
    Docker(bollard::errors::Error),
    Io(io::Error),
}

impl DownloadError {
    fn into_error(self, op: String, context: String) -> Error {
        match self {
            DownloadError::Docker(e) => Error::docker(op, e),
            DownloadError::Io(e) => Error::io(context, e),
        }
    }
}

/// Streams the archive of `path` into `f`, which runs on a blocking thread.
async fn download<T: Send + 'static>(
    docker: &bollard::Docker,
    id: &str,
    path: &str,
    f: impl FnOnce(tar::Archive<ChunkReader>) -> io::Result<T> + Send + 'static,
) -> std::result::Result<T, DownloadError> {
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    let worker = tokio::task::spawn_blocking(move || {
        f(tar::Archive::new(ChunkReader {
            rx,
            chunk: None,
            pos: 0,
        }))
    });
    let opts = DownloadFromContainerOptionsBuilder::new()
        .path(path)
        .build();
    let mut stream = docker.download_from_container(id, Some(opts));
    let mut failed = None;
    while let Some(item) = stream.next().await {
        match item {
            // A closed channel means the worker has all it wants (or failed,
            // which it reports itself).
            Ok(bytes) => {
                if tx.send(Ok(bytes.to_vec())).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(io::Error::other("the download failed"))).await;
                failed = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let result = worker
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e.to_string())));
    match failed {
        Some(e) => Err(DownloadError::Docker(e)),
        None => result.map_err(DownloadError::Io),
    }
}

/// What the first entry of a single-path archive was.
enum Got<T> {
    File(T),
    Link(PathBuf),
    Dir,
}

/// Downloads the regular file at `path`, following symbolic links, and
/// hands its tar entry to `f` on a blocking thread.
pub(super) async fn download_file<T: Send + 'static>(
    id: &str,
    name: &str,
    path: &str,
    f: impl Fn(&mut tar::Entry<'_, ChunkReader>) -> io::Result<T> + Send + Sync + 'static,
) -> Result<T> {
    let docker = client().await?;
    let f = Arc::new(f);
    let mut current = path.to_string();
    for _ in 0..=MAX_LINK_HOPS {
        let op = || format!("copy `{path}` out of {name}");
        let f = Arc::clone(&f);
        let got = download(docker, id, &current, move |mut archive| {
            let mut entries = archive.entries()?;
            let Some(entry) = entries.next() else {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "empty archive",
                ));
            };
            let mut entry = entry?;
            match entry.header().entry_type() {
                tar::EntryType::Symlink => Ok(Got::Link(
                    entry.link_name()?.unwrap_or_default().into_owned(),
                )),
                tar::EntryType::Directory => Ok(Got::Dir),
                _ => f(&mut entry).map(Got::File),
            }
        })
        .await
        .map_err(|e| e.into_error(op(), format!("cannot read `{path}` from {name}")))?;
        match got {
            Got::File(v) => return Ok(v),
            Got::Dir => {
                return Err(Error::io(
                    format!("cannot read `{path}` from {name}"),
                    io::Error::new(
                        io::ErrorKind::IsADirectory,
                        "it is a directory (copy it with copy_dir_out)",
                    ),
                ))
            }
            Got::Link(target) => {
                current = match target.to_str() {
                    Some(t) if t.starts_with('/') => t.to_string(),
                    Some(t) => {
                        let dir = current.rsplit_once('/').map_or("", |(d, _)| d);
                        format!("{dir}/{t}")
                    }
                    None => break,
                };
            }
        }
    }
    Err(Error::io(
        format!("cannot read `{path}` from {name}"),
        io::Error::other(format!(
            "more than {MAX_LINK_HOPS} symbolic links, or a link that is not UTF-8"
        )),
    ))
}

/// Downloads the directory `path` so that it becomes `host`.
pub(super) async fn download_dir(id: &str, name: &str, path: &str, host: &Path) -> Result<()> {
    let docker = client().await?;
    let op = || format!("copy `{path}` out of {name}");
    // `/.` asks Docker for the directory's contents, entries named
    // `./…`, and refuses a file.
    match stat(docker, id, path).await {
        Ok(mode) if dir_or_link(mode) => {}
        Ok(_) => {
            return Err(Error::io(
                format!("cannot copy `{path}` out of {name}"),
                io::Error::new(
                    io::ErrorKind::NotADirectory,
                    "it is not a directory (copy it with copy_file_out)",
                ),
            ))
        }
        Err(e) => return Err(Error::docker(op(), named_404(e, path, name))),
    }
    let contents = format!("{}/.", path.trim_end_matches('/'));
    let host = host.to_path_buf();
    let context = format!(
        "cannot write `{}` (copied from `{path}` in {name})",
        host.display()
    );
    download(docker, id, &contents, move |mut archive| {
        archive.set_preserve_permissions(false);
        archive.set_overwrite(true);
        archive.unpack(&host)
    })
    .await
    .map_err(|e| e.into_error(op(), context))
}

/// Writes a regular file entry to `host`, with its permission bits.
pub(super) fn write_entry<R: Read>(entry: &mut tar::Entry<'_, R>, host: &Path) -> io::Result<()> {
    if let Some(dir) = host.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let mut file = File::create(host)?;
    io::copy(entry, &mut file)?;
    let mode = entry.header().mode()? & 0o777;
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(tar: &[u8]) -> Vec<(String, u32, u64, u64, Vec<u8>)> {
        let mut a = tar::Archive::new(tar);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let h = e.header().clone();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                (
                    path,
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    data,
                )
            })
            .collect()
    }

    #[test]
    fn bytes_pack_with_mode_owner_and_missing_parents() {
        let copy = FileCopy::bytes(b"\0hi\xff".to_vec(), "/a/new dir/f")
            .mode(0o600)
            .owner(65534, 7);
        let mut out = Vec::new();
        pack(&copy, &["new dir".into(), "f".into()], &mut out).unwrap();
        let e = entries(&out);
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[0].0.as_str(), e[0].1, e[0].2, e[0].3),
            ("new dir", 0o755, 65534, 7)
        );
        assert_eq!(
            (e[1].0.as_str(), e[1].1, e[1].2, e[1].3),
            ("new dir/f", 0o600, 65534, 7)
        );
        assert_eq!(e[1].4, b"\0hi\xff");
    }

    #[test]
    fn directories_keep_modes_and_take_the_owner() {
        let dir = std::env::temp_dir().join(format!("testdock-pack-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("sub/run.sh"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(dir.join("sub/run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(dir.join("empty"), "").unwrap();
        fs::set_permissions(dir.join("empty"), fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::symlink("sub/run.sh", dir.join("link")).unwrap();
        let copy = FileCopy::dir(&dir, "/srv/d").owner(1, 2);
        let mut out = Vec::new();
        pack(&copy, &["d".into()], &mut out).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        let names: Vec<_> = entries(&out)
            .iter()
            .map(|e| (e.0.clone(), e.1, e.2))
            .collect();
        let names: Vec<_> = names.iter().map(|(n, m, u)| (n.as_str(), *m, *u)).collect();
        assert_eq!(names[1], ("d/empty", 0o640, 1));
        assert_eq!(names[2].0, "d/link");
        assert_eq!(names[4], ("d/sub/run.sh", 0o755, 1));
    }

    #[test]
    fn a_file_that_changes_size_is_an_error_not_a_corrupt_archive() {
        let dir = std::env::temp_dir().join(format!("testdock-size-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (small, big) = (dir.join("small"), dir.join("big"));
        fs::write(&small, "abc").unwrap();
        fs::write(&big, "abcdef").unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        let name = Path::new("f");
        let (small_meta, big_meta) = (fs::metadata(&small).unwrap(), fs::metadata(&big).unwrap());
        let shrank = append_file(&mut tar, &small, &big_meta, name, None, 0, 0);
        let grew = append_file(&mut tar, &big, &small_meta, name, None, 0, 0);
        let same = append_file(&mut tar, &big, &big_meta, name, None, 0, 0);
        fs::remove_dir_all(&dir).unwrap();
        assert!(shrank.unwrap_err().to_string().contains("changed size"));
        assert!(grew.unwrap_err().to_string().contains("changed size"));
        same.unwrap();
    }

    #[test]
    fn chunks_round_trip() {
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let data: Vec<u8> = (0..(CHUNK_BYTES * 3 + 17)).map(|i| (i * 7) as u8).collect();
        let sent = data.clone();
        let writer = std::thread::spawn(move || {
            let mut w = ChunkWriter::new(tx);
            w.write_all(&sent).unwrap();
            w.flush().unwrap();
        });
        let mut r = ChunkReader {
            rx,
            chunk: None,
            pos: 0,
        };
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        writer.join().unwrap();
        assert_eq!(got, data);
    }
}
