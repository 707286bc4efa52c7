//! The binary runner: a command run to its end ([`run()`]), started in the background
//! ([`spawn`], [`Running`]), bounded ([`run_within`]) or killed ([`kill_after`]); and what it
//! produced ([`Run`]) with the exit-code and stderr assertions every test makes.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// What a run of the binary produced.
#[derive(Debug)]
pub struct Run {
    /// Exit code (`-1` if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Asserts the exit code, showing the output when it differs.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "unexpected exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts that stderr contains `needle`.
    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Run {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }

    /// Parses stdout as one JSON document.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// Runs a prepared command and collects its output.
pub fn run(cmd: &mut Command) -> Run {
    Run::from(cmd.output().expect("run the binary under test"))
}

/// Runs a command that must succeed and returns its raw stdout (binary or large output).
#[track_caller]
pub fn stdout_bytes(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .stdout(Stdio::piped())
        .output()
        .expect("run the binary under test");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Starts `cmd` in the background with stdout and stderr piped; [`finish`] collects them.
pub fn spawn(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the binary under test")
}

/// Waits for a [`spawn`]ed run to end and collects its output.
pub fn finish(child: Child) -> Run {
    Run::from(child.wait_with_output().expect("wait for the run"))
}

/// Starts `cmd` with its output discarded and SIGKILLs it after `delay`. The kill moment is the
/// crash tests' variable, not a synchronisation.
pub fn kill_after(cmd: &mut Command, delay: Duration) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    std::thread::sleep(delay);
    let _ = child.kill();
    child.wait().expect("wait");
}

/// Runs `cmd` to completion with its output collected; a run still going after `limit` is
/// killed and fails the test (a guard against hanging the suite, not a synchronisation).
#[track_caller]
pub fn run_within(cmd: &mut Command, limit: Duration) -> Run {
    let child = spawn(cmd);
    let pid = Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => Run::from(out.expect("wait")),
        Err(_) => {
            let _ = kill(pid, Signal::SIGKILL);
            panic!("{cmd:?} still running after {limit:?}: it hangs");
        }
    }
}

/// The binary running in the background, its stderr read line by line, so a test can act at
/// the point a line announces (a paused failpoint, a `[services]` command running).
pub struct Running {
    child: Child,
    stderr: BufReader<ChildStderr>,
    seen: String,
    done: mpsc::Sender<()>,
}

impl Running {
    /// Longest a run may take before the watchdog kills it: a guard against hanging the suite.
    pub const WATCHDOG: Duration = Duration::from_secs(180);

    /// Starts `cmd` with stdout and stderr piped, under the watchdog.
    pub fn start(cmd: &mut Command) -> Running {
        let mut child = spawn(cmd);
        let stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let (done, finished) = mpsc::channel::<()>();
        let pid = Pid::from_raw(child.id() as i32);
        std::thread::spawn(move || {
            if finished.recv_timeout(Self::WATCHDOG) == Err(mpsc::RecvTimeoutError::Timeout) {
                let _ = kill(pid, Signal::SIGKILL);
            }
        });
        Running {
            child,
            stderr,
            seen: String::new(),
            done,
        }
    }

    /// Its process id.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Reads stderr until a line contains `needle` (the run has reached that point).
    #[track_caller]
    pub fn wait_for(&mut self, needle: &str) {
        loop {
            let mut line = String::new();
            let n = self.stderr.read_line(&mut line).expect("read stderr");
            assert!(
                n > 0,
                "the run ended without printing {needle:?}; stderr:\n{}",
                self.seen
            );
            self.seen.push_str(&line);
            if line.contains(needle) {
                return;
            }
        }
    }

    /// Sends it signal `s`.
    pub fn signal(&self, s: Signal) {
        kill(self.pid(), s).expect("send the signal");
    }

    /// Waits for the end and collects the output.
    pub fn finish(mut self) -> Run {
        let mut rest = String::new();
        self.stderr.read_to_string(&mut rest).expect("read stderr");
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            out.read_to_string(&mut stdout).expect("read stdout");
        }
        let status = self.child.wait().expect("wait");
        let _ = self.done.send(());
        Run {
            code: status.code().unwrap_or(-1),
            stdout,
            stderr: self.seen + &rest,
        }
    }
}
