//! Every call of the Linux layer is all or nothing when memory runs out,
//! as the core's operations are: for each call, first the test heap
//! ([`FailingHeap`], this binary's global allocator) and then the
//! simulator's frame allocator refuse the call's n-th allocation and every
//! later one, for n = 0, 1, 2, ... until the call succeeds without a
//! refusal. A refused call must answer `ENOMEM` (the break: stay where it
//! was) with everything as it was: the layer's records and break, and the
//! machine's whole observable state (areas, used space, page tables,
//! frames and their reference counts, TLBs, reservations). A call that
//! copes with a refusal (a merge of the core's areas it does without, a
//! shootdown batch that flushes early) must answer as a clean run does and
//! leave the records a clean run leaves.
//!
//! Calls that fault pages in after their change (`MAP_POPULATE`,
//! `MAP_LOCKED`, `mlock`, `mlockall`, `MADV_POPULATE_*`) do so as Linux
//! does, page by page, best effort: memory refused there leaves the change
//! made and fewer pages resident (Linux's populate is best effort too, and
//! `mlock` says `EAGAIN`). For them the records must be as before or as a
//! clean run leaves them, never anything else.
//!
//! Every world, torn down, must give back every frame and reservation. An
//! infallible heap allocation hit while refusing aborts this binary
//! ("memory allocation failed"); `ASPACE_HEAP_TRACE=1` prints a backtrace
//! of each refusal, the last one before the abort naming the culprit.

mod common;

use aspace::PAGE_SIZE;
use aspace_linux::consts::*;
use aspace_linux::flags::{Advice, LockAllFlags, LockFlags, SyncFlags};
use aspace_linux::mm::{HolePolicy, Kind as Backing, LinuxMm};
use aspace_linux::{Errno, FileRef, MapFlags, Prot, RemapFlags};
use aspace_sim::heap::{self, FailingHeap};
use aspace_sim::snapshot::{state, State};
use aspace_sim::{Cpu, Sim, SimMachine};

use common::{setup, BASE};

#[global_allocator]
static HEAP: FailingHeap = FailingHeap;

const ANON: u32 = MAP_PRIVATE | MAP_ANONYMOUS;

fn p(n: u64) -> u64 {
    n * PAGE_SIZE
}

/// `A`: 8 private pages, 0..6 written. `B`: 4 private pages, untouched,
/// `MADV_HUGEPAGE` on its second. `S`: 4 shared anonymous pages, 2
/// written. `F`: file `F` mapped private (page 0 read, page 1 written:
/// copied). `G`: file `F` from its page 4, shared, page 0 written. `L`: 2
/// locked pages. The break grown by 3 pages, one written.
const A: u64 = BASE;
const B: u64 = BASE + 16 * PAGE_SIZE;
const S: u64 = BASE + 32 * PAGE_SIZE;
const F: u64 = BASE + 48 * PAGE_SIZE;
const G: u64 = BASE + 64 * PAGE_SIZE;
const L: u64 = BASE + 80 * PAGE_SIZE;
/// Free.
const FREE: u64 = BASE + 128 * PAGE_SIZE;
const BRK: u64 = 0x5555_0000_0000;

struct World {
    sim: Sim,
    mm: LinuxMm<SimMachine>,
    cpu: Cpu,
    /// Processes forked from `mm` (their spaces are compared too).
    kids: Vec<LinuxMm<SimMachine>>,
}

/// What a refused call must leave as it was.
#[derive(Debug, PartialEq)]
struct Everything {
    records: String,
    brk: u64,
    machine: State,
}

impl World {
    fn everything(&self) -> Everything {
        Everything {
            records: self.records(),
            brk: self.mm.brk_now(),
            machine: {
                let mut spaces = vec![self.mm.space()];
                spaces.extend(self.kids.iter().map(|k| k.space()));
                state(&self.sim, &spaces)
            },
        }
    }

    /// The records, an object named by its number and name (its resident
    /// pages are the machine's state, compared there).
    fn records(&self) -> String {
        let mut out = String::new();
        for v in self.mm.vmas() {
            let kind = match &v.kind {
                Backing::Object {
                    object,
                    file,
                    private,
                } => format!(
                    "object {} {:?} file {file} private {private}",
                    object.id(),
                    object.name()
                ),
                other => format!("{other:?}"),
            };
            out += &format!(
                "{:#x}-{:#x} {:?} {kind} first {} noreserve {} growsdown {} account {} anon {:?} {:?}\n",
                v.start, v.end, v.prot, v.first, v.noreserve, v.growsdown, v.account, v.anon, v.flags
            );
        }
        out
    }

