//! `archive list`, `archive verify` and `archive cat`: the archive directory, read and never
//! changed.

use std::path::{Path, PathBuf};

use ransomeye_kernel::keys::{KeyDir, KeyPurpose};
use ransomeye_kernel::{FileAction, PathError};
use serde::Serialize;

use super::check::compare;
use super::check::verify_archive;
use super::export::file_name;
use super::manifest;
use super::manifest::{manifest_path, Manifest, State};
use super::recover::DirScan;
use super::recover::Orphan;
use super::recover::NO_MANIFEST;
use super::stream::read_back;
use crate::commands::{say, Context};
use crate::error::{Exit, OpsError};
use crate::table::{Align, Table};
use crate::utils::{print_json, runtime, stdout_error};

/// Resolves FILE (an archive or its manifest) to (archive path, manifest). An archive given by
/// name is checked as it is, against the manifest beside it (`x.zst.enc` → `x.manifest.json`).
pub(super) fn locate(file: &Path) -> Result<(PathBuf, Manifest), OpsError> {
    let given_manifest = file_name(file).ends_with(".manifest.json");
    let manifest_file = if given_manifest {
        file.to_path_buf()
    } else {
        manifest_path(file)
    };
    if !file.exists() {
        return Err(PathError::new(
            FileAction::Open,
            file,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )
        .into());
    }
    if !manifest_file.exists() {
        return Err(OpsError::new(
            Exit::Data,
            format!(
                "{}: its manifest {} is missing",
                file.display(),
                manifest_file.display()
            ),
        )
        .hint(
            "`ransomeye-ops decrypt FILE | zstd -d` still reads an archive without its manifest",
        ));
    }
    let manifest = Manifest::read(&manifest_file, "archive manifest")?;
    let archive = if given_manifest {
        manifest::archive_path(&manifest_file, &manifest.body)
    } else {
        file.to_path_buf()
    };
    Ok((archive, manifest))
}

/// How the operator resolves an orphan (README, `archive`).
const ORPHAN_HINT: &str = "an orphan is an archive data file without its manifest, or a manifest without its data file; \
archive runs never delete one. Put the missing half back from your copy, or move the orphan out of [archive] dir \
once you know its rows are safe (see the README, `archive`)";

/// What `archive list` shows of a manifest.
#[derive(Debug, Serialize)]
struct ListInfo {
    table: String,
    state: State,
    rows: u64,
    first_id: Option<i64>,
    last_id: Option<i64>,
    first_time: Option<String>,
    last_time: Option<String>,
    file_bytes: u64,
    created_at: String,
}

#[derive(Debug, Serialize)]
struct ListEntry {
    file: PathBuf,
    /// The manifest's facts (absent for a data file without its manifest).
    #[serde(flatten)]
    info: Option<ListInfo>,
    archive_present: bool,
    /// An interrupted run left the archive at its temp name; the next run completes it.
    interrupted: bool,
    /// Why the file is an orphan, if it is one.
    orphan: Option<&'static str>,
}

pub(super) fn list(ctx: &Context) -> Result<(), OpsError> {
    let config = ctx.config()?;
    crate::dirs::check_readable(&config.archive.dir, "[archive] dir")?;
    let scan = DirScan::read(&config.archive.dir)?;
    let orphans = scan.orphans();
    let orphan_reason = |file: &Path| orphans.iter().find(|o| o.file == file).map(|o| o.reason);
    let mut entries: Vec<ListEntry> = scan
        .manifests
        .iter()
        .map(|(path, m)| {
            let archive = manifest::archive_path(path, &m.body);
            let b = m.body.clone();
            ListEntry {
                archive_present: archive.exists(),
                interrupted: !archive.exists() && scan.is_interrupted(path, m),
                orphan: orphan_reason(path),
                file: archive,
                info: Some(ListInfo {
                    table: b.table,
                    state: b.state,
                    rows: b.rows,
                    first_id: b.first_id,
                    last_id: b.last_id,
                    first_time: b.first_time,
                    last_time: b.last_time,
                    file_bytes: b.file_bytes,
                    created_at: b.created_at,
                }),
            }
        })
        .collect();
    entries.extend(
        orphans
            .iter()
            .filter(|o| o.reason == NO_MANIFEST)
            .map(|o| ListEntry {
                file: o.file.clone(),
                info: None,
                archive_present: true,
                interrupted: false,
                orphan: Some(o.reason),
            }),
    );
    // Oldest first: by when the archive was written (a data file without its manifest, by its
    // modification time), then by name.
    let written = |e: &ListEntry| match &e.info {
        Some(i) => i.created_at.clone(),
        None => std::fs::metadata(&e.file)
            .and_then(|m| m.modified())
            .map(|t| humantime::format_rfc3339_seconds(t).to_string())
            .unwrap_or_default(),
    };
    entries.sort_by_cached_key(|e| (written(e), e.file.clone()));
    if ctx.json {
        print_json(&entries)?;
    } else if entries.is_empty() {
        say!(ctx, "no archives in {}", config.archive.dir.display());
    } else {
        let mut table = Table::new(&[
            ("FILE", Align::Left),
            ("STATE", Align::Left),
            ("ROWS", Align::Right),
            ("IDS", Align::Left),
            ("BYTES", Align::Right),
            ("WRITTEN", Align::Left),
            ("NOTE", Align::Left),
        ]);
        for e in &entries {
            let note = match (e.orphan, e.interrupted) {
                (Some(reason), _) => format!("ORPHAN: {reason}"),
                (None, true) => "interrupted: the next archive run completes it".to_string(),
                (None, false) => String::new(),
            };
            let Some(i) = &e.info else {
                table.row(vec![
                    file_name(&e.file),
                    "?".into(),
                    String::new(),
                    String::new(),
                    String::new(),
                    written(e),
                    note,
                ]);
                continue;
            };
            let id = |id: Option<i64>| id.map(|i| i.to_string()).unwrap_or_default();
            table.row(vec![
                file_name(&e.file),
                format!("{:?}", i.state).to_lowercase(),
                i.rows.to_string(),
                format!("{}..{}", id(i.first_id), id(i.last_id)),
                i.file_bytes.to_string(),
                i.created_at.clone(),
                note,
            ]);
        }
        say!(ctx, "{}", table.render().trim_end());
    }
    orphan_error(&config.archive.dir, &orphans)
}

