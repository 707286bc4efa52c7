//! The prune (delete exactly the archived rows, paced, WAL compressed) and the vacuum after it.

use std::path::Path;
use std::time::Instant;

use ransomeye_kernel::atomic_file::Replace;
use sqlx::{AssertSqlSafe, PgConnection};

use super::export::line_id;
use super::manifest::{manifest_path, Manifest, State};
use super::shape::TableShape;
use super::stream::read_back;
use super::versions::RowVersions;
use super::Job;
use crate::db::{quote_ident, Answer};
use crate::error::{Exit, OpsError};
use crate::pace::Pacer;
use crate::sealed::Digests;
use crate::utils::progress;

/// Runs of consecutive primary keys written by the same transaction (one `xmin`).
#[derive(Debug, Default, PartialEq, Eq)]
struct VersionRuns {
    lows: Vec<i64>,
    highs: Vec<i64>,
    xmins: Vec<i64>,
}

/// Splits `ids` (ascending) and their `xmins` into runs: `[1,2,3,5]` with `[7,7,8,8]` → `1..=2`
/// at 7, `3..=3` at 8, `5..=5` at 8. Every id inside a run is in the batch, so deleting the run's
/// range where `xmin` matches deletes exactly those rows in their exported versions.
fn version_runs(ids: &[i64], xmins: &[i64]) -> VersionRuns {
    let mut runs = VersionRuns::default();
    for (&id, &xmin) in ids.iter().zip(xmins) {
        match (runs.highs.last_mut(), runs.xmins.last()) {
            (Some(high), Some(&run_xmin)) if *high + 1 == id && run_xmin == xmin => *high = id,
            _ => {
                runs.lows.push(id);
                runs.highs.push(id);
                runs.xmins.push(xmin);
            }
        }
    }
    runs
}

/// Planner settings of the prune by version (see [`prune`]), reset when it ends.
const PRUNE_PLAN: [&str; 4] = [
    "enable_hashjoin",
    "enable_mergejoin",
    "enable_seqscan",
    "jit",
];

/// Compresses the full-page images in the prune's WAL (lz4 where the server has it), which
/// halves the WAL a prune writes after a checkpoint and with it the flushes every concurrent
/// commit waits for. Only a superuser may set it (or a role granted SET on it, which this does
/// not look for: trying and failing would put an error in the server's log on every run); for
/// anyone else the prune runs as it is. Returns whether it was set.
async fn compress_wal(conn: &mut PgConnection) -> Result<bool, OpsError> {
    let method: Option<String> = sqlx::query_scalar(
        "select case when current_setting('is_superuser') <> 'on' then null \
                     when 'lz4' = any(enumvals) then 'lz4' else 'on' end \
         from pg_settings where name = 'wal_compression'",
    )
    .fetch_optional(&mut *conn)
    .answer("setting up the prune")
    .await?
    .flatten();
    let Some(method) = method else {
        return Ok(false);
    };
    sqlx::query(AssertSqlSafe(format!("set wal_compression = {method}")))
        .execute(&mut *conn)
        .answer("setting up the prune")
        .await?;
    Ok(true)
}

/// One batch of archived rows for the prune: their primary keys, and either the versions the
/// export saw (`xmins`) or their archived lines (`docs`).
struct Batch {
    ids: Vec<i64>,
    xmins: Vec<i64>,
    docs: Vec<String>,
}

/// What a prune did.
pub(super) struct Pruned {
    pub(super) rows: u64,
    pub(super) transactions: u64,
    pub(super) rested: std::time::Duration,
}

