//! `LinuxMm` on the simulated machine: what the differential test cannot
//! see from Linux's side (frames moved rather than copied, objects shared
//! between mappings, refusals that change nothing).

mod common;

use aspace::{AreaFlags, PhysMemory, VirtAddr, PAGE_SIZE};
use aspace_linux::consts::*;
use aspace_linux::mm::vm_flags::VmFlags;
use aspace_linux::mm::{HolePolicy, LinuxMm};
use aspace_linux::{Errno, FileRef, MapFlags, Prot, RemapFlags};
use aspace_sim::{Cpu, Sim, SimMachine};

use common::{setup, BASE};

fn flags(bits: u32) -> MapFlags {
    MapFlags(bits)
}

const ANON: u32 = MAP_PRIVATE | MAP_ANONYMOUS;

/// Whether the page at `addr` is mapped.
fn resident_at(mm: &LinuxMm<SimMachine>, addr: u64) -> bool {
    mm.space().translate(VirtAddr::new(addr).page()).is_some()
}

fn anon(mm: &mut LinuxMm<SimMachine>, cpu: &Cpu, addr: u64, pages: u64) -> u64 {
    anon_result(mm, cpu, addr, pages).unwrap()
}

/// A fixed shared anonymous read-write mapping of `pages` at `addr`.
fn shared_anon(mm: &mut LinuxMm<SimMachine>, cpu: &Cpu, addr: u64, pages: u64) {
    cpu.run(|| {
        mm.mmap(
            addr,
            pages * PAGE_SIZE,
            Prot::RW,
            flags(MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED),
            None,
            0,
        )
    })
    .unwrap();
}

/// A fixed private anonymous read-write mapping of `pages` at `addr`.
fn anon_result(
    mm: &mut LinuxMm<SimMachine>,
    cpu: &Cpu,
    addr: u64,
    pages: u64,
) -> Result<u64, Errno> {
    cpu.run(|| {
        mm.mmap(
            addr,
            pages * PAGE_SIZE,
            Prot::RW,
            flags(ANON | MAP_FIXED),
            None,
            0,
        )
    })
}

#[test]
fn mremap_moves_the_frames_it_does_not_copy_them() {
    let (sim, mut mm, mut cpu) = setup();
    anon(&mut mm, &cpu, BASE, 8);
    // Something right after it: growth cannot be in place.
    cpu.run(|| {
        mm.mmap(
            BASE + 8 * PAGE_SIZE,
            PAGE_SIZE,
            Prot::R,
            flags(ANON | MAP_FIXED),
            None,
            0,
        )
    })
    .unwrap();
    let mut frames = Vec::new();
    for i in 0..8 {
        cpu.write_u64(VirtAddr::new(BASE + i * PAGE_SIZE), 100 + i)
            .unwrap();
        frames.push(
            mm.space()
                .translate(VirtAddr::new(BASE + i * PAGE_SIZE).page())
                .unwrap()
                .0,
        );
    }
    let allocated = sim.hardware().frames().stats().allocated;
    assert_eq!(
        cpu.run(|| mm.mremap(BASE, 8 * PAGE_SIZE, 16 * PAGE_SIZE, RemapFlags(0), 0)),
        Err(Errno::ENOMEM),
        "no room in place, no MREMAP_MAYMOVE"
    );
    let to = cpu
        .run(|| {
            mm.mremap(
                BASE,
                8 * PAGE_SIZE,
                16 * PAGE_SIZE,
                RemapFlags(MREMAP_MAYMOVE),
                0,
            )
        })
        .unwrap();
    assert_ne!(to, BASE);
    for i in 0..8 {
        let at = VirtAddr::new(to + i * PAGE_SIZE);
        assert_eq!(
            mm.space().translate(at.page()).unwrap().0,
            frames[i as usize]
        );
        assert_eq!(cpu.read_u64(at).unwrap(), 100 + i);
        assert!(cpu.read_u64(VirtAddr::new(BASE + i * PAGE_SIZE)).is_err());
    }
    // Page tables for the new place at most; no data page was copied.
    let more = sim.hardware().frames().stats().allocated - allocated;
    assert!(more <= 3, "{more} frames allocated by the move");
    let maps: Vec<String> = mm.maps().iter().map(|l| l.to_string()).collect();
    assert_eq!(maps.len(), 2, "{maps:?}");
}

#[test]
fn file_mappings_share_pages_private_ones_copy_them() {
    let (_sim, mut mm, mut cpu) = setup();
    let f = FileRef("F".into());
    let shared = flags(MAP_SHARED | MAP_FIXED);
    let (a, b, c) = (BASE, BASE + 0x10_0000, BASE + 0x20_0000);
    cpu.run(|| mm.mmap(a, 2 * PAGE_SIZE, Prot::RW, shared, Some(&f), PAGE_SIZE))
        .unwrap();
    cpu.run(|| mm.mmap(b, 4 * PAGE_SIZE, Prot::R, shared, Some(&f), 0))
        .unwrap();
    cpu.write_u64(VirtAddr::new(a + 8), 0xfeed).unwrap();
    // Page 1 of the file, seen at b's second page.
    assert_eq!(
        cpu.read_u64(VirtAddr::new(b + PAGE_SIZE + 8)).unwrap(),
        0xfeed
    );
    let private = flags(MAP_PRIVATE | MAP_FIXED);
    cpu.run(|| mm.mmap(c, 2 * PAGE_SIZE, Prot::RW, private, Some(&f), PAGE_SIZE))
        .unwrap();
    assert_eq!(
        cpu.read_u64(VirtAddr::new(c + 8)).unwrap(),
        0xfeed,
        "the file's bytes"
    );
    // Until its first write, the private mapping shows the file's page.
    cpu.write_u64(VirtAddr::new(a + 8), 0xbeef).unwrap();
    assert_eq!(
        cpu.read_u64(VirtAddr::new(c + 8)).unwrap(),
        0xbeef,
        "not copied yet"
    );
    // The page is the file's, lent to the mapping: read-only and
    // copy-on-write in the core, whose fault handler copies it at the first
    // write (the area itself is writable).
    let cp = VirtAddr::new(c).page();
    assert!(mm.space().cow_pages(VirtAddr::new(c)).unwrap().contains(cp));
    assert!(mm
        .space()
        .area(VirtAddr::new(c))
        .unwrap()
        .flags
        .contains(AreaFlags::WRITE));
    cpu.write_u64(VirtAddr::new(c + 8), 1).unwrap();
    assert!(!mm.space().cow_pages(VirtAddr::new(c)).unwrap().contains(cp));
    assert_eq!(cpu.read_u64(VirtAddr::new(c + 8)).unwrap(), 1);
    assert_eq!(
        cpu.read_u64(VirtAddr::new(a + 8)).unwrap(),
        0xbeef,
        "a private copy"
    );
    cpu.write_u64(VirtAddr::new(a + 8), 0xfeed).unwrap();
    assert_eq!(
        cpu.read_u64(VirtAddr::new(c + 8)).unwrap(),
        1,
        "the copy stays"
    );
    // Its other page still shows the file.
    cpu.write_u64(VirtAddr::new(a + PAGE_SIZE), 3).unwrap();
    assert_eq!(cpu.read_u64(VirtAddr::new(c + PAGE_SIZE)).unwrap(), 3);
    // The file keeps its page after every mapping of it went.
    cpu.run(|| mm.munmap(a, 2 * PAGE_SIZE)).unwrap();
    cpu.run(|| mm.munmap(b, 4 * PAGE_SIZE)).unwrap();
    cpu.run(|| mm.mmap(a, PAGE_SIZE, Prot::R, shared, Some(&f), PAGE_SIZE))
        .unwrap();
    assert_eq!(cpu.read_u64(VirtAddr::new(a + 8)).unwrap(), 0xfeed);
    // MADV_FREE is for private anonymous memory only.
    assert_eq!(
        cpu.run(|| mm.madvise(a, PAGE_SIZE, aspace_linux::Advice::FREE)),
        Err(Errno::EINVAL)
    );
    // Maps name the file as Linux names a memfd.
    let line = mm.maps().into_iter().find(|l| l.start == a).unwrap();
    assert!(line.to_string().ends_with(" /memfd:F (deleted)"), "{line}");
    assert_eq!(line.offset, PAGE_SIZE);
}

/// `mincore`: a page the page table maps is resident; a file page is
/// resident while the file holds it, mapped here or not; private anonymous
/// memory only while mapped. Checks and holes as Linux orders them.
#[test]
fn mincore_answers_residency_as_linux_does() {
    let (_sim, mut mm, mut cpu) = setup();
    let core = |mm: &LinuxMm<SimMachine>, addr: u64, pages: u64| {
        let mut v = vec![7u8; pages as usize];
        mm.mincore(addr, pages * PAGE_SIZE, &mut v).map(|()| v)
    };
    anon(&mut mm, &cpu, BASE, 4);
    assert_eq!(core(&mm, BASE, 4), Ok(vec![0, 0, 0, 0]));
    cpu.write_u64(VirtAddr::new(BASE + PAGE_SIZE), 1).unwrap();
    cpu.read_u64(VirtAddr::new(BASE + 3 * PAGE_SIZE)).unwrap();
    assert_eq!(core(&mm, BASE, 4), Ok(vec![0, 1, 0, 1]));
    // Private anonymous pages given back are not resident any more.
    cpu.run(|| mm.madvise(BASE, 4 * PAGE_SIZE, aspace_linux::Advice::DONTNEED))
        .unwrap();
    assert_eq!(core(&mm, BASE, 4), Ok(vec![0, 0, 0, 0]));
    // A file page stays resident in the file after MADV_DONTNEED, and shows
    // in a mapping that never touched it.
    let f = FileRef("F".into());
    let (a, b) = (BASE + 0x10_0000, BASE + 0x20_0000);
    let shared = flags(MAP_SHARED | MAP_FIXED);
    cpu.run(|| mm.mmap(a, 2 * PAGE_SIZE, Prot::RW, shared, Some(&f), 0))
        .unwrap();
    let private = flags(MAP_PRIVATE | MAP_FIXED);
    cpu.run(|| mm.mmap(b, 2 * PAGE_SIZE, Prot::R, private, Some(&f), PAGE_SIZE))
        .unwrap();
    cpu.write_u64(VirtAddr::new(a + PAGE_SIZE), 5).unwrap();
    assert_eq!(core(&mm, a, 2), Ok(vec![0, 1]));
    assert_eq!(
        core(&mm, b, 2),
        Ok(vec![1, 0]),
        "the file's page 1, unmapped here"
    );
    cpu.run(|| mm.madvise(a, 2 * PAGE_SIZE, aspace_linux::Advice::DONTNEED))
        .unwrap();
    assert_eq!(core(&mm, a, 2), Ok(vec![0, 1]));
    // Checks: an unaligned address, a range past the user space, a short
    // vector; a length of 0 answers nothing; a length is rounded up.
    let mut v = [9u8; 2];
    assert_eq!(mm.mincore(a + 1, PAGE_SIZE, &mut v), Err(Errno::EINVAL));
    assert_eq!(mm.mincore(a, u64::MAX - a + 1, &mut v), Err(Errno::ENOMEM));
    assert_eq!(mm.mincore(a, 3 * PAGE_SIZE, &mut v), Err(Errno::EFAULT));
    assert_eq!(mm.mincore(BASE + 0x40_0000, 0, &mut v), Ok(()));
    // A range may end at the top of the user space (Linux 6.12's
    // access_ok), not past it.
    let top = mm.layout().task_size;
    assert_eq!(mm.mincore(top, 0, &mut v), Ok(()));
    assert_eq!(
        mm.mincore(top - PAGE_SIZE, PAGE_SIZE, &mut v),
        Err(Errno::ENOMEM)
    );
    assert_eq!(mm.mincore(top, PAGE_SIZE, &mut v), Err(Errno::ENOMEM));
    assert_eq!(v, [9, 9]);
    assert_eq!(mm.mincore(a, PAGE_SIZE + 1, &mut v), Ok(()));
    assert_eq!(v, [0, 1]);
    // A hole: ENOMEM, the pages before it answered already.
    let mut v = [9u8; 4];
    assert_eq!(
        mm.mincore(b + PAGE_SIZE, 4 * PAGE_SIZE, &mut v),
        Err(Errno::ENOMEM)
    );
    assert_eq!(v, [0, 9, 9, 9]);
    assert_eq!(
        mm.mincore(BASE + 0x40_0000, PAGE_SIZE, &mut v),
        Err(Errno::ENOMEM)
    );
}

/// A private mapping's first write takes the `anon_vma` of a neighbour
/// that differs from it only in rights (Linux's `find_mergeable_anon_vma`),
/// so the two merge once their rights agree; a mapping whose neighbour has
/// none gets one of its own.
#[test]
fn a_first_write_shares_a_compatible_neighbours_anon_vma() {
    let (_sim, mut mm, mut cpu) = setup();
    let lines = |mm: &LinuxMm<SimMachine>| mm.maps().len();
    anon(&mut mm, &cpu, BASE, 1);
    cpu.write_u64(VirtAddr::new(BASE), 1).unwrap();
    mm.touched(BASE, true);
    cpu.run(|| mm.mprotect(BASE, PAGE_SIZE, Prot::R)).unwrap();
    // A new writable mapping right after it: apart (other rights).
    anon(&mut mm, &cpu, BASE + PAGE_SIZE, 1);
    assert_eq!(lines(&mm), 2);
    cpu.write_u64(VirtAddr::new(BASE + PAGE_SIZE), 2).unwrap();
    mm.touched(BASE + PAGE_SIZE, true);
    let anon_of = |mm: &LinuxMm<SimMachine>, a| mm.vma_at(a).and_then(|v| v.anon).map(|a| a.id);
    assert_eq!(anon_of(&mm, BASE + PAGE_SIZE), anon_of(&mm, BASE));
    cpu.run(|| mm.mprotect(BASE, PAGE_SIZE, Prot::RW)).unwrap();
    assert_eq!(lines(&mm), 1, "one anon_vma: they merge");
    // Not so across a gap: its own.
    anon(&mut mm, &cpu, BASE + 3 * PAGE_SIZE, 1);
    cpu.write_u64(VirtAddr::new(BASE + 3 * PAGE_SIZE), 3)
        .unwrap();
    mm.touched(BASE + 3 * PAGE_SIZE, true);
    assert_ne!(anon_of(&mm, BASE + 3 * PAGE_SIZE), anon_of(&mm, BASE));
}

