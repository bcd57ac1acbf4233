//! Load generation and measurement: closed loops (a fixed number of callers, each calling again
//! as soon as it has its answer) for throughput, an open loop (calls sent on a schedule,
//! whatever the answers do) for latency under a set rate. Latencies go into HDR histograms in
//! microseconds; the warm-up is run and thrown away.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

/// One call of a scenario: its number in the run, then its outcome.
pub type Call = Arc<dyn Fn(u64) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// How long and how hard to load.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Callers at once (closed loop).
    pub concurrency: usize,
    /// Thrown away before measuring.
    pub warmup: Duration,
    /// Measured.
    pub duration: Duration,
    /// Stop after this many measured calls, if sooner.
    pub max_requests: u64,
}

/// What a measured run found.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Calls answered successfully in the measured time.
    pub requests: u64,
    /// Calls that failed in the measured time.
    pub errors: u64,
    /// The measured time.
    pub elapsed: Duration,
    /// Latencies of successful calls, in microseconds.
    pub latency: Histogram<u64>,
    /// The first error seen, to tell what went wrong.
    pub first_error: Option<String>,
}

impl Stats {
    /// Calls counted without their latencies (work measured in this process, not over the
    /// network).
    pub fn counted(requests: u64, elapsed: Duration) -> Self {
        Self { requests, errors: 0, elapsed, latency: histogram(), first_error: None }
    }

    /// Successful calls per second.
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A latency quantile in milliseconds.
    pub fn ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 60 s at three significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("1 µs to 60 s at 3 digits is a valid histogram")
}

/// Runs `call` from `shape.concurrency` callers: the warm-up, then the measured time.
pub async fn closed_loop(shape: Shape, call: Call) -> Stats {
    let counter = Arc::new(AtomicU64::new(0));
    let measured = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let measure_from = start + shape.warmup;
    let end = measure_from + shape.duration;
    let mut workers = Vec::with_capacity(shape.concurrency);
    for _ in 0..shape.concurrency {
        let call = call.clone();
        let counter = counter.clone();
        let measured = measured.clone();
        workers.push(tokio::spawn(async move {
            let mut latency = histogram();
            let (mut ok, mut errors, mut first_error) = (0u64, 0u64, None);
            loop {
                let began = Instant::now();
                if began >= end || measured.load(Ordering::Relaxed) >= shape.max_requests {
                    break;
                }
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let outcome = call(n).await;
                if began < measure_from {
                    continue;
                }
                measured.fetch_add(1, Ordering::Relaxed);
                match outcome {
                    Ok(()) => {
                        ok += 1;
                        let _ = latency.record(began.elapsed().as_micros().max(1) as u64);
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            (latency, ok, errors, first_error, Instant::now())
        }));
    }
    let mut stats = Stats { requests: 0, errors: 0, elapsed: Duration::ZERO, latency: histogram(), first_error: None };
    let mut finished = measure_from;
    for worker in workers {
        if let Ok((latency, ok, errors, first_error, at)) = worker.await {
            let _ = stats.latency.add(&latency);
            stats.requests += ok;
            stats.errors += errors;
            if stats.first_error.is_none() {
                stats.first_error = first_error;
            }
            finished = finished.max(at);
        }
    }
    stats.elapsed = finished.saturating_duration_since(measure_from).min(shape.duration).max(Duration::from_millis(1));
    stats
}

/// Sends `call` at `rate` per second on a fixed schedule for the warm-up and the measured
/// time. Latency counts from when a call was due, not when it went out, so a stalled server
/// cannot hide its stall (no coordinated omission). At most `max_in_flight` calls are
/// outstanding; a call that would exceed it counts as an error.
pub async fn open_loop(rate: f64, shape: Shape, max_in_flight: u64, call: Call) -> Stats {
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let start = Instant::now();
    let measure_from = start + shape.warmup;
    let end = measure_from + shape.duration;
    let in_flight = Arc::new(AtomicU64::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(bool, Result<u64, String>)>();
    let mut n = 0u64;
    loop {
        let due = start + interval.mul_f64(n as f64);
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due).await;
        let measured = due >= measure_from;
        if in_flight.load(Ordering::Relaxed) >= max_in_flight {
            let _ = tx.send((measured, Err("too many calls outstanding".into())));
        } else {
            in_flight.fetch_add(1, Ordering::Relaxed);
            let (call, tx, in_flight) = (call.clone(), tx.clone(), in_flight.clone());
            tokio::spawn(async move {
                let outcome = call(n).await.map(|()| due.elapsed().as_micros().max(1) as u64);
                in_flight.fetch_sub(1, Ordering::Relaxed);
                let _ = tx.send((measured, outcome));
            });
        }
        n += 1;
    }
    drop(tx);
    let mut stats = Stats { requests: 0, errors: 0, elapsed: shape.duration, latency: histogram(), first_error: None };
    while let Some((measured, outcome)) = rx.recv().await {
        if !measured {
            continue;
        }
        match outcome {
            Ok(micros) => {
                stats.requests += 1;
                let _ = stats.latency.record(micros);
            }
            Err(e) => {
                stats.errors += 1;
                stats.first_error.get_or_insert(e);
            }
        }
    }
    stats
}

/// Merges the stats of loads run side by side over the same time.
pub fn merge(parts: &[&Stats]) -> Stats {
    let mut all = Stats {
        requests: 0,
        errors: 0,
        elapsed: parts.iter().map(|s| s.elapsed).max().unwrap_or_default(),
        latency: histogram(),
        first_error: None,
    };
    for part in parts {
        all.requests += part.requests;
        all.errors += part.errors;
        let _ = all.latency.add(&part.latency);
        if all.first_error.is_none() {
            all.first_error = part.first_error.clone();
        }
    }
    all
}
