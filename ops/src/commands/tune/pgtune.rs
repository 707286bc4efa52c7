//! The PostgreSQL formulas: PGTune's (le0pard/pgtune), with RansomEye's defaults — shared_buffers
//! 25 % of RAM and effective_cache_size 60 % (the core and NATS share the host). Pure: inputs in,
//! settings with their reasons out; the same inputs always give the same fragment.
//!
//! Sizes are computed in kB, floored, as PGTune does, and written in the largest unit that holds
//! them exactly.

use serde::Serialize;

use crate::cli::{Storage, Workload};
use crate::size::{human, pg_kb};

/// 1 MB and 1 GB in kB.
const MB: u64 = 1024;
const GB: u64 = 1024 * 1024;

/// What the settings are computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Inputs {
    /// Memory, bytes.
    pub memory: u64,
    /// CPUs.
    pub cpus: u32,
    /// max_connections.
    pub connections: u32,
    /// The workload.
    pub workload: Workload,
    /// The data directory's storage.
    pub storage: Storage,
    /// effective_cache_size, percent of memory.
    pub effective_cache_percent: u32,
}

/// A setting's recommended value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    /// A size in kB (written as "4GB", "16MB", "40329kB").
    Kb(u64),
    /// A count.
    Int(u64),
    /// A real number.
    Real(f64),
}

impl Value {
    /// As written in postgresql.conf.
    pub fn render(&self) -> String {
        match self {
            Value::Kb(kb) => pg_kb(*kb),
            Value::Int(n) => n.to_string(),
            Value::Real(x) => format!("{x}"),
        }
    }
}

/// One recommended setting.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setting {
    /// The parameter's name.
    pub name: &'static str,
    /// The recommended value.
    pub value: Value,
    /// The formula and inputs that gave it.
    pub reason: String,
}

/// Whether parallel query settings are computed (PGTune leaves them at PostgreSQL's defaults
/// below 4 CPUs).
const PARALLEL_MIN_CPUS: u32 = 4;
/// PostgreSQL's default max_worker_processes, which work_mem counts when the CPUs are few.
const DEFAULT_WORKER_PROCESSES: u64 = 8;

