//! Stacks that grow: `LinuxMm::expand_stack` after a fault below a
//! `MAP_GROWSDOWN` mapping, each case as Linux 6.18 answered it when
//! checked by hand on this machine (a C program touching below such a
//! mapping, a `SIGSEGV` handler, `/proc/self/maps` after).

mod common;

use aspace::{FaultReason, VirtAddr, PAGE_SIZE};
use aspace_linux::consts::*;
use aspace_linux::flags::Advice;
use aspace_linux::maps::MapsLine;
use aspace_linux::mm::{LinuxMm, DEFAULT_STACK_LIMIT, STACK_GUARD_GAP};
use aspace_linux::{Errno, FileRef, MapFlags, Prot, RemapFlags};
use aspace_sim::{Cpu, Sim, SimMachine};

use common::{setup, BASE};

const P: u64 = PAGE_SIZE;
/// Where the stacks go (well above the other mappings of a test).
const TOP: u64 = BASE + (64 << 20);

fn map(mm: &mut LinuxMm<SimMachine>, cpu: &Cpu, at: u64, pages: u64, prot: Prot, bits: u32) {
    let got = cpu.run(|| {
        mm.mmap(
            at,
            pages * P,
            prot,
            MapFlags(MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE | bits),
            None,
            0,
        )
    });
    assert_eq!(got, Ok(at));
}

/// A 4-page read-write stack at `TOP`.
fn stack(mm: &mut LinuxMm<SimMachine>, cpu: &Cpu) {
    map(mm, cpu, TOP, 4, Prot::RW, MAP_GROWSDOWN);
}

fn lines(mm: &LinuxMm<SimMachine>) -> Vec<(u64, u64)> {
    mm.maps()
        .iter()
        .map(|l: &MapsLine| (l.start, l.end))
        .collect()
}

/// What a refusal must leave as it was: the records, the core's areas,
/// the memory committed.
fn state(sim: &Sim, mm: &LinuxMm<SimMachine>) -> (Vec<MapsLine>, Vec<(u64, u64)>, u64) {
    let areas = mm
        .space()
        .areas()
        .iter()
        .map(|a| (a.base.as_u64(), a.pages))
        .collect();
    (mm.maps(), areas, sim.system().reserve().committed())
}

#[test]
fn a_fault_below_a_stack_grows_it_down_to_the_faulting_page() {
    let (sim, mut mm, mut cpu) = setup();
    stack(&mut mm, &cpu);
    // The core finds no area below: the kernel asks the layer.
    let below = TOP - P + 8;
    let f = cpu.write_u64(VirtAddr::new(below), 7).unwrap_err();
    assert_eq!(f.reason, FaultReason::NoArea);
    let frames = sim.frames_in_use();
    assert_eq!(cpu.run(|| mm.expand_stack(below)), Ok(()));
    assert_eq!(lines(&mm), [(TOP - P, TOP + 4 * P)]);
    assert_eq!(mm.maps()[0].to_string().split(' ').nth(1), Some("rw-p"));
    // Nothing mapped by the growth itself; the retried access maps one page.
    assert_eq!(sim.frames_in_use(), frames);
    let resident = |mm: &LinuxMm<SimMachine>| mm.space().areas()[0].resident;
    assert_eq!(resident(&mm), 0);
    cpu.write_u64(VirtAddr::new(below), 7).unwrap();
    assert_eq!(cpu.read_u64(VirtAddr::new(below)), Ok(7));
    assert_eq!(resident(&mm), 1);
    // Far below, with nothing in between: Linux sets no distance.
    let far = TOP - (3 << 20);
    assert_eq!(cpu.run(|| mm.expand_stack(far + 5)), Ok(()));
    assert_eq!(lines(&mm), [(far, TOP + 4 * P)]);
    assert_eq!(mm.space().areas().len(), 1, "one core area still");
    cpu.write_u64(VirtAddr::new(far), 9).unwrap();
    assert_eq!(cpu.read_u64(VirtAddr::new(below)), Ok(7), "kept its page");
    // An address the stack holds: nothing to do.
    let before = state(&sim, &mm);
    assert_eq!(cpu.run(|| mm.expand_stack(TOP)), Ok(()));
    assert_eq!(state(&sim, &mm), before);
    // Unmapped whole, nothing is left behind.
    cpu.run(|| mm.munmap(far, TOP + 4 * P - far)).unwrap();
    assert!(mm.space().areas().is_empty());
    assert_eq!(sim.system().reserve().committed(), 0);
}

