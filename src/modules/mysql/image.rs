//! The server's image where no registry can be reached: made from this
//! machine's own MariaDB install (Debian's `mariadb-server`), with the data
//! directory initialised at build time so a start only copies it into a
//! tmpfs.

use std::path::Path;

use crate::error::Result;
use crate::modules::local;
use crate::HostImage;

/// The official image tried first by default.
pub const OFFICIAL_IMAGE: &str = "mariadb:11";

/// Repository of the image [`local_image`] makes; the tag is the version
/// and a fingerprint of what went in.
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
/// The image is tagged `testdock/mariadb:<version>-<fingerprint>` and
/// reused while the install and the recipe are unchanged: then this costs
/// one `inspect`. The first build takes a few seconds.
///
/// # Errors
///
/// [`Error::ImageUnavailable`](crate::Error::ImageUnavailable) when no
/// MariaDB server is installed at `/usr/sbin/mariadbd` or its build fails;
/// [`Error::Io`](crate::Error::Io) or [`Error::Docker`](crate::Error::Docker)
/// if packing or building fails.
pub async fn local_image() -> Result<String> {
    static BUILT: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    local::once::<Install>(&BUILT).await
}

/// The MariaDB install at its Debian paths, and its version.
pub(crate) struct Install {
    version: String,
}

/// `10.11.19` from `mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for …`.
fn parse_version(text: &str) -> Option<String> {
    let mut words = text.split_whitespace();
    words.find(|w| *w == "Ver")?;
    let v = words.next()?.split('-').next()?;
    let ok = !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.');
    ok.then(|| v.to_string())
}

impl local::Install for Install {
    const PRODUCT: &'static str = "MariaDB";
    const OFFICIAL: &'static str = OFFICIAL_IMAGE;
    const REPOSITORY: &'static str = REPOSITORY;
    const LABEL: &'static str = "mariadb";

    fn find() -> Option<Install> {
        let installed =
            Path::new(SERVER).is_file() && Path::new(CLIENT).is_file() && Path::new(SHARE).is_dir();
        if !installed {
            return None;
        }
        let out = std::process::Command::new(SERVER)
            .arg("--version")
            .output()
            .ok()?;
        let version = parse_version(&String::from_utf8_lossy(&out.stdout))?;
        Some(Install { version })
    }

    fn missing() -> String {
        format!(
            "no MariaDB server at {SERVER} (with {CLIENT} and {SHARE}); install one \
             (apt-get install mariadb-server) or make a registry with {OFFICIAL_IMAGE} \
             reachable"
        )
    }

    fn version(&self) -> &str {
        &self.version
    }

    fn location(&self) -> &Path {
        Path::new(SERVER)
    }

    /// The recipe, and size and mtime of the binaries (a package upgrade
    /// changes them).
    fn fingerprint(&self) -> String {
        local::fingerprint(
            &[
                RECIPE_VERSION,
                ENTRYPOINT,
                &dockerfile("base"),
                &TOOLS.join(" "),
            ],
            [Path::new(SERVER), Path::new(CLIENT)],
        )
    }

    fn host_image(&self) -> Result<HostImage> {
        Ok(host_image())
    }

    fn dockerfile(base: &str) -> String {
        dockerfile(base)
    }
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

    #[test]
    fn the_version_is_read_from_mariadbd() {
        let line =
            "/usr/sbin/mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64";
        assert_eq!(parse_version(line).as_deref(), Some("10.11.19"));
        assert_eq!(parse_version("nonsense"), None);
        assert_eq!(parse_version("mariadbd Ver ../x"), None);
    }
}