/// Every recommended setting for `inputs`, in the fragment's order.
pub fn recommend(inputs: &Inputs) -> Vec<Setting> {
    let ram_kb = inputs.memory / 1024;
    let ram = human(inputs.memory);
    let w = inputs.workload;
    let mut out = Vec::new();
    let mut push = |name, value, reason: String| {
        out.push(Setting {
            name,
            value,
            reason,
        })
    };

    push(
        "max_connections",
        Value::Int(inputs.connections.into()),
        "the connections planned for".into(),
    );
    let shared_buffers = ram_kb / 4;
    push(
        "shared_buffers",
        Value::Kb(shared_buffers),
        format!("25 % of {ram}"),
    );
    let cache = ram_kb * u64::from(inputs.effective_cache_percent) / 100;
    push(
        "effective_cache_size",
        Value::Kb(cache),
        format!(
            "{} % of {ram} (the core and NATS share the host; PGTune uses 75 %)",
            inputs.effective_cache_percent
        ),
    );
    let (divisor, maintenance) = match w {
        Workload::Dw => (8, ram_kb / 8),
        _ => (16, ram_kb / 16),
    };
    push(
        "maintenance_work_mem",
        Value::Kb(maintenance.min(8 * GB)),
        format!("{ram} / {divisor}, at most 8 GB"),
    );
    push(
        "checkpoint_completion_target",
        Value::Real(0.9),
        "spread checkpoint writes over 90 % of the interval".into(),
    );
    push(
        "wal_buffers",
        Value::Kb(wal_buffers(shared_buffers)),
        "3 % of shared_buffers, at most 16 MB, at least 32 kB".into(),
    );
    let statistics = if w == Workload::Dw { 500 } else { 100 };
    push(
        "default_statistics_target",
        Value::Int(statistics),
        format!("{}: {statistics}", workload_name(w)),
    );
    let (page_cost, io) = match inputs.storage {
        Storage::Ssd => (1.1, 200),
        Storage::Hdd => (4.0, 2),
    };
    let storage = storage_name(inputs.storage);
    push(
        "random_page_cost",
        Value::Real(page_cost),
        format!("{storage}: random reads cost {page_cost} sequential ones"),
    );
    push(
        "effective_io_concurrency",
        Value::Int(io),
        format!("{storage}: {io} concurrent I/O requests"),
    );
    let (min_wal, max_wal) = match w {
        Workload::Web | Workload::Mixed => (GB, 4 * GB),
        Workload::Oltp => (2 * GB, 8 * GB),
        Workload::Dw => (4 * GB, 16 * GB),
    };
    let wl = workload_name(w);
    push("min_wal_size", Value::Kb(min_wal), format!("{wl} workload"));
    push("max_wal_size", Value::Kb(max_wal), format!("{wl} workload"));

    let cpus = u64::from(inputs.cpus);
    let parallel = inputs.cpus >= PARALLEL_MIN_CPUS;
    let worker_processes = if parallel {
        cpus
    } else {
        DEFAULT_WORKER_PROCESSES
    };
    let (per_gather, maintenance_workers) = if parallel {
        let half = cpus.div_ceil(2);
        let per_gather = if w == Workload::Dw { half } else { half.min(4) };
        (per_gather, half.min(4))
    } else {
        (2, 2)
    };
    let few = format!(
        "{} CPUs (fewer than {PARALLEL_MIN_CPUS}): PostgreSQL's default",
        inputs.cpus
    );
    let (all, gather, maint) = if parallel {
        (
            format!("{} CPUs", inputs.cpus),
            format!(
                "ceil({} CPUs / 2){}",
                inputs.cpus,
                if w == Workload::Dw { "" } else { ", at most 4" }
            ),
            format!("ceil({} CPUs / 2), at most 4", inputs.cpus),
        )
    } else {
        (few.clone(), few.clone(), few)
    };
    push(
        "max_worker_processes",
        Value::Int(worker_processes),
        all.clone(),
    );
    push(
        "max_parallel_workers_per_gather",
        Value::Int(per_gather),
        gather,
    );
    push("max_parallel_workers", Value::Int(worker_processes), all);
    push(
        "max_parallel_maintenance_workers",
        Value::Int(maintenance_workers),
        maint,
    );

    // Each connection may sort or hash several times per query: PGTune budgets three
    // work_mem per connection and worker out of what shared_buffers leaves.
    let per = (ram_kb - shared_buffers) / ((u64::from(inputs.connections) + worker_processes) * 3);
    let (work_mem, halved) = match w {
        Workload::Dw | Workload::Mixed => (per / 2, ", halved"),
        _ => (per, ""),
    };
    push(
        "work_mem",
        Value::Kb(work_mem.max(4 * MB)),
        format!(
            "({ram} - shared_buffers) / (({} connections + {worker_processes} workers) x 3){halved}, at least 4 MB",
            inputs.connections
        ),
    );
    out
}

/// PGTune's wal_buffers: 3 % of shared_buffers, at most 16 MB (14-16 MB rounds up to 16 MB),
/// at least 32 kB.
fn wal_buffers(shared_buffers_kb: u64) -> u64 {
    let mut wal = 3 * shared_buffers_kb / 100;
    if wal > 16 * MB {
        wal = 16 * MB;
    }
    if wal > 14 * MB && wal < 16 * MB {
        wal = 16 * MB;
    }
    wal.max(32)
}

fn workload_name(w: Workload) -> &'static str {
    match w {
        Workload::Web => "web",
        Workload::Oltp => "oltp",
        Workload::Dw => "dw",
        Workload::Mixed => "mixed",
    }
}

fn storage_name(s: Storage) -> &'static str {
    match s {
        Storage::Ssd => "ssd",
        Storage::Hdd => "hdd",
    }
}

