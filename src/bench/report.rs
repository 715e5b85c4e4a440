//! Human-readable tables of benchmark results (`--format json` prints the structs instead).

use super::LoadReport;
use super::drive::Summary;
use super::lease_scale::ScaleFigures;

/// Prints a load report as a table with the ratios under it.
pub fn print_load_table(report: &LoadReport) {
    let workload = serde_json::to_value(report.workload)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    println!(
        "dbwarden bench {workload}: mount {}, role {}{}{}",
        report.mount,
        report.role,
        report
            .plugin_name
            .as_deref()
            .map(|p| format!(", {p}"))
            .unwrap_or_default(),
        if report.rounds > 1 {
            format!(", {} rounds merged", report.rounds)
        } else {
            String::new()
        }
    );
    println!(
        "{:>5}  {:<26} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "conc", "system", "ops/s", "mean ms", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors"
    );
    for level in &report.levels {
        row(level.concurrency, "dbwarden", &level.dbwarden);
        if let Some(db) = &level.database {
            let label = format!("database, {} conn.", level.concurrency);
            row(level.concurrency, &label, db);
        }
        if let Some(serial) = &level.serialized {
            row(level.concurrency, "database, serialised", serial);
        }
    }
    for level in &report.levels {
        if let (Some(eff), Some(overhead)) = (level.efficiency, level.overhead_ms) {
            print!(
                "concurrency {}: efficiency {eff:.2} of the database's own rate, overhead {overhead:+.2} ms per request",
                level.concurrency
            );
            match level.vs_serialized {
                Some(x) => println!(", {x:.2}x the serialised connection"),
                None => println!(),
            }
        }
    }
    for level in &report.levels {
        let runs = [
            ("dbwarden", Some(&level.dbwarden)),
            ("database", level.database.as_ref()),
            ("serialised", level.serialized.as_ref()),
        ];
        for (system, summary) in runs {
            for (kind, errors) in summary.map(|s| &s.errors_by_kind).into_iter().flatten() {
                println!(
                    "errors at concurrency {} ({system}): {kind} x{}: {}",
                    level.concurrency, errors.count, errors.example
                );
            }
        }
    }
}

fn row(concurrency: usize, system: &str, s: &Summary) {
    println!(
        "{:>5}  {:<26} {:>9.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7}",
        concurrency,
        system,
        s.throughput,
        s.mean_ms,
        s.p50_ms,
        s.p95_ms,
        s.p99_ms,
        s.max_ms,
        s.errors
    );
}

/// Prints lease-scale figures as a Markdown table, with the largest run's ratios to the
/// smallest.
pub fn print_scale_table(figures: &[ScaleFigures]) {
    println!(
        "| leases | fill storage | start-up to ready | RSS at ready | RSS idle after {} lookups | lookup p50 | lookup p99 | due at once | drained in | revocations/s | start-up with all due | users left |",
        500
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for f in figures {
        let expiry = match &f.expiry {
            Some(e) => format!(
                "{} | {:.1} s | {:.0} | {:.0} ms | {}",
                e.leases, e.drained_s, e.throughput, e.ready_ms, e.users_left
            ),
            None => "- | - | - | - | -".into(),
        };
        println!(
            "| {} | {:.1} s | {:.0} ms | {:.1} MiB | {:.1} MiB | {:.2} ms | {:.2} ms | {expiry} |",
            f.leases,
            f.fill_s,
            f.ready_ms,
            f.rss_ready_mib,
            f.rss_idle_mib,
            f.lookup_p50_ms,
            f.lookup_p99_ms,
        );
    }
    if let (Some(small), Some(large)) = (figures.first(), figures.last())
        && figures.len() > 1
    {
        println!(
            "\nratios {} vs {} leases: start-up x{:.2}, RSS at ready x{:.2}, idle RSS x{:.2}, lookup p50 x{:.2}",
            large.leases,
            small.leases,
            large.ready_ms / small.ready_ms.max(f64::EPSILON),
            large.rss_ready_mib / small.rss_ready_mib.max(f64::EPSILON),
            large.rss_idle_mib / small.rss_idle_mib.max(f64::EPSILON),
            large.lookup_p50_ms / small.lookup_p50_ms.max(f64::EPSILON),
        );
    }
}
