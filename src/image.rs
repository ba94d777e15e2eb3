//! Images: named ones pulled only when missing, images packed from this
//! machine's own binaries, and fallback chains — so tests run with no
//! registry at all.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::TryStreamExt;
use once_cell::sync::Lazy;
use sha2::{Digest, Sha256};

use crate::build::{DockerfileImage, RootfsImage};
use crate::engine::{client, on_engine};
use crate::error::{status_of, Error, Result};
use crate::host_image::HostImage;

/// Label put on images testdock makes, so they can be listed and removed:
/// `docker image rm $(docker images -q --filter label=testdock.image)`.
pub const LABEL_IMAGE: &str = "testdock.image";

/// The image a container starts from.
///
/// Made from a name (`"postgres:16"`, pulled only if missing), a
/// [`HostImage`], a [`DockerfileImage`], a [`RootfsImage`], or a chain with
/// [`Image::first_of`].
#[derive(Clone, Debug)]
pub struct Image {
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    Named(String, PullPolicy),
    Host(HostImage),
    Dockerfile(DockerfileImage),
    Rootfs(RootfsImage),
    FirstOf(Vec<Image>),
}

/// When a named image is pulled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PullPolicy {
    /// Only when it is not present (the default).
    #[default]
    IfMissing,
    /// Before every first use in a process, for moving tags like `latest`.
    Always,
    /// Never: a missing image is an error. For air-gapped runs that must
    /// not even try.
    Never,
}

impl Image {
    /// A named image, used if present and pulled only if missing.
    ///
    /// `TESTDOCK_IMAGE_PREFIX` (e.g. `mirror.example:5000/`) is put in front
    /// of every named image, so a suite can use a private mirror without
    /// changing its code.
    pub fn named(reference: impl Into<String>) -> Self {
        Image {
            kind: Kind::Named(reference.into(), PullPolicy::IfMissing),
        }
    }

    /// For a named image: when to pull it.
    pub fn pull(mut self, policy: PullPolicy) -> Self {
        if let Kind::Named(_, p) = &mut self.kind {
            *p = policy;
        }
        self
    }

    /// The first of `images` that can be had: present locally, then
    /// pullable, then buildable — in the order given.
    ///
    /// ```no_run
    /// use testdock::{HostImage, Image};
    /// let img = Image::first_of([Image::named("busybox:1.36"), HostImage::shell().into()]);
    /// ```
    pub fn first_of(images: impl IntoIterator<Item = Image>) -> Self {
        Image {
            kind: Kind::FirstOf(images.into_iter().collect()),
        }
    }