#[test]
fn a_shared_anonymous_mapping_grown_past_its_object_faults_there() {
    let (_sim, mut mm, mut cpu) = setup();
    let got = cpu
        .run(|| {
            mm.mmap(
                BASE,
                2 * PAGE_SIZE,
                Prot::RW,
                flags(MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED),
                None,
                0,
            )
        })
        .unwrap();
    assert_eq!(
        cpu.run(|| mm.mremap(got, 2 * PAGE_SIZE, 4 * PAGE_SIZE, RemapFlags(0), 0)),
        Ok(got)
    );
    cpu.write_u64(VirtAddr::new(got + PAGE_SIZE), 5).unwrap();
    let v = mm.vma_at(got).unwrap().clone();
    assert!(!LinuxMm::<SimMachine>::past_end(&v, got + PAGE_SIZE));
    assert!(LinuxMm::<SimMachine>::past_end(&v, got + 2 * PAGE_SIZE));
    assert!(
        cpu.read_u64(VirtAddr::new(got + 2 * PAGE_SIZE)).is_err(),
        "SIGBUS on Linux"
    );
}

#[test]
fn brk_follows_linux_rules() {
    let (_sim, mut mm, mut cpu) = setup();
    let start = mm.layout().brk_start;
    assert_eq!(mm.brk(0), start);
    assert_eq!(mm.brk(start + 5), start + 5, "unaligned breaks are kept");
    cpu.write_u64(VirtAddr::new(start), 9).unwrap();
    assert_eq!(mm.brk(start + 3 * PAGE_SIZE), start + 3 * PAGE_SIZE);
    assert_eq!(
        mm.brk(start - PAGE_SIZE),
        start + 3 * PAGE_SIZE,
        "refused: the break stays"
    );
    let heap = mm.maps();
    assert_eq!(heap.len(), 1);
    assert!(heap[0].to_string().ends_with("[heap]"));
    assert_eq!(heap[0].end, start + 3 * PAGE_SIZE);
    // A mapping just above: growth must leave a page free below it.
    anon(&mut mm, &cpu, start + 5 * PAGE_SIZE, 1);
    assert_eq!(mm.brk(start + 5 * PAGE_SIZE), start + 3 * PAGE_SIZE);
    assert_eq!(mm.brk(start + 4 * PAGE_SIZE), start + 4 * PAGE_SIZE);
    assert_eq!(mm.brk(start), start);
    assert!(cpu.read_u64(VirtAddr::new(start)).is_err());
}

/// Maps lines, every page of every area with the first word it maps, and
/// frames in use.
type Observed = (Vec<String>, Vec<(u64, Option<u64>)>, u64);

/// What a refused call must leave as it was.
fn observe(sim: &Sim, mm: &LinuxMm<SimMachine>) -> Observed {
    let maps = mm.maps().iter().map(|l| l.to_string()).collect();
    let mut pages = Vec::new();
    for a in mm.space().areas() {
        for i in 0..a.pages {
            let at = a.base.as_u64() + i * PAGE_SIZE;
            let t = mm.space().translate(VirtAddr::new(at).page());
            pages.push((
                at,
                t.map(|(f, _)| sim.hardware().memory().read_u64(f.start())),
            ));
        }
    }
    (maps, pages, sim.frames_in_use())
}

#[test]
fn a_move_refused_at_any_frame_allocation_changes_nothing() {
    let (mut refused, mut done) = (0, 0);
    for n in 0..8 {
        let (sim, mut mm, mut cpu) = setup();
        // Far from BASE: the moved pages need new page tables.
        let far = BASE + (1 << 30) - (64 << 20);
        anon(&mut mm, &cpu, far, 4);
        anon(&mut mm, &cpu, far + 4 * PAGE_SIZE, 1);
        for i in 0..4 {
            cpu.write_u64(VirtAddr::new(far + i * PAGE_SIZE), 7 + i)
                .unwrap();
        }
        let target = BASE + 0x4000_0000 - (512 << 20);
        let before = observe(&sim, &mm);
        sim.hardware().frames().fail_after(Some(n));
        let r = cpu.run(|| {
            mm.mremap(
                far,
                4 * PAGE_SIZE,
                6 * PAGE_SIZE,
                RemapFlags(MREMAP_MAYMOVE | MREMAP_FIXED),
                target,
            )
        });
        sim.hardware().frames().fail_after(None);
        match r {
            Ok(to) => {
                done += 1;
                assert_eq!(to, target);
                for i in 0..4 {
                    assert_eq!(
                        cpu.read_u64(VirtAddr::new(to + i * PAGE_SIZE)).unwrap(),
                        7 + i
                    );
                }
            }
            Err(e) => {
                refused += 1;
                assert_eq!(e, Errno::ENOMEM, "refused at allocation {n}");
                assert_eq!(observe(&sim, &mm), before, "refused at allocation {n}");
            }
        }
    }
    assert!(refused > 0 && done > 0, "{refused} refused, {done} done");
}

#[test]
fn the_map_count_limit_is_enomem() {
    let (sim, mm, cpu) = setup();
    let mut layout = *mm.layout();
    layout.max_map_count = 3;
    let space = mm.space().clone();
    drop(mm);
    let mut mm = LinuxMm::new(sim.system().clone(), space, layout);
    for i in 0..3 {
        anon(&mut mm, &cpu, BASE + 2 * i * PAGE_SIZE, 1);
    }
    // Linux checks `map_count > max_map_count`: one more still goes.
    anon(&mut mm, &cpu, BASE + 6 * PAGE_SIZE, 3);
    assert_eq!(
        cpu.run(|| mm.mmap(
            BASE + 20 * PAGE_SIZE,
            PAGE_SIZE,
            Prot::RW,
            flags(ANON | MAP_FIXED),
            None,
            0
        )),
        Err(Errno::ENOMEM)
    );
    // Cutting a mapping in the middle would make one more.
    assert_eq!(
        cpu.run(|| mm.munmap(BASE + 7 * PAGE_SIZE, PAGE_SIZE)),
        Err(Errno::ENOMEM)
    );
    assert_eq!(
        cpu.run(|| mm.mprotect(BASE + 7 * PAGE_SIZE, PAGE_SIZE, Prot::R)),
        Err(Errno::ENOMEM)
    );
    assert_eq!(mm.maps().len(), 4, "nothing changed");
    // Whole mappings still go.
    assert_eq!(cpu.run(|| mm.munmap(BASE, 2 * PAGE_SIZE)), Ok(()));
    assert_eq!(mm.maps().len(), 3);
    // A move to a new address wants room for both ranges cut in three,
    // four below the limit (Linux's check_mremap_params), before looking.
    let fixed = RemapFlags(MREMAP_MAYMOVE | MREMAP_FIXED);
    let to = BASE + 40 * PAGE_SIZE;
    assert_eq!(
        cpu.run(|| mm.mremap(BASE + 4 * PAGE_SIZE, PAGE_SIZE, PAGE_SIZE, fixed, to)),
        Err(Errno::ENOMEM)
    );
    assert_eq!(
        cpu.run(|| mm.mremap(BASE + 30 * PAGE_SIZE, PAGE_SIZE, PAGE_SIZE, fixed, to)),
        Err(Errno::ENOMEM),
        "even with no mapping there"
    );
    assert_eq!(mm.maps().len(), 3);
}

/// Two written 4-page mappings with a one-page hole between them; returns
/// the range from the first's start to the second's end.
fn holey(mm: &mut LinuxMm<SimMachine>, cpu: &mut Cpu) -> (u64, u64) {
    anon(mm, cpu, BASE, 4);
    anon(mm, cpu, BASE + 5 * PAGE_SIZE, 4);
    for i in (0..9).filter(|&i| i != 4) {
        cpu.write_u64(VirtAddr::new(BASE + i * PAGE_SIZE), 40 + i)
            .unwrap();
        mm.touched(BASE + i * PAGE_SIZE, true);
    }
    (BASE, 9 * PAGE_SIZE)
}

#[test]
fn a_hole_changes_the_part_before_it_as_linux_does_by_default() {
    let (_sim, mut mm, mut cpu) = setup();
    assert_eq!(mm.hole_policy(), HolePolicy::Linux);
    let (at, len) = holey(&mut mm, &mut cpu);
    assert_eq!(
        cpu.run(|| mm.mprotect(at, len, Prot::R)),
        Err(Errno::ENOMEM)
    );
    let maps = mm.maps();
    assert_eq!(maps[0].prot, Prot::R, "before the hole: changed");
    assert_eq!(maps[1].prot, Prot::RW, "after it: not reached");
    assert!(cpu.write_u64(VirtAddr::new(BASE), 1).is_err());
    cpu.write_u64(VirtAddr::new(BASE + 5 * PAGE_SIZE), 1)
        .unwrap();
    // MADV_DONTNEED drops every mapped page, then reports the hole.
    assert_eq!(
        cpu.run(|| mm.madvise(at, len, aspace_linux::Advice::DONTNEED)),
        Err(Errno::ENOMEM)
    );
    for i in [0, 3, 5, 8] {
        assert_eq!(
            cpu.read_u64(VirtAddr::new(BASE + i * PAGE_SIZE)).unwrap(),
            0,
            "page {i} dropped"
        );
    }
}

#[test]
fn a_hole_refused_changes_nothing() {
    let (sim, mut mm, mut cpu) = setup();
    mm.set_hole_policy(HolePolicy::Refuse);
    let (at, len) = holey(&mut mm, &mut cpu);
    let before = observe(&sim, &mm);
    assert_eq!(
        cpu.run(|| mm.mprotect(at, len, Prot::R)),
        Err(Errno::ENOMEM)
    );
    assert_eq!(observe(&sim, &mm), before, "mprotect");
    // The rights too: both mappings still take writes (of the same words).
    for i in [0, 8] {
        cpu.write_u64(VirtAddr::new(BASE + i * PAGE_SIZE), 40 + i)
            .unwrap();
    }
    assert_eq!(
        cpu.run(|| mm.madvise(at, len, aspace_linux::Advice::DONTNEED)),
        Err(Errno::ENOMEM)
    );
    assert_eq!(observe(&sim, &mm), before, "madvise");
    for i in (0..9).filter(|&i| i != 4) {
        assert_eq!(
            cpu.read_u64(VirtAddr::new(BASE + i * PAGE_SIZE)).unwrap(),
            40 + i,
            "page {i} kept"
        );
    }
    // A hole at the very end is refused as well; a range without one works.
    assert_eq!(
        cpu.run(|| mm.mprotect(BASE + 5 * PAGE_SIZE, 5 * PAGE_SIZE, Prot::R)),
        Err(Errno::ENOMEM)
    );
    assert_eq!(observe(&sim, &mm), before, "hole at the end");
    assert_eq!(
        cpu.run(|| mm.mprotect(BASE + 5 * PAGE_SIZE, 4 * PAGE_SIZE, Prot::R)),
        Ok(())
    );
    assert_eq!(mm.maps()[1].prot, Prot::R);
    assert_eq!(
        cpu.run(|| mm.madvise(BASE, 4 * PAGE_SIZE, aspace_linux::Advice::DONTNEED)),
        Ok(())
    );
    assert_eq!(cpu.read_u64(VirtAddr::new(BASE)).unwrap(), 0);
}

/// A shared mapping of file `F` at `shared` and a private one at `private`,
/// both of `pages` pages from the file's start, `prot` for the private one;
/// each file page `i` holds `1000 + i` in its first word (written through
/// the shared mapping).
fn file_pair(
    mm: &mut LinuxMm<SimMachine>,
    cpu: &mut Cpu,
    shared: u64,
    private: u64,
    pages: u64,
    prot: Prot,
    extra: u32,
) {
    let f = FileRef("F".into());
    let len = pages * PAGE_SIZE;
    cpu.run(|| {
        mm.mmap(
            shared,
            len,
            Prot::RW,
            flags(MAP_SHARED | MAP_FIXED),
            Some(&f),
            0,
        )
    })
    .unwrap();
    for i in 0..pages {
        cpu.write_u64(VirtAddr::new(shared + i * PAGE_SIZE), 1000 + i)
            .unwrap();
    }
    cpu.run(|| {
        mm.mmap(
            private,
            len,
            prot,
            flags(MAP_PRIVATE | MAP_FIXED | extra),
            Some(&f),
            0,
        )
    })
    .unwrap();
}

/// The core areas meeting `[lo, hi)`.
fn areas_in(mm: &LinuxMm<SimMachine>, lo: u64, hi: u64) -> usize {
    mm.space()
        .areas()
        .iter()
        .filter(|a| a.base.as_u64() < hi && a.end().as_u64() > lo)
        .count()
}

/// The first word of each page of file `F` (as the object holds it).
fn file_words(sim: &Sim, mm: &mut LinuxMm<SimMachine>, pages: u64) -> Vec<u64> {
    let file = mm.file("F").unwrap();
    (0..pages)
        .map(|i| {
            file.peek(i)
                .map_or(0, |f| sim.hardware().memory().read_u64(f.start()))
        })
        .collect()
}

