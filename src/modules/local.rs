//! What the fixtures' images made from this machine's install share: how
//! the default image is chosen (official first, then the local one), the
//! messages of a first build, and the build itself — a [`HostImage`] of the
//! install as the base, then a short Dockerfile on top.

use std::collections::HashMap;
use std::path::Path;
use std::time::UNIX_EPOCH;

use bollard::query_parameters::BuildImageOptionsBuilder;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use crate::engine::client;
use crate::error::{status_of, Error, Result};
use crate::{HostImage, LABEL_IMAGE};

/// A server installed on this machine that a fixture can make its image
/// from.
pub(crate) trait Install: Sized + Send + 'static {
    /// As messages name it: `PostgreSQL`, `Redis`, `MariaDB`.
    const PRODUCT: &'static str;
    /// The official image tried first.
    const OFFICIAL: &'static str;
    /// Repository of the local image; the tag is the version and a
    /// fingerprint of what went in.
    const REPOSITORY: &'static str;
    /// The value of [`LABEL_IMAGE`] on it.
    const LABEL: &'static str;

    /// The install, if there is one.
    fn find() -> Option<Self>;
    /// Why there is none, and how to get one.
    fn missing() -> String;
    /// The version the tag and the messages carry.
    fn version(&self) -> &str;
    /// Where it is installed, for the messages.
    fn location(&self) -> &Path;
    /// Cheap to compute, so a present image costs no packing (see
    /// [`fingerprint`]).
    fn fingerprint(&self) -> String;
    /// The files of the base image.
    fn host_image(&self) -> Result<HostImage>;
    /// The Dockerfile put on the base image.
    fn dockerfile(base: &str) -> String;
}

