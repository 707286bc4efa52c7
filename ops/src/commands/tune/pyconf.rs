//! One assignment in a Python configuration file (gunicorn's `gunicorn.conf.py`, Celery's
//! `celeryconfig.py`): read its value, or set it while keeping every other byte of the file.
//!
//! Only top-level, one-line assignments (`workers = 9`, `workers=int(os.environ["W"])`) are
//! touched: an assignment continued over several lines (open brackets, a trailing backslash)
//! cannot be replaced safely and is refused, so the operator edits it by hand.

/// What setting the value did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    /// The new file.
    pub text: String,
    /// The lines replaced (empty when the assignment was added).
    pub replaced: Vec<String>,
    /// The line written.
    pub line: String,
}

/// The top-level assignment lines to `name`, as (line index, right-hand side).
fn assignments<'a>(text: &'a str, name: &str) -> Vec<(usize, &'a str)> {
    text.split_inclusive('\n')
        .enumerate()
        .filter_map(|(i, line)| {
            let rest = line.strip_prefix(name)?;
            let rest = rest.trim_start_matches([' ', '\t']);
            let rhs = rest.strip_prefix('=')?;
            // `workers == 3` is a comparison, not an assignment.
            if rhs.starts_with('=') {
                return None;
            }
            Some((i, rhs.trim_end_matches(['\n', '\r'])))
        })
        .collect()
}

/// The integer the last top-level assignment to `name` sets, if it is a plain integer literal.
pub fn int_value(text: &str, name: &str) -> Option<u32> {
    let (_, rhs) = assignments(text, name).pop()?;
    let value = rhs.split('#').next()?.trim();
    value.parse().ok()
}

/// Sets `name = value` (with `comment` after it): every top-level one-line assignment to `name`
/// is replaced; without one, the line is appended. Err names the line that cannot be rewritten.
pub fn set(text: &str, name: &str, value: u32, comment: &str) -> Result<Rewrite, String> {
    let line = format!("{name} = {value}  # {comment}");
    let found = assignments(text, name);
    for (i, rhs) in &found {
        if continues(rhs) {
            return Err(format!(
                "line {}: `{name}` is set by an expression over several lines",
                i + 1
            ));
        }
    }
    if found.is_empty() {
        let mut out = text.to_string();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&line);
        out.push('\n');
        return Ok(Rewrite {
            text: out,
            replaced: Vec::new(),
            line,
        });
    }
    let mut out = String::with_capacity(text.len() + line.len());
    let mut replaced = Vec::new();
    for (i, original) in text.split_inclusive('\n').enumerate() {
        if found.iter().any(|(j, _)| *j == i) {
            replaced.push(original.trim_end_matches(['\n', '\r']).to_string());
            out.push_str(&line);
            // Keep the file's own line ending (and a missing one on the last line).
            if original.ends_with("\r\n") {
                out.push_str("\r\n");
            } else if original.ends_with('\n') {
                out.push('\n');
            }
        } else {
            out.push_str(original);
        }
    }
    Ok(Rewrite {
        text: out,
        replaced,
        line,
    })
}

/// Whether a right-hand side goes on to the next line: a trailing backslash, or more brackets
/// opened than closed (strings and comments are not parsed: a bracket inside one errs on the
/// side of refusing).
fn continues(rhs: &str) -> bool {
    let code = rhs.split('#').next().unwrap_or("").trim_end();
    if code.ends_with('\\') {
        return true;
    }
    let open = code.matches(['(', '[', '{']).count();
    let close = code.matches([')', ']', '}']).count();
    open > close
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUNICORN: &str = "import multiprocessing\n\nbind = \"127.0.0.1:8000\"\nworkers = multiprocessing.cpu_count() * 2 + 1\nthreads = 2\n\ndef post_fork(server, worker):\n    workers = 3  # a local, not the setting\n";

    #[test]
    fn replaces_the_top_level_line_only_and_keeps_the_rest() {
        let r = set(GUNICORN, "workers", 9, "tuned").expect("should succeed");
        assert_eq!(
            r.text,
            GUNICORN.replace(
                "workers = multiprocessing.cpu_count() * 2 + 1\n",
                "workers = 9  # tuned\n"
            )
        );
        assert_eq!(
            r.replaced,
            vec!["workers = multiprocessing.cpu_count() * 2 + 1"]
        );
        // A second run finds its own line and changes only the number.
        let again = set(&r.text, "workers", 5, "tuned").expect("should succeed");
        assert_eq!(again.text, r.text.replace("workers = 9", "workers = 5"));
        assert_eq!(int_value(&again.text, "workers"), Some(5));
    }

    #[test]
    fn adds_a_missing_assignment_at_the_end() {
        let r = set("bind = \"0.0.0.0:80\"", "workers", 3, "tuned").expect("should succeed");
        assert_eq!(r.text, "bind = \"0.0.0.0:80\"\nworkers = 3  # tuned\n");
        assert!(r.replaced.is_empty());
        assert_eq!(
            set("", "workers", 3, "x").expect("should succeed").text,
            "workers = 3  # x\n"
        );
    }

    #[test]
    fn similar_names_comparisons_and_crlf_are_left_alone() {
        let text = "workers_extra = 4\r\nworkers=2\r\nif workers == 2: pass\r\n";
        let r = set(text, "workers", 7, "t").expect("should succeed");
        assert_eq!(
            r.text,
            "workers_extra = 4\r\nworkers = 7  # t\r\nif workers == 2: pass\r\n"
        );
    }

    #[test]
    fn a_multi_line_expression_is_refused_naming_the_line() {
        let text = "bind = 'x'\nworkers = max(\n    2,\n    4)\n";
        let err = set(text, "workers", 3, "t").expect_err("should fail");
        assert_eq!(
            err,
            "line 2: `workers` is set by an expression over several lines"
        );
        assert!(set("workers = 1 + \\\n 2\n", "workers", 3, "t").is_err());
    }

    #[test]
    fn reads_plain_integer_values_only() {
        assert_eq!(int_value(GUNICORN, "threads"), Some(2));
        assert_eq!(int_value(GUNICORN, "workers"), None);
        assert_eq!(
            int_value("worker_concurrency = 8  # x\n", "worker_concurrency"),
            Some(8)
        );
        assert_eq!(int_value("", "threads"), None);
    }
}
