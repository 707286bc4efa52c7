//! `alerts send` and `alerts forward` against a real nats-server (one per test, so the stream is
//! fresh) and a real rsyslogd (UDP, TCP, TLS and RELP inputs writing files); what arrived is read
//! by an independent parser (scripts/syslog-check.py, written from the RFCs).

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::{block_on, is_probe, run, OwnBus, Rsyslog, Run, Running, World, BIN};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

/// A world whose bus is `bus`.
fn ops(w: &World, bus: &OwnBus) -> Command {
    let mut cmd = w.ops();
    cmd.env("RANSOMEYE_NATS_URL", bus.url());
    cmd
}

/// `scripts/syslog-check.py FORMAT` over the lines received on `transport` (probes left out).
#[track_caller]
fn parsed(rs: &Rsyslog, transport: &str, format: &str) -> Vec<Value> {
    let lines: Vec<String> = rs
        .lines(transport)
        .into_iter()
        .filter(|l| !is_probe(l))
        .collect();
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), lines.join("\n")).expect("write lines");
    let out = Command::new("python3")
        .arg(common::repo_root().join("scripts/syslog-check.py"))
        .arg(format)
        .arg(file.path())
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "the independent parser refused a message: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("parser output")
}

fn param<'a>(m: &'a Value, element: &str, name: &str) -> Option<&'a str> {
    m["sd"][element]
        .as_array()?
        .iter()
        .find(|p| p[0] == name)
        .and_then(|p| p[1].as_str())
}

/// Publishes `n` alerts straight to the stream (as sensors do; quicker than `n` runs of `send`),
/// each confirmed by JetStream; returns their ids. The stream must exist.
fn publish_many(bus: &OwnBus, n: usize, tag: &str) -> Vec<String> {
    let url = bus.url();
    let tag = tag.to_string();
    block_on(async move {
        let client = async_nats::connect(&url).await.expect("nats");
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let id = format!("{tag}-{i:06}");
            let alert = json!({
                "id": id, "severity": "medium", "title": format!("alert {i}"), "host": "ws-1",
                "source": "edr", "raised_at": "2026-12-01T10:00:00.000001Z",
                "metadata": { "n": i },
            });
            let ack = client
                .request("alerts.medium", alert.to_string().into())
                .await
                .expect("publish");
            let ack: Value = serde_json::from_slice(&ack.payload).expect("ack");
            assert!(ack["seq"].is_u64(), "not stored: {ack}");
            ids.push(id);
        }
        ids
    })
}

/// How many times each id arrived on `transport` (its MSGID; these ids are short).
fn arrivals(rs: &Rsyslog, transport: &str) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for m in parsed(rs, transport, "rfc5424") {
        if let Some(id) = m["msgid"].as_str() {
            *seen.entry(id.to_string()).or_insert(0) += 1;
        }
    }
    seen
}

fn forward_once(w: &World, bus: &OwnBus, transport: &str, target: &str) -> Run {
    run(ops(w, bus).args([
        "--json",
        "alerts",
        "forward",
        "--once",
        "--transport",
        transport,
        "--target",
        target,
    ]))
}

