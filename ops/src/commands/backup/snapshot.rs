//! Steps 3 to 5 of `backup`: one exported snapshot, dumped by pg_dump while the snapshot's own
//! transaction counts the rows and exports the intel graph, from which the file bundle is
//! written and read back. Everything is written to temp files; nothing is committed here.

use std::collections::BTreeMap;
use std::io::Seek;
use std::path::Path;
use std::time::Instant;

use ransomeye_intel::GraphDigest;
use ransomeye_kernel::envelope::{EnvelopeWriter, Purpose};
use ransomeye_kernel::keys::{KeyPurpose, SymmetricKey};
use ransomeye_kernel::{FileAction, PathError};
use sqlx::{Connection, PgConnection};

use super::dump::Dump;
use super::files::{self, Bundled};
use super::{Job, Sealed};
use crate::backup_set::check::Tools;
use crate::backup_set::counts::count_rows;
use crate::backup_set::manifest::{self, Body, Entry, Paths};
use crate::db::{self, Answer};
use crate::error::{Exit, OpsError};
use crate::pg_tools::PgTool;
use crate::utils::elapsed_ms;

/// One snapshot taken: the dump and the bundle written and read back under temp names.
pub(super) struct Taken {
    pub snapshot: Snapshot,
    pub pg_dump_version: String,
    pub paths: Paths,
    /// Row counts per `schema.table`.
    pub tables: BTreeMap<String, u64>,
    pub dump: Sealed,
    pub bundle: Bundled,
    /// Milliseconds spent writing and reading back the bundle (while pg_dump ran).
    pub bundle_ms: f64,
}

