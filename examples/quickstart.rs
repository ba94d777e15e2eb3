//! Start a container, run a command in it, print what came back, tear down.
//!
//! `cargo run --example quickstart` — needs a Docker engine, no registry:
//! the image is packed from this machine's own `sh` and tools.

use testdock::{ContainerSpec, HostImage};

#[tokio::main]
async fn main() -> testdock::Result<()> {
    let c = ContainerSpec::new(HostImage::shell())
        .cmd(["sleep", "infinity"])
        .env("GREETING", "hello from the container")
        .start()
        .await?;
    println!("started {} ({})", c.name(), c.image());

    let out = c
        .exec([
            "sh",
            "-c",
            "echo \"$GREETING\"; echo 'a warning' >&2; exit 3",
        ])
        .await?;
    println!("stdout:    {:?}", out.stdout_text());
    println!("stderr:    {:?}", out.stderr_text());
    println!("exit code: {}", out.exit_code);

    c.teardown().await?;
    println!("removed");
    Ok(())
}
