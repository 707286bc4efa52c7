//! `rotate-keys`: moves the Ed25519 trust root to a new key across every agent, with proof
//! (signed acks from a quorum of active agents) and without downtime (agents trust the old key
//! until the commit). The wire protocol is `docs/TRUST_UPDATE.md` (crate `ransomeye-trust`).
//!
//! [`run`] reads as the procedure: lock → refuse an unfinished rotation → check the old key, the
//! configuration's directory, the bus and the agents → stage the new key in `signing.key.next`
//! and read it back → journal `pending` → publish the TrustUpdate and collect acks → commit
//! (journal `committing` → configuration → old key to `retired/` → `signing.key.next` becomes
//! `signing.key` → TrustCommit → journal `committed`) or abort (journal `aborting` → TrustAbort →
//! remove the staged key → journal `aborted`).
//!
//! The configuration and `signing.key` are two files and cannot change in one atomic step; the
//! configuration is the commit point. At every instant exactly one of `signing.key` and
//! `signing.key.next` holds the key the configuration names (the *active key*), which is what
//! every command signs with ([`crate::trust::signing_key`]); `--resume` finishes what the journal
//! says was started, including a commit or abort the bus did not take (journaled, and shown by
//! `status` with exit 75). A dry run changes nothing at all: it takes no lock file, cleans nothing
//! and creates no stream, and lists what a real run would clean or finish instead.
//!
//! Here: the procedure and the decision. `finish` rolls a decided rotation forward or back,
//! `files` holds the key files and the configuration's `[trust]` values, `bus` the trust
//! stream, `journal` the rotation journal, `report` what a run prints, and `status` the
//! `rotate-keys status` subcommand.

mod bus;
mod files;
mod finish;
pub(crate) mod journal;
mod report;
mod status;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ransomeye_kernel::config::Config;
use ransomeye_kernel::keys::{KeyDir, KeyError, SigningKey};
use ransomeye_kernel::{FileAction, PathError};
use ransomeye_trust::{AckCheck, AgentId, Broadcast, Quorum, RotationId, TrustUpdate};
use sqlx::PgConnection;

use self::bus::{Tally, TrustBus};
use self::files::{
    check_config_dir_access, check_config_writable, clear_abandoned_next_key, key_named,
    refuse_if_running, refuse_unfinished, rollback_target, stage_next_key, temp_files,
};
use self::finish::{abort, commit};
use self::journal::{Counts, Journal, Side, State};
use self::report::{
    dry_run_text, ignored_summary, print_report, progress_bar, report_committed, report_dry_run,
    report_resume_dry_run,
};
use super::Context;
use crate::cli::{RotateKeysArgs, RotateKeysCommand};
use crate::db::{self, Answer};
use crate::error::{Exit, OpsError};
use crate::failpoint;
use crate::run_lock::{self, RunLock};
use crate::trust::NEXT_KEY;
use crate::utils::{elapsed_ms, runtime};

/// Seconds between the end of ack collection and the update's deadline: room for the commit to
/// reach agents before they would drop the pending key.
const COMMIT_GRACE_SECS: u64 = 30;

/// What a rotation is: a new key, or back to the previous one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rotation,
    Rollback,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Rotation => "rotation",
            Kind::Rollback => "rollback",
        }
    }
}

/// Runs `rotate-keys` or `rotate-keys status`; returns the exit code (`status` exits 75 while a
/// rotation is unfinished, e.g. aborted with its TrustAbort not yet published).
pub fn run(ctx: &Context, args: &RotateKeysArgs) -> Result<u8, OpsError> {
    match &args.command {
        Some(RotateKeysCommand::Status) => status::status(ctx),
        None if args.resume => resume(ctx, args).map(|()| 0),
        None if args.rollback => new_rotation(ctx, args, Kind::Rollback).map(|()| 0),
        None => new_rotation(ctx, args, Kind::Rotation).map(|()| 0),
    }
}

/// Everything a run holds: the configuration, the keys directory, the lock and the journal.
struct Session {
    config: Config,
    config_path: PathBuf,
    keys: KeyDir,
    journal: Journal,
    quorum: Quorum,
    timeout: Duration,
    /// How to report (`--json`, `-q`).
    ctx: Context,
    started: Instant,
    /// `--dry-run`: check and report, change nothing (no lock file, no clean-up, no stream).
    dry_run: bool,
    /// What a dry run found that a real run would finish or clean, in order.
    would: Vec<String>,
    /// `None` in a dry run, which must not even create the lock file.
    _lock: Option<RunLock>,
}

