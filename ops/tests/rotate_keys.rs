//! `rotate-keys` end to end: the real binary, a real nats-server with JetStream, a real
//! PostgreSQL, and `ransomeye-agent-sim` playing the agents.
//!
//! Other tests share the bus, so a simulator may also see other tests' updates (signed by other
//! trust keys, which its agents reject); every wait below is for a line naming this test's
//! rotation.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{
    bus, field, finish, hold_flock, require_root, run, services, spawn, stored_message, tree,
    AgentSim, Mount, OwnBus, World, BIN,
};
use serde_json::Value;

/// A world whose configuration points at `bus`.
fn world_on(bus: &OwnBus) -> World {
    let w = World::initialised(BIN);
    w.edit_config(|t| t.replace(&services().nats_url, &bus.url()));
    w
}

/// Every file under `dir`: relative path → (mode, owner, group, bytes).
fn files(dir: &Path) -> BTreeMap<PathBuf, (u32, u32, u32, Vec<u8>)> {
    tree(dir)
        .into_iter()
        .map(|(path, e)| (path, (e.mode, e.uid, e.gid, e.bytes)))
        .collect()
}

/// What the rotation may change, to compare before and after.
#[derive(Debug, PartialEq)]
struct TrustFiles {
    config: Vec<u8>,
    signing_key: Vec<u8>,
    next_key: bool,
    retired: Vec<String>,
}

fn trust_files(w: &World) -> TrustFiles {
    TrustFiles {
        config: std::fs::read(&w.config).expect("config"),
        signing_key: std::fs::read(w.path("keys/signing.key")).expect("signing.key"),
        next_key: w.path("keys/signing.key.next").exists(),
        retired: w.list("keys/retired"),
    }
}

fn config_trust(w: &World) -> (u64, String, String) {
    let trust = w.parsed_config().trust;
    (trust.version, trust.key_id, trust.public_key)
}

/// The public key (hex) of the Ed25519 key file at `path`.
fn key_file_public(path: &std::path::Path) -> String {
    let der = std::fs::read(path).expect("key file");
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(&der).expect("Ed25519 PKCS#8");
    hex::encode(ring::signature::KeyPair::public_key(&pair).as_ref())
}

/// Exactly one of signing.key / signing.key.next holds the key the configuration names.
#[track_caller]
fn assert_one_active_key(w: &World) {
    let (_, _, public) = config_trust(w);
    let matching = ["keys/signing.key", "keys/signing.key.next"]
        .iter()
        .filter(|f| w.path(f).exists() && key_file_public(&w.path(f)) == public)
        .count();
    assert_eq!(matching, 1, "keys matching the configuration");
}

fn rotate(w: &World, args: &[&str]) -> common::Run {
    run(w.ops().arg("--json").arg("rotate-keys").args(args))
}

fn journal(w: &World) -> Value {
    serde_json::from_slice(&std::fs::read(w.path("keys/rotation-journal.json")).expect("journal"))
        .expect("journal JSON")
}

fn latest_rotation_id(w: &World) -> String {
    let j = journal(w);
    let rotations = j["rotations"].as_array().expect("rotations");
    rotations.last().expect("a rotation")["rotation_id"]
        .as_str()
        .expect("id")
        .to_string()
}

