//! A CPU of the simulated machine, driven by one thread at a time: it
//! switches address spaces and performs user-mode loads, stores and
//! instruction fetches through its TLB and the page tables, raising page
//! faults into the core and retrying, as hardware and a kernel's low-level
//! fault handler would.

use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use aspace::{
    Access, AddressSpace, Asid, Error, FaultContext, FaultOutcome, FaultReason, PhysAddr,
    PhysMemory, System, VirtAddr, PAGE_SIZE,
};

use crate::hardware::{SimHardware, SimMachine};
use crate::mmu;
use crate::tlb::TlbEntry;

/// An address space of the simulated machine.
pub type Space = AddressSpace<SimMachine>;

/// A shared handle on an address space of the simulated machine, as
/// [`System::create`](aspace::System::create) hands it out.
pub type SpaceHandle = aspace::SpaceRef<SimMachine>;

/// A user access that faulted and that the core refused to resolve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessFault {
    /// The faulting address.
    pub addr: VirtAddr,
    /// The kind of access.
    pub access: Access,
    /// Why the core refused it.
    pub reason: FaultReason,
}

impl fmt::Display for AccessFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.access {
            Access::Read => "read",
            Access::Write => "write",
            Access::Exec => "execute",
        };
        let why = match self.reason {
            FaultReason::NoArea => "no area there",
            FaultReason::Partial => "area not ready",
            FaultReason::Access => "area does not allow it",
            FaultReason::NoMemory => "out of memory",
            FaultReason::PagerError => "the pager refused the page",
            FaultReason::PagerGone => "the pager is gone",
            FaultReason::Guard => "guard page",
        };
        write!(f, "{what} at {} refused: {why}", self.addr)
    }
}

impl std::error::Error for AccessFault {}

/// One CPU, owned by the thread that drives it.
///
/// Dropping it switches the CPU to the kernel address space, releasing the
/// user address space it ran.
pub struct Cpu {
    hw: Arc<SimHardware>,
    system: Arc<System<SimMachine>>,
    id: usize,
    current: Option<SpaceHandle>,
}

/// How often one access may fault before it is given up (another CPU may
/// keep unmapping the page).
const MAX_RETRIES: usize = 1000;

impl Cpu {
    pub(crate) fn new(hw: Arc<SimHardware>, system: Arc<System<SimMachine>>, id: usize) -> Self {
        Self {
            hw,
            system,
            id,
            current: None,
        }
    }

    /// The CPU's number.
    pub fn id(&self) -> usize {
        self.id
    }

    /// The address space this CPU runs.
    pub fn current(&self) -> Option<&SpaceHandle> {
        self.current.as_ref()
    }

    /// Switches to `space` (the scheduler's part: HelenOS `as_switch`).
    pub fn switch_to(&mut self, space: &SpaceHandle) -> aspace::Result<Asid> {
        let _on = self.hw.enter(self.id);
        let asid = self.system.switch(self.current.as_deref(), space)?;
        self.current = Some(space.clone());
        Ok(asid)
    }

    /// Switches to the kernel address space, letting go of the user one.
    pub fn idle(&mut self) {
        let kernel = self.system.kernel().clone();
        if !self
            .current
            .as_ref()
            .is_some_and(|c| aspace::TryArc::ptr_eq(c, &kernel))
        {
            self.switch_to(&kernel)
                .expect("the kernel ASID is always available");
        }
    }

