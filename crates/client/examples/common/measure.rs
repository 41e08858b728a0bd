//! Measuring for the end-to-end benchmarks (`bench_e2e` here and
//! `bench_http` of thingsdb-http, which includes this file): this
//! process's CPU time, and a rate with the CPU time per request.
#![allow(dead_code, clippy::expect_used)]

use std::time::{Duration, Instant};

/// This process's user + system CPU time.
#[cfg(unix)]
pub fn cpu_time() -> Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    let u = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let tv =
        |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    tv(u.user_time()) + tv(u.system_time())
}

/// Not measured here.
#[cfg(not(unix))]
pub fn cpu_time() -> Duration {
    Duration::ZERO
}

/// A rate and the CPU time it took per request.
#[derive(Clone, Copy, Default)]
pub struct Cell {
    /// Requests per second.
    pub rate: f64,
    /// This process's CPU time per request, in microseconds.
    pub cpu_us: f64,
}

impl Cell {
    /// The one with the higher rate.
    pub fn better(self, other: Cell) -> Cell {
        if other.rate > self.rate {
            other
        } else {
            self
        }
    }
}

/// Runs `f` (which returns how many requests it did) on this thread and
/// measures it: what a blocking path does once its connection is open.
pub fn measured_now(f: impl FnOnce() -> u64) -> Cell {
    let start = Start::now();
    start.cell(f())
}

/// Runs `f` (which returns how many requests it did) and measures it.
pub async fn measured<F: std::future::Future<Output = u64>>(f: F) -> Cell {
    let start = Start::now();
    start.cell(f.await)
}

/// The CPU time and the clock when a measured cell began.
struct Start {
    cpu: Duration,
    at: Instant,
}

impl Start {
    fn now() -> Start {
        Start {
            cpu: cpu_time(),
            at: Instant::now(),
        }
    }

    /// The cell of `n` requests done since the start.
    fn cell(self, n: u64) -> Cell {
        let n = n.max(1) as f64;
        let (cpu, t) = (cpu_time() - self.cpu, self.at.elapsed());
        Cell {
            rate: n / t.as_secs_f64(),
            cpu_us: cpu.as_secs_f64() * 1e6 / n,
        }
    }
}
