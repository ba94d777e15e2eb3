//! Interactive exec: writing stdin while reading output, with and without a
//! TTY, against the real engine.

mod common;

use std::time::{Duration, Instant};

use common::{eventually, shell, sleeper};
use testdock::{ContainerSpec, Error, HostImage};

const T: Duration = Duration::from_secs(10);

/// Whether the engine still reports the exec as running.
async fn running(exec_id: &str) -> bool {
    let docker = testdock::docker().await.unwrap();
    let inspect = docker.bollard().inspect_exec(exec_id).await.unwrap();
    inspect.running.unwrap_or(false)
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_conversation_with_sh_ends_with_its_exit_code() {
    let c = sleeper().start().await.unwrap();
    let mut sh = c.exec(["sh"]).interactive().await.unwrap();
    sh.write_line("echo hi").unwrap();
    assert_eq!(sh.read_until("hi\n", T).await.unwrap(), "hi\n");
    sh.write_line("echo again; exit 3").unwrap();
    let out = sh.wait().await.unwrap();
    assert_eq!(out.exit_code, 3);
    assert_eq!(out.stdout, b"again\n", "what was not read comes back");
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_prompt_without_newline_is_answered() {
    let c = sleeper().start().await.unwrap();
    let mut s = c
        .exec(["sh", "-c", r#"printf "name? "; read n; echo "hello $n""#])
        .interactive()
        .await
        .unwrap();
    assert_eq!(s.read_until("name? ", T).await.unwrap(), "name? ");
    s.write_line("Ada").unwrap();
    assert_eq!(s.read_until("\n", T).await.unwrap(), "hello Ada\n");
    assert!(s.wait().await.unwrap().is_success());
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn stdout_and_stderr_stay_apart_without_tty() {
    let c = sleeper().start().await.unwrap();
    let mut s = c
        .exec(["sh", "-c", "read x; echo out-$x; echo err-$x >&2; cat"])
        .interactive()
        .await
        .unwrap();
    s.write_line("1").unwrap();
    assert_eq!(s.read_until_stderr("\n", T).await.unwrap(), "err-1\n");
    assert_eq!(s.read_until("\n", T).await.unwrap(), "out-1\n");
    s.write("tail").unwrap();
    let out = s.wait().await.unwrap();
    assert_eq!(out.stdout, b"tail", "wait closed stdin, so cat ended");
    assert!(out.stderr.is_empty());
    assert_eq!(out.exit_code, 0);
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_tty_is_a_terminal_of_the_size_asked() {
    let image = HostImage::shell().binary("stty");
    let c = ContainerSpec::new(image)
        .cmd(["sleep", "infinity"])
        .start()
        .await
        .unwrap();
    let mut s = c.exec(["sh"]).interactive().window(100, 40).await.unwrap();
    // Answers are told from the echo of the command by a marker the
    // command line does not contain literally.
    s.write_line("test -t 0 && echo T''TY; stty size; echo E''ND")
        .unwrap();
    let got = s.read_until("END", T).await.unwrap();
    assert!(got.contains("TTY\r\n"), "{got:?}");
    assert!(got.contains("40 100\r\n"), "{got:?}");

    s.resize(120, 50).await.unwrap();
    s.write_line("stty size; echo E''ND").unwrap();
    let got = s.read_until("END", T).await.unwrap();
    assert!(got.contains("50 120\r\n"), "{got:?}");
    s.write_line("exit 4").unwrap();
    assert_eq!(s.wait().await.unwrap().exit_code, 4);
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn resize_without_tty_is_refused() {
    let c = sleeper().start().await.unwrap();
    let s = c.exec(["cat"]).interactive().await.unwrap();
    let e = s.resize(80, 24).await.unwrap_err();
    assert!(matches!(e, Error::InvalidSpec(_)), "{e}");
    assert!(e.to_string().contains(".tty(true)"), "{e}");
    assert_eq!(s.wait().await.unwrap().exit_code, 0);
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_read_that_never_matches_times_out_with_the_partial_output() {
    let c = sleeper().start().await.unwrap();
    let mut s = c
        .exec(["sh", "-c", "printf partial; sleep 60"])
        .interactive()
        .await
        .unwrap();
    let t0 = Instant::now();
    let e = s
        .read_until("never", Duration::from_secs(3))
        .await
        .unwrap_err();
    let waited = t0.elapsed();
    // Long enough for "partial" to arrive on a loaded machine; bounded.
    assert!(waited < Duration::from_secs(10), "took {waited:?}");
    match &e {
        Error::NotPrinted {
            pattern,
            outcome,
            output,
            ..
        } => {
            assert_eq!(pattern, "never");
            assert_eq!(outcome, "timed out");
            assert_eq!(output.stdout, b"partial");
        }
        other => panic!("expected NotPrinted, got {other}"),
    }
    assert!(e.to_string().contains("partial"), "{e}");
    // The output is still there to read.
    assert_eq!(s.read_until("tial", T).await.unwrap(), "partial");
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn a_read_past_the_end_says_so() {
    let c = sleeper().start().await.unwrap();
    let mut s = c.exec(["echo", "bye"]).interactive().await.unwrap();
    let e = s.read_until("never", T).await.unwrap_err();
    assert!(
        matches!(&e, Error::NotPrinted { outcome, .. } if outcome == "its output ended"),
        "{e}"
    );
}

#[tokio::test]
#[ignore = "requires Docker"]
async fn dropping_the_handle_returns_at_once_and_ends_the_process() {
    let c = sleeper().start().await.unwrap();
    for tty in [false, true] {
        let mut s = c.exec(["sh"]).interactive().tty(tty).await.unwrap();
        if tty {
            // Something for Ctrl-C to interrupt before Ctrl-D ends sh.
            s.write_line("echo RE''ADY; sleep 1000").unwrap();
            s.read_until("READY", T).await.unwrap();
        } else {
            s.write_line("echo ready").unwrap();
            s.read_until("ready\n", T).await.unwrap();
        }
        let id = s.exec_id().to_string();
        assert!(running(&id).await);
        let t0 = Instant::now();
        drop(s);
        assert!(t0.elapsed() < Duration::from_millis(100));
        eventually(T, &format!("exec ended after drop (tty {tty})"), || {
            let id = id.clone();
            async move { !running(&id).await }
        })
        .await;
    }
}

#[test]
#[ignore = "requires Docker"]
fn works_without_tokio_on_the_caller_side() {
    futures_executor_block_on(async {
        let c = ContainerSpec::new(shell())
            .cmd(["sleep", "infinity"])
            .start()
            .await
            .unwrap();
        let mut s = c.exec(["cat"]).interactive().await.unwrap();
        s.write_line("echo").unwrap();
        assert_eq!(s.read_until("echo\n", T).await.unwrap(), "echo\n");
        assert_eq!(s.wait().await.unwrap().exit_code, 0);
    });
}

/// A minimal executor that is not tokio.
fn futures_executor_block_on<F: std::future::Future>(f: F) -> F::Output {
    futures_executor::block_on(f)
}
