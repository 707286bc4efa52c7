//! Connection URLs (PostgreSQL and NATS): the one parser, the one redaction, and the password
//! kept apart from everything that can be shown or passed on a command line.
//!
//! A PostgreSQL URL can carry a password as `user:password@host` (percent-encoded) or as a
//! `password=` query parameter. [`PgUrl::parse`] takes it out of both places with a real URL
//! parser, so what remains ([`PgUrl::without_password`]) is safe for logs, errors, JSON and
//! child processes' argv, and the password itself ([`PgUrl::password`]) only ever travels in
//! memory or in a child's environment (`PGPASSWORD`). A password from `PGPASSWORD` or a
//! `.pgpass` file is never read here: the driver and libpq find it themselves.

use std::fmt;

use percent_encoding::percent_decode_str;
use url::Url;
use zeroize::Zeroizing;

/// Shown where a password was.
const REDACTED: &str = "***";

/// A PostgreSQL connection URL split into the part that may be shown and the password.
#[derive(Clone)]
pub struct PgUrl {
    /// The URL without any password (neither in the user info nor as a parameter).
    shown: Url,
    /// The password, percent-decoded.
    password: Option<Zeroizing<String>>,
}

/// Why a connection URL was refused. Never contains the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError {
    /// What is wrong, e.g. `relative URL without a base` or `scheme must be postgres://`.
    pub reason: String,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for UrlError {}