#[test]
fn a_private_file_mapping_stays_one_core_area_however_many_pages_it_copies() {
    let (sim, mut mm, mut cpu) = setup();
    let (shared, private, pages) = (BASE, BASE + 0x10_0000, 32);
    file_pair(&mut mm, &mut cpu, shared, private, pages, Prot::RW, 0);
    let file_before = file_words(&sim, &mut mm, pages);
    // Half the pages read first (the file's frames, lent), then every
    // other page written: copied one by one, by the core.
    for i in 0..pages / 2 {
        assert_eq!(
            cpu.read_u64(VirtAddr::new(private + i * PAGE_SIZE))
                .unwrap(),
            1000 + i
        );
    }
    let lent = mm.space().cow_pages(VirtAddr::new(private)).unwrap();
    assert_eq!(lent.pages(), pages / 2, "read pages map the file's frames");
    let allocated = sim.hardware().frames().stats().allocated;
    for i in (0..pages).step_by(2) {
        let at = private + i * PAGE_SIZE;
        cpu.write_u64(VirtAddr::new(at + 8), 7000 + i).unwrap();
        mm.touched(at, true);
    }
    let copies = sim.hardware().frames().stats().allocated - allocated;
    assert!(
        copies >= pages / 2 && copies <= pages / 2 + 3,
        "{copies} frames for {} copies (and page tables)",
        pages / 2
    );
    assert_eq!(areas_in(&mm, private, private + pages * PAGE_SIZE), 1);
    assert_eq!(mm.space().areas().len(), 2, "{:?}", mm.space().areas());
    // Through the MMU: written pages hold the file's word and the write;
    // the others still show the file, and follow it.
    for i in 0..pages {
        let at = private + i * PAGE_SIZE;
        assert_eq!(
            cpu.read_u64(VirtAddr::new(at)).unwrap(),
            1000 + i,
            "page {i}"
        );
        let second = cpu.read_u64(VirtAddr::new(at + 8)).unwrap();
        assert_eq!(second, if i % 2 == 0 { 7000 + i } else { 0 }, "page {i}");
    }
    assert_eq!(
        file_words(&sim, &mut mm, pages),
        file_before,
        "the file is unchanged"
    );
    for i in 0..pages {
        assert_eq!(
            cpu.read_u64(VirtAddr::new(shared + i * PAGE_SIZE + 8))
                .unwrap(),
            0,
            "the file's page {i} never saw a private write"
        );
        cpu.write_u64(VirtAddr::new(shared + i * PAGE_SIZE), 5000 + i)
            .unwrap();
    }
    for i in 0..pages {
        let got = cpu
            .read_u64(VirtAddr::new(private + i * PAGE_SIZE))
            .unwrap();
        assert_eq!(
            got,
            if i % 2 == 0 { 1000 + i } else { 5000 + i },
            "page {i}"
        );
    }
    // One Linux mapping, with an anon_vma.
    let v = mm.vma_at(private).unwrap();
    assert_eq!((v.start, v.end), (private, private + pages * PAGE_SIZE));
    assert!(v.anon.is_some());
    // A kernel's copy into a page not copied yet works like a user store.
    let at = VirtAddr::new(private + PAGE_SIZE + 16);
    cpu.copy_to_user(at, &77u64.to_le_bytes()).unwrap();
    assert_eq!(cpu.read_u64(at).unwrap(), 77);
    assert_eq!(
        cpu.read_u64(VirtAddr::new(shared + PAGE_SIZE + 16))
            .unwrap(),
        0
    );
    assert_eq!(areas_in(&mm, private, private + pages * PAGE_SIZE), 1);
    assert_eq!(sim.hardware().stats().stale_accesses, 0);
}

#[test]
fn madv_dontneed_on_a_private_file_mapping_shows_the_file_again() {
    let (_sim, mut mm, mut cpu) = setup();
    let (shared, private) = (BASE, BASE + 0x10_0000);
    file_pair(&mut mm, &mut cpu, shared, private, 4, Prot::RW, 0);
    for i in 0..4 {
        cpu.write_u64(VirtAddr::new(private + i * PAGE_SIZE), 1)
            .unwrap();
    }
    cpu.write_u64(VirtAddr::new(shared), 9).unwrap();
    assert_eq!(cpu.read_u64(VirtAddr::new(private)).unwrap(), 1);
    cpu.run(|| mm.madvise(private, 2 * PAGE_SIZE, aspace_linux::Advice::DONTNEED))
        .unwrap();
    assert_eq!(
        cpu.read_u64(VirtAddr::new(private)).unwrap(),
        9,
        "the file's"
    );
    assert_eq!(
        cpu.read_u64(VirtAddr::new(private + PAGE_SIZE)).unwrap(),
        1001
    );
    assert_eq!(
        cpu.read_u64(VirtAddr::new(private + 2 * PAGE_SIZE))
            .unwrap(),
        1,
        "not dropped: still the copy"
    );
    // Lent again: the file's later writes show, a write copies again.
    cpu.write_u64(VirtAddr::new(shared), 10).unwrap();
    assert_eq!(cpu.read_u64(VirtAddr::new(private)).unwrap(), 10);
    cpu.write_u64(VirtAddr::new(private), 2).unwrap();
    assert_eq!(cpu.read_u64(VirtAddr::new(shared)).unwrap(), 10);
    assert_eq!(areas_in(&mm, private, private + 4 * PAGE_SIZE), 1);
}

#[test]
fn mprotect_of_a_private_file_mapping_keeps_copy_on_write() {
    let (sim, mut mm, mut cpu) = setup();
    let (shared, private) = (BASE, BASE + 0x10_0000);
    file_pair(&mut mm, &mut cpu, shared, private, 4, Prot::R, 0);
    for i in 0..4 {
        assert_eq!(
            cpu.read_u64(VirtAddr::new(private + i * PAGE_SIZE))
                .unwrap(),
            1000 + i
        );
    }
    assert!(
        cpu.write_u64(VirtAddr::new(private), 1).is_err(),
        "read-only"
    );
    cpu.run(|| mm.mprotect(private, 4 * PAGE_SIZE, Prot::RW))
        .unwrap();
    // Made writable, the resident pages are still the file's, read-only.
    cpu.write_u64(VirtAddr::new(private), 1).unwrap();
    assert_eq!(cpu.read_u64(VirtAddr::new(shared)).unwrap(), 1000);
    cpu.run(|| mm.mprotect(private, 4 * PAGE_SIZE, Prot::R))
        .unwrap();
    assert!(cpu.write_u64(VirtAddr::new(private), 2).is_err());
    assert!(cpu
        .write_u64(VirtAddr::new(private + PAGE_SIZE), 2)
        .is_err());
    assert_eq!(cpu.read_u64(VirtAddr::new(private)).unwrap(), 1);
    // Part of it writable again: the copy takes writes, the file's page
    // copies at its first, the file sees none of them.
    cpu.run(|| mm.mprotect(private, 2 * PAGE_SIZE, Prot::RW))
        .unwrap();
    cpu.write_u64(VirtAddr::new(private), 3).unwrap();
    cpu.write_u64(VirtAddr::new(private + PAGE_SIZE), 4)
        .unwrap();
    assert_eq!(cpu.read_u64(VirtAddr::new(private)).unwrap(), 3);
    assert_eq!(cpu.read_u64(VirtAddr::new(private + PAGE_SIZE)).unwrap(), 4);
    assert_eq!(file_words(&sim, &mut mm, 4), vec![1000, 1001, 1002, 1003]);
    assert_eq!(
        mm.space()
            .cow_pages(VirtAddr::new(private))
            .unwrap()
            .pages(),
        0,
        "both written pages are copies"
    );
    cpu.write_u64(VirtAddr::new(shared + 3 * PAGE_SIZE), 8)
        .unwrap();
    assert_eq!(
        cpu.read_u64(VirtAddr::new(private + 3 * PAGE_SIZE))
            .unwrap(),
        8,
        "an unwritten page follows the file"
    );
    assert_eq!(sim.hardware().stats().stale_accesses, 0);
}

#[test]
fn mremap_moves_a_private_file_mappings_copies_and_lent_pages() {
    let (sim, mut mm, mut cpu) = setup();
    let (shared, private) = (BASE, BASE + 0x10_0000);
    file_pair(&mut mm, &mut cpu, shared, private, 4, Prot::RW, 0);
    cpu.write_u64(VirtAddr::new(private), 1).unwrap();
    assert_eq!(
        cpu.read_u64(VirtAddr::new(private + PAGE_SIZE)).unwrap(),
        1001
    );
    // Something right after it: the growth moves it.
    cpu.run(|| {
        mm.mmap(
            private + 4 * PAGE_SIZE,
            PAGE_SIZE,
            Prot::R,
            flags(ANON | MAP_FIXED),
            None,
            0,
        )
    })
    .unwrap();
    let allocated = sim.hardware().frames().stats().allocated;
    let to = cpu
        .run(|| {
            mm.mremap(
                private,
                4 * PAGE_SIZE,
                6 * PAGE_SIZE,
                RemapFlags(MREMAP_MAYMOVE),
                0,
            )
        })
        .unwrap();
    assert_ne!(to, private);
    assert!(
        sim.hardware().frames().stats().allocated - allocated <= 3,
        "no data copied"
    );
    assert_eq!(
        cpu.read_u64(VirtAddr::new(to)).unwrap(),
        1,
        "the copy moved"
    );
    assert_eq!(cpu.read_u64(VirtAddr::new(to + PAGE_SIZE)).unwrap(), 1001);
    cpu.write_u64(VirtAddr::new(shared + PAGE_SIZE), 2).unwrap();
    assert_eq!(
        cpu.read_u64(VirtAddr::new(to + PAGE_SIZE)).unwrap(),
        2,
        "a lent page moved still follows the file"
    );
    cpu.write_u64(VirtAddr::new(to + PAGE_SIZE), 3).unwrap();
    cpu.write_u64(VirtAddr::new(to + 5 * PAGE_SIZE), 4).unwrap();
    assert_eq!(cpu.read_u64(VirtAddr::new(shared + PAGE_SIZE)).unwrap(), 2);
    assert_eq!(
        file_words(&sim, &mut mm, 6),
        vec![1000, 2, 1002, 1003, 0, 0]
    );
    assert_eq!(areas_in(&mm, to, to + 6 * PAGE_SIZE), 1);
    assert_eq!(sim.hardware().stats().stale_accesses, 0);
}

#[test]
fn map_populate_copies_a_private_writable_file_mapping() {
    let (sim, mut mm, mut cpu) = setup();
    let (shared, private) = (BASE, BASE + 0x10_0000);
    file_pair(
        &mut mm,
        &mut cpu,
        shared,
        private,
        4,
        Prot::RW,
        MAP_POPULATE,
    );
    assert_eq!(mm.space().area(VirtAddr::new(private)).unwrap().resident, 4);
    assert_eq!(
        mm.space()
            .cow_pages(VirtAddr::new(private))
            .unwrap()
            .pages(),
        0,
        "every page copied"
    );
    for i in 0..4 {
        cpu.write_u64(VirtAddr::new(shared + i * PAGE_SIZE), 0)
            .unwrap();
        assert_eq!(
            cpu.read_u64(VirtAddr::new(private + i * PAGE_SIZE))
                .unwrap(),
            1000 + i
        );
    }
    assert!(mm.vma_at(private).unwrap().anon.is_some());
    assert_eq!(file_words(&sim, &mut mm, 4), vec![0; 4]);
}

#[test]
fn a_private_file_pages_first_write_refused_for_memory_changes_nothing() {
    let (sim, mut mm, mut cpu) = setup();
    let (shared, private) = (BASE, BASE + 0x10_0000);
    file_pair(&mut mm, &mut cpu, shared, private, 2, Prot::RW, 0);
    assert_eq!(cpu.read_u64(VirtAddr::new(private)).unwrap(), 1000);
    let before = observe(&sim, &mm);
    let lent = mm.space().cow_pages(VirtAddr::new(private)).unwrap();
    sim.hardware().frames().fail_after(Some(0));
    let r = cpu.write_u64(VirtAddr::new(private), 1);
    sim.hardware().frames().fail_after(None);
    assert!(r.is_err(), "no frame for the copy");
    assert_eq!(observe(&sim, &mm), before);
    assert_eq!(mm.space().cow_pages(VirtAddr::new(private)).unwrap(), lent);
    cpu.write_u64(VirtAddr::new(private), 1).unwrap();
    assert_eq!(cpu.read_u64(VirtAddr::new(private)).unwrap(), 1);
    assert_eq!(cpu.read_u64(VirtAddr::new(shared)).unwrap(), 1000);
}

/// A kernel's copy into a private file page nothing has touched yet (the
/// core's `copy_to_user`, not the simulated CPU's store): the first fault
/// lends the file's page, the second copies it, and the copy lands in the
/// private page only.
#[test]
fn copy_to_user_into_an_untouched_private_file_page_copies_it() {
    let (sim, mut mm, mut cpu) = setup();
    let (shared, private, pages) = (BASE, BASE + 0x10_0000, 4);
    file_pair(&mut mm, &mut cpu, shared, private, pages, Prot::RW, 0);
    let file_before = file_words(&sim, &mut mm, pages);
    let at = VirtAddr::new(private + 2 * PAGE_SIZE + 24);
    let space = mm.space().clone();
    cpu.run(|| space.copy_to_user(at, &4242u64.to_le_bytes()))
        .expect("a kernel copy into an untouched private file page");
    assert_eq!(cpu.read_u64(at).unwrap(), 4242);
    assert_eq!(
        cpu.read_u64(VirtAddr::new(private + 2 * PAGE_SIZE))
            .unwrap(),
        1002,
        "the rest of the page is the file's"
    );
    let page = at.page();
    assert!(!space.cow_pages(at).unwrap().contains(page), "copied");
    assert_eq!(file_words(&sim, &mut mm, pages), file_before);
    assert_eq!(
        cpu.read_u64(VirtAddr::new(shared + 2 * PAGE_SIZE + 24))
            .unwrap(),
        0,
        "the file never saw the private write"
    );
}

