//! Where a simulated CPU's page fault sleeps while a user pager works on
//! its page: the core's [`Sleep`], over a host mutex and condition
//! variable, one per simulated machine (made with it, passed on to a later
//! machine when it goes, never freed:
//! [`SimHardware::sleep_stats`](crate::SimHardware::sleep_stats)).
//!
//! A sleep that waits [`SLEEP_LIMIT`] without a wake gives up and is
//! counted ([`SleepStats::timeouts`]): with the core keeping its side of
//! the protocol no sleep waits that long, so tests assert the count stays
//! zero (a lost wake would otherwise hang them).

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use aspace::Sleep;

/// How long one sleep waits for a wake before it gives up.
pub const SLEEP_LIMIT: Duration = Duration::from_secs(10);

/// Counters of the process's pager sleeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SleepStats {
    /// Sleeps that waited (the token was still current).
    pub sleeps: u64,
    /// Wakes (answers recorded).
    pub wakes: u64,
    /// Sleeps that gave up after [`SLEEP_LIMIT`] without a wake.
    pub timeouts: u64,
}

/// The wake counter and the statistics, under one mutex.
struct State {
    epoch: u64,
    stats: SleepStats,
}

/// A machine's pager sleep.
pub struct HostSleep {
    state: Mutex<State>,
    woken: Condvar,
}

impl Default for HostSleep {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                epoch: 0,
                stats: SleepStats::default(),
            }),
            woken: Condvar::new(),
        }
    }
}

impl HostSleep {
    /// The counters now.
    pub fn stats(&self) -> SleepStats {
        self.lock().stats
    }

    /// Counters back to zero (for the next machine to use this sleep; the
    /// wake counter goes on, so a token of the last one stays stale).
    pub(crate) fn clear_stats(&self) {
        self.lock().stats = SleepStats::default();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A test that panicked while holding it left the counters sound.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Sleep for HostSleep {
    fn token(&self) -> u64 {
        self.lock().epoch
    }

    fn sleep(&self, token: u64) {
        let mut st = self.lock();
        if st.epoch != token {
            return;
        }
        st.stats.sleeps += 1;
        let (mut st, timeout) = self
            .woken
            .wait_timeout_while(st, SLEEP_LIMIT, |st| st.epoch == token)
            .unwrap_or_else(|e| e.into_inner());
        if timeout.timed_out() {
            st.stats.timeouts += 1;
        }
    }

    fn wake(&self) {
        let mut st = self.lock();
        st.epoch += 1;
        st.stats.wakes += 1;
        drop(st);
        self.woken.notify_all();
    }
}
