//! The page tables' run operations (`unmap_run`, `move_run`,
//! `protect_run`) against the page-by-page ones they stand for, across
//! leaf-table boundaries and holes, on every format (each walks a leaf
//! table once).

use aspace::paging::PageTable;
use aspace::{Frame, Page, PageFlags};
use aspace_sim::{Arch, FramePool, PhysMem, SimPageTable};

const FLAGS: PageFlags = PageFlags::READ
    .union(PageFlags::WRITE)
    .union(PageFlags::USER)
    .union(PageFlags::CACHEABLE);

/// Source pages, mapped: across the leaf tables around 512 and 1024, with
/// holes, and one table (1536..2048) with nothing.
fn sources() -> Vec<u64> {
    let mut v: Vec<u64> = (500..530).filter(|n| n % 7 != 3).collect();
    v.extend([1020, 1023, 1024, 1025, 2048, 2049]);
    v
}

/// A kernel table and a user table beside it (AArch64's user half is a
/// table of its own, TTBR0).
fn user_table(mem: &PhysMem, frames: &FramePool, arch: Arch) -> (SimPageTable, SimPageTable) {
    let kernel = SimPageTable::create(mem, frames, None, arch).unwrap();
    let user = SimPageTable::create(mem, frames, Some(&kernel), arch).unwrap();
    (kernel, user)
}

const FROM: u64 = 490;
const COUNT: u64 = 1600;

fn check(arch: Arch, to: u64) {
    let mem = PhysMem::new(8 << 20);
    let frames = FramePool::new(mem.frames());
    let (_kernel, pt) = user_table(&mem, &frames, arch);
    for (i, &n) in sources().iter().enumerate() {
        let frame = Frame::from_number(1500 + i as u64);
        pt.map(&mem, &frames, Page::from_number(n), frame, FLAGS)
            .unwrap();
    }
    let page = Page::from_number;
    let before: Vec<_> = (FROM..FROM + COUNT)
        .map(|n| pt.translate(&mem, page(n)))
        .collect();
    pt.move_run(&mem, &frames, page(FROM), page(to), COUNT)
        .unwrap();
    for n in FROM..FROM + COUNT {
        assert!(
            pt.translate(&mem, page(n)).is_none(),
            "{arch:?}: source page {n} moved away"
        );
        assert_eq!(
            pt.translate(&mem, page(to + n - FROM)),
            before[(n - FROM) as usize],
            "{arch:?}: page {n} moved with its rights"
        );
    }
    let mut got = Vec::new();
    pt.unmap_run(&mem, page(to), COUNT, &mut |u| {
        got.push((u.page().number(), u.frame().number()))
    });
    let want: Vec<(u64, u64)> = sources()
        .iter()
        .enumerate()
        .filter(|(_, &n)| n < FROM + COUNT)
        .map(|(i, &n)| (to + n - FROM, 1500 + i as u64))
        .collect();
    assert_eq!(got, want, "{arch:?}: unmapped in page order");
    for n in 0..COUNT {
        assert!(pt.translate(&mem, page(to + n)).is_none());
    }
    // Nothing left anywhere.
    let mut left = 0;
    pt.unmap_run(&mem, page(0), 4096, &mut |_| left += 1);
    assert_eq!(left, 0, "{arch:?}");
}

#[test]
fn runs_do_what_pages_do_on_every_format() {
    for arch in [
        Arch::X86_64,
        Arch::Riscv64Sv48,
        Arch::Riscv64Sv39,
        Arch::Aarch64,
    ] {
        // A target in the same leaf-table alignment and in another one.
        check(arch, 1 << 20);
        check(arch, (1 << 20) + 77);
    }
}

