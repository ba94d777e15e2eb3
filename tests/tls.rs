//! An engine reached over TLS, as `DOCKER_TLS_VERIFY` asks: a TLS front that
//! demands client certificates (rustls) before this machine's engine, with
//! a CA made here. Its own test binary: the environment picks the engine,
//! and the connection is made once per process.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio_rustls::rustls;

use common::{eventually, exists, sleeper};
use testdock::Error;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "requires Docker"]
async fn an_engine_behind_tls_is_verified_and_used() {
    let ca = new_ca("testdock test CA");
    let (server_cert, server_key) = leaf(&ca, &["127.0.0.1", "localhost"], false);
    let (client_cert, client_key) = leaf(&ca, &[], true);
    let front = TlsFront::start(&ca, server_cert, server_key);

    let dir = scratch_dir();
    let certs = dir.join("certs");
    write_certs(&certs, &ca.pem(), &client_cert, &client_key);
    // The only test in this process, so no other thread reads the
    // environment while it changes; failed connections are not cached.
    std::env::set_var("DOCKER_HOST", format!("tcp://127.0.0.1:{}", front.port));

    // TLS without verification is refused, with the fix.
    std::env::set_var("DOCKER_TLS", "1");
    let err = unavailable().await;
    assert!(err.contains("set DOCKER_TLS_VERIFY=1"), "{err}");
    std::env::remove_var("DOCKER_TLS");

    // A missing certificate is named.
    std::env::set_var("DOCKER_TLS_VERIFY", "1");
    std::env::set_var("DOCKER_CERT_PATH", dir.join("nowhere"));
    let err = unavailable().await;
    assert!(err.contains("nowhere ca.pem is missing"), "{err}");
    assert!(err.contains("DOCKER_CERT_PATH"), "{err}");

    // An engine whose certificate our CA did not sign is not trusted.
    let stranger = new_ca("someone else's CA");
    let wrong_ca = dir.join("wrong-ca");
    write_certs(&wrong_ca, &stranger.pem(), &client_cert, &client_key);
    std::env::set_var("DOCKER_CERT_PATH", &wrong_ca);
    let err = unavailable().await;
    assert!(err.contains("invalid peer certificate"), "{err}");

    // A client certificate the engine's CA did not sign is turned away.
    let (their_cert, their_key) = leaf(&stranger, &[], true);
    let wrong_client = dir.join("wrong-client");
    write_certs(&wrong_client, &ca.pem(), &their_cert, &their_key);
    std::env::set_var("DOCKER_CERT_PATH", &wrong_client);
    let err = unavailable().await;
    // What the client reads depends on timing: TLS 1.3 sends the refusal
    // after the client has finished its side, so it may see the alert or
    // only the connection closing. The front's count is the proof.
    eventually(
        Duration::from_secs(10),
        "the front refused the client",
        || async { front.refused.load(Ordering::SeqCst) > 0 },
    )
    .await;
    assert_eq!(front.served.load(Ordering::SeqCst), 0, "{err}");

    // The right certificates: everything goes through the front.
    std::env::set_var("DOCKER_CERT_PATH", &certs);
    let engine = testdock::docker().await.unwrap();
    assert_eq!(engine.tls_cert_dir(), Some(certs.as_path()));
    assert!(engine.is_local());
    let report = testdock::doctor().await.unwrap();
    assert!(report.host_gateway.ok, "{}", report.host_gateway.detail);
    assert!(report.bind_mounts.ok, "{}", report.bind_mounts.detail);
    assert!(
        report.to_string().contains("tls           verified"),
        "{report}"
    );

    let c = sleeper()
        .copy_bytes(b"over tls".to_vec(), "/tmp/hello", 0o644)
        .start()
        .await
        .unwrap();
    let out = c.exec(["cat", "/tmp/hello"]).await.unwrap();
    assert_eq!(out.stdout_text(), "over tls");
    // An attached exec with stdin: a hijacked stream through TLS.
    let out = c
        .exec(["wc", "-c"])
        .stdin(vec![b'x'; 100_000])
        .await
        .unwrap();
    assert_eq!(out.stdout_text().trim(), "100000");
    let id = c.id().to_string();
    c.teardown().await.unwrap();
    assert!(!exists(&id).await);
    assert!(front.served.load(Ordering::SeqCst) > 5);
    std::fs::remove_dir_all(dir).unwrap();
}

/// The engine connection's error, which must be `DockerUnavailable`.
async fn unavailable() -> String {
    match testdock::docker().await {
        Err(Error::DockerUnavailable { tried }) => tried,
        Err(other) => panic!("expected DockerUnavailable, got {other:?}"),
        Ok(engine) => panic!("connected to {} when it should not", engine.endpoint()),
    }
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

/// A certificate for a server (with these names) or a client.
fn leaf(
    ca: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    client: bool,
) -> (rcgen::Certificate, KeyPair) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut p = CertificateParams::new(names).unwrap();
    p.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, ca).unwrap();
    (cert, key)
}

/// `ca.pem`, `cert.pem` and `key.pem`, as `docker --tlsverify` reads them.
fn write_certs(dir: &Path, ca_pem: &str, cert: &rcgen::Certificate, key: &KeyPair) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_pem).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(common::unique("testdock-tls"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// TLS on loopback in front of the engine this machine's Docker tools use.
/// It lives on a thread of its own for the whole process, so that the exit
/// hook can still reach the engine through it.
struct TlsFront {
    port: u16,
    /// Connections that passed the handshake.
    served: Arc<AtomicUsize>,
    /// Handshakes it refused for the client's certificate.
    refused: Arc<AtomicUsize>,
}

impl TlsFront {
    fn start(
        ca: &CertifiedIssuer<'static, KeyPair>,
        cert: rcgen::Certificate,
        key: KeyPair,
    ) -> TlsFront {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.into(),
            provider.clone(),
        )
        .build()
        .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let served = Arc::new(AtomicUsize::new(0));
        let counter = served.clone();
        let refused = Arc::new(AtomicUsize::new(0));
        let turned_away = refused.clone();
        let socket = match std::env::var("DOCKER_HOST") {
            Ok(h) if h.starts_with("unix://") => h["unix://".len()..].to_string(),
            Ok(h) if !h.is_empty() => panic!("this test fronts a unix socket, not {h}"),
            _ => "/var/run/docker.sock".to_string(),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap().port()).unwrap();
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let (acceptor, counter, turned_away, socket) = (
                        acceptor.clone(),
                        counter.clone(),
                        turned_away.clone(),
                        socket.clone(),
                    );
                    tokio::spawn(async move {
                        // A client the CA did not vouch for fails here.
                        let mut tls = match acceptor.accept(tcp).await {
                            Ok(tls) => tls,
                            Err(e) => {
                                let why = e.get_ref().and_then(|e| e.downcast_ref());
                                if let Some(rustls::Error::InvalidCertificate(_)) = why {
                                    turned_away.fetch_add(1, Ordering::SeqCst);
                                }
                                return;
                            }
                        };
                        counter.fetch_add(1, Ordering::SeqCst);
                        let Ok(mut engine) = tokio::net::UnixStream::connect(&socket).await else {
                            return;
                        };
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut engine).await;
                    });
                }
            });
        });
        TlsFront {
            port: rx.recv().unwrap(),
            served,
            refused,
        }
    }
}
