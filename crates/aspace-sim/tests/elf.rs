//! The ELF backend and loader on real executables of this machine, and on
//! truncated, corrupted and hostile ones.

use aspace::backend::elf::ElfImage;
use aspace::loader::{self, ElfError, DEFAULT_PIE_BIAS};
use aspace::{AreaFlags, FaultReason, Machine, PhysMemory, VirtAddr, PAGE_SIZE};
use aspace_sim::{Sim, SimConfig};

const CANDIDATES: &[&str] = &[
    "/bin/ls",
    "/usr/bin/env",
    "/bin/true",
    "/bin/cat",
    "/usr/bin/sort",
];

/// The executables found here; in CI at least two must exist (Debian has
/// them all), so no ELF test passes by finding nothing.
fn executables() -> Vec<(&'static str, Vec<u8>)> {
    let found: Vec<_> = CANDIDATES
        .iter()
        .filter_map(|p| std::fs::read(p).ok().map(|b| (*p, b)))
        .collect();
    assert!(
        found.len() >= 2 || std::env::var_os("CI").is_none(),
        "CI needs real executables to load; found {found:?}",
        found = found.iter().map(|f| f.0).collect::<Vec<_>>()
    );
    assert!(
        !found.is_empty(),
        "no executable found among {CANDIDATES:?}"
    );
    found
}

fn sim() -> Sim {
    Sim::new(SimConfig {
        memory: 128 << 20,
        ..SimConfig::default()
    })
    .unwrap()
}

fn rd_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn wr_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Offsets of the PT_LOAD program headers of a 64-bit ELF.
fn load_phdrs(b: &[u8]) -> Vec<usize> {
    let phoff = rd_u64(b, 0x20) as usize;
    let entsize = u16::from_le_bytes([b[0x36], b[0x37]]) as usize;
    let num = u16::from_le_bytes([b[0x38], b[0x39]]) as usize;
    (0..num)
        .map(|i| phoff + i * entsize)
        .filter(|&o| u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) == 1)
        .collect()
}

#[test]
fn every_byte_of_every_segment_reads_back_through_the_mmu() {
    for (path, bytes) in executables() {
        let sim = sim();
        let m = sim.system().machine();
        let image = ElfImage::load(m, &bytes).unwrap();
        let space = sim.system().create().unwrap();
        let loaded = loader::load(&space, &image, &bytes, None).unwrap();
        assert!(!loaded.segments.is_empty());
        let mut cpu = sim.cpu(0);
        cpu.switch_to(&space).unwrap();
        for s in &loaded.segments {
            let mut mem = vec![0xeeu8; s.memsz as usize];
            cpu.read(VirtAddr::new(s.vaddr), &mut mem).unwrap();
            let file = &bytes[s.offset as usize..(s.offset + s.filesz) as usize];
            assert!(
                mem[..file.len()] == *file,
                "{path}: segment at {:#x} differs",
                s.vaddr
            );
            assert!(
                mem[file.len()..].iter().all(|&b| b == 0),
                "{path}: bss of segment at {:#x} not zero",
                s.vaddr
            );
        }
        assert_eq!(sim.hardware().stats().stale_accesses, 0);
    }
}

#[test]
fn read_only_file_pages_map_the_image_frames_without_copying() {
    for (path, bytes) in executables() {
        let sim = sim();
        let image = ElfImage::load(sim.system().machine(), &bytes).unwrap();
        let space = sim.system().create().unwrap();
        let loaded = loader::load(&space, &image, &bytes, None).unwrap();
        let mut cpu = sim.cpu(0);
        cpu.switch_to(&space).unwrap();
        let mut direct = 0;
        for s in loaded
            .segments
            .iter()
            .filter(|s| !s.flags.contains(AreaFlags::WRITE))
        {
            let first = s.vaddr.div_ceil(PAGE_SIZE) * PAGE_SIZE;
            let mut a = first;
            while a + PAGE_SIZE <= s.vaddr + s.filesz {
                cpu.read_u64(VirtAddr::new(a)).unwrap();
                let frame = space.translate(VirtAddr::new(a).page()).unwrap().0;
                let expect = image.frames()[((s.offset + a - s.vaddr) / PAGE_SIZE) as usize];
                assert_eq!(frame, expect, "{path}: page {a:#x} is a copy");
                direct += 1;
                a += PAGE_SIZE;
            }
        }
        assert!(direct > 0, "{path}: no page mapped from the image");
    }
}