/// A fingerprint of a recipe and of files: their size and mtime (a package
/// upgrade changes them), so nothing is read or packed.
pub(crate) fn fingerprint<'a>(
    recipe: &[&str],
    files: impl IntoIterator<Item = &'a Path>,
) -> String {
    let mut h = Sha256::new();
    for part in recipe {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for file in files {
        if let Ok(meta) = std::fs::metadata(file) {
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            h.update(format!("{}:{}:{mtime};", file.display(), meta.len()));
        }
    }
    crate::util::hex(&h.finalize()[..8])
}

/// The install and the reference of its image, if there is one.
fn installed<I: Install>() -> Option<(I, String)> {
    I::find().map(|install| {
        let reference = format!(
            "{}:{}-{}",
            I::REPOSITORY,
            install.version(),
            install.fingerprint()
        );
        (install, reference)
    })
}

/// The server's image as a fixture picks it by default, cheapest first: the
/// official image if present, the local one if already built, the official
/// one if it can be pulled, else the local one, built now by `local`. So an
/// air-gapped machine does not try a pull on every run.
pub(crate) async fn default_image<I, F>(local: impl FnOnce() -> F) -> Result<String>
where
    I: Install,
    F: std::future::Future<Output = Result<String>>,
{
    if present(I::OFFICIAL).await? {
        return Ok(I::OFFICIAL.to_string());
    }
    if let Some((_, reference)) = installed::<I>() {
        if present(&reference).await? {
            return Ok(reference);
        }
    }
    match crate::ensure_image(I::OFFICIAL).await {
        Ok(()) => Ok(I::OFFICIAL.to_string()),
        Err(official) => {
            if let Some((install, _)) = installed::<I>() {
                crate::progress::say(without_registry(I::OFFICIAL, I::PRODUCT, install.version()));
            }
            local().await.map_err(|local| Error::ImageUnavailable {
                image: format!("{} | {}", I::OFFICIAL, I::REPOSITORY),
                reason: format!("{official}; {local}"),
            })
        }
    }
}

/// Why the first run on a machine without a registry builds an image.
pub(crate) fn without_registry(official: &str, product: &str, version: &str) -> String {
    format!(
        "{official} cannot be pulled (no registry reachable?); using this machine's \
         {product} {version} instead"
    )
}

/// What a build of the local image says first: it takes a while, once.
pub(crate) fn building_locally(
    reference: &str,
    product: &str,
    install: &Path,
    version: &str,
) -> String {
    format!(
        "building {reference} from this machine's {product} {version} ({}): first time only, \
         later runs reuse it",
        install.display()
    )
}

pub(crate) async fn present(reference: &str) -> Result<bool> {
    match client().await?.inspect_image(reference).await {
        Ok(_) => Ok(true),
        Err(e) if status_of(&e) == Some(404) => Ok(false),
        Err(e) => Err(Error::docker(format!("inspect image {reference}"), e)),
    }
}

/// The image of install `I`, built at most once per process (`cell` is the
/// module's own) and only when it is not there already.
pub(crate) async fn once<I: Install>(
    cell: &'static tokio::sync::OnceCell<String>,
) -> Result<String> {
    cell.get_or_try_init(|| crate::engine::on_engine(build::<I>()))
        .await
        .cloned()
}

/// Builds the image of the install unless it is there, and returns its
/// reference; on the engine runtime.
async fn build<I: Install>() -> Result<String> {
    let Some((install, reference)) = installed::<I>() else {
        return Err(Error::ImageUnavailable {
            image: format!("{} (made from the local install)", I::REPOSITORY),
            reason: I::missing(),
        });
    };
    if present(&reference).await? {
        return Ok(reference);
    }
    let t0 = std::time::Instant::now();
    crate::progress::say(building_locally(
        &reference,
        I::PRODUCT,
        install.location(),
        install.version(),
    ));
    let r = reference.clone();
    let _still = crate::progress::Ticker::start(move |waited| {
        format!("still building {r} ({} s)", waited.as_secs())
    });
    let docker = client().await?;
    let base = tokio::task::spawn_blocking(move || install.host_image())
        .await
        .expect("listing the install panicked")?
        .build()
        .await?;
    let context = build_context(&I::dockerfile(&base), I::PRODUCT)?;
    let labels = HashMap::from([(LABEL_IMAGE, I::LABEL)]);
    let opts = BuildImageOptionsBuilder::new()
        .dockerfile("Dockerfile")
        .t(&reference)
        .rm(true)
        .forcerm(true)
        .labels(&labels)
        .build();
    let op = || format!("build image {reference}");
    let mut output = String::new();
    let mut stream = docker.build_image(opts, None, Some(bollard::body_full(context.into())));
    while let Some(info) = stream.next().await {
        let info = info.map_err(|e| Error::docker(op(), e))?;
        if let Some(s) = info.stream {
            crate::progress::build_steps(&reference, &s);
            output.push_str(&s);
        }
        if let Some(detail) = info.error_detail {
            return Err(Error::ImageUnavailable {
                image: reference,
                reason: format!(
                    "building it from the local install failed: {}\n{}",
                    detail.message.unwrap_or_default(),
                    crate::util::tail_lines(&output, 20)
                ),
            });
        }
    }
    crate::progress::say(format!(
        "built {reference} in {}",
        crate::progress::secs(t0.elapsed())
    ));
    tracing::info!(
        image = %reference,
        product = I::PRODUCT,
        elapsed_ms = crate::trace::ms(t0),
        "image built from the local install"
    );
    Ok(reference)
}

/// A build context holding only the Dockerfile.
fn build_context(dockerfile: &str, product: &str) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(dockerfile.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    let io = |e| {
        Error::io(
            format!("cannot make the build context of the {product} image"),
            e,
        )
    };
    b.append_data(&mut h, "Dockerfile", dockerfile.as_bytes())
        .map_err(io)?;
    b.into_inner().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_run_without_registry_says_what_and_why() {
        let why = without_registry("postgres:16-alpine", "PostgreSQL", "15");
        assert_eq!(
            why,
            "postgres:16-alpine cannot be pulled (no registry reachable?); using this \
             machine's PostgreSQL 15 instead"
        );
        let what = building_locally(
            "testdock/postgres:15-abc",
            "PostgreSQL",
            Path::new("/usr/lib/postgresql/15"),
            "15",
        );
        assert!(
            what.starts_with(
                "building testdock/postgres:15-abc from this machine's PostgreSQL 15 \
                 (/usr/lib/postgresql/15): first time only"
            ),
            "{what}"
        );
        assert!(what.ends_with("later runs reuse it"), "{what}");
    }

    #[test]
    fn the_fingerprint_follows_the_recipe_and_the_files() {
        let exe = std::env::current_exe().unwrap();
        let a = fingerprint(&["1"], [exe.as_path()]);
        assert_eq!(a, fingerprint(&["1"], [exe.as_path()]));
        assert_ne!(a, fingerprint(&["2"], [exe.as_path()]));
        assert_ne!(a, fingerprint(&["1"], []));
        assert_eq!(a.len(), 16);
    }

    #[test]
    fn the_build_context_is_one_dockerfile() {
        let tar = build_context("FROM x\n", "Redis").unwrap();
        let mut a = tar::Archive::new(tar.as_slice());
        let names: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["Dockerfile"]);
    }
}
