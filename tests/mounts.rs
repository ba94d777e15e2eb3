//! Bind mounts, volumes and tmpfs.

mod common;

use common::{exists, sleeper, unique};
use testdock::Error;

fn scratch_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique(tag));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn read_only_bind_refuses_writes_and_read_write_reaches_the_host() {
    let rw = scratch_dir("rw");
    let c = sleeper()
        .bind_mount_ro("fixtures/config", "/config")
        .bind_mount(&rw, "/data")
        .start()
        .await
        .unwrap();

    let out = c.exec(["cat", "/config/app.conf"]).await.unwrap();
    assert_eq!(out.stdout_text(), "mode = test\n");
    let denied = c.exec(["sh", "-c", "echo x > /config/new"]).await.unwrap();
    assert_ne!(denied.exit_code, 0);
    assert!(
        denied.stderr_text().contains("Read-only file system"),
        "{}",
        denied.stderr_text()
    );
    assert!(!std::path::Path::new("fixtures/config/new").exists());

    c.exec_ok([
        "sh",
        "-c",
        "echo written in container > '/data/out file.txt'",
    ])
    .await
    .unwrap();
    let on_host = std::fs::read_to_string(rw.join("out file.txt")).unwrap();
    assert_eq!(on_host, "written in container\n");

    c.teardown().await.unwrap();
    std::fs::remove_dir_all(rw).unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_missing_bind_path_is_a_typed_error_and_creates_nothing() {
    let name = unique("missingbind");
    let err = sleeper()
        .name(name.clone())
        .bind_mount_ro("fixtures/no-such-dir", "/x")
        .start()
        .await
        .unwrap_err();
    match &err {
        Error::BindPathMissing { path, target } => {
            assert_eq!(path, std::path::Path::new("fixtures/no-such-dir"));
            assert_eq!(target, "/x");
        }
        other => panic!("expected BindPathMissing, got {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("`fixtures/no-such-dir` does not exist"),
        "{err}"
    );
    assert!(
        !exists(&name).await,
        "a container was created despite the bad path"
    );
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn named_volume_is_labelled_shared_and_removed_with_its_container() {
    let vol = unique("vol");
    let c = sleeper().volume(vol.clone(), "/vol").start().await.unwrap();
    c.exec_ok(["sh", "-c", "echo persisted > /vol/f"])
        .await
        .unwrap();

    let docker = testdock::docker().await.unwrap();
    let info = docker.bollard().inspect_volume(&vol).await.unwrap();
    assert_eq!(info.labels["testdock.session"], testdock::session_id());

    c.teardown().await.unwrap();
    let gone = docker.bollard().inspect_volume(&vol).await;
    assert!(gone.is_err(), "volume {vol} outlived its container");
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn tmpfs_is_mounted_with_its_options() {
    // Podman 4 refuses uid/gid on a tmpfs; Docker honours them.
    let podman = testdock::docker().await.unwrap().is_podman();
    let (opts, want) = if podman {
        ("size=8m,mode=0700", "0 700\n")
    } else {
        ("size=8m,uid=65534,mode=0700", "65534 700\n")
    };
    let c = sleeper().tmpfs("/scratch", opts).start().await.unwrap();
    let out = c.exec(["stat", "-c", "%u %a", "/scratch"]).await.unwrap();
    assert_eq!(out.stdout_text(), want);
    let out = c
        .exec(["sh", "-c", "grep ' /scratch ' /proc/mounts"])
        .await
        .unwrap();
    assert!(
        out.stdout_text().starts_with("tmpfs /scratch tmpfs"),
        "{}",
        out.stdout_text()
    );
    c.teardown().await.unwrap();
}
