//! The server's image where no registry can be reached: made from this
//! machine's own MariaDB install (Debian's `mariadb-server`), with the data
//! directory initialised at build time so a start only copies it into a
//! tmpfs.

use std::path::Path;
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use crate::engine::{client, on_engine};
use crate::error::{status_of, Error, Result};
use crate::HostImage;

/// The official image tried first by default.
pub const OFFICIAL_IMAGE: &str = "mariadb:11";

/// Repository of the image [`local_image`] makes; the tag is a fingerprint
/// of what went in.
const REPOSITORY: &str = "testdock/mariadb";

/// Changes whenever the recipe changes in a way the fingerprint's other
/// inputs would miss.
const RECIPE_VERSION: &str = "1";

const ENTRYPOINT: &str = include_str!("entrypoint.sh");

const SERVER: &str = "/usr/sbin/mariadbd";
const CLIENT: &str = "/usr/bin/mariadb";
const SHARE: &str = "/usr/share/mysql";
const PLUGINS: &str = "/usr/lib/mysql/plugin";

/// What the entrypoint and the bootstrap need besides MariaDB.
const TOOLS: &[&str] = &[
    "sh", "cat", "cp", "chmod", "chown", "id", "kill", "ls", "mkdir", "rm", "sed", "sleep", "env",
    "true",
];

/// Builds (once per machine and MariaDB install) and returns the reference
/// of an image of this machine's MariaDB server: `mariadbd`, the `mariadb`
/// client, their libraries, the share files and plugins, a `mysql` user of
/// uid 999, the system tables made at build time by `mariadbd --bootstrap`
/// (as `mariadb-install-db` does), and an entrypoint honouring the official
/// image's contract (`MARIADB_ROOT_PASSWORD`, `MARIADB_DATABASE`,
/// `MARIADB_USER`, `MARIADB_PASSWORD`, their `MYSQL_*` aliases,
/// `/docker-entrypoint-initdb.d`). No registry is needed.
///
/// The image is tagged `testdock/mariadb:<fingerprint>` and reused while
/// the install and the recipe are unchanged: then this costs one `inspect`.
/// The first build takes a few seconds.
///
/// # Errors
///
/// [`Error::ImageUnavailable`] when no MariaDB server is installed at
/// `/usr/sbin/mariadbd`; [`Error::Io`] when a file cannot be packed;
/// [`Error::BuildFailed`] when the build fails.
pub async fn local_image() -> Result<String> {
    static BUILT: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    BUILT.get_or_try_init(|| on_engine(build())).await.cloned()
}

