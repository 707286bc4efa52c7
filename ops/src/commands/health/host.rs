//! The host checks of `health`: free space of the configured directories, load, memory and
//! I/O utilisation, read from `statvfs` and /proc.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::HumanBytes;
use ransomeye_kernel::config::Config;

use super::{Check, Status};

/// Free space below this fraction is critical (the seed's rule: more than 10 % must be free).
const DISK_CRITICAL: f64 = 0.10;
/// Free space below this fraction is a warning.
const DISK_WARNING: f64 = 0.20;
/// Load average per core above these values.
const LOAD_WARNING: f64 = 2.0;
const LOAD_CRITICAL: f64 = 4.0;
/// Available memory below these fractions of total.
const MEMORY_WARNING: f64 = 0.10;
const MEMORY_CRITICAL: f64 = 0.05;
/// Disk busy time above this fraction during the sample is a warning.
const IO_BUSY_WARNING: f64 = 0.90;
/// How long the host check samples /proc/diskstats for I/O utilisation.
const IO_SAMPLE: Duration = Duration::from_millis(100);

pub(super) fn directories(config: &Config) -> Vec<(&'static str, PathBuf)> {
    vec![
        ("keys", config.keys.dir.clone()),
        ("archive", config.archive.dir.clone()),
        ("backup", config.backup.dir.clone()),
    ]
}

pub(super) fn check_disk(dirs: &[(&'static str, PathBuf)]) -> Check {
    let mut check = Check::new("disk");
    // A stand-in for statvfs stuck on a dead network mount.
    crate::failpoint::pause("health-disk-hang");
    for (role, dir) in dirs {
        let stat = match nix::sys::statvfs::statvfs(dir.as_path()) {
            Ok(s) => s,
            Err(e) => {
                check.degrade(
                    Status::Critical,
                    format!("{role} dir {}: {e}", dir.display()),
                );
                continue;
            }
        };
        let blocks = stat.blocks() as f64;
        let space = if blocks > 0.0 {
            stat.blocks_available() as f64 / blocks
        } else {
            1.0
        };
        let files = stat.files() as f64;
        // Some file systems (btrfs, tmpfs with nr_inodes=0) report no inode limit.
        let inodes = if files > 0.0 {
            stat.files_available() as f64 / files
        } else {
            1.0
        };
        let free_bytes = stat.blocks_available() as f64 * stat.fragment_size() as f64;
        check.metrics.insert(format!("{role}_free_ratio"), space);
        check
            .metrics
            .insert(format!("{role}_free_bytes"), free_bytes);
        check
            .metrics
            .insert(format!("{role}_inodes_free_ratio"), inodes);
        let worst = space.min(inodes);
        let what = format!(
            "{role} {}: {:.0} % free ({}), {:.0} % inodes free",
            dir.display(),
            space * 100.0,
            HumanBytes(free_bytes as u64),
            inodes * 100.0
        );
        if worst < DISK_CRITICAL {
            check.degrade(Status::Critical, what);
        } else if worst < DISK_WARNING {
            check.degrade(Status::Warning, what);
        } else {
            check.note(what);
        }
    }
    check
}

pub(super) fn check_host() -> Check {
    let mut check = Check::new("host");
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    match std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| parse_loadavg(&s))
    {
        Some(load1) => {
            let per_core = load1 / cores;
            check.metrics.insert("load1_per_core".into(), per_core);
            let what = format!("load {load1:.2} on {cores} cores");
            if per_core >= LOAD_CRITICAL {
                check.degrade(Status::Critical, what);
            } else if per_core >= LOAD_WARNING {
                check.degrade(Status::Warning, what);
            } else {
                check.note(what);
            }
        }
        None => check.degrade(Status::Unknown, "cannot read /proc/loadavg"),
    }
    match std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| parse_meminfo(&s))
    {
        Some((total, available)) => {
            let ratio = available / total;
            check.metrics.insert("memory_available_ratio".into(), ratio);
            check
                .metrics
                .insert("memory_available_bytes".into(), available);
            let what = format!(
                "{} of {} memory available",
                HumanBytes(available as u64),
                HumanBytes(total as u64)
            );
            if ratio < MEMORY_CRITICAL {
                check.degrade(Status::Critical, what);
            } else if ratio < MEMORY_WARNING {
                check.degrade(Status::Warning, what);
            } else {
                check.note(what);
            }
        }
        None => check.degrade(Status::Unknown, "cannot read /proc/meminfo"),
    }
    // Disk I/O is optional ("if readable"): utilisation over a short sample.
    if let Some(before) = read_diskstats() {
        let start = Instant::now();
        std::thread::sleep(IO_SAMPLE);
        if let Some(after) = read_diskstats() {
            let window_ms = start.elapsed().as_secs_f64() * 1000.0;
            let busiest = before
                .iter()
                .filter_map(|(dev, busy)| Some((dev, after.get(dev)?.saturating_sub(*busy))))
                .max_by_key(|(_, delta)| *delta);
            if let Some((dev, delta)) = busiest {
                let util = (delta as f64 / window_ms).min(1.0);
                check.metrics.insert("io_busiest_utilisation".into(), util);
                let what = format!("busiest disk {dev} {:.0} % busy", util * 100.0);
                if util >= IO_BUSY_WARNING {
                    check.degrade(Status::Warning, what);
                } else {
                    check.note(what);
                }
            }
        }
    }
    check
}

