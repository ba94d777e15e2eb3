//! The server's image where no registry can be reached: made from this
//! machine's own PostgreSQL install, with the cluster initialised at build
//! time so a start only copies it into a tmpfs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use bollard::query_parameters::BuildImageOptionsBuilder;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use crate::engine::{client, on_engine};
use crate::error::{status_of, Error, Result};
use crate::{HostImage, LABEL_IMAGE};

/// The official image tried first by default: small, and PostgreSQL 16.
pub const OFFICIAL_IMAGE: &str = "postgres:16-alpine";

/// Repository of the image [`local_image`] makes; the tag is the major
/// version and a fingerprint of what went in.
const REPOSITORY: &str = "testdock/postgres";

/// Where the host's PostgreSQL versions live (Debian, Ubuntu).
const INSTALL_ROOT: &str = "/usr/lib/postgresql";

/// Changes whenever the recipe changes in a way the fingerprint's other
/// inputs would miss.
const RECIPE_VERSION: &str = "1";

const ENTRYPOINT: &str = include_str!("entrypoint.sh");

/// What the entrypoint and the cluster setup need besides PostgreSQL.
const TOOLS: &[&str] = &[
    "sh", "cat", "cp", "chmod", "chown", "id", "ls", "mkdir", "rm", "sed", "sleep", "env", "true",
];

/// Builds (once per machine and PostgreSQL install) and returns the
/// reference of an image of this machine's PostgreSQL server: its binaries,
/// libraries, share files and time zones, a `postgres` user of uid 999, the
/// cluster initialised at build time (`--locale=C -E UTF8`, superuser
/// `postgres`, password `postgres`), and an entrypoint honouring the official
/// image's contract (`POSTGRES_USER`, `POSTGRES_PASSWORD`, `POSTGRES_DB`,
/// `PGDATA`, `/docker-entrypoint-initdb.d`). No registry is needed.
///
/// The image is tagged `testdock/postgres:<major>-<fingerprint>` and reused
/// while the install and the recipe are unchanged: then this costs one
/// `inspect`. The first build takes a few seconds.
///
/// # Errors
///
/// [`Error::ImageUnavailable`] when no PostgreSQL server is installed under
/// `/usr/lib/postgresql`; [`Error::Io`] when a file cannot be packed;
/// [`Error::Docker`] when the build fails.
pub async fn local_image() -> Result<String> {
    static BUILT: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    BUILT.get_or_try_init(|| on_engine(build())).await.cloned()
}

/// A PostgreSQL install: `/usr/lib/postgresql/<major>` and its share dir.
struct Install {
    major: String,
    root: PathBuf,
    share: PathBuf,
}

impl Install {
    /// The newest version installed.
    fn find() -> Option<Install> {
        let mut versions: Vec<(u32, String)> = std::fs::read_dir(INSTALL_ROOT)
            .ok()?
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                let n = name.parse().ok()?;
                Path::new(INSTALL_ROOT)
                    .join(&name)
                    .join("bin/postgres")
                    .is_file()
                    .then_some((n, name))
            })
            .collect();
        versions.sort();
        let (_, major) = versions.pop()?;
        Some(Install {
            root: Path::new(INSTALL_ROOT).join(&major),
            share: Path::new("/usr/share/postgresql").join(&major),
            major,
        })
    }

    fn bin(&self, name: &str) -> String {
        self.root
            .join("bin")
            .join(name)
            .to_string_lossy()
            .into_owned()
    }

    /// Cheap to compute, so a present image costs no packing: the recipe,
    /// and size and mtime of the binaries (a package upgrade changes them).
    fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(RECIPE_VERSION);
        h.update(ENTRYPOINT);
        h.update(dockerfile("base"));
        h.update(self.root.to_string_lossy().as_bytes());
        for bin in ["postgres", "initdb", "psql"] {
            if let Ok(meta) = std::fs::metadata(self.bin(bin)) {
                let mtime = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                h.update(format!("{bin}:{}:{mtime};", meta.len()));
            }
        }
        crate::util::hex(&h.finalize()[..8])
    }

    /// The files: server and client binaries, every server library but the
    /// LLVM JIT (it would pull in 100 MB of LLVM; JIT is then just off).
    fn host_image(&self) -> Result<HostImage> {
        let lib = self.root.join("lib");
        let read = |e| Error::io(format!("cannot list `{}`", lib.display()), e);
        let mut libraries: Vec<String> = std::fs::read_dir(&lib)
            .map_err(read)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
                p.extension().is_some_and(|x| x == "so")
                    && !name.is_some_and(|n| n.starts_with("llvmjit"))
            })
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        libraries.sort();
        let path = format!(
            "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            self.root.join("bin").display()
        );
        Ok(HostImage::new("testdock/postgres-files")
            .binaries(TOOLS.iter().copied())
            .binaries(["postgres", "initdb", "pg_ctl", "psql", "pg_isready"].map(|b| self.bin(b)))
            .binaries(libraries)
            .path(&self.share)
            .path("/usr/share/zoneinfo")
            .file(
                "/etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\n\
                 postgres:x:999:999:PostgreSQL:/var/lib/postgresql:/bin/sh\n\
                 nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
                0o644,
            )
            .file(
                "/etc/group",
                "root:x:0:\npostgres:x:999:\nnogroup:x:65534:\n",
                0o644,
            )
            .file("/usr/local/bin/docker-entrypoint.sh", ENTRYPOINT, 0o755)
            .env("PATH", path)
            .env("TZ", "UTC"))
    }
}

