//! Guard pages: an area whose every access faults (Linux's guard regions,
//! `MADV_GUARD_INSTALL`), without a mapping of its own in the caller's view.

use crate::addr::{Frame, Page};
use crate::backend::{AreaInfo, Backend, BackendCaps};
use crate::flags::Access;
use crate::memory::{FrameAllocator, PhysMemory};
use crate::{Error, Result};

/// The guard backend: no page is ever mapped, so every access to the area
/// faults: one its rights allow with [`FaultReason::Guard`](crate::FaultReason::Guard)
/// (the backend refuses with `PermissionDenied`), others as in any area
/// ([`FaultReason::Access`](crate::FaultReason::Access)). It reserves no memory
/// (see [`ReservingGuardBackend`] for one that does) and maps no frame;
/// its areas may change rights (so a range of guard pages follows the
/// rights of what it lies in), never grow, and a fork gives the child the
/// same guard pages.
#[derive(Clone, Copy, Debug, Default)]
pub struct GuardBackend;

impl GuardBackend {
    /// Its [`name`](Backend::name), as [`AreaInfo::backend`] shows it.
    pub const NAME: &'static str = "guard";
}

impl<P: PhysMemory, F: FrameAllocator> Backend<P, F> for GuardBackend {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn page_fault(
        &self,
        _memory: &P,
        _frames: &F,
        _area: &AreaInfo,
        _page: Page,
        _access: Access,
    ) -> Result<Frame> {
        Err(Error::PermissionDenied)
    }

    fn caps(&self) -> BackendCaps {
        BackendCaps::CHANGE_FLAGS
    }

    /// None: no page is ever mapped.
    fn reserve_pages(&self, _first: u64, _count: u64) -> u64 {
        0
    }
}

/// [`GuardBackend`] that reserves memory for each of its pages, as the
/// anonymous memory it stands in for did: guard pages put into memory that
/// counts against the commit limit keep counting (as Linux keeps charging
/// an accounted mapping's guard regions), so taking them out again needs no
/// new reservation. Its areas show the same [`name`](Backend::name).
#[derive(Clone, Copy, Debug, Default)]
pub struct ReservingGuardBackend;

impl<P: PhysMemory, F: FrameAllocator> Backend<P, F> for ReservingGuardBackend {
    fn name(&self) -> &'static str {
        GuardBackend::NAME
    }

    fn page_fault(
        &self,
        memory: &P,
        frames: &F,
        area: &AreaInfo,
        page: Page,
        access: Access,
    ) -> Result<Frame> {
        Backend::<P, F>::page_fault(&GuardBackend, memory, frames, area, page, access)
    }

    fn caps(&self) -> BackendCaps {
        Backend::<P, F>::caps(&GuardBackend)
    }

    /// Every page, as anonymous memory reserves.
    fn reserve_pages(&self, _first: u64, count: u64) -> u64 {
        count
    }
}
