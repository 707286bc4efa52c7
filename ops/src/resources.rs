//! The memory and CPUs a process may use: the host's, lowered by the limits of its cgroup.
//!
//! A container or a systemd unit sees the host's whole memory and every CPU in /proc, while its
//! cgroup may allow far less (gunicorn's tracker has the 129-workers-in-a-4-CPU-container story).
//! So every figure is the lower of the host's and of each cgroup on the path from the process's
//! cgroup up to the root: cgroup v2 `memory.max`, `cpu.max`, `cpuset.cpus.effective`; cgroup v1
//! `memory.limit_in_bytes`, `cpu.cfs_quota_us` / `cpu.cfs_period_us`. A CPU quota of 1.5 CPUs
//! counts as 2 (rounded up: the quota lets a process use two CPUs part of the time).
//!
//! Pure: everything is read below a root directory (`/` on a real host), so tests point it at a
//! fake tree. Owns no policy: what to do with the figures is the tuning formulas'.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// Whose cgroup to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// The running process (`/proc/self`).
    Current,
    /// Another process on this host (e.g. the PostgreSQL backend serving our connection).
    Pid(u32),
}

/// What the host and the cgroup allow; every limit is the lowest found, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resources {
    /// The host's memory (`MemTotal`), bytes.
    pub host_memory: u64,
    /// Memory the host could give to new processes now (`MemAvailable`), bytes.
    pub host_available: u64,
    /// The host's online CPUs.
    pub host_cpus: u32,
    /// The lowest cgroup memory limit on the path, bytes, and the file it is from.
    pub cgroup_memory: Option<Limit>,
    /// Memory the cgroup with that limit uses now, bytes.
    pub cgroup_memory_used: Option<u64>,
    /// The lowest cgroup CPU limit (quota rounded up, or cpuset size), and the file it is from.
    pub cgroup_cpus: Option<Limit>,
}

/// A limit and the file that set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Limit {
    /// Bytes (memory) or CPUs.
    pub value: u64,
    /// The file the limit was read from, under the root.
    pub source: String,
}

impl Resources {
    /// Memory to plan for: the host's, or the cgroup's limit when lower.
    pub fn memory(&self) -> u64 {
        match &self.cgroup_memory {
            Some(limit) => limit.value.min(self.host_memory),
            None => self.host_memory,
        }
    }

    /// Memory available to new processes now: the host's `MemAvailable`, or what the cgroup's
    /// limit leaves beside its current use when that is lower.
    pub fn available(&self) -> u64 {
        match (&self.cgroup_memory, self.cgroup_memory_used) {
            (Some(limit), used) => limit
                .value
                .saturating_sub(used.unwrap_or(0))
                .min(self.host_available),
            (None, _) => self.host_available,
        }
    }

    /// CPUs to plan for: the host's, or the cgroup's limit when lower (at least 1).
    pub fn cpus(&self) -> u32 {
        let cpus = match &self.cgroup_cpus {
            Some(limit) => u64::from(self.host_cpus).min(limit.value),
            None => u64::from(self.host_cpus),
        };
        u32::try_from(cpus).unwrap_or(u32::MAX).max(1)
    }

    /// One line for people: "16.0 GiB, 4 CPUs (cgroup: memory.max 8.0 GiB)".
    pub fn describe(&self) -> String {
        let mut s = format!(
            "host {} memory, {} CPUs",
            crate::size::human(self.host_memory),
            self.host_cpus
        );
        if let Some(limit) = &self.cgroup_memory {
            s.push_str(&format!(
                "; cgroup memory limit {} ({})",
                crate::size::human(limit.value),
                limit.source
            ));
        }
        if let Some(limit) = &self.cgroup_cpus {
            s.push_str(&format!(
                "; cgroup CPU limit {} ({})",
                limit.value, limit.source
            ));
        }
        s
    }
}

/// Why the host's resources could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError {
    /// The file that could not be read or understood.
    pub file: PathBuf,
    /// What was wrong with it.
    pub what: String,
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.what)
    }
}