    fn write(&mut self, addr: u64, v: u64) {
        let va = aspace::VirtAddr::new(addr);
        self.cpu.write_u64(va, v).unwrap();
        self.mm.touched(addr, true);
    }
}

fn mmap(mm: &mut LinuxMm<SimMachine>, addr: u64, pages: u64, flags: u32) -> Result<u64, Errno> {
    mm.mmap(addr, p(pages), Prot::RW, MapFlags(flags), None, 0)
}

fn file(
    mm: &mut LinuxMm<SimMachine>,
    addr: u64,
    pages: u64,
    flags: u32,
    name: &FileRef,
    offset: u64,
) -> Result<u64, Errno> {
    mm.mmap(
        addr,
        p(pages),
        Prot::RW,
        MapFlags(flags),
        Some(name),
        offset,
    )
}

/// A file name made outside the refusing heap.
fn name(n: &str) -> FileRef {
    FileRef(n.to_string())
}

fn world() -> World {
    let (sim, mm, cpu) = setup();
    let mut w = World {
        sim,
        mm,
        cpu,
        kids: Vec::new(),
    };
    let fixed = MAP_FIXED;
    w.cpu.run(|| {
        let mm = &mut w.mm;
        mmap(mm, A, 8, ANON | fixed).unwrap();
        mmap(mm, B, 4, ANON | fixed).unwrap();
        mm.madvise(B + p(1), p(1), Advice(MADV_HUGEPAGE)).unwrap();
        mmap(mm, S, 4, MAP_SHARED | MAP_ANONYMOUS | fixed).unwrap();
        file(mm, F, 4, MAP_PRIVATE | fixed, &name("F"), 0).unwrap();
        file(mm, G, 4, MAP_SHARED | fixed, &name("F"), p(4)).unwrap();
        mmap(mm, L, 2, ANON | fixed | MAP_LOCKED).unwrap();
        assert_eq!(mm.brk(BRK + p(3)), BRK + p(3));
    });
    for i in 0..6 {
        w.write(A + p(i), 100 + i);
    }
    w.write(S, 7);
    w.write(S + p(2), 8);
    w.cpu.read_u64(aspace::VirtAddr::new(F)).unwrap();
    w.write(F + p(1), 9);
    w.write(G, 10);
    w.write(BRK + p(1), 11);
    w
}

/// How a call may end when the heap refuses it.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// `ENOMEM` with everything as it was.
    Whole,
    /// Faults pages in after its change: the records as before or as a
    /// clean run leaves them.
    Populates,
}

/// A call's result: an address or break, or its errno.
type Outcome = Result<u64, Errno>;

/// What runs out.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Refused {
    /// The heap.
    Heap,
    /// Frames.
    Frames,
}

/// Runs `op` in fresh worlds with the heap refusing from its n-th
/// allocation on, for n = 0, 1, ... until it runs without a refusal, and
/// then the same with frames (see the module documentation); returns the
/// heap allocations it made.
fn inject(name: &str, kind: Kind, op: impl Fn(&mut LinuxMm<SimMachine>) -> Outcome) -> u64 {
    inject_in(name, kind, world, op)
}

/// [`inject`] in worlds made by `make`.
fn inject_in(
    name: &str,
    kind: Kind,
    make: impl Fn() -> World,
    op: impl Fn(&mut LinuxMm<SimMachine>) -> Outcome,
) -> u64 {
    let made = refusing(Refused::Heap, name, kind, &make, &op);
    refusing(Refused::Frames, name, kind, &make, &op);
    made
}

