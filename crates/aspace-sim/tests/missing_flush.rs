//! The simulator catches a missing TLB flush.
//!
//! A real CPU with PCIDs keeps translations across address-space switches,
//! so a kernel that forgets one flush (an ASID handed from one space to
//! another without invalidating it, a shootdown that never reaches another
//! CPU) lets a task read another space's memory, or memory already freed.
//! Bochs flushes the whole TLB on every CR3 write, and QEMU's TCG has no
//! PCIDs at all, so booting the kernel there cannot show that every flush
//! is there: the simulator must. These tests run the core on a machine that
//! drops chosen flushes (the simulator's hardware behind a [`Machine`]
//! wrapper) and check that the simulated MMU then reads the previous owner's
//! data or counts stale accesses (`HwStats::stale_accesses`), while the
//! same steps with every flush delivered read the right data and count
//! none.
//!
//! The address spaces live in a [`System`] of the wrapper machine, built on
//! the simulator's hardware; the simulator's [`Cpu`] handles only perform
//! the memory accesses, through the root and ASID that system loaded and
//! the CPU's TLB. Pages are faulted in through the core beforehand, so the
//! accesses never need the `Cpu`'s own fault path.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use aspace::{
    Access, AreaFlags, Asid, CpuId, CpuSet, FaultOutcome, Frame, Invalidation, Machine, Shootdown,
    System, Tlb, VirtAddr, PAGE_SIZE,
};
use aspace_sim::{Cpu, HwStats, Sim, SimConfig, SimMachine};

const RW: AreaFlags = AreaFlags::READ.union(AreaFlags::WRITE);
/// Every space maps its page here, so only the ASID tells their TLB
/// entries apart.
const BASE: VirtAddr = VirtAddr::new(0x40_0000);
const A_DATA: u64 = 0xaaaa_0000_0000_00a1;
const B_DATA: u64 = 0xbbbb_0000_0000_00b2;

/// Which flushes the machine drops, and how many it dropped.
#[derive(Default)]
struct Faults {
    /// Drop local invalidations of a whole ASID (the flush of an ASID
    /// taken from another space, at the steal or lazily).
    local_asid_flushes: AtomicBool,
    /// Drop every shootdown (the other CPUs keep their entries).
    shootdowns: AtomicBool,
    /// Flushes dropped so far.
    dropped: AtomicU64,
}

/// The simulator's TLB control, but for the flushes [`Faults`] drops.
struct ForgetfulTlb {
    base: SimMachine,
    faults: Arc<Faults>,
}

impl Tlb for ForgetfulTlb {
    fn invalidate_local(&self, what: Invalidation) {
        if matches!(what, Invalidation::Asid(_)) && self.faults.local_asid_flushes.load(Relaxed) {
            self.faults.dropped.fetch_add(1, Relaxed);
            return;
        }
        self.base.hardware().invalidate_local(what);
    }
    fn install(&self, root: Frame, asid: Asid) {
        self.base.hardware().install(root, asid);
    }
}

/// The simulator's shootdown IPIs, but for the ones [`Faults`] drops.
struct ForgetfulShootdown {
    base: SimMachine,
    faults: Arc<Faults>,
}

impl Shootdown for ForgetfulShootdown {
    fn shootdown(&self, targets: CpuSet, what: Invalidation) -> usize {
        if self.faults.shootdowns.load(Relaxed) {
            self.faults.dropped.fetch_add(1, Relaxed);
            return 0;
        }
        self.base.hardware().shootdown(targets, what)
    }
}

/// The simulator's machine with flushes that can go missing.
struct ForgetfulMachine {
    base: SimMachine,
    tlb: ForgetfulTlb,
    shootdown: ForgetfulShootdown,
}

impl Machine for ForgetfulMachine {
    type Lock = parking_lot::RawMutex;
    type RwLock = parking_lot::RawRwLock;
    type Memory = aspace_sim::PhysMem;
    type Frames = aspace_sim::FramePool;
    type Cpus = aspace_sim::SimHardware;
    type Tlb = ForgetfulTlb;
    type Shootdown = ForgetfulShootdown;
    type PageTable = aspace::paging::x86_64::X86_64PageTable;

    fn memory(&self) -> &Self::Memory {
        self.base.hardware().memory()
    }
    fn frames(&self) -> &Self::Frames {
        self.base.hardware().frames()
    }
    fn cpus(&self) -> &aspace_sim::SimHardware {
        self.base.hardware()
    }
    fn tlb(&self) -> &ForgetfulTlb {
        &self.tlb
    }
    fn shootdown(&self) -> &ForgetfulShootdown {
        &self.shootdown
    }
}

/// A simulated machine and a system of address spaces on it whose flushes
/// can be dropped.
struct Rig {
    sim: Sim,
    system: Arc<System<ForgetfulMachine>>,
    faults: Arc<Faults>,
}

