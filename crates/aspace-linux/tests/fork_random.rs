//! Fork families at random (written by a review of `MADV_REMOVE` across
//! processes and of shared objects' holders): up to three processes of one
//! family make random `mmap` (shared anonymous, shared and private file,
//! private anonymous), `munmap`, `mremap` (placed, fixed, `DONTUNMAP`),
//! `madvise` (`REMOVE`, `DONTNEED`, `DONTFORK`, `DOFORK`), `mprotect`,
//! writes, `fork` and exits; after every step, a write through any shared
//! mapping of an object's page is read back through every other mapping
//! of that page, in every process; at the end the processes go in random
//! order and every frame and reservation comes back. Fixed seeds, printed
//! with the steps on failure; `ASPACE_FORK_SEEDS` (200) and
//! `ASPACE_FORK_SEED0` (1) change the run.

use aspace::{TryArc, VirtAddr, PAGE_SIZE};
use aspace_linux::consts::*;
use aspace_linux::mm::{Kind, LinuxMm};
use aspace_linux::{Advice, FileRef, MapFlags, Prot, RemapFlags};
use aspace_sim::{Cpu, SimMachine};

mod common;
use common::{setup_on, Rng, BASE};

const WIN: u64 = 48; // pages
const NPROC: usize = 3;
static CROSS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static OKS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn va(a: u64) -> VirtAddr {
    VirtAddr::new(a)
}

/// (object ptr, object page) of a shared object mapping at `addr`, and its prot.
fn shared_page(mm: &LinuxMm<SimMachine>, addr: u64) -> Option<(usize, u64, Prot)> {
    let v = mm.vma_at(addr)?;
    match &v.kind {
        Kind::Object {
            object,
            private: false,
            ..
        } => {
            let idx = v.first + (addr - v.start) / PAGE_SIZE;
            if idx >= object.pages() || mm.is_guard(addr) {
                return None;
            }
            Some((TryArc::as_ptr(object) as usize, idx, v.prot))
        }
        _ => None,
    }
}

