//! Times `export`, `digest` and `check` of the intel graph in a database.
//!
//! ```sh
//! createdb intel_bench
//! psql -q -f schema/platform.sql intel_bench
//! psql -q -v nodes=100000 -v edges=300000 -f scripts/sql/seed-intel.sql intel_bench
//! CARGO_TARGET_DIR=/tmp/intel-target cargo run --release -p ransomeye-intel --example export_bench -- \
//!     postgres://postgres@127.0.0.1:5432/intel_bench 5
//! ```
//!
//! Prints each run's wall time and the best, with the digest (which must be the same in every run).
//! A third argument names a file to write the export to (for cross-checks with other tools). With
//! `RUNS` = 0 it only computes the digest once, keeping nothing, to measure memory with `/usr/bin/time -v`.

use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or("usage: export_bench DATABASE_URL [RUNS [OUT]]")?;
    let runs: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let out_path = args.next();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut conn = PgConnection::connect(&url).await?;
        if runs == 0 {
            // Only the digest, nothing kept: for measuring memory (`/usr/bin/time -v`).
            let t = Instant::now();
            let d = ransomeye_intel::digest(&mut conn).await?;
            println!("digest {:.1} ms: {d}", t.elapsed().as_secs_f64() * 1e3);
            return Ok(());
        }
        let mut best = [Duration::MAX; 3];
        let mut last = None;
        for run in 1..=runs {
            // export into memory (what the backup does, minus compression and encryption)
            let mut out = Vec::with_capacity(128 << 20);
            let t = Instant::now();
            let exported = ransomeye_intel::export(&mut conn, &mut out).await?;
            let export_time = t.elapsed();
            // digest only (what restore and drill do)
            let t = Instant::now();
            let digested = ransomeye_intel::digest(&mut conn).await?;
            let digest_time = t.elapsed();
            // full check of the bytes (what verify does)
            let t = Instant::now();
            let checked = ransomeye_intel::check(out.as_slice())?;
            let check_time = t.elapsed();
            assert_eq!(exported, digested);
            assert_eq!(exported, checked);
            if let Some(previous) = &last {
                assert_eq!(previous, &exported, "the digest changed between runs");
            }
            println!(
                "run {run}: export {:>7.1} ms, digest {:>7.1} ms, check {:>7.1} ms",
                export_time.as_secs_f64() * 1e3,
                digest_time.as_secs_f64() * 1e3,
                check_time.as_secs_f64() * 1e3
            );
            for (b, t) in best.iter_mut().zip([export_time, digest_time, check_time]) {
                *b = (*b).min(t);
            }
            last = Some(exported);
            if let Some(path) = &out_path {
                std::fs::write(path, &out)?;
            }
        }
        if let Some(d) = last {
            println!("graph: {d}");
            println!(
                "best:  export {:.1} ms, digest {:.1} ms, check {:.1} ms ({:.0} MB/s)",
                best[0].as_secs_f64() * 1e3,
                best[1].as_secs_f64() * 1e3,
                best[2].as_secs_f64() * 1e3,
                d.bytes as f64 / best[2].as_secs_f64() / 1e6
            );
        }
        Ok(())
    })
}