#[test]
fn the_guard_gap_holds_against_a_mapping_below_with_rights() {
    let (sim, mut mm, cpu) = setup();
    let prev = TOP - (2 << 20);
    map(&mut mm, &cpu, prev, 1, Prot::RW, 0);
    stack(&mut mm, &cpu);
    // 255 pages above the mapping below: ENOMEM, nothing changed.
    let before = state(&sim, &mm);
    let short = prev + P + STACK_GUARD_GAP - P;
    assert_eq!(cpu.run(|| mm.expand_stack(short)), Err(Errno::ENOMEM));
    assert_eq!(state(&sim, &mm), before);
    // 256: the gap is kept, the stack grows.
    let enough = prev + P + STACK_GUARD_GAP;
    assert_eq!(cpu.run(|| mm.expand_stack(enough)), Ok(()));
    assert_eq!(lines(&mm), [(prev, prev + P), (enough, TOP + 4 * P)]);
}

#[test]
fn a_stack_may_reach_a_mapping_without_rights_or_another_stack() {
    for (prot, bits) in [(Prot::NONE, 0), (Prot::RW, MAP_GROWSDOWN)] {
        let (_sim, mut mm, mut cpu) = setup();
        let prev = TOP - (2 << 20);
        map(&mut mm, &cpu, prev, 1, prot, bits);
        stack(&mut mm, &cpu);
        assert_eq!(cpu.run(|| mm.expand_stack(prev + P)), Ok(()), "{prot:?}");
        // Right above it, not merged with it (Linux shows two lines).
        assert_eq!(lines(&mm), [(prev, prev + P), (prev + P, TOP + 4 * P)]);
        cpu.write_u64(VirtAddr::new(prev + P), 3).unwrap();
    }
}

#[test]
fn the_stack_limit_and_the_memlock_limit_bound_the_growth() {
    let (sim, mut mm, cpu) = setup();
    assert_eq!(mm.stack_limit(), Some(DEFAULT_STACK_LIMIT));
    mm.set_stack_limit(Some(64 * P));
    stack(&mut mm, &cpu);
    // 4 + 61 pages: past RLIMIT_STACK.
    let before = state(&sim, &mm);
    assert_eq!(
        cpu.run(|| mm.expand_stack(TOP - 61 * P)),
        Err(Errno::ENOMEM)
    );
    assert_eq!(state(&sim, &mm), before);
    assert_eq!(cpu.run(|| mm.expand_stack(TOP - 60 * P)), Ok(()));
    assert_eq!(lines(&mm), [(TOP - 60 * P, TOP + 4 * P)]);

    // A locked stack counts its growth against RLIMIT_MEMLOCK.
    let (sim, mut mm, cpu) = setup();
    mm.set_memlock_limit(Some(12 * P));
    map(&mut mm, &cpu, TOP, 4, Prot::RW, MAP_GROWSDOWN | MAP_LOCKED);
    assert_eq!(mm.locked_pages(), 4);
    let before = state(&sim, &mm);
    assert_eq!(cpu.run(|| mm.expand_stack(TOP - 9 * P)), Err(Errno::ENOMEM));
    assert_eq!(state(&sim, &mm), before);
    assert_eq!(cpu.run(|| mm.expand_stack(TOP - 8 * P)), Ok(()));
    assert_eq!(mm.locked_pages(), 12);
    // The grown pages are not faulted in (Linux's mincore shows only the
    // four MAP_LOCKED populated).
    let mut vec = [0u8; 12];
    mm.mincore(TOP - 8 * P, 12 * P, &mut vec).unwrap();
    assert_eq!(vec, [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1]);
}

#[test]
fn growth_does_not_look_at_the_rights_the_access_then_does() {
    for prot in [Prot::R, Prot::NONE] {
        let (_sim, mut mm, mut cpu) = setup();
        map(&mut mm, &cpu, TOP, 4, prot, MAP_GROWSDOWN);
        assert_eq!(cpu.run(|| mm.expand_stack(TOP - 3 * P)), Ok(()));
        assert_eq!(lines(&mm), [(TOP - 3 * P, TOP + 4 * P)], "{prot:?}");
        let f = cpu.write_u64(VirtAddr::new(TOP - 3 * P), 1).unwrap_err();
        assert_eq!(f.reason, FaultReason::Access, "{prot:?}");
    }
}

