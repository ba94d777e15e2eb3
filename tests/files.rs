//! Files: copying files, directory trees and bytes into containers (before
//! start and while running) with modes and owners, and back out.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{exists, shell, sleeper, unique};
use sha2::{Digest, Sha256};
use testdock::bollard::errors::Error as DockerError;
use testdock::{ContainerSpec, Error, FileCopy, TestContainer};

/// A host directory removed when the test ends, however it ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("testdock-files"));
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn write(path: &Path, bytes: &[u8], mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

/// `stat -c '%a %u:%g'` of a path in the container.
async fn stat(c: &TestContainer, path: &str) -> String {
    let out = c.exec_ok(["stat", "-c", "%a %u:%g", path]).await.unwrap();
    out.stdout_text().trim_end().to_string()
}

/// Deterministic bytes that compress to nothing useful: every value, in no
/// order.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Every entry below `root` as (relative path, kind and content, mode).
fn tree(root: &Path) -> Vec<(String, String, u32)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String, u32)>) {
        let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let meta = fs::symlink_metadata(&path).unwrap();
            let what = if meta.is_dir() {
                "dir".to_string()
            } else if meta.file_type().is_symlink() {
                format!("link -> {}", fs::read_link(&path).unwrap().display())
            } else {
                format!("file {:x}", Sha256::digest(fs::read(&path).unwrap()))
            };
            let mode = if meta.file_type().is_symlink() {
                0
            } else {
                mode_of(&path)
            };
            out.push((rel, what, mode));
            if meta.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_file_round_trips_byte_exact_through_a_path_with_spaces() {
    let tmp = TempDir::new();
    let bytes = b"line one\n\0\xff\xfe binary \r\n no final newline".to_vec();
    let host = tmp.path("in/hello world.bin");
    write(&host, &bytes, 0o640);
    let c = sleeper().start().await.unwrap();

    // Parents that do not exist are created.
    let target = "/data/my dir/hello world.bin";
    c.copy_file_in(&host, target).await.unwrap();
    assert_eq!(c.read_file(target).await.unwrap(), bytes);
    assert_eq!(
        stat(&c, target).await,
        "640 0:0",
        "host mode kept, owned by root"
    );
    assert_eq!(stat(&c, "/data/my dir").await, "755 0:0");

    let out = tmp.path("out/new dir/back.bin");
    c.copy_file_out(target, &out).await.unwrap();
    assert_eq!(fs::read(&out).unwrap(), bytes);
    assert_eq!(mode_of(&out), 0o640);

    // Copying again replaces the file, with the mode asked for.
    c.copy_bytes_in("short", target).mode(0o755).await.unwrap();
    assert_eq!(c.read_file(target).await.unwrap(), b"short");
    assert_eq!(stat(&c, target).await, "755 0:0");

    // A stopped container can be copied into and read from.
    c.stop(Duration::ZERO).await.unwrap();
    c.copy_bytes_in("while stopped", "/data/stopped")
        .await
        .unwrap();
    assert_eq!(
        c.read_file("/data/stopped").await.unwrap(),
        b"while stopped"
    );
    assert_eq!(c.read_file(target).await.unwrap(), b"short");
    c.teardown().await.unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_directory_tree_round_trips_with_modes_links_and_empty_files() {
    let tmp = TempDir::new();
    let src = tmp.path("src");
    write(&src.join("top.txt"), b"top\n", 0o644);
    write(&src.join("empty"), b"", 0o600);
    write(
        &src.join("bin/run me.sh"),
        b"#!/bin/sh\necho \"ran with $1\"\n",
        0o755,
    );
    write(&src.join("a/b/c/deep file.txt"), &noise(70_000), 0o644);
    fs::create_dir_all(src.join("empty dir")).unwrap();
    std::os::unix::fs::symlink("bin/run me.sh", src.join("link")).unwrap();
    let c = sleeper().start().await.unwrap();

    c.copy_dir_in(&src, "/srv/my tree")
        .owner(1000, 1001)
        .await
        .unwrap();
    let ran = c.exec_ok(["/srv/my tree/link", "x"]).await.unwrap();
    assert_eq!(ran.stdout_text(), "ran with x\n", "executable bit kept");
    assert_eq!(
        stat(&c, "/srv/my tree/bin/run me.sh").await,
        "755 1000:1001"
    );
    assert_eq!(stat(&c, "/srv/my tree/empty").await, "600 1000:1001");
    assert_eq!(stat(&c, "/srv/my tree/a/b/c").await, "755 1000:1001");
    assert_eq!(c.read_file("/srv/my tree/empty").await.unwrap(), b"");
    // Read through the link.
    assert_eq!(
        c.read_file("/srv/my tree/link").await.unwrap(),
        fs::read(src.join("bin/run me.sh")).unwrap()
    );

    let back = tmp.path("back here");
    c.copy_dir_out("/srv/my tree", &back).await.unwrap();
    assert_eq!(tree(&back), tree(&src));
    assert!(tree(&src).len() >= 9, "{:?}", tree(&src));
    c.teardown().await.unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn bytes_get_the_mode_and_owner_asked_for_and_parents_stay_untouched() {
    let c = sleeper().start().await.unwrap();
    c.copy_bytes_in("s3cret", "/run/secrets/token")
        .mode(0o600)
        .owner(65534, 65534)
        .await
        .unwrap();
    assert_eq!(stat(&c, "/run/secrets/token").await, "600 65534:65534");
    // Created parents take the owner, so the owner can manage them.
    assert_eq!(stat(&c, "/run/secrets").await, "755 65534:65534");
    // The owner can read it, through the kernel's checks, not ours.
    let out = c
        .exec_ok(["cat", "/run/secrets/token"])
        .user("65534:65534")
        .await
        .unwrap();
    assert_eq!(out.stdout, b"s3cret");
    let denied = c
        .exec(["cat", "/run/secrets/token"])
        .user("1234:1234")
        .await
        .unwrap();
    assert_ne!(denied.exit_code, 0);

    // An existing parent keeps its mode and owner: /tmp stays 1777.
    let before = stat(&c, "/tmp").await;
    c.copy_in(FileCopy::bytes("x", "/tmp/x").owner(65534, 65534))
        .await
        .unwrap();
    assert_eq!(stat(&c, "/tmp").await, before);
    assert_eq!(stat(&c, "/tmp/x").await, "644 65534:65534");
    c.teardown().await.unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_20_mb_random_file_round_trips() {
    let tmp = TempDir::new();
    let bytes = noise(20 * 1024 * 1024 + 3);
    let host = tmp.path("big.bin");
    write(&host, &bytes, 0o644);
    let c = sleeper().start().await.unwrap();

    c.copy_file_in(&host, "/big/big.bin").await.unwrap();
    let sum = c.exec_ok(["sha256sum", "/big/big.bin"]).await.unwrap();
    assert_eq!(
        sum.stdout_text().split_whitespace().next().unwrap(),
        format!("{:x}", Sha256::digest(&bytes))
    );

    let out = tmp.path("big.out");
    c.copy_file_out("/big/big.bin", &out).await.unwrap();
    assert!(fs::read(&out).unwrap() == bytes, "copied out differs");
    assert!(c.read_file("/big/big.bin").await.unwrap() == bytes);
    c.teardown().await.unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn files_are_in_place_before_the_main_process_starts() {
    let out = ContainerSpec::new(shell())
        .copy_bytes("hello from before start\n", "/etc/greeting", 0o600)
        .cmd([
            "sh",
            "-c",
            "cat /etc/greeting && stat -c '%a %u:%g' /etc/greeting",
        ])
        .run()
        .await
        .unwrap();
    assert_eq!(out.stdout_text(), "hello from before start\n600 0:0\n");
    assert_eq!(out.exit_code, 0);

    let tmp = TempDir::new();
    write(&tmp.path("conf/app.toml"), b"port = 1\n", 0o644);
    write(&tmp.path("conf/sub/x"), b"x", 0o644);
    let c = sleeper()
        .copy_file(tmp.path("conf/app.toml"), "/etc/app/app.toml")
        .copy_dir(tmp.path("conf"), "/etc/conf")
        .copy_in(
            FileCopy::bytes("k", "/home/app/key")
                .mode(0o400)
                .owner(1000, 1000),
        )
        .start()
        .await
        .unwrap();
    assert_eq!(
        c.read_file("/etc/app/app.toml").await.unwrap(),
        b"port = 1\n"
    );
    assert_eq!(c.read_file("/etc/conf/sub/x").await.unwrap(), b"x");
    assert_eq!(stat(&c, "/home/app/key").await, "400 1000:1000");
    c.teardown().await.unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_missing_host_file_is_named_and_a_spec_with_one_leaves_nothing() {
    let c = sleeper().start().await.unwrap();
    let err = c.copy_file_in("/no/such file.txt", "/x").await.unwrap_err();
    match &err {
        Error::Io { cause, .. } => assert_eq!(cause.kind(), std::io::ErrorKind::NotFound),
        other => panic!("expected Error::Io, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("`/no/such file.txt`"), "{msg}");
    assert!(msg.contains(c.name()), "{msg}");

    let tmp = TempDir::new();
    let err = c.copy_file_in(&tmp.0, "/x").await.unwrap_err();
    assert!(err.to_string().contains("is a directory"), "{err}");
    let err = c.copy_dir_in("/no/such/dir", "/x").await.unwrap_err();
    assert!(err.to_string().contains("`/no/such/dir`"), "{err}");
    c.teardown().await.unwrap();

    // Before start: nothing is left behind.
    let name = unique("td-files-missing");
    let err = sleeper()
        .name(&name)
        .copy_file("/no/such/fixture", "/fixture")
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("`/no/such/fixture`"), "{err}");
    assert!(!exists(&name).await, "{name} was left behind");

    let err = ContainerSpec::new(shell())
        .name(&name)
        .copy_dir("/no/such/fixtures", "/fixtures")
        .cmd(["true"])
        .run()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("`/no/such/fixtures`"), "{err}");
    assert!(!exists(&name).await, "{name} was left behind by run");

    // A relative target is refused before anything is created.
    let err = sleeper()
        .name(&name)
        .copy_bytes("x", "etc/x", 0o644)
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidSpec(_)), "{err:?}");
    assert!(!exists(&name).await);
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn copying_out_a_missing_path_is_an_error_naming_it() {
    let tmp = TempDir::new();
    let c = sleeper().start().await.unwrap();
    let not_found = |e: &Error| {
        matches!(
            e,
            Error::Docker {
                cause: DockerError::DockerResponseServerError {
                    status_code: 404,
                    ..
                },
                ..
            }
        )
    };

    let err = c.read_file("/no/such file").await.unwrap_err();
    assert!(not_found(&err), "{err:?}");
    assert!(err.to_string().contains("/no/such file"), "{err}");

    let err = c
        .copy_file_out("/no/such", tmp.path("x"))
        .await
        .unwrap_err();
    assert!(not_found(&err), "{err:?}");
    assert!(err.to_string().contains("/no/such"), "{err}");
    assert!(!tmp.path("x").exists());

    let err = c
        .copy_dir_out("/no/such/dir", tmp.path("d"))
        .await
        .unwrap_err();
    assert!(not_found(&err), "{err:?}");
    assert!(err.to_string().contains("/no/such/dir"), "{err}");

    // The wrong kind is an error too, saying which to use.
    let err = c.read_file("/etc").await.unwrap_err();
    assert!(err.to_string().contains("copy_dir_out"), "{err}");
    let err = c
        .copy_dir_out("/etc/passwd", tmp.path("d"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
    c.teardown().await.unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_file_never_replaces_a_directory() {
    let c = sleeper().start().await.unwrap();
    c.exec_ok(["mkdir", "-p", "/data/keep"]).await.unwrap();
    c.copy_bytes_in("x", "/data/keep/inside").await.unwrap();
    let err = c.copy_bytes_in("x", "/data/keep").await.unwrap_err();
    assert!(err.to_string().contains("/data/keep"), "{err}");
    assert_eq!(c.read_file("/data/keep/inside").await.unwrap(), b"x");

    // Nor does a parent path that is a file become a directory.
    let err = c
        .copy_bytes_in("x", "/data/keep/inside/y")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
    c.teardown().await.unwrap();
}
