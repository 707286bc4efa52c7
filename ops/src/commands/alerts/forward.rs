//! `alerts forward`: settings (options over `[alerts]`) → signal handling → bus → stream and
//! durable consumer → loop { fetch a batch in stream order → render each alert → deliver the
//! batch, reconnecting with capped exponential backoff and jitter while the collector is down →
//! ack on the bus each alert the collector accepted } → report.
//!
//! An alert is acked only after the collector accepted it (RELP: `rsp 200`; TCP/TLS: written and
//! flushed; UDP: sent), so a kill at any moment loses nothing: an alert delivered and not yet
//! acked is delivered again by the next run (a duplicate, never a loss). SIGTERM, SIGINT and
//! SIGHUP are acted on between batches: the batch in flight is finished (or, if the collector is
//! down, handed back to the bus at once with a NAK), what was delivered is acked, exit 0.
//! `--once` stops when nothing is pending; alerts an earlier, killed run held are waited for
//! until JetStream offers them again (at most its ack wait).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::super::{say, Context};
use crate::alerts::document::facility;
use crate::alerts::render::{self, Format, StoredAt, Style};
use crate::alerts::stream::{self, Consumer, Delivered};
use crate::cli::AlertsForwardArgs;
use crate::error::{Exit, OpsError};
use crate::interrupt;
use crate::jetstream::Bus;
use crate::syslog::sink::{tls_config, Sink, Transport};
use crate::utils::{print_json, runtime};

/// Alerts per batch: one bus round trip and one RELP window each.
const BATCH: usize = 128;
/// How long a fetch waits for new alerts before the loop looks at signals again.
const FETCH_WAIT: Duration = Duration::from_secs(1);
/// How long connecting to the collector, a write, or a RELP answer may take.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The first pause after a failure; it doubles up to [`BACKOFF_CAP`].
const BACKOFF_START: Duration = Duration::from_millis(200);
/// The longest pause between two attempts.
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// With `--once`: how long the collector may stay unreachable before the run gives up (69).
const ONCE_GIVE_UP: Duration = Duration::from_secs(60);
/// How often alerts held while the collector is down get their ack wait extended.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(10);
/// The file systemd-timesyncd creates once the clock is synchronised.
const TIMESYNC_FLAG: &str = "/run/systemd/timesync/synchronized";

/// Where and how to forward.
struct Settings {
    transport: Transport,
    target: String,
    style: Style,
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// What a run did.
#[derive(Debug, Default, Serialize)]
struct Tally {
    /// Alerts the collector accepted (and that were then acked).
    forwarded: u64,
    /// Of those, alerts the bus had delivered before (to a run that died, or a batch sent
    /// again): the collector may have them twice.
    redelivered: u64,
    /// Failed connections or deliveries, each followed by a pause and a new attempt.
    retries: u64,
    /// Stopped by a signal.
    stopped_by: Option<String>,
}

/// What `--json` prints.
#[derive(Serialize)]
struct Report<'a> {
    transport: &'static str,
    target: &'a str,
    #[serde(flatten)]
    tally: &'a Tally,
}

/// Runs `alerts forward`.
pub fn run(ctx: &Context, args: &AlertsForwardArgs) -> Result<(), OpsError> {
    let config = ctx.config()?;
    let settings = settings(args, &config.alerts)?;
    interrupt::install()?;
    let tally = runtime()?.block_on(forward(&config.bus, &settings, args.once))?;
    if ctx.json {
        return print_json(&Report {
            transport: settings.transport.name(),
            target: &settings.target,
            tally: &tally,
        });
    }
    say!(
        ctx,
        "forwarded {} alert(s) to {} over {} ({} delivered before, {} retries){}",
        tally.forwarded,
        settings.target,
        settings.transport.name(),
        tally.redelivered,
        tally.retries,
        tally
            .stopped_by
            .as_deref()
            .map(|s| format!("; stopped by {s}"))
            .unwrap_or_default()
    );
    Ok(())
}

