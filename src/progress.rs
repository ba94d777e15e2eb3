//! Progress lines: what testdock says on stderr while something slow runs
//! (a pull, an image build, a long readiness wait), one line per step, fit
//! for a CI log and a terminal alike (no carriage returns, no colours).
//!
//! They are raw writes to stderr, not `eprintln!`. They are written from
//! the engine runtime's threads, and libtest's output capture is inherited
//! by the threads a test spawns: an `eprintln!` there lands in the capture
//! of whichever test first started the runtime — shown only if that test
//! fails, lost once it has ended. A progress line is worth something only
//! live. What belongs beside one failing test (a kept container, its last
//! log lines) stays `eprintln!` on that test's own thread.

use std::io::Write as _;
use std::time::Duration;

/// When a slow step first says it is still going.
const FIRST_NOTICE: Duration = Duration::from_secs(5);
/// How often it says so after that.
const NOTICE_EVERY: Duration = Duration::from_secs(10);
/// Build steps longer than this are cut: a `RUN` line can be a page.
const STEP_WIDTH: usize = 100;

/// Writes `testdock: <msg>` to stderr as one write. Never panics: stderr
/// may be closed.
pub(crate) fn say(msg: impl std::fmt::Display) {
    let line = format!("testdock: {msg}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// A duration as progress lines write it: `4.2 s`.
pub(crate) fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Says `what(elapsed)` after [`FIRST_NOTICE`] and then every
/// [`NOTICE_EVERY`], until dropped. Runs on the current tokio runtime (the
/// engine's); outside one it stays silent.
#[must_use = "a Ticker stops when dropped"]
pub(crate) struct Ticker(Option<tokio::task::JoinHandle<()>>);

impl Ticker {
    pub(crate) fn start(what: impl Fn(Duration) -> String + Send + 'static) -> Self {
        let started = tokio::time::Instant::now();
        let task = tokio::runtime::Handle::try_current().ok().map(|rt| {
            rt.spawn(async move {
                let mut at = started + FIRST_NOTICE;
                loop {
                    tokio::time::sleep_until(at).await;
                    say(what(started.elapsed()));
                    at += NOTICE_EVERY;
                }
            })
        });
        Ticker(task)
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// The line a long readiness wait prints.
pub(crate) fn still_waiting(
    strategy: &str,
    container: &str,
    waited: Duration,
    timeout: Duration,
) -> String {
    format!(
        "still waiting for {strategy} on {container} ({} s of {} s)",
        waited.as_secs(),
        timeout.as_secs()
    )
}

/// Prints the build steps (`Step 2/7 : RUN …`) found in a chunk of an
/// image build's output, one line each.
pub(crate) fn build_steps(reference: &str, chunk: &str) {
    for step in steps(chunk) {
        say(format!("building {reference}: {step}"));
    }
}

/// The step lines of Docker's (`Step 1/3 : …`) and Podman's (`STEP 1/3:
/// …`) build output, cut to [`STEP_WIDTH`] characters.
fn steps(chunk: &str) -> Vec<String> {
    chunk
        .lines()
        .map(str::trim)
        .filter(|l| l.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("step ")))
        .map(|l| {
            if l.chars().count() > STEP_WIDTH {
                let cut: String = l.chars().take(STEP_WIDTH).collect();
                format!("{cut}…")
            } else {
                l.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_wait_says_what_on_what_and_how_long() {
        assert_eq!(
            still_waiting(
                "`test -e /ready` succeeding",
                "testdock-abc",
                Duration::from_millis(5_300),
                Duration::from_secs(60)
            ),
            "still waiting for `test -e /ready` succeeding on testdock-abc (5 s of 60 s)"
        );
    }

    #[test]
    fn build_steps_are_picked_and_cut() {
        let long = format!("Step 2/3 : RUN {}", "x".repeat(200));
        let chunk = format!("Step 1/3 : FROM scratch\n ---> abc\n{long}\nSTEP 3/3: CMD [\"sh\"]\n");
        let got = steps(&chunk);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0], "Step 1/3 : FROM scratch");
        assert_eq!(got[1].chars().count(), STEP_WIDTH + 1);
        assert!(got[1].ends_with('…'));
        assert_eq!(got[2], "STEP 3/3: CMD [\"sh\"]");
        assert!(steps(" ---> Running in 1234\nSuccessfully built x\n").is_empty());
        assert!(
            steps("Ünïcødé first\n").is_empty(),
            "no panic off a char boundary"
        );
    }

    #[test]
    fn durations_read_in_seconds() {
        assert_eq!(secs(Duration::from_millis(4_240)), "4.2 s");
    }
}
