//! Images built from a Dockerfile context or imported from a root
//! filesystem: both work with no registry (`FROM scratch`, or a base image
//! already present).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard::query_parameters::BuildImageOptions;
use futures_util::StreamExt;
use globset::{GlobBuilder, GlobMatcher};

use crate::engine::{client, on_engine};
use crate::error::{Error, Result};
use crate::image::{hash_hex, image_changes, import_tar, once_per_process, present, LABEL_IMAGE};
use crate::util::tail_lines;

/// An image built from a Dockerfile and its context directory with the
/// engine's build endpoint. The context is sent as a tar (honouring
/// `.dockerignore`), the image is tagged `<repository>:<hash of the
/// context>`, and the build is skipped when that tag is already present.
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> testdock::Result<()> {
/// use testdock::{ContainerSpec, DockerfileImage};
///
/// let image = DockerfileImage::new("myorg/fake-smtp", "fixtures/fake-smtp")
///     .build_arg("VERSION", "1.2");
/// let c = ContainerSpec::new(image).start().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerfileImage {
    repository: String,
    context: PathBuf,
    dockerfile: String,
    args: Vec<(String, String)>,
}

impl DockerfileImage {
    /// Builds `context` (a directory holding a `Dockerfile`) as
    /// `repository`.
    pub fn new(repository: impl Into<String>, context: impl Into<PathBuf>) -> Self {
        DockerfileImage {
            repository: repository.into(),
            context: context.into(),
            dockerfile: "Dockerfile".into(),
            args: Vec::new(),
        }
    }

    /// The Dockerfile's path within the context (default `Dockerfile`).
    pub fn dockerfile(mut self, path: impl Into<String>) -> Self {
        self.dockerfile = path.into();
        self
    }

    /// A build argument (`ARG` in the Dockerfile).
    pub fn build_arg(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.args.push((key.into(), value.into()));
        self
    }

    /// Builds the image unless a build of the same context is present;
    /// returns its reference.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the context cannot be read; [`Error::BuildFailed`]
    /// with the build's last output lines if a step fails.
    pub async fn build(&self) -> Result<String> {
        let this = self.clone();
        on_engine(async move { this.build_on_engine().await }).await
    }

    /// The context is packed and hashed on every call (a test may change
    /// it); concurrent builds of the same content share one.
    pub(crate) async fn build_on_engine(&self) -> Result<String> {
        let (context, dockerfile) = (self.context.clone(), self.dockerfile.clone());
        let tar = tokio::task::spawn_blocking(move || context_tar(&context, &dockerfile))
            .await
            .expect("packing a build context panicked")?;
        let mut extra = vec![self.dockerfile.clone()];
        extra.extend(self.args.iter().map(|(k, v)| format!("{k}={v}")));
        let reference = format!("{}:{}", self.repository, hash_hex(&tar, &extra));
        let this = self.clone();
        let r = reference.clone();
        once_per_process(format!("build {reference}"), async move {
            if !present(&r).await? {
                this.run_build(&r, tar).await?;
            }
            Ok(r)
        })
        .await
    }

    async fn run_build(&self, reference: &str, tar: Vec<u8>) -> Result<()> {
        let args = self.args.iter().cloned().collect();
        build_context(reference, tar, &self.dockerfile, args, "dockerfile").await
    }
}

/// Builds the context `tar` as `reference` with the engine's build
/// endpoint; `kind` goes in the `testdock.image` label.
pub(crate) async fn build_context(
    reference: &str,
    tar: Vec<u8>,
    dockerfile: &str,
    args: HashMap<String, String>,
    kind: &str,
) -> Result<()> {
    let docker = client().await?;
    let opts = BuildImageOptions {
        dockerfile: dockerfile.to_string(),
        t: Some(reference.to_string()),
        rm: true,
        forcerm: true,
        buildargs: Some(args),
        labels: Some(HashMap::from([(LABEL_IMAGE.to_string(), kind.to_string())])),
        ..Default::default()
    };
    let t0 = std::time::Instant::now();
    crate::progress::say(format!(
        "building {reference} ({kind} image, first use of this content)"
    ));
    let r = reference.to_string();
    let _still = crate::progress::Ticker::start(move |waited| {
        format!("still building {r} ({} s)", waited.as_secs())
    });
    let mut output = String::new();
    let mut stream = docker.build_image(opts, None, Some(bollard::body_full(tar.into())));
    let fail = |reason: String, output: &str| Error::BuildFailed {
        image: reference.to_string(),
        reason,
        output_tail: tail_lines(output, 20),
    };
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(s) = info.stream {
                    crate::progress::build_steps(reference, &s);
                    output.push_str(&s);
                }
                if let Some(e) = info.error_detail.and_then(|d| d.message) {
                    return Err(fail(e, &output));
                }
            }
            // Podman reports a failed step as a stream error.
            Err(e) => return Err(fail(e.to_string(), &output)),
        }
    }
    crate::progress::say(format!(
        "built {reference} in {}",
        crate::progress::secs(t0.elapsed())
    ));
    tracing::info!(
        image = reference,
        kind,
        elapsed_ms = crate::trace::ms(t0),
        "image built"
    );
    Ok(())
}

