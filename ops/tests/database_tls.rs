//! TLS to the database: `sslmode`, `sslrootcert` (and `sslcert`/`sslkey`) in `[database] url`
//! reach a real PostgreSQL with `ssl = on` whose `pg_hba.conf` rejects every connection without
//! TLS. The tool's own connections (sqlx, rustls) and `pg_dump`/`pg_restore` (libpq, the URL's
//! parameters) both use them; a wrong CA is a clear error that changes nothing.

mod common;

use std::path::Path;

use common::{run, ClusterOptions, OwnPostgres, Pki, Role, World, BIN};

/// A cluster that accepts only TLS connections, with the platform's schema, and its CA.
fn tls_cluster() -> (OwnPostgres, Pki) {
    let pki = Pki::new("ransomeye database CA");
    let server = pki.issue("postgres", Role::Server);
    let pg = OwnPostgres::start_with(ClusterOptions {
        ssl: Some(server),
        hba_before: vec!["hostnossl all all 127.0.0.1/32 reject".into()],
        ..ClusterOptions::default()
    });
    pg.load_platform_schema();
    (pg, pki)
}

/// A world whose `[database] url` is `url`.
fn world_on(url: &str) -> World {
    let w = World::initialised(BIN);
    w.set_database_url(url);
    w
}

fn verify_full(pg: &OwnPostgres, ca: &Path) -> String {
    format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        pg.superuser_url(),
        ca.display()
    )
}

fn database_check(w: &World) -> serde_json::Value {
    let out = run(w.ops().args(["--json", "health"]));
    out.json()["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "database")
        .cloned()
        .expect("a database check")
}

#[test]
fn health_backup_verify_and_drill_reach_a_server_that_requires_tls() {
    let (pg, pki) = tls_cluster();
    pg.execute(
        "insert into audit_logs (created_at, actor, action) \
         select now() - g * interval '1 hour', 'a', 'b' from generate_series(1, 50) g",
    );
    let w = world_on(&verify_full(&pg, &pki.ca));
    let check = database_check(&w);
    assert_eq!(check["status"], "ok", "{check}");
    // pg_dump gets the same TLS settings (libpq reads them from the URL it is given).
    run(w.ops().args(["--json", "backup"])).expect_code(0);
    run(w.ops().args(["verify", "--all"])).expect_code(0);
    // pg_restore into a scratch database on the same server, over TLS.
    run(w.ops().arg("drill")).expect_code(0);
    // The server refuses every connection without TLS (hostnossl … reject), so each of the
    // tool's sessions and pg_dump's/pg_restore's was encrypted; none even tried without.
    assert!(
        !pg.log_text().contains("no encryption"),
        "a connection without TLS was attempted:\n{}",
        pg.log_text()
    );
}

#[test]
fn a_wrong_ca_or_no_tls_is_a_clear_error_and_changes_nothing() {
    let (pg, _pki) = tls_cluster();
    let other = Pki::new("another CA");
    let w = world_on(&verify_full(&pg, &other.ca));
    let out = run(w.ops().args(["backup"]));
    out.expect_code(69)
        .stderr_has("invalid peer certificate")
        .stderr_has("must chain to sslrootcert");
    assert!(
        w.backups().is_empty(),
        "a failed backup left {:?}",
        w.backups()
    );

    // Without TLS, the server's pg_hba.conf refuses: its message names the cause.
    let w = world_on(&format!("{}?sslmode=disable", pg.superuser_url()));
    run(w.ops().args(["archive", "--dry-run"]))
        .expect_code(77)
        .stderr_has("no encryption");
}
