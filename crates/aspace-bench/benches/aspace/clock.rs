//! The clock the benchmarks are timed with: the benchmark thread's CPU time
//! by default, so that other work on a shared machine does not count while
//! it holds the CPU (`ASPACE_BENCH_CLOCK=wall` for wall-clock time). Time
//! spent in the kernel on the thread's behalf (Linux's page faults, `mmap`,
//! `munmap`) is CPU time of the thread and counts.

use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};

/// Thread CPU time or wall-clock time, in nanoseconds.
pub struct Clock {
    thread: bool,
    wall: WallTime,
}

impl Clock {
    /// The clock chosen by `ASPACE_BENCH_CLOCK` (`thread`, the default, or
    /// `wall`).
    pub fn from_env() -> Self {
        let wall = std::env::var("ASPACE_BENCH_CLOCK").is_ok_and(|v| v == "wall");
        Self {
            thread: !wall,
            wall: WallTime,
        }
    }

    /// The name, for the report.
    pub fn name(&self) -> &'static str {
        if self.thread {
            "thread CPU time (CLOCK_THREAD_CPUTIME_ID)"
        } else {
            "wall-clock time (CLOCK_MONOTONIC)"
        }
    }

    /// The time now on this clock.
    pub fn now(&self) -> Duration {
        let id = if self.thread {
            libc::CLOCK_THREAD_CPUTIME_ID
        } else {
            libc::CLOCK_MONOTONIC
        };
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `&mut ts` points to a live, aligned, writable
        // `libc::timespec` on this stack frame, the only memory
        // `clock_gettime` writes; `id` is CLOCK_THREAD_CPUTIME_ID or
        // CLOCK_MONOTONIC, both supported by Linux (an error would only
        // return -1, which the assert catches).
        let rc = unsafe { libc::clock_gettime(id, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime");
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }
}

impl Measurement for Clock {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        self.now()
    }
    fn end(&self, start: Duration) -> Duration {
        self.now().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        self.wall.formatter()
    }
}
