//! Anonymous memory: a fresh zeroed frame on the first touch of each page.

use crate::addr::{Frame, Page};
use crate::backend::AreaInfo;
use crate::backend::Backend;
use crate::backend::BackendCaps;
use crate::flags::Access;
use crate::memory::{FrameAllocator, PhysMemory};
use crate::{Error, Result};

/// The anonymous-memory backend (HelenOS `anon_backend`).
#[derive(Clone, Copy, Debug, Default)]
pub struct AnonBackend;

/// A frame filled with zeros, with one reference.
pub(crate) fn zeroed_frame<P: PhysMemory, F: FrameAllocator>(
    memory: &P,
    frames: &F,
) -> Result<Frame> {
    let frame = frames.alloc().ok_or(Error::NoMemory)?;
    memory.zero_frame(frame);
    Ok(frame)
}

impl<P: PhysMemory, F: FrameAllocator> Backend<P, F> for AnonBackend {
    fn name(&self) -> &'static str {
        "anon"
    }

    fn page_fault(
        &self,
        memory: &P,
        frames: &F,
        _area: &AreaInfo,
        _page: Page,
        _access: Access,
    ) -> Result<Frame> {
        zeroed_frame(memory, frames)
    }

    fn prepare(&self, memory: &P, frames: &F) -> Option<Frame> {
        zeroed_frame(memory, frames).ok()
    }

    fn caps(&self) -> BackendCaps {
        BackendCaps::all()
    }

    /// All anonymous memory is one object: any two anonymous areas' pages
    /// come from the same place (fresh zeroed frames).
    fn object_id(&self) -> usize {
        0
    }

    /// Every page: each may get a frame of its own.
    fn reserve_pages(&self, _first: u64, count: u64) -> u64 {
        count
    }
}