impl Taken {
    /// The manifest's body for what was taken.
    pub fn body(&self, job: &Job) -> Body {
        Body {
            format: manifest::FORMAT,
            name: self.paths.name.clone(),
            snapshot_time: self.snapshot.time.clone(),
            database: self.snapshot.database.clone(),
            server_version: self.snapshot.server_version.clone(),
            pg_dump_version: self.pg_dump_version.clone(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            backup_key_id: job.backup_key.id().to_string(),
            zstd_level: job.zstd_level,
            dump: files::sealed_file(&self.paths.dump, &self.dump.digests),
            files: files::sealed_file(&self.paths.files, &self.bundle.sealed.digests),
            tables: self.tables.clone(),
            intel: self.bundle.intel.clone(),
            entries: self.bundle.written.entries.clone(),
        }
    }
}

/// Opens a snapshot in `conn` and takes the backup from it: pg_dump (read back as it is
/// written) beside the counts, the graph export and the bundle.
pub(super) async fn take(conn: &mut PgConnection, job: &Job) -> Result<Taken, OpsError> {
    let previous = files::previous_entries(job)?;
    let mut tx = conn
        .begin_with("begin isolation level repeatable read, read only")
        .answer("starting the snapshot transaction")
        .await?;
    let snapshot = Snapshot::export(&mut tx).await?;
    let pg_dump = PgTool::find("pg_dump", snapshot.server_major, job.pg_bin_dir.as_deref())?;
    let pg_restore = Tools::new(job.pg_bin_dir.clone()).pg_restore(&pg_dump.version)?;
    let paths = Paths::new(&job.dir, &manifest::next_name(&job.dir, &snapshot.stamp));
    let dump = Dump::start(&pg_dump, &pg_restore, job, &snapshot, &paths.dump)?;
    let read = read(&mut tx, job, &paths, &previous).await;
    // The dump must finish either way before any error is reported, so that no child
    // outlives the run; the snapshot stays exported until then.
    let dumped = dump.finish().await;
    let _ = db::bounded(tx.commit(), "ending the snapshot transaction").await;
    // A failed query ends the snapshot, and pg_dump then fails to import it: report the
    // cause, not pg_dump's consequence.
    let read = read?;
    let dump = dumped?;
    Ok(Taken {
        snapshot,
        pg_dump_version: pg_dump.version,
        paths,
        tables: read.tables,
        dump,
        bundle: read.bundle,
        bundle_ms: read.bundle_ms,
    })
}

/// What the snapshot's transaction reads while pg_dump runs.
struct Read {
    tables: BTreeMap<String, u64>,
    bundle: Bundled,
    bundle_ms: f64,
}

/// The row counts, then the graph export, then the bundle written and read back: it needs only
/// the graph export, so it is done while pg_dump is still running.
async fn read(
    conn: &mut PgConnection,
    job: &Job,
    paths: &Paths,
    previous: &[Entry],
) -> Result<Read, OpsError> {
    let tables = count_rows(conn).await?;
    let intel = IntelSpool::export(conn, &job.dir).await?;
    let started = Instant::now();
    let bundle = files::write_bundle(job, paths, previous, intel).await?;
    Ok(Read {
        tables,
        bundle,
        bundle_ms: elapsed_ms(started),
    })
}

/// The exported snapshot everything in one backup is taken from.
pub(super) struct Snapshot {
    /// What `pg_export_snapshot()` returned, for `pg_dump --snapshot`.
    pub id: String,
    /// The snapshot's time as JSON shows it (the manifest's `snapshot_time`).
    pub time: String,
    /// The snapshot's UTC time as `YYYYMMDDTHHMMSSZ`, for the backup's name.
    pub stamp: String,
    pub database: String,
    pub server_version: String,
    /// The server's major version, to find the matching pg_dump.
    pub server_major: u32,
}

impl Snapshot {
    /// Exports the snapshot of `conn`'s transaction (REPEATABLE READ, read only).
    pub async fn export(conn: &mut PgConnection) -> Result<Snapshot, OpsError> {
        let (id, time, stamp, database, server_version, num): (
            String,
            String,
            String,
            String,
            String,
            String,
        ) = sqlx::query_as(
            "select pg_export_snapshot(), to_json(now())#>>'{}', \
             to_char(now() at time zone 'UTC', 'YYYYMMDD\"T\"HH24MISS\"Z\"'), \
             current_database(), current_setting('server_version'), \
             current_setting('server_version_num')",
        )
        .fetch_one(&mut *conn)
        .answer("exporting the snapshot")
        .await?;
        let server_major = num.parse::<u32>().map(|n| n / 10000).unwrap_or(0);
        Ok(Snapshot {
            id,
            time,
            stamp,
            database,
            server_version,
            server_major,
        })
    }
}

/// The intel graph export, spooled encrypted with a throwaway key into an unnamed temp file
/// (the tar header needs its size before its bytes, and plaintext never touches the disk).
pub(super) struct IntelSpool {
    pub file: std::fs::File,
    pub key: SymmetricKey,
    pub digest: GraphDigest,
}

impl IntelSpool {
    /// Exports the graph as `conn`'s transaction sees it into a spool file in `dir`.
    pub async fn export(conn: &mut PgConnection, dir: &Path) -> Result<IntelSpool, OpsError> {
        let key = SymmetricKey::generate(KeyPurpose::Backup)
            .map_err(|e| OpsError::new(Exit::Software, format!("cannot make a spool key: {e}")))?;
        let file = tempfile::tempfile_in(dir).map_err(PathError::at(FileAction::Create, dir))?;
        let mut writer = EnvelopeWriter::new(
            std::io::BufWriter::with_capacity(256 * 1024, file),
            &key,
            Purpose::Backup,
        )
        .map_err(PathError::at(FileAction::Write, dir))?;
        // One answer timeout for the whole export (see restore's digest).
        let digest = db::bounded(
            ransomeye_intel::export(conn, &mut writer),
            "exporting the intel graph",
        )
        .await?
        .map_err(|e| OpsError::intel(e, "exporting the intel graph"))?;
        let mut file = writer
            .finish()
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .map_err(PathError::at(FileAction::Write, dir))?;
        file.rewind()
            .map_err(PathError::at(FileAction::Read, dir))?;
        Ok(IntelSpool { file, key, digest })
    }
}