#[test]
fn a_move_refused_for_a_table_moves_everything_back() {
    for arch in [Arch::X86_64, Arch::Riscv64Sv48, Arch::Aarch64] {
        let mem = PhysMem::new(8 << 20);
        let frames = FramePool::new(mem.frames());
        let (_kernel, pt) = user_table(&mem, &frames, arch);
        let page = Page::from_number;
        for n in [10, 11, 600] {
            pt.map(&mem, &frames, page(n), Frame::from_number(3000 + n), FLAGS)
                .unwrap();
        }
        let before: Vec<_> = (0..1024).map(|n| pt.translate(&mem, page(n))).collect();
        // The target's first leaf path takes three tables (four levels
        // both), the second one more: allow the first path only.
        let to = 1 << 30;
        frames.fail_after(Some(3));
        let r = pt.move_run(&mem, &frames, page(0), page(to), 1024);
        frames.fail_after(None);
        assert!(r.is_err(), "{arch:?}");
        let after: Vec<_> = (0..1024).map(|n| pt.translate(&mem, page(n))).collect();
        assert_eq!(after, before, "{arch:?}: all moved back");
        for n in 0..1024 {
            assert!(pt.translate(&mem, page(to + n)).is_none(), "{arch:?}");
        }
    }
}

/// `protect_run` against unmap-and-map page by page (what it stands for):
/// same frames and rights after it, exactly the pages whose entry changed
/// counted and spanned; and back again.
#[test]
fn protect_run_changes_rights_in_place_on_every_format() {
    let page = Page::from_number;
    let read = PageFlags::READ | PageFlags::USER | PageFlags::CACHEABLE;
    let none = PageFlags::USER | PageFlags::CACHEABLE;
    // (first page, pages, rights): all read-only; part with no right; all
    // read-only again (only that part changes); all as they were.
    let steps = [
        (FROM, COUNT, read),
        (510, 520, none),
        (FROM, COUNT, read),
        (FROM, COUNT, FLAGS),
    ];
    for arch in [
        Arch::X86_64,
        Arch::Riscv64Sv48,
        Arch::Riscv64Sv39,
        Arch::Aarch64,
    ] {
        let mem = PhysMem::new(8 << 20);
        let frames = FramePool::new(mem.frames());
        let (_k1, pt) = user_table(&mem, &frames, arch);
        let (_k2, reference) = user_table(&mem, &frames, arch);
        for (i, &n) in sources().iter().enumerate() {
            let frame = Frame::from_number(1500 + i as u64);
            for t in [&pt, &reference] {
                t.map(&mem, &frames, page(n), frame, FLAGS).unwrap();
            }
        }
        let original: Vec<_> = (FROM..FROM + COUNT)
            .map(|n| pt.translate(&mem, page(n)))
            .collect();
        for (step, &(first, count, flags)) in steps.iter().enumerate() {
            let mut want = Vec::new();
            for n in first..first + count {
                let Some((frame, old)) = reference.translate(&mem, page(n)) else {
                    continue;
                };
                let _ = reference.unmap(&mem, page(n)).unwrap();
                reference.map(&mem, &frames, page(n), frame, flags).unwrap();
                if reference.translate(&mem, page(n)) != Some((frame, old)) {
                    want.push(n);
                }
            }
            let got = pt.protect_run(&mem, &frames, page(first), count, flags);
            assert!(!want.is_empty(), "{arch:?} step {step}");
            assert_eq!(got.count(), want.len() as u64, "{arch:?} step {step}");
            let span = got.span().expect("pages changed");
            assert_eq!(
                (span.start.number(), span.end().number()),
                (want[0], want[want.len() - 1] + 1),
                "{arch:?} step {step}: the span of the pages changed"
            );
            for n in FROM..FROM + COUNT {
                assert_eq!(
                    pt.translate(&mem, page(n)),
                    reference.translate(&mem, page(n)),
                    "{arch:?} step {step}: page {n}"
                );
            }
        }
        let unchanged = pt.protect_run(&mem, &frames, page(FROM), COUNT, FLAGS);
        assert_eq!(unchanged.count(), 0, "{arch:?}: nothing to rewrite");
        assert_eq!(unchanged.span(), None, "{arch:?}");
        let back: Vec<_> = (FROM..FROM + COUNT)
            .map(|n| pt.translate(&mem, page(n)))
            .collect();
        assert_eq!(back, original, "{arch:?}: the old rights back");
    }
}