    /// The name as it would appear in an error message.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Named(n, _) => substitute(n),
            Kind::Host(h) => format!("{} (packed from host binaries)", h.repository),
            Kind::Dockerfile(d) => format!("{d:?}"),
            Kind::Rootfs(r) => format!("{r:?}"),
            Kind::FirstOf(all) => all
                .iter()
                .map(Image::describe)
                .collect::<Vec<_>>()
                .join(" | "),
        }
    }

    /// Why the engine could not be given this image, if so: a malformed
    /// reference or repository name, or a chain of nothing. Checked before
    /// any engine call.
    pub(crate) fn error(&self) -> Option<String> {
        match &self.kind {
            Kind::Named(n, _) => reference_error(&substitute(n)),
            Kind::Host(h) => repository_error(&h.repository).map(|why| {
                format!(
                    "the HostImage repository {:?} is not valid: {why}",
                    h.repository
                )
            }),
            // Their repositories are checked by the engine when building.
            Kind::Dockerfile(_) | Kind::Rootfs(_) => None,
            Kind::FirstOf(all) if all.is_empty() => {
                Some("Image::first_of was given no images to choose from".into())
            }
            Kind::FirstOf(all) => all.iter().find_map(Image::error),
        }
    }

    /// Whether the reference names one image for good: testdock's own
    /// (tagged by content) or a digest. A tag like `app:dev` may be moved
    /// to another image at any time.
    pub(crate) fn is_content_addressed(&self) -> bool {
        match &self.kind {
            Kind::Host(_) | Kind::Dockerfile(_) | Kind::Rootfs(_) => true,
            Kind::Named(n, _) => n.contains("@sha256:"),
            Kind::FirstOf(_) => false,
        }
    }

    /// Makes the image available and returns a reference Docker can start,
    /// and whether to pull it if `create` finds it missing.
    ///
    /// A named image is not checked here: `create` is tried first and a
    /// "no such image" answer triggers the pull, so a present image costs no
    /// extra request.
    pub(crate) async fn resolve_lazily(&self) -> Result<(String, bool)> {
        match &self.kind {
            Kind::Named(n, PullPolicy::IfMissing) => Ok((substitute(n), true)),
            _ => Ok((self.ensure().await?, false)),
        }
    }

    /// Makes the image available (pulling or building it) and returns its
    /// reference. Call from the engine runtime.
    pub(crate) async fn ensure(&self) -> Result<String> {
        match &self.kind {
            Kind::Named(n, policy) => {
                let n = substitute(n);
                match policy {
                    PullPolicy::IfMissing => ensure_named(&n).await?,
                    PullPolicy::Always => {
                        let key = format!("pull {n}");
                        let name = n.clone();
                        once_per_process(key, async move { pull(&name).await.map(|_| name) })
                            .await?;
                    }
                    PullPolicy::Never => {
                        if !present(&n).await? {
                            return Err(Error::ImageUnavailable {
                                image: n,
                                reason: "it is not present and the pull policy is never; \
                                         load it (`docker load`) or build it locally"
                                    .into(),
                            });
                        }
                    }
                }
                Ok(n)
            }
            Kind::Host(h) => h.build_on_engine().await,
            Kind::Dockerfile(d) => d.build_on_engine().await,
            Kind::Rootfs(r) => r.build_on_engine().await,
            // Decided once per process: a chain is usually named in a
            // spec started by many tests, and each look costs requests.
            Kind::FirstOf(all) => {
                once_per_process(format!("first of {}", self.describe()), async {
                    let mut why = Vec::new();
                    // Cheap first: anything already here wins without a pull.
                    for img in all {
                        if let Kind::Named(n, _) = &img.kind {
                            let n = substitute(n);
                            if present(&n).await? {
                                return Ok(n);
                            }
                        }
                    }
                    for img in all {
                        match Box::pin(img.ensure()).await {
                            Ok(r) => return Ok(r),
                            Err(e) => why.push(e.to_string()),
                        }
                    }
                    Err(Error::ImageUnavailable {
                        image: self.describe(),
                        reason: format!("none of the choices could be had: {}", why.join("; ")),
                    })
                })
                .await
            }
        }
    }
}

/// `reference` with `TESTDOCK_IMAGE_PREFIX` in front, unless it is already
/// there.
fn substitute(reference: &str) -> String {
    match std::env::var("TESTDOCK_IMAGE_PREFIX") {
        Ok(prefix) if !prefix.is_empty() => with_prefix(&prefix, reference),
        _ => reference.to_string(),
    }
}

fn with_prefix(prefix: &str, reference: &str) -> String {
    if reference.starts_with(prefix) {
        reference.to_string()
    } else {
        format!("{prefix}{reference}")
    }
}

impl From<DockerfileImage> for Image {
    fn from(d: DockerfileImage) -> Self {
        Image {
            kind: Kind::Dockerfile(d),
        }
    }
}

impl From<RootfsImage> for Image {
    fn from(r: RootfsImage) -> Self {
        Image {
            kind: Kind::Rootfs(r),
        }
    }
}

impl From<&str> for Image {
    fn from(s: &str) -> Self {
        Image::named(s)
    }
}

impl From<String> for Image {
    fn from(s: String) -> Self {
        Image::named(s)
    }
}