/// A context that builds `rootfs` (a root filesystem tar) into an image
/// with `changes` (ENV, CMD, LABEL lines): `FROM scratch`, `ADD`, the
/// changes. For engines whose import drops all but one change (Podman 4).
pub(crate) fn rootfs_context(rootfs: Vec<u8>, changes: &[String]) -> Result<Vec<u8>> {
    let mut dockerfile = String::from("FROM scratch\nADD rootfs.tar /\n");
    for c in changes {
        dockerfile.push_str(c);
        dockerfile.push('\n');
    }
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("Dockerfile", dockerfile.into_bytes()),
        ("rootfs.tar", rootfs),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data.as_slice())
            .map_err(|e| Error::io("cannot pack a build context", e))?;
    }
    b.into_inner()
        .map_err(|e| Error::io("cannot pack a build context", e))
}

/// An image imported from a root filesystem: a directory (packed as is,
/// owners and modes kept, except that files of the user running the tests
/// become root's) or a `.tar` file. Tagged by a hash of its content
/// and imported only when that tag is missing.
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> testdock::Result<()> {
/// use testdock::{ContainerSpec, RootfsImage};
///
/// let image = RootfsImage::new("myorg/rootfs", "fixtures/rootfs").cmd(["/bin/app"]);
/// let c = ContainerSpec::new(image).start().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootfsImage {
    repository: String,
    source: PathBuf,
    env: Vec<String>,
    cmd: Option<Vec<String>>,
}

impl RootfsImage {
    /// Imports `source`, a directory or a tar file, as `repository`.
    pub fn new(repository: impl Into<String>, source: impl Into<PathBuf>) -> Self {
        RootfsImage {
            repository: repository.into(),
            source: source.into(),
            env: Vec::new(),
            cmd: None,
        }
    }

    /// Sets an environment variable in the image.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push(format!("{}={}", key.into(), value.into()));
        self
    }

    /// The image's default command.
    pub fn cmd(mut self, cmd: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.cmd = Some(cmd.into_iter().map(Into::into).collect());
        self
    }

    /// Imports the image unless it is present; returns its reference.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] naming the source if it cannot be read; a Docker error
    /// from the import.
    pub async fn build(&self) -> Result<String> {
        let this = self.clone();
        on_engine(async move { this.build_on_engine().await }).await
    }

    pub(crate) async fn build_on_engine(&self) -> Result<String> {
        let source = self.source.clone();
        let tar = tokio::task::spawn_blocking(move || {
            if source.is_dir() {
                tar_tree(&source, &|_| false, true)
            } else {
                std::fs::read(&source).map_err(|e| {
                    Error::io(
                        format!("cannot read root filesystem `{}`", source.display()),
                        e,
                    )
                })
            }
        })
        .await
        .expect("packing a root filesystem panicked")?;
        let changes = image_changes(&self.env, self.cmd.as_deref(), "rootfs");
        let reference = format!("{}:{}", self.repository, hash_hex(&tar, &changes));
        let r = reference.clone();
        once_per_process(format!("import {reference}"), async move {
            import_tar(&r, tar, changes).await?;
            Ok(r)
        })
        .await
    }
}

/// The build context as a tar, without what `.dockerignore` excludes (the
/// Dockerfile itself is always sent: the engine needs it).
fn context_tar(context: &Path, dockerfile: &str) -> Result<Vec<u8>> {
    if !context.join(dockerfile).is_file() {
        return Err(Error::io(
            format!("no `{dockerfile}` in build context `{}`", context.display()),
            std::io::ErrorKind::NotFound.into(),
        ));
    }
    let ignore = match std::fs::read_to_string(context.join(".dockerignore")) {
        Ok(text) => DockerIgnore::parse(&text)?,
        Err(_) => DockerIgnore::default(),
    };
    let keep = [dockerfile.trim_start_matches("./"), ".dockerignore"];
    tar_tree(
        context,
        &|rel| !keep.contains(&rel) && ignore.excludes(rel),
        false,
    )
}

/// A file's owner as the image records it: a user who is not root cannot
/// give files away, so their own files stand for root's — as a rootless
/// engine maps that user to root.
fn image_id(id: u32, mine: u32) -> u32 {
    if id == mine {
        0
    } else {
        id
    }
}

