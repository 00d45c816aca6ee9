//! Loops one of the calls of `benches/linux.rs` on the aspace side
//! only, for a profiler (BENCHMARKS.md says how it was used):
//! `cargo run --release -p aspace-bench --example linux_profile -- mmap|mmap-core|mprotect|munmap|mremap|mremap-split|mremap-loop [SECONDS]`.
use std::time::{Duration, Instant};

use aspace::{AreaFlags, Placement, VirtAddr, PAGE_SIZE};
use aspace_linux::consts::*;
use aspace_linux::Prot;

// Only the aspace side is used here.
#[allow(dead_code)]
#[path = "../benches/linux_calls/mod.rs"]
mod linux_calls;
use linux_calls::{ours, ours_remap_setup, BASE};

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    let secs: u64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let end = Instant::now() + Duration::from_secs(secs);
    let mut o = ours();
    let mut n = 0u64;
    match name.as_str() {
        "mmap" => {
            for i in 0..4096 {
                o.mmap(BASE + 2 * i * PAGE_SIZE, 1, MAP_FIXED);
            }
            while Instant::now() < end {
                for _ in 0..100 {
                    let at = o.mmap(0, 16, 0);
                    o.munmap(at, 16);
                }
                n += 100;
            }
        }
        "mprotect" => {
            let at = o.mmap(BASE, 16, MAP_FIXED | MAP_POPULATE);
            while Instant::now() < end {
                for _ in 0..100 {
                    o.mprotect(at + 6 * PAGE_SIZE, 4, Prot::R);
                    o.mprotect(at + 6 * PAGE_SIZE, 4, Prot::RW);
                }
                n += 100;
            }
        }
        "munmap" => {
            while Instant::now() < end {
                let at = o.mmap(BASE, 256, MAP_FIXED | MAP_POPULATE);
                o.munmap(at + 128 * PAGE_SIZE, 128);
                o.munmap(at, 128);
                n += 1;
            }
        }
        "mremap" | "mremap-split" => {
            while Instant::now() < end {
                let at = ours_remap_setup(&mut o, name == "mremap");
                let to = o.mremap(at, 256, 512);
                o.munmap(to, 512);
                o.munmap(BASE, 257);
                n += 1;
            }
        }
        "mremap-loop" => {
            // The move alone, round after round: the moved 256 resident
            // pages shrink back in place (nothing resident is cut) and a
            // read-only page above them blocks growth in place again.
            let mut at = ours_remap_setup(&mut o, true);
            while Instant::now() < end {
                for _ in 0..10 {
                    let to = o.mremap(at, 256, 512);
                    o.mremap(to, 512, 256);
                    o.mmap(to + 256 * PAGE_SIZE, 1, MAP_FIXED);
                    o.mprotect(to + 256 * PAGE_SIZE, 1, Prot::R);
                    o.munmap(at + 256 * PAGE_SIZE, 1);
                    at = to;
                }
                n += 10;
            }
        }
        "mmap-core" => {
            // The core's part of the `mmap` pair alone, as
            // `linux_quantiles` times it beside the pair.
            for i in 0..4096 {
                o.mmap(BASE + 2 * i * PAGE_SIZE, 1, MAP_FIXED);
            }
            let space = o.mm.space().clone();
            let (ceiling, flags) = (BASE + (1 << 32), AreaFlags::READ | AreaFlags::WRITE);
            let place = Placement::HighestBelow {
                ceiling: VirtAddr::new(ceiling),
                align: 1,
            };
            while Instant::now() < end {
                for _ in 0..100 {
                    let at = o
                        .cpu
                        .run(|| space.area_create_anywhere(place, 16 * PAGE_SIZE, flags))
                        .expect("create");
                    o.cpu
                        .run(|| space.unmap_range(at, 16 * PAGE_SIZE))
                        .expect("unmap");
                }
                n += 100;
            }
        }
        _ => {
            eprintln!(
                "usage: linux_profile mmap|mmap-core|mprotect|munmap|mremap|mremap-split|mremap-loop [SECONDS]"
            );
            std::process::exit(2);
        }
    }
    println!("{n} rounds");
}
