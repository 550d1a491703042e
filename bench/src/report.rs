//! The report file, docs/benchmarks.md: each suite's generated part sits between
//! marker comments and is replaced on the next run of that suite; text outside the
//! markers (commentary, other suites' parts) stays as it is.

/// The report's title, for a report written from nothing.
const TITLE: &str = "# Benchmarks\n";

fn begin(suite: &str) -> String {
    format!("<!-- strom-bench {suite}: generated, do not edit -->\n")
}

fn end(suite: &str) -> String {
    format!("<!-- strom-bench {suite}: end -->\n")
}

/// `document` with `section` as the generated part of `suite`: in place of the old
/// one, or appended.
pub fn with_section(document: &str, suite: &str, section: &str) -> String {
    let (begin, end) = (begin(suite), end(suite));
    let block = format!("{begin}{section}{end}");
    if let Some(start) = document.find(&begin)
        && let Some(stop) = document[start..].find(&end)
    {
        let stop = start + stop + end.len();
        return format!("{}{block}{}", &document[..start], &document[stop..]);
    }
    let mut out = if document.trim().is_empty() {
        format!("{TITLE}\n")
    } else {
        document.to_owned()
    };
    if !out.ends_with("\n\n") {
        out.push('\n');
    }
    out.push_str(&block);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suite_replaces_its_own_part_and_keeps_the_rest() {
        let first = with_section("", "runtime", "## Throughput\n\nold\n");
        assert!(first.starts_with("# Benchmarks\n\n<!-- strom-bench runtime"));
        let annotated = format!("{first}\n## Reading the figures\n\nnotes\n");
        let both = with_section(&annotated, "kafka", "## Kafka\n\nk1\n");
        let again = with_section(&both, "runtime", "## Throughput\n\nnew\n");
        assert!(!again.contains("old"));
        assert!(again.contains("## Throughput\n\nnew\n"));
        assert!(again.contains("## Reading the figures\n\nnotes\n"));
        assert!(again.contains("## Kafka\n\nk1\n"));
        assert_eq!(
            with_section(&again, "runtime", "## Throughput\n\nnew\n"),
            again
        );
    }
}