/// The settings: each option, else its `[alerts]` key, else the default.
fn settings(
    args: &AlertsForwardArgs,
    conf: &ransomeye_kernel::config::Alerts,
) -> Result<Settings, OpsError> {
    let config_error = |what: String| {
        OpsError::new(Exit::Config, what).hint("fix [alerts] in the configuration file")
    };
    let transport = match (args.transport, conf.transport.as_deref()) {
        (Some(t), _) => t,
        (None, None) => Transport::Relp,
        (None, Some(name)) => {
            <Transport as clap::ValueEnum>::from_str(name, false).map_err(|_| {
                config_error(format!(
                    "[alerts] transport {name:?}: use relp, tcp, tls or udp"
                ))
            })?
        }
    };
    let format = match (args.format, conf.format.as_deref()) {
        (Some(f), _) => f,
        (None, None) => Format::Rfc5424,
        (None, Some(name)) => <Format as clap::ValueEnum>::from_str(name, false).map_err(|_| {
            config_error(format!("[alerts] format {name:?}: use rfc5424 or rfc3164"))
        })?,
    };
    let facility = match (&args.facility, &conf.facility) {
        (Some(f), _) => facility(f).ok_or_else(|| {
            OpsError::new(
                Exit::Usage,
                format!("--facility {f:?} is not a syslog facility"),
            )
            .hint("use a name such as local0 or auth, or a number 0-23")
        })?,
        (None, Some(f)) => facility(f).ok_or_else(|| {
            config_error(format!("[alerts] facility {f:?} is not a syslog facility"))
        })?,
        (None, None) => 16,
    };
    let target = match (&args.target, &conf.target) {
        (Some(t), _) => t.clone(),
        (None, Some(t)) => t.clone(),
        (None, None) => {
            return Err(OpsError::new(Exit::Usage, "no collector to forward to")
                .hint("give --target HOST:PORT or set [alerts] target"))
        }
    };
    let port_ok = target
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
    if !port_ok {
        return Err(OpsError::new(
            Exit::Usage,
            format!("target {target:?} is not HOST:PORT"),
        ));
    }
    let tls = if transport == Transport::Tls {
        let ca = conf.tls_ca.as_deref().ok_or_else(|| {
            config_error("TLS needs [alerts] tls_ca (the collector's CA, PEM)".into())
        })?;
        let client = match (&conf.tls_cert, &conf.tls_key) {
            (Some(c), Some(k)) => {
                crate::tls_files::check_private_key(k, "[alerts] tls_key")?;
                Some((c.as_path(), k.as_path()))
            }
            (None, None) => None,
            _ => {
                return Err(config_error(
                    "[alerts] tls_cert and tls_key go together".into(),
                ))
            }
        };
        Some(tls_config(ca, client).map_err(config_error)?)
    } else {
        None
    };
    Ok(Settings {
        transport,
        target,
        style: Style {
            facility,
            format,
            clock_synced: std::path::Path::new(TIMESYNC_FLAG).exists(),
        },
        tls,
    })
}

/// The forwarding loop (see the module comment).
async fn forward(
    bus_config: &ransomeye_kernel::config::Bus,
    settings: &Settings,
    once: bool,
) -> Result<Tally, OpsError> {
    let bus = Bus::connect(bus_config).await?;
    stream::ensure_stream(&bus).await?;
    stream::ensure_consumer(&bus).await?;
    let mut consumer = Consumer::open(&bus).await?;
    let mut link = Link::new(settings);
    let mut tally = Tally::default();
    let mut held_elsewhere_since: Option<Instant> = None;
    loop {
        if let Some(s) = interrupt::received() {
            tally.stopped_by = Some(s.to_string());
            break;
        }
        let wait = match (once, held_elsewhere_since) {
            (true, None) => None,
            _ => Some(FETCH_WAIT),
        };
        let batch = consumer.fetch(BATCH, wait).await?;
        if batch.is_empty() {
            if !once {
                continue;
            }
            // Nothing to fetch now; alerts an earlier run took and never acked come back after
            // the ack wait: wait for them, then stop.
            let pending = stream::backlog(&bus).await?.map_or(0, |b| b.pending);
            let since = *held_elsewhere_since.get_or_insert_with(Instant::now);
            if pending == 0 {
                break;
            }
            if since.elapsed() > stream::ACK_WAIT + Duration::from_secs(5) {
                tracing::warn!(
                    "{pending} alert(s) still pending, held by another forwarder: leaving them to it"
                );
                break;
            }
            continue;
        }
        held_elsewhere_since = None;
        let messages: Vec<Vec<u8>> = batch
            .iter()
            .map(|d| {
                let stored = StoredAt {
                    seq: d.stream_seq,
                    ns: d.stored_ns,
                };
                render::render(&d.subject, &d.payload, stored, settings.style)
            })
            .collect();
        link.deliver(&consumer, &batch, &messages, once, &mut tally)
            .await?;
        consumer.settle().await?;
    }
    link.close().await;
    consumer.settle().await?;
    Ok(tally)
}

/// The connection to the collector, made and remade as needed.
struct Link<'a> {
    settings: &'a Settings,
    sink: Option<Sink>,
    backoff: Duration,
}

