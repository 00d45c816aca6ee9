//! Physical (device) memory: an area that maps a fixed physical range.

use crate::addr::{Frame, Page};
use crate::backend::AreaInfo;
use crate::backend::Backend;
use crate::backend::BackendCaps;
use crate::flags::Access;
use crate::memory::{FrameAllocator, PhysMemory};
use crate::{Error, Result};

/// The physical-memory backend (HelenOS `phys_backend`): page `i` of the
/// area maps frame `base + i`. Frames are never counted nor freed, the area
/// cannot be resized, and sharing maps the same frames.
#[derive(Clone, Copy, Debug)]
pub struct PhysBackend {
    base: Frame,
    frames: u64,
}

impl PhysBackend {
    /// Maps `frames` frames from `base`.
    pub fn new(base: Frame, frames: u64) -> Self {
        Self { base, frames }
    }
}

impl<P: PhysMemory, F: FrameAllocator> Backend<P, F> for PhysBackend {
    fn name(&self) -> &'static str {
        "phys"
    }

    fn page_fault(
        &self,
        _memory: &P,
        _frames: &F,
        area: &AreaInfo,
        page: Page,
        _access: Access,
    ) -> Result<Frame> {
        let i = area.page_index(page);
        if i >= self.frames {
            return Err(Error::NotFound);
        }
        Ok(Frame::from_number(self.base.number() + i))
    }

    fn caps(&self) -> BackendCaps {
        BackendCaps::SHARE
    }

    /// None: the frames are the device's, never allocated.
    fn reserve_pages(&self, _first: u64, _count: u64) -> u64 {
        0
    }
}