/// Hint advice splits a mapping where it starts and ends and merges it
/// again once the hints agree; a mapping that refuses the advice stops the
/// walk (Linux keeps the change before it; [`HolePolicy::Refuse`] makes
/// none); a split past the map-count limit is `ENOMEM` with nothing
/// changed.
#[test]
fn hint_advice_splits_and_merges_and_refusals_follow_the_hole_policy() {
    use aspace_linux::Advice;
    let (sim, mut mm, cpu) = setup();
    anon(&mut mm, &cpu, BASE, 8);
    let page = |i: u64| BASE + i * PAGE_SIZE;
    for (advice, lines) in [(MADV_RANDOM, 3), (MADV_SEQUENTIAL, 3), (MADV_NORMAL, 1)] {
        assert_eq!(
            cpu.run(|| mm.madvise(page(2), 3 * PAGE_SIZE, Advice(advice))),
            Ok(())
        );
        assert_eq!(mm.maps().len(), lines, "after advice {advice}");
    }
    // An anonymous mapping, then a private file mapping right after it:
    // MADV_WIPEONFORK takes the first and refuses the second.
    cpu.run(|| {
        mm.mmap(
            page(8),
            2 * PAGE_SIZE,
            Prot::RW,
            flags(MAP_PRIVATE | MAP_FIXED),
            Some(&FileRef("F".into())),
            0,
        )
    })
    .unwrap();
    let wipe = Advice(MADV_WIPEONFORK);
    mm.set_hole_policy(HolePolicy::Refuse);
    let before = observe(&sim, &mm);
    assert_eq!(
        cpu.run(|| mm.madvise(page(4), 6 * PAGE_SIZE, wipe)),
        Err(Errno::EINVAL)
    );
    assert_eq!(observe(&sim, &mm), before, "refused: nothing changed");
    mm.set_hole_policy(HolePolicy::Linux);
    assert_eq!(
        cpu.run(|| mm.madvise(page(4), 6 * PAGE_SIZE, wipe)),
        Err(Errno::EINVAL)
    );
    let spans: Vec<(u64, u64)> = mm.vmas().map(|v| (v.start, v.end)).collect();
    assert_eq!(
        spans,
        [(page(0), page(4)), (page(4), page(8)), (page(8), page(10))],
        "as Linux: the anonymous part before the refusal changed"
    );
    assert!(mm
        .vma_at(page(4))
        .unwrap()
        .flags
        .contains(VmFlags::WIPEONFORK));
    // Unknown advice and advice this layer does not take.
    for advice in [MADV_REMOVE, 25, 104, 1000] {
        assert_eq!(
            cpu.run(|| mm.madvise(page(0), PAGE_SIZE, Advice(advice))),
            Err(Errno::EINVAL),
            "advice {advice}"
        );
    }
    // The map-count limit: a cut in the middle of a mapping is two more.
    let mut layout = *mm.layout();
    layout.max_map_count = 4;
    let space = mm.space().clone();
    drop(mm);
    let mut mm = LinuxMm::new(sim.system().clone(), space.clone(), layout);
    cpu.run(|| mm.munmap(BASE, 10 * PAGE_SIZE)).unwrap();
    anon(&mut mm, &cpu, BASE, 8);
    anon(&mut mm, &cpu, page(9), 1);
    anon(&mut mm, &cpu, page(11), 1);
    let before = observe(&sim, &mm);
    assert_eq!(
        cpu.run(|| mm.madvise(page(2), PAGE_SIZE, Advice(MADV_DONTDUMP))),
        Err(Errno::EAGAIN),
        "Linux's madvise reports a split past the limit as EAGAIN"
    );
    assert_eq!(observe(&sim, &mm), before);
    assert_eq!(
        cpu.run(|| mm.mlock(page(2), PAGE_SIZE, aspace_linux::LockFlags(0))),
        Err(Errno::ENOMEM),
        "mlock's is ENOMEM"
    );
    assert_eq!(observe(&sim, &mm), before);
    assert_eq!(
        cpu.run(|| mm.madvise(page(0), PAGE_SIZE, Advice(MADV_DONTDUMP))),
        Ok(()),
        "one cut still fits"
    );
    assert_eq!(mm.maps().len(), 4);
}

/// `MADV_POPULATE_READ`/`_WRITE` fault pages in (a write one gives a private
/// mapping its `anon_vma`), stop at a hole (`ENOMEM`), at a mapping without
/// the right (`EINVAL`) or past an object's end (`EFAULT`), the pages
/// before staying populated.
#[test]
fn populate_advice_faults_pages_in_and_stops_where_linux_does() {
    use aspace_linux::Advice;
    let (sim, mut mm, cpu) = setup();
    let page = |i: u64| BASE + i * PAGE_SIZE;
    anon(&mut mm, &cpu, BASE, 4);
    let resident = |mm: &LinuxMm<SimMachine>, i: u64| resident_at(mm, page(i));
    let frames = sim.frames_in_use();
    assert_eq!(
        cpu.run(|| mm.madvise(page(0), 2 * PAGE_SIZE, Advice(MADV_POPULATE_WRITE))),
        Ok(())
    );
    assert!(resident(&mm, 0) && resident(&mm, 1) && !resident(&mm, 2));
    assert!(sim.frames_in_use() >= frames + 2);
    assert!(
        mm.vma_at(page(0)).unwrap().anon.is_some(),
        "written: an anon_vma"
    );
    // Read-only after a hole: the pages before the hole are populated.
    cpu.run(|| {
        mm.mmap(
            page(5),
            PAGE_SIZE,
            Prot::R,
            flags(ANON | MAP_FIXED),
            None,
            0,
        )
    })
    .unwrap();
    assert_eq!(
        cpu.run(|| mm.madvise(page(2), 4 * PAGE_SIZE, Advice(MADV_POPULATE_READ))),
        Err(Errno::ENOMEM)
    );
    assert!(resident(&mm, 2) && resident(&mm, 3) && !resident(&mm, 5));
    assert_eq!(
        cpu.run(|| mm.madvise(page(5), PAGE_SIZE, Advice(MADV_POPULATE_WRITE))),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        cpu.run(|| mm.madvise(page(5), PAGE_SIZE, Advice(MADV_POPULATE_READ))),
        Ok(())
    );
    // A shared anonymous mapping grown past its object: EFAULT there.
    let at = cpu
        .run(|| {
            mm.mmap(
                page(20),
                PAGE_SIZE,
                Prot::RW,
                flags(MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED),
                None,
                0,
            )
        })
        .unwrap();
    cpu.run(|| mm.mremap(at, PAGE_SIZE, 2 * PAGE_SIZE, RemapFlags(0), 0))
        .unwrap();
    assert_eq!(
        cpu.run(|| mm.madvise(at, 2 * PAGE_SIZE, Advice(MADV_POPULATE_READ))),
        Err(Errno::EFAULT)
    );
    assert!(resident(&mm, 20) && !resident(&mm, 21));
}

/// The break grows its last mapping only while the new part would merge
/// with it: a hinted heap gets a mapping of its own above, as on Linux.
#[test]
fn brk_does_not_grow_a_hinted_heap_mapping() {
    use aspace_linux::Advice;
    let (_sim, mut mm, mut cpu) = setup();
    let start = mm.layout().brk_start;
    assert_eq!(
        cpu.run(|| mm.brk(start + 2 * PAGE_SIZE)),
        start + 2 * PAGE_SIZE
    );
    assert_eq!(
        cpu.run(|| mm.madvise(start, 2 * PAGE_SIZE, Advice(MADV_DONTDUMP))),
        Ok(())
    );
    assert_eq!(
        cpu.run(|| mm.brk(start + 4 * PAGE_SIZE)),
        start + 4 * PAGE_SIZE
    );
    let spans: Vec<(u64, u64)> = mm.vmas().map(|v| (v.start, v.end)).collect();
    assert_eq!(
        spans,
        [
            (start, start + 2 * PAGE_SIZE),
            (start + 2 * PAGE_SIZE, start + 4 * PAGE_SIZE)
        ]
    );
    assert!(cpu
        .write_u64(VirtAddr::new(start + 3 * PAGE_SIZE), 1)
        .is_ok());
    // Without the hint the two merge again.
    assert_eq!(
        cpu.run(|| mm.madvise(start, 2 * PAGE_SIZE, Advice(MADV_DODUMP))),
        Ok(())
    );
    assert_eq!(mm.maps().len(), 1);
    // A break with nothing mapped below it any more does not shrink.
    cpu.run(|| mm.munmap(start + 2 * PAGE_SIZE, 2 * PAGE_SIZE))
        .unwrap();
    assert_eq!(
        cpu.run(|| mm.brk(start + PAGE_SIZE + 1)),
        start + 4 * PAGE_SIZE
    );
    assert_eq!(cpu.run(|| mm.brk(start + PAGE_SIZE)), start + PAGE_SIZE);
}

/// `MAP_STACK` gives a mapping `VM_NOHUGEPAGE` (Linux 6.7+): it stays apart
/// from a plain neighbour until that one gets the same hint.
#[test]
fn map_stack_mappings_do_not_take_huge_pages() {
    use aspace_linux::Advice;
    let (_sim, mut mm, cpu) = setup();
    anon(&mut mm, &cpu, BASE, 2);
    cpu.run(|| {
        mm.mmap(
            BASE + 2 * PAGE_SIZE,
            2 * PAGE_SIZE,
            Prot::RW,
            flags(ANON | MAP_FIXED | MAP_STACK),
            None,
            0,
        )
    })
    .unwrap();
    assert_eq!(mm.maps().len(), 2);
    assert!(mm
        .vma_at(BASE + 2 * PAGE_SIZE)
        .unwrap()
        .flags
        .contains(VmFlags::NOHUGEPAGE));
    assert_eq!(
        cpu.run(|| mm.madvise(BASE, 2 * PAGE_SIZE, Advice(MADV_NOHUGEPAGE))),
        Ok(())
    );
    assert_eq!(mm.maps().len(), 1);
}

/// `mlock` locks the mappings' parts it covers (splitting them), faults
/// their pages in (a private writable mapping written: it gets its
/// `anon_vma`) and makes them refuse `MADV_DONTNEED`; `MLOCK_ONFAULT`
/// faults nothing in; `munlock` merges them back; a hole is `ENOMEM`;
/// `msync` answers as Linux does.
#[test]
fn mlock_locks_and_faults_in_munlock_undoes_it() {
    use aspace_linux::{Advice, LockFlags, SyncFlags};
    let (sim, mut mm, cpu) = setup();
    let page = |i: u64| BASE + i * PAGE_SIZE;
    anon(&mut mm, &cpu, BASE, 8);
    let resident = |mm: &LinuxMm<SimMachine>, i: u64| resident_at(mm, page(i));
    let frames = sim.frames_in_use();
    // An unaligned start takes its page; the length counts from it.
    assert_eq!(
        cpu.run(|| mm.mlock(page(2) + 5, 2 * PAGE_SIZE, LockFlags(0))),
        Ok(())
    );
    assert_eq!(mm.maps().len(), 3);
    assert!((2..5).all(|i| resident(&mm, i)) && !resident(&mm, 1) && !resident(&mm, 5));
    assert!(sim.frames_in_use() >= frames + 3);
    let v = mm.vma_at(page(2)).unwrap();
    assert!(v.flags.contains(VmFlags::LOCKED) && v.anon.is_some());
    assert_eq!(
        cpu.run(|| mm.madvise(page(3), PAGE_SIZE, Advice::DONTNEED)),
        Err(Errno::EINVAL)
    );
    assert!(resident(&mm, 3), "locked pages stay");
    assert_eq!(
        cpu.run(|| mm.madvise(page(3), PAGE_SIZE, Advice(MADV_DONTNEED_LOCKED))),
        Ok(())
    );
    assert!(!resident(&mm, 3));
    // msync: flags checked, locked pages not invalidated, holes ENOMEM.
    for (flags, want) in [
        (MS_SYNC, Ok(())),
        (MS_ASYNC | MS_SYNC, Err(Errno::EINVAL)),
        (8, Err(Errno::EINVAL)),
        (MS_INVALIDATE, Err(Errno::EBUSY)),
    ] {
        assert_eq!(
            cpu.run(|| mm.msync(BASE, 8 * PAGE_SIZE, SyncFlags(flags))),
            want,
            "msync {flags}"
        );
    }
    assert_eq!(
        cpu.run(|| mm.msync(BASE, 9 * PAGE_SIZE, SyncFlags(MS_SYNC))),
        Err(Errno::ENOMEM)
    );
    // Unlocked: one mapping again, and its pages can be dropped.
    assert_eq!(cpu.run(|| mm.munlock(BASE, 8 * PAGE_SIZE)), Ok(()));
    assert_eq!(mm.maps().len(), 1);
    assert_eq!(
        cpu.run(|| mm.madvise(page(2), PAGE_SIZE, Advice::DONTNEED)),
        Ok(())
    );
    // MLOCK_ONFAULT faults nothing in; unknown flags and holes refused.
    assert_eq!(
        cpu.run(|| mm.mlock(page(6), 2 * PAGE_SIZE, LockFlags(MLOCK_ONFAULT))),
        Ok(())
    );
    assert!(!resident(&mm, 6) && !resident(&mm, 7));
    assert_eq!(
        cpu.run(|| mm.mlock(page(0), PAGE_SIZE, LockFlags(2))),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        cpu.run(|| mm.mlock(page(8), PAGE_SIZE, LockFlags(0))),
        Err(Errno::ENOMEM),
        "a hole at the start"
    );
    assert_eq!(
        cpu.run(|| mm.mlock(page(0), 9 * PAGE_SIZE, LockFlags(0))),
        Err(Errno::ENOMEM),
        "a hole at the end, after locking the rest (as Linux)"
    );
    assert!(mm.vma_at(page(0)).unwrap().flags.contains(VmFlags::LOCKED));
}

