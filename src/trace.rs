//! What the `tracing` events share. Events go to the default targets (the
//! module paths, `testdock::container` and so on), so
//! `RUST_LOG=testdock=debug` selects them all; every one names the
//! container, image or database by id or name, and timed ones carry
//! `elapsed_ms`. Levels: `debug` per operation, `info` for rarer lifecycle
//! steps (an image built, a sweep that removed something), `warn` for what
//! failed in the background. Without a subscriber an event costs a load and
//! a branch.

use std::time::Instant;

/// Milliseconds since `since`: the `elapsed_ms` field of every event.
pub(crate) fn ms(since: Instant) -> u64 {
    since.elapsed().as_millis().try_into().unwrap_or(u64::MAX)
}

/// A container id as `docker ps` shows it: 12 hex digits.
pub(crate) fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Runs `emit` (an event macro) so that a panicking subscriber cannot
/// unwind out of it. For the exit hook: it runs in an `extern "C"`
/// destructor, where a panic aborts the process and its cleanup with it —
/// and a subscriber printing with `print!` to a closed stdout panics.
pub(crate) fn guarded(emit: impl FnOnce()) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(emit));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_shortened_as_docker_shows_them() {
        assert_eq!(short("0123456789abcdef0123"), "0123456789ab");
        assert_eq!(short("abc"), "abc");
    }

    #[test]
    fn a_panicking_emitter_does_not_unwind() {
        guarded(|| panic!("a subscriber fails"));
    }
}
