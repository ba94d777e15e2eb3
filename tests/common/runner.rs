//! A fake test runner — this test binary, executed through a symlink named
//! `cargo`, so that its children see a `cargo` parent exactly as test
//! binaries under `cargo test` do — that starts children (this binary
//! again, running one probe test), kills them, and ends the run in the
//! ways runs end.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::unique;

/// The child's role: `runner`, or a mode of the probe.
pub const ROLE: &str = "TESTDOCK_SHARING_ROLE";
/// The scenario's tag, passed to every child.
pub const TAG: &str = "TESTDOCK_SHARING_TAG";

/// The fake runner: `spawn N MODE TAG`, `kill N`, `close N` on stdin; it
/// prints `N: <line>` for each line its children print and `EXIT N` when
/// one ends. It ends when its stdin closes, like a run after its last test.
pub fn serve(probe: &str) {
    let exe = std::env::current_exe().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in rx {
            println!("{line}");
        }
    });
    let mut children: HashMap<String, (Child, Option<ChildStdin>)> = HashMap::new();
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["spawn", n, mode, tag] => {
                let mut c = Command::new(&exe)
                    .args(["--exact", probe, "--include-ignored", "--nocapture"])
                    .env(ROLE, mode)
                    .env(TAG, tag)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                for (stream, prefix) in [
                    (
                        Box::new(c.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
                        "",
                    ),
                    (Box::new(c.stderr.take().unwrap()), "stderr "),
                ] {
                    let (tx, n) = (tx.clone(), n.to_string());
                    std::thread::spawn(move || {
                        for l in BufReader::new(stream).lines().map_while(Result::ok) {
                            let _ = tx.send(format!("{n}: {prefix}{l}"));
                        }
                        if prefix.is_empty() {
                            let _ = tx.send(format!("EXIT {n}"));
                        } else {
                            let _ = tx.send(format!("{n}: stderr <closed>"));
                        }
                    });
                }
                let stdin = c.stdin.take();
                children.insert(n.to_string(), (c, stdin));
            }
            ["kill", n] => {
                // Reaped, as a runner reaps a test it timed out: a zombie
                // still has its /proc entry.
                let c = &mut children.get_mut(*n).unwrap().0;
                let _ = c.kill();
                let _ = c.wait();
            }
            ["close", n] => {
                children.get_mut(*n).unwrap().1.take();
            }
            _ => panic!("runner: unknown command {line:?}"),
        }
    }
    for (_, (mut c, stdin)) in children {
        drop(stdin);
        let _ = c.wait();
    }
}

/// The test's side of a fake runner.
pub struct Runner {
    child: Child,
    /// Holds the `cargo` symlink; removed with the runner.
    dir: PathBuf,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Runner {
    /// Every line the runner printed so far.
    pub fn seen(&self) -> impl Iterator<Item = &String> {
        self.seen.iter()
    }

    /// Starts a fake runner that runs `probe` (this binary's test of
    /// that name) as its children.
    pub fn start(probe: &str, env: &[(&str, &str)]) -> Runner {
        let dir = std::env::temp_dir().join(unique("testdock-fake-cargo"));
        std::fs::create_dir_all(&dir).unwrap();
        let cargo = dir.join("cargo");
        std::os::unix::fs::symlink(std::env::current_exe().unwrap(), &cargo).unwrap();
        let mut cmd = Command::new(&cargo);
        cmd.args(["--exact", probe, "--include-ignored", "--nocapture"])
            .env(ROLE, "runner");
        // The fake runner's run, not the one this suite runs in.
        for var in [
            "NEXTEST_RUN_ID",
            "TESTDOCK_RUN_ID",
            "TESTDOCK_REUSE",
            "TESTDOCK_SHARE",
            "TESTDOCK_KEEP",
            "CI",
        ] {
            cmd.env_remove(var);
        }
        let mut child = cmd
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Its own group, as a terminal gives a job: Ctrl-C goes to it.
            .process_group(0)
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let out = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        Runner {
            stdin: child.stdin.take(),
            child,
            dir,
            lines,
            seen: Vec::new(),
        }
    }

    pub fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    pub fn spawn(&mut self, n: usize, mode: &str, tag: &str) {
        self.say(&format!("spawn {n} {mode} {tag}"));
    }

    /// The rest of the first line of child `n` that starts with `word`.
    pub fn expect(&mut self, n: usize, word: &str) -> String {
        let prefix = format!("{n}: {word} ");
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Some(i) = self.seen.iter().position(|l| l.contains(&prefix)) {
                let l = self.seen.remove(i);
                return l.split_once(&prefix).unwrap().1.to_string();
            }
            if self.seen.contains(&format!("EXIT {n}")) {
                panic!(
                    "child {n} exited without printing {word}; the run printed {:#?}",
                    self.seen
                );
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => panic!(
                    "child {n} never printed {word}; the run printed {:#?}",
                    self.seen
                ),
            }
        }
    }

    pub fn expect_exit(&mut self, n: usize) {
        let line = format!("EXIT {n}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.seen.contains(&line) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => panic!("child {n} did not exit; the run printed {:#?}", self.seen),
            }
        }
    }

    /// Waits for a line child `n` printed on stderr containing `needle`.
    pub fn expect_stderr(&mut self, n: usize, needle: &str) {
        let prefix = format!("{n}: stderr ");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self
            .seen
            .iter()
            .any(|l| l.starts_with(&prefix) && l.contains(needle))
        {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => panic!(
                    "child {n} never said {needle:?}; the run printed {:#?}",
                    self.seen
                ),
            }
        }
    }

    /// Ends the run as a run ends after its last test.
    pub fn end(mut self) {
        self.stdin.take();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the fake runner failed: {status}");
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        // A failed assertion must not leave the run's processes behind.
        unsafe { libc::kill(-self.pid(), libc::SIGKILL) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