impl Session {
    fn open(ctx: &Context, args: &RotateKeysArgs) -> Result<Session, OpsError> {
        let started = Instant::now();
        let quorum = Quorum::new(args.quorum)
            .map_err(|m| OpsError::new(Exit::Usage, format!("--quorum: {m}")))?;
        let config = ctx.config()?;
        let keys = KeyDir::new(&config.keys.dir);
        crate::dirs::check_writable(keys.path(), "[keys] dir")?;
        let mut would = Vec::new();
        let lock = if args.dry_run {
            refuse_if_running(keys.path())?;
            for file in temp_files(keys.path(), &ctx.config_source.path)? {
                would.push(format!(
                    "remove {} (a temporary file an interrupted run left)",
                    file.display()
                ));
            }
            None
        } else {
            let lock = RunLock::acquire(keys.path(), "rotate-keys", "key rotation")?;
            for file in temp_files(keys.path(), &ctx.config_source.path)? {
                tracing::info!(file = %file.display(), "removing a temporary file left by an interrupted run");
                std::fs::remove_file(&file).map_err(PathError::at(FileAction::Remove, &file))?;
            }
            Some(lock)
        };
        let journal = Journal::load(keys.path())?;
        Ok(Session {
            config,
            config_path: ctx.config_source.path.clone(),
            keys,
            journal,
            quorum,
            timeout: Duration::from_secs(args.timeout),
            ctx: ctx.clone(),
            started,
            dry_run: args.dry_run,
            would,
            _lock: lock,
        })
    }

    /// Connects to the database (taking the rotation's advisory lock there too, for a second
    /// host sharing the database) and to the bus, and makes sure the trust stream exists.
    async fn connect(&mut self) -> Result<(PgConnection, TrustBus), OpsError> {
        let mut conn = db::connect(&self.config.database.url, "rotate-keys").await?;
        run_lock::advisory_lock(&mut conn, "ransomeye-ops rotate-keys", "key rotation").await?;
        let bus = TrustBus::connect(&self.config.bus).await?;
        if self.dry_run {
            if let Some(change) = bus.check_stream().await? {
                self.would.push(change);
            }
        } else {
            bus.ensure_stream().await?;
        }
        Ok((conn, bus))
    }
}

fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn now_unix() -> u64 {
    since_epoch().as_secs()
}

fn side(version: u64, key: &SigningKey) -> Side {
    Side {
        version,
        key_id: key.id().to_string(),
        public_key: hex::encode(key.public_key()),
    }
}

fn new_rotation(ctx: &Context, args: &RotateKeysArgs, kind: Kind) -> Result<(), OpsError> {
    if kind == Kind::Rollback {
        eprintln!(
            "warning: a rollback makes the previous key the trust root again. Never roll back to a \
             key that may be compromised: rotate to a new key instead"
        );
        if !args.yes && !args.dry_run {
            return Err(OpsError::new(
                Exit::Usage,
                "--rollback changes the trust root back to the previous key and needs --yes",
            )
            .hint("rerun with --yes if the previous key is not compromised"));
        }
    }
    let mut s = Session::open(ctx, args)?;
    refuse_unfinished(&s.journal)?;
    clear_abandoned_next_key(&mut s)?;
    let old = crate::trust::signing_key(&s.config)?;
    if s.dry_run {
        check_config_dir_access(&s.config_path)?;
    } else {
        check_config_writable(&s.config_path)?;
    }
    let next = match kind {
        Kind::Rotation => None,
        Kind::Rollback => Some(rollback_target(&s.keys, &s.journal, &old)?),
    };
    let rt = runtime()?;
    rt.block_on(async {
        let (mut conn, bus) = s.connect().await?;
        let agents = active_agents(&mut conn).await?;
        let needed = s.quorum.needed(agents.len());
        if args.dry_run {
            return report_dry_run(&s, kind, &old, agents.len(), needed);
        }
        let new = match next {
            Some(key) => key,
            None => SigningKey::generate()?,
        };
        stage_next_key(&s.keys, &new)?;
        failpoint::hit("rotate-after-stage");
        // Rounded up, so agents always get at least the whole timeout plus the grace.
        let issued_at = now_unix() + 1;
        let update = TrustUpdate::new(
            RotationId::generate().ok_or_else(|| OpsError::from(KeyError::Random))?,
            s.config.trust.version + 1,
            &old,
            &new,
            issued_at,
            issued_at + s.timeout.as_secs() + COMMIT_GRACE_SECS,
        );
        s.journal.begin(journal::pending(
            kind.name(),
            side(s.config.trust.version, &old),
            side(update.version, &new),
            update.clone(),
            s.quorum.fraction(),
        ))?;
        failpoint::hit("rotate-after-journal");
        let collect_for = s.timeout;
        decide(&mut s, &bus, agents, update, collect_for).await
    })
}

