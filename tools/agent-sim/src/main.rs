//! `ransomeye-agent-sim`: a fleet of simulated RansomEye endpoint agents for trust-key rotation
//! tests, demos and benchmarks.
//!
//! ```text
//! ransomeye-agent-sim --database-url URL --nats-url URL --agents N --ack-fraction F
//!                     [--forge-fraction G] [--config PATH] [--hold] [--catch-up]
//! ```
//!
//! `--hold` plays agents that were offline: it registers them, prints `registered`, and
//! connects to the bus only once a line arrives on stdin. `--catch-up` makes them catch up from
//! the JetStream stream on connecting, as a returning agent must (docs/TRUST_UPDATE.md): apply
//! the committed chain, then take and ack the newest undecided update; one `catch-up` line. With
//! it, an update that reveals a version gap (commits missed) also triggers a catch-up, printed as
//! a `catch-up` line instead of an `update` line.
//!
//! It registers N agents with fresh Ed25519 keys in the `agents` table (status `active`, hostname
//! `sim-<pid>-<index>`), gives each the trust root of the kernel configuration's `[trust]`
//! section, subscribes to `broadcast.updates`, prints `ready` and then handles every TrustUpdate,
//! TrustCommit and TrustAbort as real agents do ([`ransomeye_trust::AgentTrust`]), until SIGTERM
//! or SIGINT (exit 0). The first round(N×F) agents ack accepted updates on
//! `ops.rotation.<id>.ack`; the next round(N×G) send forged acks instead (bad signature, unknown
//! agent, replay of another rotation, wrong version, in turn); the rest stay silent. All agents
//! share one trust state and receive the same messages, so each check runs once for the whole
//! fleet (identical state and input give an identical verdict); only signing is per agent.
//!
//! Stdout carries only these lines, each flushed as soon as it is complete:
//!
//! ```text
//! registered            (with --hold, before waiting for stdin)
//! catch-up applied=<n> version=<v> pending=<id|-> acks=<n> read=<n>   (with --catch-up)
//! ready
//! update rotation=<id> version=<v> accepted=<n> acked=<n> forged=<n> rejected=<n> reason=<text|->
//! commit rotation=<id> version=<v> switched=<n> rejected=<n> reason=<text|->
//! abort rotation=<id> version=<v> dropped=<n> rejected=<n> reason=<text|->
//! malformed reason=<text>
//! ```
//!
//! `ready` once, when the subscription is in place; then exactly one line per message received,
//! after its acks (if any) are published and flushed. `reason` is the first refusal (free text
//! to the end of the line) or `-`. A pending update past its deadline is dropped when the next
//! message arrives (as a real agent's timer would have), so a late commit or abort is refused
//! with `reason=update expired at …`. Diagnostics go to stderr. The `agents` rows stay after
//! exit (find them by hostname `sim-<pid>-%`). Exit codes: 0 on SIGTERM/SIGINT, 64
//! bad arguments, 69 database or bus unavailable, 70 internal error, 74 stdout unwritable, 78 bad
//! configuration.
//!
//! Modules: [`fleet`] owns the agents, their keys and trust state (pure, unit-tested); [`db`] the
//! registration in PostgreSQL; this file the arguments, connections, run loop and exit codes.

mod db;
mod fleet;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use futures_util::StreamExt as _;
use ransomeye_kernel::config::{redact_url, resolve_path, Config, ConfigError, ENV_CONFIG};
use ransomeye_trust::{ack_subject, AgentTrust, UPDATES_SUBJECT};
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::fleet::{Event, Fleet, Partition};

/// The stdout protocol, shown by `--help`.
const STDOUT_LINES: &str = "\
Stdout lines (one per message received, after its acks are published and flushed):
  registered            (with --hold, before waiting for a line on stdin)
  catch-up applied=<n> version=<v> pending=<id|-> acks=<n> read=<n>   (with --catch-up)
  ready
  update rotation=<id> version=<v> accepted=<n> acked=<n> forged=<n> rejected=<n> reason=<text|->
  commit rotation=<id> version=<v> switched=<n> rejected=<n> reason=<text|->
  abort rotation=<id> version=<v> dropped=<n> rejected=<n> reason=<text|->
  malformed reason=<text>
`reason` is the first refusal, free text to the end of the line, or `-`. A pending
update past its deadline is dropped when the next message arrives, as a real agent's
timer would have, so a late commit or abort is refused with `reason=update expired at …`.

Exit codes: 0 on SIGTERM/SIGINT, 64 bad arguments, 69 database or bus unavailable,
70 internal error, 74 stdout unwritable, 78 bad configuration.";

