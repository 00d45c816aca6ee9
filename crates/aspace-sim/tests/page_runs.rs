//! The page tables' run operations (`unmap_run`, `map_like`) against the
//! page-by-page ones they stand for, across leaf-table boundaries and
//! holes: x86_64's own (one walk per leaf table) and the default that the
//! other formats use.

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

const FROM: u64 = 490;
const COUNT: u64 = 1600;

fn check(arch: Arch, to: u64) {
    let mem = PhysMem::new(8 << 20);
    let frames = FramePool::new(mem.frames());
    let pt = SimPageTable::create(&mem, &frames, None, arch).unwrap();
    for (i, &n) in sources().iter().enumerate() {
        let frame = Frame::from_number(1500 + i as u64);
        pt.map(&mem, &frames, Page::from_number(n), frame, FLAGS)
            .unwrap();
    }
    let page = Page::from_number;
    pt.map_like(&mem, &frames, page(FROM), page(to), COUNT, FLAGS)
        .unwrap();
    for n in FROM..FROM + COUNT {
        let src = pt.translate(&mem, page(n));
        assert_eq!(
            src.is_some(),
            sources().contains(&n),
            "{arch:?}: source page {n} kept"
        );
        let dst = pt.translate(&mem, page(to + n - FROM));
        assert_eq!(
            dst.map(|d| d.0),
            src.map(|s| s.0),
            "{arch:?}: page {n} mapped like its source"
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
    // The source is still all there; an unmap of it by run, too.
    let mut left = 0;
    pt.unmap_run(&mem, page(0), 4096, &mut |_| left += 1);
    assert_eq!(left, sources().len(), "{arch:?}");
}

#[test]
fn runs_do_what_pages_do_on_every_format() {
    for arch in [Arch::X86_64, Arch::Riscv64Sv48, Arch::Riscv64Sv39] {
        // A target in the same leaf-table alignment and in another one.
        check(arch, 1 << 20);
        check(arch, (1 << 20) + 77);
    }
}

#[test]
fn map_like_refused_for_a_table_keeps_what_it_mapped() {
    let mem = PhysMem::new(8 << 20);
    let frames = FramePool::new(mem.frames());
    let pt = SimPageTable::create(&mem, &frames, None, Arch::X86_64).unwrap();
    let page = Page::from_number;
    for n in [10, 600] {
        pt.map(&mem, &frames, page(n), Frame::from_number(3000 + n), FLAGS)
            .unwrap();
    }
    // The target's first leaf path takes three tables, the second one
    // more: allow the first three only.
    frames.fail_after(Some(3));
    let to = 1 << 30;
    let r = pt.map_like(&mem, &frames, page(0), page(to), 1024, FLAGS);
    frames.fail_after(None);
    assert!(r.is_err());
    assert_eq!(
        pt.translate(&mem, page(to + 10)).map(|t| t.0),
        Some(Frame::from_number(3010))
    );
    assert!(pt.translate(&mem, page(to + 600)).is_none());
}
