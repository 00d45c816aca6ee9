//! Tests for `aspace::area_tree::Reader`, the lock-free lookup: it agrees
//! with the locked lookup after every kind of change (including arena
//! growth and `drain`), it outlives its tree safely, and, with a writer
//! thread reshaping the tree all the while, every answer it gives is one
//! the tree held: entries whole (start, end and tag from one entry), stable
//! entries always found exactly, gaps never filled.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use aspace::area_tree::{AreaTree, Busy, Hint};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The tag an entry `[start, end)` carries in these tests: a function of
/// both bounds, so a torn read (bounds and tag from different entries or
/// moments) shows.
fn tag_of(start: u64, end: u64) -> u64 {
    start.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ end.rotate_left(17)
}

/// What the locked lookup says, in the reader's format.
fn locked(t: &AreaTree<u64>, n: u64) -> Option<(u64, u64, u64)> {
    t.find_tagged(n, None)
        .map(|(s, e, _, tag)| (s, e, tag.load(Ordering::Relaxed)))
}

#[test]
fn reader_agrees_with_locked_lookup_through_every_change() {
    let seed = 0x5eed_0001;
    let mut rng = Rng(seed);
    let mut t = AreaTree::new();
    let r = t.reader();
    let hint = Hint::new();
    let probe = |t: &AreaTree<u64>, rng: &mut Rng, step: usize| {
        for _ in 0..64 {
            let n = rng.below(20_000);
            let hinted = if n.is_multiple_of(2) {
                Some(&hint)
            } else {
                None
            };
            assert_eq!(
                r.find(n, hinted),
                Ok(locked(t, n)),
                "seed {seed:#x}, step {step}, point {n}"
            );
        }
    };
    for step in 0..6_000 {
        let start = rng.below(20_000);
        let len = 1 + rng.below(40);
        match rng.below(10) {
            0..=3 => {
                let _ = t.insert_tagged(start, start + len, tag_of(start, start + len), start);
            }
            4..=6 => {
                // Remove the entry at or after `start`, if any.
                let victim = t.iter().find(|&(s, _, _)| s >= start).map(|(s, _, _)| s);
                if let Some(s) = victim {
                    t.remove(s).unwrap();
                }
            }
            7 => {
                if let Some((s, _, _)) = t.find(start) {
                    t.set_end(s, s + len);
                }
            }
            8 => {
                let _ = t.grow_adjacent(start, start + 1);
            }
            _ => {
                if let Some((s, e, _)) = t.find(start) {
                    t.set_start(s, s.saturating_sub(len).min(e - 1));
                }
            }
        }
        probe(&t, &mut rng, step);
        if step % 2_000 == 1_999 {
            t.check_invariants();
            t.drain();
            probe(&t, &mut rng, step);
            t.reserve(3_000);
        }
    }
}

#[test]
fn reader_outliving_its_tree_finds_nothing() {
    let mut t = AreaTree::new();
    for k in 0..500u64 {
        t.insert_tagged(10 * k, 10 * k + 5, k, k).unwrap();
    }
    let r = t.reader();
    assert_eq!(r.find(42, None), Ok(Some((40, 45, 4))));
    drop(t);
    assert_eq!(r.find(42, None), Ok(None));
}