impl From<&String> for Image {
    fn from(s: &String) -> Self {
        Image::named(s.clone())
    }
}

impl From<HostImage> for Image {
    fn from(h: HostImage) -> Self {
        Image {
            kind: Kind::Host(h),
        }
    }
}

/// Makes a named image present: a no-op if it is, a pull if not.
///
/// # Errors
///
/// [`Error::InvalidSpec`] for a malformed reference, before any engine
/// call; [`Error::ImageUnavailable`] when it is missing and cannot be
/// pulled (no registry reachable, unknown name).
pub async fn ensure_image(reference: impl Into<String>) -> Result<()> {
    let reference = reference.into();
    if let Some(why) = reference_error(&reference) {
        return Err(Error::InvalidSpec(why));
    }
    on_engine(async move { ensure_named(&reference).await }).await
}

pub(crate) async fn present(reference: &str) -> Result<bool> {
    match client().await?.inspect_image(reference).await {
        Ok(_) => Ok(true),
        Err(e) if status_of(&e) == Some(404) => Ok(false),
        Err(e) => Err(Error::docker(format!("inspect image {reference}"), e)),
    }
}

pub(crate) async fn ensure_named(reference: &str) -> Result<()> {
    if present(reference).await? {
        return Ok(());
    }
    pull(reference).await
}

/// Pulls, printing one line per finished layer and one at the end — a
/// progress a person can follow without a flood.
async fn pull(reference: &str) -> Result<()> {
    let docker = client().await?;
    // A bare name means its `latest` tag, as with `docker pull`.
    let (from, tag) = split_tag(reference);
    let opts = CreateImageOptionsBuilder::new()
        .from_image(from)
        .tag(tag)
        .build();
    let started = std::time::Instant::now();
    eprintln!("testdock: pulling {reference}");
    let r = reference.to_string();
    let _still = crate::progress::Ticker::start(move |waited| {
        format!("still pulling {r} ({} s)", waited.as_secs())
    });
    let mut layers = 0;
    let mut stream = docker.create_image(Some(opts), None, None);
    loop {
        match stream.try_next().await {
            Ok(Some(info)) => {
                if info.status.as_deref() == Some("Pull complete") {
                    layers += 1;
                    let id = info.id.unwrap_or_default();
                    eprintln!("testdock: pulling {reference}: layer {id} done");
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(
                    image = reference,
                    error = %e,
                    elapsed_ms = crate::trace::ms(started),
                    "image pull failed"
                );
                return Err(Error::ImageUnavailable {
                    image: reference.into(),
                    reason: format!(
                        "not present locally and the pull failed ({e}); is a registry reachable? \
                         offline, build it locally, e.g. with testdock::HostImage, or `docker load` it"
                    ),
                });
            }
        }
    }
    eprintln!(
        "testdock: pulled {reference} ({layers} new layers) in {:.1?}",
        started.elapsed()
    );
    tracing::info!(
        image = reference,
        layers,
        elapsed_ms = crate::trace::ms(started),
        "image pulled"
    );
    Ok(())
}

/// `repo[:tag]` → (repo, tag); a port in the registry host is not a tag.
fn split_tag(reference: &str) -> (&str, &str) {
    if reference.contains('@') {
        return (reference, "");
    }
    match reference.rfind(':') {
        Some(i) if !reference[i..].contains('/') => (&reference[..i], &reference[i + 1..]),
        _ => (reference, "latest"),
    }
}

/// Why `reference` is not an image reference Docker would take, following
/// its grammar (`[host[:port]/]path[:tag][@digest]`: a lowercase path of
/// components joined by `/`, a tag of up to 128 word characters, `.` and
/// `-`, a digest `algorithm:hex`). Checked before any engine call: the
/// engine's own answers to a bad one are far from the cause (an empty name
/// is "No command specified").
pub(crate) fn reference_error(reference: &str) -> Option<String> {
    let why = |what: String| {
        Some(format!(
            "image {reference:?} is not a valid reference: {what}"
        ))
    };
    if reference.is_empty() {
        return why("it is empty".into());
    }
    if reference.chars().any(char::is_whitespace) {
        return why("it contains whitespace".into());
    }
    let (rest, digest) = match reference.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (reference, None),
    };
    if let Some(digest) = digest {
        if let Some(what) = digest_error(digest) {
            return why(what);
        }
    }
    // A colon after the last slash starts the tag; one before it is a port.
    let (name, tag) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if let Some(tag) = tag {
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let ok = tag.len() <= 128
            && tag.starts_with(word)
            && tag.chars().all(|c| word(c) || c == '.' || c == '-');
        if !ok {
            return why(format!(
                "the tag {tag:?} must be 1 to 128 letters, digits, `_`, `.` or `-`, \
                 not starting with `.` or `-`"
            ));
        }
    }
    repository_error(name).and_then(why)
}

