//! Lease scale: start-up time, resident memory and lookup latency of a server whose storage
//! holds N leases, against the same figures for a small N measured in the same run.
//!
//! `cargo bench --bench lease_scale` measures N = 10 000 and 1 000 000 (set
//! `DBWARDEN_BENCH_LEASES=10000,100000,1000000` to choose). Under `cargo test` it runs a
//! smoke pass with 1 000 leases so the code path stays tested.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dbwarden::storage::{LeaseRow, LeaseState, Store};

const CHUNK: usize = 20_000;

struct Figures {
    leases: usize,
    fill: Duration,
    ready: Duration,
    rss_ready_kib: u64,
    rss_after_kib: u64,
    lookup_p50: Duration,
    lookup_p99: Duration,
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|v| v.parse().unwrap_or(0)))
        })
        .unwrap_or(0)
}

fn lease(i: usize, now: i64) -> LeaseRow {
    let year = 365 * 24 * 3600 * 1000;
    LeaseRow {
        id: format!("database/creds/bench/{i:024}"),
        mount: "database".into(),
        role_name: "bench".into(),
        connection_name: "pg".into(),
        username: format!("v-bench-{i}"),
        owner: Some(format!("owner-{}", i % 1000)),
        state: LeaseState::Active,
        renewable: true,
        issue_time: now,
        expire_time: now + year,
        max_expire_time: now + year,
        last_renewal: None,
        // Never opened: these leases are not due during the benchmark.
        revocation: vec![0u8; 96],
        revoke_attempts: 0,
        revoke_error: None,
        next_attempt: now + year,
        claimed_until: 0,
        owner_accessor: None,
    }
}

fn start_server(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_dbwarden"))
        .args(["server", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dbwarden")
}

async fn measure(leases: usize) -> Figures {
    let dir = tempfile::tempdir().unwrap();
    let listen = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let config = dir.path().join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "listen_address = \"{listen}\"\n[storage]\nbackend = \"sqlite\"\npath = \"{}\"\n[seal]\ntype = \"keyfile\"\npath = \"{}\"\n",
            dir.path().join("db.sqlite").display(),
            dir.path().join("seal.key").display()
        ),
    )
    .unwrap();
    let init = Command::new(env!("CARGO_BIN_EXE_dbwarden"))
        .args([
            "operator",
            "init",
            "--config",
            config.to_str().unwrap(),
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let token = serde_json::from_slice::<serde_json::Value>(&init.stdout).unwrap()["root_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let store = Store::open_sqlite(&dir.path().join("db.sqlite"))
        .await
        .unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let fill_start = Instant::now();
    let mut done = 0;
    while done < leases {
        let end = (done + CHUNK).min(leases);
        let rows: Vec<LeaseRow> = (done..end).map(|i| lease(i, now)).collect();
        store.insert_leases(&rows).await.unwrap();
        done = end;
        if leases >= 100_000 && done % 200_000 == 0 {
            eprintln!("  filled {done}/{leases}");
        }
    }
    let fill = fill_start.elapsed();
    drop(store);

    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut child = start_server(&config);
    let ready = loop {
        let ok = http
            .get(format!("http://{listen}/v1/sys/health"))
            .send()
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false);
        if ok {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "server did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let rss_ready_kib = rss_kib(child.id());
    let mut latencies = Vec::new();
    for i in 0..500usize {
        let id = format!("database/creds/bench/{:024}", (i * 7919) % leases);
        let t = Instant::now();
        let resp = http
            .put(format!("http://{listen}/v1/sys/leases/lookup"))
            .header("X-Vault-Token", &token)
            .json(&serde_json::json!({ "lease_id": id }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        latencies.push(t.elapsed());
    }
    latencies.sort();
    let rss_after_kib = rss_kib(child.id());
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    Figures {
        leases,
        fill,
        ready,
        rss_ready_kib,
        rss_after_kib,
        lookup_p50: latencies[latencies.len() / 2],
        lookup_p99: latencies[latencies.len() * 99 / 100],
    }
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let sizes: Vec<usize> = match std::env::var("DBWARDEN_BENCH_LEASES") {
        Ok(v) => v.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
        Err(_) if benchmarking => vec![10_000, 1_000_000],
        Err(_) => vec![1_000],
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let figures: Vec<Figures> = sizes
        .iter()
        .map(|&n| {
            eprintln!("measuring {n} leases ...");
            runtime.block_on(measure(n))
        })
        .collect();
    println!(
        "| leases | fill storage | start-up to ready | RSS at ready | RSS after 500 lookups | lookup p50 | lookup p99 |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for f in &figures {
        println!(
            "| {} | {:.1} s | {:.0} ms | {:.1} MiB | {:.1} MiB | {:.2} ms | {:.2} ms |",
            f.leases,
            f.fill.as_secs_f64(),
            f.ready.as_secs_f64() * 1000.0,
            f.rss_ready_kib as f64 / 1024.0,
            f.rss_after_kib as f64 / 1024.0,
            f.lookup_p50.as_secs_f64() * 1000.0,
            f.lookup_p99.as_secs_f64() * 1000.0,
        );
    }
    if let (Some(small), Some(large)) = (figures.first(), figures.last())
        && figures.len() > 1
    {
        println!(
            "\nratios {} vs {} leases: start-up x{:.2}, RSS at ready x{:.2}, lookup p50 x{:.2}",
            large.leases,
            small.leases,
            large.ready.as_secs_f64() / small.ready.as_secs_f64(),
            large.rss_ready_kib as f64 / small.rss_ready_kib.max(1) as f64,
            large.lookup_p50.as_secs_f64() / small.lookup_p50.as_secs_f64(),
        );
    }
}