/// Exit 65 naming the orphans, if there are any.
fn orphan_error(dir: &Path, orphans: &[Orphan]) -> Result<(), OpsError> {
    if orphans.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = orphans.iter().map(|o| file_name(&o.file)).collect();
    Err(OpsError::new(
        Exit::Data,
        format!(
            "{} orphan file{} in {}: {}",
            orphans.len(),
            if orphans.len() == 1 { "" } else { "s" },
            dir.display(),
            names.join(", ")
        ),
    )
    .hint(ORPHAN_HINT))
}

#[derive(Debug, Serialize)]
struct VerifyEntry {
    file: PathBuf,
    ok: bool,
    error: Option<String>,
}

pub(super) fn verify(ctx: &Context, file: Option<&Path>, all: bool) -> Result<(), OpsError> {
    let config = ctx.config()?;
    let key = KeyDir::new(&config.keys.dir).load_symmetric(KeyPurpose::Archive)?;
    let trust = crate::trust::verifying_keys(&config)?;
    // With --all: every manifest, and every data file without one (an orphan: it fails).
    let (targets, orphans): (Vec<PathBuf>, Vec<Orphan>) = if all {
        crate::dirs::check_readable(&config.archive.dir, "[archive] dir")?;
        let scan = DirScan::read(&config.archive.dir)?;
        let orphans = scan.orphans();
        let mut targets: Vec<PathBuf> = scan.manifests.iter().map(|(p, _)| p.clone()).collect();
        targets.extend(
            orphans
                .iter()
                .filter(|o| o.reason == NO_MANIFEST)
                .map(|o| o.file.clone()),
        );
        targets.sort();
        (targets, orphans)
    } else {
        (
            file.map(Path::to_path_buf).into_iter().collect(),
            Vec::new(),
        )
    };
    let rt = runtime()?;
    let mut results = Vec::new();
    for target in &targets {
        let orphan = orphans.iter().find(|o| &o.file == target);
        let outcome = locate(target).and_then(|(archive, manifest)| {
            if !archive.exists() {
                let what = match orphan {
                    Some(o) => format!("{}: orphan: {}", target.display(), o.reason),
                    None if manifest.body.state == State::Written => format!(
                        "{}: not in place yet: an interrupted run left it at a temp name; the next archive run completes it",
                        archive.display()
                    ),
                    None => format!("{}: archive file missing", archive.display()),
                };
                return Err(OpsError::new(Exit::Data, what));
            }
            rt.block_on(verify_archive(&archive, &manifest, &key, &trust))
                .map(|()| archive)
        });
        let outcome = match (orphan, outcome) {
            (Some(o), Err(_)) if o.reason == NO_MANIFEST => Err(OpsError::new(
                Exit::Data,
                format!("{}: orphan: {}", target.display(), o.reason),
            )),
            (_, outcome) => outcome,
        };
        match outcome {
            Ok(archive) => {
                if !ctx.json {
                    say!(ctx, "ok      {}", archive.display());
                }
                results.push(VerifyEntry {
                    file: archive,
                    ok: true,
                    error: None,
                });
            }
            Err(e) => {
                if !ctx.json {
                    println!("FAILED  {}", e.what);
                }
                results.push(VerifyEntry {
                    file: target.clone(),
                    ok: false,
                    error: Some(e.what),
                });
            }
        }
    }
    if ctx.json {
        print_json(&results)?;
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.ok)
        .map(|r| r.file.display().to_string())
        .collect();
    if all && results.is_empty() {
        // Monitoring that runs `verify --all` must not read "nothing checked" as "all good".
        return Err(OpsError::new(
            Exit::NoInput,
            format!("no archives to verify in {}", config.archive.dir.display()),
        )
        .hint(
            "check [archive] dir in the configuration, and that `ransomeye-ops archive` has run",
        ));
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(OpsError::new(
            Exit::Data,
            format!(
                "{} of {} archives failed verification: {}",
                failed.len(),
                results.len(),
                failed.join(", ")
            ),
        )
        .hint(if orphans.is_empty() {
            "do not trust the failed archives; restore them from another copy"
        } else {
            ORPHAN_HINT
        }))
    }
}

pub(super) fn cat(ctx: &Context, file: &Path) -> Result<(), OpsError> {
    use std::io::Write;
    let config = ctx.config()?;
    let key = KeyDir::new(&config.keys.dir).load_symmetric(KeyPurpose::Archive)?;
    let (archive, manifest) = locate(file)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, stdout.lock());
    let (digests, rows) = read_back(&archive, &key, |line| {
        out.write_all(line)
            .and_then(|()| out.write_all(b"\n"))
            .map_err(stdout_error)
    })?;
    out.flush().map_err(stdout_error)?;
    compare(
        &archive.display().to_string(),
        &manifest.body,
        &digests,
        rows,
    )
}
