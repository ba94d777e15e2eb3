//! Small text helpers shared by errors and messages.

/// Lower-case hex of `bytes`, as digests are written in names and tags.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The last `n` lines of `text`, without a trailing newline.
pub(crate) fn tail_lines(text: &str, n: usize) -> String {
    let text = text.trim_end_matches('\n');
    let start = text
        .rmatch_indices('\n')
        .nth(n.saturating_sub(1))
        .map(|(i, _)| i + 1)
        .unwrap_or(0);
    if n == 0 {
        String::new()
    } else {
        text[start..].to_string()
    }
}

/// A command line as a reader would type it: arguments with spaces or
/// shell characters single-quoted.
pub(crate) fn shell_join(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
            if plain {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail_lines("a\nb", 5), "a\nb");
        assert_eq!(tail_lines("", 3), "");
        assert_eq!(tail_lines("a\nb\n", 0), "");
    }

    #[test]
    fn shell_join_quotes_what_needs_it() {
        let args = ["sh", "-c", "echo 'hi' >&2", ""].map(String::from);
        assert_eq!(shell_join(&args), r#"sh -c 'echo '\''hi'\'' >&2' ''"#);
    }
}