/// Runs `op` in worlds made by `make` with `what` refusing from the n-th
/// allocation on, for every n until none is refused; returns the
/// allocations of `what` made then.
fn refusing(
    what: Refused,
    name: &str,
    kind: Kind,
    make: &impl Fn() -> World,
    op: &impl Fn(&mut LinuxMm<SimMachine>) -> Outcome,
) -> u64 {
    let name = &format!("{name} ({what:?} refused)");
    let baseline = {
        let (sim, mm, cpu) = setup();
        drop((mm, cpu));
        sim.frames_in_use()
    };
    // What a clean run gives and leaves.
    let (clean, clean_records) = {
        let mut w = make();
        let r = w.cpu.run(|| op(&mut w.mm));
        let records = w.records();
        teardown(w, baseline);
        (r, records)
    };
    for n in 0..512 {
        let mut w = make();
        let before = w.everything();
        let old_brk = w.mm.brk_now();
        let (result, (made, refused)) = {
            let (mm, cpu) = (&mut w.mm, &w.cpu);
            match what {
                Refused::Heap => heap::refusing_from(n, || cpu.run(|| op(mm))),
                Refused::Frames => frames_refusing_from(&w.sim, n, || cpu.run(|| op(mm))),
            }
        };
        if refused == 0 {
            assert_eq!(result, clean, "{name}: a run without refusal differs");
            eprintln!("{name}: done with {made} allocations");
            teardown(w, baseline);
            return made;
        }
        // The break answers a refusal with the old break.
        let refused_brk = clean != Ok(old_brk) && result == Ok(old_brk) && name.starts_with("brk");
        let after = w.everything();
        if refused_brk || (result.is_err() && kind == Kind::Whole) {
            if !refused_brk {
                assert_eq!(
                    result,
                    Err(Errno::ENOMEM),
                    "{name}: refused at allocation {n}"
                );
            }
            // Unless it coped with the refusal and failed for its own
            // reason, as a clean run does (a hole in a madvise range).
            let coped = result == clean && after.records == clean_records;
            assert!(
                after == before || coped,
                "{name}: refused at allocation {n} and changed the state:\n\
                 before {before:#?}\nafter {after:#?}"
            );
        } else if kind == Kind::Populates {
            // Frames refused while faulting pages in: the pages written
            // before the refusal gave their mappings an `anon_vma`, the
            // others not (Linux alike).
            let anon = |r: &str| -> String {
                r.lines()
                    .map(|l| {
                        l.split(" anon ").next().unwrap_or(l).to_string()
                            + &l[l.rfind(' ').unwrap_or(0)..]
                            + "\n"
                    })
                    .collect()
            };
            let partly = what == Refused::Frames
                && (anon(&after.records) == anon(&before.records)
                    || anon(&after.records) == anon(&clean_records));
            assert!(
                after.records == before.records || after.records == clean_records || partly,
                "{name}: refused at allocation {n} ({result:?}) and left records \
                 neither as they were nor as a clean run does:\nbefore {}\nafter {}\nclean {}",
                before.records,
                after.records,
                clean_records
            );
        } else {
            // Coped with a refusal: as a clean run, but for what the core
            // may keep apart.
            assert_eq!(result, clean, "{name}: coped at {n} but answered otherwise");
            assert!(
                after.records == clean_records,
                "{name}: coped with a refusal at {n} but left other records:\n{}\nclean {}",
                after.records,
                clean_records
            );
        }
        teardown(w, baseline);
    }
    panic!("{name}: still refused after 512 allocations");
}

/// Runs `f` with the frame allocator letting `n` allocations through and
/// refusing every later one, as [`heap::refusing_from`] does for the heap:
/// its result, the allocations made and how many were refused.
fn frames_refusing_from<R>(sim: &Sim, n: u64, f: impl FnOnce() -> R) -> (R, (u64, u64)) {
    let frames = sim.hardware().frames();
    let was = frames.refused();
    frames.fail_after(Some(n));
    let r = f();
    let made = n - frames.allocations_left().unwrap_or(0);
    frames.fail_after(None);
    (r, (made, frames.refused() - was))
}

/// Drops the world and checks it gave back every frame and reservation.
fn teardown(w: World, baseline: u64) {
    let World {
        sim, mm, cpu, kids, ..
    } = w;
    drop(kids);
    drop(mm);
    drop(cpu);
    assert_eq!(sim.hardware().stats().stale_accesses, 0);
    assert_eq!(sim.frames_in_use(), baseline, "frames left behind");
    assert_eq!(
        sim.system().reserve().committed(),
        0,
        "pages still reserved"
    );
}