fn resume(ctx: &Context, args: &RotateKeysArgs) -> Result<(), OpsError> {
    let mut s = Session::open(ctx, args)?;
    let Some(rotation) = s.journal.unfinished().cloned() else {
        clear_abandoned_next_key(&mut s)?;
        let report = s.report("nothing_to_resume", None);
        return print_report(
            &s,
            &report,
            &dry_run_text(&s, "no unfinished rotation: nothing to resume"),
        );
    };
    if s.dry_run {
        return report_resume_dry_run(&mut s, &rotation);
    }
    eprintln!(
        "resuming {} {} (state {}, version {} → {})",
        rotation.kind,
        rotation.rotation_id,
        rotation.state.name(),
        rotation.from.version,
        rotation.to.version
    );
    let rt = runtime()?;
    rt.block_on(async {
        let (mut conn, bus) = s.connect().await?;
        let old = key_named(&s.keys, &rotation.from, &["signing.key"]);
        match rotation.state {
            State::Pending => {
                let staged = key_named(&s.keys, &rotation.to, &[NEXT_KEY]);
                let left = collection_left(&rotation.update);
                let unresumable = if old.is_none() || staged.is_none() {
                    Some("the staged key or the old key is missing")
                } else if left.is_zero() {
                    Some("interrupted, and its time to collect acks has passed")
                } else {
                    None
                };
                if let Some(reason) = unresumable {
                    return abort(&mut s, &bus, reason.into(), Exit::TempFail).await;
                }
                // The quorum the rotation was started with, whatever this run's default.
                s.quorum = Quorum::new(rotation.quorum)
                    .map_err(|m| OpsError::new(Exit::Data, format!("journal: {m}")))?;
                let agents = active_agents(&mut conn).await?;
                decide(&mut s, &bus, agents, rotation.update.clone(), left).await
            }
            State::Committing => {
                commit(&mut s, &bus).await?;
                report_committed(&s, None)
            }
            State::Aborting => {
                let reason = rotation
                    .reason
                    .clone()
                    .unwrap_or_else(|| "interrupted".into());
                abort(&mut s, &bus, reason, Exit::TempFail).await
            }
            State::Committed | State::Aborted => Ok(()),
        }
    })
}

/// Publishes the update, collects acks, and commits or aborts.
async fn decide(
    s: &mut Session,
    bus: &TrustBus,
    agents: HashMap<AgentId, Vec<u8>>,
    update: TrustUpdate,
    collect_for: Duration,
) -> Result<(), OpsError> {
    let check = Arc::new(AckCheck::new(&update, agents));
    let needed = s.quorum.needed(check.active());
    let sub = bus.subscribe_acks(&update.rotation_id).await?;
    let published = Instant::now();
    let update_seq = bus.publish(&Broadcast::Update(update.clone())).await?;
    failpoint::hit("rotate-after-publish");
    let deadline = Instant::now() + collect_for;
    let progress = progress_bar(&s.ctx, check.active(), needed);
    let tally = bus::collect(
        bus,
        &update,
        sub,
        Arc::clone(&check),
        needed,
        deadline,
        &progress,
    )
    .await;
    progress.finish_and_clear();
    let counts = counts(check.active(), needed, &tally);
    let no_quorum =
        (tally.acked < needed).then(|| no_quorum_reason(&tally, needed, check.active()));
    s.journal.update(|r| {
        r.counts = counts;
        r.time_to_quorum_ms = tally.time_to_quorum.map(|d| d.as_secs_f64() * 1000.0);
        r.state = if no_quorum.is_some() {
            State::Aborting
        } else {
            State::Committing
        };
        r.reason.clone_from(&no_quorum);
    })?;
    failpoint::hit("rotate-after-decision");
    match no_quorum {
        None => {
            commit(s, bus).await?;
            report_committed(s, Some((elapsed_ms(published), update_seq)))
        }
        Some(reason) => abort(s, bus, reason, Exit::TempFail).await,
    }
}

/// How much of `update`'s time to collect acks is left: collection ends at the deadline minus
/// the commit's grace.
fn collection_left(update: &TrustUpdate) -> Duration {
    Duration::from_secs(update.deadline.saturating_sub(COMMIT_GRACE_SECS))
        .saturating_sub(since_epoch())
}

fn no_quorum_reason(tally: &Tally, needed: usize, active: usize) -> String {
    let invalid: u64 = tally.ignored.values().sum();
    format!(
        "no quorum: {} of {active} active agents acked, {needed} needed (strictly more than the quorum fraction); {invalid} acks did not count{}",
        tally.acked,
        if invalid > 0 { format!(" ({})", ignored_summary(&tally.ignored)) } else { String::new() }
    )
}

fn counts(active: usize, needed: usize, tally: &Tally) -> Counts {
    Counts {
        active,
        needed,
        acked: tally.acked,
        ignored: tally.ignored.clone(),
    }
}

/// Every active agent and its registered public key.
async fn active_agents(conn: &mut PgConnection) -> Result<HashMap<AgentId, Vec<u8>>, OpsError> {
    let rows: Vec<(String, Vec<u8>)> =
        sqlx::query_as("select id::text, public_key from agents where status = 'active'")
            .fetch_all(&mut *conn)
            .answer("reading the active agents")
            .await?;
    let mut agents = HashMap::with_capacity(rows.len());
    for (id, key) in rows {
        match id.parse::<AgentId>() {
            Ok(id) => {
                agents.insert(id, key);
            }
            Err(m) => tracing::warn!("skipping agent: {m}"),
        }
    }
    if agents.is_empty() {
        return Err(OpsError::new(
            Exit::TempFail,
            "no active agents: nobody could acknowledge a new trust key",
        )
        .hint("register agents (table agents, status 'active') first; nothing was generated or published"));
    }
    Ok(agents)
}