/// Cheap to compute, so a present image costs no packing: the recipe, and
/// size and mtime of the binaries (a package upgrade changes them).
fn fingerprint() -> String {
    let mut h = Sha256::new();
    h.update(RECIPE_VERSION);
    h.update(ENTRYPOINT);
    h.update(dockerfile("base"));
    for bin in [SERVER, CLIENT] {
        if let Ok(meta) = std::fs::metadata(bin) {
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

/// The files: server, client, share files (system tables' SQL, error
/// messages, character sets) and plugins.
fn host_image() -> HostImage {
    let image = HostImage::new("testdock/mariadb-files")
        .binaries(TOOLS.iter().copied())
        .binaries([SERVER, CLIENT])
        .path(SHARE);
    // mariadb-server has them, mariadb-server-core alone not.
    let image = match Path::new(PLUGINS).is_dir() {
        true => image.path(PLUGINS),
        false => image,
    };
    image
        .file(
            "/etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\n\
             mysql:x:999:999:MariaDB:/var/lib/mysql:/bin/sh\n\
             nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
            0o644,
        )
        .file(
            "/etc/group",
            "root:x:0:\nmysql:x:999:\nnogroup:x:65534:\n",
            0o644,
        )
        .file("/usr/local/bin/docker-entrypoint.sh", ENTRYPOINT, 0o755)
        .env("TZ", "UTC")
}

/// The second stage: directories owned by uid 999 and the system tables,
/// made as `mariadb-install-db --auth-root-authentication-method=normal`
/// would (root without a password, no test database, no help tables), with
/// a small redo log so the copy at each start is small.
fn dockerfile(base: &str) -> String {
    format!(
        r#"FROM {base}
RUN mkdir -p /var/lib/mysql-init /var/lib/mysql /run/mysqld /docker-entrypoint-initdb.d /tmp {PLUGINS} \
 && chown -R 999:999 /var/lib/mysql-init /var/lib/mysql /run/mysqld \
 && chmod 1777 /tmp
USER 999:999
RUN {{ echo "create database if not exists mysql;"; echo "use mysql;"; echo "SET @auth_root_socket=NULL;"; \
      cat {SHARE}/mysql_system_tables.sql {SHARE}/mysql_performance_tables.sql \
          {SHARE}/mysql_system_tables_data.sql {SHARE}/maria_add_gis_sp_bootstrap.sql {SHARE}/mysql_sys_schema.sql; }} \
   | sed -e '/@current_hostname/d' \
   | mariadbd --no-defaults --bootstrap --datadir=/var/lib/mysql-init --plugin-dir={PLUGINS} \
       --lc-messages-dir={SHARE} --log-warnings=0 --enforce-storage-engine="" \
       --max_allowed_packet=8M --net_buffer_length=16K --innodb-log-file-size=16M \
       --innodb-buffer-pool-size=32M --innodb-flush-method=fsync --innodb-use-native-aio=0 \
       --character-set-server=utf8mb4 >/dev/null
EXPOSE 3306
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["mariadbd"]
"#
    )
}

/// The server's image as [`Mysql`](super::Mysql) picks it by default,
/// cheapest first: the official image if present, the local one if already
/// built, the official one if it can be pulled, else the local one, built
/// now. So an air-gapped machine does not try a pull on every run.
pub(crate) async fn default_image() -> Result<String> {
    if present(OFFICIAL_IMAGE).await? {
        return Ok(OFFICIAL_IMAGE.to_string());
    }
    let local = installed().then(reference);
    if let Some(reference) = &local {
        if present(reference).await? {
            return Ok(reference.clone());
        }
    }
    match crate::ensure_image(OFFICIAL_IMAGE).await {
        Ok(()) => Ok(OFFICIAL_IMAGE.to_string()),
        Err(official) => {
            if local.is_some() {
                crate::progress::say(format!(
                    "{OFFICIAL_IMAGE} cannot be pulled (no registry reachable?); using this \
                     machine's MariaDB instead"
                ));
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

fn installed() -> bool {
    Path::new(SERVER).is_file() && Path::new(CLIENT).is_file() && Path::new(SHARE).is_dir()
}

fn reference() -> String {
    format!("{REPOSITORY}:{}", fingerprint())
}

async fn present(reference: &str) -> Result<bool> {
    match client().await?.inspect_image(reference).await {
        Ok(_) => Ok(true),
        Err(e) if status_of(&e) == Some(404) => Ok(false),
        Err(e) => Err(Error::docker(format!("inspect image {reference}"), e)),
    }
}

async fn build() -> Result<String> {
    if !installed() {
        return Err(Error::ImageUnavailable {
            image: format!("{REPOSITORY} (made from the local install)"),
            reason: format!(
                "no MariaDB server at {SERVER} (with {CLIENT} and {SHARE}); install one \
                 (apt-get install mariadb-server) or make a registry with {OFFICIAL_IMAGE} \
                 reachable"
            ),
        });
    }
    let reference = reference();
    if present(&reference).await? {
        return Ok(reference);
    }
    let base = host_image().build_on_engine().await?;
    let context = dockerfile_context(&dockerfile(&base))?;
    crate::build::build_context(
        &reference,
        context,
        "Dockerfile",
        Default::default(),
        "mariadb",
    )
    .await?;
    Ok(reference)
}

/// A build context holding only the Dockerfile.
fn dockerfile_context(dockerfile: &str) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(dockerfile.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    let io = |e| Error::io("cannot make the build context of the MariaDB image", e);
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
    fn the_dockerfile_starts_from_the_base_and_bootstraps() {
        let d = dockerfile("testdock/mariadb-files:abc");
        assert!(d.starts_with("FROM testdock/mariadb-files:abc\n"));
        assert!(d.contains("USER 999:999"));
        assert!(d.contains("--bootstrap"));
    }
}
