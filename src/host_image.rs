//! `HostImage`: an image packed from this machine's own binaries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::engine::on_engine;
use crate::error::{Error, Result};
use crate::image::{hash_hex, image_changes, import_tar, once_per_process};

/// An image packed from this machine's own files: executables plus the
/// shared libraries they load (as `ldd` lists them), and any other files or
/// directories. No registry, no Dockerfile, no base image.
///
/// It is imported once, tagged by a hash of its content
/// (`<repository>:<hash>`), and reused while the content is unchanged.
/// Packing the usual shell tools takes well under a second.
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> testdock::Result<()> {
/// use testdock::{ContainerSpec, HostImage};
///
/// // A shell plus perl, to run a small server in the container.
/// let image = HostImage::shell().binary("perl").path("/usr/share/perl5");
/// let c = ContainerSpec::new(image).cmd(["sleep", "infinity"]).start().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostImage {
    pub(crate) repository: String,
    binaries: Vec<String>,
    paths: Vec<PathBuf>,
    files: Vec<(String, Vec<u8>, u32)>,
    env: Vec<String>,
    cmd: Option<Vec<String>>,
}

/// What [`HostImage::shell`] packs: a POSIX shell, bash, and the tools
/// tests reach for.
const SHELL_TOOLS: &[&str] = &[
    "sh",
    "bash",
    "cat",
    "echo",
    "printf",
    "sleep",
    "true",
    "false",
    "env",
    "id",
    "pwd",
    "ls",
    "mkdir",
    "rm",
    "cp",
    "mv",
    "touch",
    "head",
    "tail",
    "wc",
    "tr",
    "tee",
    "dd",
    "sha256sum",
    "base64",
    "grep",
    "sed",
    "sort",
    "uname",
    "chmod",
    "stat",
    "timeout",
    "kill",
    "seq",
    "yes",
];

impl HostImage {
    /// An empty image named `repository` (e.g. `"myorg/tools"`), with a
    /// `/tmp`, a root and a `nobody` user.
    pub fn new(repository: impl Into<String>) -> Self {
        HostImage {
            repository: repository.into(),
            binaries: Vec::new(),
            paths: Vec::new(),
            files: Vec::new(),
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            cmd: None,
        }
    }

    /// `testdock/shell`: `sh`, `bash` and common tools (`cat`, `sleep`,
    /// `head`, `dd`, `grep`, `sed`, …) from this machine. Enough to exec
    /// into, and what the quickstart and the test suite use.
    pub fn shell() -> Self {
        HostImage::new("testdock/shell")
            .binaries(SHELL_TOOLS.iter().copied())
            .cmd(["sh"])
    }

    /// Adds an executable, by name (looked up on `PATH`) or by path, with
    /// the shared libraries it loads. Missing ones are reported when the
    /// image is built.
    pub fn binary(mut self, name: impl Into<String>) -> Self {
        self.binaries.push(name.into());
        self
    }

    /// Adds several executables, as [`binary`](HostImage::binary).
    pub fn binaries(mut self, names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.binaries.extend(names.into_iter().map(Into::into));
        self
    }

    /// Adds a host file or directory (recursively) at the same path.
    pub fn path(mut self, path: impl Into<PathBuf>) -> Self {
        self.paths.push(path.into());
        self
    }

    /// Adds a file with these contents and mode at `path_in_image`.
    pub fn file(
        mut self,
        path_in_image: impl Into<String>,
        contents: impl Into<Vec<u8>>,
        mode: u32,
    ) -> Self {
        self.files
            .push((path_in_image.into(), contents.into(), mode));
        self
    }

