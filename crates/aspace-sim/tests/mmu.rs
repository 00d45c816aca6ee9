//! The simulator's MMU walks and TLB instructions, per architecture, on
//! hand-written entries (so the walks are checked against the manuals'
//! rules, not against the core's encoder) and on tables the core built
//! (so the core's entries give the rights the areas ask for).

use aspace::paging::aarch64::Aarch64PageTable;
use aspace::paging::riscv64::{RiscvMode, RiscvPageTable};
use aspace::paging::PageTable;
use aspace::{
    Asid, Frame, Invalidation, Page, PageFlags, PageRange, PhysAddr, PhysMemory, VirtAddr,
};
use aspace_sim::mmu::{aarch64, riscv64, walk, Arch, Roots, Walk, WalkFault};
use aspace_sim::tlb::{SimTlb, TlbEntry};
use aspace_sim::{FramePool, PhysMem};

/// Writes `entries` (index, value) into table frame `table`.
fn fill(mem: &PhysMem, table: u64, entries: &[(u64, u64)]) {
    for &(i, e) in entries {
        mem.write_u64(PhysAddr::new(table * 4096 + i * 8), e);
    }
}

fn mem() -> PhysMem {
    PhysMem::new(1 << 20)
}

// ---------------------------------------------------------------------------
// RISC-V
// ---------------------------------------------------------------------------

mod rv {
    pub const V: u64 = 1;
    pub const R: u64 = 2;
    pub const W: u64 = 4;
    pub const X: u64 = 8;
    pub const U: u64 = 16;
    pub const G: u64 = 32;
    pub const A: u64 = 64;
    pub const D: u64 = 128;
    pub fn ptr(frame: u64) -> u64 {
        (frame << 10) | V
    }
    pub fn leaf(frame: u64, bits: u64) -> u64 {
        (frame << 10) | V | bits
    }
}

/// Sv39 tables at frames 1 (root), 2, 3 mapping page `va = 0x40_1000`
/// (indices 0, 2, 1) with `leaf`.
fn sv39_with_leaf(leaf: u64) -> (PhysMem, Result<Walk, WalkFault>) {
    let m = mem();
    fill(&m, 1, &[(0, rv::ptr(2))]);
    fill(&m, 2, &[(2, rv::ptr(3))]);
    fill(&m, 3, &[(1, leaf)]);
    let w = riscv64::walk(
        &m,
        riscv64::Scheme::Sv39,
        Some(Frame::from_number(1)),
        VirtAddr::new(0x40_1000),
        false,
    );
    (m, w)
}

#[test]
fn riscv_leaf_rights_follow_r_w_x_u() {
    use rv::*;
    let (_, w) = sv39_with_leaf(leaf(0x77, R | W | U | A | D));
    let w = w.unwrap();
    assert_eq!(w.frame, Frame::from_number(0x77));
    assert!(w.readable && w.writable && !w.executable && w.user && !w.global);
    // Execute-only: no load without MXR.
    let (m, w) = sv39_with_leaf(leaf(0x77, X | U | A));
    let w = w.unwrap();
    assert!(!w.readable && !w.writable && w.executable);
    let mxr = riscv64::walk(
        &m,
        riscv64::Scheme::Sv39,
        Some(Frame::from_number(1)),
        VirtAddr::new(0x40_1000),
        true,
    )
    .unwrap();
    assert!(mxr.readable, "MXR makes execute-only pages loadable");
    // Supervisor page: no user access.
    let (_, w) = sv39_with_leaf(leaf(0x77, R | W | A | D | G));
    let w = w.unwrap();
    assert!(!w.user && w.global);
    // A clean page (D clear) is not writable without hardware D updates.
    let (_, w) = sv39_with_leaf(leaf(0x77, R | W | U | A));
    assert!(!w.unwrap().writable);
}

