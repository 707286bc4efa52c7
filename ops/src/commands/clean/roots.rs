//! Which directories `clean` may work in: refused (78, also in a dry run) when a root is `/`,
//! a system directory or an ancestor of one, a symlink, or overlaps (contains or lies inside) a
//! directory the tool must never delete from: `[keys] dir`, `[archive] dir`, `[backup] dir`,
//! each `[logs] dirs` entry's `archive/`.

use std::path::{Component, Path, PathBuf};

use crate::error::{Exit, OpsError};

/// Directories no root may be, contain, or (for the first group) lie inside.
const SYSTEM_DIRS: &[&str] = &[
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/media",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
    "/var/lib",
    "/var/log",
    "/var/cache",
    "/var/spool",
    "/var/tmp",
    "/var/backups",
];
/// System directories whose inside is also off limits (the rest may hold a root of ours, as
/// `/var/lib/ransomeye/tmp`).
const SYSTEM_TREES: &[&str] = &[
    "/bin", "/boot", "/dev", "/etc", "/lib", "/proc", "/sbin", "/sys", "/usr",
];

/// `path` made absolute and free of `.` and `..` without touching the disk (symlinks are
/// checked separately, on the real path).
pub fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
        }
    }
    out
}

/// Whether one of `a`, `b` contains the other (or they are the same).
fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Why `root` (lexically normalised, and its real path `real` when it exists) may not be
/// cleaned, given the protected directories (name, path); `None` when it may.
pub fn refusal(
    root: &Path,
    real: Option<&Path>,
    protected: &[(String, PathBuf)],
) -> Option<String> {
    for candidate in std::iter::once(root).chain(real) {
        if candidate == Path::new("/") {
            return Some("is /".into());
        }
        if let Some(sys) = SYSTEM_DIRS
            .iter()
            .find(|s| Path::new(s).starts_with(candidate))
        {
            return Some(format!("is or contains the system directory {sys}"));
        }
        if let Some(sys) = SYSTEM_TREES.iter().find(|s| candidate.starts_with(s)) {
            return Some(format!("is inside the system directory {sys}"));
        }
        for (name, dir) in protected {
            if overlaps(candidate, dir) {
                return Some(format!("overlaps {name} {}", dir.display()));
            }
        }
    }
    None
}

/// Checks every root; the first refused one is a configuration error naming it.
pub fn check(
    roots: &[(&'static str, PathBuf)],
    protected: &[(String, PathBuf)],
) -> Result<(), OpsError> {
    for (setting, root) in roots {
        if !root.is_absolute() {
            return Err(refused(setting, root, "is not an absolute path"));
        }
        let normal = lexical(root);
        if std::fs::symlink_metadata(root).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(refused(
                setting,
                root,
                "is a symlink (clean never follows one)",
            ));
        }
        let real = std::fs::canonicalize(root).ok();
        let protected: Vec<(String, PathBuf)> = protected
            .iter()
            .flat_map(|(n, p)| {
                let mut both = vec![(n.clone(), lexical(p))];
                if let Ok(real) = std::fs::canonicalize(p) {
                    both.push((n.clone(), real));
                }
                both
            })
            .collect();
        if let Some(why) = refusal(&normal, real.as_deref(), &protected) {
            return Err(refused(setting, root, &why));
        }
    }
    Ok(())
}

fn refused(setting: &str, root: &Path, why: &str) -> OpsError {
    OpsError::new(
        Exit::Config,
        format!("{setting} {}: {why}; refusing to clean it", root.display()),
    )
    .hint(
        "point [clean] temp_dirs and buffer_dirs at the platform's own temp and buffer directories",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protected() -> Vec<(String, PathBuf)> {
        vec![
            ("[keys] dir".into(), PathBuf::from("/etc/ransomeye/keys")),
            (
                "[backup] dir".into(),
                PathBuf::from("/var/backups/ransomeye"),
            ),
            (
                "[logs] archive".into(),
                PathBuf::from("/var/log/ransomeye/archive"),
            ),
        ]
    }

    fn why(root: &str) -> Option<String> {
        refusal(&lexical(Path::new(root)), None, &protected())
    }

    #[test]
    fn system_directories_their_ancestors_and_protected_overlaps_are_refused() {
        for root in [
            "/",
            "/etc",
            "/var",
            "/var/lib",
            "/usr/local",
            "/etc/ransomeye",
            "/var/log",
            "/var/backups/ransomeye/x",
            "/var/log/ransomeye",
            "/var/lib/../../etc/x",
        ] {
            assert!(why(root).is_some(), "{root} must be refused");
        }
        assert!(why("/etc/ransomeye/keys/../../x").is_some_and(|w| w.contains("/etc")));
    }

    #[test]
    fn the_platforms_own_directories_are_accepted() {
        for root in [
            "/var/lib/ransomeye/tmp",
            "/var/lib/ransomeye/buffer",
            "/srv/ransomeye/tmp",
            "/tmp/x",
        ] {
            assert_eq!(why(root), None, "{root}");
        }
    }
}