/// A locked private mapping made writable is faulted in by writes (it gets
/// its `anon_vma`, as Linux's `mprotect_fixup` leaves it), and a locked
/// mapping grown by `mremap` has its new pages faulted in.
#[test]
fn locked_mappings_are_faulted_in_by_mprotect_and_mremap() {
    use aspace_linux::LockFlags;
    let (_sim, mut mm, cpu) = setup();
    let page = |i: u64| BASE + i * PAGE_SIZE;
    let resident = |mm: &LinuxMm<SimMachine>, i: u64| resident_at(mm, page(i));
    cpu.run(|| {
        mm.mmap(
            BASE,
            2 * PAGE_SIZE,
            Prot::R,
            flags(ANON | MAP_FIXED),
            None,
            0,
        )
    })
    .unwrap();
    cpu.run(|| mm.mlock(BASE, 2 * PAGE_SIZE, LockFlags(0)))
        .unwrap();
    assert!(resident(&mm, 0) && resident(&mm, 1));
    assert!(mm.vma_at(BASE).unwrap().anon.is_none(), "read faults only");
    cpu.run(|| mm.mprotect(BASE, 2 * PAGE_SIZE, Prot::RW))
        .unwrap();
    assert!(
        mm.vma_at(BASE).unwrap().anon.is_some(),
        "written when made writable"
    );
    let at = cpu
        .run(|| mm.mremap(BASE, 2 * PAGE_SIZE, 4 * PAGE_SIZE, RemapFlags(0), 0))
        .unwrap();
    assert_eq!(at, BASE, "grown in place");
    assert!(
        resident(&mm, 2) && resident(&mm, 3),
        "the new pages faulted in"
    );
}

/// `mlockall(MCL_CURRENT)` locks and faults in every mapping (merging what
/// only the lock told apart); `MCL_FUTURE` locks later mappings and the
/// break's growth; `munlockall` undoes both; bad flags are `EINVAL`.
#[test]
fn mlockall_locks_every_mapping_now_or_later() {
    use aspace_linux::{LockAllFlags, LockFlags};
    let (_sim, mut mm, cpu) = setup();
    let page = |i: u64| BASE + i * PAGE_SIZE;
    let resident = |mm: &LinuxMm<SimMachine>, i: u64| resident_at(mm, page(i));
    let locked =
        |mm: &LinuxMm<SimMachine>, a: u64| mm.vma_at(a).unwrap().flags.contains(VmFlags::LOCKED);
    anon(&mut mm, &cpu, BASE, 4);
    cpu.run(|| mm.mlock(page(1), PAGE_SIZE, LockFlags(MLOCK_ONFAULT)))
        .unwrap();
    assert_eq!(mm.maps().len(), 3);
    for bad in [0, MCL_ONFAULT, 8] {
        assert_eq!(
            cpu.run(|| mm.mlockall(LockAllFlags(bad))),
            Err(Errno::EINVAL),
            "flags {bad}"
        );
    }
    assert_eq!(cpu.run(|| mm.mlockall(LockAllFlags(MCL_CURRENT))), Ok(()));
    assert_eq!(mm.maps().len(), 1, "all locked alike: one mapping again");
    assert!((0..4).all(|i| resident(&mm, i)));
    // Not for the future: a new mapping is not locked.
    anon(&mut mm, &cpu, page(10), 1);
    assert!(!locked(&mm, page(10)) && !resident(&mm, 10));
    assert_eq!(cpu.run(|| mm.mlockall(LockAllFlags(MCL_FUTURE))), Ok(()));
    anon(&mut mm, &cpu, page(12), 2);
    assert!(locked(&mm, page(12)) && resident(&mm, 12) && resident(&mm, 13));
    let start = mm.layout().brk_start;
    assert_eq!(cpu.run(|| mm.brk(start + PAGE_SIZE)), start + PAGE_SIZE);
    assert!(locked(&mm, start));
    assert!(mm.space().translate(VirtAddr::new(start).page()).is_some());
    assert_eq!(cpu.run(|| mm.munlockall()), Ok(()));
    assert!(mm.vmas().all(|v| !v.flags.intersects(VmFlags::LOCK_MASK)));
    anon(&mut mm, &cpu, page(20), 1);
    assert!(!locked(&mm, page(20)));
}

/// A kernel may keep areas of its own in the space beside the layer's (a
/// program's text and stack): `MADV_DONTNEED` over a range reaching them
/// drops only the layer's mappings' pages, and says `ENOMEM` for the rest
/// as for a hole.
#[test]
fn madvise_dontneed_leaves_areas_the_layer_did_not_make() {
    let (_sim, mut mm, mut cpu) = setup();
    anon(&mut mm, &cpu, BASE, 2);
    // A mapping past the kernel's area too: the area lies between two.
    anon(&mut mm, &cpu, BASE + 6 * PAGE_SIZE, 2);
    cpu.write_u64(VirtAddr::new(BASE + 7 * PAGE_SIZE), 3)
        .unwrap();
    let own = BASE + 4 * PAGE_SIZE;
    mm.space()
        .area_create(
            VirtAddr::new(own),
            PAGE_SIZE,
            AreaFlags::READ | AreaFlags::WRITE,
        )
        .unwrap();
    cpu.write_u64(VirtAddr::new(BASE), 1).unwrap();
    cpu.write_u64(VirtAddr::new(own), 2).unwrap();
    let r = cpu.run(|| {
        mm.madvise(
            BASE,
            8 * PAGE_SIZE,
            aspace_linux::flags::Advice(MADV_DONTNEED),
        )
    });
    assert_eq!(r, Err(Errno::ENOMEM));
    assert_eq!(cpu.read_u64(VirtAddr::new(BASE)).unwrap(), 0);
    assert_eq!(cpu.read_u64(VirtAddr::new(own)).unwrap(), 2);
    assert_eq!(
        cpu.read_u64(VirtAddr::new(BASE + 7 * PAGE_SIZE)).unwrap(),
        0
    );
    cpu.run(|| mm.space().unmap_range(VirtAddr::new(own), PAGE_SIZE))
        .unwrap();
}

/// The page ranges of the records and of the core's areas, to compare.
fn covered(mm: &LinuxMm<SimMachine>) -> (Vec<u64>, Vec<u64>) {
    let mut recs = Vec::new();
    for v in mm.vmas() {
        recs.extend(v.start / PAGE_SIZE..v.end / PAGE_SIZE);
    }
    let mut areas = Vec::new();
    for a in mm.space().areas() {
        let first = a.base.as_u64() / PAGE_SIZE;
        areas.extend(first..first + a.pages);
    }
    (recs, areas)
}

/// A shrinking `MREMAP_FIXED` move removes its tail with the move, in one
/// core step, and the records follow the core's areas however the target,
/// the tail and the moved part lie (the target inside the same mapping; a
/// tail reaching into another mapping that the target meets too).
#[test]
fn shrinking_moves_keep_the_records_on_the_core() {
    let p = |n: u64| n * PAGE_SIZE;
    let fixed = RemapFlags(MREMAP_MAYMOVE | MREMAP_FIXED);
    let (_sim, mut mm, cpu) = setup();
    anon(&mut mm, &cpu, BASE, 20);
    let r = cpu.run(|| mm.mremap(BASE + p(10), p(6), p(2), fixed, BASE + p(2)));
    assert_eq!(r, Ok(BASE + p(2)));
    let (recs, areas) = covered(&mm);
    assert_eq!(recs, areas);
    let want: Vec<u64> = (0..10)
        .chain(16..20)
        .map(|i| BASE / PAGE_SIZE + i)
        .collect();
    assert_eq!(recs, want);

    let (_sim, mut mm, cpu) = setup();
    anon(&mut mm, &cpu, BASE, 4);
    let shared = flags(MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED);
    cpu.run(|| mm.mmap(BASE + p(4), p(16), Prot::RW, shared, None, 0))
        .unwrap();
    let r = cpu.run(|| mm.mremap(BASE, p(8), p(2), fixed, BASE + p(8)));
    assert_eq!(r, Ok(BASE + p(8)));
    let (recs, areas) = covered(&mm);
    assert_eq!(recs, areas);
    let want: Vec<u64> = (8..20).map(|i| BASE / PAGE_SIZE + i).collect();
    assert_eq!(recs, want);
    assert_eq!(mm.vmas().count(), 2, "the moved part and the shared rest");
}

/// `MREMAP_DONTUNMAP` of a page of a locked mapping to right below it, as
/// Linux 6.18 does it (checked there): never written (read-only: `mlock`
/// only reads its pages in), the copy merges with the mapping it came
/// from, and the lock is cleared on what the merge made, the copy too
/// (`MADV_DONTNEED` then allowed); written (read-write: `mlock` writes,
/// an `anon_vma`), the copy stays apart and locked (`EINVAL`). Both count
/// against `RLIMIT_MEMLOCK` still.
#[test]
fn dontunmap_beside_its_locked_source_merges_and_unlocks_as_linux() {
    use aspace_linux::{Advice, LockFlags};
    let p = |n: u64| n * PAGE_SIZE;
    for written in [false, true] {
        let (_sim, mut mm, cpu) = setup();
        let src = BASE + p(1);
        let prot = if written { Prot::RW } else { Prot::R };
        let private = flags(MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED);
        cpu.run(|| mm.mmap(src, p(5), prot, private, None, 0))
            .unwrap();
        cpu.run(|| mm.mlock(src, p(5), LockFlags(0))).unwrap();
        let fixed = RemapFlags(MREMAP_MAYMOVE | MREMAP_DONTUNMAP | MREMAP_FIXED);
        assert_eq!(
            cpu.run(|| mm.mremap(src, p(1), p(1), fixed, BASE)),
            Ok(BASE)
        );
        let dropped = cpu.run(|| mm.madvise(BASE, p(1), Advice(MADV_DONTNEED)));
        let merged = mm.vma_at(BASE).is_some_and(|v| v.end == src + p(5));
        if written {
            assert_eq!((dropped, merged), (Err(Errno::EINVAL), false));
        } else {
            assert_eq!((dropped, merged), (Ok(()), true));
        }
        assert_eq!(mm.locked_pages(), 6, "written {written}");
    }
    // A locked mapping below the target that may merge too: the merge takes
    // it in, and it loses the lock with the rest (Linux 6.18 does so).
    let (_sim, mut mm, cpu) = setup();
    let private = flags(MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED);
    let (below, src) = (BASE, BASE + p(3));
    for (at, n) in [(below, 2), (src, 3)] {
        cpu.run(|| mm.mmap(at, p(n), Prot::R, private, None, 0))
            .unwrap();
        cpu.run(|| mm.mlock(at, p(n), LockFlags(0))).unwrap();
    }
    let fixed = RemapFlags(MREMAP_MAYMOVE | MREMAP_DONTUNMAP | MREMAP_FIXED);
    assert_eq!(
        cpu.run(|| mm.mremap(src, p(1), p(1), fixed, BASE + p(2))),
        Ok(BASE + p(2))
    );
    assert!(mm.vma_at(BASE).is_some_and(|v| v.end == src + p(3)));
    assert_eq!(
        cpu.run(|| mm.madvise(below, p(1), Advice(MADV_DONTNEED))),
        Ok(())
    );
    assert_eq!(mm.locked_pages(), 6);
}

/// A fixed `MREMAP_DONTUNMAP` move of several locked mappings (a hole
/// between them) onto a range of the first, mapping by mapping as Linux
/// 6.18 goes (a C program there, under `mlockall(MCL_FUTURE)`): the first
/// part lands below its own mapping and merges with it, and that whole
/// mapping loses `VM_LOCKED`; the second lands inside it (cutting it) beside
/// unlocked neighbours, so it stays apart and locked; the second's old
/// mapping loses the lock too. `MADV_FREE` over the first mapping's old
/// pages then meets the locked page: `EINVAL`. (Found by the differential
/// test's seed loop: all the copies had been put in before any unlock, so
/// everything merged and the locked page was lost.)
#[test]
fn dontunmap_of_several_locked_mappings_unlocks_mapping_by_mapping() {
    use aspace_linux::{Advice, LockAllFlags};
    let p = |n: u64| n * PAGE_SIZE;
    let (_sim, mut mm, cpu) = setup();
    let a = BASE + p(16);
    let f = FileRef("F0".into());
    assert_eq!(cpu.run(|| mm.mlockall(LockAllFlags(MCL_FUTURE))), Ok(()));
    let none = flags(MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED);
    cpu.run(|| mm.mmap(a, p(9), Prot::NONE, none, None, 0))
        .unwrap();
    // Page 5 unmapped by a shrink, pages 3 and 4 a mapping made again.
    let shrink = RemapFlags(0);
    assert_eq!(
        cpu.run(|| mm.mremap(a + p(3), p(3), p(2), shrink, 0)),
        Ok(a + p(3))
    );
    cpu.run(|| mm.mmap(a + p(3), p(2), Prot::NONE, none, None, 0))
        .unwrap();
    let rx = Prot(PROT_READ | PROT_EXEC);
    let file = flags(MAP_SHARED | MAP_FIXED);
    cpu.run(|| mm.mmap(a - p(3), p(3), rx, file, Some(&f), p(49)))
        .unwrap();
    let leave = RemapFlags(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP);
    assert_eq!(
        cpu.run(|| mm.mremap(a + p(4), p(3), p(3), leave, a - p(1))),
        Ok(a - p(1))
    );
    // Pages relative to `a`, and whether locked.
    let rel = |x: u64| (x as i64 - a as i64) / p(1) as i64;
    let locked: Vec<_> = mm
        .vmas()
        .filter(|v| v.start >= a - p(3))
        .map(|v| (rel(v.start), rel(v.end), v.flags.contains(VmFlags::LOCKED)))
        .collect();
    assert_eq!(
        locked,
        [
            (-3, -1, true), // the file's mapping, its last page replaced
            (-1, 1, false), // the first part's copy, merged with its mapping's head
            (1, 2, true),   // the second part's copy, apart
            (2, 5, false),  // the first mapping's rest
            (6, 9, false),  // the second mapping
        ]
    );
    assert_eq!(
        cpu.run(|| mm.madvise(a, p(4), Advice(MADV_FREE))),
        Err(Errno::EINVAL)
    );
}

