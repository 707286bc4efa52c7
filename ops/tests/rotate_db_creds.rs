//! `rotate-db-creds` end to end: the real binary against a PostgreSQL cluster of the test's own
//! that wants `scram-sha-256` passwords for every TCP login and logs every statement, with
//! `ransomeye-standin-service` (started by the entry's `restart` command) logging in with what
//! its env file holds, every 5 ms, and recording every failed login.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::{run, OwnPostgres, StandinService, World, BIN};

/// A world whose `[database] url` is the superuser of its own scram cluster, with roles and an
/// env file for one `[[credentials]]` entry, and the stand-in service's scripts.
struct Setup {
    // Dropped in this order: the service (killed, by the pid file in the world's directory)
    // before the cluster and the world's directory go.
    service: StandinService,
    pg: OwnPostgres,
    world: World,
    env: PathBuf,
}

const OLD_A: &str = "old-password-of-a";
const OLD_B: &str = "old-password-of-b";

impl Setup {
    /// `alternating`: roles `core_a` (in use) and `core_b`, members of `core`; else role `core_a`.
    /// `check`: the entry's check command (default: the stand-in's check script).
    fn new(alternating: bool, check: Option<&str>) -> Setup {
        let world = World::initialised(BIN);
        let pg = OwnPostgres::start();
        pg.execute(&format!(
            "create role core nologin; \
             create role core_a login password '{OLD_A}' in role core; \
             create role core_b login password '{OLD_B}' in role core;"
        ));
        let env = world.path("etc/core.env");
        std::fs::write(
            &env,
            format!(
                "# RansomEye core: its database login\n\
                 export DATABASE_URL=\"postgres://core_a:{OLD_A}@127.0.0.1:{}/postgres\"\n\
                 \n\
                 DB_PASSWORD='{OLD_A}'  # the same password, for the tools\n\
                 LOG_LEVEL=info\n",
                pg.port()
            ),
        )
        .expect("write the env file");
        std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let service = StandinService::new(&world.bin, &world.path("svc"), &env, "DATABASE_URL");
        let roles = if alternating {
            "roles = [\"core_a\", \"core_b\"]"
        } else {
            "role = \"core_a\""
        };
        let check = match check {
            Some(c) => c.to_string(),
            None => service.check.display().to_string(),
        };
        let url = pg.superuser_url();
        world.edit_config(|text| {
            let mut out: Vec<String> = text
                .lines()
                .map(|l| {
                    if l.starts_with("url = \"postgres") {
                        format!("url = \"{url}\"")
                    } else {
                        l.to_string()
                    }
                })
                .collect();
            out.push(format!(
                "\n[[credentials]]\n{roles}\nenv_files = [\"{}\"]\nenv_keys = [\"DATABASE_URL\", \"DB_PASSWORD\"]\nrestart = [\"{}\"]\ncheck = \"{check}\"\n",
                env.display(),
                service.restart.display(),
            ));
            out.join("\n")
        });
        Setup {
            world,
            pg,
            env,
            service,
        }
    }

    fn rotate(&self, extra: &[&str]) -> common::Run {
        run(self.world.ops().arg("rotate-db-creds").args(extra))
    }

    fn env_text(&self) -> String {
        std::fs::read_to_string(&self.env).expect("read the env file")
    }

    /// (user, password) that the env file's DATABASE_URL names, checked against DB_PASSWORD.
    fn env_login(&self) -> (String, String) {
        let text = self.env_text();
        let url = text
            .lines()
            .find_map(|l| l.strip_prefix("export DATABASE_URL=\"postgres://"))
            .expect("DATABASE_URL");
        let (login, _) = url.split_once('@').expect("user-info");
        let (user, password) = login.split_once(':').expect("user:password");
        let bare = text
            .lines()
            .find_map(|l| l.strip_prefix("DB_PASSWORD='"))
            .and_then(|v| v.split_once('\''))
            .expect("DB_PASSWORD")
            .0;
        assert_eq!(
            bare, password,
            "DB_PASSWORD and DATABASE_URL disagree:\n{text}"
        );
        (user.to_string(), password.to_string())
    }

