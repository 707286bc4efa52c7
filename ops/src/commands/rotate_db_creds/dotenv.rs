//! `.env` files as systemd's `EnvironmentFile=` and the dotenv libraries read them, parsed only
//! as far as a rotation needs, and rewritten changing nothing but the values asked for.
//!
//! A line is blank, a `#` comment, or `[export ]KEY=VALUE` where VALUE is unquoted (up to a
//! ` #` comment or the end of the line), `"double-quoted"` or `'single-quoted'`, on one line.
//! Anything else (a multi-line value, a line without `=`) is refused, naming the line, rather
//! than guessed at. A rewrite replaces the characters inside a value's quotes and keeps every
//! other byte: comments, order, quoting, spacing and line endings.

use std::ops::Range;

/// One parsed file: its text and where each assignment's value is.
#[derive(Debug, Clone)]
pub struct EnvText {
    text: String,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    key: String,
    /// Byte range of the value in `text`, inside the quotes if any.
    value: Range<usize>,
    quote: Option<char>,
}

impl EnvText {
    /// Parses `text`; the error names the 1-based line and what is wrong with it.
    pub fn parse(text: &str) -> Result<EnvText, String> {
        let mut entries = Vec::new();
        let mut offset = 0;
        for (index, raw) in text.split_inclusive('\n').enumerate() {
            let line_no = index + 1;
            let start = offset;
            offset += raw.len();
            let line = raw.trim_end_matches(['\n', '\r']);
            let body = line.trim_start();
            if body.is_empty() || body.starts_with('#') {
                continue;
            }
            let mut at = start + (line.len() - body.len());
            let body = match body.strip_prefix("export ") {
                Some(rest) => {
                    let rest_trimmed = rest.trim_start();
                    at += body.len() - rest_trimmed.len();
                    rest_trimmed
                }
                None => body,
            };
            let Some((key, after)) = body.split_once('=') else {
                return Err(format!("line {line_no}: not KEY=VALUE"));
            };
            let key = key.trim_end();
            let key_ok = key
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !key_ok {
                return Err(format!("line {line_no}: `{key}` is not a variable name"));
            }
            let value_text = after.trim_start();
            let value_at = at + (body.len() - value_text.len());
            let (value, quote) = match value_text.chars().next() {
                Some(q @ ('"' | '\'')) => {
                    let inner = &value_text[1..];
                    let close = find_close(inner, q).ok_or_else(|| {
                        format!("line {line_no}: {key}'s quoted value does not end on its line (multi-line values are not supported)")
                    })?;
                    let rest = inner[close + 1..].trim_start();
                    if !(rest.is_empty() || rest.starts_with('#')) {
                        return Err(format!("line {line_no}: text after {key}'s closing quote"));
                    }
                    (value_at + 1..value_at + 1 + close, Some(q))
                }
                _ => {
                    let end = value_text
                        .find(" #")
                        .or_else(|| value_text.find("\t#"))
                        .unwrap_or(value_text.len());
                    let len = value_text[..end].trim_end().len();
                    (value_at..value_at + len, None)
                }
            };
            if entries.iter().any(|e: &Entry| e.key == key) {
                return Err(format!("line {line_no}: {key} is set a second time"));
            }
            entries.push(Entry {
                key: key.to_string(),
                value,
                quote,
            });
        }
        Ok(EnvText {
            text: text.to_string(),
            entries,
        })
    }

    /// The value of `key`, as written between its quotes.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entry(key).map(|e| &self.text[e.value.clone()])
    }

    /// Replaces the value of `key` (which must be there) with `value`, which must be
    /// representable in the value's quoting without escapes; `Err` says why not.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let Some(index) = self.entries.iter().position(|e| e.key == key) else {
            return Err(format!("{key} is not in the file"));
        };
        let entry = self.entries[index].clone();
        let bad = |c: char| match entry.quote {
            Some('\'') => c == '\'' || c == '\n',
            Some(_) => matches!(c, '"' | '\\' | '$' | '`' | '\n'),
            None => c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | '$' | '`' | '#'),
        };
        if value.chars().any(bad) {
            return Err(format!(
                "the new value of {key} would need escaping in its quoting"
            ));
        }
        let old_len = entry.value.len();
        self.text.replace_range(entry.value.clone(), value);
        let shift = value.len() as isize - old_len as isize;
        self.entries[index].value = entry.value.start..entry.value.start + value.len();
        for later in self
            .entries
            .iter_mut()
            .filter(|e| e.value.start > entry.value.start)
        {
            later.value = (later.value.start as isize + shift) as usize
                ..(later.value.end as isize + shift) as usize;
        }
        Ok(())
    }

    /// The whole text.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }
}

