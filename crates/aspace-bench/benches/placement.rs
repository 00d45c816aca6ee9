//! Placement anywhere (issue 15): creating an area wherever there is room
//! and destroying it, against creating it at a fixed address, against a
//! linear scan for the room (the area tree without its gap summaries), and
//! against ArceOS's `memory_set::MemorySet::find_free_area` (which scans
//! every area after the hint), at 16 to 1M areas.
//!
//! The layout (`aspace_bench::layout`) has gaps of 1–64 pages between
//! areas of 1–64 pages; the request is 65 pages above the first area, so
//! the only room is past the last area: a scan visits every area, the gap
//! summaries skip them all.
//!
//! `cargo bench -p aspace-bench --bench placement`; `-- --test` runs each
//! once (up to 64K areas, so CI stays quick).

use std::hint::black_box;

use aspace::internals::area_tree::{AreaTree, Fit};
use aspace::Placement;
use aspace::{VirtAddr, PAGE_SIZE};
use aspace_bench::{layout, populate, sim, test_mode, Settings, FIRST_PAGE, RW};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use memory_addr::{AddrRange, VirtAddr as MsAddr};
use memory_set::{MappingBackend, MemoryArea, MemorySet};

/// Pages asked for: more than any gap of the layout.
const PAGES: u64 = 65;

/// A `memory_set` backend that maps nothing: only the set is measured.
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

fn placement(c: &mut Criterion) {
    let s = Settings::from_env();
    let max = if test_mode() { 1 << 16 } else { s.max_areas };
    let mut g = c.benchmark_group("placement");
    g.sampling_mode(SamplingMode::Flat);
    for n in [16usize, 1 << 10, 1 << 16, 1 << 20]
        .into_iter()
        .filter(|&n| n <= max)
    {
        if n >= 1 << 20 {
            g.sample_size(10);
        }
        let areas = layout(n, 1);
        let last = areas.last().expect("non-empty");
        let bound = VirtAddr::new(FIRST_PAGE * PAGE_SIZE);
        let size = PAGES * PAGE_SIZE;

        let sim = sim(1, 16 << 20, 64, 64);
        let (space, _) = populate(&sim, &areas);
        // Where the anywhere search lands: past the last area.
        let end = space
            .area_create_anywhere(Placement::above(bound), size, RW)
            .expect("room at the top");
        space.area_destroy(end).unwrap();
        assert_eq!(end.as_u64(), last.end());
        g.bench_function(BenchmarkId::new("anywhere_destroy", n), |b| {
            b.iter(|| {
                let at = space
                    .area_create_anywhere(Placement::above(bound), size, RW)
                    .expect("room");
                space.area_destroy(black_box(at)).expect("just created");
            });
        });
        g.bench_function(BenchmarkId::new("fixed_destroy", n), |b| {
            b.iter(|| {
                space.area_create(end, size, RW).expect("free");
                space.area_destroy(black_box(end)).expect("just created");
            });
        });
        drop(space);
        drop(sim);

        // The same search, insertion and removal on the bare tree, with and
        // without its gap summaries (without, `lowest_fit` scans).
        let fit = Fit {
            size: PAGES,
            guard: 0,
            align: 1,
        };
        for (name, mut tree) in [
            ("tree_gaps", AreaTree::<()>::with_gaps()),
            ("tree_linear_scan", AreaTree::<()>::new()),
        ] {
            for a in &areas {
                tree.insert(a.page, a.page + a.pages, ()).unwrap();
            }
            g.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter(|| {
                    let at = tree.lowest_fit(1..1 << 40, FIRST_PAGE, fit).expect("room");
                    tree.insert(at, at + PAGES, ()).unwrap();
                    tree.remove(black_box(at)).expect("just inserted");
                });
            });
        }

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
        let limit = AddrRange::new(MsAddr::from(0), MsAddr::from(1usize << 52));
        let found = set.find_free_area(
            MsAddr::from(bound.as_u64() as usize),
            size as usize,
            limit,
            PAGE_SIZE as usize,
        );
        assert_eq!(found.map(|a| a.as_usize() as u64), Some(last.end()));
        // Only the search: memory_set's unmap walks every area on its own.
        g.bench_function(BenchmarkId::new("memory_set_find_free_area", n), |b| {
            b.iter(|| {
                set.find_free_area(
                    black_box(MsAddr::from(bound.as_u64() as usize)),
                    size as usize,
                    limit,
                    PAGE_SIZE as usize,
                )
            });
        });
    }
    g.finish();
}

fn config() -> Criterion {
    let s = Settings::from_env();
    Criterion::default()
        .warm_up_time(s.warm_up)
        .measurement_time(s.measurement)
        .sample_size(s.samples)
        .configure_from_args()
}

criterion_group! {
    name = benches;
    config = config();
    targets = placement
}
criterion_main!(benches);
