//! Reaching the host from a container, a container from the host, and no
//! network at all.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::{bound_ips, greeter, sleeper};
use testdock::Error;

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_host_server_on_the_recommended_address_is_reached_via_host_docker_internal() {
    // Start the container first: Podman brings its bridge (and so the
    // gateway address) up with the first container on it.
    let c = sleeper().start().await.unwrap();
    let addr = testdock::host_bind_address().await.unwrap();
    let listener = TcpListener::bind((addr, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        s.write_all(b"pong from host\n").unwrap();
        buf
    });

    let script =
        format!("exec 3<>/dev/tcp/host.docker.internal/{port} && printf ping >&3 && cat <&3");
    let out = c
        .exec(["bash", "-c", &script])
        .timeout(Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(
        out.stdout_text(),
        "pong from host\n",
        "stderr: {}",
        out.stderr_text()
    );
    assert_eq!(&server.join().unwrap(), b"ping");
    c.teardown().await.unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_published_port_is_reached_from_the_host_on_loopback() {
    let c = greeter("hello from the container").start().await.unwrap();
    let port = c.host_port(8080).await.unwrap();
    assert_eq!(c.host(), "127.0.0.1");

    // docker-proxy accepts at once and closes when nothing listens behind
    // it yet: retry until the real answer comes.
    let deadline = Instant::now() + Duration::from_secs(20);
    let reply = loop {
        let mut got = String::new();
        if let Ok(mut s) = TcpStream::connect((c.host(), port)) {
            let _ = s.read_to_string(&mut got);
        }
        if !got.is_empty() || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(reply, "hello from the container\n");

    // Bound to loopback only.
    let bound = bound_ips(c.id(), 8080).await;
    assert!(
        !bound.is_empty() && bound.iter().all(|ip| ip == "127.0.0.1"),
        "{bound:?}"
    );

    let err = c.host_port(9999).await.unwrap_err();
    assert!(
        matches!(err, Error::PortNotPublished { port: 9999, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(".expose(9999)"), "{err}");
    c.teardown().await.unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn network_none_has_only_loopback_and_no_way_out() {
    // Where host servers listen; on a rootless engine that is loopback,
    // which inside is the container's own: aim at the bridge instead.
    let addr = match testdock::host_bind_address().await.unwrap() {
        a if a.is_loopback() => "172.17.0.1".parse().unwrap(),
        a => a,
    };

    let c = sleeper().network("none").start().await.unwrap();
    let out = c
        .exec(["sh", "-c", "sed -n '3,$s/:.*//p' /proc/net/dev | tr -d ' '"])
        .await
        .unwrap();
    assert_eq!(out.stdout_text(), "lo\n");
    let out = c
        .exec(["bash", "-c", &format!("echo > /dev/tcp/{addr}/9")])
        .timeout(Duration::from_secs(20))
        .await
        .unwrap();
    assert_ne!(out.exit_code, 0, "reached the host from network none");
    assert!(
        out.stderr_text().contains("unreachable"),
        "{}",
        out.stderr_text()
    );
    c.teardown().await.unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn host_gateway_can_be_turned_off_and_extra_hosts_added() {
    let c = sleeper()
        .host_gateway(false)
        .extra_host("db.test", "10.9.8.7")
        .start()
        .await
        .unwrap();
    let hosts = c
        .exec(["cat", "/etc/hosts"])
        .await
        .unwrap()
        .stdout_text()
        .into_owned();
    assert!(!hosts.contains("host.docker.internal"), "{hosts}");
    assert!(hosts.contains("10.9.8.7\tdb.test"), "{hosts}");
    c.teardown().await.unwrap();
}
