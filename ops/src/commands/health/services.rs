//! The service checks of `health`: the database (connect, `select 1`, connections in use) and
//! the bus (connect, round trip, JetStream, the alert forwarder's backlog).

use std::time::{Duration, Instant};

use ransomeye_kernel::config;
use sqlx::Connection;

use super::{Check, Status};
use crate::db;
use crate::utils::{elapsed_ms, redact_url};

/// Connections in use above these fractions of `max_connections`.
const CONNECTIONS_WARNING: f64 = 0.80;
const CONNECTIONS_CRITICAL: f64 = 0.95;

pub(super) async fn check_database(url: &str, timeout: Duration) -> Check {
    let mut check = Check::new("database");
    let connect = Instant::now();
    let mut conn = match sqlx::postgres::PgConnection::connect(url).await {
        Ok(c) => c,
        Err(e) => {
            check.degrade(
                Status::Critical,
                format!("cannot connect to {}: {}", redact_url(url), db::message(&e)),
            );
            return check;
        }
    };
    check
        .metrics
        .insert("connect_ms".into(), elapsed_ms(connect));
    let ping = Instant::now();
    if let Err(e) = sqlx::query("select 1").execute(&mut conn).await {
        check.degrade(
            Status::Critical,
            format!("select 1 failed: {}", db::message(&e)),
        );
        return check;
    }
    let select_ms = elapsed_ms(ping);
    check.metrics.insert("select_1_ms".into(), select_ms);
    let stats: Result<(String, i64, i64), sqlx::Error> = sqlx::query_as(
        "select current_setting('server_version'), \
                (select count(*) from pg_stat_activity)::int8, \
                current_setting('max_connections')::int8",
    )
    .fetch_one(&mut conn)
    .await;
    match stats {
        Ok((version, used, max)) => {
            let ratio = if max > 0 {
                used as f64 / max as f64
            } else {
                0.0
            };
            check.metrics.insert("connections_used".into(), used as f64);
            check.metrics.insert("connections_max".into(), max as f64);
            check.note(format!(
                "PostgreSQL {version}, select 1 in {select_ms:.1} ms, {used}/{max} connections"
            ));
            if ratio >= CONNECTIONS_CRITICAL {
                check.degrade(
                    Status::Critical,
                    format!("{:.0} % of max_connections in use", ratio * 100.0),
                );
            } else if ratio >= CONNECTIONS_WARNING {
                check.degrade(
                    Status::Warning,
                    format!("{:.0} % of max_connections in use", ratio * 100.0),
                );
            }
        }
        Err(e) => check.degrade(
            Status::Unknown,
            format!("cannot read server statistics: {}", db::message(&e)),
        ),
    }
    // Closing politely must not extend the check past its deadline.
    let _ = tokio::time::timeout(timeout / 10, conn.close()).await;
    check
}

pub(super) async fn check_bus(bus: &config::Bus, timeout: Duration) -> Check {
    let mut check = Check::new("bus");
    let connect = Instant::now();
    let client = match crate::bus::connect(bus, timeout).await {
        Ok(c) => c,
        Err(e) => {
            let hint = e.hint.map(|h| format!(" ({h})")).unwrap_or_default();
            check.degrade(Status::Critical, format!("{}{hint}", e.what));
            return check;
        }
    };
    // The connection includes one round trip; a second one measures it alone.
    check
        .metrics
        .insert("connect_ms".into(), elapsed_ms(connect));
    let rtt = Instant::now();
    if let Err(e) = client.flush().await {
        check.degrade(Status::Critical, format!("no round trip: {e}"));
        return check;
    }
    let rtt_ms = elapsed_ms(rtt);
    check.metrics.insert("rtt_ms".into(), rtt_ms);
    let info = client.server_info();
    check.note(format!(
        "nats-server {}, round trip {rtt_ms:.2} ms",
        info.version
    ));
    // A plain request: async-nats' typed account-info call cannot parse nats-server 2.9's reply.
    match client.request("$JS.API.INFO", "".into()).await {
        Ok(reply) => match serde_json::from_slice::<serde_json::Value>(&reply.payload) {
            Ok(v) if v.get("error").is_none() => {
                check.metrics.insert("jetstream".into(), 1.0);
                check.note("JetStream available");
                alert_backlog(&mut check, client.clone(), &bus.url).await;
            }
            Ok(v) => {
                check.metrics.insert("jetstream".into(), 0.0);
                check.degrade(
                    Status::Warning,
                    format!("JetStream unavailable: {}", v["error"]),
                );
            }
            Err(_) => check.degrade(Status::Warning, "JetStream reply unreadable"),
        },
        Err(e) => {
            check.metrics.insert("jetstream".into(), 0.0);
            check.degrade(
                Status::Warning,
                format!("JetStream unavailable (no reply to $JS.API.INFO: {e})"),
            );
        }
    }
    check
}

/// Alerts waiting this long for `alerts forward` make the bus check a warning.
const ALERT_AGE_WARNING: Duration = Duration::from_secs(300);
/// … and this long, critical: the SOC has not seen them for an hour.
const ALERT_AGE_CRITICAL: Duration = Duration::from_secs(3600);

/// The alert forwarder's backlog (docs/ALERTS.md): pending alerts and the age of the oldest,
/// once `alerts forward` has created its consumer. The age is this host's clock against the
/// time the bus stored the alert.
async fn alert_backlog(check: &mut Check, client: async_nats::Client, url: &str) {
    let bus = crate::jetstream::Bus::from_client(client, url);
    let backlog = match crate::alerts::stream::backlog(&bus).await {
        Ok(Some(b)) => b,
        Ok(None) => return,
        Err(_) => {
            check.note("alert backlog unknown");
            return;
        }
    };
    check
        .metrics
        .insert("alerts_pending".into(), backlog.pending as f64);
    let age = backlog
        .oldest_stored
        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    check
        .metrics
        .insert("alerts_oldest_pending_s".into(), age.as_secs_f64());
    let what = format!(
        "{} alert(s) waiting for `alerts forward`, the oldest for {} s",
        backlog.pending,
        age.as_secs()
    );
    if backlog.pending > 0 && age >= ALERT_AGE_CRITICAL {
        check.degrade(Status::Critical, what);
    } else if backlog.pending > 0 && age >= ALERT_AGE_WARNING {
        check.degrade(Status::Warning, what);
    } else {
        check.note(what);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("nats://h:4222"), "nats://h:4222");
    }
}
