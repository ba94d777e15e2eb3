//! Where to find the engine: `DOCKER_HOST`, the Docker context, then the
//! sockets Docker, rootless Docker, Docker Desktop, Colima, OrbStack and
//! Podman use, in that order.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// An endpoint to try, and why it is on the list (for errors and the
/// doctor).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) endpoint: String,
    pub(crate) source: String,
    pub(crate) tls: Tls,
}

/// How to speak to a `tcp://` endpoint, as the Docker CLI decides it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Tls {
    /// Plain HTTP (or a unix socket).
    Off,
    /// TLS, checking the engine's certificate against `ca.pem` (and, as
    /// bollard does, the system's roots) and showing `cert.pem`/`key.pem`,
    /// all in this directory.
    Verify(PathBuf),
    /// TLS without checking the engine's certificate (`DOCKER_TLS`, or a
    /// context with `SkipTLSVerify`), which testdock refuses.
    Unverified,
}

/// What discovery reads from the environment, gathered so the logic can be
/// tested without touching the process's environment.
#[derive(Debug, Default)]
pub(crate) struct Env {
    pub(crate) docker_host: Option<String>,
    pub(crate) docker_context: Option<String>,
    pub(crate) docker_config: Option<PathBuf>,
    pub(crate) docker_tls_verify: bool,
    pub(crate) docker_tls: bool,
    pub(crate) docker_cert_path: Option<PathBuf>,
    pub(crate) xdg_runtime_dir: Option<PathBuf>,
    pub(crate) home: Option<PathBuf>,
}

impl Env {
    pub(crate) fn from_process() -> Self {
        let var = |k| std::env::var(k).ok().filter(|v: &String| !v.is_empty());
        Env {
            docker_host: var("DOCKER_HOST"),
            docker_context: var("DOCKER_CONTEXT"),
            docker_config: var("DOCKER_CONFIG").map(PathBuf::from),
            // As the Docker CLI reads them: any non-empty value means yes.
            docker_tls_verify: var("DOCKER_TLS_VERIFY").is_some(),
            docker_tls: var("DOCKER_TLS").is_some(),
            docker_cert_path: var("DOCKER_CERT_PATH").map(PathBuf::from),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR").map(PathBuf::from),
            home: var("HOME").map(PathBuf::from),
        }
    }

    fn config_dir(&self) -> Option<PathBuf> {
        self.docker_config
            .clone()
            .or_else(|| self.home.as_ref().map(|h| h.join(".docker")))
    }
}

/// The endpoints to try, in order. An explicit choice — `DOCKER_HOST`, or
/// `DOCKER_CONTEXT` — is the only one: falling back to another engine behind
/// the user's back would run their tests somewhere they did not ask for.
pub(crate) fn candidates(env: &Env) -> Vec<Candidate> {
    let c = |(endpoint, tls): (String, Tls), source: &str| Candidate {
        endpoint,
        source: source.to_string(),
        tls,
    };
    let config = env.config_dir();
    if let Some(host) = &env.docker_host {
        // As the CLI: TLS is for TCP; a unix socket ignores it.
        let tls = if !host.starts_with("tcp://") {
            Tls::Off
        } else if env.docker_tls_verify {
            // The CLI's default: certificates beside its config.
            match env.docker_cert_path.clone().or(config) {
                Some(dir) => Tls::Verify(dir),
                None => Tls::Verify(PathBuf::from(".docker")),
            }
        } else if env.docker_tls {
            Tls::Unverified
        } else {
            Tls::Off
        };
        return vec![c((host.clone(), tls), "DOCKER_HOST")];
    }
    if let Some(name) = &env.docker_context {
        return match config.as_deref().and_then(|d| context_endpoint(d, name)) {
            Some(ep) => vec![c(ep, &format!("DOCKER_CONTEXT={name}"))],
            None if name == "default" => defaults(env),
            None => vec![c(
                (format!("context:{name}"), Tls::Off),
                "DOCKER_CONTEXT (no such context)",
            )],
        };
    }
    let mut list = Vec::new();
    if let Some(dir) = &config {
        if let Some(name) = current_context(dir).filter(|n| n != "default") {
            if let Some(ep) = context_endpoint(dir, &name) {
                list.push(c(ep, &format!("current Docker context `{name}`")));
            }
        }
    }
    list.extend(defaults(env));
    list
}

fn defaults(env: &Env) -> Vec<Candidate> {
    let mut socks: Vec<(PathBuf, &str)> = vec![("/var/run/docker.sock".into(), "default socket")];
    if let Some(dir) = &env.xdg_runtime_dir {
        socks.push((dir.join("docker.sock"), "rootless Docker"));
    }
    if let Some(home) = &env.home {
        socks.push((home.join(".docker/run/docker.sock"), "Docker Desktop"));
        socks.push((home.join(".docker/desktop/docker.sock"), "Docker Desktop"));
        socks.push((home.join(".colima/default/docker.sock"), "Colima"));
        socks.push((home.join(".orbstack/run/docker.sock"), "OrbStack"));
    }
    if let Some(dir) = &env.xdg_runtime_dir {
        socks.push((dir.join("podman/podman.sock"), "rootless Podman"));
    }
    socks.push(("/run/podman/podman.sock".into(), "Podman"));
    socks
        .into_iter()
        .map(|(p, source)| Candidate {
            endpoint: format!("unix://{}", p.display()),
            source: source.to_string(),
            tls: Tls::Off,
        })
        .collect()
}

