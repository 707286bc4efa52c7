//! `backup list` and `backup cat`: the backups in `[backup] dir`, read and never changed.

use std::io::{Read, Write};
use std::path::Path;

use ransomeye_kernel::keys::{KeyDir, KeyPurpose};

use crate::backup_set::{check, manifest};
use crate::commands::Context;
use crate::error::{Exit, OpsError};
use crate::table::{Align, Table};
use crate::utils::{print_json, stdout_error};

/// `backup list`: every backup with its state (the quick check), oldest first, then the orphan
/// data files. Exits 65 when any of them is damaged or an orphan, so monitoring sees it.
pub(super) fn list(ctx: &Context) -> Result<(), OpsError> {
    let config = ctx.config()?;
    let trust = crate::trust::verifying_keys(&config)?;
    let mut rows = Vec::new();
    let mut damaged = Vec::new();
    for paths in manifest::list(&config.backup.dir)? {
        let (state, m) = match check::quick(&paths, &trust) {
            Ok(m) => ("ok".to_string(), Some(m)),
            Err(e) => {
                damaged.push(format!("{}: {}", paths.name, e.what));
                (format!("damaged: {}", e.what), manifest::read(&paths).ok())
            }
        };
        rows.push(serde_json::json!({
            "backup": paths.name,
            "state": state,
            "snapshot_time": m.as_ref().map(|m| m.body.snapshot_time.clone()),
            "rows": m.as_ref().map(|m| m.body.tables.values().sum::<u64>()),
            "bytes": m.as_ref().map(|m| m.body.dump.bytes + m.body.files.bytes),
        }));
    }
    let orphans = manifest::orphans(&config.backup.dir)?;
    for file in &orphans {
        rows.push(serde_json::json!({
            "backup": manifest::backup_name(file),
            "file": file,
            "state": manifest::ORPHAN_STATE,
        }));
    }
    if ctx.json {
        print_json(&rows)?;
    } else if rows.is_empty() {
        ctx.say(format_args!(
            "no backups in {}",
            config.backup.dir.display()
        ));
    } else {
        ctx.say(format_args!("{}", table(&rows).trim_end()));
    }
    if let Some(first) = damaged.first() {
        return Err(OpsError::new(
            Exit::Data,
            format!(
                "{} of {} backups in {} failed the quick check (first: {first})",
                damaged.len(),
                rows.len() - orphans.len(),
                config.backup.dir.display()
            ),
        )
        .hint("do not rely on a damaged backup; `ransomeye-ops verify BACKUP` says what is wrong, and a new backup replaces it"));
    }
    match orphans.is_empty() {
        true => Ok(()),
        false => Err(manifest::orphans_error(&config.backup.dir, &orphans)),
    }
}

/// The human form of `backup list`: one aligned row per backup or orphan data file.
fn table(rows: &[serde_json::Value]) -> String {
    let mut table = Table::new(&[
        ("BACKUP", Align::Left),
        ("SNAPSHOT", Align::Left),
        ("ROWS", Align::Right),
        ("BYTES", Align::Right),
        ("STATE", Align::Left),
    ]);
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for r in rows {
        let name = r.get("file").unwrap_or(&r["backup"]);
        table.row(vec![
            cell(name),
            cell(&r["snapshot_time"]),
            cell(&r["rows"]),
            cell(&r["bytes"]),
            cell(&r["state"]),
        ]);
    }
    table.render()
}

/// `backup cat BACKUP`: the plain custom-format dump on stdout, for `pg_restore` by hand. The
/// dump is checked against the manifest as it streams; a mismatch exits 65 (and the output
/// must then be discarded).
pub(super) fn cat(ctx: &Context, backup: &Path) -> Result<(), OpsError> {
    if crate::utils::stdout_is_terminal() {
        return Err(OpsError::new(
            Exit::Usage,
            "refusing to write a binary dump to a terminal",
        )
        .hint("redirect it: `ransomeye-ops backup cat BACKUP > dump.pgc` or pipe it to pg_restore"));
    }
    let config = ctx.config()?;
    let key = KeyDir::new(&config.keys.dir).load_symmetric(KeyPurpose::Backup)?;
    let trust = crate::trust::verifying_keys(&config)?;
    let paths = check::locate(backup, &config.backup.dir)?;
    let manifest = check::quick(&paths, &trust)?;
    let mut reader = crate::sealed::SealedReader::open(&paths.dump, &key)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader.read(&mut buf).map_err(|e| reader.error(e))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).map_err(stdout_error)?;
    }
    out.flush().map_err(stdout_error)?;
    let digests = reader.finish()?;
    check::compare_sealed(&paths.dump, &manifest.body.dump, &digests)
}
