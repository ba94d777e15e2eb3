//! The server's image where no registry can be reached: made from this
//! machine's own PostgreSQL install, with the cluster initialised at build
//! time so a start only copies it into a tmpfs.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::modules::local;
use crate::HostImage;

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
    local::once::<Install>(&BUILT).await
}

/// A PostgreSQL install: `/usr/lib/postgresql/<major>` and its share dir.
pub(crate) struct Install {
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
/// Passwords are checked with md5, not SCRAM: SCRAM's 4096 PBKDF2 rounds
/// cost a debug-built client (how tests are built) ~90 ms per connection,
/// one per test, to guard a throwaway server on the loopback. The password
/// is set once md5 is the encryption (`initdb` before 16 cannot be told).
fn dockerfile(base: &str) -> String {
    format!(
        r#"FROM {base}
RUN mkdir -p /var/lib/postgresql/initdb /var/lib/postgresql/data /var/run/postgresql /docker-entrypoint-initdb.d \
 && chown -R 999:999 /var/lib/postgresql /var/run/postgresql \
 && chmod 700 /var/lib/postgresql/initdb /var/lib/postgresql/data
USER 999:999
RUN initdb -D /var/lib/postgresql/initdb -U postgres --locale=C -E UTF8 --no-sync --wal-segsize=1 >/dev/null \
 && printf 'local all all trust\nhost all all all md5\n' > /var/lib/postgresql/initdb/pg_hba.conf \
 && printf "listen_addresses = '*'\npassword_encryption = md5\n" >> /var/lib/postgresql/initdb/postgresql.conf \
 && echo "ALTER ROLE postgres PASSWORD 'postgres'" | postgres --single -D /var/lib/postgresql/initdb postgres >/dev/null
ENV PGDATA=/var/lib/postgresql/data
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
"#
    )
}

impl local::Install for Install {
    const PRODUCT: &'static str = "PostgreSQL";
    const OFFICIAL: &'static str = OFFICIAL_IMAGE;
    const REPOSITORY: &'static str = REPOSITORY;
    const LABEL: &'static str = "postgres";

    fn find() -> Option<Install> {
        Install::find()
    }

    fn missing() -> String {
        format!(
            "no PostgreSQL server under {INSTALL_ROOT}/<version>/bin/postgres; install one \
             (apt-get install postgresql) or make a registry with {OFFICIAL_IMAGE} reachable"
        )
    }

    fn version(&self) -> &str {
        &self.major
    }

    fn location(&self) -> &Path {
        &self.root
    }

    fn fingerprint(&self) -> String {
        let bins = ["postgres", "initdb", "psql"].map(|b| PathBuf::from(self.bin(b)));
        local::fingerprint(
            &[
                RECIPE_VERSION,
                ENTRYPOINT,
                &dockerfile("base"),
                &self.root.to_string_lossy(),
            ],
            bins.iter().map(PathBuf::as_path),
        )
    }

    fn host_image(&self) -> Result<HostImage> {
        Install::host_image(self)
    }

    fn dockerfile(base: &str) -> String {
        dockerfile(base)
    }
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
    fn the_dockerfile_starts_from_the_base() {
        let d = dockerfile("testdock/postgres-files:abc");
        assert!(d.starts_with("FROM testdock/postgres-files:abc\n"));
        assert!(d.contains("STOPSIGNAL SIGINT"));
        assert!(d.contains("USER 999:999"));
    }
}