#[test]
fn riscv_walk_faults_as_the_manual_says() {
    use rv::*;
    // V clear.
    assert_eq!(
        sv39_with_leaf(0x77 << 10 | R | U | A).1,
        Err(WalkFault::NotMapped(0))
    );
    // Write without read is reserved.
    assert_eq!(
        sv39_with_leaf(leaf(0x77, W | U | A | D)).1,
        Err(WalkFault::Reserved(0))
    );
    // A clear faults (Svade).
    assert_eq!(
        sv39_with_leaf(leaf(0x77, R | U)).1,
        Err(WalkFault::AccessFlag)
    );
    // Reserved high bits (PBMT without Svpbmt).
    assert_eq!(
        sv39_with_leaf(leaf(0x77, R | U | A) | 1 << 61).1,
        Err(WalkFault::Reserved(0))
    );
    // A pointer at the last level.
    assert_eq!(sv39_with_leaf(ptr(0x77)).1, Err(WalkFault::Reserved(0)));
    // A pointer with U set.
    let m = mem();
    fill(&m, 1, &[(0, ptr(2) | U)]);
    let root = Some(Frame::from_number(1));
    assert_eq!(
        riscv64::walk(
            &m,
            riscv64::Scheme::Sv39,
            root,
            VirtAddr::new(0x1000),
            false
        ),
        Err(WalkFault::Reserved(2))
    );
    // Not sign-extended from bit 38 (Sv39) or 47 (Sv48).
    for va in [0x40_0000_0000u64, 0xffff_ff80_0000_0000] {
        assert_eq!(
            riscv64::walk(&m, riscv64::Scheme::Sv39, root, VirtAddr::new(va), false),
            Err(WalkFault::Address),
            "{va:#x}"
        );
    }
    assert_ne!(
        riscv64::walk(
            &m,
            riscv64::Scheme::Sv48,
            root,
            VirtAddr::new(0x40_0000_0000),
            false
        ),
        Err(WalkFault::Address)
    );
}

#[test]
fn riscv_superpages_translate_and_must_be_aligned() {
    use rv::*;
    let m = mem();
    // A 2 MiB leaf at level 1 for 0x20_0000..0x40_0000.
    fill(&m, 1, &[(0, ptr(2))]);
    fill(
        &m,
        2,
        &[(1, leaf(0x400, R | U | A)), (2, leaf(0x401, R | U | A))],
    );
    let root = Some(Frame::from_number(1));
    let w = riscv64::walk(
        &m,
        riscv64::Scheme::Sv39,
        root,
        VirtAddr::new(0x20_5000),
        false,
    )
    .unwrap();
    assert_eq!(w.frame, Frame::from_number(0x405));
    assert_eq!(
        riscv64::walk(
            &m,
            riscv64::Scheme::Sv39,
            root,
            VirtAddr::new(0x40_0000),
            false
        ),
        Err(WalkFault::Reserved(1)),
        "misaligned superpage"
    );
}

#[test]
fn sfence_vma_keeps_global_entries_unless_asked_for_all_asids() {
    let entry = |asid: u16, page: u64, global: bool| TlbEntry {
        asid: Asid(asid),
        page: Page::from_number(page),
        frame: Frame::from_number(page),
        readable: true,
        writable: false,
        executable: false,
        user: true,
        global,
        generation: 0,
    };
    let fresh = || {
        let mut t = SimTlb::new(8);
        for e in [entry(1, 10, false), entry(1, 11, true), entry(2, 10, false)] {
            t.insert(e);
        }
        t
    };
    let pages = |t: &SimTlb| {
        t.entries()
            .iter()
            .map(|e| (e.asid.0, e.page.number()))
            .collect::<Vec<_>>()
    };
    let one = PageRange::new(Page::from_number(10), 2);
    let mut t = fresh();
    riscv64::sfence_vma(&mut t, Some(one), Some(Asid(1)));
    assert_eq!(pages(&t), [(1, 11), (2, 10)]);
    let mut t = fresh();
    riscv64::sfence_vma(&mut t, None, Some(Asid(1)));
    assert_eq!(pages(&t), [(1, 11), (2, 10)]);
    let mut t = fresh();
    riscv64::sfence_vma(&mut t, Some(one), None);
    assert!(t.entries().is_empty());
    // AArch64: VAE1 takes the page's global entries too, ASIDE1 does not.
    let mut t = fresh();
    aarch64::tlbi(
        &mut t,
        aarch64::Tlbi::Vae1 {
            page: Page::from_number(11),
            asid: Asid(2),
        },
    );
    assert_eq!(pages(&t), [(1, 10), (2, 10)]);
    let mut t = fresh();
    aarch64::tlbi(&mut t, aarch64::Tlbi::Aside1(Asid(1)));
    assert_eq!(pages(&t), [(1, 11), (2, 10)]);
    // Every architecture's rendering of the core's invalidations.
    for arch in Arch::ALL {
        let mut t = fresh();
        aspace_sim::mmu::invalidate(
            arch,
            &mut t,
            Invalidation::Pages {
                asid: Asid(1),
                range: one,
            },
        );
        assert!(pages(&t).contains(&(2, 10)), "{arch}");
        assert!(!pages(&t).contains(&(1, 10)), "{arch}");
        let mut t = fresh();
        aspace_sim::mmu::invalidate(arch, &mut t, Invalidation::Asid(Asid(2)));
        assert!(!pages(&t).contains(&(2, 10)), "{arch}");
        assert!(pages(&t).contains(&(1, 10)), "{arch}");
        let mut t = fresh();
        aspace_sim::mmu::invalidate(arch, &mut t, Invalidation::All);
        assert!(t.entries().is_empty(), "{arch}");
    }
}

