//! The load loop shared by every workload and baseline: `concurrency` workers repeat one
//! operation until a deadline or a total count, each recording its own latencies so that
//! recording costs no lock, and the samples are merged into one [`Sample`] at the end. Runs
//! of the same system in several rounds merge the same way before they are summarised.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// When a run stops.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    /// After this long (operations in flight finish and count).
    Duration(Duration),
    /// After this many operations in total.
    Count(u64),
}

/// A failed operation, grouped in the summary by `kind`.
#[derive(Debug, Clone)]
pub struct OpError {
    /// A short stable class: `HTTP 503`, `transport`, `database`.
    pub kind: String,
    /// One example message (never carries a secret: callers pass error texts that do not).
    pub message: String,
}

/// Errors of one kind.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorCount {
    /// How many operations failed this way.
    pub count: u64,
    /// The first such error's message.
    pub example: String,
}

/// Throughput and latency of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Workers.
    pub concurrency: usize,
    /// Operations that succeeded.
    pub ok: u64,
    /// Operations that failed.
    pub errors: u64,
    /// Wall time of the run in seconds.
    pub elapsed_s: f64,
    /// Successful operations per second.
    pub throughput: f64,
    /// Mean latency of successful operations, milliseconds.
    pub mean_ms: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 95th percentile latency, milliseconds.
    pub p95_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Slowest successful operation, milliseconds.
    pub max_ms: f64,
    /// Failures by kind.
    pub errors_by_kind: BTreeMap<String, ErrorCount>,
}

#[derive(Default)]
struct WorkerSample {
    latencies: Vec<Duration>,
    errors: BTreeMap<String, ErrorCount>,
}

/// What one or more runs of one system recorded, before it is summarised.
#[derive(Debug, Default)]
pub struct Sample {
    concurrency: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    errors: BTreeMap<String, ErrorCount>,
}

impl Sample {
    /// Adds another run of the same system: its time, latencies and errors.
    pub fn merge(&mut self, other: Sample) {
        self.concurrency = self.concurrency.max(other.concurrency);
        self.elapsed += other.elapsed;
        self.latencies.extend(other.latencies);
        for (kind, count) in other.errors {
            self.errors
                .entry(kind)
                .and_modify(|c| c.count += count.count)
                .or_insert(count);
        }
    }

    /// Throughput over the runs' total time, latency percentiles over all their operations.
    pub fn summary(self) -> Summary {
        summarize(self.concurrency, self.elapsed, self.latencies, self.errors)
    }
}

/// Runs `op(worker)` from `concurrency` workers until `limit`, ticking `progress` once per
/// operation.
pub async fn drive<F, Fut>(
    concurrency: usize,
    limit: Limit,
    progress: &ProgressBar,
    op: F,
) -> Sample
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), OpError>> + Send + 'static,
{
    let op = Arc::new(op);
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = match limit {
        Limit::Duration(d) => Some(started + d),
        Limit::Count(_) => None,
    };
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let op = op.clone();
        let issued = issued.clone();
        let progress = progress.clone();
        workers.spawn(async move {
            let mut sample = WorkerSample::default();
            loop {
                if let Some(deadline) = deadline
                    && Instant::now() >= deadline
                {
                    break;
                }
                if let Limit::Count(total) = limit
                    && issued.fetch_add(1, Ordering::Relaxed) >= total
                {
                    break;
                }
                let begun = Instant::now();
                match op(worker).await {
                    Ok(()) => sample.latencies.push(begun.elapsed()),
                    Err(e) => {
                        sample
                            .errors
                            .entry(e.kind)
                            .or_insert(ErrorCount {
                                count: 0,
                                example: e.message,
                            })
                            .count += 1;
                    }
                }
                progress.inc(1);
            }
            sample
        });
    }
    let mut run = Sample {
        concurrency,
        ..Sample::default()
    };
    while let Some(joined) = workers.join_next().await {
        // A worker only ends by returning its sample; a panic in `op` is a bug worth seeing.
        let worker = joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        run.merge(Sample {
            concurrency,
            elapsed: Duration::ZERO,
            latencies: worker.latencies,
            errors: worker.errors,
        });
    }
    run.elapsed = started.elapsed();
    run
}