#[test]
fn send_stores_the_alert_and_refuses_bad_arguments_without_publishing() {
    let w = World::initialised(BIN);
    let bus = OwnBus::start();
    for (args, needle) in [
        (
            vec!["--severity", "severe", "--title", "t"],
            "is not a severity",
        ),
        (
            vec!["--severity", "high", "--title", "t", "--meta", "novalue"],
            "is not KEY=VALUE",
        ),
        (
            vec![
                "--severity",
                "high",
                "--title",
                "t",
                "--raised-at",
                "yesterday",
            ],
            "RFC 3339",
        ),
    ] {
        run(ops(&w, &bus).args(["alerts", "send"]).args(&args))
            .expect_code(64)
            .stderr_has(needle);
    }
    let stream = bus.api("$JS.API.STREAM.INFO.RANSOMEYE_ALERTS", Value::Null);
    assert!(
        stream.get("error").is_some(),
        "a refused send created the stream: {stream}"
    );

    let out = run(ops(&w, &bus).args([
        "--json",
        "alerts",
        "send",
        "--severity",
        "high",
        "--title",
        "backup failed",
        "--meta",
        "job=nightly",
        "--id",
        "a-1",
        "--raised-at",
        "2026-12-01T21:44:13.5+01:00",
    ]));
    out.expect_code(0);
    let report = out.json();
    assert_eq!(report["subject"], "alerts.high");
    assert_eq!(report["duplicate"], false);
    let stored = common::stored_message(&bus.api(
        "$JS.API.STREAM.MSG.GET.RANSOMEYE_ALERTS",
        json!({ "seq": report["seq"] }),
    ));
    assert_eq!(stored["id"], "a-1");
    assert_eq!(stored["severity"], "high");
    assert_eq!(stored["raised_at"], "2026-12-01T21:44:13.5+01:00");
    assert_eq!(stored["metadata"]["job"], "nightly");
    assert_eq!(stored["source"], "ransomeye-ops");
    // The same id again is stored once.
    let again = run(ops(&w, &bus).args([
        "--json",
        "alerts",
        "send",
        "--severity",
        "high",
        "--title",
        "backup failed",
        "--id",
        "a-1",
    ]));
    again.expect_code(0);
    assert_eq!(again.json()["duplicate"], true);
    let info = bus.api("$JS.API.STREAM.INFO.RANSOMEYE_ALERTS", Value::Null);
    assert_eq!(info["state"]["messages"], 1, "{info}");
    assert_eq!(info["config"]["discard"], "new", "{info}");
}