    fn verifier(&self, role: &str) -> String {
        self.pg.text(&format!(
            "select coalesce(rolpassword, '') from pg_authid where rolname = '{role}'"
        ))
    }

    fn keys_dir(&self) -> PathBuf {
        self.world.path("keys")
    }
}

/// Every process's command line, joined (as the restart command sees them mid-rotation).
fn snapshot_cmdlines_command(out: &Path) -> String {
    format!(
        "for f in /proc/[0-9]*/cmdline; do tr '\\\\0' ' ' < $f; echo; done > {} 2>/dev/null; true",
        out.display()
    )
}

#[test]
fn single_rotation_switches_the_files_and_only_the_service_left_on_the_old_password_fails() {
    let s = Setup::new(false, None);
    s.service.start();
    let old_pid = s.service.pid();
    s.service.wait_for_logins(20);
    let before = std::fs::metadata(&s.env).expect("meta");

    let out = s.rotate(&[]);
    out.expect_code(0);

    let (user, password) = s.env_login();
    assert_eq!(user, "core_a");
    assert_ne!(password, OLD_A);
    assert_eq!(password.len(), 43, "256 bits in URL-safe base64");
    assert!(
        s.pg.can_login("core_a", &password),
        "the new password works"
    );
    assert!(
        !s.pg.can_login("core_a", OLD_A),
        "the old password no longer works"
    );
    assert!(s.pg.can_login("core_b", OLD_B), "other roles are untouched");
    // Only the configured values changed: comments, export, quoting, other keys kept.
    let expected = format!(
        "# RansomEye core: its database login\n\
         export DATABASE_URL=\"postgres://core_a:{password}@127.0.0.1:{}/postgres\"\n\
         \n\
         DB_PASSWORD='{password}'  # the same password, for the tools\n\
         LOG_LEVEL=info\n",
        s.pg.port()
    );
    assert_eq!(s.env_text(), expected);
    let after = std::fs::metadata(&s.env).expect("meta");
    assert_eq!(
        (after.mode(), after.uid(), after.gid()),
        (before.mode(), before.uid(), before.gid())
    );

    // The service was restarted and logs in with the new password, without a failure.
    let new_pid = s.service.pid();
    assert_ne!(old_pid, new_pid, "the restart command ran");
    s.service.wait_for_logins(20);
    let failed = s.service.failed_logins();
    let of_new: Vec<_> = failed
        .iter()
        .filter(|l| l.ends_with(&format!("pid {}", new_pid.expect("pid"))))
        .collect();
    assert!(
        of_new.is_empty(),
        "the restarted service failed to log in: {of_new:?}"
    );
    // Single: failures only from the instance still on the old password, between set and
    // restart; each is an authentication failure (28P01).
    assert!(failed.iter().all(|l| l.contains(" 28P01 ")), "{failed:?}");
    eprintln!(
        "single strategy: {} failed logins between set and restart",
        failed.len()
    );
    assert!(
        out.stdout.contains("core_a (single): active role core_a"),
        "{}",
        out.stdout
    );
    assert!(
        !s.keys_dir().join("db-creds.pending").exists(),
        "the pending file is removed"
    );
}

#[test]
fn alternating_rotation_has_zero_failed_logins_and_the_next_run_rotates_the_other_role() {
    let s = Setup::new(true, None);
    s.service.start();
    s.service.wait_for_logins(20);

    let first = s.rotate(&["--json"]);
    first.expect_code(0);
    let (user, password) = s.env_login();
    assert_eq!(user, "core_b", "the files switched to the role not in use");
    assert!(s.pg.can_login("core_b", &password));
    assert!(
        !s.pg.can_login("core_b", OLD_B),
        "core_b's old password is replaced"
    );
    assert!(
        s.pg.can_login("core_a", OLD_A),
        "the role that was in use keeps its password"
    );
    let report = first.json();
    assert_eq!(report["state"], "done");
    assert_eq!(report["logins"][0]["strategy"], "alternating");
    assert_eq!(report["logins"][0]["active"], "core_b");
    s.service.wait_for_logins(20);

    let second = s.rotate(&[]);
    second.expect_code(0);
    let (user2, password2) = s.env_login();
    assert_eq!(
        user2, "core_a",
        "the next run switches back, with a new password"
    );
    assert_ne!(password2, OLD_A);
    assert!(s.pg.can_login("core_a", &password2));
    assert!(!s.pg.can_login("core_a", OLD_A));
    assert!(
        s.pg.can_login("core_b", &password),
        "core_b keeps the first run's password"
    );
    s.service.wait_for_logins(20);

    let failed = s.service.failed_logins();
    assert!(
        failed.is_empty(),
        "alternating must cause no failed login: {failed:?}"
    );
}

