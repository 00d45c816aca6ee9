//! `vm.max_map_count` against Linux's rule, at random: a call that changes
//! every mapping's part of a range (`mprotect`, `mlock`, `munlock`,
//! `madvise` hints, `mseal`) goes at the limit exactly when doing it one
//! mapping at a time, as Linux's `vma_modify` does (merges first, then each
//! split while the count is below the limit), never ends above the limit;
//! and where it goes, it does what it does without a limit; where it is
//! refused, nothing changed. Fixed seeds, printed on failure.

mod common;

use aspace::PAGE_SIZE;
use aspace_linux::consts::*;
use aspace_linux::flags::{Advice, LockFlags};
use aspace_linux::mm::vm_flags::VmFlags;
use aspace_linux::mm::LinuxMm;
use aspace_linux::{Errno, MapFlags, Prot};
use aspace_sim::{Cpu, Sim, SimMachine};
use common::Rng;

const P: u64 = PAGE_SIZE;
/// The window the mappings live in: 24 pages.
const T: u64 = common::BASE + (64 << 20);
const PAGES: u64 = 24;

/// A page range inside the window: (address, length).
fn range(rng: &mut Rng) -> (u64, u64) {
    let a = rng.below(PAGES);
    let len = 1 + rng.below((PAGES - a).min(8));
    (T + a * P, len * P)
}

fn prot(rng: &mut Rng) -> Prot {
    [Prot::R, Prot::RW, Prot::NONE][rng.below(3) as usize]
}

/// One step of the set-up (errors ignored: only the state it leaves counts).
fn setup_step(mm: &mut LinuxMm<SimMachine>, cpu: &Cpu, rng: &mut Rng) {
    let (at, len) = range(rng);
    let _ = cpu.run(|| match rng.below(9) {
        0 | 1 => {
            let flags = MapFlags(MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED);
            mm.mmap(at, len, prot(rng), flags, None, 0).map(|_| ())
        }
        2 => mm.munmap(at, len),
        3 | 4 => mm.mprotect(at, len, prot(rng)),
        5 => mm.madvise(at, len, Advice(MADV_POPULATE_WRITE)),
        6 => mm.mlock(at, len, LockFlags(0)),
        7 => {
            let advice = [MADV_RANDOM, MADV_SEQUENTIAL, MADV_NORMAL][rng.below(3) as usize];
            mm.madvise(at, len, Advice(advice))
        }
        _ => {
            if rng.below(4) == 0 {
                mm.mseal(at, len, 0)
            } else {
                Ok(())
            }
        }
    });
}

/// The final call, on `[at, at + len)`.
#[derive(Clone, Copy, Debug)]
enum Call {
    Protect(Prot),
    Lock,
    Unlock,
    Hint(i32),
    Seal,
}

impl Call {
    fn pick(rng: &mut Rng) -> Call {
        match rng.below(5) {
            0 => Call::Protect(prot(rng)),
            1 => Call::Lock,
            2 => Call::Unlock,
            3 => Call::Hint(
                [
                    MADV_RANDOM,
                    MADV_SEQUENTIAL,
                    MADV_NORMAL,
                    MADV_DONTFORK,
                    MADV_DOFORK,
                ][rng.below(5) as usize],
            ),
            _ => Call::Seal,
        }
    }

    fn run(self, mm: &mut LinuxMm<SimMachine>, cpu: &Cpu, at: u64, len: u64) -> Result<(), Errno> {
        cpu.run(|| match self {
            Call::Protect(p) => mm.mprotect(at, len, p),
            Call::Lock => mm.mlock(at, len, LockFlags(0)),
            Call::Unlock => mm.munlock(at, len),
            Call::Hint(a) => mm.madvise(at, len, Advice(a)),
            Call::Seal => mm.mseal(at, len, 0),
        })
    }

    /// What Linux answers when a split would pass the limit.
    fn refusal(self) -> Errno {
        match self {
            Call::Hint(_) => Errno::EAGAIN,
            _ => Errno::ENOMEM,
        }
    }
}

type Rec = (u64, u64, Prot, VmFlags, Option<u64>);

fn recs(mm: &LinuxMm<SimMachine>) -> Vec<Rec> {
    mm.vmas()
        .filter(|v| v.start >= T)
        .map(|v| {
            (
                v.start - T,
                v.end - T,
                v.prot,
                v.flags,
                v.anon.map(|a| a.id),
            )
        })
        .collect()
}

/// A process map after `seed`'s set-up, and its machine.
fn world(seed: u64, steps: u64) -> (Sim, LinuxMm<SimMachine>, Cpu) {
    let (sim, mut mm, cpu) = common::setup();
    let mut rng = Rng(seed);
    for _ in 0..steps {
        setup_step(&mut mm, &cpu, &mut rng);
    }
    (sim, mm, cpu)
}

#[test]
fn changes_at_the_map_count_limit_go_as_linux_counts_them() {
    let (mut went, mut refused) = (0, 0);
    for seed in 1..=5000u64 {
        let seed = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let steps = 6 + seed % 14;
        // The call and the limit: a stream of their own.
        let mut rng = Rng(seed ^ 0x5eed_ca11);
        let (at, len) = range(&mut rng);
        let call = Call::pick(&mut rng);
        let slack = rng.below(3) as usize;

        // Without a limit: the whole call, and the same call made one
        // mapping's part at a time (Linux's order), counted after each.
        let (_s1, mut free, cpu1) = world(seed, steps);
        let count = free.vmas().count();
        let max = count + slack;
        let parts: Vec<(u64, u64)> = free
            .vmas()
            .filter(|v| v.end > at && v.start < at + len)
            .map(|v| (v.start.max(at), v.end.min(at + len)))
            .collect();
        if call.run(&mut free, &cpu1, at, len).is_err() {
            continue;
        }
        let (_s2, mut stepwise, cpu2) = world(seed, steps);
        let mut fits = true;
        for (lo, hi) in parts {
            let r = call.run(&mut stepwise, &cpu2, lo, hi - lo);
            fits &= r.is_ok() && stepwise.vmas().count() <= max;
        }

        // At the limit.
        let (_s3, mut limited, cpu3) = world(seed, steps);
        let before = recs(&limited);
        limited.set_max_map_count(max);
        let r = call.run(&mut limited, &cpu3, at, len);
        let what = format!(
            "seed {seed:#x}: {call:?} at page {} for {} pages, {count} mappings, limit {max}, before {before:?}",
            (at - T) / P,
            len / P
        );
        if fits {
            assert_eq!(r, Ok(()), "{what}");
            assert_eq!(recs(&limited), recs(&free), "{what}");
            went += 1;
        } else {
            assert_eq!(r, Err(call.refusal()), "{what}");
            assert_eq!(recs(&limited), before, "{what}");
            refused += 1;
        }
        assert!(limited.vmas().count() <= max.max(count), "{what}");
    }
    eprintln!("{went} went, {refused} refused at the limit");
    assert!(
        went > 300 && refused > 100,
        "{went} went, {refused} refused"
    );
}