// ---------------------------------------------------------------------------
// AArch64
// ---------------------------------------------------------------------------

mod arm {
    pub const TABLE: u64 = 0b11;
    pub const PAGE: u64 = 0b11 | 1 << 10; // valid page, AF
    pub const EL0: u64 = 1 << 6;
    pub const RO: u64 = 1 << 7;
    pub const NG: u64 = 1 << 11;
    pub const PXN: u64 = 1 << 53;
    pub const UXN: u64 = 1 << 54;
    pub fn table(frame: u64) -> u64 {
        frame << 12 | TABLE
    }
}

/// AArch64 tables at frames 1..=4 mapping 0x40_1000 (indices 0, 0, 2, 1)
/// with `leaf` below a level-2 table descriptor with `upper` extra bits.
fn arm_with_leaf(leaf: u64, upper: u64) -> Result<Walk, WalkFault> {
    let m = mem();
    fill(&m, 1, &[(0, arm::table(2))]);
    fill(&m, 2, &[(0, arm::table(3))]);
    fill(&m, 3, &[(2, arm::table(4) | upper)]);
    fill(&m, 4, &[(1, leaf)]);
    aarch64::walk(
        &m,
        Some(Frame::from_number(1)),
        None,
        VirtAddr::new(0x40_1000),
    )
}

#[test]
fn aarch64_ap_and_uxn_decide_el0_rights() {
    use arm::*;
    let f = 0x55 << 12;
    let w = arm_with_leaf(f | PAGE | EL0 | NG | PXN | UXN, 0).unwrap();
    assert!(w.readable && w.writable && !w.executable && w.user && !w.global);
    assert_eq!(w.frame, Frame::from_number(0x55));
    let w = arm_with_leaf(f | PAGE | EL0 | RO | NG | PXN, 0).unwrap();
    assert!(w.readable && !w.writable && w.executable);
    // Execute-only at EL0.
    let w = arm_with_leaf(f | PAGE | RO | NG | PXN, 0).unwrap();
    assert!(!w.readable && !w.writable && w.executable && w.user);
    // EL1-only page.
    let w = arm_with_leaf(f | PAGE | PXN | UXN, 0).unwrap();
    assert!(!w.user && w.global);
    // Hierarchical limits: APTable[0] takes EL0 away, APTable[1] writes,
    // UXNTable execution.
    assert!(
        !arm_with_leaf(f | PAGE | EL0 | NG, 1 << 61)
            .unwrap()
            .readable
    );
    let w = arm_with_leaf(f | PAGE | EL0 | NG, 1 << 62 | 1 << 60).unwrap();
    assert!(w.readable && !w.writable && !w.executable);
}

#[test]
fn aarch64_walk_faults_as_the_manual_says() {
    use arm::*;
    let f = 0x55 << 12;
    // Access flag clear.
    assert_eq!(arm_with_leaf(f | 0b11 | EL0, 0), Err(WalkFault::AccessFlag));
    // Invalid.
    assert_eq!(
        arm_with_leaf(f | 0b10 | 1 << 10, 0),
        Err(WalkFault::NotMapped(0))
    );
    // 0b01 at level 3 is reserved.
    assert_eq!(
        arm_with_leaf(f | 0b01 | 1 << 10 | EL0, 0),
        Err(WalkFault::Reserved(0))
    );
    let m = mem();
    // A block at level 0 faults; at level 1 it maps 1 GiB.
    fill(
        &m,
        1,
        &[(0, 0x4_0000 << 12 | 0b01 | 1 << 10), (1, arm::table(2))],
    );
    fill(&m, 2, &[(0, 0x4_0000 << 12 | 0b01 | 1 << 10 | EL0)]);
    let ttbr0 = Some(Frame::from_number(1));
    assert_eq!(
        aarch64::walk(&m, ttbr0, None, VirtAddr::new(0x1000)),
        Err(WalkFault::Reserved(3))
    );
    let w = aarch64::walk(&m, ttbr0, None, VirtAddr::new(0x80_0123_4000)).unwrap();
    assert_eq!(w.frame, Frame::from_number(0x4_0000 + 0x1234));
    // Bits 63:48 must match bit 55; the high half walks TTBR1.
    assert_eq!(
        aarch64::walk(&m, ttbr0, None, VirtAddr::new(0x0001_0000_0000_0000)),
        Err(WalkFault::Address)
    );
    assert_eq!(
        aarch64::walk(&m, ttbr0, None, VirtAddr::new(0xffff_0000_0000_0000)),
        Err(WalkFault::NotMapped(0))
    );
    assert_eq!(
        aarch64::walk(&m, None, ttbr0, VirtAddr::new(0xffff_0080_0123_4000))
            .unwrap()
            .frame,
        Frame::from_number(0x4_1234)
    );
}