/// Reads the host's memory and CPUs and the cgroup limits of `process`, everything under `root`.
/// The host's figures must be readable; cgroup files that are missing or unreadable are no limit.
pub fn read(root: &Path, process: Process) -> Result<Resources, ReadError> {
    let meminfo_path = root.join("proc/meminfo");
    let meminfo = std::fs::read_to_string(&meminfo_path).map_err(|e| ReadError {
        file: meminfo_path.clone(),
        what: e.to_string(),
    })?;
    let (host_memory, host_available) = parse_meminfo(&meminfo).ok_or_else(|| ReadError {
        file: meminfo_path,
        what: "no MemTotal line".into(),
    })?;
    let host_cpus = host_cpus(root);
    let proc_dir = match process {
        Process::Current => "self".to_string(),
        Process::Pid(pid) => pid.to_string(),
    };
    let cgroup_file = root.join("proc").join(proc_dir).join("cgroup");
    let memberships = std::fs::read_to_string(&cgroup_file)
        .map(|s| parse_proc_cgroup(&s))
        .unwrap_or_default();
    let mut found = Found::default();
    let v1_root = root.join("sys/fs/cgroup");
    // The unified hierarchy: at /sys/fs/cgroup on a cgroup v2 host, at /sys/fs/cgroup/unified
    // in the hybrid layout (v1 controllers beside an empty v2 tree).
    let v2_root = [v1_root.clone(), v1_root.join("unified")]
        .into_iter()
        .find(|d| d.join("cgroup.controllers").exists());
    for m in &memberships {
        if m.hierarchy_id == "0" && m.controllers.is_empty() {
            if let Some(v2_root) = &v2_root {
                scan_v2(root, v2_root, &m.path, &mut found);
            }
        } else {
            let has = |c: &str| m.controllers.iter().any(|x| x == c);
            if has("memory") {
                scan_v1_memory(root, &v1_root.join("memory"), &m.path, &mut found);
            }
            if has("cpu") {
                // Mounted as cpu,cpuacct on most distributions; as cpu alone on some.
                let joined = v1_root.join(m.controllers.join(","));
                let dir = if joined.is_dir() {
                    joined
                } else {
                    v1_root.join("cpu")
                };
                scan_v1_cpu(root, &dir, &m.path, &mut found);
            }
        }
    }
    Ok(Resources {
        host_memory,
        host_available: host_available.unwrap_or(host_memory),
        host_cpus,
        cgroup_memory: found.memory.clone().filter(|l| l.value < host_memory),
        cgroup_memory_used: found
            .memory
            .as_ref()
            .filter(|l| l.value < host_memory)
            .and(found.memory_used),
        cgroup_cpus: found.cpus.filter(|l| l.value < u64::from(host_cpus)),
    })
}

/// The lowest limits seen so far while walking the cgroup paths.
#[derive(Debug, Default)]
struct Found {
    memory: Option<Limit>,
    memory_used: Option<u64>,
    cpus: Option<Limit>,
}

impl Found {
    fn memory(&mut self, value: u64, source: String, used: Option<u64>) {
        if self.memory.as_ref().is_none_or(|l| value < l.value) {
            self.memory = Some(Limit { value, source });
            self.memory_used = used;
        }
    }

    fn cpus(&mut self, value: u64, source: String) {
        if self.cpus.as_ref().is_none_or(|l| value < l.value) {
            self.cpus = Some(Limit { value, source });
        }
    }
}

/// One line of /proc/<pid>/cgroup: `hierarchy-ID:controller-list:cgroup-path`.
#[derive(Debug, PartialEq, Eq)]
struct Membership {
    hierarchy_id: String,
    controllers: Vec<String>,
    path: String,
}

fn parse_proc_cgroup(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            Some(Membership {
                hierarchy_id: id.to_string(),
                controllers: controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    // "name=systemd" is a named hierarchy without controllers.
                    .filter(|c| !c.starts_with("name="))
                    .map(str::to_string)
                    .collect(),
                path: path.to_string(),
            })
        })
        // A v1 line with only a named hierarchy is no controller at all.
        .filter(|m| m.hierarchy_id == "0" || !m.controllers.is_empty())
        .collect()
}

/// The directories from the cgroup's own up to the hierarchy's root, that exist under `mount`.
/// Inside a container without a cgroup namespace the path names the host's hierarchy while the
/// container's own cgroup is mounted at the root: the missing directories are skipped and the
/// root still counts.
fn ancestors(mount: &Path, cgroup_path: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let mut rel = PathBuf::from(cgroup_path.trim_start_matches('/'));
    loop {
        let dir = mount.join(&rel);
        if dir.is_dir() {
            dirs.push(dir);
        }
        if !rel.pop() {
            break;
        }
    }
    dirs
}

fn shown(root: &Path, file: &Path) -> String {
    match file.strip_prefix(root) {
        Ok(rel) => format!("/{}", rel.display()),
        Err(_) => file.display().to_string(),
    }
}

fn read_trimmed(file: &Path) -> Option<String> {
    std::fs::read_to_string(file)
        .ok()
        .map(|s| s.trim().to_string())
}

