//! The server's image where no registry can be reached: made from this
//! machine's own `redis-server` and `redis-cli`.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::modules::local;
use crate::HostImage;

/// The official image tried first by default: small, and Redis 7.
pub const OFFICIAL_IMAGE: &str = "redis:7-alpine";

/// Repository of the image [`local_image`] makes; the tag is the version
/// and a fingerprint of what went in.
const REPOSITORY: &str = "testdock/redis";

/// Changes whenever the recipe changes in a way the fingerprint's other
/// inputs would miss.
const RECIPE_VERSION: &str = "1";

/// The shell the readiness check runs, and what the Dockerfile needs.
const TOOLS: &[&str] = &["sh", "mkdir", "chown"];

/// The reference of an image of this machine's Redis — `redis-server`,
/// `redis-cli`, their libraries, a `redis` user (uid 999, the official
/// image's) running the server in `/data` — made the first time it is
/// asked for on this machine, in a few seconds and with no registry.
///
/// Its tag, `testdock/redis:<version>-<fingerprint>`, changes only with the
/// install or the recipe; while it is present, asking costs one `inspect`.
///
/// # Errors
///
/// [`Error::ImageUnavailable`](crate::Error::ImageUnavailable) with no
/// `redis-server` on `PATH`; [`Error::Io`](crate::Error::Io) or
/// [`Error::Docker`](crate::Error::Docker) if packing or building fails.
pub async fn local_image() -> Result<String> {
    static MADE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    local::once::<Install>(&MADE).await
}

/// A Redis install: where `redis-server` is and its version.
pub(crate) struct Install {
    server: PathBuf,
    cli: PathBuf,
    version: String,
}

/// `name` in the directories of `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `7.0.15` from `Redis server v=7.0.15 sha=…`.
fn parse_version(text: &str) -> Option<String> {
    let v = text.split_whitespace().find_map(|w| w.strip_prefix("v="))?;
    let ok = !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '.');
    ok.then(|| v.to_string())
}

impl local::Install for Install {
    const PRODUCT: &'static str = "Redis";
    const OFFICIAL: &'static str = OFFICIAL_IMAGE;
    const REPOSITORY: &'static str = REPOSITORY;
    const LABEL: &'static str = "redis";

    fn find() -> Option<Install> {
        let server = on_path("redis-server")?;
        let cli = on_path("redis-cli")?;
        let out = std::process::Command::new(&server)
            .arg("--version")
            .output()
            .ok()?;
        let version = parse_version(&String::from_utf8_lossy(&out.stdout))?;
        Some(Install {
            server,
            cli,
            version,
        })
    }

    fn missing() -> String {
        format!(
            "no redis-server and redis-cli on PATH; install them (apt-get install redis-server) \
             or make a registry with {OFFICIAL_IMAGE} reachable"
        )
    }

    fn version(&self) -> &str {
        &self.version
    }

    fn location(&self) -> &Path {
        &self.server
    }

    fn fingerprint(&self) -> String {
        // The server is a link to redis-check-rdb on Debian: the target's
        // size and mtime are what an upgrade changes.
        let server = std::fs::canonicalize(&self.server).unwrap_or_else(|_| self.server.clone());
        local::fingerprint(
            &[RECIPE_VERSION, &dockerfile("base"), &TOOLS.join(" ")],
            [server.as_path(), self.cli.as_path()],
        )
    }

    fn host_image(&self) -> Result<HostImage> {
        Ok(HostImage::new("testdock/redis-files")
            .binaries(TOOLS.iter().copied())
            .binary(self.server.to_string_lossy())
            .binary(self.cli.to_string_lossy())
            .file(
                "/etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\n\
                 redis:x:999:999:Redis:/data:/bin/sh\n\
                 nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
                0o644,
            )
            .file(
                "/etc/group",
                "root:x:0:\nredis:x:999:\nnogroup:x:65534:\n",
                0o644,
            ))
    }

    fn dockerfile(base: &str) -> String {
        dockerfile(base)
    }
}

/// The second stage: `/data` owned by the server's user, as the official
/// image has it.
fn dockerfile(base: &str) -> String {
    format!(
        r#"FROM {base}
RUN mkdir -p /data && chown 999:999 /data
USER 999:999
WORKDIR /data
EXPOSE 6379
CMD ["redis-server"]
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_read_from_redis_server() {
        let line = "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=1";
        assert_eq!(parse_version(line).as_deref(), Some("7.0.15"));
        assert_eq!(parse_version("nonsense"), None);
        assert_eq!(parse_version("v=7/../x"), None);
    }

    #[test]
    fn the_dockerfile_starts_from_the_base() {
        let d = dockerfile("testdock/redis-files:abc");
        assert!(d.starts_with("FROM testdock/redis-files:abc\n"));
        assert!(d.contains("USER 999:999"));
        assert!(d.contains("CMD [\"redis-server\"]"));
    }
}