#[test]
fn mmap_placed_and_fixed() {
    use Kind::*;
    inject("mmap anywhere", Whole, |mm| mmap(mm, 0, 16, ANON));
    inject("mmap a hint", Whole, |mm| mmap(mm, FREE, 4, ANON));
    inject("mmap next to A, merging", Whole, |mm| {
        mmap(mm, A + p(8), 2, ANON | MAP_FIXED)
    });
    inject("mmap fixed inside A", Whole, |mm| {
        mmap(mm, A + p(2), 2, ANON | MAP_FIXED)
    });
    inject("mmap fixed over A's top, a hole, B", Whole, |mm| {
        mmap(mm, A + p(6), 12, ANON | MAP_FIXED)
    });
    inject("mmap fixed over S (its object goes)", Whole, |mm| {
        mmap(mm, S, 4, ANON | MAP_FIXED)
    });
    inject("mmap fixed over the file mappings", Whole, |mm| {
        mmap(mm, F + p(2), 16, ANON | MAP_FIXED)
    });
    inject("mmap shared anonymous", Whole, |mm| {
        mmap(mm, FREE, 4, MAP_SHARED | MAP_ANONYMOUS)
    });
    let (f, h) = (name("F"), name("H"));
    inject("mmap a file mapped already", Whole, |mm| {
        file(mm, FREE, 4, MAP_PRIVATE, &f, p(8))
    });
    inject("mmap a new file", Whole, |mm| {
        file(mm, FREE, 4, MAP_SHARED, &h, 0)
    });
    inject("mmap noreplace refused", Whole, |mm| {
        mmap(mm, A, 1, ANON | MAP_FIXED_NOREPLACE)
    });
    inject("mmap populate", Populates, |mm| {
        mmap(mm, FREE, 4, ANON | MAP_POPULATE)
    });
    inject("mmap locked", Populates, |mm| {
        mmap(mm, FREE, 4, ANON | MAP_LOCKED)
    });
}

#[test]
fn munmap() {
    use Kind::*;
    inject("munmap A", Whole, |mm| mm.munmap(A, p(8)).map(|()| 0));
    inject("munmap inside A", Whole, |mm| {
        mm.munmap(A + p(2), p(3)).map(|()| 0)
    });
    inject("munmap A's top, a hole, B's bottom", Whole, |mm| {
        mm.munmap(A + p(5), p(13)).map(|()| 0)
    });
    inject("munmap S", Whole, |mm| mm.munmap(S, p(4)).map(|()| 0));
    inject("munmap the locked one", Whole, |mm| {
        mm.munmap(L, p(1)).map(|()| 0)
    });
    inject("munmap everything", Whole, |mm| {
        mm.munmap(A, L + p(2) - A).map(|()| 0)
    });
}

#[test]
fn mprotect() {
    use Kind::*;
    inject("mprotect inside A", Whole, |mm| {
        mm.mprotect(A + p(2), p(3), Prot::R).map(|()| 0)
    });
    inject("mprotect A's bottom", Whole, |mm| {
        mm.mprotect(A, p(3), Prot::R).map(|()| 0)
    });
    inject("mprotect all of B", Whole, |mm| {
        mm.mprotect(B, p(4), Prot::R).map(|()| 0)
    });
    inject("mprotect the file mappings", Whole, |mm| {
        mm.mprotect(F + p(1), p(2), Prot::R).map(|()| 0)
    });
    let read_only_lock = || {
        let mut w = world();
        w.cpu.run(|| w.mm.mprotect(L, p(2), Prot::R)).unwrap();
        w
    };
    inject_in(
        "mprotect a locked mapping writable",
        Populates,
        read_only_lock,
        |mm| mm.mprotect(L, p(1), Prot::RW).map(|()| 0),
    );
}