pub(super) fn parse_loadavg(s: &str) -> Option<f64> {
    s.split_whitespace().next()?.parse().ok()
}

/// (MemTotal, MemAvailable) in bytes.
pub(super) fn parse_meminfo(s: &str) -> Option<(f64, f64)> {
    let field = |name: &str| -> Option<f64> {
        let line = s.lines().find(|l| l.starts_with(name))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024.0)
    };
    let total = field("MemTotal:")?;
    (total > 0.0).then_some(())?;
    Some((total, field("MemAvailable:")?))
}

/// Milliseconds spent doing I/O per whole block device (partitions and virtual devices skipped).
pub(super) fn read_diskstats() -> Option<BTreeMap<String, u64>> {
    let text = std::fs::read_to_string("/proc/diskstats").ok()?;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 13 {
            continue;
        }
        let dev = f[2];
        if dev.starts_with("loop") || dev.starts_with("ram") || dev.starts_with("dm-") {
            continue;
        }
        if !Path::new("/sys/block").join(dev).exists() {
            continue;
        }
        if let Ok(ms) = f[12].parse::<u64>() {
            out.insert(dev.to_string(), ms);
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        assert_eq!(parse_loadavg("0.52 0.40 0.30 1/123 456\n"), Some(0.52));
        let mem = "MemTotal:       16000 kB\nMemFree: 1 kB\nMemAvailable:    8000 kB\n";
        assert_eq!(
            parse_meminfo(mem),
            Some((16000.0 * 1024.0, 8000.0 * 1024.0))
        );
        assert_eq!(parse_meminfo("garbage"), None);
    }

    #[test]
    fn disk_check_is_critical_for_a_missing_directory() {
        let c = check_disk(&[("archive", PathBuf::from("/nonexistent/ransomeye/archive"))]);
        assert_eq!(c.status, Status::Critical);
        assert!(
            c.detail.contains("/nonexistent/ransomeye/archive"),
            "{}",
            c.detail
        );
    }

    #[test]
    fn disk_check_reports_free_space_of_an_existing_directory() {
        let c = check_disk(&[("backup", std::env::temp_dir())]);
        let free = c.metrics["backup_free_ratio"];
        assert!((0.0..=1.0).contains(&free), "{free}");
        assert!(c.detail.contains("% free"), "{}", c.detail);
    }
}