/// `MAP_FIXED` over part of a mapping needs nothing more from the commit
/// limit (Linux charges the new pages less the accounted ones replaced).
#[test]
fn map_fixed_over_part_of_a_mapping_at_the_commit_limit() {
    let p = |n: u64| n * PAGE_SIZE;
    let (sim, mut mm, cpu) = setup();
    anon(&mut mm, &cpu, BASE, 16);
    let reserve = sim.system().reserve();
    reserve.set_limit(reserve.committed());
    assert_eq!(anon(&mut mm, &cpu, BASE + p(4), 4), BASE + p(4));
    assert_eq!(anon(&mut mm, &cpu, BASE + p(12), 4), BASE + p(12));
    assert_eq!(anon(&mut mm, &cpu, BASE, 2), BASE);
    assert_eq!(reserve.committed(), 16);
}

/// `MADV_REMOVE` punches a hole in a shared mapping's object, as Linux's
/// does in shmem: every mapping of the object loses those pages (the
/// shared ones, and a private one where it still shows the file's page;
/// its own copies stay), the object's frames go, and the pages read as
/// zeros after. Private anonymous memory `EINVAL`, a private file mapping
/// `EACCES`, a locked mapping `EINVAL`, a hole `ENOMEM` after the rest.
#[test]
fn madvise_remove_punches_a_hole_in_the_object() {
    use aspace_linux::Advice;
    let (sim, mut mm, mut cpu) = setup();
    let p = |n: u64| n * PAGE_SIZE;
    let va = VirtAddr::new;
    let f = FileRef("F".into());
    let (s, q) = (BASE, BASE + p(16));
    cpu.run(|| {
        mm.mmap(
            s,
            p(4),
            Prot::RW,
            flags(MAP_SHARED | MAP_FIXED),
            Some(&f),
            0,
        )
    })
    .unwrap();
    cpu.run(|| {
        mm.mmap(
            q,
            p(4),
            Prot::RW,
            flags(MAP_PRIVATE | MAP_FIXED),
            Some(&f),
            0,
        )
    })
    .unwrap();
    for i in 0..4 {
        cpu.write_u64(va(s + p(i)), 10 + i).unwrap();
        assert_eq!(cpu.read_u64(va(q + p(i))).unwrap(), 10 + i);
    }
    cpu.write_u64(va(q + p(1)), 99).unwrap(); // the private mapping's own copy
    let remove = |mm: &mut LinuxMm<SimMachine>, cpu: &Cpu, at: u64, n: u64| {
        cpu.run(|| mm.madvise(at, p(n), Advice(MADV_REMOVE)))
    };
    assert_eq!(remove(&mut mm, &cpu, q, 4), Err(Errno::EACCES));
    let frames = sim.frames_in_use();
    assert_eq!(remove(&mut mm, &cpu, s, 2), Ok(()));
    // The file's pages 0 and 1 (page 1's copy was the private mapping's).
    assert_eq!(sim.frames_in_use(), frames - 2);
    let read = |cpu: &mut Cpu, at: u64| cpu.read_u64(va(at)).unwrap();
    assert_eq!(
        [0, 1, 2, 3].map(|i| read(&mut cpu, s + p(i))),
        [0, 0, 12, 13]
    );
    assert_eq!(
        [0, 1, 2, 3].map(|i| read(&mut cpu, q + p(i))),
        [0, 99, 12, 13]
    );
    // A write after the hole is the file's again, seen by both.
    cpu.write_u64(va(s), 7).unwrap();
    assert_eq!(read(&mut cpu, q), 7);
    // Refusals.
    let a = anon(&mut mm, &cpu, BASE + p(32), 2);
    assert_eq!(remove(&mut mm, &cpu, a, 2), Err(Errno::EINVAL));
    shared_anon(&mut mm, &cpu, BASE + p(40), 3);
    cpu.write_u64(va(BASE + p(40)), 5).unwrap();
    assert_eq!(remove(&mut mm, &cpu, BASE + p(40), 4), Err(Errno::ENOMEM));
    assert_eq!(read(&mut cpu, BASE + p(40)), 0, "the mapped part first");
    cpu.run(|| mm.mlock(BASE + p(40), p(3), aspace_linux::flags::LockFlags(0)))
        .unwrap();
    assert_eq!(remove(&mut mm, &cpu, BASE + p(40), 3), Err(Errno::EINVAL));
    // A shared mapping, then one that refuses: the first is punched (as
    // Linux's walk does it before it meets the second), then `EINVAL`.
    shared_anon(&mut mm, &cpu, BASE + p(48), 1);
    anon(&mut mm, &cpu, BASE + p(49), 1);
    cpu.write_u64(va(BASE + p(48)), 8).unwrap();
    cpu.write_u64(va(BASE + p(49)), 9).unwrap();
    assert_eq!(remove(&mut mm, &cpu, BASE + p(48), 2), Err(Errno::EINVAL));
    assert_eq!(read(&mut cpu, BASE + p(48)), 0);
    assert_eq!(read(&mut cpu, BASE + p(49)), 9);
}

/// Guard pages of a private mapping keep its reservation even beside the
/// guard pages of a shared one with the same rights: the two kinds of
/// guard page (with and without a reservation) never become one area, so
/// unmapping part of one gives back only what it held.
#[test]
fn guard_pages_of_private_and_shared_mappings_keep_apart() {
    use aspace_linux::Advice;
    let p = |n: u64| n * PAGE_SIZE;
    let (sim, mut mm, cpu) = setup();
    let advise = |mm: &mut LinuxMm<SimMachine>, at: u64, n: u64, advice: i32| {
        cpu.run(|| mm.madvise(at, p(n), Advice(advice)))
    };
    anon(&mut mm, &cpu, BASE, 8);
    assert_eq!(advise(&mut mm, BASE, 8, MADV_GUARD_INSTALL), Ok(()));
    shared_anon(&mut mm, &cpu, BASE, 4);
    assert_eq!(advise(&mut mm, BASE, 4, MADV_GUARD_INSTALL), Ok(()));
    // The same rights on both: the core's areas could merge.
    cpu.run(|| mm.mprotect(BASE, p(8), Prot::R)).unwrap();
    cpu.run(|| mm.munmap(BASE + p(6), p(2))).unwrap();
    let reserve = sim.system().reserve();
    // The private mapping's two guard pages left still hold theirs.
    reserve.set_limit(reserve.committed());
    assert_eq!(advise(&mut mm, BASE + p(4), 2, MADV_GUARD_REMOVE), Ok(()));
    assert!(!mm.is_guard(BASE + p(4)) && mm.is_guard(BASE + p(3)));
}

/// `RLIMIT_MEMLOCK` binds as on Linux (the differential test compares the
/// common cases with a limit of 24 pages): what it sees least, checked
/// here with exact counts.
#[test]
fn rlimit_memlock_binds_locking_calls() {
    use aspace_linux::{LockAllFlags, LockFlags};
    let (_sim, mut mm, cpu) = setup();
    let page = |i: u64| BASE + i * PAGE_SIZE;
    let locked_map = |mm: &mut LinuxMm<SimMachine>, at: u64, pages: u64| {
        cpu.run(|| {
            mm.mmap(
                at,
                pages * PAGE_SIZE,
                Prot::RW,
                flags(ANON | MAP_FIXED | MAP_LOCKED),
                None,
                0,
            )
        })
    };
    // No limit by default (CAP_IPC_LOCK).
    assert_eq!(mm.memlock_limit(), None);
    // A limit of 0: nothing may be locked at all.
    mm.set_memlock_limit(Some(0));
    assert_eq!(locked_map(&mut mm, page(0), 1), Err(Errno::EPERM));
    anon(&mut mm, &cpu, page(0), 8);
    let lock = |mm: &mut LinuxMm<SimMachine>, i: u64, n: u64| {
        cpu.run(|| mm.mlock(page(i), n * PAGE_SIZE, LockFlags(0)))
    };
    assert_eq!(lock(&mut mm, 0, 1), Err(Errno::EPERM));
    assert_eq!(
        cpu.run(|| mm.mlockall(LockAllFlags(MCL_FUTURE))),
        Err(Errno::EPERM)
    );
    // Less than a page is not 0: locking is allowed, and no page fits.
    mm.set_memlock_limit(Some(100));
    assert_eq!(lock(&mut mm, 0, 1), Err(Errno::ENOMEM));
    assert_eq!(locked_map(&mut mm, page(16), 1), Err(Errno::EAGAIN));
    // Four pages. A length that wraps is ENOMEM under a limit (Linux
    // checks the limit first), EINVAL without one.
    mm.set_memlock_limit(Some(4 * PAGE_SIZE));
    let wrap = |mm: &mut LinuxMm<SimMachine>| {
        cpu.run(|| mm.mlock(page(0), 0u64.wrapping_sub(PAGE_SIZE), LockFlags(0)))
    };
    assert_eq!(wrap(&mut mm), Err(Errno::ENOMEM));
    mm.set_memlock_limit(None);
    assert_eq!(wrap(&mut mm), Err(Errno::EINVAL));
    mm.set_memlock_limit(Some(4 * PAGE_SIZE));
    assert_eq!(lock(&mut mm, 0, 3), Ok(()));
    assert_eq!(mm.locked_pages(), 3);
    // Two more would be five: refused with nothing changed; over pages
    // locked already, only the new ones count.
    let maps = mm.maps();
    assert_eq!(lock(&mut mm, 2, 3), Err(Errno::ENOMEM));
    assert_eq!(mm.maps(), maps);
    assert_eq!(lock(&mut mm, 1, 3), Ok(()));
    assert_eq!(mm.locked_pages(), 4);
    // A locked mapping past it: EAGAIN, also over the pages it replaces.
    assert_eq!(locked_map(&mut mm, page(16), 1), Err(Errno::EAGAIN));
    assert_eq!(locked_map(&mut mm, page(0), 1), Err(Errno::EAGAIN));
    // Unlocking gives room back; a locked mapping grown past it is EAGAIN.
    cpu.run(|| mm.munlock(page(0), 4 * PAGE_SIZE)).unwrap();
    assert_eq!(mm.locked_pages(), 0);
    assert_eq!(locked_map(&mut mm, page(16), 3), Ok(page(16)));
    let grow = |mm: &mut LinuxMm<SimMachine>, pages: u64| {
        cpu.run(|| mm.mremap(page(16), 3 * PAGE_SIZE, pages * PAGE_SIZE, RemapFlags(0), 0))
    };
    assert_eq!(grow(&mut mm, 5), Err(Errno::EAGAIN));
    assert_eq!(grow(&mut mm, 4), Ok(page(16)));
    assert_eq!(mm.locked_pages(), 4);
    // MCL_CURRENT with more mapped than the limit: ENOMEM; MCL_FUTURE then
    // keeps the break and new mappings within it.
    assert_eq!(
        cpu.run(|| mm.mlockall(LockAllFlags(MCL_CURRENT))),
        Err(Errno::ENOMEM)
    );
    cpu.run(|| mm.munmap(page(16), 4 * PAGE_SIZE)).unwrap();
    mm.set_memlock_limit(Some(2 * PAGE_SIZE + 100));
    cpu.run(|| mm.mlockall(LockAllFlags(MCL_FUTURE))).unwrap();
    let brk = mm.brk_now();
    assert_eq!(cpu.run(|| mm.brk(brk + 3 * PAGE_SIZE)), brk);
    assert_eq!(anon_result(&mut mm, &cpu, page(32), 3), Err(Errno::EAGAIN));
    assert_eq!(anon_result(&mut mm, &cpu, page(32), 2), Ok(page(32)));
    // A fork keeps the limit (its mappings are not locked).
    let child = cpu.run(|| mm.fork()).unwrap();
    assert_eq!(
        (child.memlock_limit(), child.locked_pages()),
        (Some(2 * PAGE_SIZE + 100), 0)
    );
}

