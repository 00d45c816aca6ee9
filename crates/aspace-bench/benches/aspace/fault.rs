//! Anonymous first-touch faults through the simulated MMU against the floor
//! (zeroing a 4 KiB frame, hot and cold) and Linux's real fault on this
//! machine; re-faults of present pages (TLB miss + walk) and the raced
//! fault path.

use std::hint::black_box;
use std::ptr;

use crate::clock::Clock;
use crate::paired;
use aspace::{Access, FaultOutcome, Frame, PhysMemory, VirtAddr, PAGE_SIZE};
use aspace_bench::{sim, RW};
use aspace_sim::{Cpu, Sim};
use criterion::{BenchmarkId, Criterion, Throughput};

/// Pages touched per first-touch iteration (1 MiB).
pub const TOUCH_PAGES: u64 = 256;
/// Pages cycled through by the re-fault benchmarks.
pub const WORKING_SET: u64 = 64;
/// The cold buffer: far larger than the 32 MiB L3.
const COLD_BYTES: usize = 512 << 20;

const BASE: u64 = 0x40_0000;

fn machine(tlb_entries: usize) -> (Sim, aspace_sim::SpaceHandle, Cpu) {
    let sim = sim(1, 64 << 20, 64, tlb_entries);
    let space = sim.system().create().expect("address space");
    let mut cpu = sim.cpu(0);
    cpu.switch_to(&space).expect("ASID");
    (sim, space, cpu)
}

/// A machine whose space holds one area of `pages` pages, all touched.
fn resident(tlb_entries: usize, pages: u64) -> (Sim, aspace_sim::SpaceHandle, Cpu) {
    let (sim, space, mut cpu) = machine(tlb_entries);
    space
        .area_create(VirtAddr::new(BASE), pages * PAGE_SIZE, RW)
        .expect("area");
    for p in 0..pages {
        cpu.write_u64(VirtAddr::new(BASE + p * PAGE_SIZE), p)
            .expect("anonymous memory");
    }
    (sim, space, cpu)
}

