//! Registering the simulated agents in PostgreSQL's `agents` table (schema/platform.sql), the
//! way the operator finds their public keys.

use sqlx::{Connection, PgConnection};

use crate::fleet::SimAgent;

/// Rows per INSERT statement: each batch is one statement over three arrays.
const BATCH: usize = 5_000;

/// Connects to `url` (already checked to parse).
pub async fn connect(
    options: &sqlx::postgres::PgConnectOptions,
) -> Result<PgConnection, sqlx::Error> {
    let app = format!("ransomeye-agent-sim pid {}", std::process::id());
    PgConnection::connect_with(&options.clone().application_name(&app)).await
}

/// Inserts every agent as `active`, hostname `sim-<pid>-<index>`, `last_seen` now, in one
/// transaction of one statement per [`BATCH`] agents.
pub async fn register(conn: &mut PgConnection, agents: &[SimAgent]) -> Result<(), sqlx::Error> {
    let pid = std::process::id();
    let mut tx = conn.begin().await?;
    for (b, batch) in agents.chunks(BATCH).enumerate() {
        let ids: Vec<&str> = batch.iter().map(|a| a.id.as_str()).collect();
        let hostnames: Vec<String> = (0..batch.len())
            .map(|i| format!("sim-{pid}-{}", b * BATCH + i))
            .collect();
        let keys: Vec<&[u8]> = batch.iter().map(|a| &a.public_key[..]).collect();
        sqlx::query(
            "insert into agents (id, hostname, public_key, status, last_seen) \
             select id, hostname, public_key, 'active', now() \
             from unnest($1::text[]::uuid[], $2::text[], $3::bytea[]) as t(id, hostname, public_key)",
        )
        .bind(ids)
        .bind(hostnames)
        .bind(keys)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}
