//! psql's error reports for migration scripts.

/// A failed script, as psql reports it: `psql:<file>:<line>: ERROR:  …`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) file: String,
    pub(crate) line: u32,
    /// The error and what psql printed after it (LINE, DETAIL, HINT).
    pub(crate) message: String,
}

/// Finds the first error psql reported for a file in its stderr.
pub(crate) fn parse_failure(stderr: &str) -> Option<Failure> {
    let mut lines = stderr.lines();
    let (file, line, first) = lines.by_ref().find_map(|l| {
        let rest = l.strip_prefix("psql:")?;
        // The file name may contain ':'; the line number and the severity
        // follow the last "<digits>: " before the severity.
        let (head, message) = ["ERROR:", "FATAL:", "PANIC:"].iter().find_map(|sev| {
            rest.find(&format!(": {sev}"))
                .map(|i| (&rest[..i], &rest[i + 2..]))
        })?;
        let (file, line) = head.rsplit_once(':')?;
        Some((file.to_string(), line.parse().ok()?, message.to_string()))
    })?;
    let mut message = first;
    for l in lines.take_while(|l| !l.starts_with("psql:")) {
        message.push('\n');
        message.push_str(l);
    }
    Some(Failure {
        file,
        line,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psql_errors_name_file_and_line() {
        let stderr = "psql:/tmp/testdock-sql/tmpl_x/002_bad.sql:3: ERROR:  syntax error at or near \"SELEC\"\n\
                      LINE 1: SELEC 1;\n        ^\n";
        assert_eq!(
            parse_failure(stderr),
            Some(Failure {
                file: "/tmp/testdock-sql/tmpl_x/002_bad.sql".into(),
                line: 3,
                message: "ERROR:  syntax error at or near \"SELEC\"\nLINE 1: SELEC 1;\n        ^"
                    .into(),
            })
        );
        assert_eq!(parse_failure("ERROR:  no file here\n"), None);
        let odd = parse_failure("psql:/tmp/a:b.sql:12: FATAL:  boom\n").unwrap();
        assert_eq!((odd.file.as_str(), odd.line), ("/tmp/a:b.sql", 12));
    }
}
