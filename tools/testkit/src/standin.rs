//! [`StandinService`]: `ransomeye-standin-service` (this crate's binary) run the way a real
//! service is: by the `restart` command of a `[[credentials]]` entry, which this writes as a
//! script, with a `check` script beside it. The test reads what the service recorded.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A stand-in service's scripts and state directory; the running service is killed on drop.
pub struct StandinService {
    /// Its state directory: `ready`, `pid`, `failed-logins`, `logins-ok`.
    pub state: PathBuf,
    /// The script that (re)starts it: for a `restart = […]` entry.
    pub restart: PathBuf,
    /// The script that succeeds once it runs and logged in: for `check = …`.
    pub check: PathBuf,
}

impl StandinService {
    /// Scripts for a service reading `key` from `env_file`, with its state in `dir` (created);
    /// the binary is the one built beside `bin` (the binary under test).
    pub fn new(bin: &Path, dir: &Path, env_file: &Path, key: &str) -> StandinService {
        let exe = bin.with_file_name("ransomeye-standin-service");
        assert!(
            exe.exists(),
            "{} is missing: build the workspace (`cargo build --workspace`; scripts/test does)",
            exe.display()
        );
        std::fs::create_dir_all(dir).expect("create the service's state dir");
        let state = dir.to_path_buf();
        let s = state.display();
        let restart = state.join("restart.sh");
        write_script(
            &restart,
            &format!(
                "#!/bin/sh\n\
                 # Stops the running stand-in (waiting until it is gone), starts a new one.\n\
                 if [ -f {s}/pid ]; then\n\
                 \x20 old=$(cat {s}/pid)\n\
                 \x20 kill \"$old\" 2>/dev/null\n\
                 \x20 while kill -0 \"$old\" 2>/dev/null; do sleep 0.01; done\n\
                 fi\n\
                 rm -f {s}/ready\n\
                 setsid {exe} --env-file {env} --key {key} --state {s} </dev/null >>{s}/service.log 2>&1 &\n\
                 echo $! > {s}/pid\n",
                exe = exe.display(),
                env = env_file.display(),
            ),
        );
        let check = state.join("check.sh");
        write_script(
            &check,
            &format!(
                "#!/bin/sh\n\
                 # Succeeds once the stand-in logged in (ready); fails as soon as it exited.\n\
                 pid=$(cat {s}/pid 2>/dev/null) || exit 1\n\
                 i=0\n\
                 while [ $i -lt 1000 ]; do\n\
                 \x20 [ \"$(cat {s}/ready 2>/dev/null)\" = \"$pid\" ] && exit 0\n\
                 \x20 kill -0 \"$pid\" 2>/dev/null || exit 1\n\
                 \x20 sleep 0.01; i=$((i+1))\n\
                 done\n\
                 exit 1\n"
            ),
        );
        StandinService {
            state,
            restart,
            check,
        }
    }

    /// Starts it (the restart script) and waits until it logged in; panics if it could not.
    pub fn start(&self) {
        let status = Command::new(&self.restart)
            .status()
            .expect("run restart.sh");
        assert!(status.success(), "restart.sh failed");
        let status = Command::new(&self.check).status().expect("run check.sh");
        assert!(
            status.success(),
            "the stand-in service did not log in; its log:\n{}",
            std::fs::read_to_string(self.state.join("service.log")).unwrap_or_default()
        );
    }

    /// The failed logins it recorded, one line each (time, user, SQLSTATE, pid).
    pub fn failed_logins(&self) -> Vec<String> {
        std::fs::read_to_string(self.state.join("failed-logins"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Successful fresh logins of the running instance so far.
    pub fn ok_logins(&self) -> u64 {
        std::fs::read_to_string(self.state.join("logins-ok"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Waits until the running instance made `n` more successful fresh logins than now.
    pub fn wait_for_logins(&self, n: u64) {
        let start = self.ok_logins();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.ok_logins() < start + n {
            assert!(
                Instant::now() < deadline,
                "the stand-in service made no {n} logins in 30 s; failed: {:?}",
                self.failed_logins()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The pid of the running instance.
    pub fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.state.join("pid"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
    }
}

impl Drop for StandinService {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn write_script(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}