/// Step 6: delete exactly the rows the verified archive holds, in short transactions paced for
/// the platform's own writers (see [`crate::pace`]), then mark the manifest `pruned`.
///
/// A row is deleted only if it is still the archived version, checked in the delete's own
/// statement, so even an UPDATE that commits while the delete waits for the row is seen
/// (PostgreSQL re-checks the condition on the new version). A row changed since the export
/// stays in the table for a later run. The run that exported the rows compares each row's
/// `xmin` with the one the export saw (`versions`, see [`RowVersions`]); a prune resumed by a
/// later run after a crash renders each row as the export did (`row_to_json` of the same
/// columns in the same order, session in UTC) and compares the text with its archived line,
/// byte for byte: everything that needs is the archive itself.
pub(super) async fn prune(
    conn: &mut PgConnection,
    job: &Job,
    shape: &TableShape,
    path: &Path,
    mut manifest: Manifest,
    versions: Option<RowVersions>,
) -> Result<Pruned, OpsError> {
    let by_version = versions.is_some();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(4);
    let (reader_path, key, pk, batch_size) = (
        path.to_path_buf(),
        job.archive_key.clone(),
        shape.primary_key.clone(),
        job.batch_size,
    );
    let reader = tokio::task::spawn_blocking(move || {
        let new_batch = || Batch {
            ids: Vec::with_capacity(batch_size),
            xmins: Vec::new(),
            docs: Vec::new(),
        };
        let mut batch = new_batch();
        if let Some(versions) = versions {
            // Verified against the archive, row for row, by the run's own read-back.
            let mut versions = versions.reader()?;
            while let Some((id, xmin)) = versions.next()? {
                batch.ids.push(id);
                batch.xmins.push(xmin);
                if batch.ids.len() >= batch_size {
                    tx.blocking_send(std::mem::replace(&mut batch, new_batch()))
                        .map_err(|_| OpsError::new(Exit::Software, "prune stopped"))?;
                }
            }
            if !batch.ids.is_empty() {
                let _ = tx.blocking_send(batch);
            }
            return Ok((Digests::default(), 0));
        }
        let shown = reader_path.display().to_string();
        let result = read_back(&reader_path, &key, |line| {
            let bad = |what: &str| OpsError::new(Exit::Data, format!("{shown}: {what}"));
            let id = line_id(line, &pk)
                .ok_or_else(|| bad(&format!("a row without a leading integer `{pk}`")))?;
            batch.ids.push(id);
            let doc = std::str::from_utf8(line).map_err(|_| bad("a row that is not UTF-8"))?;
            batch.docs.push(doc.to_string());
            if batch.ids.len() >= batch_size {
                tx.blocking_send(std::mem::replace(&mut batch, new_batch()))
                    .map_err(|_| OpsError::new(Exit::Software, "prune stopped"))?;
            }
            Ok(())
        });
        if result.is_ok() && !batch.ids.is_empty() {
            let _ = tx.blocking_send(batch);
        }
        result
    });
    // By version: consecutive ids written by one transaction (a bulk insert, an import) form
    // one run, deleted by one index range scan where xmin matches, as fast as deleting the
    // range blindly; rows written one per transaction are runs of one. The planner must walk
    // the runs and scan the index per run: hashing the runs on xmin and scanning the table
    // would cost the table size times the runs (minutes per batch when most rows share an
    // xmin), so hash and merge joins, sequential scans and JIT (compiling for the cost those
    // settings make up) are off on this connection while it prunes.
    // By contents: ids arrive in order, and the batch's range keeps PostgreSQL to that stretch
    // of the index.
    let wal_compressed = compress_wal(conn).await?;
    let delete = if by_version {
        for setting in PRUNE_PLAN {
            sqlx::query(AssertSqlSafe(format!("set {setting} = off")))
                .execute(&mut *conn)
                .answer("setting up the prune")
                .await?;
        }
        format!(
            "delete from {t} as t using unnest($1::int8[], $2::int8[], $3::int8[]) r(lo, hi, v) \
             where t.{pk} between r.lo and r.hi and t.xmin = r.v::text::xid",
            t = shape.quoted,
            pk = quote_ident(&shape.primary_key),
        )
    } else {
        format!(
            "delete from {t} as t using unnest($1::int8[], $2::text[]) a(id, v) \
             where t.{pk} = a.id and t.{pk} between $3 and $4 \
             and (select row_to_json(x)::text from (select {row}) x) = a.v",
            t = shape.quoted,
            pk = quote_ident(&shape.primary_key),
            row = shape.row_list
        )
    };
    let progress = progress(job.no_progress, "pruning", "rows deleted");
    let mut pacer = Pacer::new(job.pace, job.batch_size);
    let mut deleted = 0u64;
    while let Some(batch) = rx.recv().await {
        let mut from = 0;
        while from < batch.ids.len() {
            let to = batch.ids.len().min(from + pacer.rows());
            let ids = &batch.ids[from..to];
            let query = sqlx::query(AssertSqlSafe(delete.clone()));
            let query = if by_version {
                let runs = version_runs(ids, &batch.xmins[from..to]);
                query.bind(runs.lows).bind(runs.highs).bind(runs.xmins)
            } else {
                query
                    .bind(ids)
                    .bind(&batch.docs[from..to])
                    .bind(ids[0])
                    .bind(ids[ids.len() - 1])
            };
            let slice = Instant::now();
            let done = query
                .execute(&mut *conn)
                .answer("deleting archived rows")
                .await?;
            let rest = pacer.record(ids.len(), slice.elapsed());
            from = to;
            deleted += done.rows_affected();
            progress.set_position(deleted);
            crate::failpoint::hit("archive-mid-prune");
            // The safe point: every slice is its own transaction, and the next run finishes the rest.
            crate::failpoint::pause("archive-between-batches");
            crate::interrupt::check(format_args!(
                "{} is written and verified; {deleted} of its rows deleted so far. The next run deletes the rest",
                path.display()
            ))?;
            tokio::time::sleep(rest).await;
        }
    }
    progress.finish_and_clear();
    if by_version {
        for setting in PRUNE_PLAN {
            sqlx::query(AssertSqlSafe(format!("reset {setting}")))
                .execute(&mut *conn)
                .answer("ending the prune")
                .await?;
        }
    }
    if wal_compressed {
        sqlx::query("reset wal_compression")
            .execute(&mut *conn)
            .answer("ending the prune")
            .await?;
    }
    reader
        .await
        .map_err(|e| OpsError::new(Exit::Software, format!("prune reader failed: {e}")))??;
    if deleted < manifest.body.rows {
        tracing::warn!(
            "{} of the {} archived rows were not deleted: changed since the export (they stay in the table; a later run archives them) or already gone",
            manifest.body.rows - deleted,
            manifest.body.rows
        );
    }
    manifest.body.state = State::Pruned;
    manifest.body.rows_deleted = Some(deleted);
    Manifest::sign(manifest.body, &job.signing_key)?
        .write(&manifest_path(path), Replace::Allowed)?;
    Ok(Pruned {
        rows: deleted,
        transactions: pacer.slices(),
        rested: pacer.rested(),
    })
}

/// Step 7: give the freed space back to the table's free-space map and refresh statistics.
pub(super) async fn vacuum(conn: &mut PgConnection, shape: &TableShape) -> Result<(), OpsError> {
    sqlx::query(AssertSqlSafe(format!("vacuum (analyze) {}", shape.quoted)))
        .execute(&mut *conn)
        .answer("vacuuming the table")
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn version_runs_join_only_consecutive_ids_of_one_transaction() {
        let runs = super::version_runs(&[1, 2, 3, 5, 6, 9], &[7, 7, 8, 8, 8, 8]);
        assert_eq!(runs.lows, [1, 3, 5, 9]);
        assert_eq!(runs.highs, [2, 3, 6, 9]);
        assert_eq!(runs.xmins, [7, 8, 8, 8]);
        assert_eq!(super::version_runs(&[], &[]), super::VersionRuns::default());
    }
}
