//! Times `import` of an export file into a database whose intel tables are empty.
//!
//! ```sh
//! createdb intel_import && psql -q -f schema/platform.sql intel_import
//! CARGO_TARGET_DIR=/tmp/intel-target cargo run --release -p ransomeye-intel --example import_bench -- \
//!     postgres://postgres@127.0.0.1:5432/intel_import export.jsonl
//! ```

use std::time::Instant;

use sqlx::{Connection, PgConnection};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(path)) = (args.next(), args.next()) else {
        return Err("usage: import_bench DATABASE_URL EXPORT_FILE".into());
    };
    let input = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&path)?);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut conn = PgConnection::connect(&url).await?;
        let t = Instant::now();
        let imported = ransomeye_intel::import(&mut conn, input).await?;
        let import_time = t.elapsed();
        let t = Instant::now();
        let digested = ransomeye_intel::digest(&mut conn).await?;
        println!(
            "import {:.1} ms, digest of the imported graph {:.1} ms",
            import_time.as_secs_f64() * 1e3,
            t.elapsed().as_secs_f64() * 1e3
        );
        println!("graph: {imported}");
        if digested != imported {
            return Err(format!("digest after import differs: {digested}").into());
        }
        Ok(())
    })
}
