//! `archive restore`: an archive's rows back into the table.

use std::path::Path;

use ransomeye_kernel::keys::{KeyDir, KeyPurpose};
use sqlx::AssertSqlSafe;

use super::check::verify_archive;
use super::inspect::locate;
use super::shape::TableShape;
use super::stream::read_back;
use crate::commands::{say, Context};
use crate::db::{self, Answer};
use crate::error::{Exit, OpsError};
use crate::utils::{print_json, runtime};

/// Rows per INSERT when restoring.
const RESTORE_BATCH: usize = 1000;

pub(super) fn restore(ctx: &Context, file: &Path) -> Result<(), OpsError> {
    let config = ctx.config()?;
    let key = KeyDir::new(&config.keys.dir).load_symmetric(KeyPurpose::Archive)?;
    let trust = crate::trust::verifying_keys(&config)?;
    let (archive, manifest) = locate(file)?;
    let rt = runtime()?;
    let (inserted, skipped) = rt.block_on(async {
        verify_archive(&archive, &manifest, &key, &trust).await?;
        let mut conn = db::connect(&config.database.url, "archive restore").await?;
        let shape = TableShape::load(&mut conn, &manifest.body.table, &manifest.body.time_column).await?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(4);
        let (path, key) = (archive.clone(), key.clone());
        let reader = tokio::task::spawn_blocking(move || {
            let (mut batch, mut n) = (String::from("["), 0usize);
            let result = read_back(&path, &key, |line| {
                if n > 0 {
                    batch.push(',');
                }
                batch.push_str(&String::from_utf8_lossy(line));
                n += 1;
                if n == RESTORE_BATCH {
                    batch.push(']');
                    tx.blocking_send(std::mem::replace(&mut batch, String::from("[")))
                        .map_err(|_| OpsError::new(Exit::Software, "restore stopped"))?;
                    n = 0;
                }
                Ok(())
            });
            if result.is_ok() && n > 0 {
                batch.push(']');
                let _ = tx.blocking_send(batch);
            }
            result
        });
        let insert = format!(
            "insert into {t} select * from json_populate_recordset(null::{t}, $1::json) on conflict do nothing",
            t = shape.quoted
        );
        let mut inserted = 0u64;
        while let Some(batch) = rx.recv().await {
            inserted += sqlx::query(AssertSqlSafe(insert.clone()))
                .bind(batch)
                .execute(&mut conn)
                .answer("re-inserting archived rows")
                .await?
                .rows_affected();
        }
        let (_, rows) = reader
            .await
            .map_err(|e| OpsError::new(Exit::Software, format!("restore reader failed: {e}")))??;
        Ok::<_, OpsError>((inserted, rows - inserted))
    })?;
    if ctx.json {
        return print_json(&serde_json::json!({
            "file": archive, "table": manifest.body.table, "rows_inserted": inserted, "rows_skipped": skipped,
        }));
    }
    say!(
        ctx,
        "restored {inserted} rows from {} into {} ({skipped} skipped: their primary key already exists)",
        archive.display(),
        manifest.body.table
    );
    Ok(())
}