#[test]
fn a_quorum_of_85_percent_commits_and_agents_switch() {
    let w = World::initialised(BIN);
    let (version, old_id, old_public) = config_trust(&w);
    let mut sim = AgentSim::start(&w, 40, 0.85, 0.0);
    let out = rotate(&w, &["--timeout", "30"]);
    out.expect_code(0);
    let report = out.json();
    assert_eq!(report["status"], "committed");
    assert_eq!(report["active"], 40);
    assert_eq!(report["needed"], 33);
    assert!(report["acked"].as_u64().expect("acked") >= 33);
    let rotation = report["rotation_id"].as_str().expect("id").to_string();

    // The update is kept in the JetStream stream for agents that were offline.
    let seq = report["update_seq"].as_u64().expect("update_seq");
    let stored = stored_message(&bus::api(
        &services().nats_url,
        "$JS.API.STREAM.MSG.GET.RANSOMEYE_TRUST",
        serde_json::json!({ "seq": seq }),
    ));
    assert_eq!(stored["type"], "trust_update");
    assert_eq!(stored["rotation_id"], rotation.as_str());

    let (new_version, new_id, new_public) = config_trust(&w);
    assert_eq!(new_version, version + 1);
    assert_ne!(new_id, old_id);
    assert_eq!(key_file_public(&w.path("keys/signing.key")), new_public);
    assert!(!w.path("keys/signing.key.next").exists());
    let retired = w.path(&format!("keys/retired/{old_id}"));
    assert_eq!(key_file_public(&retired), old_public);
    let mode = std::fs::metadata(&retired)
        .expect("retired")
        .permissions()
        .mode();
    assert_eq!(mode & 0o037, 0, "retired key mode {mode:o}");
    assert_eq!(journal(&w)["rotations"][0]["state"], "committed");

    let line = sim.event("commit", &rotation);
    assert_eq!(field(&line, "version"), new_version.to_string());
    // Silent agents verified the update too (they only do not answer), so all 40 switch.
    assert_eq!(field(&line, "switched"), "40", "{line}");

    let status = run(w.ops().args(["--json", "rotate-keys", "status"]));
    status.expect_code(0);
    let status = status.json();
    assert_eq!(status["key_id"], new_id.as_str());
    assert_eq!(status["retired_key_ids"][0], old_id.as_str());
    assert_eq!(status["unfinished_rotation"], Value::Null);

    // The simulator's agents now trust the new key: a second rotation commits too.
    rotate(&w, &["--timeout", "30"]).expect_code(0);
    assert_eq!(config_trust(&w).0, version + 2);
}

#[test]
fn seventy_percent_aborts_and_changes_nothing() {
    let w = World::initialised(BIN);
    let before = trust_files(&w);
    let mut sim = AgentSim::start(&w, 20, 0.70, 0.0);
    let out = rotate(&w, &["--timeout", "2"]);
    out.expect_code(75)
        .stderr_has("no quorum: 14 of 20 active agents acked, 17 needed");
    assert_eq!(trust_files(&w), before);
    let rotation = latest_rotation_id(&w);
    assert_eq!(journal(&w)["rotations"][0]["state"], "aborted");
    assert_eq!(journal(&w)["rotations"][0]["outcome_published"], true);
    let line = sim.event("abort", &rotation);
    assert_eq!(field(&line, "dropped"), "20", "{line}");
}

#[test]
fn forged_acks_never_count() {
    let w = World::initialised(BIN);
    let before = trust_files(&w);
    let _sim = AgentSim::start(&w, 40, 0.70, 0.20);
    let out = rotate(&w, &["--timeout", "2"]);
    out.expect_code(75)
        .stderr_has("28 of 40 active agents acked");
    // Eight forgers, two of each kind: wrong key, unknown agent, replay, wrong version.
    out.stderr_has("bad_signature 2")
        .stderr_has("unknown_agent 2")
        .stderr_has("stale 4");
    assert_eq!(trust_files(&w), before);
    let counts = &journal(&w)["rotations"][0]["counts"];
    assert_eq!(counts["acked"], 28);
    assert_eq!(counts["ignored"]["stale"], 4);
}

#[test]
fn an_unreachable_bus_changes_nothing() {
    let w = World::initialised(BIN);
    w.edit_config(|t| t.replace(&services().nats_url, "nats://127.0.0.1:1"));
    let before = trust_files(&w);
    rotate(&w, &[])
        .expect_code(69)
        .stderr_has("nats://127.0.0.1:1");
    assert_eq!(trust_files(&w), before);
    assert!(!w.path("keys/rotation-journal.json").exists());
}

