//! `alerts send`: check the arguments → build the alert document → connect to the bus → make
//! sure the stream exists → publish and wait for JetStream to store it → report its id.
//!
//! Nothing is published unless every argument is valid; a publication JetStream did not confirm
//! fails (69), and sending again with the same `--id` stores the alert once.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use serde::Serialize;
use serde_json::{Map, Value};

use super::super::{say, Context};
use crate::alerts::document::{new_id, Alert, Severity};
use crate::alerts::{escape_invalid_utf8, stream};
use crate::cli::AlertsSendArgs;
use crate::error::{Exit, OpsError};
use crate::jetstream::Bus;
use crate::syslog::format::Timestamp;
use crate::utils::{print_json, runtime};

/// What `--json` prints.
#[derive(Serialize)]
struct Report {
    id: String,
    subject: String,
    stream: &'static str,
    seq: u64,
    duplicate: bool,
}

/// Runs `alerts send`.
pub fn run(ctx: &Context, args: &AlertsSendArgs) -> Result<(), OpsError> {
    let config = ctx.config()?;
    let (alert, severity) = build(args)?;
    let subject = format!("alerts.{}", severity.name);
    let payload = serde_json::to_vec(&alert)
        .map_err(|e| OpsError::new(Exit::Software, format!("cannot encode the alert: {e}")))?;
    let stored = runtime()?.block_on(async {
        let bus = Bus::connect(&config.bus).await?;
        stream::ensure_stream(&bus).await?;
        stream::publish(&bus, &subject, &alert.id, payload).await
    })?;
    if ctx.json {
        print_json(&Report {
            id: alert.id,
            subject,
            stream: stream::STREAM,
            seq: stored.seq,
            duplicate: stored.duplicate,
        })
    } else {
        let again = if stored.duplicate {
            " (already stored: same id)"
        } else {
            ""
        };
        say!(
            ctx,
            "alert {} stored on {subject} as {} #{}{again}",
            alert.id,
            stream::STREAM,
            stored.seq
        );
        Ok(())
    }
}

fn usage(what: impl Into<String>) -> OpsError {
    OpsError::new(Exit::Usage, what)
}

/// The alert the arguments describe, and its severity; a usage error (64) naming the argument
/// when one is not valid.
fn build(args: &AlertsSendArgs) -> Result<(Alert, Severity), OpsError> {
    let severity = Severity::parse(&args.severity).ok_or_else(|| {
        usage(format!("--severity {:?} is not a severity", args.severity))
            .hint(format!("use one of: {}", Severity::names()))
    })?;
    if args.title.trim().is_empty() {
        return Err(usage("--title is empty"));
    }
    let id = match &args.id {
        Some(id) if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) => {
            return Err(usage(
                "--id must be 1 to 256 bytes without control characters",
            ))
        }
        Some(id) => id.clone(),
        None => new_id()
            .map_err(|_| OpsError::new(Exit::Software, "the system random generator failed"))?,
    };
    let raised_at = match &args.raised_at {
        Some(t) => {
            if Timestamp::parse_rfc3339(t).is_none() {
                return Err(usage(format!(
                    "--raised-at {t:?} is not an RFC 3339 time (e.g. 2026-12-01T21:44:13.5Z)"
                )));
            }
            t.clone()
        }
        None => humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
    };
    let host = match &args.host {
        Some(h) => h.clone(),
        None => nix::unistd::gethostname()
            .map(|h| escape_invalid_utf8(h.as_bytes(), false))
            .unwrap_or_default(),
    };
    Ok((
        Alert {
            id,
            severity: severity.name.to_string(),
            title: args.title.clone(),
            host: (!host.is_empty()).then_some(host),
            source: Some(args.source.clone()),
            raised_at,
            metadata: metadata(&args.meta)?,
            extra: Map::new(),
        },
        severity,
    ))
}

/// `--meta KEY=VALUE` arguments as the metadata map. A value that is not UTF-8 keeps its bytes
/// as `\xNN`; a key must be UTF-8, non-empty and given once.
fn metadata(pairs: &[OsString]) -> Result<BTreeMap<String, Value>, OpsError> {
    let mut out = BTreeMap::new();
    for pair in pairs {
        let bytes = pair.as_bytes();
        let shown = escape_invalid_utf8(bytes, false);
        let Some(eq) = bytes.iter().position(|&b| b == b'=') else {
            return Err(usage(format!("--meta {shown:?} is not KEY=VALUE")));
        };
        let key = std::str::from_utf8(&bytes[..eq])
            .ok()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| usage(format!("--meta {shown:?}: the key must be non-empty UTF-8")))?;
        let value = &bytes[eq + 1..];
        if std::str::from_utf8(value).is_err() {
            tracing::warn!(
                "--meta {key}: the value is not UTF-8; its other bytes are kept as \\xNN"
            );
        }
        let value = Value::String(escape_invalid_utf8(value, false));
        if out.insert(key.to_string(), value).is_some() {
            return Err(usage(format!("--meta {key} is given twice")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn metadata_keeps_invalid_bytes_and_refuses_bad_pairs() {
        let ok = metadata(&[
            OsString::from("a=1=2"),
            OsString::from_vec(b"file=x\xffy".to_vec()),
        ])
        .unwrap_or_default();
        assert_eq!(ok["a"], "1=2");
        assert_eq!(ok["file"], "x\\xFFy");
        for bad in ["novalue", "=v"] {
            assert!(metadata(&[OsString::from(bad)]).is_err(), "{bad}");
        }
        assert!(metadata(&[OsString::from("k=1"), OsString::from("k=2")]).is_err());
    }
}
