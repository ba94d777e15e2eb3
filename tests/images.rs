//! Images with no registry: packed from host binaries, reused by content
//! hash, missing ones reported, fallback chains.

mod common;

use common::{exists, unique};
use testdock::{ContainerSpec, Error, HostImage, Image};

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_host_image_is_tagged_by_content_and_reused() {
    let img = HostImage::new("testdock/test-echo")
        .binary("echo")
        .file("/etc/greeting", "packed\n", 0o644)
        .cmd(["echo", "default cmd"]);
    let first = img.build().await.unwrap();
    assert!(first.starts_with("testdock/test-echo:"), "{first}");
    assert_eq!(img.build().await.unwrap(), first, "same content, same tag");

    let docker = testdock::docker().await.unwrap();
    let info = docker.bollard().inspect_image(&first).await.unwrap();
    let config = info.config.unwrap();
    assert_eq!(config.labels.unwrap()["testdock.image"], "host");
    assert_eq!(config.cmd.unwrap(), ["echo", "default cmd"]);

    // Different content, different tag.
    let other = img.clone().file("/etc/greeting", "changed\n", 0o644);
    assert_ne!(other.build().await.unwrap(), first);

    // The image's default command runs with nothing else in it.
    let out = ContainerSpec::new(img).run().await.unwrap();
    assert_eq!(out.stdout_text(), "default cmd\n");

    // Leave the engine's image store as we found it.
    for tag in [first, other.build().await.unwrap()] {
        docker
            .bollard()
            .remove_image(
                &tag,
                None::<testdock::bollard::query_parameters::RemoveImageOptions>,
                None,
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_missing_image_that_cannot_be_pulled_is_a_clear_error() {
    let name = unique("noimage");
    let image = format!("testdock-test/{}:1", unique("absent"));
    let err = ContainerSpec::new(image.as_str())
        .name(name.clone())
        .start()
        .await
        .unwrap_err();
    match &err {
        Error::ImageUnavailable { image: i, reason } => {
            assert_eq!(i, &image);
            assert!(reason.contains("pull failed"), "{reason}");
            assert!(reason.contains("HostImage"), "{reason}");
        }
        other => panic!("expected ImageUnavailable, got {other:?}"),
    }
    assert!(!exists(&name).await);
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_fallback_chain_takes_the_first_image_that_can_be_had() {
    let chain = Image::first_of([
        Image::named(format!("testdock-test/{}:1", unique("absent"))),
        HostImage::shell().into(),
    ]);
    let c = ContainerSpec::new(chain)
        .cmd(["sleep", "infinity"])
        .start()
        .await
        .unwrap();
    assert!(c.image().starts_with("testdock/shell:"), "{}", c.image());
    c.teardown().await.unwrap();

    // A present named image wins over building.
    let shell = HostImage::shell().build().await.unwrap();
    let chain = Image::first_of([
        Image::named(shell.clone()),
        HostImage::new("testdock/never-built").binary("true").into(),
    ]);
    let c = ContainerSpec::new(chain)
        .cmd(["sleep", "infinity"])
        .start()
        .await
        .unwrap();
    assert_eq!(c.image(), shell);
    c.teardown().await.unwrap();

    let err = ContainerSpec::new(Image::first_of([
        Image::named(format!("testdock-test/{}:1", unique("absent"))),
        HostImage::new("testdock/broken")
            .binary("no-such-tool-xyz")
            .into(),
    ]))
    .start()
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("none of the choices"), "{msg}");
    assert!(msg.contains("no-such-tool-xyz"), "{msg}");
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn ensure_image_is_a_no_op_for_present_images() {
    let shell = HostImage::shell().build().await.unwrap();
    testdock::ensure_image(shell).await.unwrap();
    let err = testdock::ensure_image(format!("testdock-test/{}:1", unique("absent")))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ImageUnavailable { .. }), "{err:?}");
}