impl Rig {
    fn new(cpus: usize, asids: u16) -> Rig {
        let sim = Sim::new(SimConfig {
            cpus,
            memory: 16 << 20,
            asids,
            tlb_entries: 64,
            ..SimConfig::default()
        })
        .unwrap();
        let base = sim.system().machine().clone();
        let faults = Arc::new(Faults::default());
        let machine = ForgetfulMachine {
            base: base.clone(),
            tlb: ForgetfulTlb {
                base: base.clone(),
                faults: faults.clone(),
            },
            shootdown: ForgetfulShootdown {
                base,
                faults: faults.clone(),
            },
        };
        let system = Arc::new(
            System::new(
                machine,
                aspace::Config {
                    asids,
                    ..aspace::Config::default()
                },
            )
            .unwrap(),
        );
        Rig {
            sim,
            system,
            faults,
        }
    }

    fn hw_stats(&self) -> HwStats {
        self.sim.hardware().stats()
    }

    /// A space with one read-write page at [`BASE`], faulted in (on CPU
    /// `cpu`) and holding `data`, written to its frame directly so that no
    /// TLB is involved.
    fn space(&self, cpu: CpuId, data: u64) -> aspace::SpaceRef<ForgetfulMachine> {
        let s = self.system.create().unwrap();
        s.area_create(BASE, PAGE_SIZE, RW).unwrap();
        self.on(cpu);
        assert_eq!(
            s.page_fault(BASE, Access::Write, aspace::FaultContext::User),
            FaultOutcome::Ok
        );
        let (frame, _) = s.translate(BASE.page()).expect("faulted in");
        aspace::PhysMemory::write_u64(
            self.sim.hardware().memory(),
            aspace::PhysAddr::new(frame.start().as_u64()),
            data,
        );
        s
    }

    /// Makes the calling thread run as CPU `cpu` for the core's calls.
    fn on(&self, cpu: CpuId) {
        self.sim.hardware().migrate_current(cpu);
    }

    /// Switches CPU `cpu` from `old` (`None`: the kernel) to `new` (`None`:
    /// the kernel).
    fn switch(
        &self,
        cpu: CpuId,
        old: Option<&aspace::SpaceRef<ForgetfulMachine>>,
        new: Option<&aspace::SpaceRef<ForgetfulMachine>>,
    ) -> Asid {
        self.on(cpu);
        let kernel = self.system.kernel();
        self.system
            .switch(Some(&**old.unwrap_or(kernel)), new.unwrap_or(kernel))
            .unwrap()
    }

    /// Runs `f` with the chosen flushes dropped, and returns how many were.
    fn forgetting(&self, local: bool, shootdowns: bool, f: impl FnOnce()) -> u64 {
        let before = self.faults.dropped.load(Relaxed);
        self.faults.local_asid_flushes.store(local, Relaxed);
        self.faults.shootdowns.store(shootdowns, Relaxed);
        f();
        self.faults.local_asid_flushes.store(false, Relaxed);
        self.faults.shootdowns.store(false, Relaxed);
        self.faults.dropped.load(Relaxed) - before
    }
}

/// What a CPU saw after a steal (see [`steal`]).
#[derive(Debug)]
struct StealSeen {
    /// Flushes the machine dropped.
    dropped: u64,
    /// The new owner's read of its own page, while the old owner lives.
    read: u64,
    /// The same read after the old owner was destroyed (its frame freed).
    read_after_free: u64,
    /// Stale accesses the simulated MMU counted.
    stale: u64,
}

/// Space A runs on CPU `a_cpu` and reads its page there (a TLB entry
/// tagged with its ASID); it goes idle. Space B then takes A's ASID on CPU
/// 0 (1 user ASID per CPU: the pool is empty, A's is the one stolen) and
/// CPU `a_cpu` runs B and reads B's page. With `forget`, every flush of
/// the steal is dropped, however the core does it: the stealing CPU's own
/// flush of the ASID, a shootdown to the CPU that ran A, or the flush that
/// CPU does when it first runs B (a core that flushes lazily, without an
/// IPI).
fn steal(a_cpu: CpuId, forget: bool) -> StealSeen {
    let cpus = a_cpu + 1;
    let rig = Rig::new(cpus, cpus as u16);
    let mut cpu: Vec<Cpu> = (0..cpus).map(|c| rig.sim.cpu(c)).collect();
    // With two CPUs, CPU 0 keeps a third space running, so the only
    // inactive holder of an ASID is A.
    let other = (cpus > 1).then(|| rig.space(0, 0));
    if let Some(o) = &other {
        rig.switch(0, None, Some(o));
    }
    let a = rig.space(a_cpu, A_DATA);
    let b = rig.space(0, B_DATA);
    let a_asid = rig.switch(a_cpu, None, Some(&a));
    assert_eq!(cpu[a_cpu].read_u64(BASE).unwrap(), A_DATA);
    assert!(
        cpu[a_cpu]
            .tlb_entries()
            .iter()
            .any(|e| e.asid == a_asid && e.page == BASE.page()),
        "A's read left no TLB entry"
    );
    rig.switch(a_cpu, Some(&a), None);
    let stats = rig.system.stats();
    let mut dropped = rig.forgetting(forget, forget, || {
        let b_asid = rig.switch(0, other.as_ref(), Some(&b));
        assert_eq!(b_asid, a_asid, "B got A's ASID");
    });
    assert_eq!(rig.system.stats().since(&stats).asid_steals, 1);
    assert_eq!(a.asid(), None);
    if a_cpu != 0 {
        dropped += rig.forgetting(forget, forget, || {
            rig.switch(a_cpu, None, Some(&b));
        });
    }
    let stale_before = rig.hw_stats().stale_accesses;
    let read = cpu[a_cpu].read_u64(BASE).unwrap();
    // A dies: its frame goes back to the allocator. A holds no ASID, so
    // nothing is flushed.
    rig.on(0);
    drop(a);
    let read_after_free = cpu[a_cpu].read_u64(BASE).unwrap();
    let stale = rig.hw_stats().stale_accesses - stale_before;
    // Every CPU back to the kernel before the spaces go.
    rig.switch(0, Some(&b), None);
    if a_cpu != 0 {
        rig.switch(a_cpu, Some(&b), None);
    }
    drop(b);
    drop(other);
    cpu.clear();
    StealSeen {
        dropped,
        read,
        read_after_free,
        stale,
    }
}

