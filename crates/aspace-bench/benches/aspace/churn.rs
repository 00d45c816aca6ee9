//! Area churn: creating and destroying one area among many, against
//! ArceOS's `memory_set` map/unmap and Linux `mmap`+`munmap` of the same
//! size on this machine.

use std::hint::black_box;
use std::ptr;

use crate::clock::Clock;
use crate::paired;
use aspace::VirtAddr;
use aspace_bench::{layout, middle_gap, populate, sim, Settings, RW};
use criterion::{BenchmarkId, Criterion, SamplingMode};
use memory_addr::VirtAddr as MsAddr;
use memory_set::{MappingBackend, MemoryArea, MemorySet};

/// The churned area: 16 pages (64 KiB), never touched.
pub const CHURN_PAGES: u64 = 16;
const CHURN_BYTES: usize = (CHURN_PAGES * aspace::PAGE_SIZE) as usize;

/// A `memory_set` backend that maps nothing, so only the set's own
/// bookkeeping is measured (as aspace's area creation maps nothing either).
#[derive(Clone, Copy)]
struct NoPageTable;

impl MappingBackend for NoPageTable {
    type Addr = MsAddr;
    type Flags = u8;
    type PageTable = ();
    fn map(&self, _: MsAddr, _: usize, _: u8, _: &mut ()) -> bool {
        true
    }
    fn unmap(&self, _: MsAddr, _: usize, _: &mut ()) -> bool {
        true
    }
    fn protect(&self, _: MsAddr, _: usize, _: u8, _: &mut ()) -> bool {
        true
    }
}

pub fn bench(c: &mut Criterion<Clock>, s: &Settings) {
    let mut g = c.benchmark_group("churn");
    // memory_set's unmap walks every area: tens of ms per iteration at 1M
    // areas, too slow for linear sampling's 210 iterations.
    g.sampling_mode(SamplingMode::Flat);
    for n in [4096usize, 1 << 20]
        .into_iter()
        .filter(|&n| n <= s.max_areas)
    {
        let areas = layout(n, 1);
        let hole = middle_gap(&areas, CHURN_PAGES) * aspace::PAGE_SIZE;
        // Built on first use (criterion calls each routine many times).
        let mut ours = None;
        g.bench_function(BenchmarkId::new("aspace_create_destroy", n), |b| {
            let (_sim, space) = ours.get_or_insert_with(|| {
                let sim = sim(1, 16 << 20, 64, 64);
                let (space, _) = populate(&sim, &areas);
                (sim, space)
            });
            let base = VirtAddr::new(hole);
            b.iter(|| {
                space
                    .area_create(base, CHURN_PAGES * aspace::PAGE_SIZE, RW)
                    .expect("the hole is free");
                space.area_destroy(base).expect("just created");
            });
        });
        let mut theirs = None;
        g.bench_function(BenchmarkId::new("memory_set_map_unmap", n), |b| {
            let set = theirs.get_or_insert_with(|| {
                let mut set = MemorySet::<NoPageTable>::new();
                for a in &areas {
                    let area = MemoryArea::new(
                        MsAddr::from(a.base() as usize),
                        a.bytes() as usize,
                        3,
                        NoPageTable,
                    );
                    set.map(area, &mut (), false).expect("disjoint");
                }
                set
            });
            let base = MsAddr::from(hole as usize);
            b.iter(|| {
                let area = MemoryArea::new(base, CHURN_BYTES, 3, NoPageTable);
                set.map(area, &mut (), false).expect("the hole is free");
                set.unmap(base, CHURN_BYTES, &mut ()).expect("just mapped");
            });
        });
        if let (Some((_sim, space)), Some(set)) = (&ours, &mut theirs) {
            let base = VirtAddr::new(hole);
            let ms_base = MsAddr::from(hole as usize);
            // Enough repetitions per call that reading the clock does not
            // count: memory_set's unmap is O(areas).
            let ms_reps = if n > 100_000 { 1 } else { 8 };
            paired::compare(
                format!("churn/{n}"),
                &mut [
                    ("aspace", 512, &mut || {
                        for _ in 0..512 {
                            space
                                .area_create(base, CHURN_PAGES * aspace::PAGE_SIZE, RW)
                                .expect("the hole is free");
                            space.area_destroy(base).expect("just created");
                        }
                    }),
                    ("memory_set", ms_reps, &mut || {
                        for _ in 0..ms_reps {
                            let area = MemoryArea::new(ms_base, CHURN_BYTES, 3, NoPageTable);
                            set.map(area, &mut (), false).expect("the hole is free");
                            set.unmap(ms_base, CHURN_BYTES, &mut ())
                                .expect("just mapped");
                        }
                    }),
                    ("Linux mmap+munmap", 32, &mut || {
                        for _ in 0..32 {
                            linux_mmap_munmap();
                        }
                    }),
                ],
            );
        }
    }
    g.bench_function(BenchmarkId::new("linux_mmap_munmap", "own"), |b| {
        b.iter(linux_mmap_munmap)
    });
    let mut vmas = None;
    g.bench_function(BenchmarkId::new("linux_mmap_munmap", "8k_vmas"), |b| {
        vmas.get_or_insert_with(|| Vmas::new(8192));
        b.iter(linux_mmap_munmap)
    });
    drop(vmas);
    g.finish();
}

/// Extra VMAs in this process: a `PROT_NONE` reservation of `pages` pages
/// with every other page made readable, so that none merge.
struct Vmas {
    base: *mut libc::c_void,
    len: usize,
}

impl Vmas {
    fn new(pages: usize) -> Self {
        let len = pages * 4096;
        // SAFETY: no `MAP_FIXED` and a null hint: the kernel picks a free
        // range and creates a new anonymous (`fd` -1, offset 0) mapping, so
        // no existing memory of this process is replaced; on failure it
        // returns MAP_FAILED, which the assert rejects.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        for p in (0..pages).step_by(2) {
            let page = base.cast::<u8>().wrapping_add(p * 4096).cast();
            // SAFETY: `page` (p < pages) starts a page-aligned 4 KiB range
            // inside the `len`-byte reservation mapped above, which this
            // struct alone owns and nothing dereferences (it stays
            // `PROT_NONE` or read-only, and is never read): changing its
            // protection touches no Rust object.
            let rc = unsafe { libc::mprotect(page, 4096, libc::PROT_READ) };
            assert_eq!(rc, 0, "mprotect");
        }
        Self { base, len }
    }
}

impl Drop for Vmas {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly the mapping `new` created, owned
        // by this struct alone and unmapped only here (drop runs once); no
        // reference into it exists, as it is never dereferenced.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

fn linux_mmap_munmap() {
    // SAFETY: no `MAP_FIXED` and a null hint: the kernel creates a new
    // anonymous (`fd` -1, offset 0) mapping of `CHURN_BYTES` at a free
    // address, replacing no existing memory; MAP_FAILED is rejected below.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            CHURN_BYTES,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    black_box(p);
    // SAFETY: `p`, `CHURN_BYTES` is exactly the mapping created above,
    // owned by this function alone and never dereferenced, so no reference
    // into it outlives the unmap.
    unsafe { libc::munmap(p, CHURN_BYTES) };
}
