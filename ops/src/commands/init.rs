//! `init`: a new installation's configuration and keys.
//!
//! Procedure: refuse if anything exists → create directories → generate and persist the keys →
//! write the configuration last (its presence means "initialised") → report. If a step fails,
//! the keys this run wrote are removed again, so a failed init leaves nothing half-made.
//!
//! The directories it creates are shared with group `ransomeye-admin` (`2770`, see
//! [`ransomeye_kernel::access`]), so members can operate after a root init. Directories that
//! already exist are the operator's and are left as they are, with a warning when members
//! could not write in them.

use std::path::{Path, PathBuf};

use ransomeye_kernel::access::{admin_gid, create_private_dir, ADMIN_GROUP};
use ransomeye_kernel::config::{self, Config};
use ransomeye_kernel::keys::{KeyDir, KeyPurpose, SigningKey, SymmetricKey};
use serde::Serialize;

use super::{say, Context};
use crate::cli::InitArgs;
use crate::error::{Exit, OpsError};
use crate::utils::{absolute, print_json};

/// What `init` created, as reported (public parts only).
#[derive(Debug, Serialize)]
struct InitReport {
    config: PathBuf,
    keys_dir: PathBuf,
    trust: TrustReport,
    key_ids: KeyIds,
}

#[derive(Debug, Serialize)]
struct TrustReport {
    version: u64,
    key_id: String,
    public_key: String,
}

#[derive(Debug, Serialize)]
struct KeyIds {
    signing: String,
    archive: String,
    backup: String,
}

/// Runs `init`.
pub fn run(ctx: &Context, args: &InitArgs) -> Result<(), OpsError> {
    let config_path = absolute(&ctx.config_source.path);
    let keys = KeyDir::new(absolute(&args.keys_dir));
    refuse_existing(&config_path, &keys)?;

    let signing = SigningKey::generate()?;
    let archive = SymmetricKey::generate(KeyPurpose::Archive)?;
    let backup = SymmetricKey::generate(KeyPurpose::Backup)?;
    let config = build_config(args, &keys, &signing)?;

    let config_dir = config_path.parent().filter(|p| !p.as_os_str().is_empty());
    for (dir, setting) in [
        (keys.path(), "[keys] dir"),
        (config.archive.dir.as_path(), "[archive] dir"),
        (config.backup.dir.as_path(), "[backup] dir"),
    ]
    .into_iter()
    .chain(config_dir.map(|d| (d, "the configuration's directory")))
    {
        if dir.is_dir() {
            warn_unless_shared(dir, setting);
        }
        create_private_dir(dir)?;
    }

    let mut written = Vec::new();
    let outcome = persist(
        &keys,
        &signing,
        &archive,
        &backup,
        &config,
        &config_path,
        &mut written,
    );
    if let Err(err) = outcome {
        for path in written.iter().rev() {
            let _ = std::fs::remove_file(path);
        }
        return Err(err);
    }

    report(ctx, &config_path, &keys, &config, &archive, &backup)
}

/// Warns when an existing directory is not writable by group `ransomeye-admin`: root can
/// operate, but its members would be refused there.
fn warn_unless_shared(dir: &Path, setting: &str) {
    use std::os::unix::fs::MetadataExt;
    let Some(admin) = admin_gid() else { return };
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    let group_can_write = meta.gid() == admin && meta.mode() & 0o070 == 0o070;
    if !group_can_write && meta.mode() & 0o007 != 0o007 {
        tracing::warn!(
            "{setting} {shown} exists and is not writable by group '{ADMIN_GROUP}', so only root \
             can operate there; to let members operate: chgrp {ADMIN_GROUP} {shown} && chmod 2770 {shown}",
            shown = dir.display()
        );
    }
}