#[test]
fn relp_delivers_every_field_as_an_independent_parser_reads_it() {
    let w = World::initialised(BIN);
    let bus = OwnBus::start();
    let rs = Rsyslog::start();
    run(ops(&w, &bus).args([
        "alerts",
        "send",
        "--severity",
        "critical",
        "--title",
        "Mass encryption on ws-042 ✓",
        "--host",
        "ws-042",
        "--source",
        "edr",
        "--id",
        "0f6c2a8e-9b7d-4e1f-8a3b-5c7d9e1f2a3b",
        "--raised-at",
        "2026-12-01T23:44:13.123456789+02:00",
        "--meta",
        r#"path=C:\a"b]c"#,
        "--meta",
        "user=élodie",
    ]))
    .expect_code(0);
    // A value that is not UTF-8 (a file name, say).
    {
        use std::os::unix::ffi::OsStringExt;
        let meta = std::ffi::OsString::from_vec(b"file=report\xff.docx".to_vec());
        run(ops(&w, &bus)
            .args([
                "alerts",
                "send",
                "--severity",
                "info",
                "--title",
                "odd",
                "--id",
                "b-2",
            ])
            .args(["--raised-at", "2026-12-01T00:00:00Z", "--meta"])
            .arg(meta))
        .expect_code(0);
    }
    // A message that is not an alert at all is forwarded too.
    block_on({
        let url = bus.url();
        async move {
            let c = async_nats::connect(&url).await.expect("nats");
            let payload = bytes::Bytes::from_static(b"not json ]\"\xfe");
            c.request("alerts.low", payload).await.expect("stored");
        }
    });

    let out = forward_once(&w, &bus, "relp", &rs.target("relp"));
    out.expect_code(0);
    assert_eq!(out.json()["forwarded"], 3, "{}", out.stdout);
    let msgs = parsed(&rs, "relp", "rfc5424");
    assert_eq!(msgs.len(), 3, "{msgs:?}");

    let m = &msgs[0];
    assert_eq!(m["facility"], 16);
    assert_eq!(m["severity"], 2);
    assert_eq!(m["timestamp"], "2026-12-01T21:44:13.123456Z");
    assert_eq!(m["hostname"], "ws-042");
    assert_eq!(m["app_name"], "edr");
    assert_eq!(m["procid"], Value::Null);
    assert_eq!(m["msgid"], "0f6c2a8e9b7d4e1f8a3b5c7d9e1f2a3b");
    assert_eq!(m["msg"], "Mass encryption on ws-042 ✓");
    assert_eq!(
        param(m, "alert@32473", "id"),
        Some("0f6c2a8e-9b7d-4e1f-8a3b-5c7d9e1f2a3b")
    );
    assert_eq!(param(m, "alert@32473", "severity"), Some("critical"));
    assert_eq!(
        param(m, "alert@32473", "raisedAt"),
        Some("2026-12-01T23:44:13.123456789+02:00")
    );
    assert_eq!(param(m, "meta@32473", "path"), Some(r#"C:\a"b]c"#));
    assert_eq!(param(m, "meta@32473", "user"), Some("élodie"));
    assert_eq!(param(m, "timeQuality", "tzKnown"), Some("1"));
    assert!(matches!(
        param(m, "timeQuality", "isSynced"),
        Some("0" | "1")
    ));

    let odd = &msgs[1];
    assert_eq!(odd["severity"], 6);
    assert_eq!(param(odd, "meta@32473", "file"), Some("report\\xFF.docx"));

    let bad = &msgs[2];
    assert_eq!(bad["msgid"], "malformed");
    assert_eq!(bad["severity"], 5);
    // Its bytes, the invalid one written \xFE.
    assert_eq!(
        param(bad, "alert@32473", "payload"),
        Some(r#"not json ]"\xFE"#)
    );

    // Nothing is left pending: a second run forwards nothing.
    let again = forward_once(&w, &bus, "relp", &rs.target("relp"));
    again.expect_code(0);
    assert_eq!(again.json()["forwarded"], 0);
}

#[test]
fn rfc3164_over_tcp_stays_within_1024_bytes_and_marks_the_cut() {
    let w = World::initialised(BIN);
    let bus = OwnBus::start();
    let rs = Rsyslog::start();
    // 2 bytes per character: a cut at an odd byte would break one.
    let big = format!("notes={}", "é".repeat(900));
    run(ops(&w, &bus).args([
        "alerts",
        "send",
        "--severity",
        "high",
        "--title",
        "big",
        "--id",
        "c-1",
        "--host",
        "h1",
        "--raised-at",
        "2026-03-05T07:08:09Z",
        "--meta",
        &big,
    ]))
    .expect_code(0);
    run(ops(&w, &bus).args([
        "alerts",
        "send",
        "--severity",
        "low",
        "--title",
        "small",
        "--id",
        "c-2",
        "--host",
        "h1",
        "--raised-at",
        "2026-03-05T07:08:10Z",
        "--meta",
        "k=v",
    ]))
    .expect_code(0);
    let out = run(ops(&w, &bus).args([
        "alerts",
        "forward",
        "--once",
        "--transport",
        "tcp",
        "--format",
        "rfc3164",
        "--facility",
        "auth",
        "--target",
        &rs.target("tcp"),
    ]));
    out.expect_code(0);
    rs.wait_for_lines("tcp", 2, Duration::from_secs(10));
    let msgs = parsed(&rs, "tcp", "rfc3164");
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    let (cut, whole) = (&msgs[0], &msgs[1]);
    assert_eq!(cut["truncated"], true);
    assert!(
        cut["bytes"].as_u64().is_some_and(|b| b <= 1024 && b > 1000),
        "{cut}"
    );
    assert_eq!(cut["pri"], 4 * 8 + 3);
    assert_eq!(cut["timestamp"], "Mar  5 07:08:09");
    assert_eq!(cut["pairs"][0], json!(["id", "c-1"]));
    assert_eq!(whole["truncated"], false);
    assert_eq!(whole["hostname"], "h1");
    assert_eq!(whole["tag"], "ransomeye-ops");
    let pairs: BTreeMap<String, String> = whole["pairs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p[0].as_str()?.to_string(), p[1].as_str()?.to_string())))
        .collect();
    assert_eq!(pairs["id"], "c-2");
    assert_eq!(pairs["msg"], "small");
    assert_eq!(pairs["k"], "v");
    assert_eq!(pairs["raisedAt"], "2026-03-05T07:08:10Z");
}

#[test]
fn udp_delivers_to_a_live_collector() {
    let w = World::initialised(BIN);
    let bus = OwnBus::start();
    let rs = Rsyslog::start();
    run(ops(&w, &bus).args([
        "alerts",
        "send",
        "--severity",
        "warning",
        "--title",
        "t",
        "--id",
        "u-1",
    ]))
    .expect_code(0);
    let ids = publish_many(&bus, 20, "u");
    forward_once(&w, &bus, "udp", &rs.target("udp")).expect_code(0);
    rs.wait_for_lines("udp", 22, Duration::from_secs(10));
    let seen = arrivals(&rs, "udp");
    for id in ids.iter().chain(["u-1".to_string()].iter()) {
        assert_eq!(seen.get(id), Some(&1), "{id}: {seen:?}");
    }
}

#[test]
fn relp_loses_nothing_when_the_collector_is_killed_and_restarted() {
    let w = World::initialised(BIN);
    let bus = OwnBus::start();
    let mut rs = Rsyslog::start();
    run(ops(&w, &bus).args([
        "alerts",
        "send",
        "--severity",
        "low",
        "--title",
        "t",
        "--id",
        "r-first",
    ]))
    .expect_code(0);
    let mut ids = publish_many(&bus, 3000, "r");
    ids.push("r-first".into());
    let mut fwd = Running::start(ops(&w, &bus).args([
        "alerts",
        "forward",
        "--transport",
        "relp",
        "--target",
        &rs.target("relp"),
    ]));
    rs.wait_for_lines("relp", 50, Duration::from_secs(30));
    rs.kill();
    let at_kill = rs.lines("relp").len();
    // Alerts raised while the collector is down (and, should the forwarder have been quicker
    // than the kill, the ones that make it retry).
    ids.extend(publish_many(&bus, 300, "r2"));
    fwd.wait_for("trying again");
    rs.restart();
    // Every id arrives (the forwarder keeps running).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let seen = loop {
        let seen = arrivals(&rs, "relp");
        if ids.iter().all(|id| seen.contains_key(id)) {
            break seen;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {} ids arrived",
            seen.len(),
            ids.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    fwd.signal(Signal::SIGTERM);
    let out = fwd.finish();
    out.expect_code(0);
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "relp, collector killed at {at_kill} of {}: 0 lost, {duplicates} duplicates",
        ids.len()
    );
    assert!(
        duplicates <= 128,
        "more duplicates than one window: {duplicates}"
    );
}

#[test]
fn a_forwarder_killed_mid_run_loses_nothing_on_rerun() {
    let w = World::initialised(BIN);
    let bus = OwnBus::start();
    let rs = Rsyslog::start();
    run(ops(&w, &bus).args([
        "alerts",
        "send",
        "--severity",
        "low",
        "--title",
        "t",
        "--id",
        "k-first",
    ]))
    .expect_code(0);
    let mut ids = publish_many(&bus, 3000, "k");
    ids.push("k-first".into());
    let fwd = Running::start(ops(&w, &bus).args([
        "alerts",
        "forward",
        "--transport",
        "relp",
        "--target",
        &rs.target("relp"),
    ]));
    rs.wait_for_lines("relp", 50, Duration::from_secs(30));
    // Freeze the collector and raise more: the forwarder then surely holds a batch it sent and
    // the bus has not had acked (JetStream counts it), and is killed right there.
    rs.pause();
    ids.extend(publish_many(&bus, 300, "k2"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let info = bus.api(
            "$JS.API.CONSUMER.INFO.RANSOMEYE_ALERTS.ransomeye-forward",
            json!({}),
        );
        if info["num_ack_pending"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no batch in flight: {info}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    fwd.signal(Signal::SIGKILL);
    let _ = fwd.finish();
    rs.resume();
    let at_kill = rs.lines("relp").len();
    let out = forward_once(&w, &bus, "relp", &rs.target("relp"));
    out.expect_code(0);
    let seen = arrivals(&rs, "relp");
    let lost: Vec<&String> = ids.iter().filter(|id| !seen.contains_key(*id)).collect();
    assert!(
        lost.is_empty(),
        "lost {} alerts, e.g. {:?}",
        lost.len(),
        lost.first()
    );
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "forwarder killed at {at_kill} of {}: 0 lost, {duplicates} duplicates",
        ids.len()
    );
    assert!(
        duplicates <= 128,
        "more duplicates than one batch: {duplicates}"
    );
}

#[test]
fn a_wrong_clock_changes_nothing() {
    let faketime = Command::new("faketime").arg("--version").output();
    assert!(
        faketime.is_ok(),
        "faketime is not installed: apt-get install faketime (scripts/test does)"
    );
    let w = World::initialised(BIN);
    let rs = Rsyslog::start();
    let fake = |cmd: &mut Command| -> Command {
        let mut f = Command::new("faketime");
        f.arg("-f").arg("-1000d").arg(cmd.get_program());
        f.args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => f.env(k, v),
                None => f.env_remove(k),
            };
        }
        f
    };
    // The fake clock does reach the binary: an alert raised under it says 1000 days ago.
    let probe_bus = OwnBus::start();
    let out = run(&mut fake(ops(&w, &probe_bus).args([
        "--json",
        "alerts",
        "send",
        "--severity",
        "info",
        "--title",
        "clock",
    ])));
    out.expect_code(0);
    let stored = common::stored_message(&probe_bus.api(
        "$JS.API.STREAM.MSG.GET.RANSOMEYE_ALERTS",
        json!({ "seq": out.json()["seq"] }),
    ));
    let raised = stored["raised_at"].as_str().unwrap_or_default();
    let real_year =
        humantime::format_rfc3339(std::time::SystemTime::now()).to_string()[..4].to_string();
    assert_ne!(&raised[..4], real_year, "faketime had no effect: {raised}");

    // The same alerts forwarded with the right clock and with a wrong one: the same bytes.
    let mut outputs = Vec::new();
    for (wrong, transport) in [(false, "tcp"), (true, "relp")] {
        let bus = OwnBus::start();
        for (i, sev) in ["high", "low"].iter().enumerate() {
            run(ops(&w, &bus).args([
                "alerts",
                "send",
                "--severity",
                sev,
                "--title",
                "same",
                "--host",
                "h",
                "--id",
                &format!("t-{i}"),
                "--raised-at",
                "2026-12-01T21:44:13.5Z",
            ]))
            .expect_code(0);
        }
        let mut cmd = ops(&w, &bus);
        cmd.args([
            "alerts",
            "forward",
            "--once",
            "--transport",
            transport,
            "--target",
            &rs.target(transport),
        ]);
        let out = if wrong {
            run(&mut fake(&mut cmd))
        } else {
            run(&mut cmd)
        };
        out.expect_code(0);
        outputs.push(rs.wait_for_lines(transport, 2, Duration::from_secs(10)));
    }
    assert_eq!(outputs[0], outputs[1]);
}

#[test]
fn health_reports_the_alerts_waiting_for_the_forwarder() {
    let w = World::initialised(BIN);
    let bus = OwnBus::start();
    let rs = Rsyslog::start();
    run(ops(&w, &bus).args([
        "alerts",
        "send",
        "--severity",
        "low",
        "--title",
        "t",
        "--id",
        "h-0",
    ]))
    .expect_code(0);
    forward_once(&w, &bus, "relp", &rs.target("relp")).expect_code(0);
    for i in 1..=3 {
        run(ops(&w, &bus).args([
            "alerts",
            "send",
            "--severity",
            "low",
            "--title",
            "t",
            "--id",
            &format!("h-{i}"),
        ]))
        .expect_code(0);
    }
    let out = run(ops(&w, &bus).args(["--json", "health"]));
    let report = out.json();
    let bus_check = report["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "bus"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(bus_check["metrics"]["alerts_pending"], 3.0, "{bus_check}");
    let age = bus_check["metrics"]["alerts_oldest_pending_s"]
        .as_f64()
        .unwrap_or(-1.0);
    assert!((0.0..60.0).contains(&age), "{bus_check}");
    assert_eq!(bus_check["status"], "ok", "{bus_check}");
    forward_once(&w, &bus, "relp", &rs.target("relp")).expect_code(0);
    let after = run(ops(&w, &bus).args(["--json", "health"])).json();
    let pending = after["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "bus"))
        .map(|c| c["metrics"]["alerts_pending"].clone());
    assert_eq!(pending, Some(json!(0.0)), "{after}");
}

#[test]
fn tls_delivers_to_a_collector_signed_by_the_configured_ca() {
    let w = World::initialised(BIN);
    let bus = OwnBus::start();
    let rs = Rsyslog::start_with_tls();
    // Without a CA there is no TLS: a configuration error, before anything is sent.
    run(ops(&w, &bus).args([
        "alerts",
        "forward",
        "--once",
        "--transport",
        "tls",
        "--target",
        &rs.target("tls"),
    ]))
    .expect_code(78)
    .stderr_has("tls_ca");
    let ca = rs.ca();
    // A client key others may read is refused like any key file.
    let key = w.path("client.key");
    std::fs::copy(ca.with_file_name("server.key"), &key).expect("copy key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    let loose = w.path("loose.toml");
    std::fs::write(
        &loose,
        format!(
            "{}\n[alerts]\ntls_ca = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            std::fs::read_to_string(&w.config).expect("config"),
            ca.display(),
            ca.with_file_name("server.pem").display(),
            key.display()
        ),
    )
    .expect("write config");
    run(w
        .ops_with_config(&loose)
        .env("RANSOMEYE_NATS_URL", bus.url())
        .args([
            "alerts",
            "forward",
            "--once",
            "--transport",
            "tls",
            "--target",
            &rs.target("tls"),
        ]))
    .expect_code(77)
    .stderr_has("tls_key")
    .stderr_has("chmod");
    w.edit_config(|t| format!("{t}\n[alerts]\ntls_ca = \"{}\"\n", ca.display()));
    run(ops(&w, &bus).args([
        "alerts",
        "send",
        "--severity",
        "alert",
        "--title",
        "over tls",
        "--id",
        "s-1",
    ]))
    .expect_code(0);
    let ids = publish_many(&bus, 200, "s");
    // The certificate names localhost and 127.0.0.1; the target names it by address.
    let out = forward_once(&w, &bus, "tls", &rs.target("tls"));
    out.expect_code(0);
    assert_eq!(out.json()["forwarded"], 201, "{}", out.stdout);
    rs.wait_for_lines("tls", 201, Duration::from_secs(10));
    let seen = arrivals(&rs, "tls");
    for id in ids.iter().chain(["s-1".to_string()].iter()) {
        assert_eq!(seen.get(id), Some(&1), "{id}");
    }
}

#[test]
fn sigterm_while_the_collector_is_down_exits_0_and_hands_the_batch_back() {
    let w = World::initialised(BIN);
    let bus = OwnBus::start();
    let mut rs = Rsyslog::start();
    run(ops(&w, &bus).args([
        "alerts",
        "send",
        "--severity",
        "low",
        "--title",
        "t",
        "--id",
        "g-first",
    ]))
    .expect_code(0);
    rs.kill();
    let mut ids = publish_many(&bus, 50, "g");
    ids.push("g-first".into());
    let mut fwd = Running::start(ops(&w, &bus).args([
        "alerts",
        "forward",
        "--transport",
        "relp",
        "--target",
        &rs.target("relp"),
    ]));
    fwd.wait_for("trying again");
    let stopped = std::time::Instant::now();
    fwd.signal(Signal::SIGTERM);
    let out = fwd.finish();
    out.expect_code(0);
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopped.elapsed()
    );
    rs.restart();
    // Handed back (NAK): the next run has them at once, not after the 30 s ack wait.
    let started = std::time::Instant::now();
    let again = forward_once(&w, &bus, "relp", &rs.target("relp"));
    again.expect_code(0);
    assert_eq!(again.json()["forwarded"], 51, "{}", again.stdout);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let seen = arrivals(&rs, "relp");
    assert!(ids.iter().all(|id| seen.get(id) == Some(&1)), "{seen:?}");
}