/// Why `name` (a reference without tag and digest) is not a repository
/// name.
pub(crate) fn repository_error(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("the repository name is empty".into());
    }
    if name.len() > 255 {
        return Some("the repository name is longer than 255 characters".into());
    }
    // The first component is a registry host if it looks like one (as
    // Docker decides): a dot, a port, `localhost`, or capitals.
    let (host, path) = match name.split_once('/') {
        Some((first, path))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (Some(first), path)
        }
        _ => (None, name),
    };
    if let Some(host) = host {
        if let Some(what) = host_error(host) {
            return Some(what);
        }
    }
    if path.chars().any(|c| c.is_ascii_uppercase()) {
        return Some(format!("the repository {path:?} must be lowercase"));
    }
    path.split('/').find(|c| !is_path_component(c)).map(|c| {
        format!(
            "{c:?} is not a path component: lowercase letters and digits, \
                 joined by single `.` or `_`, `__`, or runs of `-`"
        )
    })
}

/// `[a-z0-9]+ (([._]|__|-+) [a-z0-9]+)*`
fn is_path_component(c: &str) -> bool {
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let b = c.as_bytes();
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && alnum(&b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        let sep = i;
        while i < b.len() && !alnum(&b[i]) {
            i += 1;
        }
        let ok = match &b[sep..i] {
            [b'.'] | [b'_'] | [b'_', b'_'] => true,
            s => s.iter().all(|c| *c == b'-'),
        };
        if !ok {
            return false;
        }
    }
}

/// `domain-component ('.' domain-component)* [':' port]`, or `[IPv6]`.
fn host_error(host: &str) -> Option<String> {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(':') && !port.contains(']') => (name, Some(port)),
        _ => (host, None),
    };
    let bad = || Some(format!("{host:?} is not a registry host"));
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return bad();
    }
    if let Some(v6) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        let ok = !v6.is_empty() && v6.chars().all(|c| c.is_ascii_hexdigit() || c == ':');
        return if ok { None } else { bad() };
    }
    let component = |c: &str| {
        !c.is_empty()
            && !c.starts_with('-')
            && !c.ends_with('-')
            && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.split('.').all(component) {
        None
    } else {
        bad()
    }
}

/// `algorithm:hex`, the algorithm `[A-Za-z][A-Za-z0-9]*` parts joined by
/// `+ . - _`, at least 32 hex digits.
fn digest_error(digest: &str) -> Option<String> {
    let bad = || {
        Some(format!(
            "the digest {digest:?} must be `algorithm:hex`, e.g. `sha256:` and 64 hex digits"
        ))
    };
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return bad();
    };
    let part = |p: &str| {
        p.starts_with(|c: char| c.is_ascii_alphabetic())
            && p.bytes().all(|b| b.is_ascii_alphanumeric())
    };
    let algorithm_ok = algorithm.split(['+', '.', '-', '_']).all(part);
    let hex_ok = hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    if !algorithm_ok || !hex_ok || (algorithm == "sha256" && hex.len() != 64) {
        return bad();
    }
    None
}