#[test]
fn writes_to_a_writable_segment_leave_the_image_unchanged() {
    for (path, bytes) in executables() {
        let sim = sim();
        let m = sim.system().machine();
        let image = ElfImage::load(m, &bytes).unwrap();
        let space = sim.system().create().unwrap();
        let loaded = loader::load(&space, &image, &bytes, None).unwrap();
        let Some(s) = loaded
            .segments
            .iter()
            .find(|s| s.flags.contains(AreaFlags::WRITE))
        else {
            continue;
        };
        let mut cpu = sim.cpu(0);
        cpu.switch_to(&space).unwrap();
        let junk = vec![0x5au8; s.memsz as usize];
        cpu.write(VirtAddr::new(s.vaddr), &junk).unwrap();
        let mut back = vec![0u8; junk.len()];
        cpu.read(VirtAddr::new(s.vaddr), &mut back).unwrap();
        assert_eq!(back, junk);
        let mut img = vec![0u8; bytes.len()];
        for (i, f) in image.frames().iter().enumerate() {
            let off = i * PAGE_SIZE as usize;
            let n = (bytes.len() - off).min(PAGE_SIZE as usize);
            m.memory().read(f.start(), &mut img[off..off + n]);
        }
        assert!(img == bytes, "{path}: the image changed");
    }
}

#[test]
fn read_only_segments_refuse_writes_and_code_runs_only_where_executable() {
    for (path, bytes) in executables() {
        let sim = sim();
        let image = ElfImage::load(sim.system().machine(), &bytes).unwrap();
        let space = sim.system().create().unwrap();
        let loaded = loader::load(&space, &image, &bytes, None).unwrap();
        let mut cpu = sim.cpu(0);
        cpu.switch_to(&space).unwrap();
        for s in &loaded.segments {
            let a = VirtAddr::new(s.vaddr);
            if !s.flags.contains(AreaFlags::WRITE) {
                let e = cpu.write_u64(a, 1).unwrap_err();
                assert_eq!(e.reason, FaultReason::Access, "{path}");
            }
            let fetched = cpu.fetch(a);
            assert_eq!(
                fetched.is_ok(),
                s.flags.contains(AreaFlags::EXEC),
                "{path} {a}"
            );
        }
        // The entry point lies in an executable segment, whose image frame
        // was synced for instruction fetches before it was mapped.
        assert_eq!(cpu.fetch(loaded.entry).map(|_| ()), Ok(()), "{path}");
        assert_eq!(sim.hardware().stats().stale_fetches, 0, "{path}");
    }
}

#[test]
fn pie_executables_load_at_the_default_bias_and_the_given_one() {
    let (_, bytes) = executables().remove(0);
    let is_pie = u16::from_le_bytes([bytes[16], bytes[17]]) == 3;
    let sim = sim();
    let image = ElfImage::load(sim.system().machine(), &bytes).unwrap();
    let space = sim.system().create().unwrap();
    let loaded = loader::load(&space, &image, &bytes, None).unwrap();
    assert_eq!(loaded.bias, if is_pie { DEFAULT_PIE_BIAS } else { 0 });
    if is_pie {
        let other = sim.system().create().unwrap();
        let l2 = loader::load(&other, &image, &bytes, Some(0x1000_0000)).unwrap();
        assert_eq!(
            l2.entry.as_u64() - 0x1000_0000,
            loaded.entry.as_u64() - DEFAULT_PIE_BIAS
        );
    }
}

