//! The calls both sides of the Linux benchmarks make (shared by
//! `benches/linux.rs` and `examples/linux_quantiles.rs`): `Ours`, a
//! `LinuxMm` on the simulated machine, and `linux`, the same calls on this
//! machine's kernel through libc.

use aspace::PAGE_SIZE;
use aspace_bench::sim;
use aspace_linux::consts::*;
use aspace_linux::mm::{Layout, LinuxMm};
use aspace_linux::{MapFlags, Prot, RemapFlags};
use aspace_sim::{Cpu, Sim, SimMachine};

/// Where the aspace side's mappings go (below its mmap base).
pub const BASE: u64 = 0x7000_0000_0000;

/// The aspace side: a `LinuxMm` on a one-CPU simulated machine.
pub struct Ours {
    _sim: Sim,
    /// The CPU the calls run on.
    pub cpu: Cpu,
    /// The process map.
    pub mm: LinuxMm<SimMachine>,
}

/// A fresh process map on a fresh machine.
pub fn ours() -> Ours {
    let sim = sim(1, 64 << 20, 16, 64);
    let space = sim.system().create().expect("space");
    let mut cpu = sim.cpu(0);
    cpu.switch_to(&space).expect("switch");
    let mm = LinuxMm::new(
        sim.system().clone(),
        space,
        Layout::new(BASE + (1 << 32), 0x5555_0000_0000),
    );
    Ours { _sim: sim, cpu, mm }
}

/// Private anonymous memory.
pub const ANON: MapFlags = MapFlags(MAP_PRIVATE | MAP_ANONYMOUS);

impl Ours {
    /// `mmap` of `pages` private anonymous read-write pages.
    pub fn mmap(&mut self, addr: u64, pages: u64, flags: u32) -> u64 {
        let mm = &mut self.mm;
        self.cpu
            .run(|| {
                mm.mmap(
                    addr,
                    pages * PAGE_SIZE,
                    Prot::RW,
                    MapFlags(ANON.0 | flags),
                    None,
                    0,
                )
            })
            .expect("mmap")
    }
    /// `munmap`.
    pub fn munmap(&mut self, addr: u64, pages: u64) {
        let mm = &mut self.mm;
        self.cpu
            .run(|| mm.munmap(addr, pages * PAGE_SIZE))
            .expect("munmap");
    }
    /// `mprotect`.
    pub fn mprotect(&mut self, addr: u64, pages: u64, prot: Prot) {
        let mm = &mut self.mm;
        self.cpu
            .run(|| mm.mprotect(addr, pages * PAGE_SIZE, prot))
            .expect("mprotect");
    }
    /// `mremap` with `MREMAP_MAYMOVE` (out of line, so that a profile
    /// names it).
    #[inline(never)]
    pub fn mremap(&mut self, addr: u64, old: u64, new: u64) -> u64 {
        let mm = &mut self.mm;
        self.cpu
            .run(|| {
                mm.mremap(
                    addr,
                    old * PAGE_SIZE,
                    new * PAGE_SIZE,
                    RemapFlags(MREMAP_MAYMOVE),
                    0,
                )
            })
            .expect("mremap")
    }
}

/// The `mremap` benchmarks' set-up on the aspace side: 257 resident
/// pages at `BASE`, the last made read-only if `whole` (so the first 256
/// are a mapping of their own, moved whole; otherwise they are part of the
/// 257-page mapping, which the move splits). Returns `BASE`.
pub fn ours_remap_setup(o: &mut Ours, whole: bool) -> u64 {
    let at = o.mmap(BASE, 257, MAP_FIXED | MAP_POPULATE);
    if whole {
        o.mprotect(at + 256 * PAGE_SIZE, 1, Prot::R);
    }
    at
}

/// Linux, in this process.
pub mod linux {
    use super::PAGE_SIZE;

    /// [`ours_remap_setup`](super::ours_remap_setup) on Linux, placed
    /// anywhere.
    pub fn remap_setup(whole: bool) -> u64 {
        let at = mmap(0, 257, libc::MAP_POPULATE);
        if whole {
            mprotect(at + 256 * PAGE_SIZE, 1, libc::PROT_READ);
        }
        at
    }

    pub fn mmap(addr: u64, pages: u64, flags: i32) -> u64 {
        // SAFETY: without MAP_FIXED the kernel picks free memory; with
        // MAP_FIXED_NOREPLACE it refuses to replace anything.
        let p = unsafe {
            libc::mmap(
                addr as *mut libc::c_void,
                (pages * PAGE_SIZE) as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap");
        p as u64
    }
    pub fn munmap(addr: u64, pages: u64) {
        // SAFETY: only ranges this benchmark mapped and no longer uses.
        let r = unsafe { libc::munmap(addr as *mut libc::c_void, (pages * PAGE_SIZE) as usize) };
        assert_eq!(r, 0, "munmap");
    }
    pub fn mprotect(addr: u64, pages: u64, prot: i32) {
        // SAFETY: a range this benchmark mapped; nothing reads it meanwhile.
        let r = unsafe {
            libc::mprotect(
                addr as *mut libc::c_void,
                (pages * PAGE_SIZE) as usize,
                prot,
            )
        };
        assert_eq!(r, 0, "mprotect");
    }
    pub fn mremap(addr: u64, old: u64, new: u64) -> u64 {
        // SAFETY: a mapping of this benchmark; it may move, and the
        // benchmark only uses the address returned.
        let p = unsafe {
            libc::mremap(
                addr as *mut libc::c_void,
                (old * PAGE_SIZE) as usize,
                (new * PAGE_SIZE) as usize,
                libc::MREMAP_MAYMOVE,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mremap");
        p as u64
    }
}