/// `currentContext` from the CLI's `config.json`.
fn current_context(config_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(config_dir.join("config.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json.get("currentContext")?.as_str().map(str::to_string)
}

/// A context's Docker endpoint, from
/// `contexts/meta/<sha256 of its name>/meta.json`, and its TLS material,
/// which the CLI keeps in `contexts/tls/<same>/docker/`.
fn context_endpoint(config_dir: &Path, name: &str) -> Option<(String, Tls)> {
    let digest = crate::util::hex(&Sha256::digest(name.as_bytes()));
    let meta = config_dir
        .join("contexts/meta")
        .join(&digest)
        .join("meta.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(meta).ok()?).ok()?;
    let host = json
        .pointer("/Endpoints/docker/Host")?
        .as_str()?
        .to_string();
    let skip_verify = json
        .pointer("/Endpoints/docker/SkipTLSVerify")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let tls_dir = config_dir.join("contexts/tls").join(digest).join("docker");
    let tls = match (host.starts_with("tcp://"), tls_dir.is_dir(), skip_verify) {
        (false, _, _) => Tls::Off,
        (true, _, true) => Tls::Unverified,
        (true, true, false) => Tls::Verify(tls_dir),
        (true, false, false) => Tls::Off,
    };
    Some((host, tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_config(current: &str, contexts: &[(&str, &str)]) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("testdock-cfg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("config.json"),
            format!(r#"{{"currentContext": "{current}"}}"#),
        )
        .unwrap();
        for (name, host) in contexts {
            let digest = crate::util::hex(&Sha256::digest(name.as_bytes()));
            let meta = dir.join("contexts/meta").join(digest);
            std::fs::create_dir_all(&meta).unwrap();
            std::fs::write(
                meta.join("meta.json"),
                format!(r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":false}}}}}}"#),
            )
            .unwrap();
        }
        dir
    }

    #[test]
    fn docker_host_is_the_only_choice() {
        let env = Env {
            docker_host: Some("tcp://10.0.0.5:2375".into()),
            ..Default::default()
        };
        assert_eq!(
            candidates(&env),
            [Candidate {
                endpoint: "tcp://10.0.0.5:2375".into(),
                source: "DOCKER_HOST".into(),
                tls: Tls::Off,
            }]
        );
    }

    #[test]
    fn tls_settings_follow_the_docker_cli() {
        let host = Some("tcp://10.0.0.5:2376".to_string());
        let tls_of = |env: Env| candidates(&env).remove(0).tls;
        let env = Env {
            docker_host: host.clone(),
            docker_tls_verify: true,
            docker_cert_path: Some("/certs".into()),
            home: Some("/home/u".into()),
            ..Default::default()
        };
        assert_eq!(tls_of(env), Tls::Verify("/certs".into()));
        // Without DOCKER_CERT_PATH: beside the CLI's config.
        let env = Env {
            docker_host: host.clone(),
            docker_tls_verify: true,
            home: Some("/home/u".into()),
            ..Default::default()
        };
        assert_eq!(tls_of(env), Tls::Verify("/home/u/.docker".into()));
        let env = Env {
            docker_host: host,
            docker_tls: true,
            ..Default::default()
        };
        assert_eq!(tls_of(env), Tls::Unverified);
        // A unix socket never speaks TLS, whatever the environment says.
        let env = Env {
            docker_host: Some("unix:///run/docker.sock".into()),
            docker_tls_verify: true,
            docker_cert_path: Some("/certs".into()),
            ..Default::default()
        };
        assert_eq!(tls_of(env), Tls::Off);
    }

    #[test]
    fn a_context_with_certificates_speaks_tls() {
        let cfg = fake_config("secure", &[("secure", "tcp://build.example:2376")]);
        let digest = crate::util::hex(&Sha256::digest(b"secure"));
        let tls = cfg.join("contexts/tls").join(digest).join("docker");
        let env = || Env {
            docker_config: Some(cfg.clone()),
            ..Default::default()
        };
        assert_eq!(candidates(&env())[0].tls, Tls::Off);
        std::fs::create_dir_all(&tls).unwrap();
        assert_eq!(candidates(&env())[0].tls, Tls::Verify(tls));
        std::fs::remove_dir_all(cfg).unwrap();
    }

    #[test]
    fn the_current_context_comes_first_then_the_usual_sockets() {
        let cfg = fake_config(
            "colima",
            &[("colima", "unix:///home/u/.colima/default/docker.sock")],
        );
        let env = Env {
            docker_config: Some(cfg.clone()),
            xdg_runtime_dir: Some("/run/user/1000".into()),
            home: Some("/home/u".into()),
            ..Default::default()
        };
        let list = candidates(&env);
        assert_eq!(
            list[0].endpoint,
            "unix:///home/u/.colima/default/docker.sock"
        );
        assert_eq!(list[0].source, "current Docker context `colima`");
        let eps: Vec<&str> = list.iter().map(|c| c.endpoint.as_str()).collect();
        assert_eq!(eps[1], "unix:///var/run/docker.sock");
        assert!(eps.contains(&"unix:///run/user/1000/docker.sock"));
        assert!(eps.contains(&"unix:///home/u/.orbstack/run/docker.sock"));
        assert_eq!(eps.last(), Some(&"unix:///run/podman/podman.sock"));
        std::fs::remove_dir_all(cfg).unwrap();
    }

    #[test]
    fn docker_context_names_one_endpoint() {
        let cfg = fake_config("default", &[("remote", "tcp://build.example:2375")]);
        let env = Env {
            docker_context: Some("remote".into()),
            docker_config: Some(cfg.clone()),
            ..Default::default()
        };
        assert_eq!(candidates(&env)[0].endpoint, "tcp://build.example:2375");
        let env = Env {
            docker_context: Some("nope".into()),
            docker_config: Some(cfg.clone()),
            ..Default::default()
        };
        assert_eq!(
            candidates(&env)[0].source,
            "DOCKER_CONTEXT (no such context)"
        );
        std::fs::remove_dir_all(cfg).unwrap();
    }
}