/// Runs `make` at most once per process per `key`, even when many tests ask
/// at once; later callers get the first one's reference. A failure is not
/// remembered: the next caller tries again.
pub(crate) async fn once_per_process(
    key: String,
    make: impl Future<Output = Result<String>>,
) -> Result<String> {
    static MADE: Lazy<Mutex<HashMap<String, Arc<tokio::sync::OnceCell<String>>>>> =
        Lazy::new(Default::default);
    let cell = MADE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key)
        .or_default()
        .clone();
    cell.get_or_try_init(|| make).await.cloned()
}

/// Imports a root filesystem tar as `reference`, with Dockerfile `changes`
/// (ENV, CMD, LABEL…), unless an image of that name is already present.
pub(crate) async fn import_tar(reference: &str, tar: Vec<u8>, changes: Vec<String>) -> Result<()> {
    if present(reference).await? {
        tracing::debug!(image = reference, "image present; import skipped");
        return Ok(());
    }
    let t0 = std::time::Instant::now();
    let size = tar.len();
    crate::progress::say(format!(
        "importing {reference} ({:.1} MB, first use of this content)",
        size as f64 / 1e6
    ));
    let r = reference.to_string();
    let _still = crate::progress::Ticker::start(move |waited| {
        format!("still importing {r} ({} s)", waited.as_secs())
    });
    if crate::engine::engine().await?.is_podman() {
        // Podman's import keeps only a single change; a build keeps all.
        let context = crate::build::rootfs_context(tar, &changes)?;
        let kind = changes
            .iter()
            .find_map(|c| c.strip_prefix(&format!("LABEL {LABEL_IMAGE}=")))
            .unwrap_or("import")
            .to_string();
        return crate::build::build_context(
            reference,
            context,
            "Dockerfile",
            HashMap::new(),
            &kind,
        )
        .await;
    }
    // The tag goes inside `repo`: Podman ignores a separate `tag`.
    let opts = CreateImageOptionsBuilder::new()
        .from_src("-")
        .repo(reference)
        .changes(changes)
        .build();
    client()
        .await?
        .create_image(Some(opts), Some(bollard::body_full(tar.into())), None)
        .try_collect::<Vec<_>>()
        .await
        .map_err(|e| Error::docker(format!("import image {reference}"), e))?;
    crate::progress::say(format!(
        "imported {reference} in {}",
        crate::progress::secs(t0.elapsed())
    ));
    tracing::info!(
        image = reference,
        bytes = size,
        elapsed_ms = crate::trace::ms(t0),
        "image imported"
    );
    Ok(())
}

/// The Dockerfile lines an imported image gets: its environment, the
/// `testdock.image=<kind>` label, and its command (as JSON, the exec form).
pub(crate) fn image_changes(env: &[String], cmd: Option<&[String]>, kind: &str) -> Vec<String> {
    // Quoted and escaped: Dockerfile ENV splits on spaces and expands `$`.
    let mut c: Vec<String> = env
        .iter()
        .map(|e| {
            let (k, v) = e.split_once('=').unwrap_or((e, ""));
            let v: String = v
                .chars()
                .flat_map(|ch| match ch {
                    '"' | '\\' | '$' => vec!['\\', ch],
                    ch => vec![ch],
                })
                .collect();
            format!("ENV {k}=\"{v}\"")
        })
        .collect();
    c.push(format!("LABEL {LABEL_IMAGE}={kind}"));
    if let Some(cmd) = cmd {
        c.push(format!(
            "CMD {}",
            serde_json::to_string(cmd).unwrap_or_default()
        ));
    }
    c
}