fn summarize(
    concurrency: usize,
    elapsed: Duration,
    mut latencies: Vec<Duration>,
    errors_by_kind: BTreeMap<String, ErrorCount>,
) -> Summary {
    latencies.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        // Nearest rank: the smallest sample with at least p of the samples at or below it.
        let rank = ((p * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
        ms(latencies[rank - 1])
    };
    let ok = latencies.len() as u64;
    let total: Duration = latencies.iter().sum();
    Summary {
        concurrency,
        ok,
        errors: errors_by_kind.values().map(|c| c.count).sum(),
        elapsed_s: elapsed.as_secs_f64(),
        throughput: ok as f64 / elapsed.as_secs_f64().max(f64::EPSILON),
        mean_ms: if ok == 0 { 0.0 } else { ms(total) / ok as f64 },
        p50_ms: pct(0.50),
        p95_ms: pct(0.95),
        p99_ms: pct(0.99),
        max_ms: latencies.last().copied().map(ms).unwrap_or(0.0),
        errors_by_kind,
    }
}

/// A progress bar on stderr for `limit` (hidden when stderr is not a terminal).
pub fn progress_bar(label: &str, limit: Limit) -> ProgressBar {
    let bar = match limit {
        Limit::Count(n) => ProgressBar::new(n),
        Limit::Duration(_) => ProgressBar::new_spinner(),
    };
    let template = match limit {
        Limit::Count(_) => "{prefix:>28} {bar:30} {pos}/{len} ({per_sec}) {elapsed}",
        Limit::Duration(_) => "{prefix:>28} {spinner} {pos} ops ({per_sec}) {elapsed}",
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_prefix(label.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let latencies = (1..=100).map(Duration::from_millis).collect();
        let s = summarize(4, Duration::from_secs(2), latencies, BTreeMap::new());
        assert_eq!(s.ok, 100);
        assert_eq!(s.p50_ms, 50.0);
        assert_eq!(s.p95_ms, 95.0);
        assert_eq!(s.p99_ms, 99.0);
        assert_eq!(s.max_ms, 100.0);
        assert_eq!(s.throughput, 50.0);
        assert!((s.mean_ms - 50.5).abs() < 1e-9);
    }

    #[test]
    fn merged_runs_add_their_time_and_keep_every_latency() {
        let run = |ms: &[u64], secs: u64| Sample {
            concurrency: 2,
            elapsed: Duration::from_secs(secs),
            latencies: ms.iter().copied().map(Duration::from_millis).collect(),
            errors: BTreeMap::from([(
                "database".to_owned(),
                ErrorCount {
                    count: 1,
                    example: format!("after {secs}s"),
                },
            )]),
        };
        let mut merged = Sample::default();
        merged.merge(run(&[1, 2, 3], 1));
        merged.merge(run(&[4, 5, 6, 7, 8, 9, 10], 4));
        let s = merged.summary();
        assert_eq!((s.concurrency, s.ok, s.errors), (2, 10, 2));
        assert_eq!(s.throughput, 2.0);
        assert_eq!((s.p50_ms, s.max_ms), (5.0, 10.0));
        // The first example of a kind is the one kept.
        assert_eq!(s.errors_by_kind["database"].example, "after 1s");
    }

    #[test]
    fn an_empty_run_has_zero_figures() {
        let s = summarize(1, Duration::from_secs(1), Vec::new(), BTreeMap::new());
        assert_eq!((s.ok, s.p99_ms, s.max_ms, s.mean_ms), (0, 0.0, 0.0, 0.0));
    }

    #[tokio::test]
    async fn count_limit_runs_exactly_that_many_and_groups_errors() {
        let bar = ProgressBar::hidden();
        let s = drive(3, Limit::Count(10), &bar, |worker| async move {
            if worker == 0 {
                Err(OpError {
                    kind: "HTTP 503".into(),
                    message: "sealed".into(),
                })
            } else {
                Ok(())
            }
        })
        .await
        .summary();
        assert_eq!(s.ok + s.errors, 10);
        assert_eq!(
            s.errors_by_kind.get("HTTP 503").map(|c| c.count),
            Some(s.errors)
        );
        assert_eq!(bar.position(), 10);
    }
}
