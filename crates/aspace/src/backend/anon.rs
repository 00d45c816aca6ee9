//! Anonymous memory: a fresh zeroed frame on the first touch of each page.

use crate::addr::{Frame, Page};
use crate::backend::AreaInfo;
use crate::backend::Backend;
use crate::flags::Access;
use crate::machine::{FrameAllocator, Machine, PhysMemory};
use crate::{Error, Result};

/// The anonymous-memory backend (HelenOS `anon_backend`).
#[derive(Clone, Copy, Debug, Default)]
pub struct AnonBackend;

/// A frame filled with zeros, with one reference.
pub(crate) fn zeroed_frame<M: Machine>(machine: &M) -> Result<Frame> {
    let frame = machine.frames().alloc().ok_or(Error::NoMemory)?;
    machine.memory().zero_frame(frame);
    Ok(frame)
}

impl<M: Machine> Backend<M> for AnonBackend {
    fn name(&self) -> &'static str {
        "anon"
    }

    fn page_fault(
        &self,
        machine: &M,
        _area: &AreaInfo,
        _page: Page,
        _access: Access,
    ) -> Result<Frame> {
        zeroed_frame(machine)
    }

    fn prepare(&self, machine: &M) -> Option<Frame> {
        zeroed_frame(machine).ok()
    }

    fn can_change_flags(&self) -> bool {
        true
    }
}
