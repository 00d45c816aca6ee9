//! Copies between kernel buffers and user memory of an address space,
//! through its page tables, faulting pages in through the normal handler.

use crate::addr::{VirtAddr, PAGE_SIZE};
use crate::flags::{Access, PageFlags};
use crate::machine::{Machine, PhysMemory};
use crate::paging::PageTable;
use crate::space::AddressSpace;
use crate::{Error, FaultOutcome, PhysAddr, Result};

impl<M: Machine> AddressSpace<M> {
    /// Copies `buf.len()` bytes of user memory at `addr` into `buf`. Any
    /// inaccessible byte (no area, no rights, kernel address, out of
    /// memory) fails the whole copy with `BadMemory`.
    pub fn copy_from_user(&self, addr: VirtAddr, buf: &mut [u8]) -> Result<()> {
        self.check_user_range(addr, buf.len())?;
        let mem = self.shared.machine.memory();
        let mut done = 0usize;
        while done < buf.len() {
            let a = VirtAddr::new(addr.as_u64() + done as u64);
            let n = ((PAGE_SIZE - a.page_offset()) as usize).min(buf.len() - done);
            self.with_user_frame(a, Access::Read, |pa| mem.read(pa, &mut buf[done..done + n]))?;
            done += n;
        }
        Ok(())
    }

    /// Copies `data` to user memory at `addr`; see
    /// [`copy_from_user`](Self::copy_from_user). Bytes of pages before the
    /// failing one may have been written.
    pub fn copy_to_user(&self, addr: VirtAddr, data: &[u8]) -> Result<()> {
        self.check_user_range(addr, data.len())?;
        let mem = self.shared.machine.memory();
        let mut done = 0usize;
        while done < data.len() {
            let a = VirtAddr::new(addr.as_u64() + done as u64);
            let n = ((PAGE_SIZE - a.page_offset()) as usize).min(data.len() - done);
            self.with_user_frame(a, Access::Write, |pa| mem.write(pa, &data[done..done + n]))?;
            done += n;
        }
        Ok(())
    }

    fn check_user_range(&self, addr: VirtAddr, len: usize) -> Result<()> {
        match addr.as_u64().checked_add(len as u64) {
            Some(end) if !self.is_kernel() && end <= self.user_end() => Ok(()),
            _ => Err(Error::BadMemory),
        }
    }

    /// Runs `op` on the physical address `addr` maps for `access`, with the
    /// tree read-locked and the area's lock held, so the frame can be neither
    /// unmapped nor freed meanwhile.
    fn with_user_frame(
        &self,
        addr: VirtAddr,
        access: Access,
        op: impl FnOnce(PhysAddr),
    ) -> Result<()> {
        let mut op = Some(op);
        // Each fault makes progress; a page a backend lends needs two (the
        // first maps it without write, the second copies it), and a third
        // try finds it.
        for _ in 0..3 {
            let mem = self.shared.machine.memory();
            let done = {
                // The area's lock is held during the copy, so the frame cannot
                // be unmapped (let alone freed) under it: every unmap of the
                // area's pages takes that lock or the tree's write lock.
                // Without an area the fault below fails (and is counted).
                let tree = self.read_areas();
                let area = self.area_at(&tree, addr.page().number());
                let _locked = area.map(|slot| slot.lock());
                match area.and_then(|_| self.pt().translate(mem, addr.page())) {
                    Some((frame, flags))
                        if flags.contains(PageFlags::USER) && flags.permits(access) =>
                    {
                        let op = op.take().expect("runs once");
                        op(PhysAddr::new(frame.start().as_u64() + addr.page_offset()));
                        true
                    }
                    _ => false,
                }
            };
            if done {
                return Ok(());
            }
            if self.page_fault(addr, access, crate::FaultContext::UserCopy) != FaultOutcome::Ok {
                return Err(Error::BadMemory);
            }
        }
        Err(Error::BadMemory)
    }
}