/// Guard pages (`MADV_GUARD_INSTALL`): every access faults while the maps
/// stay as they were (no split); the pages' frames are gone; `MADV_DONTNEED`
/// and `mprotect` keep them; populating stops there (`EFAULT` for
/// `MADV_POPULATE_*`, `ENOMEM` for `mlock`, as Linux says); a locked
/// mapping refuses them; `mremap` moves them with their mapping (one whose
/// top page is one grows, moved or in place, by ordinary pages above it,
/// the guard page kept where it was in the mapping); a fork's
/// child has them too;
/// `MADV_GUARD_REMOVE` gives empty pages back (zeros in private anonymous
/// memory, the file's contents in a file mapping, which `mincore` showed
/// resident all along); the break grows past a guard page at its top.
#[test]
fn guard_pages_fault_until_removed() {
    use aspace_linux::Advice;
    let (sim, mut mm, mut cpu) = setup();
    let p = |i: u64| BASE + i * PAGE_SIZE;
    let va = VirtAddr::new;
    anon(&mut mm, &cpu, BASE, 8);
    for i in 0..8 {
        cpu.write_u64(va(p(i)), 100 + i).unwrap();
    }
    let maps = mm.maps();
    let frames = sim.frames_in_use();
    let advise = |mm: &mut LinuxMm<SimMachine>, cpu: &Cpu, at: u64, n: u64, advice: i32| {
        cpu.run(|| mm.madvise(at, n * PAGE_SIZE, Advice(advice)))
    };
    assert_eq!(advise(&mut mm, &cpu, p(2), 2, MADV_GUARD_INSTALL), Ok(()));
    assert_eq!(mm.maps(), maps, "no split");
    assert_eq!(sim.frames_in_use(), frames - 2, "the guarded pages' frames");
    let guarded = |cpu: &mut Cpu, i: u64| {
        cpu.read_u64(va(p(i))).is_err() && cpu.write_u64(va(p(i)), 1).is_err()
    };
    assert!(guarded(&mut cpu, 2) && guarded(&mut cpu, 3));
    assert_eq!(cpu.read_u64(va(p(1))).unwrap(), 101);
    assert_eq!(cpu.read_u64(va(p(4))).unwrap(), 104);
    assert!(mm.is_guard(p(3)) && !mm.is_guard(p(4)));
    // Dropping pages and changing rights keep them.
    assert_eq!(advise(&mut mm, &cpu, BASE, 8, MADV_DONTNEED), Ok(()));
    cpu.run(|| mm.mprotect(BASE, 8 * PAGE_SIZE, Prot::R))
        .unwrap();
    cpu.run(|| mm.mprotect(BASE, 8 * PAGE_SIZE, Prot::RW))
        .unwrap();
    assert!(guarded(&mut cpu, 2));
    assert_eq!(cpu.read_u64(va(p(1))).unwrap(), 0);
    // Populating stops at them.
    assert_eq!(
        advise(&mut mm, &cpu, BASE, 8, MADV_POPULATE_WRITE),
        Err(Errno::EFAULT)
    );
    assert!(resident_at(&mm, p(1)) && !resident_at(&mm, p(4)));
    let whole = 8 * PAGE_SIZE;
    assert_eq!(
        cpu.run(|| mm.mlock(BASE, whole, aspace_linux::flags::LockFlags(0))),
        Err(Errno::ENOMEM)
    );
    // Locked now: no more guard pages there (those in stay).
    assert_eq!(
        advise(&mut mm, &cpu, p(5), 1, MADV_GUARD_INSTALL),
        Err(Errno::EINVAL)
    );
    cpu.run(|| mm.munlock(BASE, whole)).unwrap();
    // A move carries the guard pages along (Linux moves their page table
    // entries), and back.
    let maps = mm.maps();
    let away = BASE + 0x60_0000;
    let there = RemapFlags(MREMAP_MAYMOVE | MREMAP_FIXED);
    assert_eq!(
        cpu.run(|| mm.mremap(BASE, whole, whole, there, away)),
        Ok(away)
    );
    assert!(mm.is_guard(away + 2 * PAGE_SIZE) && mm.is_guard(away + 3 * PAGE_SIZE));
    assert!(!mm.is_guard(away + PAGE_SIZE) && !mm.is_guard(away + 4 * PAGE_SIZE));
    assert!(cpu.read_u64(va(away + 2 * PAGE_SIZE)).is_err());
    assert_eq!(
        cpu.run(|| mm.mremap(away, whole, whole, there, BASE)),
        Ok(BASE)
    );
    assert_eq!(mm.maps(), maps);
    // A guard page at the top: a move that grows keeps it where it was in
    // the mapping and grows by ordinary pages above it (one core step);
    // and back, the same (to a fixed place, growing again, then shrunk).
    let grow = RemapFlags(MREMAP_MAYMOVE);
    assert_eq!(advise(&mut mm, &cpu, p(7), 1, MADV_GUARD_INSTALL), Ok(()));
    anon(&mut mm, &cpu, p(8), 1);
    let blocker = mm.maps();
    let committed = sim.system().reserve().committed();
    let moved = cpu
        .run(|| mm.mremap(BASE, whole, 2 * whole, grow, 0))
        .unwrap();
    assert_ne!(moved, BASE);
    let q = |i: u64| moved + i * PAGE_SIZE;
    assert!(mm.is_guard(q(7)) && !mm.is_guard(q(8)) && !mm.is_guard(q(15)));
    assert!(cpu.read_u64(va(q(7))).is_err() && cpu.write_u64(va(q(7)), 1).is_err());
    assert_eq!(cpu.read_u64(va(q(6))).unwrap(), 0);
    cpu.write_u64(va(q(8)), 88).unwrap();
    cpu.write_u64(va(q(15)), 1515).unwrap();
    assert_eq!(cpu.read_u64(va(q(8))).unwrap(), 88);
    assert!(mm
        .vma_at(q(15))
        .is_some_and(|v| v.start == moved && v.end == q(16)));
    assert_eq!(
        sim.system().reserve().committed(),
        committed + 8,
        "the growth reserves its pages"
    );
    // Shrunk in place, then back to a fixed place over the blocker,
    // growing again.
    assert_eq!(
        cpu.run(|| mm.mremap(moved, 2 * whole, whole, RemapFlags(0), 0)),
        Ok(moved)
    );
    assert_eq!(sim.system().reserve().committed(), committed);
    assert_eq!(
        cpu.run(|| mm.mremap(moved, whole, 2 * whole, there, BASE)),
        Ok(BASE)
    );
    assert!(mm.is_guard(p(7)) && !mm.is_guard(p(8)));
    assert_eq!(cpu.read_u64(va(p(8))).unwrap(), 0, "the blocker replaced");
    assert!(cpu.read_u64(va(q(8))).is_err(), "the old place is free");
    assert_eq!(
        cpu.run(|| mm.mremap(BASE, 2 * whole, whole, RemapFlags(0), 0)),
        Ok(BASE)
    );
    anon(&mut mm, &cpu, p(8), 1);
    assert_eq!(mm.maps(), blocker);
    cpu.run(|| mm.munmap(p(8), PAGE_SIZE)).unwrap();
    let in_place = RemapFlags(0);
    assert_eq!(
        cpu.run(|| mm.mremap(BASE, whole, 2 * whole, in_place, 0)),
        Ok(BASE)
    );
    assert!(mm.is_guard(p(7)) && !mm.is_guard(p(8)));
    assert!(mm.vma_at(p(15)).is_some_and(|v| v.start == BASE));
    cpu.write_u64(va(p(9)), 9).unwrap();
    assert_eq!(cpu.read_u64(va(p(9))).unwrap(), 9);
    assert_eq!(
        cpu.run(|| mm.mremap(BASE, 2 * whole, whole, in_place, 0)),
        Ok(BASE)
    );
    assert_eq!(mm.maps(), maps);
    assert!(mm.is_guard(p(7)));
    assert_eq!(advise(&mut mm, &cpu, p(7), 1, MADV_GUARD_REMOVE), Ok(()));
    // A move that shrinks unmaps the tail first: guard pages there are no
    // matter (as on Linux).
    let (m, to) = (BASE + 0x40_0000, BASE + 0x50_0000);
    anon(&mut mm, &cpu, m, 4);
    assert_eq!(
        advise(&mut mm, &cpu, m + 3 * PAGE_SIZE, 1, MADV_GUARD_INSTALL),
        Ok(())
    );
    let fixed = RemapFlags(MREMAP_MAYMOVE | MREMAP_FIXED);
    assert_eq!(
        cpu.run(|| mm.mremap(m, 4 * PAGE_SIZE, PAGE_SIZE, fixed, to)),
        Ok(to)
    );
    cpu.run(|| mm.munmap(to, PAGE_SIZE)).unwrap();
    // A fork's child has them.
    let child = mm.fork().unwrap();
    assert!(child.is_guard(p(2)) && !child.is_guard(p(1)));
    drop(child);
    // Taken out: empty pages, merged back into one area.
    assert_eq!(advise(&mut mm, &cpu, p(3), 1, MADV_GUARD_REMOVE), Ok(()));
    assert_eq!(cpu.read_u64(va(p(3))).unwrap(), 0);
    cpu.write_u64(va(p(3)), 7).unwrap();
    assert!(guarded(&mut cpu, 2));
    assert_eq!(advise(&mut mm, &cpu, BASE, 8, MADV_GUARD_REMOVE), Ok(()));
    assert_eq!(cpu.read_u64(va(p(2))).unwrap(), 0);
    assert_eq!(mm.space().areas().len(), 1, "the core's areas merged again");
    assert_eq!(
        cpu.run(|| mm.mremap(BASE, whole, 2 * whole, grow, 0)),
        Ok(BASE)
    );
    // A shared file mapping: the file keeps its page, mincore shows it.
    let (shared, private) = (BASE + 0x10_0000, BASE + 0x20_0000);
    file_pair(&mut mm, &mut cpu, shared, private, 4, Prot::RW, 0);
    assert_eq!(
        advise(&mut mm, &cpu, shared + PAGE_SIZE, 1, MADV_GUARD_INSTALL),
        Ok(())
    );
    assert!(cpu.read_u64(va(shared + PAGE_SIZE)).is_err());
    let mut vec = [0u8; 4];
    cpu.run(|| mm.mincore(shared, 4 * PAGE_SIZE, &mut vec))
        .unwrap();
    assert_eq!(vec, [1, 1, 1, 1]);
    assert_eq!(
        advise(&mut mm, &cpu, shared + PAGE_SIZE, 1, MADV_GUARD_REMOVE),
        Ok(())
    );
    assert_eq!(cpu.read_u64(va(shared + PAGE_SIZE)).unwrap(), 1001);
    // The break grows past a guard page at its top.
    let b0 = mm.brk_now();
    assert_eq!(cpu.run(|| mm.brk(b0 + 4 * PAGE_SIZE)), b0 + 4 * PAGE_SIZE);
    let top = b0 + 3 * PAGE_SIZE;
    assert_eq!(advise(&mut mm, &cpu, top, 1, MADV_GUARD_INSTALL), Ok(()));
    assert_eq!(cpu.run(|| mm.brk(b0 + 8 * PAGE_SIZE)), b0 + 8 * PAGE_SIZE);
    cpu.write_u64(va(b0 + 6 * PAGE_SIZE), 9).unwrap();
    assert!(cpu.read_u64(va(top)).is_err());
    let heap: Vec<_> = mm
        .maps()
        .into_iter()
        .filter(|l| l.start < b0 + 8 * PAGE_SIZE && l.end > b0)
        .collect();
    assert_eq!(heap.len(), 1, "one [heap] line: {heap:?}");
}

/// Two `mmap`s of a file at contiguous offsets are one Linux mapping and
/// one core area (so `mremap` moves them as one); a private and a shared
/// mapping of the same file side by side stay two areas.
#[test]
fn mappings_of_a_file_at_contiguous_offsets_are_one_area() {
    let (_sim, mut mm, mut cpu) = setup();
    let f = FileRef("F".into());
    let (a, len) = (BASE, 2 * PAGE_SIZE);
    let map = |mm: &mut LinuxMm<SimMachine>, cpu: &Cpu, at: u64, off: u64, kind: u32| {
        cpu.run(|| mm.mmap(at, len, Prot::RW, flags(kind | MAP_FIXED), Some(&f), off))
    };
    map(&mut mm, &cpu, a + len, len, MAP_SHARED).unwrap();
    map(&mut mm, &cpu, a, 0, MAP_SHARED).unwrap();
    for i in 0..4 {
        cpu.write_u64(VirtAddr::new(a + i * PAGE_SIZE), 50 + i)
            .unwrap();
    }
    assert_eq!(mm.maps().len(), 1);
    assert_eq!(mm.space().areas().len(), 1, "the core merged them too");
    let to = BASE + 0x10_0000;
    let flags_move = RemapFlags(MREMAP_MAYMOVE | MREMAP_FIXED);
    assert_eq!(
        cpu.run(|| mm.mremap(a, 2 * len, 2 * len, flags_move, to)),
        Ok(to)
    );
    for i in 0..4 {
        assert_eq!(
            cpu.read_u64(VirtAddr::new(to + i * PAGE_SIZE)).unwrap(),
            50 + i
        );
    }
    // Private beside shared: one object, two kinds, two areas.
    map(&mut mm, &cpu, a, 0, MAP_SHARED).unwrap();
    map(&mut mm, &cpu, a + len, len, MAP_PRIVATE).unwrap();
    assert_eq!(mm.space().area(VirtAddr::new(a)).unwrap().pages, 2);
    cpu.write_u64(VirtAddr::new(a + len), 7).unwrap();
    assert_eq!(
        cpu.read_u64(VirtAddr::new(to + len)).unwrap(),
        52,
        "the file kept its page"
    );
}

/// `mremap` with an old length of 0: a second mapping of a shared object
/// from that page of it (the pages are the object's: writes show through
/// both), placed or at a fixed address; a private mapping `EINVAL`, no
/// `MREMAP_MAYMOVE` `ENOMEM`, nothing changed.
#[test]
fn mremap_of_nothing_maps_a_shared_object_again() {
    let (_sim, mut mm, mut cpu) = setup();
    let va = VirtAddr::new;
    let shared = BASE;
    shared_anon(&mut mm, &cpu, shared, 4);
    anon(&mut mm, &cpu, BASE + 0x10_0000, 2);
    cpu.write_u64(va(shared + PAGE_SIZE), 11).unwrap();
    let maps = mm.maps();
    let stay = RemapFlags(0);
    let may = RemapFlags(MREMAP_MAYMOVE);
    assert_eq!(
        cpu.run(|| mm.mremap(shared + PAGE_SIZE, 0, 2 * PAGE_SIZE, stay, 0)),
        Err(Errno::ENOMEM)
    );
    assert_eq!(
        cpu.run(|| mm.mremap(BASE + 0x10_0000, 0, PAGE_SIZE, may, 0)),
        Err(Errno::EINVAL)
    );
    assert_eq!(mm.maps(), maps);
    let copy = cpu
        .run(|| mm.mremap(shared + PAGE_SIZE, 0, 2 * PAGE_SIZE, may, 0))
        .unwrap();
    assert_eq!(cpu.read_u64(va(copy)).unwrap(), 11);
    cpu.write_u64(va(copy + PAGE_SIZE), 22).unwrap();
    assert_eq!(cpu.read_u64(va(shared + 2 * PAGE_SIZE)).unwrap(), 22);
    let line = mm.maps().into_iter().find(|l| l.start == copy).unwrap();
    assert_eq!(
        (line.end - line.start, line.offset),
        (2 * PAGE_SIZE, PAGE_SIZE)
    );
    // Fixed: what was at the target goes.
    let to = BASE + 0x10_0000;
    let fixed = RemapFlags(MREMAP_MAYMOVE | MREMAP_FIXED);
    assert_eq!(
        cpu.run(|| mm.mremap(shared, 0, PAGE_SIZE, fixed, to)),
        Ok(to)
    );
    cpu.write_u64(va(to), 33).unwrap();
    assert_eq!(cpu.read_u64(va(shared)).unwrap(), 33);
    // A fixed target at the page itself: Linux unmaps the target (the
    // page with it) and then finds no mapping there.
    let last = shared + 3 * PAGE_SIZE;
    assert_eq!(
        cpu.run(|| mm.mremap(last, 0, PAGE_SIZE, fixed, last)),
        Err(Errno::EFAULT)
    );
    assert!(mm.vma_at(last).is_none() && mm.vma_at(last - PAGE_SIZE).is_some());
}

