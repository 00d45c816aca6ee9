//! Paired ratios: the contenders of one comparison run interleaved, one
//! batch each per round in rotating order, and the ratio ours ÷ theirs is
//! taken within each round. On a shared virtual machine whose speed drifts
//! from second to second, the median of these per-round ratios is far
//! steadier than the ratio of two criterion figures measured seconds apart.
//! It complements criterion's figures (same process, same run) and is
//! reported beside them.

use std::sync::Mutex;

use crate::clock::Clock;

/// One paired comparison.
pub struct Record {
    /// What was compared (`lookup_random/4096`).
    pub id: String,
    /// Contender names, ours first.
    pub names: Vec<&'static str>,
    /// Median time per element of each contender, ns.
    pub ns: Vec<f64>,
    /// Median per-round ratio contender 0 ÷ contender i.
    pub ratio: Vec<f64>,
    /// Rounds run.
    pub rounds: usize,
}

static RECORDS: Mutex<Vec<Record>> = Mutex::new(Vec::new());

/// The records so far.
pub fn records() -> std::sync::MutexGuard<'static, Vec<Record>> {
    RECORDS.lock().unwrap()
}

/// Rounds per comparison: `ASPACE_BENCH_PAIRED_ROUNDS` (default 101), 3 in
/// test mode.
pub fn rounds() -> usize {
    if aspace_bench::test_mode() {
        return 3;
    }
    std::env::var("ASPACE_BENCH_PAIRED_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(101)
        .max(1)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs `contenders` (name, elements per call, one batch) interleaved for
/// `rounds()` rounds after one warm-up round, and records the medians.
pub fn compare(id: impl Into<String>, contenders: &mut [(&'static str, u64, &mut dyn FnMut())]) {
    let clock = Clock::from_env();
    let n = contenders.len();
    let rounds = rounds();
    let mut times = vec![Vec::with_capacity(rounds); n];
    for round in 0..=rounds {
        let mut t = vec![0.0; n];
        for j in 0..n {
            let i = (round + j) % n;
            let (_, elements, f) = &mut contenders[i];
            let start = clock.now();
            f();
            t[i] = (clock.now() - start).as_nanos() as f64 / *elements as f64;
        }
        if round > 0 {
            for i in 0..n {
                times[i].push(t[i]);
            }
        }
    }
    let ratio = (0..n)
        .map(|i| {
            let mut r: Vec<f64> = (0..rounds)
                .map(|k| times[0][k] / times[i][k].max(1e-9))
                .collect();
            median(&mut r)
        })
        .collect();
    let ns = times.iter_mut().map(|t| median(t)).collect();
    records().push(Record {
        id: id.into(),
        names: contenders.iter().map(|c| c.0).collect(),
        ns,
        ratio,
        rounds,
    });
}
