//! Pacing of bulk writes that share the database with the platform's own writers (the archive's
//! prune today; cleaning and log jobs later).
//!
//! A bulk DELETE on a server with default settings writes WAL (mostly full-page images after a
//! checkpoint) far faster than the disk flushes it, and every concurrent commit has to flush the
//! bulk writer's WAL ahead of its own: a single-row INSERT that takes 1 ms alone takes hundreds
//! while a 10 000-row batch is written, and a steady writer falls further behind with every
//! batch. A [`Pacer`] keeps each transaction to a short slice of work (it sizes the next slice
//! from how long the last one took) and rests between slices for a fixed share of the time
//! worked, so other sessions' commits wait at most one slice's flush and catch up during the
//! rest. Throughput falls by the rest share only; see docs/PERFORMANCE.md for the measurements.

use std::time::Duration;

/// How a paced job divides its time: work slices of about `slice`, each followed by a rest of
/// `rest_percent` % of the time it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// Target duration of one slice (one transaction).
    pub slice: Duration,
    /// Rest after each slice, in percent of the slice's duration (0 = no rest).
    pub rest_percent: u32,
}

impl Pace {
    /// No pacing: slices as large as allowed, no rest.
    pub const UNPACED: Pace = Pace {
        slice: Duration::MAX,
        rest_percent: 0,
    };
}

/// Sizes slices and rests between them for one paced job.
#[derive(Debug)]
pub struct Pacer {
    pace: Pace,
    rows: usize,
    max_rows: usize,
    slices: u64,
    rested: Duration,
}

/// The first slice's size: small enough that a slow disk's first slice stays short, the
/// adaptation doubles it within a few slices on a fast one.
const FIRST_ROWS: usize = 500;

/// The longest rest, whatever the slice took: a stalled slice (a lock wait) is no reason to idle.
const MAX_REST: Duration = Duration::from_millis(500);

impl Pacer {
    /// A pacer for slices of at most `max_rows` rows (at least 1).
    pub fn new(pace: Pace, max_rows: usize) -> Pacer {
        let max_rows = max_rows.max(1);
        let rows = if pace.slice == Duration::MAX {
            max_rows
        } else {
            FIRST_ROWS.min(max_rows)
        };
        Pacer {
            pace,
            rows,
            max_rows,
            slices: 0,
            rested: Duration::ZERO,
        }
    }

    /// Rows for the next slice.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Records that a slice of `rows` rows took `took`; returns how long to rest before the next
    /// one, and sizes the next slice so that it takes about the target (at most twice or half
    /// the last size, so that one odd slice does not swing it).
    pub fn record(&mut self, rows: usize, took: Duration) -> Duration {
        self.slices += 1;
        if self.pace.slice == Duration::MAX {
            return Duration::ZERO;
        }
        let took_s = took.as_secs_f64().max(1e-6);
        let wanted = rows.max(1) as f64 * self.pace.slice.as_secs_f64() / took_s;
        let current = self.rows as f64;
        let next = wanted.clamp(current / 2.0, current * 2.0);
        self.rows = (next as usize).clamp(1, self.max_rows);
        let rest = took
            .mul_f64(f64::from(self.pace.rest_percent) / 100.0)
            .min(MAX_REST);
        self.rested += rest;
        rest
    }

    /// Slices recorded so far.
    pub fn slices(&self) -> u64 {
        self.slices
    }

    /// Rest handed out so far.
    pub fn rested(&self) -> Duration {
        self.rested
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACE: Pace = Pace {
        slice: Duration::from_millis(20),
        rest_percent: 50,
    };

    #[test]
    fn unpaced_takes_the_largest_slices_and_never_rests() {
        let mut p = Pacer::new(Pace::UNPACED, 10_000);
        assert_eq!(p.rows(), 10_000);
        assert_eq!(p.record(10_000, Duration::from_secs(3)), Duration::ZERO);
        assert_eq!(p.rows(), 10_000);
    }

    #[test]
    fn slices_grow_toward_the_target_time_at_most_doubling() {
        let mut p = Pacer::new(PACE, 10_000);
        assert_eq!(p.rows(), 500);
        // 500 rows in 2 ms: 20 ms would be 5 000 rows, but one step only doubles.
        p.record(500, Duration::from_millis(2));
        assert_eq!(p.rows(), 1000);
        p.record(1000, Duration::from_millis(4));
        assert_eq!(p.rows(), 2000);
        p.record(2000, Duration::from_millis(8));
        assert_eq!(p.rows(), 4000);
        p.record(4000, Duration::from_millis(16));
        assert_eq!(p.rows(), 5000);
        p.record(5000, Duration::from_millis(20));
        assert_eq!(p.rows(), 5000);
    }

    #[test]
    fn slices_shrink_when_the_server_slows_and_never_pass_the_bounds() {
        let mut p = Pacer::new(PACE, 800);
        assert_eq!(p.rows(), 500);
        p.record(500, Duration::from_millis(1));
        assert_eq!(p.rows(), 800, "capped at the largest batch");
        p.record(800, Duration::from_millis(200));
        assert_eq!(p.rows(), 400, "halved at most");
        for _ in 0..20 {
            p.record(p.rows(), Duration::from_secs(5));
        }
        assert_eq!(p.rows(), 1, "never below one row");
    }

    #[test]
    fn rest_is_the_share_of_the_slice_and_bounded() {
        let mut p = Pacer::new(PACE, 10_000);
        assert_eq!(
            p.record(500, Duration::from_millis(20)),
            Duration::from_millis(10)
        );
        assert_eq!(p.record(500, Duration::from_secs(10)), MAX_REST);
        assert_eq!(p.slices(), 2);
        assert_eq!(p.rested(), Duration::from_millis(10) + MAX_REST);
    }
}