// ---------------------------------------------------------------------------
// The core's tables through each walk
// ---------------------------------------------------------------------------

/// What user mode may do with a page the core mapped with `flags`, as the
/// architecture's walk sees it: (read, write, execute), or `None` when the
/// walk faults.
fn rights_through_walk(arch: Arch, flags: PageFlags) -> Option<(bool, bool, bool)> {
    let m = PhysMem::new(4 << 20);
    let frames = FramePool::new(m.frames());
    let mut va = VirtAddr::new(0x40_1000);
    let (root, kernel) = match arch {
        Arch::X86_64 => {
            let t = aspace::paging::x86_64::X86_64PageTable::create(&m, &frames, None, ()).unwrap();
            t.map(&m, &frames, va.page(), Frame::from_number(0x99), flags)
                .unwrap();
            (t.root(), None)
        }
        Arch::Riscv64Sv39 | Arch::Riscv64Sv48 => {
            let mode = if arch == Arch::Riscv64Sv39 {
                RiscvMode::Sv39
            } else {
                RiscvMode::Sv48
            };
            let t = RiscvPageTable::create(&m, &frames, None, mode).unwrap();
            t.map(&m, &frames, va.page(), Frame::from_number(0x99), flags)
                .unwrap();
            (t.root(), None)
        }
        Arch::Aarch64 => {
            let k = Aarch64PageTable::create(&m, &frames, None, ()).unwrap();
            let t = Aarch64PageTable::create(&m, &frames, Some(&k), ()).unwrap();
            // Kernel pages live in the kernel's (TTBR1) table.
            let table = if flags.contains(PageFlags::USER) {
                &t
            } else {
                va = VirtAddr::new(aspace::Layout::AARCH64.kernel_start + 0x40_1000);
                &k
            };
            table
                .map(&m, &frames, va.page(), Frame::from_number(0x99), flags)
                .unwrap();
            (t.root(), Some(k.root()))
        }
    };
    let w = walk(
        arch,
        &m,
        Roots {
            user: Some(root),
            kernel,
        },
        va,
    )
    .ok()?;
    assert_eq!(w.frame, Frame::from_number(0x99));
    Some((
        w.readable && w.user,
        w.writable && w.user,
        w.executable && w.user,
    ))
}

#[test]
fn the_cores_entries_give_each_architecture_the_rights_asked_for() {
    let u = PageFlags::USER | PageFlags::CACHEABLE;
    let (r, w, x) = (PageFlags::READ, PageFlags::WRITE, PageFlags::EXEC);
    for arch in Arch::ALL {
        let x86 = arch == Arch::X86_64;
        let got = |f| rights_through_walk(arch, f);
        assert_eq!(got(u | r), Some((true, false, false)), "{arch}");
        assert_eq!(got(u | r | w), Some((true, true, false)), "{arch}");
        assert_eq!(got(u | r | x), Some((true, false, true)), "{arch}");
        // Write-only: reads come along everywhere.
        assert_eq!(got(u | w), Some((true, true, false)), "{arch}");
        // Execute-only: only x86_64 cannot deny the read.
        assert_eq!(got(u | x), Some((x86, false, true)), "{arch}");
        // No right: every architecture keeps the page invalid (x86_64 and
        // RISC-V with a software bit, so the core still sees it mapped).
        assert_eq!(got(u), None, "{arch}");
        // Kernel pages are out of user mode's reach.
        assert_eq!(
            got(PageFlags::READ | PageFlags::WRITE | PageFlags::CACHEABLE),
            Some((false, false, false)),
            "{arch}"
        );
    }
}