/// One writer reshapes a tree as fast as it can (inserting, removing and
/// resizing entries in one region, which splits, merges and grows the
/// arenas) while readers look up points all over it. Entries in another
/// region never change. Every answer must be an entry whole, containing
/// the point; stable entries must always be found exactly and gaps between
/// them never.
#[test]
fn readers_never_see_a_torn_or_wrong_entry_while_the_tree_changes() {
    const STABLE: u64 = 400; // entries [100k, 100k + 50) for k < STABLE
    const CHURN_BASE: u64 = 1_000_000;
    const CHURN_SPAN: u64 = 40_000;
    let seed = 0x5eed_0002;
    let mut t = AreaTree::new();
    for k in 0..STABLE {
        t.insert_tagged(100 * k, 100 * k + 50, tag_of(100 * k, 100 * k + 50), k)
            .unwrap();
    }
    let reader = t.reader();
    let stop = Arc::new(AtomicBool::new(false));
    let changes = Arc::new(AtomicU64::new(0));

    let writer = {
        let (stop, changes) = (stop.clone(), changes.clone());
        thread::spawn(move || {
            let mut rng = Rng(seed);
            let mut live: Vec<u64> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let start = CHURN_BASE + rng.below(CHURN_SPAN);
                if rng.below(2) == 0 || live.is_empty() {
                    let end = start + 1 + rng.below(30);
                    if t.insert_tagged(start, end, tag_of(start, end), start)
                        .is_ok()
                    {
                        live.push(start);
                    }
                } else {
                    let s = live.swap_remove(rng.below(live.len() as u64) as usize);
                    if rng.below(4) == 0 {
                        // Resize instead of removing: a new tag goes with
                        // the new bounds, as the area tree's summary would.
                        let end = s + 1 + rng.below(30);
                        if t.set_end(s, end) {
                            let (_, _, _, tag) = t.find_tagged(s, None).unwrap();
                            tag.store(tag_of(s, end), Ordering::Relaxed);
                        }
                        live.push(s);
                    } else {
                        t.remove(s).unwrap();
                    }
                }
                changes.fetch_add(1, Ordering::Relaxed);
            }
            t.check_invariants();
            t
        })
    };

    let readers: Vec<_> = (0..2u64)
        .map(|id| {
            let (reader, stop) = (reader.clone(), stop.clone());
            thread::spawn(move || {
                let mut rng = Rng(seed ^ ((id + 1) * 0x1234_5678));
                let hint = Hint::new();
                let (mut ok, mut busy, mut churn_hits) = (0u64, 0u64, 0u64);
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) || i < 200_000 {
                    i += 1;
                    let stable = rng.below(2) == 0;
                    let n = if stable {
                        rng.below(100 * STABLE)
                    } else {
                        CHURN_BASE + rng.below(CHURN_SPAN + 40)
                    };
                    let hinted = if i.is_multiple_of(3) {
                        Some(&hint)
                    } else {
                        None
                    };
                    let got = match reader.find(n, hinted) {
                        Ok(got) => got,
                        Err(Busy) => {
                            busy += 1;
                            continue;
                        }
                    };
                    ok += 1;
                    if stable {
                        let k = n / 100;
                        let want = (n % 100 < 50)
                            .then(|| (100 * k, 100 * k + 50, tag_of(100 * k, 100 * k + 50)));
                        assert_eq!(got, want, "seed {seed:#x}: stable point {n}");
                    } else if let Some((s, e, tag)) = got {
                        churn_hits += 1;
                        assert!(s <= n && n < e, "seed {seed:#x}: {n} not in [{s}, {e})");
                        assert!(s >= CHURN_BASE, "seed {seed:#x}: {n} found in [{s}, {e})");
                        // A tag is stored after its entry's new end, so the
                        // reader may see the old tag with the new end, never
                        // a tag of another entry's start.
                        let whole =
                            tag == tag_of(s, e) || (1..=31).any(|len| tag == tag_of(s, s + len));
                        assert!(whole, "seed {seed:#x}: torn entry [{s}, {e}) tag {tag:#x}");
                    }
                }
                (ok, busy, churn_hits)
            })
        })
        .collect();

    std::thread::sleep(std::time::Duration::from_millis(600));
    stop.store(true, Ordering::Relaxed);
    let t = writer.join().expect("writer");
    let mut total_ok = 0;
    for r in readers {
        let (ok, busy, churn_hits) = r.join().expect("reader");
        eprintln!("reader: {ok} answers, {busy} busy, {churn_hits} churn entries found");
        assert!(churn_hits > 0, "readers never found a changing entry");
        total_ok += ok;
    }
    let changes = changes.load(Ordering::Relaxed);
    eprintln!("writer: {changes} changes");
    assert!(changes > 1_000, "the writer barely ran: {changes} changes");
    assert!(total_ok > 100_000, "too few answers: {total_ok}");
    // After the race, the reader agrees with the tree exactly.
    for n in (0..100 * STABLE).chain(CHURN_BASE..CHURN_BASE + CHURN_SPAN + 40) {
        assert_eq!(reader.find(n, None), Ok(locked(&t, n)), "point {n}");
    }
}

#[test]
fn clones_keep_entries_values_and_tags_and_stand_alone() {
    let mut t = AreaTree::new();
    for k in 0..1_000u64 {
        let (s, e) = (7 * k, 7 * k + 1 + k % 5);
        t.insert_tagged(s, e, tag_of(s, e), k).unwrap();
    }
    let r = t.reader();
    let c = t.clone();
    c.check_invariants();
    let all = |t: &AreaTree<u64>| {
        t.iter_tagged()
            .map(|(s, e, v, tag)| (s, e, *v, tag.load(Ordering::Relaxed)))
            .collect::<Vec<_>>()
    };
    assert_eq!(all(&c), all(&t));
    // The clone has a reader of its own; changing one tree leaves the
    // other (and its reader) alone.
    let mut c = c;
    let rc = c.reader();
    c.remove(7).unwrap();
    assert_eq!(rc.find(7, None), Ok(None));
    assert_eq!(r.find(7, None), Ok(Some((7, 9, tag_of(7, 9)))));
    assert_eq!(t.len(), 1_000);
    assert_eq!(c.len(), 999);
}