    /// Runs `f` as this CPU (so core calls see it as the current CPU).
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        let _on = self.hw.enter(self.id);
        f()
    }

    /// A copy of this CPU's TLB.
    pub fn tlb_entries(&self) -> Vec<TlbEntry> {
        self.hw.tlb_entries(self.id)
    }

    /// Translates `addr` for `access` and runs `op` on its physical address
    /// while the CPU's core lock is held (one indivisible instruction),
    /// faulting into the core and retrying as needed.
    fn with_phys(
        &mut self,
        addr: VirtAddr,
        access: Access,
        in_copy: bool,
        mut op: impl FnMut(&SimHardware, PhysAddr),
    ) -> Result<(), AccessFault> {
        let refuse = |reason| AccessFault {
            addr,
            access,
            reason,
        };
        let _on = self.hw.enter(self.id);
        let page = addr.page();
        let layout = self.hw.arch.layout();
        let canonical = addr.as_u64() < layout.user_end || addr.as_u64() >= layout.kernel_start;
        for _ in 0..MAX_RETRIES {
            if canonical {
                let slot = &self.hw.cpus[self.id];
                let mut core = slot.core.lock();
                let asid = core.asid;
                let permitted = |e: &TlbEntry| {
                    e.user
                        && match access {
                            Access::Read => e.readable,
                            Access::Write => e.writable,
                            Access::Exec => e.executable,
                        }
                };
                let hit = core.tlb.lookup(asid, page);
                let entry = match hit {
                    Some(e) => {
                        self.hw.tlb_hits.fetch_add(1, Relaxed);
                        Some(e)
                    }
                    None => {
                        self.hw.tlb_misses.fetch_add(1, Relaxed);
                        // A walk that faults caches nothing.
                        mmu::walk(self.hw.arch, &self.hw.mem, core.roots, addr)
                            .ok()
                            .map(|w| TlbEntry {
                                asid,
                                page,
                                frame: w.frame,
                                readable: w.readable,
                                writable: w.writable,
                                executable: w.executable,
                                user: w.user,
                                global: w.global,
                                generation: self.hw.frames.generation(w.frame),
                            })
                    }
                };
                match entry {
                    Some(e) if permitted(&e) => {
                        if hit.is_none() {
                            core.tlb.insert(e);
                        } else if self.hw.frames.generation(e.frame) != e.generation {
                            self.hw.stale.fetch_add(1, Relaxed);
                        }
                        let pa = PhysAddr::new(e.frame.start().as_u64() + addr.page_offset());
                        op(&self.hw, pa);
                        return Ok(());
                    }
                    // A refused entry stays cached where the architecture
                    // allows it (see `Arch::fault_drops_entry`).
                    Some(_) if hit.is_some() && self.hw.arch.fault_drops_entry() => {
                        core.tlb.remove(asid, page)
                    }
                    _ => {}
                }
            }
            // Page fault: the core's handler runs without the core lock.
            self.hw.faults.fetch_add(1, Relaxed);
            let Some(space) = self.current.as_ref() else {
                return Err(refuse(FaultReason::NoArea));
            };
            if !canonical {
                return Err(refuse(FaultReason::NoArea));
            }
            let context = if in_copy {
                FaultContext::UserCopy
            } else {
                FaultContext::User
            };
            match space.page_fault(addr, access, context) {
                FaultOutcome::Ok => continue,
                FaultOutcome::Fault(r) | FaultOutcome::Defer(r) => return Err(refuse(r)),
            }
        }
        Err(refuse(FaultReason::NoArea))
    }

    /// Splits `[addr, addr+len)` at page boundaries.
    fn pieces(addr: VirtAddr, len: usize) -> impl Iterator<Item = (VirtAddr, usize, usize)> {
        let mut done = 0usize;
        std::iter::from_fn(move || {
            if done >= len {
                return None;
            }
            let a = addr.as_u64().wrapping_add(done as u64);
            let n = ((PAGE_SIZE - a % PAGE_SIZE) as usize).min(len - done);
            let item = (VirtAddr::new(a), done, n);
            done += n;
            Some(item)
        })
    }

    fn load(&mut self, addr: VirtAddr, buf: &mut [u8], in_copy: bool) -> Result<(), AccessFault> {
        for (a, off, n) in Self::pieces(addr, buf.len()) {
            self.with_phys(a, Access::Read, in_copy, |hw, pa| {
                hw.mem.read(pa, &mut buf[off..off + n])
            })?;
        }
        Ok(())
    }

    fn store(&mut self, addr: VirtAddr, data: &[u8], in_copy: bool) -> Result<(), AccessFault> {
        for (a, off, n) in Self::pieces(addr, data.len()) {
            self.with_phys(a, Access::Write, in_copy, |hw, pa| {
                if in_copy {
                    // The kernel's copy into user memory.
                    hw.mem.write(pa, &data[off..off + n])
                } else {
                    hw.mem.write_user(pa, &data[off..off + n])
                }
            })?;
        }
        Ok(())
    }

    /// A user-mode load of `buf.len()` bytes (may cross pages).
    pub fn read(&mut self, addr: VirtAddr, buf: &mut [u8]) -> Result<(), AccessFault> {
        self.load(addr, buf, false)
    }

    /// A user-mode store of `data` (may cross pages).
    pub fn write(&mut self, addr: VirtAddr, data: &[u8]) -> Result<(), AccessFault> {
        self.store(addr, data, false)
    }

    /// A user-mode 64-bit load.
    pub fn read_u64(&mut self, addr: VirtAddr) -> Result<u64, AccessFault> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// A user-mode 64-bit store.
    pub fn write_u64(&mut self, addr: VirtAddr, value: u64) -> Result<(), AccessFault> {
        self.write(addr, &value.to_le_bytes())
    }

    /// A user-mode instruction fetch of one byte.
    pub fn fetch(&mut self, addr: VirtAddr) -> Result<u8, AccessFault> {
        let mut b = [0u8; 1];
        self.with_phys(addr, Access::Exec, false, |hw, pa| {
            if hw.mem.unsynced(pa.frame()) {
                hw.stale_fetches.fetch_add(1, Relaxed);
            }
            hw.mem.read(pa, &mut b)
        })?;
        Ok(b[0])
    }

    /// Kernel copy from user memory of the current address space: faults are
    /// resolved through the normal handler; an inaccessible byte makes the
    /// whole copy fail with `BadMemory` (the handler's DEFER path).
    pub fn copy_from_user(&mut self, addr: VirtAddr, buf: &mut [u8]) -> aspace::Result<()> {
        self.check_user_range(addr, buf.len())?;
        self.load(addr, buf, true).map_err(|_| Error::BadMemory)
    }

    /// Kernel copy to user memory; see [`copy_from_user`](Self::copy_from_user).
    pub fn copy_to_user(&mut self, addr: VirtAddr, data: &[u8]) -> aspace::Result<()> {
        self.check_user_range(addr, data.len())?;
        self.store(addr, data, true).map_err(|_| Error::BadMemory)
    }

    fn check_user_range(&self, addr: VirtAddr, len: usize) -> aspace::Result<()> {
        match addr.as_u64().checked_add(len as u64) {
            Some(end) if end <= self.hw.arch.layout().user_end => Ok(()),
            _ => Err(Error::BadMemory),
        }
    }
}

impl Drop for Cpu {
    fn drop(&mut self) {
        self.idle();
        self.hw.cpus[self.id].attached.store(false, Relaxed);
    }
}