    /// Sets an environment variable in the image.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.env.retain(|e| !e.starts_with(&format!("{key}=")));
        self.env.push(format!("{key}={}", value.into()));
        self
    }

    /// The image's default command.
    pub fn cmd(mut self, cmd: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.cmd = Some(cmd.into_iter().map(Into::into).collect());
        self
    }

    /// Packs and imports the image if it is not there yet; returns its
    /// reference, `<repository>:<content hash>`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] naming a file that cannot be found or read, or a Docker
    /// error from the import.
    pub async fn build(&self) -> Result<String> {
        let this = self.clone();
        on_engine(async move { this.build_on_engine().await }).await
    }

    /// Builds at most once per process per definition, even when many tests
    /// ask at once.
    pub(crate) async fn build_on_engine(&self) -> Result<String> {
        let this = self.clone();
        once_per_process(format!("host {self:?}"), async move {
            let changes = this.changes();
            let repository = this.repository.clone();
            let t0 = std::time::Instant::now();
            let tar = tokio::task::spawn_blocking(move || this.pack())
                .await
                .expect("packing a host image panicked")?;
            let reference = format!("{repository}:{}", hash_hex(&tar, &changes));
            tracing::debug!(
                image = %reference,
                bytes = tar.len(),
                elapsed_ms = crate::trace::ms(t0),
                "host image packed"
            );
            import_tar(&reference, tar, changes).await?;
            Ok(reference)
        })
        .await
    }

    /// Dockerfile instructions applied on import.
    fn changes(&self) -> Vec<String> {
        image_changes(&self.env, self.cmd.as_deref(), "host")
    }

    /// The root filesystem as a reproducible tar: sorted, zero mtimes, owned
    /// by root, so the same content always hashes the same.
    fn pack(&self) -> Result<Vec<u8>> {
        let mut tree = Tree::default();
        tree.dir("tmp", 0o1777);
        tree.dir("root", 0o700);
        tree.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n".to_vec(), 0o644);
        tree.file(
            "etc/group",
            b"root:x:0:\nnogroup:x:65534:\n".to_vec(),
            0o644,
        );
        // Merged-/usr hosts have /bin -> usr/bin and friends; keep the same
        // shape so `#!/bin/sh` and `/lib64/ld-linux…` resolve.
        for top in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
            if let Ok(target) = std::fs::read_link(Path::new("/").join(top)) {
                tree.symlink(top, target);
            }
        }
        for name in &self.binaries {
            let path = which(name).ok_or_else(|| {
                Error::io(
                    format!("cannot pack `{name}` into a host image: not found on PATH"),
                    std::io::ErrorKind::NotFound.into(),
                )
            })?;
            tree.add_host(&path)?;
            for lib in shared_libraries(&path)? {
                tree.add_host(&lib)?;
            }
        }
        for path in &self.paths {
            tree.add_host(path)?;
        }
        for (path, contents, mode) in &self.files {
            tree.file(path.trim_start_matches('/'), contents.clone(), *mode);
        }
        tree.into_tar()
    }
}

