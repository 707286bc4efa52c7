//! [`AgentSim`]: `ransomeye-agent-sim` playing a fleet of agents for a test, its stdout read
//! line by line (the protocol its crate documents: `registered`, `ready`, one line per message).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::services::services;
use crate::world::World;

/// A running simulator; killed on drop.
pub struct AgentSim {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl AgentSim {
    /// Starts `agents` simulated agents in `world`'s database on the shared bus, a fraction
    /// `ack` of them acking and `forge` forging acks; returns once they listen.
    pub fn start(world: &World, agents: u32, ack: f64, forge: f64) -> AgentSim {
        AgentSim::start_on(world, &services().nats_url, agents, ack, forge)
    }

    /// [`AgentSim::start`] on the bus at `nats_url`.
    pub fn start_on(world: &World, nats_url: &str, agents: u32, ack: f64, forge: f64) -> AgentSim {
        let forge = forge.to_string();
        let mut sim = AgentSim::spawn(world, nats_url, agents, ack, &["--forge-fraction", &forge]);
        sim.wait_for(|l| l == "ready");
        sim
    }

    /// Agents that ack, on the bus at `nats_url`, with extra simulator `flags` (e.g. the TLS
    /// files: `--tls-ca`, `--tls-cert`, `--tls-key`); returns once they listen.
    pub fn start_with(world: &World, nats_url: &str, agents: u32, flags: &[&str]) -> AgentSim {
        let mut sim = AgentSim::spawn(world, nats_url, agents, 1.0, flags);
        sim.wait_for(|l| l == "ready");
        sim
    }

    /// Agents that are offline (`--hold`, plus `flags`): registered in the database, not yet on
    /// the bus. Returns once they are registered; [`AgentSim::connect`] brings them back.
    pub fn start_held(world: &World, nats_url: &str, agents: u32, flags: &[&str]) -> AgentSim {
        let mut args = vec!["--hold"];
        args.extend_from_slice(flags);
        let mut sim = AgentSim::spawn(world, nats_url, agents, 1.0, &args);
        sim.wait_for(|l| l == "registered");
        sim
    }

    /// Brings held agents onto the bus; returns once they listen, with the lines printed before
    /// `ready` (the `catch-up` line).
    pub fn connect(&mut self) -> Vec<String> {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin
            .write_all(b"connect\n")
            .expect("write to the simulator");
        stdin.flush().expect("flush");
        let mut before = Vec::new();
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line == "ready" => return before,
                Ok(line) => before.push(line),
                Err(e) => panic!("agent simulator: not ready after connecting ({e})"),
            }
        }
    }

    fn spawn(world: &World, nats_url: &str, agents: u32, ack: f64, flags: &[&str]) -> AgentSim {
        let mut child = Command::new(sim_bin(world))
            .arg("--database-url")
            .arg(&world.db().url)
            .arg("--nats-url")
            .arg(nats_url)
            .arg("--config")
            .arg(&world.config)
            .args(["--agents", &agents.to_string()])
            .args(["--ack-fraction", &ack.to_string()])
            .args(flags)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start ransomeye-agent-sim");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        // Keeps reading after the line a test waits for, so the simulator never blocks on a
        // full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        AgentSim { child, lines }
    }

    /// Reads the simulator's lines until one satisfies `want`; fails after 60 s without it.
    #[track_caller]
    pub fn wait_for(&mut self, want: impl Fn(&str) -> bool) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if want(&line) => return line,
                Ok(_) => {}
                Err(e) => panic!("agent simulator: no expected line ({e})"),
            }
        }
    }

    /// The simulator's line about `event` (update, commit, abort) of `rotation`.
    #[track_caller]
    pub fn event(&mut self, event: &str, rotation: &str) -> String {
        let prefix = format!("{event} rotation={rotation}");
        self.wait_for(|l| l.starts_with(&prefix))
    }
}

impl Drop for AgentSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `key=value` from a simulator line.
#[track_caller]
pub fn field(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} missing in {line:?}"))
        .to_string()
}

/// The simulator, built beside the binary under test (`cargo build --workspace`; Cargo gives a
/// test the path of its own package's binaries only).
fn sim_bin(world: &World) -> PathBuf {
    let path = world.bin.with_file_name("ransomeye-agent-sim");
    assert!(
        path.exists(),
        "{} is missing: build the workspace (`cargo build --workspace`; scripts/test does)",
        path.display()
    );
    path
}
