//! Lease scale under `cargo bench`: start-up time, resident memory and lookup latency of a
//! server whose storage holds N leases ([`dbwarden::bench::lease_scale`], the same run as
//! `dbwarden bench lease-scale`).
//!
//! `cargo bench --bench lease_scale` measures N = 10 000 and 1 000 000 (set
//! `DBWARDEN_BENCH_LEASES=10000,100000,1000000` to choose; `DBWARDEN_BENCH_DATABASE_URL`
//! adds the expiry phase against that PostgreSQL). Under `cargo test` it runs a smoke pass
//! with 1 000 leases so the code path stays tested.

use dbwarden::bench::lease_scale::{ScaleOptions, run};
use dbwarden::bench::print_scale_table;

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let sizes: Vec<usize> = match std::env::var("DBWARDEN_BENCH_LEASES") {
        Ok(v) => v.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
        Err(_) if benchmarking => vec![10_000, 1_000_000],
        Err(_) => vec![1_000],
    };
    let options = ScaleOptions {
        server_binary: env!("CARGO_BIN_EXE_dbwarden").into(),
        sizes,
        database_url: std::env::var("DBWARDEN_BENCH_DATABASE_URL")
            .ok()
            .map(Into::into),
        expire: 10_000,
        progress: true,
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(run(&options)) {
        Ok(figures) => print_scale_table(&figures),
        Err(e) => {
            eprintln!("lease scale failed: {e}");
            std::process::exit(1);
        }
    }
}
