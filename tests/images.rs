//! Images with no registry: packed from host binaries, reused by content
//! hash, missing ones reported, fallback chains.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{exists, unique};
use testdock::{ContainerSpec, DockerfileImage, Error, HostImage, Image, PullPolicy};

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_host_image_is_tagged_by_content_and_reused() {
    let img = HostImage::new("testdock/test-echo")
        .binary("echo")
        .file("/etc/greeting", "packed\n", 0o644)
        .env("OPTS", "-Xmx1g -Xms1g \"$HOME\"")
        .cmd(["echo", "default cmd"]);
    let first = img.build().await.unwrap();
    assert!(first.starts_with("testdock/test-echo:"), "{first}");
    assert_eq!(img.build().await.unwrap(), first, "same content, same tag");

    let docker = testdock::docker().await.unwrap();
    let info = docker.bollard().inspect_image(&first).await.unwrap();
    let config = info.config.unwrap();
    assert_eq!(config.labels.unwrap()["testdock.image"], "host");
    assert_eq!(config.cmd.unwrap(), ["echo", "default cmd"]);
    // Spaces, quotes and `$` survive the Dockerfile syntax of the import.
    assert!(
        config
            .env
            .unwrap()
            .contains(&"OPTS=-Xmx1g -Xms1g \"$HOME\"".to_string()),
        "env lost its value"
    );

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

fn context_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique(tag));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn remove_image(reference: &str) {
    let docker = testdock::docker().await.unwrap();
    docker
        .bollard()
        .remove_image(
            reference,
            None::<testdock::bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_dockerfile_context_builds_offline_honours_dockerignore_and_is_reused() {
    let base = HostImage::shell().build().await.unwrap();
    let dir = context_dir("ctx");
    std::fs::write(
        dir.join("Dockerfile"),
        format!(
            "FROM {base}\nCOPY . /app/\nRUN echo built-by-run > /app/run.txt\nCMD [\"cat\", \"/app/greeting.txt\"]\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join(".dockerignore"), "secret.txt\nlogs\n").unwrap();
    std::fs::write(dir.join("greeting.txt"), "hello from the build\n").unwrap();
    std::fs::write(dir.join("secret.txt"), "do not send").unwrap();
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    std::fs::write(dir.join("logs/a.log"), "x").unwrap();

    let image = DockerfileImage::new("testdock/test-built", &dir);
    let reference = image.build().await.unwrap();
    assert!(reference.starts_with("testdock/test-built:"), "{reference}");
    assert_eq!(
        image.build().await.unwrap(),
        reference,
        "unchanged context, same image"
    );

    let out = ContainerSpec::new(image.clone()).run().await.unwrap();
    assert_eq!(out.stdout_text(), "hello from the build\n");
    let out = ContainerSpec::new(image.clone())
        .cmd(["sh", "-c", "cat /app/run.txt; ls /app"])
        .run()
        .await
        .unwrap();
    assert_eq!(
        out.stdout_text(),
        "built-by-run\nDockerfile\ngreeting.txt\nrun.txt\n"
    );

    // A changed context is a new image.
    std::fs::write(dir.join("greeting.txt"), "changed\n").unwrap();
    let changed = DockerfileImage::new("testdock/test-built", &dir)
        .build()
        .await
        .unwrap();
    assert_ne!(changed, reference);

    remove_image(&reference).await;
    remove_image(&changed).await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_failing_build_reports_its_output() {
    let base = HostImage::shell().build().await.unwrap();
    let dir = context_dir("badctx");
    std::fs::write(
        dir.join("Dockerfile"),
        format!("FROM {base}\nRUN echo about to fail && exit 7\n"),
    )
    .unwrap();
    let err = DockerfileImage::new("testdock/test-broken", &dir)
        .build()
        .await
        .unwrap_err();
    match &err {
        Error::BuildFailed {
            reason,
            output_tail,
            ..
        } => {
            // Docker: "returned a non-zero code: 7"; Podman: "exit status 7".
            assert!(
                reason.contains(": 7") || reason.contains("status 7"),
                "{reason}"
            );
            let podman = testdock::docker().await.unwrap().is_podman();
            // Podman does not stream a failing step's output.
            assert!(
                podman || output_tail.contains("about to fail"),
                "{output_tail}"
            );
        }
        other => panic!("expected BuildFailed, got {other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_root_filesystem_imports_from_a_directory_or_a_tar() {
    use testdock::RootfsImage;
    // A root filesystem to start from: the shell image's, exported.
    let shell = ContainerSpec::new(HostImage::shell())
        .cmd(["true"])
        .start()
        .await
        .unwrap();
    let docker = testdock::docker().await.unwrap();
    let mut tar = Vec::new();
    let mut stream = docker.bollard().export_container(shell.id());
    while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
        tar.extend_from_slice(&chunk.unwrap());
    }
    shell.teardown().await.unwrap();

    let dir = context_dir("rootfs");
    let tar_path = dir.join("rootfs.tar");
    std::fs::write(&tar_path, &tar).unwrap();
    let from_tar = RootfsImage::new("testdock/test-rootfs", &tar_path).cmd(["cat", "/etc/group"]);
    let out = ContainerSpec::new(from_tar.clone()).run().await.unwrap();
    assert!(
        out.stdout_text().contains("nogroup"),
        "{}",
        out.stdout_text()
    );

    // Owners are kept; a user who is not root (rootless CI) cannot give
    // files away, and their own files stand for root's.
    let root_user = unsafe { libc::geteuid() } == 0;
    let root = dir.join("tree");
    let mut archive = tar::Archive::new(tar.as_slice());
    archive.set_preserve_ownerships(root_user);
    archive.set_preserve_permissions(true);
    archive.unpack(&root).unwrap();
    std::fs::write(root.join("owned"), "x").unwrap();
    std::fs::set_permissions(root.join("owned"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let owner = if root_user {
        std::os::unix::fs::chown(root.join("owned"), Some(1234), Some(2345)).unwrap();
        "1234:2345"
    } else {
        "0:0"
    };
    let from_dir = RootfsImage::new("testdock/test-rootfs", &root);
    let out = ContainerSpec::new(from_dir.clone())
        .cmd(["stat", "-c", "%u:%g %a", "/owned", "/tmp"])
        .run()
        .await
        .unwrap();
    assert_eq!(out.stdout_text(), format!("{owner} 644\n0:0 1777\n"));

    for img in [
        from_tar.build().await.unwrap(),
        from_dir.build().await.unwrap(),
    ] {
        remove_image(&img).await;
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn pull_policy_never_refuses_a_missing_image_without_trying() {
    let image =
        Image::named(format!("testdock-test/{}:1", unique("absent"))).pull(PullPolicy::Never);
    let err = ContainerSpec::new(image).start().await.unwrap_err();
    match err {
        Error::ImageUnavailable { reason, .. } => {
            assert!(reason.contains("pull policy is never"), "{reason}")
        }
        other => panic!("expected ImageUnavailable, got {other:?}"),
    }
    // A present image runs under any policy.
    let shell = HostImage::shell().build().await.unwrap();
    for policy in [PullPolicy::Never, PullPolicy::IfMissing] {
        let out = ContainerSpec::new(Image::named(shell.clone()).pull(policy))
            .cmd(["echo", "ok"])
            .run()
            .await
            .unwrap();
        assert_eq!(out.stdout_text(), "ok\n");
    }
    let err = ContainerSpec::new(
        Image::named(format!("testdock-test/{}:1", unique("absent"))).pull(PullPolicy::Always),
    )
    .start()
    .await
    .unwrap_err();
    assert!(matches!(err, Error::ImageUnavailable { .. }), "{err:?}");
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_malformed_image_reference_is_refused_before_anything_is_made() {
    for image in ["", "Postgres:16", "postgres :16"] {
        let (name, volume) = (unique("badref"), unique("badrefvol"));
        let err = ContainerSpec::new(image)
            .name(name.clone())
            .volume(volume.clone(), "/v")
            .cmd(["true"])
            .start()
            .await
            .unwrap_err();
        match &err {
            Error::InvalidSpec(why) => {
                assert!(why.contains(&format!("image {image:?}")), "{why}")
            }
            other => panic!("{image:?}: expected InvalidSpec, got {other:?}"),
        }
        assert!(
            !exists(&name).await,
            "a container was created for {image:?}"
        );
        let docker = testdock::docker().await.unwrap();
        let found = docker.bollard().inspect_volume(&volume).await;
        assert!(found.is_err(), "a volume was created for {image:?}");
    }
}
