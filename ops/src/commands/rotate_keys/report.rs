//! What a rotation run reports: the summary line or JSON report, the dry runs' lists of what a
//! real run would do, and the ack progress bar.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ransomeye_kernel::keys::SigningKey;
use ransomeye_trust::Quorum;
use serde::Serialize;

use super::files::{key_named, load_config};
use super::journal::{Counts, Rotation, Side, State};
use super::{active_agents, collection_left, side, Kind, Session};
use crate::commands::{say, Context};
use crate::error::OpsError;
use crate::trust::{NEXT_KEY, RETIRED_DIR};
use crate::utils::{elapsed_ms, print_json, runtime};

/// What a run did, as reported.
#[derive(Debug, Serialize)]
pub(super) struct Report {
    status: &'static str,
    rotation_id: Option<String>,
    kind: Option<String>,
    from: Option<Side>,
    to: Option<Side>,
    #[serde(flatten)]
    counts: Counts,
    time_to_quorum_ms: Option<f64>,
    publish_to_commit_ms: Option<f64>,
    /// Sequence of the TrustUpdate in the JetStream stream, where offline agents find it.
    update_seq: Option<u64>,
    outcome_published: bool,
    /// What a dry run found that a real run would finish or clean.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    would: Vec<String>,
    journal: PathBuf,
    duration_ms: f64,
}

impl Session {
    /// The report of this run, for `rotation` (the latest, or none).
    pub(super) fn report(&self, status: &'static str, rotation: Option<&Rotation>) -> Report {
        Report {
            status,
            rotation_id: rotation.map(|r| r.rotation_id.clone()),
            kind: rotation.map(|r| r.kind.clone()),
            from: rotation.map(|r| r.from.clone()),
            to: rotation.map(|r| r.to.clone()),
            counts: rotation.map(|r| r.counts.clone()).unwrap_or_default(),
            time_to_quorum_ms: rotation.and_then(|r| r.time_to_quorum_ms),
            publish_to_commit_ms: None,
            update_seq: None,
            outcome_published: rotation.is_some_and(|r| r.outcome_published),
            would: self.would.clone(),
            journal: self.journal.path().to_path_buf(),
            duration_ms: elapsed_ms(self.started),
        }
    }
}

pub(super) fn report_dry_run(
    s: &Session,
    kind: Kind,
    old: &SigningKey,
    active: usize,
    needed: usize,
) -> Result<(), OpsError> {
    let mut report = s.report("dry_run", None);
    report.kind = Some(kind.name().into());
    report.from = Some(side(s.config.trust.version, old));
    report.counts = Counts {
        active,
        needed,
        ..Counts::default()
    };
    print_report(
        s,
        &report,
        &dry_run_text(
            s,
            &format!(
                "dry run: a {} from trust version {} (key {}) would need {needed} of {active} active agents to ack within {} s; keys, configuration, bus and database checked, nothing changed",
                kind.name(),
                s.config.trust.version,
                old.id(),
                s.timeout.as_secs()
            ),
        ),
    )
}

/// `headline`, then in a dry run one line per thing a real run would finish or clean.
pub(super) fn dry_run_text(s: &Session, headline: &str) -> String {
    let mut text = headline.to_string();
    for step in &s.would {
        text.push_str("\n  would ");
        text.push_str(step);
    }
    text
}