/// The second stage: directories owned by uid 999 and the cluster made by
/// `initdb`, as the official image would at its first start. `--no-sync`
/// and a 1 MB WAL segment keep the cluster small and the copy fast.
fn dockerfile(base: &str) -> String {
    format!(
        r#"FROM {base}
RUN mkdir -p /var/lib/postgresql/initdb /var/lib/postgresql/data /var/run/postgresql /docker-entrypoint-initdb.d \
 && chown -R 999:999 /var/lib/postgresql /var/run/postgresql \
 && chmod 700 /var/lib/postgresql/initdb /var/lib/postgresql/data
USER 999:999
RUN echo postgres > /tmp/pw \
 && initdb -D /var/lib/postgresql/initdb -U postgres --pwfile=/tmp/pw --locale=C -E UTF8 --no-sync --wal-segsize=1 >/dev/null \
 && rm /tmp/pw \
 && printf 'local all all trust\nhost all all all scram-sha-256\n' > /var/lib/postgresql/initdb/pg_hba.conf \
 && echo "listen_addresses = '*'" >> /var/lib/postgresql/initdb/postgresql.conf
ENV PGDATA=/var/lib/postgresql/data
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
"#
    )
}

/// The server's image as [`Postgres`](super::Postgres) picks it by
/// default, cheapest first: the official image if present, the local one if
/// already built, the official one if it can be pulled, else the local one,
/// built now. So an air-gapped machine does not try a pull on every run.
pub(crate) async fn default_image() -> Result<String> {
    if present(OFFICIAL_IMAGE).await? {
        return Ok(OFFICIAL_IMAGE.to_string());
    }
    if let Some((_, reference)) = installed() {
        if present(&reference).await? {
            return Ok(reference);
        }
    }
    match crate::ensure_image(OFFICIAL_IMAGE).await {
        Ok(()) => Ok(OFFICIAL_IMAGE.to_string()),
        Err(official) => {
            if let Some((install, _)) = installed() {
                crate::progress::say(without_registry(OFFICIAL_IMAGE, &install.major));
            }
            local_image()
                .await
                .map_err(|local| Error::ImageUnavailable {
                    image: format!("{OFFICIAL_IMAGE} | {REPOSITORY}"),
                    reason: format!("{official}; {local}"),
                })
        }
    }
}

/// Why the first run on a machine without a registry builds an image.
fn without_registry(official: &str, major: &str) -> String {
    format!(
        "{official} cannot be pulled (no registry reachable?); using this machine's \
         PostgreSQL {major} instead"
    )
}

/// What a build of the local image says first: it takes a while, once.
fn building_locally(reference: &str, install: &Path, major: &str) -> String {
    format!(
        "building {reference} from this machine's PostgreSQL {major} ({}): first time only, \
         later runs reuse it",
        install.display()
    )
}

/// The install and the reference of its image, if PostgreSQL is installed.
fn installed() -> Option<(Install, String)> {
    Install::find().map(|install| {
        let reference = format!("{REPOSITORY}:{}-{}", install.major, install.fingerprint());
        (install, reference)
    })
}

async fn present(reference: &str) -> Result<bool> {
    match client().await?.inspect_image(reference).await {
        Ok(_) => Ok(true),
        Err(e) if status_of(&e) == Some(404) => Ok(false),
        Err(e) => Err(Error::docker(format!("inspect image {reference}"), e)),
    }
}

async fn build() -> Result<String> {
    let Some((install, reference)) = installed() else {
        return Err(Error::ImageUnavailable {
            image: format!("{REPOSITORY} (made from the local install)"),
            reason: format!(
                "no PostgreSQL server under {INSTALL_ROOT}/<version>/bin/postgres; install one \
                 (apt-get install postgresql) or make a registry with {OFFICIAL_IMAGE} reachable"
            ),
        });
    };
    if present(&reference).await? {
        return Ok(reference);
    }
    let t0 = std::time::Instant::now();
    crate::progress::say(building_locally(&reference, &install.root, &install.major));
    let r = reference.clone();
    let _still = crate::progress::Ticker::start(move |waited| {
        format!("still building {r} ({} s)", waited.as_secs())
    });
    let docker = client().await?;
    let base = tokio::task::spawn_blocking(move || install.host_image())
        .await
        .expect("listing the PostgreSQL install panicked")?
        .build()
        .await?;
    let context = build_context(&dockerfile(&base))?;
    let labels = HashMap::from([(LABEL_IMAGE, "postgres")]);
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
        elapsed_ms = crate::trace::ms(t0),
        "postgres image built from the local install"
    );
    Ok(reference)
}

/// A build context holding only the Dockerfile.
fn build_context(dockerfile: &str) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(dockerfile.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    let io = |e| Error::io("cannot make the build context of the PostgreSQL image", e);
    b.append_data(&mut h, "Dockerfile", dockerfile.as_bytes())
        .map_err(io)?;
    b.into_inner().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entrypoint_is_valid_sh() {
        let status = std::process::Command::new("sh")
            .args(["-n", "-c", ENTRYPOINT])
            .status()
            .unwrap();
        assert!(status.success());
    }

    #[test]
    fn a_first_run_without_registry_says_what_and_why() {
        let why = without_registry("postgres:16-alpine", "15");
        assert_eq!(
            why,
            "postgres:16-alpine cannot be pulled (no registry reachable?); using this \
             machine's PostgreSQL 15 instead"
        );
        let what = building_locally(
            "testdock/postgres:15-abc",
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
    fn the_dockerfile_starts_from_the_base() {
        let d = dockerfile("testdock/postgres-files:abc");
        assert!(d.starts_with("FROM testdock/postgres-files:abc\n"));
        assert!(d.contains("STOPSIGNAL SIGINT"));
        assert!(d.contains("USER 999:999"));
    }
}