#[test]
fn mremap() {
    use Kind::*;
    let none = RemapFlags(0);
    let may = RemapFlags(MREMAP_MAYMOVE);
    let fixed = RemapFlags(MREMAP_MAYMOVE | MREMAP_FIXED);
    inject("mremap shrink A", Whole, |mm| {
        mm.mremap(A, p(8), p(3), none, 0)
    });
    inject("mremap grow B in place", Whole, |mm| {
        mm.mremap(B, p(4), p(8), none, 0)
    });
    inject("mremap move A", Whole, |mm| {
        mm.mremap(A, p(8), p(12), may, 0)
    });
    inject("mremap move part of A", Whole, |mm| {
        mm.mremap(A + p(2), p(2), p(2), fixed, FREE)
    });
    // 1 GiB on: the target needs page tables of its own (frames).
    inject("mremap move A far, to new page tables", Whole, |mm| {
        mm.mremap(A, p(8), p(8), fixed, A + (1 << 30))
    });
    inject("mremap move A onto B", Whole, |mm| {
        mm.mremap(A, p(4), p(4), fixed, B)
    });
    inject("mremap move and shrink A", Whole, |mm| {
        mm.mremap(A, p(8), p(4), fixed, FREE)
    });
    inject("mremap shrink A, its tail across B, onto F", Whole, |mm| {
        mm.mremap(A, p(20), p(2), fixed, F + p(1))
    });
    inject("mremap move the shared file mapping onto A", Whole, |mm| {
        mm.mremap(G, p(4), p(4), fixed, A + p(2))
    });
    inject("mremap grow the locked one", Populates, |mm| {
        mm.mremap(L, p(2), p(4), none, 0)
    });
    // An old length of 0: a second mapping of a shared object, placed or
    // over what is there.
    inject("mremap of nothing: the shared object again", Whole, |mm| {
        mm.mremap(S + p(1), 0, p(2), may, 0)
    });
    inject("mremap of nothing onto A", Whole, |mm| {
        mm.mremap(G + p(1), 0, p(3), fixed, A + p(2))
    });
    // MREMAP_DONTUNMAP: the old range stays, empty.
    let leave = RemapFlags(MREMAP_MAYMOVE | MREMAP_DONTUNMAP);
    let leave_fixed = RemapFlags(MREMAP_MAYMOVE | MREMAP_DONTUNMAP | MREMAP_FIXED);
    inject("mremap dontunmap part of A", Whole, |mm| {
        mm.mremap(A + p(2), p(3), p(3), leave, 0)
    });
    inject(
        "mremap dontunmap the private file mapping onto B",
        Whole,
        |mm| mm.mremap(F, p(2), p(2), leave_fixed, B + p(1)),
    );
    // Several mappings and the holes between them (Linux 6.17+): to a free
    // place, over S (which lies under a hole: kept), down over A and B,
    // and leaving them.
    // (Refused only for memory.)
    let moved = |r: Outcome| {
        assert!(matches!(r, Ok(_) | Err(Errno::ENOMEM)), "{r:?}");
        r
    };
    inject("mremap A, a hole and B to a free place", Whole, |mm| {
        moved(mm.mremap(A, p(20), p(20), fixed, FREE))
    });
    inject("mremap A, a hole and B, S under the hole", Whole, |mm| {
        moved(mm.mremap(A, p(20), p(20), fixed, A + p(24)))
    });
    inject("mremap S, a hole and F down over A and B", Whole, |mm| {
        moved(mm.mremap(S, p(20), p(20), fixed, A))
    });
    inject("mremap dontunmap part of A, a hole and B", Whole, |mm| {
        moved(mm.mremap(A + p(4), p(14), p(14), leave_fixed, FREE))
    });
    // B with a guard page at its top grows in place (a new area above).
    let guarded_top = || {
        let mut w = world();
        w.cpu.run(|| {
            w.mm.madvise(B + p(3), p(1), Advice(MADV_GUARD_INSTALL))
                .unwrap()
        });
        w
    };
    inject_in(
        "mremap grow B past its top guard page",
        Whole,
        guarded_top,
        |mm| moved(mm.mremap(B + p(2), p(2), p(6), none, 0)),
    );
    // And moved while it grows (the growth a new area at the new place),
    // placed or to a fixed place over A.
    let guarded_blocked = || {
        let mut w = guarded_top();
        let flags = MapFlags(MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE);
        w.cpu
            .run(|| w.mm.mmap(B + p(5), p(1), Prot::RW, flags, None, 0))
            .unwrap();
        w
    };
    inject_in(
        "mremap move and grow B past its top guard page",
        Whole,
        guarded_blocked,
        |mm| moved(mm.mremap(B + p(2), p(2), p(6), RemapFlags(MREMAP_MAYMOVE), 0)),
    );
    // Leaving B's range without its guard page (it goes with the pages),
    // placed and over A and its neighbours.
    inject_in(
        "mremap dontunmap B with a guard page",
        Whole,
        guarded_top,
        |mm| moved(mm.mremap(B + p(2), p(2), p(2), leave, 0)),
    );
    inject_in(
        "mremap dontunmap A, a hole and B with a guard page to a fixed place",
        Whole,
        guarded_top,
        |mm| moved(mm.mremap(A + p(4), p(14), p(14), leave_fixed, FREE)),
    );
    inject_in(
        "mremap grow B past its top guard page over A",
        Whole,
        guarded_top,
        |mm| moved(mm.mremap(B + p(2), p(2), p(6), fixed, A + p(1))),
    );
}