impl<'a> Link<'a> {
    fn new(settings: &'a Settings) -> Link<'a> {
        Link {
            settings,
            sink: None,
            backoff: BACKOFF_START,
        }
    }

    /// Delivers `messages` (rendered from `batch`), acking each on the bus as the collector
    /// accepts it, until all are delivered. While the collector fails: pauses (backoff with
    /// jitter), keeps the held alerts' ack wait extended, and tries again. A signal stops the
    /// retrying: the undelivered alerts go back to the bus (NAK). With `once`, a collector that
    /// accepted nothing for [`ONCE_GIVE_UP`] ends the run (69).
    async fn deliver(
        &mut self,
        consumer: &Consumer,
        batch: &[Delivered],
        messages: &[Vec<u8>],
        once: bool,
        tally: &mut Tally,
    ) -> Result<(), OpsError> {
        let mut done = 0;
        let mut progress_at = Instant::now();
        let mut kept_alive_at = Instant::now();
        while done < messages.len() {
            let failure = match self.attempt(&messages[done..]).await {
                Ok(n) => {
                    for d in &batch[done..done + n] {
                        consumer.ack(d).await?;
                        tally.forwarded += 1;
                        tally.redelivered += u64::from(d.delivered > 1);
                    }
                    done += n;
                    self.backoff = BACKOFF_START;
                    progress_at = Instant::now();
                    continue;
                }
                Err((n, e)) => {
                    for d in &batch[done..done + n] {
                        consumer.ack(d).await?;
                        tally.forwarded += 1;
                        tally.redelivered += u64::from(d.delivered > 1);
                    }
                    done += n;
                    if n > 0 {
                        progress_at = Instant::now();
                    }
                    e
                }
            };
            if done == messages.len() {
                break;
            }
            tally.retries += 1;
            tracing::warn!(
                "collector {} ({}): {failure}; {} alert(s) of this batch wait on the bus, trying again",
                self.settings.target,
                self.settings.transport.name(),
                messages.len() - done
            );
            if once && progress_at.elapsed() >= ONCE_GIVE_UP {
                give_back(consumer, &batch[done..]).await;
                return Err(OpsError::new(
                    Exit::Unavailable,
                    format!(
                        "collector {} ({}) accepted nothing for {} s: {failure}",
                        self.settings.target,
                        self.settings.transport.name(),
                        ONCE_GIVE_UP.as_secs()
                    ),
                )
                .hint(format!(
                    "{} alert(s) forwarded; the rest wait on the bus, nothing is lost: check the collector and run again",
                    tally.forwarded
                )));
            }
            let pause = jitter(self.backoff);
            self.backoff = (self.backoff * 2).min(BACKOFF_CAP);
            let until = Instant::now() + pause;
            while Instant::now() < until {
                if interrupt::received().is_some() {
                    give_back(consumer, &batch[done..]).await;
                    return Ok(());
                }
                if kept_alive_at.elapsed() >= KEEPALIVE_EVERY {
                    for d in &batch[done..] {
                        consumer.in_progress(d).await?;
                    }
                    kept_alive_at = Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(100).min(until - Instant::now())).await;
            }
        }
        Ok(())
    }

    /// One attempt at delivering `messages`, connecting first if needed: how many the collector
    /// accepted, or how many and why it stopped.
    async fn attempt(&mut self, messages: &[Vec<u8>]) -> Result<usize, (usize, String)> {
        if self.sink.is_none() {
            let s = &self.settings;
            match Sink::connect(s.transport, &s.target, s.tls.as_ref(), IO_TIMEOUT).await {
                Ok(sink) => self.sink = Some(sink),
                Err(e) => return Err((0, format!("cannot connect: {e}"))),
            }
        }
        let Some(sink) = self.sink.as_mut() else {
            return Err((0, "not connected".into()));
        };
        match sink.deliver(messages).await {
            (n, None) => Ok(n),
            (n, Some(e)) => {
                if let Some(sink) = self.sink.take() {
                    sink.close().await;
                }
                Err((n, e.to_string()))
            }
        }
    }

    async fn close(&mut self) {
        if let Some(sink) = self.sink.take() {
            sink.close().await;
        }
    }
}

/// Hands undelivered alerts back to the bus at once (NAK), so that the next run need not wait
/// for their ack wait. Best effort: without it they come back after the ack wait anyway.
async fn give_back(consumer: &Consumer, undelivered: &[Delivered]) {
    for d in undelivered {
        let _ = consumer.nak(d).await;
    }
}

/// A pause between `base / 2` and `base` (full jitter on the upper half), so that forwarders
/// restarted together do not retry in step.
fn jitter(base: Duration) -> Duration {
    let mut b = [0u8; 4];
    let r = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map(|()| u32::from_le_bytes(b))
        .unwrap_or(u32::MAX / 2);
    let half = base / 2;
    half + half.mul_f64(f64::from(r) / f64::from(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_pauses_stay_within_their_bounds() {
        let mut base = BACKOFF_START;
        for _ in 0..20 {
            let p = jitter(base);
            assert!(p >= base / 2 && p <= base, "{p:?} for {base:?}");
            base = (base * 2).min(BACKOFF_CAP);
        }
        assert_eq!(base, BACKOFF_CAP);
    }
}
