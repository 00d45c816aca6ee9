//! How the `aspace` command scales: the `--svg` picture in the number of
//! areas, and a scenario in the number of tasks (every lookup of a task by
//! name, the listing, the end-of-run teardown). Both were quadratic; here
//! doubling the size should about double the time.
//!
//! `cargo bench -p aspace-cli --bench scale`

use std::hint::black_box;
use std::path::Path;

use aspace_cli::cli::{run_scenario_text, Opts, Outcome};
use aspace_cli::maps::{AreaView, TaskView};
use aspace_cli::svg::{self, Snapshot};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

/// `areas` areas over four tasks, a quarter of them shared.
fn snapshot(areas: u64) -> Snapshot {
    let mut tasks: Vec<TaskView> = (0..4)
        .map(|t| TaskView {
            task: format!("T{t}"),
            space_id: t,
            asid: None,
            cpus: vec![],
            areas: Vec::new(),
            resident_pages: 0,
            reserved_pages: 0,
            page_table_frames: 1,
        })
        .collect();
    for i in 0..areas {
        let base = 0x40_0000 + i * 0x3000;
        tasks[(i % 4) as usize].areas.push(AreaView {
            start: format!("{base:#x}"),
            end: format!("{:#x}", base + 4096),
            pages: 1,
            kbytes: 4,
            resident: i % 2,
            image_pages: 0,
            private_pages: i % 2,
            reserved: 1,
            late_reserve: false,
            reserve_on_write: false,
            mode: "rw-p".into(),
            backend: "anon",
            shared: i % 4 == 0,
            share_group: (i % 4 == 0).then_some((i / 8) as usize),
            label: None,
            base,
            runs: if i % 2 == 1 { vec![(0, 1)] } else { vec![] },
        });
    }
    Snapshot {
        title: "bench".into(),
        tasks,
    }
}

fn picture(c: &mut Criterion) {
    let mut g = c.benchmark_group("svg_areas");
    g.sample_size(10);
    for n in [10_000u64, 20_000, 40_000] {
        let s = [snapshot(n)];
        g.bench_with_input(BenchmarkId::from_parameter(n), &s, |b, s| {
            b.iter(|| black_box(svg::render(s, "bench")).len())
        });
    }
    g.finish();
}

fn tasks(c: &mut Criterion) {
    let mut g = c.benchmark_group("scenario_tasks");
    g.sample_size(10);
    for n in [2_500usize, 5_000, 10_000] {
        let mut text = String::from("machine cpus 2 asids 2\necho off\n");
        for i in 0..n {
            text.push_str(&format!("task T{i}\n"));
        }
        for i in 0..n {
            text.push_str(&format!("area T{i} 0x400000 1p rw\n"));
        }
        text.push_str("map\n");
        let opts = Opts {
            quiet: true,
            memory: Some(64 << 20),
            ..Opts::default()
        };
        g.bench_with_input(BenchmarkId::from_parameter(n), &text, |b, text| {
            b.iter(|| {
                let o = run_scenario_text(&opts, "bench", text, Path::new("."));
                assert!(matches!(o, Outcome::Passed), "{o:?}");
            })
        });
    }
    g.finish();
}

criterion_group!(benches, picture, tasks);
criterion_main!(benches);