fn refuse_existing(config_path: &Path, keys: &KeyDir) -> Result<(), OpsError> {
    let mut existing: Vec<PathBuf> = Vec::new();
    if config_path.symlink_metadata().is_ok() {
        existing.push(config_path.to_path_buf());
    }
    for purpose in [KeyPurpose::Signing, KeyPurpose::Archive, KeyPurpose::Backup] {
        let path = keys.key_path(purpose);
        if path.symlink_metadata().is_ok() {
            existing.push(path);
        }
    }
    if existing.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = existing.iter().map(|p| p.display().to_string()).collect();
    Err(OpsError::new(
        Exit::CantCreate,
        format!("refusing to overwrite existing {}", list.join(", ")),
    )
    .hint(
        "this installation is already initialised; replacing the trust key is `rotate-keys`'s job",
    ))
}

fn build_config(args: &InitArgs, keys: &KeyDir, signing: &SigningKey) -> Result<Config, OpsError> {
    let config = Config {
        database: config::Database::new(args.database_url.clone()),
        bus: config::Bus::new(args.nats_url.clone()),
        keys: config::Keys {
            dir: keys.path().to_path_buf(),
        },
        archive: config::Archive {
            dir: absolute(&args.archive_dir),
            ..config::Archive::default()
        },
        backup: config::Backup {
            dir: absolute(&args.backup_dir),
            ..config::Backup::default()
        },
        services: config::Services::default(),
        logs: config::Logs::default(),
        clean: config::Clean::default(),
        alerts: config::Alerts::default(),
        trust: config::Trust {
            version: 1,
            key_id: signing.id().to_string(),
            public_key: hex::encode(signing.public_key()),
        },
        credentials: Vec::new(),
    };
    // The same validation a later load applies, so init never writes a config it would refuse.
    config.to_toml(Path::new("<command line>")).map_err(|e| {
        OpsError::new(Exit::Usage, e.to_string().replace("<command line>: ", ""))
            .hint("fix the URL given on the command line")
    })?;
    Ok(config)
}

fn persist(
    keys: &KeyDir,
    signing: &SigningKey,
    archive: &SymmetricKey,
    backup: &SymmetricKey,
    config: &Config,
    config_path: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<(), OpsError> {
    written.push(keys.create_signing(signing, KeyPurpose::Signing.file_name())?);
    written.push(keys.create_symmetric(archive)?);
    written.push(keys.create_symmetric(backup)?);
    // Read the keys back through the same checks every command applies before trusting them.
    let reloaded = keys.load_signing()?;
    if reloaded.public_key() != signing.public_key() || !reloaded.self_test() {
        return Err(OpsError::new(
            Exit::Io,
            "signing key did not read back intact",
        ));
    }
    for key in [archive, backup] {
        if keys.load_symmetric(key.purpose())?.id() != key.id() {
            return Err(OpsError::new(
                Exit::Io,
                format!("{} key did not read back intact", key.purpose()),
            ));
        }
    }
    config.create(config_path)?;
    Ok(())
}

fn report(
    ctx: &Context,
    config_path: &Path,
    keys: &KeyDir,
    config: &Config,
    archive: &SymmetricKey,
    backup: &SymmetricKey,
) -> Result<(), OpsError> {
    let report = InitReport {
        config: config_path.to_path_buf(),
        keys_dir: keys.path().to_path_buf(),
        trust: TrustReport {
            version: config.trust.version,
            key_id: config.trust.key_id.clone(),
            public_key: config.trust.public_key.clone(),
        },
        key_ids: KeyIds {
            signing: config.trust.key_id.clone(),
            archive: archive.id().to_string(),
            backup: backup.id().to_string(),
        },
    };
    if ctx.json {
        return print_json(&report);
    }
    say!(ctx, "initialised RansomEye ops");
    say!(ctx, "  config            {}", report.config.display());
    say!(ctx, "  keys dir          {}", report.keys_dir.display());
    say!(ctx, "  trust version     {}", report.trust.version);
    say!(ctx, "  trust public key  {}", report.trust.public_key);
    say!(ctx, "  signing key id    {}", report.key_ids.signing);
    say!(ctx, "  archive key id    {}", report.key_ids.archive);
    say!(ctx, "  backup key id     {}", report.key_ids.backup);
    say!(
        ctx,
        "Back up the keys directory offline now: archives and backups cannot be read without it."
    );
    Ok(())
}