fn run_seed(seed: u64, steps: usize) {
    let (sim, mm, c0) = setup_on(NPROC, 32 << 20);
    let baseline = sim.frames_in_use() - mm.space().page_table_frames();
    let mut procs: Vec<Option<LinuxMm<SimMachine>>> = (0..NPROC).map(|_| None).collect();
    let mut cpus: Vec<Cpu> = vec![c0];
    for i in 1..NPROC {
        cpus.push(sim.cpu(i));
    }
    procs[0] = Some(mm);
    let mut rng = Rng(seed | 1);
    let mut stamp = seed << 20;
    let mut log: Vec<String> = Vec::new();
    for step in 0..steps {
        let live: Vec<usize> = (0..NPROC).filter(|&i| procs[i].is_some()).collect();
        if live.is_empty() {
            break;
        }
        let p = live[rng.below(live.len() as u64) as usize];
        let addr = BASE + rng.below(WIN) * PAGE_SIZE;
        let len = (1 + rng.below(6)) * PAGE_SIZE;
        let op = rng.below(100);
        let cpu = &mut cpus[p];
        let mm = procs[p].as_mut().unwrap();
        let desc;
        match op {
            0..=17 => {
                let (flags, file) = match rng.below(5) {
                    0 => (MAP_SHARED | MAP_ANONYMOUS, None),
                    1 => (MAP_SHARED, Some(FileRef("F".into()))),
                    2 => (MAP_SHARED, Some(FileRef("G".into()))),
                    3 => (MAP_PRIVATE, Some(FileRef("F".into()))),
                    _ => (MAP_PRIVATE | MAP_ANONYMOUS, None),
                };
                let off = rng.below(4) * PAGE_SIZE;
                let r = cpu.run(|| {
                    mm.mmap(
                        addr,
                        len,
                        Prot::RW,
                        MapFlags(flags | MAP_FIXED),
                        file.as_ref(),
                        off,
                    )
                });
                desc =
                    format!("p{p} mmap {addr:#x} {len:#x} {flags:#x} {file:?} {off:#x} -> {r:?}");
            }
            18..=27 => {
                let r = cpu.run(|| mm.munmap(addr, len));
                desc = format!("p{p} munmap {addr:#x} {len:#x} -> {r:?}");
            }
            28..=39 => {
                let old_len = rng.below(4) * PAGE_SIZE;
                let new_len = (1 + rng.below(4)) * PAGE_SIZE;
                let to = BASE + rng.below(WIN) * PAGE_SIZE;
                let flags = match rng.below(4) {
                    0 => MREMAP_MAYMOVE,
                    1 | 2 => MREMAP_MAYMOVE | MREMAP_FIXED,
                    _ => MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP,
                };
                let nl = if flags & MREMAP_DONTUNMAP != 0 {
                    old_len.max(PAGE_SIZE)
                } else {
                    new_len
                };
                let ol = if flags & MREMAP_DONTUNMAP != 0 {
                    nl
                } else {
                    old_len
                };
                let r = cpu.run(|| mm.mremap(addr, ol, nl, RemapFlags(flags), to));
                desc = format!("p{p} mremap {addr:#x} {ol:#x} {nl:#x} {flags} {to:#x} -> {r:?}");
            }
            40..=54 => {
                let adv = match rng.below(6) {
                    0..=2 => MADV_REMOVE,
                    3 => MADV_DONTNEED,
                    4 => MADV_DONTFORK,
                    _ => MADV_DOFORK,
                };
                let r = cpu.run(|| mm.madvise(addr, len, Advice(adv)));
                desc = format!("p{p} madvise {addr:#x} {len:#x} {adv} -> {r:?}");
            }
            55..=59 => {
                let prot = if rng.below(2) == 0 { Prot::R } else { Prot::RW };
                let r = cpu.run(|| mm.mprotect(addr, len, prot));
                desc = format!("p{p} mprotect {addr:#x} {len:#x} {prot:?} -> {r:?}");
            }
            60..=79 => {
                // A write wherever it may.
                let ok = mm.vma_at(addr).is_some_and(|v| v.prot.write())
                    && !mm.is_guard(addr)
                    && mm.vma_at(addr).is_some_and(|v| match v.object() {
                        Some(o) => v.first + (addr - v.start) / PAGE_SIZE < o.pages(),
                        None => true,
                    });
                if ok {
                    stamp += 1;
                    cpu.write_u64(va(addr), stamp).unwrap_or_else(|f| {
                        panic!("seed {seed:#x} step {step}: {f:?}\n{}", log.join("\n"))
                    });
                    mm.touched(addr, true);
                }
                desc = format!("p{p} write {addr:#x} ({ok})");
            }
            80..=89 => {
                // fork into a free slot
                match (0..NPROC).find(|&i| procs[i].is_none()) {
                    Some(slot) => {
                        let r = cpus[p].run(|| procs[p].as_mut().unwrap().fork());
                        desc = format!("p{p} fork -> p{slot} {:?}", r.as_ref().err());
                        if let Ok(child) = r {
                            cpus[slot].switch_to(child.space()).unwrap();
                            procs[slot] = Some(child);
                        }
                    }
                    None => desc = "fork: no slot".into(),
                }
            }
            _ => {
                if live.len() > 1 {
                    cpus[p].idle();
                    procs[p] = None;
                    desc = format!("p{p} exit");
                } else {
                    desc = "exit: last one stays".into();
                }
            }
        }
        if desc.contains("Ok(") && (desc.contains("mremap") || desc.contains("madvise")) {
            OKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        log.push(desc);
        // Shared pages agree between every two mappings of the same object page.
        let live: Vec<usize> = (0..NPROC).filter(|&i| procs[i].is_some()).collect();
        for a_pg in 0..WIN {
            let a = BASE + a_pg * PAGE_SIZE;
            for &i in &live {
                let Some((obj, idx, prot)) = shared_page(procs[i].as_ref().unwrap(), a) else {
                    continue;
                };
                if !prot.write() {
                    continue;
                }
                for &j in &live {
                    for b_pg in 0..WIN {
                        let b = BASE + b_pg * PAGE_SIZE;
                        if (i, a) == (j, b) {
                            continue;
                        }
                        let Some((o2, i2, p2)) = shared_page(procs[j].as_ref().unwrap(), b) else {
                            continue;
                        };
                        if o2 != obj || i2 != idx || !p2.read() {
                            continue;
                        }
                        CROSS.fetch_add(usize::from(i != j), std::sync::atomic::Ordering::Relaxed);
                        stamp += 1;
                        cpus[i].write_u64(va(a), stamp).unwrap();
                        let got = cpus[j].read_u64(va(b)).unwrap();
                        if got != stamp {
                            panic!(
                                "seed {seed:#x} step {step}: p{i} wrote {stamp} at {a:#x} (object page {idx}), p{j} reads {got} at {b:#x}\n{}",
                                log.join("\n")
                            );
                        }
                    }
                }
            }
        }
    }
    // Drop in random order.
    let mut order: Vec<usize> = (0..NPROC).collect();
    for k in (1..order.len()).rev() {
        let s = rng.below(k as u64 + 1) as usize;
        order.swap(k, s);
    }
    for c in cpus.iter_mut() {
        c.idle();
    }
    for i in order {
        procs[i] = None;
    }
    assert_eq!(
        sim.frames_in_use(),
        baseline,
        "seed {seed:#x}: frames leaked\n{}",
        log.join("\n")
    );
    assert_eq!(sim.system().reserve().committed(), 0, "seed {seed:#x}");
}

#[test]
fn random_fork_families() {
    let n: u64 = std::env::var("ASPACE_FORK_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let start: u64 = std::env::var("ASPACE_FORK_SEED0")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    for seed in start..start + n {
        run_seed(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), 120);
    }
    let (cross, oks) = (
        CROSS.load(std::sync::atomic::Ordering::Relaxed),
        OKS.load(std::sync::atomic::Ordering::Relaxed),
    );
    eprintln!("cross-process checks {cross}, mremap/madvise calls that went {oks}");
    // The run must have exercised what it checks.
    assert!(
        n < 200 || (cross > 10_000 && oks > 1_000),
        "{cross} checks, {oks} calls"
    );
}