/// A reproducible tar of the tree under `root`: sorted, zero mtimes; owners
/// kept only when `owners` (a root filesystem), else root's. `skip` gets
/// each path relative to `root`.
fn tar_tree(root: &Path, skip: &dyn Fn(&str) -> bool, owners: bool) -> Result<Vec<u8>> {
    use std::os::unix::fs::MetadataExt;
    let io = |p: &Path, e| Error::io(format!("cannot pack `{}`", p.display()), e);
    let mut b = tar::Builder::new(Vec::new());
    // SAFETY: neither call can fail or touch memory.
    let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let mut stack = vec![root.to_path_buf()];
    let mut paths = Vec::new();
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| io(&dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            let rel = p
                .strip_prefix(root)
                .unwrap_or(&p)
                .to_string_lossy()
                .into_owned();
            if skip(&rel) {
                continue;
            }
            let meta = std::fs::symlink_metadata(&p).map_err(|e| io(&p, e))?;
            if meta.is_dir() {
                stack.push(p.clone());
            }
            paths.push((rel, p, meta));
        }
    }
    paths.sort_by(|a, b| a.0.cmp(&b.0));
    for (rel, p, meta) in paths {
        let mut h = tar::Header::new_gnu();
        h.set_metadata(&meta);
        h.set_mtime(0);
        if !owners {
            h.set_uid(0);
            h.set_gid(0);
        } else {
            h.set_uid(image_id(meta.uid(), euid).into());
            h.set_gid(image_id(meta.gid(), egid).into());
        }
        let ft = meta.file_type();
        let result = if ft.is_symlink() {
            let target = std::fs::read_link(&p).map_err(|e| io(&p, e))?;
            h.set_size(0);
            b.append_link(&mut h, &rel, target)
        } else if ft.is_dir() {
            h.set_size(0);
            b.append_data(&mut h, format!("{rel}/"), std::io::empty())
        } else if ft.is_file() {
            let f = std::fs::File::open(&p).map_err(|e| io(&p, e))?;
            b.append_data(&mut h, &rel, f)
        } else {
            // Sockets, fifos, devices: not part of an image.
            continue;
        };
        result.map_err(|e| io(&p, e))?;
    }
    b.into_inner().map_err(|e| io(root, e))
}

/// `.dockerignore` rules: patterns relative to the context root, `*` and
/// `?` within one path component, `**` across any, `!` re-includes; the
/// last rule matching a path or one of its parents decides.
#[derive(Debug, Default)]
struct DockerIgnore {
    rules: Vec<(GlobMatcher, bool)>,
}

impl DockerIgnore {
    fn parse(text: &str) -> Result<Self> {
        let mut rules = Vec::new();
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (include, pattern) = match line.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, line),
            };
            let pattern = pattern.trim_start_matches('/').trim_end_matches('/');
            let pattern = pattern.strip_prefix("./").unwrap_or(pattern);
            let glob = GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .map_err(|e| {
                    Error::io(
                        format!("bad .dockerignore pattern `{line}`: {e}"),
                        std::io::ErrorKind::InvalidData.into(),
                    )
                })?;
            rules.push((glob.compile_matcher(), include));
        }
        Ok(DockerIgnore { rules })
    }

    fn excludes(&self, rel: &str) -> bool {
        let mut excluded = false;
        for (glob, include) in &self.rules {
            let mut candidate = Some(Path::new(rel));
            let hit = std::iter::from_fn(|| {
                let c = candidate?;
                candidate = c.parent().filter(|p| !p.as_os_str().is_empty());
                Some(c)
            })
            .any(|p| glob.is_match(p));
            if hit {
                excluded = !include;
            }
        }
        excluded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_own_files_stand_for_roots_in_a_rootfs() {
        // Run as uid 1000: its files become root's, others' stay theirs.
        assert_eq!(image_id(1000, 1000), 0);
        assert_eq!(image_id(33, 1000), 33);
        // Run as root: nothing changes.
        assert_eq!(image_id(0, 0), 0);
        assert_eq!(image_id(1234, 0), 1234);
    }

    #[test]
    fn dockerignore_follows_dockers_rules() {
        let ig = DockerIgnore::parse(
            "# comment\n\
             target\n\
             *.log\n\
             docs/**/*.md\n\
             !docs/keep/README.md\n\
             /secrets/\n",
        )
        .unwrap();
        assert!(ig.excludes("target"));
        assert!(
            ig.excludes("target/debug/app"),
            "a matched directory excludes its contents"
        );
        assert!(ig.excludes("build.log"));
        assert!(
            !ig.excludes("logs/build.log"),
            "`*` does not cross `/`; patterns are anchored"
        );
        assert!(ig.excludes("docs/a/b/c.md"));
        assert!(!ig.excludes("docs/keep/README.md"), "`!` re-includes");
        assert!(ig.excludes("secrets/key"));
        assert!(!ig.excludes("src/main.rs"));
    }

    #[test]
    fn context_tars_are_reproducible_and_skip_ignored_files() {
        let dir =
            std::env::temp_dir().join(format!("testdock-ctx-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(dir.join(".dockerignore"), "*.tmp\nDockerfile\n").unwrap();
        std::fs::write(dir.join("sub/a.txt"), "a").unwrap();
        std::fs::write(dir.join("junk.tmp"), "x").unwrap();
        let a = context_tar(&dir, "Dockerfile").unwrap();
        assert_eq!(a, context_tar(&dir, "Dockerfile").unwrap());
        let names: Vec<String> = tar::Archive::new(a.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [".dockerignore", "Dockerfile", "sub/", "sub/a.txt"]);
        std::fs::remove_dir_all(&dir).unwrap();
        let err = context_tar(&dir, "Dockerfile").unwrap_err();
        assert!(
            err.to_string().contains("no `Dockerfile` in build context"),
            "{err}"
        );
    }
}
