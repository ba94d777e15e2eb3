//! Exec: exact streams, exit codes, stdin, timeouts, large and binary output.

mod common;

use std::time::Duration;

use common::sleeper;
use sha2::{Digest, Sha256};
use testdock::Error;

#[tokio::test]
#[ignore = "requires Docker"]
async fn streams_are_separate_and_exit_codes_exact() {
    let c = sleeper().start().await.unwrap();

    let out = c
        .exec(["sh", "-c", "echo out; echo err >&2; exit 3"])
        .await
        .unwrap();
    assert_eq!(out.stdout_text(), "out\n");
    assert_eq!(out.stderr_text(), "err\n");
    assert_eq!(out.exit_code, 3);

    let ok = c.exec(["true"]).await.unwrap();
    assert_eq!((ok.exit_code, ok.stdout.len(), ok.stderr.len()), (0, 0, 0));
    assert_eq!(c.exec(["false"]).await.unwrap().exit_code, 1);
    assert_eq!(
        c.exec(["sh", "-c", "kill -9 $$"]).await.unwrap().exit_code,
        137
    );

    // Interleaved writes never mix.
    let out = c
        .exec([
            "sh",
            "-c",
            "for i in $(seq 1 200); do echo o$i; echo e$i >&2; done",
        ])
        .await
        .unwrap();
    let want = |p: &str| (1..=200).map(|i| format!("{p}{i}\n")).collect::<String>();
    assert_eq!(out.stdout_text(), want("o"));
    assert_eq!(out.stderr_text(), want("e"));
    c.teardown().await.unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn exec_ok_turns_a_failure_into_an_error_naming_it() {
    let c = sleeper().start().await.unwrap();
    let out = c.exec_ok(["sh", "-c", "echo fine"]).await.unwrap();
    assert_eq!(out.stdout_text(), "fine\n");

    let err = c
        .exec_ok(["sh", "-c", "echo 'role x does not exist' >&2; exit 2"])
        .await
        .unwrap_err();
    match &err {
        Error::ExecFailed {
            exit_code,
            stderr_tail,
            command,
            container,
            ..
        } => {
            assert_eq!(*exit_code, 2);
            assert_eq!(stderr_tail, "role x does not exist");
            assert!(command.starts_with("sh -c"), "{command}");
            assert_eq!(container, c.name());
        }
        other => panic!("expected ExecFailed, got {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("exited with 2: role x does not exist"),
        "{err}"
    );
    c.teardown().await.unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn stdin_is_fed_and_closed() {
    let c = sleeper().start().await.unwrap();
    let out = c.exec(["tr", "a-z", "A-Z"]).stdin("hello\n").await.unwrap();
    assert_eq!(out.stdout_text(), "HELLO\n");

    // Larger than any pipe buffer, binary, echoed back while we still write.
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let out = c.exec(["cat"]).stdin(data.clone()).await.unwrap();
    assert_eq!(out.exit_code, 0);
    assert!(
        out.stdout == data,
        "stdin round trip differs ({} bytes back)",
        out.stdout.len()
    );

    // A command that ignores stdin is fine too.
    let out = c.exec(["true"]).stdin(vec![1u8; 100_000]).await.unwrap();
    assert_eq!(out.exit_code, 0);
    c.teardown().await.unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_hung_command_times_out_with_what_it_printed() {
    let c = sleeper().start().await.unwrap();
    let err = c
        .exec(["sh", "-c", "echo started; echo working >&2; sleep 30"])
        .timeout(Duration::from_millis(1500))
        .await
        .unwrap_err();
    match &err {
        Error::Timeout {
            output,
            timeout,
            container,
            ..
        } => {
            assert_eq!(output.stdout_text(), "started\n");
            assert_eq!(output.stderr_text(), "working\n");
            assert_eq!(*timeout, Duration::from_millis(1500));
            assert_eq!(container, c.name());
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(
        err.to_string().contains("did not finish within 1.5s"),
        "{err}"
    );
    // The container is still usable.
    assert_eq!(
        c.exec(["echo", "after"]).await.unwrap().stdout_text(),
        "after\n"
    );
    c.teardown().await.unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn ten_megabytes_and_binary_output_arrive_intact() {
    let c = sleeper().start().await.unwrap();
    let out = c
        .exec([
            "sh",
            "-c",
            "head -c 10485760 /dev/urandom > /tmp/blob && cat /tmp/blob && sha256sum /tmp/blob >&2",
        ])
        .await
        .unwrap();
    assert_eq!(out.exit_code, 0);
    assert_eq!(out.stdout.len(), 10 * 1024 * 1024);
    let digest: String = Sha256::digest(&out.stdout)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        out.stderr_text().split_whitespace().next(),
        Some(digest.as_str())
    );

    let out = c
        .exec([
            "sh",
            "-c",
            r"printf '\000\377\001\n' ; printf '\376\000' >&2",
        ])
        .await
        .unwrap();
    assert_eq!(out.stdout, [0, 0xff, 1, b'\n']);
    assert_eq!(out.stderr, [0xfe, 0]);
    c.teardown().await.unwrap();
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn env_user_and_workdir_apply() {
    let c = sleeper()
        .env("FROM_SPEC", "spec value")
        .workdir("/tmp")
        .start()
        .await
        .unwrap();
    let out = c
        .exec(["sh", "-c", "echo \"$FROM_SPEC|$FROM_EXEC\"; pwd; id -u"])
        .await
        .unwrap();
    assert_eq!(out.stdout_text(), "spec value|\n/tmp\n0\n");

    let out = c
        .exec(["sh", "-c", "echo \"$FROM_EXEC\"; pwd; id -u"])
        .env("FROM_EXEC", "exec value")
        .workdir("/etc")
        .user("nobody")
        .await
        .unwrap();
    assert_eq!(out.stdout_text(), "exec value\n/etc\n65534\n");

    let out = c.exec(["id", "-u"]).user("1234:1234").await.unwrap();
    assert_eq!(out.stdout_text(), "1234\n");
    c.teardown().await.unwrap();
}
