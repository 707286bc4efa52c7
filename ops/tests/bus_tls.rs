//! TLS to the bus: `[bus] tls_ca`, `tls_cert`, `tls_key` against a real nats-server that
//! requires TLS and verifies its clients' certificates (`verify: true`), with a CA and
//! certificates made by the test. `health` and `rotate-keys` (with TLS agents) work through it;
//! a wrong CA, an expired client certificate, a name the server's certificate does not carry,
//! and bad files are clear errors that change nothing.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{run, AgentSim, BusTls, Issued, OwnBus, Pki, Role, World, BIN};

/// A CA, a nats-server with mutual TLS, and the CA's client certificate for the tool.
struct TlsBus {
    pki: Pki,
    bus: OwnBus,
    client: Issued,
}

fn tls_bus() -> TlsBus {
    let pki = Pki::new("ransomeye test CA");
    let server = pki.issue("nats", Role::Server);
    let client = pki.issue("ops", Role::Client);
    let bus = OwnBus::start_tls(BusTls {
        ca: pki.ca.clone(),
        server,
        client: client.clone(),
    });
    TlsBus { pki, bus, client }
}

/// A world whose `[bus]` is `url` with these TLS files.
fn world_on(url: &str, ca: &Path, client: &Issued) -> World {
    let w = World::initialised(BIN);
    let shared = common::services().nats_url;
    w.edit_config(|t| {
        t.replace(
            &format!("url = {shared:?}"),
            &format!(
                "url = {url:?}\ntls_ca = {:?}\ntls_cert = {:?}\ntls_key = {:?}",
                ca.display().to_string(),
                client.cert.display().to_string(),
                client.key.display().to_string()
            ),
        )
    });
    assert!(
        std::fs::read_to_string(&w.config)
            .expect("config")
            .contains("tls_ca"),
        "the [bus] section was rewritten"
    );
    w
}

fn health_bus(w: &World) -> serde_json::Value {
    let out = run(w.ops().args(["--json", "health"]));
    let report = out.json();
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "bus")
        .cloned()
        .expect("a bus check")
}

#[test]
fn health_and_rotate_keys_work_over_mutual_tls() {
    let t = tls_bus();
    let w = world_on(&t.bus.url(), &t.pki.ca, &t.client);
    let bus = health_bus(&w);
    assert_eq!(bus["status"], "ok", "{bus}");

    let agent = t.pki.issue("agents", Role::Client);
    let flags = [
        "--tls-ca",
        &t.pki.ca.display().to_string(),
        "--tls-cert",
        &agent.cert.display().to_string(),
        "--tls-key",
        &agent.key.display().to_string(),
    ]
    .map(String::from);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let _sim = AgentSim::start_with(&w, &t.bus.url(), 3, &flags);
    let out = run(w.ops().args(["--json", "rotate-keys", "--timeout", "30"]));
    out.expect_code(0);
    assert_eq!(out.json()["acked"], 3, "{}", out.stdout);
}

#[test]
fn a_bus_that_requires_tls_refuses_a_client_without_it_clearly() {
    let t = tls_bus();
    let w = World::initialised(BIN);
    let shared = common::services().nats_url;
    w.edit_config(|c| c.replace(&shared, &t.bus.url()));
    run(w.ops().args(["rotate-keys", "--dry-run"]))
        .expect_code(69)
        .stderr_has("TLS handshake failed")
        .stderr_has("no [bus] tls_ca is set");
}

#[test]
fn a_wrong_ca_an_expired_client_or_a_wrong_name_is_69_naming_the_files() {
    let t = tls_bus();
    // The server's certificate chains to another CA than the one configured.
    let other = Pki::new("another CA");
    let w = world_on(&t.bus.url(), &other.ca, &t.client);
    let out = run(w.ops().args(["rotate-keys", "--dry-run"]));
    out.expect_code(69)
        .stderr_has("TLS handshake failed")
        .stderr_has(&format!("tls_ca = {}", other.ca.display()));
    assert_ne!(health_bus(&w)["status"], "ok");

    // A client certificate that expired yesterday: the server refuses it.
    let expired = t
        .pki
        .issue_with("expired", Role::Client, &["localhost"], -30, -1);
    let w = world_on(&t.bus.url(), &t.pki.ca, &expired);
    run(w.ops().args(["rotate-keys", "--dry-run"]))
        .expect_code(69)
        .stderr_has(&format!("tls_cert = {}", expired.cert.display()));

    // The server's certificate names another host than the URL's.
    let misnamed = OwnBus::start_tls(BusTls {
        ca: t.pki.ca.clone(),
        server: t
            .pki
            .issue_with("misnamed", Role::Server, &["bus.example.invalid"], -1, 365),
        client: t.client.clone(),
    });
    let w = world_on(&misnamed.url(), &t.pki.ca, &t.client);
    run(w.ops().args(["rotate-keys", "--dry-run"]))
        .expect_code(69)
        .stderr_has("TLS handshake failed");
}

#[test]
fn bad_tls_files_are_refused_before_connecting() {
    let t = tls_bus();
    let w = world_on(&t.bus.url(), &t.pki.ca, &t.client);
    let key = t.client.key.clone();

    // The key readable by everyone: refused as ssh refuses such a key (77), naming the fix.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    run(w.ops().args(["rotate-keys", "--dry-run"]))
        .expect_code(77)
        .stderr_has(&format!("[bus] tls_key {}", key.display()))
        .stderr_has("chmod 06");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    // A CA file that is not PEM: 78 naming it.
    let junk = t.pki.dir().join("junk.crt");
    std::fs::write(&junk, b"not a certificate\n").expect("write");
    let w2 = world_on(&t.bus.url(), &junk, &t.client);
    run(w2.ops().args(["rotate-keys", "--dry-run"]))
        .expect_code(78)
        .stderr_has(&format!(
            "[bus] tls_ca {}: not a PEM certificate",
            junk.display()
        ));

    // A CA file that is gone: 78 naming the key and the file.
    let gone = t.pki.dir().join("gone.crt");
    let w3 = world_on(&t.bus.url(), &gone, &t.client);
    run(w3.ops().args(["rotate-keys", "--dry-run"]))
        .expect_code(78)
        .stderr_has("[bus] tls_ca")
        .stderr_has(&gone.display().to_string());

    // A certificate without its key: a configuration error with its line.
    w.edit_config(|c| {
        c.lines()
            .filter(|l| !l.starts_with("tls_key"))
            .collect::<Vec<_>>()
            .join("\n")
    });
    run(w.ops().args(["health"]))
        .expect_code(78)
        .stderr_has("[bus] tls_cert: is set without tls_key");
}