#[test]
fn destroying_the_space_returns_every_frame_and_the_image_can_be_released() {
    for (_, bytes) in executables() {
        let sim = sim();
        let baseline = sim.frames_in_use();
        let m = sim.system().machine();
        let image = ElfImage::load(m, &bytes).unwrap();
        let with_image = sim.frames_in_use();
        let space = sim.system().create().unwrap();
        let loaded = loader::load(&space, &image, &bytes, None).unwrap();
        {
            let mut cpu = sim.cpu(0);
            cpu.switch_to(&space).unwrap();
            for s in &loaded.segments {
                let mut a = s.vaddr & !(PAGE_SIZE - 1);
                while a < s.vaddr + s.memsz {
                    cpu.read_u64(VirtAddr::new(a)).unwrap();
                    a += PAGE_SIZE;
                }
            }
        }
        let image = ElfImage::release(image, m).unwrap_err(); // still mapped by areas
        drop(space);
        assert_eq!(sim.frames_in_use(), with_image);
        ElfImage::release(image, m).unwrap();
        assert_eq!(sim.frames_in_use(), baseline);
    }
}

#[test]
fn loading_over_an_existing_area_fails_and_leaves_nothing_behind() {
    let (_, bytes) = executables().remove(0);
    let sim = sim();
    let image = ElfImage::load(sim.system().machine(), &bytes).unwrap();
    let space = sim.system().create().unwrap();
    let (_, _, segs) = loader::parse(&bytes, None, space.user_end()).unwrap();
    let last = segs.last().unwrap();
    let clash = VirtAddr::new(last.vaddr & !(PAGE_SIZE - 1));
    space
        .area_create(clash, PAGE_SIZE, AreaFlags::READ)
        .unwrap();
    let err = loader::load(&space, &image, &bytes, None).unwrap_err();
    assert_eq!(err, ElfError::Area(aspace::Error::AddressNotAvailable));
    assert_eq!(
        space.areas().len(),
        1,
        "areas made before the clash are gone"
    );
}

// ---- hostile images ----

fn refused(bytes: &[u8]) -> ElfError {
    let sim = Sim::new(SimConfig {
        memory: 64 << 20,
        cpus: 1,
        asids: 4,
        tlb_entries: 8,
        ..SimConfig::default()
    })
    .unwrap();
    let image = ElfImage::load(sim.system().machine(), bytes).unwrap();
    let space = sim.system().create().unwrap();
    let e = loader::load(&space, &image, bytes, None).unwrap_err();
    assert!(space.areas().is_empty());
    e
}

#[test]
fn hostile_program_headers_are_refused_with_a_clear_error() {
    let (_, good) = executables().remove(0);
    let ph = load_phdrs(&good);
    assert!(ph.len() >= 2);
    let mut b = good.clone();
    let memsz = rd_u64(&b, ph[0] + 40);
    wr_u64(&mut b, ph[0] + 32, memsz + 1);
    assert_eq!(
        refused(&b),
        ElfError::FileLargerThanMemory(0).clone_index(&b, ph[0])
    );

    let mut b = good.clone();
    wr_u64(&mut b, ph[0] + 8, good.len() as u64);
    wr_u64(&mut b, ph[0] + 32, 16.min(rd_u64(&good, ph[0] + 40)));
    assert!(matches!(refused(&b), ElfError::OutsideFile(_)));

    let mut b = good.clone();
    wr_u64(&mut b, ph[0] + 8, u64::MAX - 4);
    assert!(matches!(refused(&b), ElfError::OutsideFile(_)));

    let mut b = good.clone();
    b[ph[0] + 4..ph[0] + 8].copy_from_slice(&7u32.to_le_bytes()); // R|W|X
    assert!(matches!(refused(&b), ElfError::WriteExec(_)));

    let mut b = good.clone();
    wr_u64(&mut b, ph[1] + 16, 0xffff_8000_0000_0000);
    assert!(matches!(refused(&b), ElfError::OutsideUserSpace(_)));

    let mut b = good.clone();
    wr_u64(&mut b, ph[1] + 16, u64::MAX - 0x100);
    assert!(matches!(refused(&b), ElfError::OutsideUserSpace(_)));

    let mut b = good.clone();
    let v0 = rd_u64(&good, ph[0] + 16);
    wr_u64(&mut b, ph[1] + 16, v0);
    assert!(matches!(refused(&b), ElfError::Overlap(_, _)));

    let mut b = good.clone();
    b[0] = 0x7e;
    assert!(matches!(refused(&b), ElfError::Malformed(_)));

    let mut b = good.clone();
    b[0x12] = 0x28; // e_machine = ARM
    b[0x13] = 0;
    assert!(matches!(refused(&b), ElfError::Unsupported(_)));
    // The instruction sets the kernels run are placed alike: RISC-V and
    // AArch64 files pass the same checks.
    for machine in [0xf3u8, 0xb7] {
        b[0x12] = machine;
        assert!(
            loader::parse(&b, None, 0x8000_0000_0000).is_ok(),
            "{machine:#x}"
        );
    }

    let mut b = good.clone();
    b[0x10] = 1; // ET_REL
    b[0x11] = 0;
    assert!(matches!(refused(&b), ElfError::Unsupported(_)));
}