pub fn bench(c: &mut Criterion<Clock>) {
    let mut g = c.benchmark_group("first_touch");
    g.throughput(Throughput::Elements(TOUCH_PAGES));
    // Machines are built on first use: criterion calls each routine many
    // times.
    let mut m = None;
    g.bench_function(BenchmarkId::new("aspace", TOUCH_PAGES), |b| {
        let (_sim, space, cpu) = m.get_or_insert_with(|| machine(64));
        let base = VirtAddr::new(BASE);
        b.iter(|| {
            space
                .area_create(base, TOUCH_PAGES * PAGE_SIZE, RW)
                .expect("free");
            for p in 0..TOUCH_PAGES {
                cpu.write_u64(VirtAddr::new(BASE + p * PAGE_SIZE), p)
                    .expect("anonymous memory");
            }
            cpu.run(|| space.area_destroy(base)).expect("created");
        });
    });
    let ran = m.is_some();
    drop(m);
    let mut m = None;
    g.bench_function(BenchmarkId::new("aspace_core", TOUCH_PAGES), |b| {
        // The same without the simulated MMU: the handler called directly
        // on each fresh page (core + anonymous backend + frame allocator),
        // then the destroy.
        let (_sim, space, cpu) = m.get_or_insert_with(|| machine(64));
        let base = VirtAddr::new(BASE);
        b.iter(|| {
            space
                .area_create(base, TOUCH_PAGES * PAGE_SIZE, RW)
                .expect("free");
            cpu.run(|| {
                for p in 0..TOUCH_PAGES {
                    let r = space.page_fault(
                        VirtAddr::new(BASE + p * PAGE_SIZE),
                        Access::Write,
                        aspace::FaultContext::User,
                    );
                    debug_assert_eq!(r, FaultOutcome::Ok);
                }
                space.area_destroy(base)
            })
            .expect("created");
        });
    });
    g.bench_function(BenchmarkId::new("linux", TOUCH_PAGES), |b| {
        b.iter(|| linux_first_touch(TOUCH_PAGES as usize))
    });
    drop(m);
    g.finish();
    if ran {
        paired_first_touch();
    }

    let mut g = c.benchmark_group("zero_frame");
    g.throughput(Throughput::Elements(1));
    let mut m = None;
    g.bench_function("sim_zero_frame", |b| {
        // The simulator's own floor: what the anonymous backend's zeroing
        // costs in simulated (atomic-word) memory.
        let sim = m.get_or_insert_with(|| sim(1, 16 << 20, 64, 64));
        let frame = Frame::from_number(100);
        b.iter(|| sim.hardware().memory().zero_frame(black_box(frame)));
    });
    drop(m);
    g.bench_function("memset_hot", |b| {
        let mut page = vec![1u8; PAGE_SIZE as usize];
        b.iter(|| {
            // SAFETY: the pointer is `page.as_mut_ptr()` (`black_box`
            // returns its argument unchanged), valid for writes of
            // `page.len()` bytes of the Vec `page`, which this closure
            // borrows mutably; any byte value, 0 included, is a valid `u8`.
            unsafe { ptr::write_bytes(black_box(page.as_mut_ptr()), 0, page.len()) };
            black_box(&page);
        });
    });
    let mut cold: Option<(Vec<u8>, usize)> = None;
    g.bench_function("memset_cold", |b| {
        // Successive pages of a 512 MiB buffer, each evicted from every
        // cache level since it was last zeroed.
        let (buf, at) = cold.get_or_insert_with(|| (vec![1u8; COLD_BYTES], 0));
        b.iter(|| {
            let page = &mut buf[*at..*at + PAGE_SIZE as usize];
            // SAFETY: the pointer is `page.as_mut_ptr()` (`black_box`
            // returns its argument unchanged), valid for writes of the
            // `page.len()` bytes of the exclusive (bounds-checked) slice
            // `page`; any byte value, 0 included, is a valid `u8`.
            unsafe { ptr::write_bytes(black_box(page.as_mut_ptr()), 0, page.len()) };
            black_box(&page);
            *at = (*at + PAGE_SIZE as usize) % COLD_BYTES;
        });
    });
    drop(cold);
    g.finish();

    let mut g = c.benchmark_group("refault");
    g.throughput(Throughput::Elements(WORKING_SET));
    let mut m = None;
    g.bench_function("aspace_access_tlb_hit_4", |b| {
        // 4 pages in a 4-entry TLB: every access hits.
        let (_sim, _space, cpu) = m.get_or_insert_with(|| resident(4, 4));
        b.iter(|| access(cpu, 4))
    });
    m = None;
    g.bench_function("aspace_access_tlb_miss_4", |b| {
        // 64 pages through a 4-entry round-robin TLB: every access misses
        // and walks the four levels.
        let (_sim, _space, cpu) = m.get_or_insert_with(|| resident(4, WORKING_SET));
        b.iter(|| access(cpu, WORKING_SET))
    });
    m = None;
    g.bench_function("aspace_access_tlb_hit_64", |b| {
        // 64 pages in a 64-entry TLB: every access hits, after a linear
        // search of the simulator's fully associative TLB.
        let (_sim, _space, cpu) =
            m.get_or_insert_with(|| resident(WORKING_SET as usize, WORKING_SET));
        b.iter(|| access(cpu, WORKING_SET))
    });
    m = None;
    g.bench_function("aspace_page_fault_raced", |b| {
        // The handler called on pages already mapped, as when another CPU
        // mapped the page between this CPU's miss and its fault.
        let (_sim, space, cpu) = m.get_or_insert_with(|| resident(64, WORKING_SET));
        b.iter(|| {
            cpu.run(|| {
                for p in 0..WORKING_SET {
                    let addr = VirtAddr::new(BASE + p * PAGE_SIZE);
                    let r = space.page_fault(addr, Access::Write, aspace::FaultContext::User);
                    debug_assert_eq!(r, FaultOutcome::Ok);
                    black_box(r);
                }
            })
        });
    });
    m = None;
    g.bench_function("aspace_area_lookup", |b| {
        // The same space's area lookup alone, for comparison.
        let (_sim, space, _cpu) = m.get_or_insert_with(|| resident(64, WORKING_SET));
        b.iter(|| {
            let mut sum = 0;
            for p in 0..WORKING_SET {
                let addr = VirtAddr::new(BASE + p * PAGE_SIZE);
                sum += space.area(addr).map_or(0, |a| a.pages);
            }
            black_box(sum)
        });
    });
    g.finish();
}