#[test]
fn only_a_stack_above_grows_and_never_below_mmap_min_addr() {
    let (sim, mut mm, cpu) = setup();
    // Nothing above.
    assert_eq!(cpu.run(|| mm.expand_stack(TOP)), Err(Errno::EFAULT));
    // A mapping above that is not a stack.
    map(&mut mm, &cpu, TOP, 4, Prot::RW, 0);
    let before = state(&sim, &mm);
    assert_eq!(cpu.run(|| mm.expand_stack(TOP - P)), Err(Errno::EFAULT));
    assert_eq!(state(&sim, &mm), before);
    // Below vm.mmap_min_addr (64 KiB): EPERM.
    let low = 0x11000;
    map(&mut mm, &cpu, low, 4, Prot::RW, MAP_GROWSDOWN);
    let before = state(&sim, &mm);
    assert_eq!(cpu.run(|| mm.expand_stack(0x1000)), Err(Errno::EPERM));
    assert_eq!(state(&sim, &mm), before);
    assert_eq!(cpu.run(|| mm.expand_stack(0x10000)), Ok(()));
}

#[test]
fn a_stack_past_the_commit_limit_stays_as_it_was() {
    let (sim, mut mm, cpu) = setup();
    stack(&mut mm, &cpu);
    let reserve = sim.system().reserve();
    reserve.set_limit(reserve.committed() + 2);
    let before = state(&sim, &mm);
    assert_eq!(cpu.run(|| mm.expand_stack(TOP - 3 * P)), Err(Errno::ENOMEM));
    assert_eq!(state(&sim, &mm), before);
    assert_eq!(cpu.run(|| mm.expand_stack(TOP - 2 * P)), Ok(()));
    assert_eq!(reserve.committed(), reserve.limit());
    // Unmapped, the stack gives back all it reserved, growth included.
    cpu.run(|| mm.munmap(TOP - 2 * P, 6 * P)).unwrap();
    assert_eq!(reserve.committed(), 0);
}

#[test]
fn a_file_mapping_never_grows_down() {
    let (_sim, mut mm, cpu) = setup();
    for kind in [MAP_PRIVATE, MAP_SHARED] {
        let got = cpu.run(|| {
            mm.mmap(
                TOP,
                4 * P,
                Prot::R,
                MapFlags(kind | MAP_GROWSDOWN),
                Some(&FileRef("f".into())),
                0,
            )
        });
        assert_eq!(got, Err(Errno::EINVAL));
    }
    assert!(mm.maps().is_empty());
}

/// `mprotect` with `PROT_GROWSDOWN`, `PROT_GROWSUP` and `PROT_SEM`, as
/// Linux 6.18 answered on this machine (x86-64).
#[test]
fn mprotect_growsdown_reaches_down_to_the_stacks_start() {
    let (_sim, mut mm, cpu) = setup();
    let plain = TOP - (16 << 20);
    map(&mut mm, &cpu, plain, 1, Prot::RW, 0);
    stack(&mut mm, &cpu);
    let mut mprotect =
        |addr: u64, pages: u64, bits: u32| cpu.run(|| mm.mprotect(addr, pages * P, Prot(bits)));
    let r = PROT_READ;
    // Inside the stack: from its start.
    assert_eq!(mprotect(TOP + 2 * P, 1, r | PROT_GROWSDOWN), Ok(()));
    // From a hole below it: from its start too (up to the range's end).
    assert_eq!(mprotect(TOP - 6 * P, 7, 3 | PROT_GROWSDOWN), Ok(()));
    // On a mapping that does not grow down, or none: refused.
    assert_eq!(mprotect(plain, 1, r | PROT_GROWSDOWN), Err(Errno::EINVAL));
    assert_eq!(
        mprotect(TOP + 8 * P, 1, r | PROT_GROWSDOWN),
        Err(Errno::ENOMEM)
    );
    // Nothing grows up here.
    assert_eq!(mprotect(plain, 1, r | PROT_GROWSUP), Err(Errno::EINVAL));
    assert_eq!(
        mprotect(TOP + 8 * P, 1, r | PROT_GROWSUP),
        Err(Errno::ENOMEM)
    );
    let both = r | PROT_GROWSUP | PROT_GROWSDOWN;
    assert_eq!(mprotect(plain + 1, 1, both), Err(Errno::EINVAL));
    assert_eq!(
        mprotect(plain + 1, 1, r | PROT_GROWSDOWN),
        Err(Errno::EINVAL)
    );
    assert_eq!(mprotect(plain, 0, r | PROT_GROWSDOWN), Ok(()));
    // PROT_SEM is allowed and means nothing; an unknown bit is not.
    assert_eq!(mprotect(plain, 1, r | PROT_SEM), Ok(()));
    assert_eq!(mprotect(plain, 1, r | 0x10), Err(Errno::EINVAL));
    let rights: Vec<(u64, u64, Prot)> =
        mm.maps().iter().map(|l| (l.start, l.end, l.prot)).collect();
    assert_eq!(
        rights,
        [
            (plain, plain + P, Prot::R),
            (TOP, TOP + P, Prot::RW),
            (TOP + P, TOP + 3 * P, Prot::R),
            (TOP + 3 * P, TOP + 4 * P, Prot::RW),
        ]
    );
    // mmap ignores the bits beyond the rights.
    let got = cpu.run(|| {
        mm.mmap(
            0,
            P,
            Prot(PROT_READ | PROT_WRITE | PROT_SEM | 0x10),
            MapFlags(MAP_PRIVATE | MAP_ANONYMOUS),
            None,
            0,
        )
    });
    let at = got.unwrap();
    let line = mm.maps().into_iter().find(|l| l.start == at).unwrap();
    assert_eq!(line.prot, Prot::RW);
}