/// The postgresql.conf fragment: a header naming the inputs, then one `name = value  # reason`
/// line per setting.
pub fn fragment(inputs: &Inputs, settings: &[Setting]) -> String {
    let mut out = format!(
        "# Written by ransomeye-ops tune postgres: {} memory, {} CPUs, {} connections, {} workload, {} storage.\n\
         # Replaced as a whole by the next `tune postgres --apply`; put your own settings in another file.\n",
        human(inputs.memory),
        inputs.cpus,
        inputs.connections,
        workload_name(inputs.workload),
        storage_name(inputs.storage),
    );
    for s in settings {
        let value = match s.value {
            // Sizes are quoted: "4GB" is not a bare number.
            Value::Kb(_) => format!("'{}'", s.value.render()),
            _ => s.value.render(),
        };
        out.push_str(&format!("{} = {value}\t# {}\n", s.name, s.reason));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn inputs(memory: u64, cpus: u32, connections: u32, workload: Workload) -> Inputs {
        Inputs {
            memory,
            cpus,
            connections,
            workload,
            storage: Storage::Ssd,
            effective_cache_percent: 60,
        }
    }

    fn rendered(i: &Inputs) -> Vec<(&'static str, String)> {
        recommend(i)
            .into_iter()
            .map(|s| (s.name, s.value.render()))
            .collect()
    }

    fn table(rows: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        rows.iter().map(|(n, v)| (*n, v.to_string())).collect()
    }

    /// 16 GiB = 16777216 kB, 4 CPUs, oltp, 100 connections, ssd — worked by hand:
    /// shared_buffers 16777216 / 4 = 4194304 kB = 4GB; effective_cache_size 16777216 x 0.6 =
    /// 10066329.6 -> 10066329kB; maintenance 16777216 / 16 = 1048576 kB = 1GB; wal_buffers 3 %
    /// of 4194304 = 125829 kB -> capped 16MB; parallel: 4 workers, ceil(4/2) = 2 per gather, 2
    /// maintenance; work_mem (16777216 - 4194304) / ((100 + 4) x 3) = 12582912 / 312 = 40329.8
    /// -> 40329kB.
    #[test]
    fn sixteen_gib_four_cpus_oltp_100_connections() {
        assert_eq!(
            rendered(&inputs(16 * GIB, 4, 100, Workload::Oltp)),
            table(&[
                ("max_connections", "100"),
                ("shared_buffers", "4GB"),
                ("effective_cache_size", "10066329kB"),
                ("maintenance_work_mem", "1GB"),
                ("checkpoint_completion_target", "0.9"),
                ("wal_buffers", "16MB"),
                ("default_statistics_target", "100"),
                ("random_page_cost", "1.1"),
                ("effective_io_concurrency", "200"),
                ("min_wal_size", "2GB"),
                ("max_wal_size", "8GB"),
                ("max_worker_processes", "4"),
                ("max_parallel_workers_per_gather", "2"),
                ("max_parallel_workers", "4"),
                ("max_parallel_maintenance_workers", "2"),
                ("work_mem", "40329kB"),
            ])
        );
    }

    /// 64 GiB = 67108864 kB, 16 CPUs, dw, 40 connections, hdd, PGTune's 75 %:
    /// shared_buffers 16GB; effective_cache_size 50331648 kB = 48GB; maintenance 67108864 / 8 =
    /// 8388608 kB = 8GB (the cap exactly); statistics 500; hdd: 4 and 2; WAL 4GB / 16GB;
    /// parallel: 16, ceil(16/2) = 8 per gather (no cap for dw), 16, maintenance 4 (capped);
    /// work_mem (67108864 - 16777216) / ((40 + 16) x 3) = 50331648 / 168 = 299593.1 -> 299593,
    /// halved for dw -> 149796kB.
    #[test]
    fn sixty_four_gib_sixteen_cpus_dw_on_hdd() {
        let mut i = inputs(64 * GIB, 16, 40, Workload::Dw);
        i.storage = Storage::Hdd;
        i.effective_cache_percent = 75;
        assert_eq!(
            rendered(&i),
            table(&[
                ("max_connections", "40"),
                ("shared_buffers", "16GB"),
                ("effective_cache_size", "48GB"),
                ("maintenance_work_mem", "8GB"),
                ("checkpoint_completion_target", "0.9"),
                ("wal_buffers", "16MB"),
                ("default_statistics_target", "500"),
                ("random_page_cost", "4"),
                ("effective_io_concurrency", "2"),
                ("min_wal_size", "4GB"),
                ("max_wal_size", "16GB"),
                ("max_worker_processes", "16"),
                ("max_parallel_workers_per_gather", "8"),
                ("max_parallel_workers", "16"),
                ("max_parallel_maintenance_workers", "4"),
                ("work_mem", "149796kB"),
            ])
        );
    }

    /// 2 GiB = 2097152 kB, 2 CPUs, web, 200 connections: shared_buffers 524288 kB = 512MB;
    /// effective_cache_size 1258291.2 -> 1258291kB; maintenance 131072 kB = 128MB; wal_buffers
    /// 3 % of 524288 = 15728 kB (between 14 and 16 MB) -> 16MB; below 4 CPUs the parallel
    /// settings stay at PostgreSQL's defaults (8, 2, 8, 2); work_mem (2097152 - 524288) /
    /// ((200 + 8) x 3) = 1572864 / 624 = 2520.6 -> below the 4 MB floor -> 4MB.
    #[test]
    fn two_gib_two_cpus_web_hits_the_work_mem_floor_and_default_parallelism() {
        assert_eq!(
            rendered(&inputs(2 * GIB, 2, 200, Workload::Web)),
            table(&[
                ("max_connections", "200"),
                ("shared_buffers", "512MB"),
                ("effective_cache_size", "1258291kB"),
                ("maintenance_work_mem", "128MB"),
                ("checkpoint_completion_target", "0.9"),
                ("wal_buffers", "16MB"),
                ("default_statistics_target", "100"),
                ("random_page_cost", "1.1"),
                ("effective_io_concurrency", "200"),
                ("min_wal_size", "1GB"),
                ("max_wal_size", "4GB"),
                ("max_worker_processes", "8"),
                ("max_parallel_workers_per_gather", "2"),
                ("max_parallel_workers", "8"),
                ("max_parallel_maintenance_workers", "2"),
                ("work_mem", "4MB"),
            ])
        );
    }

    /// 256 MiB: shared_buffers 65536 kB = 64MB, wal_buffers 3 % = 1966 kB ("1966kB");
    /// 128 GiB, mixed: maintenance 134217728 / 16 = 8388608 = 8GB, and work_mem halved.
    #[test]
    fn small_wal_buffers_and_mixed_halving() {
        let small = recommend(&inputs(256 << 20, 1, 20, Workload::Mixed));
        let get = |s: &[Setting], n: &str| {
            s.iter()
                .find(|x| x.name == n)
                .map(|x| x.value.render())
                .unwrap_or_default()
        };
        assert_eq!(get(&small, "shared_buffers"), "64MB");
        assert_eq!(get(&small, "wal_buffers"), "1966kB");
        assert_eq!(wal_buffers(512), 32);
        // 128 GiB = 134217728 kB, 8 CPUs, 300 connections, mixed: (134217728 - 33554432) /
        // ((300 + 8) x 3) = 100663296 / 924 = 108942.9 -> 108942, halved -> 54471kB.
        let big = recommend(&inputs(128 * GIB, 8, 300, Workload::Mixed));
        assert_eq!(get(&big, "maintenance_work_mem"), "8GB");
        assert_eq!(get(&big, "work_mem"), "54471kB");
    }

    #[test]
    fn the_fragment_quotes_sizes_and_gives_each_reason() {
        let i = inputs(16 * GIB, 4, 100, Workload::Oltp);
        let text = fragment(&i, &recommend(&i));
        assert!(text.starts_with("# Written by ransomeye-ops tune postgres: 16.00 GiB memory, 4 CPUs, 100 connections, oltp workload, ssd storage.\n"), "{text}");
        assert!(
            text.contains("\nshared_buffers = '4GB'\t# 25 % of 16.00 GiB\n"),
            "{text}"
        );
        assert!(text.contains("\nrandom_page_cost = 1.1\t# ssd:"), "{text}");
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 16);
    }
}