#[test]
fn a_new_password_that_pg_hba_rejects_is_rolled_back_and_nothing_else_changes() {
    let mut s = Setup::new(true, None);
    s.pg.set_hba_before(&["host all core_b 127.0.0.1/32 reject"]);
    let env_before = s.env_text();
    let verifier_before = s.verifier("core_b");

    let out = s.rotate(&["--json"]);
    out.expect_code(75);
    let error = out.json();
    assert!(
        error
            .to_string()
            .contains("the new password of role core_b did not work"),
        "--json: one document, the error: {error}"
    );

    assert_eq!(s.env_text(), env_before, "the env file is untouched");
    assert_eq!(
        s.verifier("core_b"),
        verifier_before,
        "core_b's exact old verifier is back"
    );
    assert!(
        s.pg.can_login("core_a", OLD_A),
        "the role in use still works"
    );
    assert!(!s.keys_dir().join("db-creds.pending").exists());
    let status = run(s.world.ops().args(["--json", "rotate-db-creds", "status"]));
    status.expect_code(0);
    assert_eq!(status.json()["rotations"][0]["state"], "rolled_back");
    s.pg.set_hba_before(&[]);
    assert!(
        s.pg.can_login("core_b", OLD_B),
        "and core_b's old password works again"
    );
}

#[test]
fn a_service_failing_its_check_puts_files_service_and_password_back() {
    // The check fails once the env file holds a new password: the service "does not come up".
    let probe = "grep -q old-password-of-a";
    let s = Setup::new(false, Some(""));
    let check = format!("{probe} {}", s.env.display());
    s.world
        .edit_config(|t| t.replace("check = \"\"", &format!("check = \"{check}\"")));
    s.service.start();
    s.service.wait_for_logins(10);
    let env_before = s.env_text();
    let verifier_before = s.verifier("core_a");

    s.rotate(&[])
        .expect_code(75)
        .stderr_has("check (for [[credentials]]) command");

    assert_eq!(
        s.env_text(),
        env_before,
        "the env file is back, byte for byte"
    );
    assert_eq!(
        s.verifier("core_a"),
        verifier_before,
        "the old verifier is back"
    );
    assert!(s.pg.can_login("core_a", OLD_A));
    // The service was restarted on the old file and logs in again.
    let pid = s.service.pid().expect("pid");
    s.service.wait_for_logins(20);
    let failed_now: Vec<_> = s
        .service
        .failed_logins()
        .into_iter()
        .filter(|l| l.ends_with(&format!("pid {pid}")))
        .collect();
    assert!(failed_now.is_empty(), "{failed_now:?}");
    assert!(!s.keys_dir().join("db-creds.pending").exists());
}

#[test]
fn a_read_only_env_file_exits_73_before_anything_changed() {
    let s = Setup::new(false, None);
    std::fs::set_permissions(&s.env, std::fs::Permissions::from_mode(0o444)).expect("chmod");
    let verifier_before = s.verifier("core_a");

    s.rotate(&[])
        .expect_code(73)
        .stderr_has("core.env cannot be rewritten");

    assert_eq!(s.verifier("core_a"), verifier_before);
    assert!(
        !s.keys_dir().join("db-creds-journal.json").exists(),
        "no journal entry"
    );
    assert!(!s.keys_dir().join("db-creds.pending").exists());
}