/// One CPU: the steal's flush on the CPU that ran A and now runs B.
#[test]
fn a_steal_that_skips_its_local_flush_is_caught() {
    let good = steal(0, false);
    assert_eq!(good.dropped, 0, "{good:?}");
    assert_eq!(good.read, B_DATA, "{good:?}");
    assert_eq!(good.read_after_free, B_DATA, "{good:?}");
    assert_eq!(good.stale, 0, "{good:?}");

    let bad = steal(0, true);
    assert!(bad.dropped > 0, "no flush was dropped: {bad:?}");
    // B reads A's page through the entry A left under the ASID ...
    assert_eq!(bad.read, A_DATA, "{bad:?}");
    // ... and, once A is gone, a freed frame: the MMU counts it.
    assert!(bad.stale > 0, "the freed frame was not noticed: {bad:?}");
}

/// Two CPUs: A ran on CPU 1, CPU 0 steals its ASID; the flush that must
/// reach CPU 1 (an IPI, or CPU 1's own flush before it runs B) is lost.
#[test]
fn a_steal_whose_flush_never_reaches_the_other_cpu_is_caught() {
    let good = steal(1, false);
    assert_eq!(good.dropped, 0, "{good:?}");
    assert_eq!(good.read, B_DATA, "{good:?}");
    assert_eq!(good.read_after_free, B_DATA, "{good:?}");
    assert_eq!(good.stale, 0, "{good:?}");

    let bad = steal(1, true);
    assert!(bad.dropped > 0, "no flush was dropped: {bad:?}");
    assert_eq!(bad.read, A_DATA, "{bad:?}");
    assert!(bad.stale > 0, "the freed frame was not noticed: {bad:?}");
}

/// What CPU 1 saw after CPU 0 destroyed the area both run (see
/// [`unmap`]).
#[derive(Debug)]
struct UnmapSeen {
    dropped: u64,
    /// CPU 1's read of the destroyed area: `Ok` only through a TLB entry.
    read: Result<u64, aspace_sim::AccessFault>,
    stale: u64,
}

/// One space runs on CPUs 0 and 1; CPU 1 reads its page (a TLB entry);
/// CPU 0 destroys the area, with the shootdown to CPU 1 dropped when
/// `forget` is set; CPU 1 reads the page again.
fn unmap(forget: bool) -> UnmapSeen {
    let rig = Rig::new(2, 2);
    let mut cpu1 = rig.sim.cpu(1);
    let a = rig.space(0, A_DATA);
    rig.switch(0, None, Some(&a));
    rig.switch(1, None, Some(&a));
    assert_eq!(cpu1.read_u64(BASE).unwrap(), A_DATA);
    let stale_before = rig.hw_stats().stale_accesses;
    let dropped = rig.forgetting(false, forget, || {
        rig.on(0);
        a.area_destroy(BASE).unwrap();
    });
    assert_eq!(a.translate(BASE.page()), None);
    let read = cpu1.read_u64(BASE);
    let stale = rig.hw_stats().stale_accesses - stale_before;
    rig.switch(0, Some(&a), None);
    rig.switch(1, Some(&a), None);
    drop(cpu1);
    UnmapSeen {
        dropped,
        read,
        stale,
    }
}

#[test]
fn an_unmap_whose_shootdown_is_lost_is_caught() {
    let good = unmap(false);
    assert_eq!(good.dropped, 0, "{good:?}");
    assert!(good.read.is_err(), "the unmapped page was read: {good:?}");
    assert_eq!(good.stale, 0, "{good:?}");

    let bad = unmap(true);
    assert!(bad.dropped > 0, "no shootdown was dropped: {bad:?}");
    assert!(bad.read.is_ok(), "{bad:?}");
    assert!(bad.stale > 0, "the freed frame was not noticed: {bad:?}");
}