/// `--resume --dry-run`: what a resume would do with the unfinished rotation, read from the
/// journal and the keys directory, after checking the database and the bus. Changes nothing.
pub(super) fn report_resume_dry_run(s: &mut Session, rotation: &Rotation) -> Result<(), OpsError> {
    let rt = runtime()?;
    rt.block_on(async {
        let (mut conn, _bus) = s.connect().await?;
        let active = active_agents(&mut conn).await?.len();
        let old = key_named(&s.keys, &rotation.from, &["signing.key"]);
        let staged = key_named(&s.keys, &rotation.to, &[NEXT_KEY]);
        let abort_steps = |s: &mut Session, why: &str| {
            s.would.push(format!("abort it: {why}"));
            s.would.push(format!(
                "publish the TrustAbort (signed by the old key {})",
                rotation.from.key_id
            ));
            s.would.push(format!("remove {NEXT_KEY} and journal the rotation aborted"));
        };
        match rotation.state {
            State::Pending => {
                let left = collection_left(&rotation.update);
                if old.is_none() || staged.is_none() {
                    abort_steps(s, "the staged key or the old key is missing");
                } else if left.is_zero() {
                    abort_steps(s, "its time to collect acks has passed");
                } else {
                    let needed = Quorum::new(rotation.quorum)
                        .map(|q| q.needed(active))
                        .unwrap_or(active);
                    s.would.push(format!(
                        "re-publish the same TrustUpdate and collect acks for {} s more: {needed} of {active} active agents needed (quorum {})",
                        left.as_secs(),
                        rotation.quorum
                    ));
                    s.would.push("then commit, or abort without a quorum".into());
                }
            }
            State::Committing => {
                let on_disk = load_config(&s.config_path).ok();
                if on_disk.is_none_or(|c| c.trust.key_id != rotation.to.key_id) {
                    s.would.push(format!(
                        "write [trust] version {} key {} into the configuration (the commit point)",
                        rotation.to.version, rotation.to.key_id
                    ));
                }
                let retired = format!("{RETIRED_DIR}/{}", rotation.from.key_id);
                if key_named(&s.keys, &rotation.from, &[&retired]).is_none() {
                    s.would.push(format!("copy the old key to {retired}"));
                }
                if key_named(&s.keys, &rotation.to, &["signing.key"]).is_none() {
                    s.would.push(format!("rename {NEXT_KEY} over signing.key"));
                }
                s.would
                    .push("publish the TrustCommit and journal the rotation committed".into());
            }
            State::Aborting => {
                let reason = rotation.reason.as_deref().unwrap_or("interrupted");
                abort_steps(s, reason);
            }
            State::Committed | State::Aborted => {}
        }
        let report = s.report("dry_run", Some(rotation));
        print_report(
            s,
            &report,
            &dry_run_text(
                s,
                &format!(
                    "dry run: {} {} is unfinished (state {}, version {} → {}); nothing changed",
                    rotation.kind,
                    rotation.rotation_id,
                    rotation.state.name(),
                    rotation.from.version,
                    rotation.to.version
                ),
            ),
        )
    })
}

/// Reports the latest rotation as committed; `published` (milliseconds from publishing to the
/// commit, and the update's stream sequence) when this run published the update.
pub(super) fn report_committed(s: &Session, published: Option<(f64, u64)>) -> Result<(), OpsError> {
    let Some(r) = s.journal.latest() else {
        return Ok(());
    };
    let mut report = s.report("committed", Some(r));
    report.publish_to_commit_ms = published.map(|p| p.0);
    report.update_seq = published.map(|p| p.1);
    print_report(s, &report, &committed_line(r))
}

/// "version 1 → 2, key a → b, acked 9/10 (needed 9)": what a rotation did, in one phrase.
pub(super) fn summary(r: &Rotation) -> String {
    format!(
        "version {} → {}, key {} → {}, acked {}/{} (needed {})",
        r.from.version,
        r.to.version,
        r.from.key_id,
        r.to.key_id,
        r.counts.acked,
        r.counts.active,
        r.counts.needed
    )
}

pub(super) fn committed_line(r: &Rotation) -> String {
    let ignored: u64 = r.counts.ignored.values().sum();
    format!(
        "committed {} {}: {}{}; {} acks did not count{}",
        r.kind,
        r.rotation_id,
        summary(r),
        r.time_to_quorum_ms
            .map(|ms| format!(" in {ms:.0} ms"))
            .unwrap_or_default(),
        ignored,
        if ignored > 0 {
            format!(" ({})", ignored_summary(&r.counts.ignored))
        } else {
            String::new()
        }
    )
}

pub(super) fn print_report(s: &Session, report: &Report, human: &str) -> Result<(), OpsError> {
    if s.ctx.json {
        print_json(report)
    } else {
        say!(s.ctx, "{human}");
        Ok(())
    }
}

pub(super) fn progress_bar(ctx: &Context, active: usize, needed: usize) -> indicatif::ProgressBar {
    let bar = ctx.progress("acks", "");
    bar.set_message(format!("acks (need {needed} of {active} active):"));
    bar
}

pub(super) fn ignored_summary(ignored: &BTreeMap<String, u64>) -> String {
    ignored
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}