#[test]
fn brk() {
    use Kind::*;
    inject("brk grow", Whole, |mm| Ok(mm.brk(BRK + p(8))));
    inject("brk shrink", Whole, |mm| Ok(mm.brk(BRK + p(1))));
}

#[test]
fn stack_growth() {
    use Kind::*;
    // A stack above the free range, one page written (it has its anon_vma).
    let make = || {
        let mut w = world();
        let at = FREE + p(300);
        let flags = ANON | MAP_GROWSDOWN | MAP_FIXED;
        w.cpu.run(|| mmap(&mut w.mm, at, 4, flags)).unwrap();
        w.write(at, 1);
        w
    };
    let grow = |mm: &mut LinuxMm<SimMachine>| mm.expand_stack(FREE + p(290)).map(|()| 0);
    assert_eq!(
        inject_in("expand_stack", Whole, make, grow),
        0,
        "a stack grows without asking the heap"
    );
    // With a guard page at its bottom: the new pages are a core area of
    // their own (the heap asked for it).
    let guarded = || {
        let mut w = make();
        let guard = Advice(MADV_GUARD_INSTALL);
        w.cpu
            .run(|| w.mm.madvise(FREE + p(300), p(1), guard))
            .unwrap();
        w
    };
    inject_in("expand_stack below a guard page", Whole, guarded, grow);
}

#[test]
fn mseal() {
    use Kind::*;
    // Cut at both ends (A's middle), and across A, B and the hole between.
    inject("mseal A's middle", Whole, |mm| {
        mm.mseal(A + p(2), p(3), 0).map(|()| 0)
    });
    inject("mseal over a hole", Whole, |mm| {
        mm.mseal(A + p(6), p(12), 0).map(|()| 0)
    });
    inject("mseal B", Whole, |mm| mm.mseal(B, p(4), 0).map(|()| 0));
}

#[test]
fn madvise() {
    use Kind::*;
    let advise = |a, len, advice| {
        move |mm: &mut LinuxMm<SimMachine>| mm.madvise(a, len, Advice(advice)).map(|()| 0)
    };
    inject(
        "madvise dontneed A",
        Whole,
        advise(A + p(1), p(4), MADV_DONTNEED),
    );
    inject("madvise dontneed across mappings", Whole, |mm| {
        mm.set_hole_policy(HolePolicy::Refuse);
        mm.madvise(F, p(8), Advice(MADV_DONTNEED)).map(|()| 0)
    });
    inject("madvise free", Whole, advise(A, p(8), MADV_FREE));
    // Linux's way: every mapped part, then ENOMEM for the hole.
    inject(
        "madvise dontneed over a hole",
        Whole,
        advise(A, p(20), MADV_DONTNEED),
    );
    inject(
        "madvise dontfork inside A",
        Whole,
        advise(A + p(2), p(2), MADV_DONTFORK),
    );
    inject(
        "madvise nohugepage over B",
        Whole,
        advise(B, p(4), MADV_NOHUGEPAGE),
    );
    inject(
        "madvise wipeonfork",
        Whole,
        advise(A, p(3), MADV_WIPEONFORK),
    );
    inject(
        "madvise populate write",
        Populates,
        advise(B, p(4), MADV_POPULATE_WRITE),
    );
    // Holes punched in the shared object and in the file under G, which F
    // maps privately (its page 4 on, lent or copied), in one core step.
    inject("madvise remove S", Whole, advise(S, p(4), MADV_REMOVE));
    inject("madvise remove G", Whole, advise(G, p(2), MADV_REMOVE));
    // The same with a forked child mapping both objects (its F page 0
    // borrowed, page 1 copied): the hole reaches its mappings too.
    let forked = || {
        let mut w = world();
        let child = w.cpu.run(|| w.mm.fork()).unwrap();
        w.kids.push(child);
        w
    };
    inject_in(
        "madvise remove S with a child",
        Whole,
        forked,
        advise(S, p(4), MADV_REMOVE),
    );
    inject_in(
        "madvise remove G with a child",
        Whole,
        forked,
        advise(G, p(2), MADV_REMOVE),
    );
    // Guard pages over parts of two mappings and the hole between (one
    // core step for both parts), in private and shared file mappings, and
    // taken out again over a world that has some.
    inject(
        "madvise guard install across mappings and a hole",
        Whole,
        advise(A + p(2), p(18), MADV_GUARD_INSTALL),
    );
    inject(
        "madvise guard install in file mappings",
        Whole,
        advise(F + p(1), p(18), MADV_GUARD_INSTALL),
    );
    let guarded = || {
        let mut w = world();
        w.cpu.run(|| {
            for (at, n) in [(A + p(1), 2), (A + p(6), 1), (B, 1), (F + p(2), 1), (G, 2)] {
                w.mm.madvise(at, p(n), Advice(MADV_GUARD_INSTALL)).unwrap();
            }
        });
        w
    };
    inject_in(
        "madvise guard remove",
        Whole,
        guarded,
        advise(A, p(70), MADV_GUARD_REMOVE),
    );
}