/// Simulated RansomEye endpoint agents: registers N agents in PostgreSQL, then follows trust
/// updates on the bus as real agents do, acking (honestly, forged, or not at all) until killed.
#[derive(Debug, Parser)]
#[command(name = "ransomeye-agent-sim", version, after_help = STDOUT_LINES)]
struct Cli {
    /// PostgreSQL URL of the database whose `agents` table the agents are registered in.
    #[arg(long, value_name = "URL")]
    database_url: String,
    /// NATS URL of the bus.
    #[arg(long, value_name = "URL")]
    nats_url: String,
    /// CA certificate (PEM) the bus server's certificate must chain to (a bus with TLS).
    #[arg(long, value_name = "PATH")]
    tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for a bus that verifies its clients; needs --tls-key.
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// How many agents to simulate.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    agents: u32,
    /// Fraction of the agents (the first round(N×F)) that ack accepted updates honestly.
    #[arg(long, value_name = "F")]
    ack_fraction: f64,
    /// Fraction of the agents (the next round(N×G)) that send forged acks instead.
    #[arg(long, value_name = "G", default_value_t = 0.0)]
    forge_fraction: f64,
    /// Kernel configuration whose `[trust]` section the agents start from
    /// [default: $RANSOMEYE_CONFIG, else /etc/ransomeye/kernel.toml].
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Agents that were offline: register, print `registered`, and connect to the bus only
    /// after a line on stdin
    #[arg(long)]
    hold: bool,
    /// On connecting, and on an update that reveals a version gap, catch up from the JetStream
    /// stream RANSOMEYE_TRUST as a returning agent does (the committed chain, then the newest
    /// undecided update, acked)
    #[arg(long)]
    catch_up: bool,
}

/// sysexits codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    Usage = 64,
    Unavailable = 69,
    Software = 70,
    Io = 74,
    Config = 78,
}

/// A failure to report on stderr and exit with.
#[derive(Debug)]
struct SimError {
    exit: Exit,
    what: String,
    hint: Option<&'static str>,
}