/// `MREMAP_DONTUNMAP`: the pages move without a copy, the old range stays
/// mapped and empty (zeros in private anonymous memory, the file's
/// contents in a file mapping); the old mapping loses its lock, and a
/// locked range stays counted against `RLIMIT_MEMLOCK`, as on Linux.
#[test]
fn mremap_dontunmap_moves_the_pages_and_leaves_the_range() {
    let (sim, mut mm, mut cpu) = setup();
    let va = VirtAddr::new;
    anon(&mut mm, &cpu, BASE, 4);
    for i in 0..4 {
        cpu.write_u64(va(BASE + i * PAGE_SIZE), 40 + i).unwrap();
    }
    let frame = mm.space().translate(va(BASE + PAGE_SIZE).page()).unwrap().0;
    let frames = sim.frames_in_use();
    let flags_du = RemapFlags(MREMAP_MAYMOVE | MREMAP_DONTUNMAP);
    let to = cpu
        .run(|| mm.mremap(BASE + PAGE_SIZE, 2 * PAGE_SIZE, 2 * PAGE_SIZE, flags_du, 0))
        .unwrap();
    assert_eq!(mm.space().translate(va(to).page()).unwrap().0, frame);
    assert!(
        sim.frames_in_use() <= frames + 2,
        "page tables at most, no copy"
    );
    assert_eq!(cpu.read_u64(va(to + PAGE_SIZE)).unwrap(), 42);
    assert_eq!(cpu.read_u64(va(BASE + PAGE_SIZE)).unwrap(), 0);
    assert_eq!(cpu.read_u64(va(BASE + 3 * PAGE_SIZE)).unwrap(), 43);
    assert!(mm.vma_at(BASE + PAGE_SIZE).is_some(), "still mapped");
    // Not the same size, or without MREMAP_MAYMOVE: EINVAL.
    let bad = RemapFlags(MREMAP_DONTUNMAP);
    assert_eq!(
        cpu.run(|| mm.mremap(BASE, PAGE_SIZE, PAGE_SIZE, bad, 0)),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        cpu.run(|| mm.mremap(BASE, PAGE_SIZE, 2 * PAGE_SIZE, flags_du, 0)),
        Err(Errno::EINVAL)
    );
    // A locked mapping: the old one is not locked after, the pages stay
    // counted.
    let l = BASE + 0x10_0000;
    cpu.run(|| {
        mm.mmap(
            l,
            2 * PAGE_SIZE,
            Prot::RW,
            flags(ANON | MAP_FIXED | MAP_LOCKED),
            None,
            0,
        )
    })
    .unwrap();
    let locked = mm.locked_pages();
    let moved = cpu
        .run(|| mm.mremap(l, 2 * PAGE_SIZE, 2 * PAGE_SIZE, flags_du, 0))
        .unwrap();
    assert!(!mm.vma_at(l).unwrap().flags.contains(VmFlags::LOCKED));
    assert!(mm.vma_at(moved).unwrap().flags.contains(VmFlags::LOCKED));
    assert_eq!(mm.locked_pages(), locked + 2);
    // The middle of a locked mapping: the whole old mapping is unlocked,
    // all its pages stay counted (Linux's VmLck goes 4 -> 6).
    let l4 = BASE + 0x18_0000;
    cpu.run(|| {
        mm.mmap(
            l4,
            4 * PAGE_SIZE,
            Prot::RW,
            flags(ANON | MAP_FIXED | MAP_LOCKED),
            None,
            0,
        )
    })
    .unwrap();
    let locked = mm.locked_pages();
    cpu.run(|| mm.mremap(l4 + PAGE_SIZE, 2 * PAGE_SIZE, 2 * PAGE_SIZE, flags_du, 0))
        .unwrap();
    assert!(!mm
        .vma_at(l4 + 3 * PAGE_SIZE)
        .unwrap()
        .flags
        .contains(VmFlags::LOCKED));
    assert_eq!(mm.locked_pages(), locked + 2);
    // The old mapping keeps its charge: a new neighbour merges with it.
    let one = BASE + 0x1c_0000;
    anon(&mut mm, &cpu, one, 1);
    cpu.run(|| mm.mremap(one, PAGE_SIZE, PAGE_SIZE, flags_du, 0))
        .unwrap();
    anon(&mut mm, &cpu, one + PAGE_SIZE, 1);
    let lines = mm
        .maps()
        .into_iter()
        .filter(|m| m.start < one + 2 * PAGE_SIZE && m.end > one)
        .count();
    assert_eq!(lines, 1, "one line, as on Linux");
    // A shared file mapping: the old range reads the file again.
    let (shared, private) = (BASE + 0x20_0000, BASE + 0x30_0000);
    file_pair(&mut mm, &mut cpu, shared, private, 4, Prot::RW, 0);
    let f = cpu
        .run(|| mm.mremap(shared, 2 * PAGE_SIZE, 2 * PAGE_SIZE, flags_du, 0))
        .unwrap();
    assert_eq!(cpu.read_u64(va(f + PAGE_SIZE)).unwrap(), 1001);
    assert_eq!(cpu.read_u64(va(shared + PAGE_SIZE)).unwrap(), 1001);
}

/// `mremap` with `MREMAP_FIXED` and the same size over several mappings
/// (Linux 6.17+): the mappings and the hole between them move (the same
/// frames), each keeping its rights; with `MREMAP_DONTUNMAP` each old
/// mapping stays, empty; what lies at the target under the old range's
/// hole stays (Linux moves each mapping by itself).
#[test]
fn mremap_moves_several_mappings_at_once() {
    let (sim, mut mm, mut cpu) = setup();
    let p = |i: u64| BASE + i * PAGE_SIZE;
    let va = VirtAddr::new;
    anon(&mut mm, &cpu, BASE, 4);
    anon(&mut mm, &cpu, p(5), 2);
    for i in [0, 1, 2, 3, 5, 6] {
        cpu.write_u64(va(p(i)), 100 + i).unwrap();
        mm.touched(p(i), true);
    }
    cpu.run(|| mm.mprotect(p(2), 2 * PAGE_SIZE, Prot::R))
        .unwrap();
    let frame = mm.space().translate(va(p(6)).page()).unwrap().0;
    let frames = sim.frames_in_use();
    let fixed = RemapFlags(MREMAP_MAYMOVE | MREMAP_FIXED);
    let to = BASE + 0x10_0000;
    let q = |i: u64| to + i * PAGE_SIZE;
    assert_eq!(
        cpu.run(|| mm.mremap(BASE, 7 * PAGE_SIZE, 7 * PAGE_SIZE, fixed, to)),
        Ok(to)
    );
    let spans: Vec<(u64, u64, Prot)> = mm.vmas().map(|v| (v.start, v.end, v.prot)).collect();
    assert_eq!(
        spans,
        [
            (q(0), q(2), Prot::RW),
            (q(2), q(4), Prot::R),
            (q(5), q(7), Prot::RW)
        ]
    );
    assert_eq!(mm.space().translate(va(q(6)).page()).unwrap().0, frame);
    let tables = mm.space().page_table_frames();
    assert!(sim.frames_in_use() <= frames + tables, "no page copied");
    for i in [0, 1, 2, 3, 5, 6] {
        assert_eq!(cpu.read_u64(va(q(i))).unwrap(), 100 + i);
    }
    assert!(cpu.read_u64(va(q(4))).is_err() && cpu.read_u64(va(p(0))).is_err());
    // Leaving the old mappings, empty, in place.
    let dont = RemapFlags(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP);
    assert_eq!(
        cpu.run(|| mm.mremap(to, 7 * PAGE_SIZE, 7 * PAGE_SIZE, dont, BASE)),
        Ok(BASE)
    );
    assert_eq!(mm.vmas().count(), 6);
    for i in [0, 3, 6] {
        assert_eq!(cpu.read_u64(va(p(i))).unwrap(), 100 + i);
        assert_eq!(cpu.read_u64(va(q(i))).unwrap(), 0, "left page {i}");
    }
    assert!(cpu.write_u64(va(q(2)), 1).is_err(), "left read-only");
    // A mapping at the target across the landing places and under the
    // hole: replaced where the mappings land, kept under the hole.
    let t = |i: u64| BASE + 0x20_0000 + i * PAGE_SIZE;
    anon(&mut mm, &cpu, t(3), 3);
    cpu.write_u64(va(t(4)), 44).unwrap();
    assert_eq!(
        cpu.run(|| mm.mremap(BASE, 7 * PAGE_SIZE, 7 * PAGE_SIZE, fixed, t(0))),
        Ok(t(0))
    );
    assert_eq!(cpu.read_u64(va(t(4))).unwrap(), 44, "under the hole");
    assert_eq!(cpu.read_u64(va(t(5))).unwrap(), 105);
    assert_eq!(cpu.read_u64(va(t(3))).unwrap(), 103);
    let at = |a: u64| mm.vma_at(a).map(|v| (v.start, v.end, v.prot));
    assert_eq!(at(t(4)), Some((t(4), t(5), Prot::RW)));
    assert_eq!(at(t(3)), Some((t(2), t(4), Prot::R)));
}

/// Guard pages in a mapping that reserves memory keep its reservation (as
/// Linux keeps charging them): putting them in and taking them out changes
/// nothing committed, and works at the commit limit; in a shared mapping
/// (which reserves nothing) they reserve nothing either.
#[test]
fn guard_pages_keep_their_mappings_reservation() {
    use aspace_linux::Advice;
    let (sim, mut mm, cpu) = setup();
    let reserve = sim.system().reserve();
    anon(&mut mm, &cpu, BASE, 8);
    let committed = reserve.committed();
    let advise = |mm: &mut LinuxMm<SimMachine>, at: u64, n: u64, advice: i32| {
        cpu.run(|| mm.madvise(at, n * PAGE_SIZE, Advice(advice)))
    };
    assert_eq!(
        advise(&mut mm, BASE + PAGE_SIZE, 3, MADV_GUARD_INSTALL),
        Ok(())
    );
    assert_eq!(reserve.committed(), committed);
    // At the commit limit, taking them out needs nothing more.
    let limit = reserve.limit();
    reserve.set_limit(reserve.committed());
    assert_eq!(advise(&mut mm, BASE, 8, MADV_GUARD_REMOVE), Ok(()));
    assert!(!mm.is_guard(BASE + 2 * PAGE_SIZE));
    assert_eq!(reserve.committed(), committed);
    reserve.set_limit(limit);
    let shared = BASE + 0x10_0000;
    shared_anon(&mut mm, &cpu, shared, 4);
    let committed = reserve.committed();
    assert_eq!(advise(&mut mm, shared, 2, MADV_GUARD_INSTALL), Ok(()));
    assert_eq!(reserve.committed(), committed);
    assert_eq!(advise(&mut mm, shared, 2, MADV_GUARD_REMOVE), Ok(()));
    assert_eq!(reserve.committed(), committed);
}

/// `MREMAP_DONTUNMAP` of a range holding a guard page (placed, and to a
/// fixed place over several mappings): the guard page goes with the pages,
/// as Linux moves its page table entry, and the old range stays its
/// mappings, empty, with no guard page left.
#[test]
fn dontunmap_takes_guard_pages_along() {
    use aspace_linux::Advice;
    let (_sim, mut mm, mut cpu) = setup();
    let p = |i: u64| BASE + i * PAGE_SIZE;
    let va = VirtAddr::new;
    anon(&mut mm, &cpu, BASE, 4);
    for i in 0..4 {
        cpu.write_u64(va(p(i)), 100 + i).unwrap();
    }
    let guard = |mm: &mut LinuxMm<SimMachine>, cpu: &Cpu, at: u64| {
        cpu.run(|| mm.madvise(at, PAGE_SIZE, Advice(MADV_GUARD_INSTALL)))
    };
    assert_eq!(guard(&mut mm, &cpu, p(1)), Ok(()));
    let maps = mm.maps();
    let leave = RemapFlags(MREMAP_MAYMOVE | MREMAP_DONTUNMAP);
    let whole = 4 * PAGE_SIZE;
    let to = cpu.run(|| mm.mremap(BASE, whole, whole, leave, 0)).unwrap();
    assert!(mm.is_guard(to + PAGE_SIZE) && !mm.is_guard(p(1)));
    assert_eq!(cpu.read_u64(va(to)).unwrap(), 100);
    assert_eq!(cpu.read_u64(va(to + 3 * PAGE_SIZE)).unwrap(), 103);
    assert!(cpu.read_u64(va(to + PAGE_SIZE)).is_err());
    for i in 0..4 {
        assert_eq!(cpu.read_u64(va(p(i))).unwrap(), 0, "old page {i}");
    }
    assert!(mm
        .vma_at(p(3))
        .is_some_and(|v| v.start == BASE && v.end == p(4)));
    // Back to a fixed place over the old range (two mappings there now:
    // the read-only page cuts it), the guard page again along.
    cpu.run(|| mm.mprotect(p(2), PAGE_SIZE, Prot::R)).unwrap();
    let fixed = RemapFlags(MREMAP_MAYMOVE | MREMAP_DONTUNMAP | MREMAP_FIXED);
    assert_eq!(
        cpu.run(|| mm.mremap(to, whole, whole, fixed, BASE)),
        Ok(BASE)
    );
    assert!(mm.is_guard(p(1)) && !mm.is_guard(to + PAGE_SIZE));
    assert_eq!(cpu.read_u64(va(p(3))).unwrap(), 103);
    assert_eq!(cpu.read_u64(va(to + PAGE_SIZE)).unwrap(), 0);
    // The place it left: one mapping, empty; without it, the maps are as
    // at the start.
    assert!(mm.vma_at(to).is_some_and(|v| v.end == to + whole));
    cpu.run(|| mm.munmap(to, whole)).unwrap();
    assert_eq!(mm.maps(), maps);
}