#[test]
fn locks_and_sync() {
    use Kind::*;
    inject("mlock inside A", Populates, |mm| {
        mm.mlock(A + p(2), p(2), LockFlags(0)).map(|()| 0)
    });
    inject("mlock on fault", Whole, |mm| {
        mm.mlock(A + p(2), p(2), LockFlags(MLOCK_ONFAULT))
            .map(|()| 0)
    });
    inject("munlock", Whole, |mm| mm.munlock(L, p(1)).map(|()| 0));
    inject("mlockall", Populates, |mm| {
        mm.mlockall(LockAllFlags(MCL_CURRENT | MCL_FUTURE))
            .map(|()| 0)
    });
    inject("munlockall", Whole, |mm| mm.munlockall().map(|()| 0));
    inject("msync", Whole, |mm| {
        mm.msync(A, p(8), SyncFlags(MS_SYNC)).map(|()| 0)
    });
    inject("mincore", Whole, |mm| {
        let mut v = [0u8; 8];
        mm.mincore(A, p(8), &mut v).map(|()| 0)
    });
}

#[test]
fn fork() {
    inject("fork", Kind::Whole, |mm| {
        mm.fork().map(|child| {
            drop(child);
            0
        })
    });
    let hinted = || {
        let mut w = world();
        w.cpu.run(|| {
            let mm = &mut w.mm;
            mm.madvise(A + p(2), p(2), Advice(MADV_DONTFORK)).unwrap();
            mm.madvise(B, p(4), Advice(MADV_WIPEONFORK)).unwrap();
        });
        w
    };
    let fork = |mm: &mut LinuxMm<SimMachine>| {
        mm.fork().map(|child| {
            drop(child);
            0
        })
    };
    inject_in(
        "fork with dontfork and wipeonfork",
        Kind::Whole,
        hinted,
        fork,
    );
    // The child's guard pages in a wiped range go after the core's fork.
    let guarded = || {
        let mut w = hinted();
        w.cpu.run(|| {
            let mm = &mut w.mm;
            mm.madvise(B + p(1), p(1), Advice(MADV_GUARD_INSTALL))
                .unwrap();
            mm.madvise(A, p(1), Advice(MADV_GUARD_INSTALL)).unwrap();
        });
        w
    };
    inject_in(
        "fork with guard pages in and out of a wipeonfork range",
        Kind::Whole,
        guarded,
        fork,
    );
}