#[test]
fn the_new_password_never_reaches_output_the_server_log_or_a_command_line() {
    let s = Setup::new(false, None);
    let cmdlines = s.world.path("cmdlines.txt");
    // The restart command snapshots every process's command line while the rotation runs.
    s.world.edit_config(|t| {
        t.replace(
            "restart = [\"",
            &format!(
                "restart = [\"{}\", \"",
                snapshot_cmdlines_command(&cmdlines)
            ),
        )
    });
    s.service.start();
    let human = s.rotate(&[]);
    human.expect_code(0);
    let (_, first) = s.env_login();
    let json = s.rotate(&["--json"]);
    json.expect_code(0);
    let (_, second) = s.env_login();
    let status = run(s.world.ops().args(["--json", "rotate-db-creds", "status"]));
    status.expect_code(0);

    let log = s.pg.log_text();
    assert!(
        log.contains("ALTER ROLE \"core_a\" PASSWORD 'SCRAM-SHA-256$4096:"),
        "log_statement = all shows the verifier only"
    );
    let journal =
        std::fs::read_to_string(s.keys_dir().join("db-creds-journal.json")).expect("journal");
    let snap = std::fs::read_to_string(&cmdlines).expect("cmdline snapshot");
    assert!(
        snap.contains("rotate-db-creds"),
        "the snapshot saw the running tool"
    );
    for password in [&first, &second] {
        for (place, text) in [
            ("stdout", &human.stdout),
            ("stderr", &human.stderr),
            ("--json stdout", &json.stdout),
            ("--json stderr", &json.stderr),
            ("status", &status.stdout),
            ("the server log", &log),
            ("the journal", &journal),
            ("a command line", &snap),
        ] {
            assert!(
                !text.contains(password.as_str()),
                "the password is in {place}"
            );
        }
    }
}

#[test]
fn a_crash_after_set_is_undone_and_a_crash_while_switching_is_finished_by_resume() {
    let s = Setup::new(false, None);
    s.service.start();
    let env_before = s.env_text();
    let verifier_before = s.verifier("core_a");

    let crashed = run(s
        .world
        .ops()
        .env("RANSOMEYE_FAILPOINT", "db-creds-set")
        .arg("rotate-db-creds"));
    assert_ne!(crashed.code, 0, "the failpoint killed it");
    assert_ne!(
        s.verifier("core_a"),
        verifier_before,
        "the new verifier was set"
    );
    let pending = std::fs::metadata(s.keys_dir().join("db-creds.pending")).expect("pending file");
    assert_eq!(
        pending.mode() & 0o137,
        0,
        "the pending file has the key files' modes"
    );
    let journal = std::fs::metadata(s.keys_dir().join("db-creds-journal.json")).expect("journal");
    assert_eq!(journal.mode() & 0o137, 0, "the journal (old verifiers) too");
    s.rotate(&[]).expect_code(75).stderr_has("--resume");
    run(s.world.ops().args(["rotate-db-creds", "status"])).expect_code(75);
    s.rotate(&["--resume"]).expect_code(0);
    assert_eq!(s.env_text(), env_before);
    assert_eq!(
        s.verifier("core_a"),
        verifier_before,
        "undone: the old verifier is back"
    );
    assert!(s.pg.can_login("core_a", OLD_A));

    let crashed = run(s
        .world
        .ops()
        .env("RANSOMEYE_FAILPOINT", "db-creds-file-switched")
        .arg("rotate-db-creds"));
    assert_ne!(crashed.code, 0, "the failpoint killed it");
    s.rotate(&["--resume"]).expect_code(0);
    let (_, password) = s.env_login();
    assert_ne!(
        password, OLD_A,
        "finished: the env file holds the new password"
    );
    assert!(s.pg.can_login("core_a", &password));
    assert!(!s.pg.can_login("core_a", OLD_A));
    s.service.wait_for_logins(10);
    assert!(!s.keys_dir().join("db-creds.pending").exists());
    run(s.world.ops().args(["rotate-db-creds", "status"])).expect_code(0);
}