#[test]
fn no_active_agents_is_a_temporary_failure() {
    let w = World::initialised(BIN);
    w.db().execute(
        "insert into agents (id, hostname, public_key, status) \
         values (gen_random_uuid(), 'retired-host', '\\x00', 'decommissioned')",
    );
    let before = trust_files(&w);
    rotate(&w, &[])
        .expect_code(75)
        .stderr_has("no active agents");
    assert_eq!(trust_files(&w), before);
}

#[test]
fn a_loose_signing_key_is_refused() {
    let w = World::initialised(BIN);
    std::fs::set_permissions(
        w.path("keys/signing.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    rotate(&w, &[]).expect_code(77).stderr_has("signing.key");
    assert!(!w.path("keys/signing.key.next").exists());
}

#[test]
fn a_failed_configuration_write_aborts_and_keeps_the_old_key() {
    let w = World::initialised(BIN);
    let before = trust_files(&w);
    let mut sim = AgentSim::start(&w, 10, 1.0, 0.0);
    let out = run(w
        .ops()
        .env("RANSOMEYE_FAILPOINT", "rotate-config-write-fails")
        .args(["rotate-keys", "--timeout", "30"]));
    out.expect_code(74).stderr_has("could not be written");
    assert_eq!(trust_files(&w), before);
    assert_eq!(journal(&w)["rotations"][0]["state"], "aborted");
    sim.event("abort", &latest_rotation_id(&w));
}

#[test]
fn a_crash_at_each_step_leaves_one_active_key_and_resume_finishes() {
    for point in [
        "rotate-after-stage",
        "rotate-after-journal",
        "rotate-after-publish",
        "rotate-after-decision",
        "rotate-after-config",
        "rotate-after-retire",
        "rotate-after-promote",
        "rotate-after-abort-publish",
    ] {
        let w = World::initialised(BIN);
        let (version, ..) = config_trust(&w);
        // All agents ack, except at the abort crash point, where none do.
        let ack = if point == "rotate-after-abort-publish" {
            0.0
        } else {
            1.0
        };
        let _sim = AgentSim::start(&w, 5, ack, 0.0);
        let timeout = if ack == 0.0 { "1" } else { "30" };
        let crashed = run(w.ops().env("RANSOMEYE_FAILPOINT", point).args([
            "rotate-keys",
            "--timeout",
            timeout,
        ]));
        assert_ne!(crashed.code, 0, "{point}: the failpoint did not fire");
        assert_one_active_key(&w);

        let resumed = rotate(&w, &["--resume"]);
        assert_one_active_key(&w);
        assert!(
            !w.path("keys/signing.key.next").exists(),
            "{point}: staged key left"
        );
        let (after, ..) = config_trust(&w);
        match resumed.code {
            0 => match resumed.json()["status"].as_str() {
                Some("committed") => assert_eq!(after, version + 1, "{point}"),
                // Crashed before anything was journaled: nothing to resume, nothing changed.
                Some("nothing_to_resume") => {
                    assert_eq!(point, "rotate-after-stage");
                    assert_eq!(after, version);
                }
                other => panic!("{point}: status {other:?}"),
            },
            75 => assert_eq!(after, version, "{point}: aborted but the version changed"),
            code => panic!("{point}: resume exited {code}: {}", resumed.stderr),
        }
        if let Ok(text) = std::fs::read(w.path("keys/rotation-journal.json")) {
            let j: Value = serde_json::from_slice(&text).expect("journal");
            let state = j["rotations"][0]["state"].as_str().expect("state");
            assert!(
                state == "committed" || state == "aborted",
                "{point}: state {state}"
            );
        }
        // A new rotation can start afterwards.
        rotate(&w, &["--dry-run"]).expect_code(0);
    }
}

#[test]
fn an_unfinished_rotation_blocks_a_new_one_until_resumed() {
    let w = World::initialised(BIN);
    let _sim = AgentSim::start(&w, 5, 1.0, 0.0);
    let crashed = run(w
        .ops()
        .env("RANSOMEYE_FAILPOINT", "rotate-after-publish")
        .args(["rotate-keys", "--timeout", "30"]));
    assert_ne!(crashed.code, 0);
    rotate(&w, &[])
        .expect_code(75)
        .stderr_has("is unfinished")
        .stderr_has("--resume");
    rotate(&w, &["--resume"]).expect_code(0);
    rotate(&w, &["--resume"]).expect_code(0);
    assert_eq!(
        rotate(&w, &["--resume"]).json()["status"],
        "nothing_to_resume"
    );
}

#[test]
fn rollback_needs_yes_and_returns_to_the_previous_key_as_a_new_version() {
    let w = World::initialised(BIN);
    let (version, old_id, old_public) = config_trust(&w);
    let _sim = AgentSim::start(&w, 5, 1.0, 0.0);
    rotate(&w, &["--rollback", "--yes"])
        .expect_code(66)
        .stderr_has("nothing to roll back to");
    rotate(&w, &["--timeout", "30"]).expect_code(0);
    let (_, middle_id, _) = config_trust(&w);
    rotate(&w, &["--rollback"])
        .expect_code(64)
        .stderr_has("compromised")
        .stderr_has("--yes");
    let out = rotate(&w, &["--rollback", "--yes", "--timeout", "30"]);
    out.expect_code(0);
    assert_eq!(out.json()["kind"], "rollback");
    let (after, id, public) = config_trust(&w);
    assert_eq!((after, &id, &public), (version + 2, &old_id, &old_public));
    assert_eq!(key_file_public(&w.path("keys/signing.key")), old_public);
    assert_eq!(w.list("keys/retired"), vec![middle_id]);
}

#[test]
fn a_second_rotation_waits_for_the_first() {
    let w = World::initialised(BIN);
    let _held = hold_flock(&w.path("keys/.rotate-keys.lock"));
    rotate(&w, &[])
        .expect_code(75)
        .stderr_has("another key rotation is running");
}

#[test]
fn backups_signed_before_a_rotation_still_verify() {
    let w = World::initialised(BIN);
    run(w.ops().arg("backup")).expect_code(0);
    let _sim = AgentSim::start(&w, 5, 1.0, 0.0);
    rotate(&w, &["--timeout", "30"]).expect_code(0);
    run(w.ops().args(["verify", "--all"])).expect_code(0);
    run(w.ops().arg("backup")).expect_code(0);
    run(w.ops().args(["verify", "--all"])).expect_code(0);
    // Without the retired key, the old backup's manifest no longer verifies.
    std::fs::remove_dir_all(w.path("keys/retired")).expect("remove retired");
    run(w.ops().args(["verify", "--all"]))
        .expect_code(65)
        .stderr_has("nor a retired one");
}

#[test]
fn resume_keeps_the_quorum_the_rotation_started_with() {
    let w = World::initialised(BIN);
    let before = trust_files(&w);
    // 18 of 20 ack: enough for the default 0.8, not for the 0.95 this rotation asks for.
    let _sim = AgentSim::start(&w, 20, 0.9, 0.0);
    let crashed = run(w
        .ops()
        .env("RANSOMEYE_FAILPOINT", "rotate-after-publish")
        .args(["rotate-keys", "--timeout", "2", "--quorum", "0.95"]));
    assert_ne!(crashed.code, 0);
    rotate(&w, &["--resume", "--quorum", "0.5"]).expect_code(64);
    rotate(&w, &["--resume"])
        .expect_code(75)
        .stderr_has("18 of 20 active agents acked, 20 needed");
    assert_eq!(trust_files(&w), before);
}

#[test]
fn temp_files_of_a_killed_rotation_are_removed_by_the_next_run() {
    let w = World::initialised(BIN);
    let leftovers = [
        w.path("keys/.signing.key.next.tmp-abc123"),
        w.path("keys/.rotation-journal.json.tmp-abc123"),
        w.config.with_file_name(".kernel.toml.tmp-abc123"),
    ];
    for file in &leftovers {
        std::fs::write(file, b"half written").expect("leftover");
    }
    let _sim = AgentSim::start(&w, 3, 1.0, 0.0);
    rotate(&w, &["--timeout", "30"]).expect_code(0);
    for file in &leftovers {
        assert!(!file.exists(), "{} left", file.display());
    }
}

#[test]
fn a_read_only_configuration_directory_is_refused_before_anything_is_generated() {
    let w = World::initialised(BIN);
    let ro = w.path("ro-etc");
    std::fs::create_dir(&ro).expect("mkdir");
    let disk = Mount::tmpfs(&ro, "64k");
    let config = ro.join("kernel.toml");
    std::fs::copy(&w.config, &config).expect("copy config");
    disk.remount_read_only();
    let before = trust_files(&w);
    let out = run(w
        .ops_with_config(&config)
        .args(["rotate-keys", "--timeout", "5"]));
    out.expect_code(74)
        .stderr_has("is not writable")
        .stderr_has("nothing was generated or published");
    assert_eq!(trust_files(&w), before);
    assert!(!w.path("keys/rotation-journal.json").exists());
}

/// Runs `rotate-keys args` and asserts that no file under the world's directory (keys,
/// configuration, archive, backups) changed in bytes, mode or owner.
#[track_caller]
fn dry(w: &World, args: &[&str]) -> common::Run {
    let before = files(w.dir.path());
    let out = rotate(w, args);
    assert_eq!(
        files(w.dir.path()),
        before,
        "rotate-keys {args:?} changed files\n{}",
        out.stderr
    );
    out
}

/// The steps a dry run reports it would take, as one text.
fn would(out: &common::Run) -> String {
    out.json()["would"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

#[test]
fn dry_runs_change_nothing_and_say_what_they_would_finish_or_clean() {
    let bus = OwnBus::start();
    let w = world_on(&bus);
    let mut sim = AgentSim::start_on(&w, &bus.url(), 5, 1.0, 0.0);

    // A fresh bus: the dry run does not create the trust stream, it says it would.
    let out = dry(&w, &["--dry-run"]);
    out.expect_code(0);
    assert!(
        would(&out).contains("create the JetStream stream"),
        "{}",
        out.stdout
    );
    assert!(!bus.stream_exists());
    dry(&w, &["--rollback", "--dry-run"]).expect_code(66);

    // Killed before it journaled: a staged key that was never published, and temp files.
    let crashed = run(w
        .ops()
        .env("RANSOMEYE_FAILPOINT", "rotate-after-stage")
        .args(["rotate-keys", "--timeout", "30"]));
    assert_ne!(crashed.code, 0);
    assert!(w.path("keys/signing.key.next").exists());
    std::fs::write(w.path("keys/.rotation-journal.json.tmp-abc123"), b"half").expect("temp");
    std::fs::write(w.config.with_file_name(".kernel.toml.tmp-abc123"), b"half").expect("temp");
    for args in [&["--dry-run"][..], &["--resume", "--dry-run"]] {
        let out = dry(&w, args);
        out.expect_code(0);
        let steps = would(&out);
        assert!(
            steps.contains("remove signing.key.next"),
            "{args:?}: {steps}"
        );
        assert!(
            steps.contains(".rotation-journal.json.tmp-abc123"),
            "{args:?}: {steps}"
        );
        assert!(
            steps.contains(".kernel.toml.tmp-abc123"),
            "{args:?}: {steps}"
        );
    }

    // A pending rotation (killed after publishing): a plain dry run refuses as a run would,
    // a resume's dry run says it would re-publish.
    let crashed = run(w
        .ops()
        .env("RANSOMEYE_FAILPOINT", "rotate-after-publish")
        .args(["rotate-keys", "--timeout", "30"]));
    assert_ne!(crashed.code, 0);
    assert_eq!(journal(&w)["rotations"][0]["state"], "pending");
    dry(&w, &["--dry-run"])
        .expect_code(75)
        .stderr_has("--resume");
    let out = dry(&w, &["--resume", "--dry-run"]);
    out.expect_code(0);
    assert!(
        would(&out).contains("re-publish the same TrustUpdate"),
        "{}",
        out.stdout
    );
    rotate(&w, &["--resume"]).expect_code(0);

    // Committing (killed after the commit point): the resume's dry run lists the steps left.
    let crashed = run(w
        .ops()
        .env("RANSOMEYE_FAILPOINT", "rotate-after-config")
        .args(["rotate-keys", "--timeout", "30"]));
    assert_ne!(crashed.code, 0);
    let out = dry(&w, &["--resume", "--dry-run"]);
    out.expect_code(0);
    let steps = would(&out);
    assert!(steps.contains("copy the old key to retired/"), "{steps}");
    assert!(
        steps.contains("rename signing.key.next over signing.key"),
        "{steps}"
    );
    assert!(!steps.contains("write [trust]"), "already written: {steps}");
    rotate(&w, &["--resume"]).expect_code(0);
    sim.event("commit", &latest_rotation_id(&w));

    // Aborting (no agent left to ack; killed after the decision).
    drop(sim);
    let crashed = run(w
        .ops()
        .env("RANSOMEYE_FAILPOINT", "rotate-after-decision")
        .args(["rotate-keys", "--timeout", "1"]));
    assert_ne!(crashed.code, 0);
    assert_eq!(
        journal(&w)["rotations"]
            .as_array()
            .expect("rotations")
            .last()
            .expect("one")["state"],
        "aborting"
    );
    let out = dry(&w, &["--resume", "--dry-run"]);
    out.expect_code(0);
    assert!(
        would(&out).contains("publish the TrustAbort"),
        "{}",
        out.stdout
    );
    rotate(&w, &["--resume"]).expect_code(75);
    assert!(!w.path("keys/signing.key.next").exists());
}

#[test]
fn a_rotation_changes_only_the_trust_values_of_a_commented_configuration() {
    require_root("gives the configuration another owner");
    let w = World::initialised(BIN);
    let (version, id, public) = config_trust(&w);
    // The operator's own layout: comments everywhere, blank lines, another key order, single
    // quotes, trailing comments on the values rotate-keys changes.
    let text = std::fs::read_to_string(&w.config).expect("config");
    let (head, _) = text
        .split_once("[trust]")
        .expect("[trust] is the last section");
    let head = head
        .lines()
        .map(|l| {
            if l.starts_with('[') {
                format!("{l}   # section comment")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let original = format!(
        "# RansomEye kernel configuration, edited by hand\n\n{head}\n\
         # The trust root: rotate-keys rewrites these three values.\n[trust]\n\
         public_key = \"{public}\"   # Ed25519\n\n\
         version = {version}          # one more per rotation\n\
         key_id = '{id}'\n# end of file\n"
    );
    std::fs::write(&w.config, &original).expect("write config");
    std::fs::set_permissions(&w.config, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    std::os::unix::fs::chown(&w.config, Some(0), Some(65534)).expect("chown");

    let _sim = AgentSim::start(&w, 3, 1.0, 0.0);
    rotate(&w, &["--timeout", "30"]).expect_code(0);

    let (new_version, new_id, new_public) = config_trust(&w);
    assert_eq!(new_version, version + 1);
    let expected = original
        .replace(
            &format!("public_key = \"{public}\"   #"),
            &format!("public_key = \"{new_public}\"   #"),
        )
        .replace(
            &format!("version = {version}          #"),
            &format!("version = {new_version}          #"),
        )
        .replace(
            &format!("key_id = '{id}'"),
            &format!("key_id = \"{new_id}\""),
        );
    let after = std::fs::read_to_string(&w.config).expect("config");
    let changed: Vec<(&str, &str)> = original
        .lines()
        .zip(after.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(changed.len(), 3, "{changed:#?}");
    assert_eq!(after, expected);
    let meta = std::fs::metadata(&w.config).expect("metadata");
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    assert_eq!((meta.uid(), meta.gid()), (0, 65534));
}

#[test]
fn an_abort_the_bus_did_not_take_is_journaled_shown_and_published_by_resume() {
    let mut bus = OwnBus::start();
    let w = world_on(&bus);
    let before = trust_files(&w);
    // Nobody acks: the rotation aborts when --timeout ends, with the bus gone by then.
    let mut sim = AgentSim::start_on(&w, &bus.url(), 5, 0.0, 0.0);
    let started = Instant::now();
    let child = spawn(w.ops().args(["--json", "rotate-keys", "--timeout", "4"]));
    let line = sim.wait_for(|l| l.starts_with("update rotation="));
    let published = Instant::now();
    let rotation = field(&line, "rotation");
    bus.kill();
    let out = finish(child);
    let elapsed = published.elapsed();
    out.expect_code(75)
        .stderr_has("TrustAbort was not published")
        .stderr_has("--resume");
    // From the publication: --timeout plus the 5 s bound on publishing the outcome (and 1.5 s
    // for the journal and the process to end on a loaded machine).
    assert!(
        elapsed < Duration::from_secs_f64(4.0 + 5.0 + 1.5),
        "took {elapsed:?} after the publication ({:?} in all)",
        started.elapsed()
    );

    let entry = journal(&w)["rotations"][0].clone();
    assert_eq!(entry["rotation_id"], rotation.as_str());
    assert_eq!(entry["state"], "aborting");
    assert_eq!(entry["outcome_published"], false);
    assert!(entry["outcome_error"].as_str().is_some(), "{entry}");
    assert_eq!(
        trust_files(&w),
        before,
        "the staged key is removed all the same"
    );

    let status = run(w.ops().args(["--json", "rotate-keys", "status"]));
    status.expect_code(75);
    assert_eq!(status.json()["unfinished_rotation"], rotation.as_str());
    run(w.ops().args(["rotate-keys", "status"]))
        .expect_code(75)
        .stderr_has("TrustAbort is not published yet");
    rotate(&w, &[]).expect_code(75).stderr_has("--resume");
    rotate(&w, &["--resume"]).expect_code(69);

    bus.restart();
    rotate(&w, &["--resume"])
        .expect_code(75)
        .stderr_has("aborted");
    let entry = journal(&w)["rotations"][0].clone();
    assert_eq!(entry["state"], "aborted");
    assert_eq!(entry["outcome_published"], true);
    let stored = bus.last_update();
    assert_eq!(stored["type"], "trust_abort");
    assert_eq!(stored["rotation_id"], rotation.as_str());
    run(w.ops().args(["rotate-keys", "status"])).expect_code(0);
    assert_eq!(trust_files(&w), before);
}

/// Publishes `count` junk messages on `broadcast.updates` through JetStream, as anyone allowed to
/// publish there could: garbage, and well-formed updates, commits and aborts signed by keys no
/// agent trusts. Also checks that an oversized message is refused by the stream.
fn publish_junk(bus: &OwnBus, count: usize, version: u64) {
    use ransomeye_trust::{Broadcast, RotationId, TrustAbort, TrustCommit, TrustUpdate};
    let url = bus.url();
    common::block_on(async move {
        let client = async_nats::connect(&url).await.expect("nats");
        let stored = |reply: async_nats::Message| {
            serde_json::from_slice::<Value>(&reply.payload).expect("JetStream ack")
        };
        for i in 0..count {
            let stranger =
                ring::signature::Ed25519KeyPair::from_seed_unchecked(&[(i % 200) as u8 + 1; 32])
                    .expect("key");
            let update = TrustUpdate::new(
                RotationId::generate().expect("random"),
                version + 1 + (i % 2) as u64,
                &stranger,
                &stranger,
                1,
                u64::MAX / 2,
            );
            let junk = match i % 4 {
                0 => format!("junk {i}").into_bytes(),
                1 => Broadcast::Update(update).to_json(),
                2 => Broadcast::Commit(TrustCommit::new(&update, &stranger, 2)).to_json(),
                _ => Broadcast::Abort(TrustAbort::new(&update, &stranger, 2)).to_json(),
            };
            let reply = client
                .request("broadcast.updates", junk.into())
                .await
                .expect("publish junk");
            assert!(
                stored(reply).get("seq").is_some(),
                "junk {i} was not stored"
            );
        }
        let huge = vec![b'x'; 8192];
        let reply = client
            .request("broadcast.updates", huge.into())
            .await
            .expect("publish a huge message");
        assert!(
            stored(reply).get("error").is_some(),
            "an 8 KiB message was stored"
        );
    });
}

#[test]
fn agents_back_during_a_rotation_take_part_and_junk_in_the_stream_changes_nothing() {
    let bus = OwnBus::start();
    let w = world_on(&bus);
    let (version, ..) = config_trust(&w);
    // A is online throughout; B is offline since before the first rotation and catches up from
    // the stream when it comes back.
    let mut a = AgentSim::start_on(&w, &bus.url(), 5, 1.0, 0.0);
    let mut b = AgentSim::start_held(&w, &bus.url(), 5, &["--catch-up"]);
    // First rotation: A's five acks suffice (strictly more than 0.3 of 10).
    rotate(&w, &["--timeout", "30", "--quorum", "0.3"]).expect_code(0);

    // The stream is bounded, and never by dropping old messages.
    let info = bus.api("$JS.API.STREAM.INFO.RANSOMEYE_TRUST", Value::Null);
    assert_eq!(info["config"]["discard"], "new", "{info}");
    assert_eq!(info["config"]["max_msg_size"], 4096, "{info}");
    let year_ns = 365 * 24 * 3600 * 1_000_000_000u64;
    assert!(
        info["config"]["max_age"].as_u64().expect("max_age") >= year_ns,
        "{info}"
    );
    assert!(
        info["config"]["max_bytes"].as_i64().expect("max_bytes") > 0,
        "{info}"
    );

    publish_junk(&bus, 300, version + 1);

    // C comes online only after the second rotation's update was published, without
    // catch-up: only the operator's re-publication can reach it.
    let mut c = AgentSim::start_held(&w, &bus.url(), 5, &[]);
    let rotating = spawn(w.ops().args(["--json", "rotate-keys", "--timeout", "30"]));
    let second = version + 2;
    let line = a.wait_for(|l| {
        l.starts_with("update rotation=")
            && l.contains(&format!(" version={second} "))
            && l.contains(" acked=5 ")
    });
    let rotation = field(&line, "rotation");
    // Catching up through the junk is bounded: the stream's limits bound what there is to read.
    let reading = Instant::now();
    let caught = b
        .connect()
        .into_iter()
        .find(|l| l.starts_with("catch-up"))
        .expect("a catch-up line");
    let read_for = reading.elapsed();
    assert!(
        read_for < Duration::from_secs(10),
        "catching up took {read_for:?}"
    );
    c.connect();
    assert_eq!(field(&caught, "applied"), "1", "{caught}");
    assert_eq!(
        field(&caught, "version"),
        (version + 1).to_string(),
        "{caught}"
    );
    assert_eq!(field(&caught, "pending"), rotation, "{caught}");
    assert_eq!(field(&caught, "acks"), "5", "{caught}");
    assert!(
        field(&caught, "read").parse::<usize>().expect("read") > 300,
        "{caught}"
    );

    let out = finish(rotating);
    out.expect_code(0);
    let report = out.json();
    assert_eq!(report["rotation_id"], rotation.as_str());
    assert_eq!(report["active"], 15);
    assert!(report["acked"].as_u64().expect("acked") >= 13, "{report}");
    for sim in [&mut a, &mut b, &mut c] {
        let line = sim.event("commit", &rotation);
        assert_eq!(field(&line, "switched"), "5", "{line}");
    }
    assert_eq!(config_trust(&w).0, second);
}
