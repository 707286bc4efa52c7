//! The worker-pool formulas: gunicorn workers, Celery concurrency, and the max_connections they
//! need from PostgreSQL. Pure.

use serde::Serialize;

use crate::size::human;

/// Share of the available memory the workers may fill; the rest absorbs growth and the page
/// cache.
const MEMORY_SHARE: f64 = 0.8;
/// Connections kept beside the pools, at least: the core's own, ransomeye-ops (backups, drills,
/// health), monitoring and an administrator's sessions; superuser_reserved_connections come out
/// of max_connections too.
const MIN_HEADROOM: u32 = 30;

/// The worker counts and how they were reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Workers {
    /// Gunicorn's `workers`.
    pub gunicorn: u32,
    /// Why.
    pub gunicorn_reason: String,
    /// Celery's `worker_concurrency`.
    pub celery: u32,
    /// Why.
    pub celery_reason: String,
    /// Worker processes that fit in memory: floor(0.8 x available / per worker).
    pub memory_slots: u32,
}

/// Gunicorn: (2 x CPUs) + 1, capped by the memory slots; Celery: the CPUs, within the slots
/// gunicorn left. Both at least 1.
pub fn workers(cpus: u32, available: u64, per_worker: u64) -> Workers {
    let slots = ((MEMORY_SHARE * available as f64) / per_worker.max(1) as f64).floor();
    let slots = if slots >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        slots as u32
    };
    let by_cpu = cpus.saturating_mul(2).saturating_add(1);
    let gunicorn = by_cpu.min(slots).max(1);
    let memory = format!(
        "0.8 x {} available / {} per worker = {slots}",
        human(available),
        human(per_worker)
    );
    let gunicorn_reason = if by_cpu <= slots {
        format!("(2 x {cpus} CPUs) + 1 = {by_cpu}; memory allows {slots} ({memory})")
    } else {
        format!("(2 x {cpus} CPUs) + 1 = {by_cpu}, capped by memory: {memory}")
    };
    let left = slots.saturating_sub(gunicorn);
    let celery = cpus.min(left).max(1);
    let celery_reason = if cpus <= left {
        format!("{cpus} CPUs; memory left after gunicorn allows {left}")
    } else {
        format!("{cpus} CPUs, capped by the memory gunicorn left: {left} slots (at least 1)")
    };
    Workers {
        gunicorn,
        gunicorn_reason,
        celery,
        celery_reason,
        memory_slots: slots,
    }
}

/// The database connections the pools hold: one per gunicorn thread (Django keeps one per
/// thread) and one per Celery process.
pub fn pool_connections(gunicorn_workers: u32, gunicorn_threads: u32, celery: u32) -> u32 {
    gunicorn_workers
        .saturating_mul(gunicorn_threads.max(1))
        .saturating_add(celery)
}

/// max_connections for `pools` connections: plus 25 % headroom, at least [`MIN_HEADROOM`].
pub fn max_connections(pools: u32) -> (u32, String) {
    let headroom = pools.div_ceil(4).max(MIN_HEADROOM);
    let total = pools.saturating_add(headroom);
    (
        total,
        format!("pools {pools} + headroom {headroom} (25 %, at least {MIN_HEADROOM})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    /// 4 CPUs, 8 GiB available, 256 MiB per worker: slots floor(0.8 x 8192 / 256) = floor(25.6)
    /// = 25; gunicorn 2 x 4 + 1 = 9; Celery 4 (16 slots left).
    #[test]
    fn cpus_decide_when_memory_is_plenty() {
        let w = workers(4, 8 * GIB, 256 * MIB);
        assert_eq!((w.gunicorn, w.celery, w.memory_slots), (9, 4, 25));
        assert!(
            w.gunicorn_reason
                .starts_with("(2 x 4 CPUs) + 1 = 9; memory allows 25"),
            "{}",
            w.gunicorn_reason
        );
    }

    /// 64 CPUs (the 129-worker host), 4 GiB available, 300 MiB per worker: slots floor(0.8 x
    /// 4096 / 300) = floor(10.92) = 10; gunicorn min(129, 10) = 10; Celery min(64, 0) -> 1.
    #[test]
    fn memory_caps_a_big_host() {
        let w = workers(64, 4 * GIB, 300 * MIB);
        assert_eq!((w.gunicorn, w.celery, w.memory_slots), (10, 1, 10));
        assert!(
            w.gunicorn_reason.contains("= 129, capped by memory"),
            "{}",
            w.gunicorn_reason
        );
    }

    /// 2 CPUs, 1 GiB, 256 MiB: slots floor(3.2) = 3; gunicorn min(5, 3) = 3; Celery 1.
    /// 1 CPU, 100 MiB, 256 MiB: no slot at all, still one of each.
    #[test]
    fn at_least_one_of_each() {
        let w = workers(2, GIB, 256 * MIB);
        assert_eq!((w.gunicorn, w.celery), (3, 1));
        let w = workers(1, 100 * MIB, 256 * MIB);
        assert_eq!((w.gunicorn, w.celery, w.memory_slots), (1, 1, 0));
    }

    /// 9 workers x 2 threads + 4 = 22 connections; headroom max(ceil(22/4) = 6, 30) = 30 -> 52.
    /// 200 + 40 = 240 connections; headroom 60 -> 300.
    #[test]
    fn connections_are_the_pools_plus_headroom() {
        assert_eq!(pool_connections(9, 2, 4), 22);
        assert_eq!(pool_connections(9, 0, 4), 13);
        assert_eq!(max_connections(22).0, 52);
        assert_eq!(max_connections(240).0, 300);
    }
}