/// A stack moved up by `mremap` keeps its page offset (it was written: it
/// has its `anon_vma`), and Linux never lets that offset go below 0:
/// checked by hand (a stack at page 256 moved up grows 200 pages, not 300).
#[test]
fn a_moved_stack_grows_no_further_than_its_page_offset() {
    let (sim, mut mm, mut cpu) = setup();
    let low = 0x10_0000; // page 256
    map(&mut mm, &cpu, low, 2, Prot::RW, MAP_GROWSDOWN);
    cpu.write_u64(VirtAddr::new(low), 1).unwrap();
    cpu.run(|| mm.touched(low, true));
    let flags = RemapFlags(MREMAP_MAYMOVE | MREMAP_FIXED);
    let moved = cpu.run(|| mm.mremap(low, 2 * P, 2 * P, flags, TOP));
    assert_eq!(moved, Ok(TOP));
    let before = state(&sim, &mm);
    assert_eq!(
        cpu.run(|| mm.expand_stack(TOP - 300 * P)),
        Err(Errno::ENOMEM)
    );
    assert_eq!(state(&sim, &mm), before);
    assert_eq!(cpu.run(|| mm.expand_stack(TOP - 200 * P)), Ok(()));
    assert_eq!(lines(&mm), [(TOP - 200 * P, TOP + 2 * P)]);
    assert_eq!(cpu.read_u64(VirtAddr::new(TOP)), Ok(1));
}

/// A guard page (`MADV_GUARD_INSTALL`) at the stack's lowest page stays
/// where it is and the stack grows below it, as on Linux (checked by
/// hand: the page below is served, the guard page still faults).
#[test]
fn a_stack_with_a_guard_page_at_its_bottom_grows_below_it() {
    let (sim, mut mm, mut cpu) = setup();
    stack(&mut mm, &cpu);
    let guard = Advice(MADV_GUARD_INSTALL);
    assert_eq!(cpu.run(|| mm.madvise(TOP, P, guard)), Ok(()));
    assert_eq!(cpu.run(|| mm.expand_stack(TOP - 3 * P)), Ok(()));
    assert_eq!(lines(&mm), [(TOP - 3 * P, TOP + 4 * P)]);
    cpu.write_u64(VirtAddr::new(TOP - 3 * P), 4).unwrap();
    assert_eq!(cpu.read_u64(VirtAddr::new(TOP - 3 * P)), Ok(4));
    let f = cpu.read_u64(VirtAddr::new(TOP)).unwrap_err();
    assert_eq!(f.reason, FaultReason::Guard);
    // Unmapped whole: nothing left, nothing reserved.
    cpu.run(|| mm.munmap(TOP - 3 * P, 7 * P)).unwrap();
    assert!(mm.space().areas().is_empty());
    assert_eq!(sim.system().reserve().committed(), 0);
}
