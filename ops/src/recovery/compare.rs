//! The restored database against the manifest: every table's row count and the intel graph
//! digest.

use crate::backup_set::counts::count_rows;
use crate::backup_set::manifest::Manifest;
use crate::db;
use crate::error::OpsError;

use super::Outcome;

/// Every table's row count and the intel graph digest, against the manifest.
pub(super) async fn compare(
    conn: &mut sqlx::PgConnection,
    url: &str,
    manifest: &Manifest,
    outcome: &mut Outcome,
) -> Result<(), OpsError> {
    // Counting and the graph digest each take a while: two connections, side by side.
    let graph = async {
        let mut second = db::connect(url, "restore").await?;
        // The whole read under one answer timeout: the intel crate's row stream has no bound
        // of its own, and half an hour is far beyond any graph it reads.
        db::bounded(
            ransomeye_intel::digest(&mut second),
            "reading the intel graph",
        )
        .await?
        .map_err(|e| OpsError::intel(e, "computing the restored intel graph's digest"))
    };
    let (counts, digest) = tokio::join!(count_rows(conn), graph);
    let (counts, digest) = (counts?, digest?);
    for (table, expected) in &manifest.body.tables {
        match counts.get(table) {
            Some(n) if n == expected => {}
            Some(n) => outcome
                .mismatches
                .push(format!("{table}: {n} rows, the backup has {expected}")),
            None => outcome.mismatches.push(format!("{table} is missing")),
        }
    }
    outcome.tables_checked = manifest.body.tables.len();
    outcome.rows = manifest.body.tables.values().sum();
    outcome.intel_digest_matches = digest == manifest.body.intel;
    if !outcome.intel_digest_matches {
        outcome.mismatches.push(format!(
            "intel graph digest {} ({} nodes, {} edges), the backup has {} ({} nodes, {} edges)",
            digest.sha256,
            digest.nodes,
            digest.edges,
            manifest.body.intel.sha256,
            manifest.body.intel.nodes,
            manifest.body.intel.edges
        ));
    }
    Ok(())
}