/// The closing quote in `inner` (the text after the opening one): in double quotes a
/// backslash escapes the next character; single quotes have no escapes.
fn find_close(inner: &str, quote: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in inner.char_indices() {
        match c {
            '\n' => return None,
            '\\' if quote == '"' && !escaped => escaped = true,
            c if c == quote && !escaped => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

/// Whether a value is a PostgreSQL connection URL.
pub fn is_url(value: &str) -> bool {
    value.starts_with("postgres://") || value.starts_with("postgresql://")
}

/// Where the user-info part of a URL is: (start, end) of `user[:password]`, without the `@`,
/// or the point after `://` when there is none (empty range).
fn userinfo(url: &str) -> Option<Range<usize>> {
    let start = url.find("://")? + 3;
    let rest = &url[start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    Some(match authority.rfind('@') {
        Some(at) => start..start + at,
        None => start..start,
    })
}

/// The user a URL names (percent-decoded), if it names one in its user-info.
pub fn url_user(url: &str) -> Option<String> {
    let range = userinfo(url)?;
    let info = &url[range];
    let user = info.split(':').next().unwrap_or("");
    (!user.is_empty()).then(|| {
        percent_encoding::percent_decode_str(user)
            .decode_utf8_lossy()
            .into_owned()
    })
}

/// `url` with `user:password` as its user-info: the user replaced when `user` is given (else
/// kept, or `default_user` when the URL names none), the password set. Everything else is kept
/// byte for byte. `None` when it is not a URL. The password and user must need no
/// percent-encoding (ours are URL-safe base64 and plain role names).
pub fn url_with_login(
    url: &str,
    user: Option<&str>,
    default_user: &str,
    password: &str,
) -> Option<String> {
    let range = userinfo(url)?;
    let info = &url[range.clone()];
    let kept = info.split(':').next().unwrap_or("");
    let user = match user {
        Some(u) => u,
        None if kept.is_empty() => default_user,
        None => kept,
    };
    let login = if range.is_empty() {
        format!("{user}:{password}@")
    } else {
        format!("{user}:{password}")
    };
    let mut out = url.to_string();
    out.replace_range(range, &login);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# core service\n\
        export DATABASE_URL=\"postgres://core_a:old@db:5432/ransomeye?sslmode=require\" # main\n\
        \n\
        DB_PASSWORD='old'\n\
        OTHER=keep # me\r\n\
        LAST=x";

    #[test]
    fn values_are_read_inside_their_quotes() {
        let env = EnvText::parse(FILE).expect("parses");
        assert_eq!(
            env.get("DATABASE_URL"),
            Some("postgres://core_a:old@db:5432/ransomeye?sslmode=require")
        );
        assert_eq!(env.get("DB_PASSWORD"), Some("old"));
        assert_eq!(env.get("OTHER"), Some("keep"));
        assert_eq!(env.get("LAST"), Some("x"));
        assert_eq!(env.get("MISSING"), None);
    }

    #[test]
    fn a_rewrite_changes_only_the_values_asked_for() {
        let mut env = EnvText::parse(FILE).expect("parses");
        let url = url_with_login(
            env.get("DATABASE_URL").expect("url"),
            Some("core_b"),
            "x",
            "N3w-_pw",
        )
        .expect("a url");
        env.set("DATABASE_URL", &url).expect("set");
        env.set("DB_PASSWORD", "N3w-_pw").expect("set");
        env.set("LAST", "yz").expect("set");
        assert_eq!(
            env.text(),
            "# core service\n\
             export DATABASE_URL=\"postgres://core_b:N3w-_pw@db:5432/ransomeye?sslmode=require\" # main\n\
             \n\
             DB_PASSWORD='N3w-_pw'\n\
             OTHER=keep # me\r\n\
             LAST=yz"
        );
        let again = EnvText::parse(env.text()).expect("still parses");
        assert_eq!(again.get("DB_PASSWORD"), Some("N3w-_pw"));
    }

    #[test]
    fn what_cannot_be_rewritten_safely_is_refused_naming_the_line() {
        assert!(EnvText::parse("A=\"open\nB=1\n")
            .expect_err("multi-line")
            .contains("line 1"));
        assert!(EnvText::parse("# c\njust words\n")
            .expect_err("no =")
            .contains("line 2"));
        assert!(EnvText::parse("A=1\nA=2\n")
            .expect_err("twice")
            .contains("line 2"));
        assert!(EnvText::parse("A='x' y\n")
            .expect_err("trailing")
            .contains("line 1"));
        let mut env = EnvText::parse("A=plain\n").expect("parses");
        assert!(env.set("A", "has space").is_err());
    }

    #[test]
    fn urls_get_their_login_and_keep_the_rest() {
        assert_eq!(
            url_user("postgres://core%5Fa:pw@h/db"),
            Some("core_a".into())
        );
        assert_eq!(url_user("postgres://h/db"), None);
        assert_eq!(
            url_with_login("postgres://u:p@h:1/db?x=1#f", None, "d", "NEW").as_deref(),
            Some("postgres://u:NEW@h:1/db?x=1#f")
        );
        assert_eq!(
            url_with_login("postgresql://h/db", None, "role", "NEW").as_deref(),
            Some("postgresql://role:NEW@h/db")
        );
        assert_eq!(
            url_with_login("postgres://u@h/db?q=a@b", Some("v"), "d", "NEW").as_deref(),
            Some("postgres://v:NEW@h/db?q=a@b")
        );
    }
}