/// First touch, its core-only part, Linux and the floors, interleaved.
fn paired_first_touch() {
    let n = TOUCH_PAGES;
    let base = VirtAddr::new(BASE);
    let (_s1, space, mut cpu) = machine(64);
    let (_s2, space2, cpu2) = machine(64);
    let zsim = sim(1, 16 << 20, 64, 64);
    let mut hot = vec![1u8; PAGE_SIZE as usize];
    let mut cold = vec![1u8; COLD_BYTES];
    let mut at = 0usize;
    paired::compare(
        format!("first_touch/{n}"),
        &mut [
            ("aspace (simulated MMU)", n, &mut || {
                space.area_create(base, n * PAGE_SIZE, RW).expect("free");
                for p in 0..n {
                    cpu.write_u64(VirtAddr::new(BASE + p * PAGE_SIZE), p)
                        .expect("anonymous memory");
                }
                cpu.run(|| space.area_destroy(base)).expect("created");
            }),
            ("aspace core only", n, &mut || {
                space2.area_create(base, n * PAGE_SIZE, RW).expect("free");
                cpu2.run(|| {
                    for p in 0..n {
                        let a = VirtAddr::new(BASE + p * PAGE_SIZE);
                        black_box(space2.page_fault(a, Access::Write, aspace::FaultContext::User));
                    }
                    space2.area_destroy(base)
                })
                .expect("created");
            }),
            ("Linux fault", n, &mut || linux_first_touch(n as usize)),
            ("sim zero_frame", n, &mut || {
                for _ in 0..n {
                    zsim.hardware()
                        .memory()
                        .zero_frame(black_box(Frame::from_number(100)));
                }
            }),
            ("memset hot", n, &mut || {
                for _ in 0..n {
                    // SAFETY: the pointer is `hot.as_mut_ptr()` (`black_box`
                    // returns its argument unchanged), valid for writes of
                    // `hot.len()` bytes of the Vec `hot`, which this closure
                    // borrows mutably; 0 is a valid `u8`.
                    unsafe { ptr::write_bytes(black_box(hot.as_mut_ptr()), 0, hot.len()) };
                    black_box(&hot);
                }
            }),
            ("memset cold", n, &mut || {
                for _ in 0..n {
                    let page = &mut cold[at..at + PAGE_SIZE as usize];
                    // SAFETY: the pointer is `page.as_mut_ptr()` (`black_box`
                    // returns its argument unchanged), valid for writes of
                    // the `page.len()` bytes of the exclusive (bounds-checked)
                    // slice `page`; 0 is a valid `u8`.
                    unsafe { ptr::write_bytes(black_box(page.as_mut_ptr()), 0, page.len()) };
                    black_box(&page);
                    at = (at + PAGE_SIZE as usize) % COLD_BYTES;
                }
            }),
        ],
    );
}

/// `WORKING_SET` user-mode loads cycling through the first `pages` pages.
fn access(cpu: &mut Cpu, pages: u64) -> u64 {
    let mut sum = 0;
    for i in 0..WORKING_SET {
        let a = VirtAddr::new(BASE + (i % pages) * PAGE_SIZE);
        sum += cpu.read_u64(a).expect("resident");
    }
    black_box(sum)
}

/// Maps `pages` anonymous pages, writes one word to each, unmaps them.
fn linux_first_touch(pages: usize) {
    let len = pages * PAGE_SIZE as usize;
    // SAFETY: no `MAP_FIXED` and a null hint: the kernel creates a new
    // anonymous (`fd` -1, offset 0) read/write mapping of `len` bytes at a
    // free address, replacing no existing memory; MAP_FAILED is rejected
    // below.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    // Small pages only, as in the simulator.
    // SAFETY: `p`, `len` is the mapping just created and owned here;
    // MADV_NOHUGEPAGE changes only its huge-page policy, not its contents
    // or protection.
    unsafe { libc::madvise(p, len, libc::MADV_NOHUGEPAGE) };
    let base = p.cast::<u8>();
    for i in 0..pages {
        // SAFETY: i < pages, so the 8 bytes from `base + i * PAGE_SIZE`
        // lie inside the `len`-byte read/write mapping above (`add`
        // stays in bounds), page-aligned hence aligned for `u64`; the
        // memory belongs to no Rust object, so the write aliases nothing.
        unsafe { ptr::write_volatile(base.add(i * PAGE_SIZE as usize).cast::<u64>(), i as u64) };
    }
    // SAFETY: `p`, `len` is exactly the mapping created above; the only
    // pointer into it (`base`) is not used after this.
    unsafe { libc::munmap(p, len) };
}