/// `name` on `PATH`, or `name` itself when it is a path.
fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Path::new(name).exists().then(|| name.into());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The libraries `ldd` says `exe` loads; none for a static executable or a
/// script.
fn shared_libraries(exe: &Path) -> Result<Vec<PathBuf>> {
    let out = std::process::Command::new("ldd")
        .arg(exe)
        .output()
        .map_err(|e| {
            Error::io(
                "cannot run `ldd` to find shared libraries (is libc-bin installed?)",
                e,
            )
        })?;
    Ok(parse_ldd(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.trim(),
                None => line,
            };
            let path = path.split(" (").next()?.trim();
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// A root filesystem being assembled, keyed by path so duplicates collapse
/// and the tar comes out sorted.
#[derive(Default)]
struct Tree {
    entries: BTreeMap<String, Entry>,
    /// Host paths already added (a directory may already be in `entries`
    /// as the parent of something, without its own contents).
    added: std::collections::HashSet<String>,
}

enum Entry {
    Dir(u32),
    File(Vec<u8>, u32),
    HostFile(PathBuf, u32),
    Symlink(PathBuf),
}

impl Tree {
    fn dir(&mut self, path: &str, mode: u32) {
        self.parents(path);
        self.entries.entry(path.into()).or_insert(Entry::Dir(mode));
    }

    fn file(&mut self, path: &str, contents: Vec<u8>, mode: u32) {
        self.parents(path);
        self.entries
            .insert(path.into(), Entry::File(contents, mode));
    }

    fn symlink(&mut self, path: &str, target: PathBuf) {
        self.parents(path);
        self.entries.insert(path.into(), Entry::Symlink(target));
    }

    /// Parent directories, unless a parent is already a symlink (then the
    /// entry lands where the link points, as on the host).
    fn parents(&mut self, path: &str) {
        let mut acc = String::new();
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(part);
            self.entries.entry(acc.clone()).or_insert(Entry::Dir(0o755));
        }
    }

    /// Adds a host path at the same place: a symlink as a symlink plus what
    /// it points to, a directory with everything under it.
    fn add_host(&mut self, path: &Path) -> Result<()> {
        let io = |e| {
            Error::io(
                format!("cannot pack `{}` into a host image", path.display()),
                e,
            )
        };
        let path = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir().map_err(io)?.join(path)
        };
        // Resolve the parent so /lib/x.so on a merged-/usr host lands at
        // usr/lib/x.so, behind the `lib -> usr/lib` link.
        let parent = path.parent().unwrap_or(Path::new("/"));
        let parent = parent.canonicalize().map_err(io)?;
        let here = match path.file_name() {
            Some(name) => parent.join(name),
            None => parent,
        };
        let key = here.to_string_lossy().trim_start_matches('/').to_string();
        if key.is_empty() || !self.added.insert(key.clone()) {
            return Ok(());
        }
        let meta = std::fs::symlink_metadata(&here).map_err(io)?;
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&here).map_err(io)?;
            self.symlink(&key, target.clone());
            let resolved = if target.is_absolute() {
                target
            } else {
                here.parent().unwrap_or(Path::new("/")).join(target)
            };
            self.add_host(&resolved)?;
        } else if meta.is_dir() {
            self.parents(&key);
            self.entries.insert(key, Entry::Dir(mode));
            let mut children: Vec<_> = std::fs::read_dir(&here)
                .map_err(io)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            children.sort();
            for child in children {
                self.add_host(&child)?;
            }
        } else if meta.is_file() {
            self.parents(&key);
            self.entries.insert(key, Entry::HostFile(here, mode));
        }
        Ok(())
    }

    fn into_tar(self) -> Result<Vec<u8>> {
        let mut b = tar::Builder::new(Vec::new());
        let io = |p: &str, e| Error::io(format!("cannot pack `/{p}` into a host image"), e);
        for (path, entry) in self.entries {
            let mut h = tar::Header::new_gnu();
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            match entry {
                Entry::Dir(mode) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(mode);
                    h.set_size(0);
                    b.append_data(&mut h, format!("{path}/"), std::io::empty())
                }
                Entry::File(contents, mode) => {
                    h.set_mode(mode);
                    h.set_size(contents.len() as u64);
                    b.append_data(&mut h, &path, contents.as_slice())
                }
                Entry::HostFile(src, mode) => {
                    let data = std::fs::read(&src).map_err(|e| io(&path, e))?;
                    h.set_mode(mode);
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, &path, data.as_slice())
                }
                Entry::Symlink(target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_mode(0o777);
                    h.set_size(0);
                    b.append_link(&mut h, &path, &target)
                }
            }
            .map_err(|e| io(&path, e))?;
        }
        b.into_inner().map_err(|e| io("", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_is_parsed_to_paths() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n\
                    \tlibmissing.so => not found\n";
        assert_eq!(
            parse_ldd(text),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
        assert!(parse_ldd("\tnot a dynamic executable\n").is_empty());
    }

    #[test]
    fn packing_is_reproducible_and_has_the_skeleton() {
        let img = HostImage::new("t")
            .binary("sh")
            .file("/etc/motd", "hi", 0o600);
        let a = img.pack().unwrap();
        let b = img.pack().unwrap();
        assert_eq!(hash_hex(&a, &[]), hash_hex(&b, &[]));
        let mut names = Vec::new();
        for e in tar::Archive::new(a.as_slice()).entries().unwrap() {
            let e = e.unwrap();
            names.push(e.path().unwrap().to_string_lossy().into_owned());
            if e.path().unwrap().to_str() == Some("tmp/") {
                assert_eq!(e.header().mode().unwrap(), 0o1777);
            }
        }
        for want in ["tmp/", "etc/passwd", "etc/motd"] {
            assert!(
                names.iter().any(|n| n == want),
                "{want} missing from {names:?}"
            );
        }
        assert!(
            names.iter().any(|n| n.ends_with("/sh")),
            "no sh in {names:?}"
        );
        assert!(
            names.iter().any(|n| n.contains("libc.so")),
            "no libc in {names:?}"
        );
    }

    #[test]
    fn a_missing_binary_is_named() {
        let err = HostImage::new("t")
            .binary("no-such-tool-xyz")
            .pack()
            .unwrap_err();
        assert!(err.to_string().contains("`no-such-tool-xyz`"), "{err}");
    }
}