/// A short content hash for tags: 16 hex digits of SHA-256 over the tar and
/// the extra inputs.
pub(crate) fn hash_hex(tar: &[u8], extra: &[String]) -> String {
    let mut h = Sha256::new();
    h.update(tar);
    for c in extra {
        h.update(c.as_bytes());
        h.update([0]);
    }
    crate::util::hex(&h.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_goes_in_front_once() {
        assert_eq!(
            with_prefix("mirror:5000/", "postgres:16"),
            "mirror:5000/postgres:16"
        );
        assert_eq!(
            with_prefix("mirror:5000/", "mirror:5000/postgres:16"),
            "mirror:5000/postgres:16"
        );
    }

    #[test]
    fn references_follow_dockers_grammar() {
        let sha = "sha256:".to_string() + &"ab12".repeat(16);
        for good in [
            "postgres",
            "postgres:16",
            "postgres:16-alpine",
            "library/postgres:16.1_x",
            "my-org/my__app.v2/a-b--c:TAG_1",
            "localhost/app",
            "localhost:5000/app:v1",
            "registry.example.com:443/team/app",
            "Registry.Example/app",
            "[::1]:5000/app",
            // A registry `postgres` on port 1, repository `2`.
            "postgres:1/2",
            "testdock/shell:e94c3830eeb08c89",
            &format!("app@{sha}"),
            &format!("app:v1@{sha}"),
            &format!("app:{}", "t".repeat(128)),
        ] {
            assert_eq!(reference_error(good), None, "{good}");
        }
        for (bad, says) in [
            ("", "it is empty"),
            (" postgres", "whitespace"),
            ("postgres :16", "whitespace"),
            ("post\tgres", "whitespace"),
            ("Postgres:16", "must be lowercase"),
            ("myorg/App", "must be lowercase"),
            ("postgres:", "the tag \"\""),
            ("postgres:-1", "the tag"),
            ("postgres:.1", "the tag"),
            ("postgres:a+b", "the tag"),
            (&format!("app:{}", "t".repeat(129)), "the tag"),
            ("app@sha256:abc", "the digest"),
            ("app@sha256", "the digest"),
            (&format!("app@sha256:{}", "g".repeat(64)), "the digest"),
            (&format!("app@{sha}@{sha}"), "the digest"),
            (":16", "the repository name is empty"),
            ("a..b", "\"a..b\" is not a path component"),
            ("-app", "is not a path component"),
            ("app-", "is not a path component"),
            ("a___b", "is not a path component"),
            ("org//app", "\"\" is not a path component"),
            ("app/", "is not a path component"),
            ("my_registry.com/app", "is not a registry host"),
            ("localhost:port/app", "is not a registry host"),
            ("-bad.host/app", "is not a registry host"),
            (&"a".repeat(256), "longer than 255"),
        ] {
            let why = reference_error(bad).unwrap_or_else(|| panic!("{bad:?} was accepted"));
            assert!(why.contains(says), "{bad:?}: {why}");
            assert!(why.starts_with(&format!("image {bad:?} ")), "{why}");
        }
    }

    #[test]
    fn images_of_every_kind_are_checked() {
        assert_eq!(Image::named("postgres:16").error(), None);
        assert!(Image::named("").error().is_some());
        assert_eq!(
            Image::from(crate::HostImage::new("myorg/tools")).error(),
            None
        );
        let why = Image::from(crate::HostImage::new("My Tools"))
            .error()
            .unwrap();
        assert!(why.contains("\"My Tools\""), "{why}");
        assert!(Image::first_of([]).error().is_some());
        let why = Image::first_of(["ok:1".into(), "Not:1".into()])
            .error()
            .unwrap();
        assert!(why.contains("\"Not:1\""), "{why}");
    }

    #[test]
    fn tags_split_from_names_not_from_registry_ports() {
        assert_eq!(split_tag("postgres:16"), ("postgres", "16"));
        assert_eq!(split_tag("postgres"), ("postgres", "latest"));
        assert_eq!(
            split_tag("localhost:5000/app"),
            ("localhost:5000/app", "latest")
        );
        assert_eq!(
            split_tag("localhost:5000/app:v1"),
            ("localhost:5000/app", "v1")
        );
    }
}