fn scan_v2(root: &Path, mount: &Path, cgroup_path: &str, found: &mut Found) {
    for dir in ancestors(mount, cgroup_path) {
        let file = dir.join("memory.max");
        if let Some(value) = read_trimmed(&file).and_then(|s| s.parse::<u64>().ok()) {
            let used = read_trimmed(&dir.join("memory.current")).and_then(|s| s.parse().ok());
            found.memory(value, shown(root, &file), used);
        }
        let file = dir.join("cpu.max");
        if let Some(cpus) = read_trimmed(&file).and_then(|s| parse_cpu_max(&s)) {
            found.cpus(cpus, shown(root, &file));
        }
        let file = dir.join("cpuset.cpus.effective");
        if let Some(cpus) = read_trimmed(&file).and_then(|s| count_cpu_list(&s)) {
            found.cpus(cpus, shown(root, &file));
        }
    }
}

fn scan_v1_memory(root: &Path, mount: &Path, cgroup_path: &str, found: &mut Found) {
    for dir in ancestors(mount, cgroup_path) {
        let file = dir.join("memory.limit_in_bytes");
        // "No limit" is a huge number (PAGE_COUNTER_MAX pages), dropped later as above the host's.
        if let Some(value) = read_trimmed(&file).and_then(|s| s.parse::<u64>().ok()) {
            let used =
                read_trimmed(&dir.join("memory.usage_in_bytes")).and_then(|s| s.parse().ok());
            found.memory(value, shown(root, &file), used);
        }
    }
}

fn scan_v1_cpu(root: &Path, mount: &Path, cgroup_path: &str, found: &mut Found) {
    for dir in ancestors(mount, cgroup_path) {
        let quota_file = dir.join("cpu.cfs_quota_us");
        let quota = read_trimmed(&quota_file).and_then(|s| s.parse::<i64>().ok());
        let period =
            read_trimmed(&dir.join("cpu.cfs_period_us")).and_then(|s| s.parse::<i64>().ok());
        if let (Some(quota), Some(period)) = (quota, period) {
            // -1 is "no quota".
            if quota > 0 && period > 0 {
                found.cpus(
                    ceil_div(quota as u64, period as u64),
                    shown(root, &quota_file),
                );
            }
        }
    }
}

/// `cpu.max`: "max 100000" (no limit) or "QUOTA PERIOD" → CPUs, rounded up.
fn parse_cpu_max(s: &str) -> Option<u64> {
    let mut parts = s.split_whitespace();
    let quota = parts.next()?;
    let period: u64 = parts.next().unwrap_or("100000").parse().ok()?;
    if quota == "max" || period == 0 {
        return None;
    }
    let quota: u64 = quota.parse().ok()?;
    Some(ceil_div(quota, period).max(1))
}

fn ceil_div(a: u64, b: u64) -> u64 {
    a.div_ceil(b)
}

/// A CPU list ("0-3,8,10-11") → how many CPUs it names.
fn count_cpu_list(s: &str) -> Option<u64> {
    let mut n = 0u64;
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let a: u64 = a.parse().ok()?;
                let b: u64 = b.parse().ok()?;
                n += b.checked_sub(a)? + 1;
            }
            None => {
                part.parse::<u64>().ok()?;
                n += 1;
            }
        }
    }
    (n > 0).then_some(n)
}

/// Online CPUs from `sys/devices/system/cpu/online`, else the `processor` lines of
/// `proc/cpuinfo`, else 1.
fn host_cpus(root: &Path) -> u32 {
    let online =
        read_trimmed(&root.join("sys/devices/system/cpu/online")).and_then(|s| count_cpu_list(&s));
    let n = online.or_else(|| {
        let info = std::fs::read_to_string(root.join("proc/cpuinfo")).ok()?;
        let n = info.lines().filter(|l| l.starts_with("processor")).count() as u64;
        (n > 0).then_some(n)
    });
    n.and_then(|n| u32::try_from(n).ok()).unwrap_or(1)
}