/// Random calls (the differential test's generator, seeded) with the heap
/// refusing from a random allocation of each: a call refused (`ENOMEM`
/// with a refusal seen) must leave everything as it was, and after every
/// call the layer's records must cover exactly the pages the core's areas
/// do. Holes refuse whole calls here ([`HolePolicy::Refuse`]); calls that
/// fault pages in afterwards are only held to the invariant.
/// `ASPACE_HEAP_STEPS` and `ASPACE_HEAP_SEED` change the run.
#[test]
fn random_calls_are_all_or_nothing() {
    use aspace_linux::gen::{GenConfig, Generator, Rng};
    use aspace_linux::mm::vm_flags::VmFlags;
    use aspace_linux::{Call, Command};
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (steps, seed) = (
        env("ASPACE_HEAP_STEPS", 1000),
        env("ASPACE_HEAP_SEED", 0x5eed),
    );
    let baseline = {
        let (sim, mm, cpu) = setup();
        drop((mm, cpu));
        sim.frames_in_use()
    };
    let mut cfg = GenConfig::new(BASE, 1 << 30);
    cfg.brk_span = Some((BRK, BRK + p(64)));
    cfg.lock_all = false;
    cfg.lock_current = false;
    cfg.write_exec = false;
    let mut gen = Generator::new(cfg, seed);
    let mut rng = Rng::new(seed ^ 0xa11);
    let (sim, mm, cpu) = setup();
    let mut w = World {
        sim,
        mm,
        cpu,
        kids: Vec::new(),
    };
    w.mm.set_hole_policy(HolePolicy::Refuse);
    let covered = |w: &World| {
        let recs: Vec<u64> =
            w.mm.vmas()
                .flat_map(|v| v.start / PAGE_SIZE..v.end / PAGE_SIZE)
                .collect();
        let areas: Vec<u64> =
            w.mm.space()
                .areas()
                .iter()
                .flat_map(|a| a.base.as_u64() / PAGE_SIZE..a.base.as_u64() / PAGE_SIZE + a.pages)
                .collect();
        (recs, areas)
    };
    // Calls that met a refusal, and calls refused whole, with the heap and
    // with frames refused (few calls allocate frames: populating ones,
    // moves to new page tables, fork).
    let (mut met, mut refused_calls) = ([0; 2], [0; 2]);
    for step in 0..steps {
        let line = gen.next_line();
        let call = match line.command {
            Command::Call(call) => call,
            Command::Write { addr, byte } => {
                let va = aspace::VirtAddr::new(addr);
                if w.cpu.write(va, &[byte]).is_ok() {
                    w.mm.touched(addr, true);
                }
                continue;
            }
            Command::Read { addr } => {
                let _ = w.cpu.read(aspace::VirtAddr::new(addr), &mut [0]);
                continue;
            }
        };
        let locked = w.mm.vmas().any(|v| v.flags.intersects(VmFlags::LOCK_MASK));
        let populates = match &call {
            Call::Mmap { flags, .. } => flags.has(MAP_POPULATE) || flags.has(MAP_LOCKED),
            Call::Mlock { .. } | Call::Mlockall { .. } => true,
            Call::Madvise { advice, .. } => {
                matches!(advice.0, MADV_POPULATE_READ | MADV_POPULATE_WRITE)
            }
            Call::Mprotect { .. } | Call::Mremap { .. } | Call::Brk { .. } => locked,
            _ => false,
        };
        // Every other step refuses frames instead of heap.
        let n = rng.below(10);
        let kind = if step % 2 == 0 {
            Refused::Heap
        } else {
            Refused::Frames
        };
        let before = w.everything();
        let old_brk = w.mm.brk_now();
        let (result, refused) = {
            let (mm, cpu) = (&mut w.mm, &w.cpu);
            match kind {
                Refused::Heap => {
                    let (r, (_, refused)) = heap::refusing_from(n, || cpu.run(|| mm.call(&call)));
                    (r, refused)
                }
                Refused::Frames => {
                    let (r, (_, refused)) =
                        frames_refusing_from(&w.sim, n, || cpu.run(|| mm.call(&call)));
                    (r, refused)
                }
            }
        };
        let after = w.everything();
        let what =
            format!("seed {seed:#x} step {step}: {call} with {kind:?} refused from allocation {n}");
        met[usize::from(kind == Refused::Frames)] += usize::from(refused > 0);
        if refused > 0 && !populates {
            let failed = match call {
                Call::Brk { .. } => w.mm.brk_now() == old_brk,
                _ => result.is_err(),
            };
            if failed {
                refused_calls[usize::from(kind == Refused::Frames)] += 1;
                if !matches!(call, Call::Brk { .. }) {
                    assert_eq!(result, Err(Errno::ENOMEM), "{what}");
                }
                assert!(after == before, "{what}: changed the state");
            }
        }
        let (recs, areas) = covered(&w);
        assert_eq!(recs, areas, "{what} ({result:?}): records and areas differ");
    }
    eprintln!(
        "{steps} steps; calls that met a refusal (heap, frames): {met:?}, refused whole: {refused_calls:?}"
    );
    assert!(
        refused_calls[0] > 0 && met[1] > 0,
        "too few refusals ({met:?}, {refused_calls:?}): the test tests nothing"
    );
    teardown(w, baseline);
}