#[test]
fn a_dry_run_checks_everything_and_changes_nothing() {
    let s = Setup::new(true, None);
    let env_before = s.env_text();
    let verifier_before = s.verifier("core_b");
    let out = s.rotate(&["--dry-run"]);
    out.expect_code(0);
    assert!(
        out.stdout.contains("set a new password on core_b"),
        "{}",
        out.stdout
    );
    assert_eq!(s.env_text(), env_before);
    assert_eq!(s.verifier("core_b"), verifier_before);
    assert!(!s.keys_dir().join("db-creds-journal.json").exists());
    assert!(!s.keys_dir().join(".rotate-db-creds.lock").exists());
}

#[test]
fn the_tools_own_login_and_superusers_are_refused_with_78() {
    let s = Setup::new(false, None);
    let name_in_files = |from: &str, to: &str| {
        s.world
            .edit_config(|t| t.replace(&format!("role = \"{from}\""), &format!("role = \"{to}\"")));
        std::fs::write(
            &s.env,
            s.env_text()
                .replace(&format!("//{from}:"), &format!("//{to}:")),
        )
        .expect("write the env file");
    };
    name_in_files("core_a", "postgres");
    s.rotate(&[])
        .expect_code(78)
        .stderr_has("the tool does not rotate its own login");
    s.pg.execute("create role boss login superuser password 'x'");
    name_in_files("postgres", "boss");
    s.rotate(&[]).expect_code(78).stderr_has("is a superuser");
    assert!(
        !s.keys_dir().join("db-creds-journal.json").exists(),
        "nothing was started"
    );
}

#[test]
fn a_second_rotation_while_one_runs_exits_75_and_an_unknown_role_78() {
    let s = Setup::new(false, None);
    let verifier_before = s.verifier("core_a");
    let held = common::hold_flock(&s.keys_dir().join(".rotate-db-creds.lock"));
    s.rotate(&[])
        .expect_code(75)
        .stderr_has("another database credential rotation is running");
    drop(held);
    s.rotate(&["--role", "nobody"])
        .expect_code(78)
        .stderr_has("--role nobody: no [[credentials]] entry has that role");
    assert_eq!(s.verifier("core_a"), verifier_before);
    assert!(!s.keys_dir().join("db-creds-journal.json").exists());
}

#[test]
fn a_signal_before_the_files_switch_undoes_the_rotation() {
    let s = Setup::new(false, None);
    let env_before = s.env_text();
    let verifier_before = s.verifier("core_a");
    let mut running = common::Running::start(
        s.world
            .ops()
            .env("RANSOMEYE_FAILPOINT", "db-creds-pause-tested")
            .arg("rotate-db-creds"),
    );
    running.wait_for("failpoint db-creds-pause-tested: paused");
    assert_ne!(
        s.verifier("core_a"),
        verifier_before,
        "paused after set and test"
    );
    running.signal(nix::sys::signal::Signal::SIGTERM);
    running
        .finish()
        .expect_code(75)
        .stderr_has("interrupted by SIGTERM: the rotation was undone");
    assert_eq!(s.env_text(), env_before);
    assert_eq!(s.verifier("core_a"), verifier_before);
    assert!(!s.keys_dir().join("db-creds.pending").exists());
    let status = run(s.world.ops().args(["--json", "rotate-db-creds", "status"]));
    status.expect_code(0);
    assert_eq!(status.json()["rotations"][0]["state"], "rolled_back");
}

#[test]
fn a_resume_that_lost_the_pending_file_while_switching_changes_nothing_and_exits_65() {
    let s = Setup::new(false, None);
    let crashed = run(s
        .world
        .ops()
        .env("RANSOMEYE_FAILPOINT", "db-creds-file-switched")
        .arg("rotate-db-creds"));
    assert_ne!(crashed.code, 0, "the failpoint killed it");
    std::fs::remove_file(s.keys_dir().join("db-creds.pending")).expect("remove the pending file");
    let (_, password) = s.env_login();
    let verifier = s.verifier("core_a");

    s.rotate(&["--resume"])
        .expect_code(65)
        .stderr_has("was switching env files, but");

    assert_eq!(s.verifier("core_a"), verifier, "the new verifier stays");
    assert!(
        s.pg.can_login("core_a", &password),
        "the env file's password still works"
    );
}