trait CloneIndex {
    fn clone_index(self, b: &[u8], ph: usize) -> Self;
}

impl CloneIndex for ElfError {
    /// The same error with the program-header index of `ph`.
    fn clone_index(self, b: &[u8], ph: usize) -> Self {
        let phoff = rd_u64(b, 0x20) as usize;
        let entsize = u16::from_le_bytes([b[0x36], b[0x37]]) as usize;
        match self {
            ElfError::FileLargerThanMemory(_) => {
                ElfError::FileLargerThanMemory((ph - phoff) / entsize)
            }
            e => e,
        }
    }
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn truncated_and_corrupted_images_give_errors_never_panics() {
    let (path, good) = executables().remove(0);
    let sim = Sim::new(SimConfig {
        memory: 64 << 20,
        cpus: 1,
        asids: 4,
        tlb_entries: 8,
        ..SimConfig::default()
    })
    .unwrap();
    let m = sim.system().machine();
    let user_end = sim.system().kernel().user_end();
    let ph_end = {
        let phoff = rd_u64(&good, 0x20) as usize;
        let n = u16::from_le_bytes([good[0x38], good[0x39]]) as usize;
        phoff + n * 56
    };
    // Every truncation inside the headers, then a spread of longer ones.
    let mut lengths: Vec<usize> = (0..=ph_end.min(good.len())).collect();
    lengths.extend((0..64).map(|i| ph_end + (good.len() - ph_end) * i / 64));
    for len in lengths {
        let cut = &good[..len];
        if let Ok((_, _, segs)) = loader::parse(cut, None, user_end) {
            assert!(
                segs.iter().all(|s| s.offset + s.filesz <= len as u64),
                "{path} cut at {len}"
            );
        }
    }
    let seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rng = Rng(seed);
    let baseline = sim.frames_in_use();
    for round in 0..3000 {
        let mut b = good.clone();
        for _ in 0..1 + rng.next() % 4 {
            let at = (rng.next() % ph_end as u64) as usize;
            b[at] = rng.next() as u8;
        }
        let image = ElfImage::load(m, &b).unwrap();
        let space = sim.system().create().unwrap();
        match loader::load(&space, &image, &b, None) {
            Ok(l) => {
                for s in &l.segments {
                    assert!(!s.flags.contains(AreaFlags::WRITE | AreaFlags::EXEC));
                    assert!(s.vaddr >= PAGE_SIZE && s.vaddr + s.memsz <= user_end);
                    assert!(s.offset + s.filesz <= b.len() as u64);
                }
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
        drop(space);
        ElfImage::release(image, m)
            .unwrap_or_else(|_| panic!("seed {seed:#x} round {round}: image still in use"));
        assert_eq!(
            sim.frames_in_use(),
            baseline,
            "seed {seed:#x} round {round}: frames leaked"
        );
    }
}