impl PgUrl {
    /// Parses a `postgres://` or `postgresql://` URL and takes its password out.
    pub fn parse(text: &str) -> Result<PgUrl, UrlError> {
        let mut url = Url::parse(text).map_err(|e| UrlError {
            reason: e.to_string(),
        })?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(UrlError {
                reason: format!(
                    "the scheme is `{}://`; a PostgreSQL URL starts with postgres:// or postgresql://",
                    url.scheme()
                ),
            });
        }
        let mut password = url
            .password()
            .map(|p| Zeroizing::new(percent_decode_str(p).decode_utf8_lossy().into_owned()));
        if password.is_some() {
            url.set_password(None).map_err(|()| UrlError {
                reason: "the URL has a password but no host".into(),
            })?;
        }
        if let Some(query) = url.query() {
            let (kept, value) = split_query_password(query);
            if let Some(value) = value {
                // A parameter wins over the user info, as the later setting does in libpq.
                password = Some(value);
                url.set_query(kept.as_deref());
            }
        }
        Ok(PgUrl {
            shown: url,
            password,
        })
    }

    /// The URL without its password: safe to log, print and pass on a command line.
    pub fn without_password(&self) -> &str {
        self.shown.as_str()
    }

    /// The password, if the URL carried one.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref().map(String::as_str)
    }

    /// The same server and credentials, another database (a plain identifier).
    pub fn with_database(&self, database: &str) -> PgUrl {
        let mut other = self.clone();
        other.shown.set_path(&format!("/{database}"));
        other
    }

    /// The URL with the parameter `key=value` added, unless it already sets `key` (the
    /// operator's setting wins). `key` and `value` are plain (letters, digits, `_`).
    pub fn with_default_param(&self, key: &str, value: &str) -> PgUrl {
        let present = self.shown.query().is_some_and(|q| {
            q.split('&').any(|part| {
                let k = part.split_once('=').map_or(part, |(k, _)| k);
                percent_decode_str(k).decode_utf8_lossy() == key
            })
        });
        let mut other = self.clone();
        if !present {
            let query = match other.shown.query() {
                Some(q) if !q.is_empty() => format!("{q}&{key}={value}"),
                _ => format!("{key}={value}"),
            };
            other.shown.set_query(Some(&query));
        }
        other
    }

    /// The database the URL names (its path), if any.
    pub fn database(&self) -> Option<String> {
        let path = self.shown.path().trim_start_matches('/');
        (!path.is_empty()).then(|| percent_decode_str(path).decode_utf8_lossy().into_owned())
    }

    /// The URL as shown, with `***` where the password was.
    pub fn redacted(&self) -> String {
        match &self.password {
            None => self.shown.to_string(),
            Some(_) if !self.shown.username().is_empty() => {
                let mut shown = self.shown.clone();
                // Cannot fail: the URL has a host, since it has a user name.
                let _ = shown.set_password(Some(REDACTED));
                shown.to_string()
            }
            Some(_) => {
                let mut shown = self.shown.clone();
                let query = match shown.query() {
                    Some(q) => format!("{q}&password={REDACTED}"),
                    None => format!("password={REDACTED}"),
                };
                shown.set_query(Some(&query));
                shown.to_string()
            }
        }
    }
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Any connection URL (`postgres://`, `nats://`, `tls://`) with every password replaced by
/// `***`: the user info's and a `password=` parameter's. A text that does not parse as a URL is
/// not shown at all, since it could be a password typed in the wrong place.
pub fn redact_url(text: &str) -> String {
    let Ok(mut url) = Url::parse(text) else {
        return "<not a valid URL>".to_string();
    };
    if url.password().is_some() {
        let _ = url.set_password(Some(REDACTED));
    }
    if let Some(query) = url.query() {
        let redacted = query
            .split('&')
            .map(|part| {
                if is_password_param(part) {
                    format!("password={REDACTED}")
                } else {
                    part.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("&");
        url.set_query(Some(&redacted));
    }
    url.to_string()
}

/// Whether a raw `key=value` query segment sets the password (the key may be percent-encoded).
fn is_password_param(part: &str) -> bool {
    let key = part.split_once('=').map_or(part, |(k, _)| k);
    percent_decode_str(key).decode_utf8_lossy() == "password"
}

/// Splits the `password` parameters out of a raw query, keeping the other segments exactly as
/// written (libpq decodes `%XX` but not `+`, so a re-encoding could change their meaning).
/// Returns the remaining query (`None` when empty) and the last password, decoded.
fn split_query_password(query: &str) -> (Option<String>, Option<Zeroizing<String>>) {
    let mut password = None;
    let mut kept = Vec::new();
    for part in query.split('&') {
        if is_password_param(part) {
            let value = part.split_once('=').map_or("", |(_, v)| v);
            password = Some(Zeroizing::new(
                percent_decode_str(value).decode_utf8_lossy().into_owned(),
            ));
        } else {
            kept.push(part);
        }
    }
    let kept = (!kept.is_empty()).then(|| kept.join("&"));
    (kept, password)
}

/// `url` with its database name replaced by `database` (a plain identifier), keeping everything
/// else (password included). Unparsable input comes back unchanged, for the caller's parser to
/// reject with its own message.
pub fn with_database(url: &str, database: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            parsed.set_path(&format!("/{database}"));
            parsed.to_string()
        }
        Err(_) => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_leaves_the_user_info_decoded() {
        let url = PgUrl::parse("postgres://u:s%40cr%3At@db:5432/x?sslmode=require").expect("url");
        assert_eq!(url.password(), Some("s@cr:t"));
        assert_eq!(
            url.without_password(),
            "postgres://u@db:5432/x?sslmode=require"
        );
        assert_eq!(url.redacted(), "postgres://u:***@db:5432/x?sslmode=require");
        assert!(!format!("{url:?}").contains("cr"));
    }

    #[test]
    fn the_password_parameter_leaves_the_query() {
        let url =
            PgUrl::parse("postgresql://u@db/x?sslmode=require&password=p%26w&application_name=a")
                .expect("url");
        assert_eq!(url.password(), Some("p&w"));
        assert_eq!(
            url.without_password(),
            "postgresql://u@db/x?sslmode=require&application_name=a"
        );
        assert!(!url.redacted().contains("p%26w"));
        let only = PgUrl::parse("postgres://db/x?password=secret").expect("url");
        assert_eq!(only.without_password(), "postgres://db/x");
        assert_eq!(only.password(), Some("secret"));
        assert_eq!(only.redacted(), "postgres://db/x?password=***");
    }

    #[test]
    fn urls_without_password_are_unchanged() {
        for text in [
            "postgres://u@db/x",
            "postgresql://db:5433/x",
            "postgres:///x?host=/var/run/postgresql",
        ] {
            let url = PgUrl::parse(text).expect("url");
            assert_eq!(url.without_password(), text);
            assert_eq!(url.password(), None);
        }
    }

    #[test]
    fn other_schemes_and_garbage_are_refused_without_echoing() {
        let err = PgUrl::parse("mysql://u:hunter2@h/x").expect_err("refused");
        assert!(err.reason.contains("mysql://"), "{err}");
        assert!(!err.reason.contains("hunter2"), "{err}");
        let err = PgUrl::parse("hunter2").expect_err("refused");
        assert!(!err.reason.contains("hunter2"), "{err}");
    }

    #[test]
    fn databases_are_swapped_keeping_the_rest() {
        let url = PgUrl::parse("postgres://u:p@h:5432/prod?sslmode=require").expect("url");
        let drill = url.with_database("drill");
        assert_eq!(
            drill.without_password(),
            "postgres://u@h:5432/drill?sslmode=require"
        );
        assert_eq!(drill.password(), Some("p"));
        assert_eq!(drill.database().as_deref(), Some("drill"));
        assert_eq!(
            with_database("postgres://u:p@h:5432/prod?sslmode=require", "drill"),
            "postgres://u:p@h:5432/drill?sslmode=require"
        );
        assert_eq!(with_database("postgres://h", "drill"), "postgres://h/drill");
        assert_eq!(
            with_database("postgres://h/", "drill"),
            "postgres://h/drill"
        );
    }

    #[test]
    fn default_parameters_never_override_the_operators() {
        let url = PgUrl::parse("postgres://u:p@h/x?keepalives_idle=5").expect("url");
        let url = url
            .with_default_param("keepalives_idle", "60")
            .with_default_param("keepalives", "1");
        assert_eq!(
            url.without_password(),
            "postgres://u@h/x?keepalives_idle=5&keepalives=1"
        );
        let bare = PgUrl::parse("postgres://h/x").expect("url");
        assert_eq!(
            bare.with_default_param("keepalives", "1")
                .without_password(),
            "postgres://h/x?keepalives=1"
        );
    }

    #[test]
    fn redaction_covers_every_spelling() {
        assert_eq!(
            redact_url("postgres://ops:s3cret@db:5432/ransomeye"),
            "postgres://ops:***@db:5432/ransomeye"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1:5432/x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(redact_url("nats://a:b@h:4222"), "nats://a:***@h:4222");
        assert_eq!(redact_url("nats://h:4222"), "nats://h:4222");
        assert_eq!(
            redact_url("postgres://db/x?user=a&password=s%20t&sslmode=require"),
            "postgres://db/x?user=a&password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://db/x?user=a@b"),
            "postgres://db/x?user=a@b"
        );
        assert_eq!(redact_url("s3cret"), "<not a valid URL>");
    }
}
