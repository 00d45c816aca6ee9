//! `LinuxMm` on the simulated machine: what the differential test cannot
//! see from Linux's side (frames moved rather than copied, objects shared
//! between mappings, refusals that change nothing).

use aspace::{PhysMemory, VirtAddr, PAGE_SIZE};
use aspace_linux::consts::*;
use aspace_linux::mm::{HolePolicy, Layout, LinuxMm};
use aspace_linux::{Errno, FileRef, MapFlags, Prot, RemapFlags};
use aspace_sim::{Cpu, Sim, SimConfig, SimMachine};

const BASE: u64 = 0x7000_0000_0000;

fn setup() -> (Sim, LinuxMm<SimMachine>, Cpu) {
    let sim = Sim::new(SimConfig {
        cpus: 2,
        memory: 16 << 20,
        ..SimConfig::default()
    })
    .unwrap();
    let space = sim.system().create().unwrap();
    let mut cpu = sim.cpu(0);
    cpu.switch_to(&space).unwrap();
    let mm = LinuxMm::new(
        sim.system().clone(),
        space,
        Layout::new(BASE + (1 << 30), 0x5555_0000_0000),
    );
    (sim, mm, cpu)
}

fn flags(bits: u32) -> MapFlags {
    MapFlags(bits)
}

const ANON: u32 = MAP_PRIVATE | MAP_ANONYMOUS;

fn anon(mm: &mut LinuxMm<SimMachine>, cpu: &Cpu, addr: u64, pages: u64) -> u64 {
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
    .unwrap()
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
    // A write faults (the core keeps the area read-only); the fault path
    // hands it to cow_fault, which gives the page a copy of its own.
    assert!(cpu.write_u64(VirtAddr::new(c + 8), 1).is_err());
    assert!(
        !cpu.run(|| mm.cow_fault(a + 8)),
        "shared mappings need none"
    );
    assert!(cpu.run(|| mm.cow_fault(c + 8)));
    cpu.write_u64(VirtAddr::new(c + 8), 1).unwrap();
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