/// `MemTotal` and `MemAvailable` of /proc/meminfo, in bytes.
fn parse_meminfo(text: &str) -> Option<(u64, Option<u64>)> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
            Some(kb * 1024)
        })
    };
    Some((field("MemTotal")?, field("MemAvailable")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    /// A fake root with a 16 GiB, 8-CPU host.
    fn host(dir: &Path) {
        write(
            dir,
            "proc/meminfo",
            "MemTotal:       16777216 kB\nMemFree:  1000 kB\nMemAvailable:   12582912 kB\n",
        );
        write(dir, "sys/devices/system/cpu/online", "0-7\n");
    }

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("should succeed")).expect("should succeed");
        std::fs::write(path, text).expect("should succeed");
    }

    #[test]
    fn without_cgroup_limits_the_host_figures_count() {
        let d = tempfile::tempdir().expect("should succeed");
        host(d.path());
        write(d.path(), "proc/self/cgroup", "0::/user.slice\n");
        write(d.path(), "sys/fs/cgroup/cgroup.controllers", "cpu memory\n");
        write(d.path(), "sys/fs/cgroup/user.slice/memory.max", "max\n");
        write(d.path(), "sys/fs/cgroup/user.slice/cpu.max", "max 100000\n");
        let r = read(d.path(), Process::Current).expect("should succeed");
        assert_eq!(r.memory(), 16 * GIB);
        assert_eq!(r.available(), 12 * GIB);
        assert_eq!(r.cpus(), 8);
        assert_eq!(r.cgroup_memory, None);
        assert_eq!(r.cgroup_cpus, None);
    }

    #[test]
    fn cgroup_v2_limits_lower_than_the_hosts_win_and_the_lowest_ancestor_counts() {
        let d = tempfile::tempdir().expect("should succeed");
        host(d.path());
        write(
            d.path(),
            "proc/4242/cgroup",
            "0::/system.slice/postgresql.service\n",
        );
        write(d.path(), "sys/fs/cgroup/cgroup.controllers", "cpu memory\n");
        // The slice allows 6 GiB, the service 8 GiB: the slice's is the one that binds.
        write(
            d.path(),
            "sys/fs/cgroup/system.slice/memory.max",
            &format!("{}\n", 6 * GIB),
        );
        write(
            d.path(),
            "sys/fs/cgroup/system.slice/postgresql.service/memory.max",
            &format!("{}\n", 8 * GIB),
        );
        write(
            d.path(),
            "sys/fs/cgroup/system.slice/postgresql.service/memory.current",
            &format!("{}\n", GIB),
        );
        // 2.5 CPUs of quota count as 3.
        write(
            d.path(),
            "sys/fs/cgroup/system.slice/postgresql.service/cpu.max",
            "250000 100000\n",
        );
        let r = read(d.path(), Process::Pid(4242)).expect("should succeed");
        assert_eq!(r.memory(), 6 * GIB);
        assert_eq!(
            r.cgroup_memory.as_ref().expect("should succeed").source,
            "/sys/fs/cgroup/system.slice/memory.max"
        );
        assert_eq!(r.cpus(), 3);
        assert_eq!(
            r.cgroup_cpus.as_ref().expect("should succeed").source,
            "/sys/fs/cgroup/system.slice/postgresql.service/cpu.max"
        );
        // The slice has no memory.current here: nothing known in use.
        assert_eq!(r.available(), 6 * GIB);
    }

    #[test]
    fn cgroup_v2_available_is_the_limit_less_what_the_cgroup_uses() {
        let d = tempfile::tempdir().expect("should succeed");
        host(d.path());
        write(d.path(), "proc/self/cgroup", "0::/app\n");
        write(d.path(), "sys/fs/cgroup/cgroup.controllers", "cpu memory\n");
        write(
            d.path(),
            "sys/fs/cgroup/app/memory.max",
            &format!("{}\n", 4 * GIB),
        );
        write(
            d.path(),
            "sys/fs/cgroup/app/memory.current",
            &format!("{}\n", GIB),
        );
        write(d.path(), "sys/fs/cgroup/app/cpuset.cpus.effective", "0-1\n");
        let r = read(d.path(), Process::Current).expect("should succeed");
        assert_eq!(r.memory(), 4 * GIB);
        assert_eq!(r.available(), 3 * GIB);
        assert_eq!(r.cpus(), 2);
    }

    #[test]
    fn a_cgroup_limit_above_the_host_is_no_limit() {
        let d = tempfile::tempdir().expect("should succeed");
        host(d.path());
        write(d.path(), "proc/self/cgroup", "0::/big\n");
        write(d.path(), "sys/fs/cgroup/cgroup.controllers", "memory\n");
        write(
            d.path(),
            "sys/fs/cgroup/big/memory.max",
            &format!("{}\n", 64 * GIB),
        );
        write(d.path(), "sys/fs/cgroup/big/cpu.max", "1600000 100000\n");
        let r = read(d.path(), Process::Current).expect("should succeed");
        assert_eq!(r.memory(), 16 * GIB);
        assert_eq!(r.cgroup_memory, None);
        assert_eq!(r.cpus(), 8);
    }

    #[test]
    fn cgroup_v1_memory_and_cfs_quota_are_read_and_unlimited_values_ignored() {
        let d = tempfile::tempdir().expect("should succeed");
        host(d.path());
        write(
            d.path(),
            "proc/self/cgroup",
            "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n",
        );
        // The hierarchy's root is unlimited (the kernel's "no limit" value).
        write(
            d.path(),
            "sys/fs/cgroup/memory/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        write(
            d.path(),
            "sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes",
            &format!("{}\n", 2 * GIB),
        );
        write(
            d.path(),
            "sys/fs/cgroup/memory/docker/abc/memory.usage_in_bytes",
            &format!("{}\n", GIB / 2),
        );
        write(
            d.path(),
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us",
            "-1\n",
        );
        write(
            d.path(),
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us",
            "100000\n",
        );
        write(
            d.path(),
            "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us",
            "150000\n",
        );
        write(
            d.path(),
            "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us",
            "100000\n",
        );
        let r = read(d.path(), Process::Current).expect("should succeed");
        assert_eq!(r.memory(), 2 * GIB);
        assert_eq!(r.available(), 2 * GIB - GIB / 2);
        assert_eq!(r.cpus(), 2);
    }

    #[test]
    fn cgroup_v1_inside_a_container_without_namespace_uses_the_mounted_root() {
        let d = tempfile::tempdir().expect("should succeed");
        host(d.path());
        // The path names the host's hierarchy, but the container sees its own cgroup at the root.
        write(d.path(), "proc/self/cgroup", "9:memory:/kubepods/pod1/c1\n");
        write(
            d.path(),
            "sys/fs/cgroup/memory/memory.limit_in_bytes",
            &format!("{}\n", GIB),
        );
        let r = read(d.path(), Process::Current).expect("should succeed");
        assert_eq!(r.memory(), GIB);
    }

    #[test]
    fn v1_and_v2_together_the_lower_wins() {
        let d = tempfile::tempdir().expect("should succeed");
        host(d.path());
        // Hybrid mode: v1 memory controller, the unified hierarchy for cpu.
        write(d.path(), "proc/self/cgroup", "5:memory:/svc\n0::/svc\n");
        write(d.path(), "sys/fs/cgroup/cgroup.controllers", "cpu\n");
        write(
            d.path(),
            "sys/fs/cgroup/memory/svc/memory.limit_in_bytes",
            &format!("{}\n", 3 * GIB),
        );
        write(
            d.path(),
            "sys/fs/cgroup/svc/memory.max",
            &format!("{}\n", 5 * GIB),
        );
        write(d.path(), "sys/fs/cgroup/svc/cpu.max", "100000 100000\n");
        let r = read(d.path(), Process::Current).expect("should succeed");
        assert_eq!(r.memory(), 3 * GIB);
        assert_eq!(r.cpus(), 1);
    }

    #[test]
    fn the_hybrid_layouts_unified_tree_is_read_too() {
        let d = tempfile::tempdir().expect("should succeed");
        host(d.path());
        write(d.path(), "proc/self/cgroup", "4:memory:/\n0::/svc\n");
        write(d.path(), "sys/fs/cgroup/unified/cgroup.controllers", "\n");
        write(
            d.path(),
            "sys/fs/cgroup/unified/svc/cpu.max",
            "200000 100000\n",
        );
        let r = read(d.path(), Process::Current).expect("should succeed");
        assert_eq!(r.cpus(), 2);
        assert_eq!(
            r.cgroup_cpus.expect("should succeed").source,
            "/sys/fs/cgroup/unified/svc/cpu.max"
        );
    }

    #[test]
    fn a_missing_meminfo_is_an_error_naming_the_file_and_missing_cgroup_files_are_no_limit() {
        let d = tempfile::tempdir().expect("should succeed");
        let err = read(d.path(), Process::Current).expect_err("should fail");
        assert!(err.file.ends_with("proc/meminfo"), "{err}");
        host(d.path());
        let r = read(d.path(), Process::Pid(1)).expect("should succeed");
        assert_eq!((r.memory(), r.cpus()), (16 * GIB, 8));
    }

    #[test]
    fn cpu_lists_and_cpu_max_parse() {
        assert_eq!(count_cpu_list("0-3,8,10-11"), Some(7));
        assert_eq!(count_cpu_list("0"), Some(1));
        assert_eq!(count_cpu_list(""), None);
        assert_eq!(count_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_max("max 100000"), None);
        assert_eq!(parse_cpu_max("50000 100000"), Some(1));
        assert_eq!(parse_cpu_max("400000 100000"), Some(4));
    }
}