impl SimError {
    fn new(exit: Exit, what: impl Into<String>) -> SimError {
        SimError {
            exit,
            what: what.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: &'static str) -> SimError {
        self.hint = Some(hint);
        self
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Help and version succeed; every real parse error is a usage error.
            return ExitCode::from(if e.use_stderr() { Exit::Usage as u8 } else { 0 });
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return fail(&SimError::new(
                Exit::Software,
                format!("cannot start the runtime: {e}"),
            ))
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

fn fail(err: &SimError) -> ExitCode {
    eprintln!("error: {}", err.what);
    if let Some(hint) = err.hint {
        eprintln!("hint: {hint}");
    }
    ExitCode::from(err.exit as u8)
}

async fn run(cli: Cli) -> Result<(), SimError> {
    let partition = Partition::new(cli.agents as usize, cli.ack_fraction, cli.forge_fraction)
        .map_err(|e| SimError::new(Exit::Usage, e))?;
    let trust = initial_trust(cli.config.clone())?;
    let mut conn = connect_database(&cli.database_url).await?;
    // Checked now, so that a wrong URL fails before anything is registered.
    let client = connect_bus(&cli).await?;

    let started = Instant::now();
    let fleet = Fleet::generate(partition, trust)
        .map_err(|e| SimError::new(Exit::Software, e.to_string()))?;
    let generated = started.elapsed();
    db::register(&mut conn, fleet.agents()).await.map_err(|e| {
        SimError::new(
            Exit::Unavailable,
            format!(
                "cannot register the agents in the database {}: {}",
                redact_url(&cli.database_url),
                first_line(&e.to_string())
            ),
        )
        .hint("the database needs the `agents` table of schema/platform.sql")
    })?;
    let _ = sqlx::Connection::close(conn).await;
    let p = fleet.partition();
    eprintln!(
        "registered {} agents ({} honest, {} forgers, {} silent) at trust version {}: keys {} ms, insert {} ms",
        p.total(),
        p.honest,
        p.forgers,
        p.silent,
        fleet.trust().version,
        generated.as_millis(),
        (started.elapsed() - generated).as_millis(),
    );

    let bus_error = |e: &dyn std::fmt::Display| {
        SimError::new(
            Exit::Unavailable,
            format!("the bus {} failed: {e}", redact_url(&cli.nats_url)),
        )
    };
    let client = if cli.hold {
        // Offline: no connection until told.
        drop(client);
        emit("registered")?;
        wait_for_stdin_line().await?;
        connect_bus(&cli).await?
    } else {
        client
    };
    let mut fleet = fleet;
    let mut updates = client
        .subscribe(UPDATES_SUBJECT)
        .await
        .map_err(|e| bus_error(&e))?;
    client.flush().await.map_err(|e| bus_error(&e))?;
    if cli.catch_up {
        // Subscribed first, so nothing published meanwhile is missed (a message both read
        // here and received live is handled twice, which the protocol allows).
        catch_up(&mut fleet, &client, None, &bus_error).await?;
    }
    // Before `ready`: a test may send SIGTERM as soon as it reads it.
    let signal_error =
        |e: std::io::Error| SimError::new(Exit::Software, format!("cannot handle signals: {e}"));
    let sigterm = signal(SignalKind::terminate()).map_err(signal_error)?;
    let sigint = signal(SignalKind::interrupt()).map_err(signal_error)?;
    emit("ready")?;
    follow(
        fleet,
        &client,
        &mut updates,
        [sigterm, sigint],
        cli.catch_up,
        &bus_error,
    )
    .await
}

/// Handles broadcasts until SIGTERM or SIGINT.
async fn follow(
    mut fleet: Fleet,
    client: &async_nats::Client,
    updates: &mut async_nats::Subscriber,
    [mut sigterm, mut sigint]: [Signal; 2],
    catching_up: bool,
    bus_error: &dyn Fn(&dyn std::fmt::Display) -> SimError,
) -> Result<(), SimError> {
    loop {
        let message = tokio::select! {
            m = updates.next() => m,
            _ = sigterm.recv() => return Ok(()),
            _ = sigint.recv() => return Ok(()),
        };
        let Some(message) = message else {
            return Err(bus_error(&"the subscription to broadcast.updates ended"));
        };
        if catching_up && fleet.is_gap(&message.payload) {
            // Commits were missed: catch up from the stream (this update included) instead.
            catch_up(&mut fleet, client, Some(&message.payload), bus_error).await?;
            continue;
        }
        let started = Instant::now();
        // Signing thousands of acks is CPU work: let the runtime move other tasks away.
        let (event, acks) =
            tokio::task::block_in_place(|| fleet.on_message(&message.payload, unix_now()));
        if let Event::Malformed { reason } = &event {
            eprintln!("warning: ignoring a malformed message on {UPDATES_SUBJECT}: {reason}");
        }
        if let (Event::Update { rotation, .. }, false) = (&event, acks.is_empty()) {
            let signed = started.elapsed();
            let count = acks.len();
            publish_acks(client, rotation, acks)
                .await
                .map_err(|e| bus_error(&e))?;
            eprintln!(
                "rotation {rotation}: {count} acks signed in {} ms, published in {} ms",
                signed.as_millis(),
                (started.elapsed() - signed).as_millis()
            );
        }
        emit(&event.to_string())?;
    }
}

/// Catches the fleet up from the stream (plus `live`, a message just received that the stream
/// may not have returned yet), acks the undecided update it leaves pending, and prints the
/// `catch-up` line.
async fn catch_up(
    fleet: &mut Fleet,
    client: &async_nats::Client,
    live: Option<&[u8]>,
    bus_error: &dyn Fn(&dyn std::fmt::Display) -> SimError,
) -> Result<(), SimError> {
    let mut stream = read_stream(client).await.map_err(|e| bus_error(&e))?;
    stream.extend(live.map(<[u8]>::to_vec));
    let (event, acks) = tokio::task::block_in_place(|| fleet.catch_up(&stream, unix_now()));
    if let Event::CatchUp {
        pending: Some(rotation),
        ..
    } = &event
    {
        publish_acks(client, rotation, acks)
            .await
            .map_err(|e| bus_error(&e))?;
    }
    emit(&event.to_string())
}

/// Publishes `acks` on `rotation`'s ack subject and flushes them.
async fn publish_acks(
    client: &async_nats::Client,
    rotation: &ransomeye_trust::RotationId,
    acks: Vec<Vec<u8>>,
) -> Result<(), String> {
    let subject = async_nats::Subject::from(ack_subject(rotation));
    for ack in acks {
        client
            .publish(subject.clone(), ack.into())
            .await
            .map_err(|e| e.to_string())?;
    }
    client.flush().await.map_err(|e| e.to_string())
}

/// Blocks (off the runtime) until a line, or the end, of stdin.
async fn wait_for_stdin_line() -> Result<(), SimError> {
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(drop)
    })
    .await
    .map_err(|e| SimError::new(Exit::Software, format!("waiting for stdin: {e}")))?
    .map_err(|e| SimError::new(Exit::Io, format!("cannot read stdin: {e}")))
}

/// Every message of the stream `RANSOMEYE_TRUST`, oldest first, read one by one with
/// `$JS.API.STREAM.MSG.GET` (plain API requests, as `ransomeye-ops` does). No stream yet: none.
async fn read_stream(client: &async_nats::Client) -> Result<Vec<Vec<u8>>, String> {
    use base64::Engine as _;
    let request = |subject: String, body: serde_json::Value| async move {
        let reply = client
            .request(subject, body.to_string().into())
            .await
            .map_err(|e| e.to_string())?;
        serde_json::from_slice::<serde_json::Value>(&reply.payload).map_err(|e| e.to_string())
    };
    let stream = ransomeye_trust::STREAM_NAME;
    let info = request(
        format!("$JS.API.STREAM.INFO.{stream}"),
        serde_json::Value::Null,
    )
    .await?;
    if info.get("error").is_some() {
        return Ok(Vec::new());
    }
    let seq = |k: &str| info["state"][k].as_u64().unwrap_or(0);
    let (first, last) = (seq("first_seq"), seq("last_seq"));
    let mut messages = Vec::new();
    for n in first.max(1)..=last {
        let reply = request(
            format!("$JS.API.STREAM.MSG.GET.{stream}"),
            serde_json::json!({ "seq": n }),
        )
        .await?;
        // A deleted sequence, or a message that is not base64: nothing an agent can use.
        if let Some(data) = reply["message"]["data"].as_str() {
            if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(data) {
                messages.push(bytes);
            }
        }
    }
    Ok(messages)
}

/// The trust root every agent starts from: the configuration's `[trust]` section.
fn initial_trust(flag: Option<PathBuf>) -> Result<AgentTrust, SimError> {
    let env = std::env::var_os(ENV_CONFIG);
    let source = resolve_path(flag.as_deref(), env.as_deref());
    let config = Config::load(&source).map_err(|e| {
        let err = SimError::new(Exit::Config, e.to_string());
        match e {
            ConfigError::Missing { .. } => err.hint(
                "pass --config with the kernel configuration (`ransomeye-ops init` writes one)",
            ),
            _ => err,
        }
    })?;
    let key = config.trust_public_key().map_err(|e| {
        SimError::new(
            Exit::Config,
            format!("{}: [trust] public_key {e}", source.path.display()),
        )
    })?;
    Ok(AgentTrust::new(config.trust.version, key))
}

async fn connect_database(url: &str) -> Result<sqlx::PgConnection, SimError> {
    let options: sqlx::postgres::PgConnectOptions = url
        .parse()
        .ok()
        .filter(|_| url.starts_with("postgres://") || url.starts_with("postgresql://"))
        .ok_or_else(|| {
            SimError::new(
                Exit::Usage,
                format!(
                    "--database-url {} is not a postgres:// URL",
                    redact_url(url)
                ),
            )
        })?;
    let unavailable = |e: &dyn std::fmt::Display| {
        SimError::new(
            Exit::Unavailable,
            format!(
                "cannot connect to the database {}: {}",
                redact_url(url),
                first_line(&e.to_string())
            ),
        )
        .hint("check that PostgreSQL is running there and the database exists")
    };
    tokio::time::timeout(Duration::from_secs(10), db::connect(&options))
        .await
        .map_err(|e| unavailable(&e))?
        .map_err(|e| unavailable(&e))
}

async fn connect_bus(cli: &Cli) -> Result<async_nats::Client, SimError> {
    let url = &cli.nats_url;
    let mut options = async_nats::ConnectOptions::new()
        .name("ransomeye-agent-sim")
        .connection_timeout(Duration::from_secs(5));
    if let Some(ca) = &cli.tls_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&cli.tls_cert, &cli.tls_key) {
        options = options
            .add_client_certificate(cert.clone(), key.clone())
            .require_tls(true);
    }
    options.connect(url).await.map_err(|e| {
        let exit = match e.kind() {
            async_nats::ConnectErrorKind::ServerParse => Exit::Usage,
            _ => Exit::Unavailable,
        };
        SimError::new(
            exit,
            format!("cannot connect to the bus {}: {e}", redact_url(url)),
        )
        .hint("check that nats-server is running there")
    })
}

/// Writes one line on stdout and flushes it, so a reader waiting for it sees it now.
fn emit(line: &str) -> Result<(), SimError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| SimError::new(Exit::Io, format!("cannot write to stdout: {e}")))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn forge_fraction_defaults_to_zero_and_agents_must_be_positive() {
        let cli = Cli::try_parse_from([
            "sim",
            "--database-url",
            "postgres://x",
            "--nats-url",
            "nats://y",
            "--agents",
            "3",
            "--ack-fraction",
            "0.5",
        ])
        .expect("valid");
        assert_eq!((cli.agents, cli.forge_fraction), (3, 0.0));
        let zero = Cli::try_parse_from([
            "sim",
            "--database-url",
            "postgres://x",
            "--nats-url",
            "nats://y",
            "--agents",
            "0",
            "--ack-fraction",
            "0.5",
        ]);
        assert!(zero.is_err());
    }
}
