//! A two-service stack on its own network: a server, and a client that
//! starts once the server is ready and reaches it by its service name.
//!
//! `cargo run --example stack` — needs a Docker engine, no registry: the
//! images are packed from this machine's `sh`, `bash` and `perl`.

use testdock::{ContainerSpec, HostImage, Stack, WaitFor};

/// The shell tools plus perl and its core modules (for a tiny server).
fn image_with_perl() -> HostImage {
    let out = std::process::Command::new("perl")
        .args([
            "-e",
            r#"print((grep { -f "$_/IO/Socket/INET.pm" } @INC)[0])"#,
        ])
        .output()
        .expect("perl is part of every Debian system");
    let lib = String::from_utf8_lossy(&out.stdout).into_owned();
    HostImage::shell().binary("perl").path(lib)
}

#[tokio::main]
async fn main() -> testdock::Result<()> {
    let server = ContainerSpec::new(image_with_perl())
        .cmd([
            "perl",
            "-e",
            "use IO::Socket::INET; \
             my $s = IO::Socket::INET->new(LocalPort => 8080, Listen => 5, ReuseAddr => 1) or die; \
             while (my $c = $s->accept) { print $c \"hello from server\\n\"; close $c }",
        ])
        .wait_for(WaitFor::port(8080));
    let client = ContainerSpec::new(HostImage::shell())
        .cmd([
            "bash",
            "-c",
            "exec 3<>/dev/tcp/server/8080 && cat <&3; exec sleep infinity",
        ])
        .wait_for(WaitFor::stdout_line("hello from server"));

    let stack = Stack::new()
        .service("server", server)
        .service("client", client)
        .depends_on("client", "server")
        .start()
        .await?;
    println!("network {}", stack.network().name());
    for service in ["server", "client"] {
        println!("{service:>7}: {}", stack[service].name());
    }
    let logs = stack["client"].logs().await?;
    println!("client got: {:?}", logs.stdout_text());

    stack.teardown().await?;
    println!("removed");
    Ok(())
}
