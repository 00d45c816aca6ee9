//! ELF segments paged on demand from an image held in physical memory.

use alloc::vec::Vec;

use crate::addr::{Frame, Page, PhysAddr, PAGE_SIZE};
use crate::backend::anon::zeroed_frame;
use crate::backend::AreaInfo;
use crate::backend::Backend;
use crate::flags::{Access, AreaFlags};
use crate::internals::try_arc::TryArc;
use crate::machine::{FrameAllocator, Machine, PhysMemory};
use crate::{Error, Result};

/// An ELF file copied into frames, which areas map directly or copy from.
///
/// The image holds one reference to each of its frames; mappings of image
/// frames take their own, so the image's frames stay valid as long as the
/// image or any mapping needs them. [`release`](ElfImage::release) gives the
/// image's references back once no area uses it.
#[derive(Debug)]
pub struct ElfImage {
    frames: Vec<Frame>,
    len: u64,
}

impl ElfImage {
    /// Copies `bytes` into newly allocated frames. Fails with `NoMemory`
    /// (having released what it took) when frames or the heap run out.
    pub fn load<M: Machine>(machine: &M, bytes: &[u8]) -> Result<TryArc<ElfImage>> {
        // The handle's block first, then the frame list, then the frames.
        TryArc::try_new_with(|| {
            let mut frames = Vec::new();
            if frames
                .try_reserve_exact(bytes.len().div_ceil(PAGE_SIZE as usize))
                .is_err()
            {
                return Err(Error::NoMemory);
            }
            for chunk in bytes.chunks(PAGE_SIZE as usize) {
                let Some(f) = machine.frames().alloc() else {
                    for f in frames {
                        machine.frames().release(f);
                    }
                    return Err(Error::NoMemory);
                };
                machine.memory().zero_frame(f);
                machine.memory().write(f.start(), chunk);
                frames.push(f);
            }
            Ok(ElfImage {
                frames,
                len: bytes.len() as u64,
            })
        })
    }

    /// Size of the file in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The frames holding the file, in order.
    pub fn frames(&self) -> &[Frame] {
        &self.frames
    }

    /// Copies `len` file bytes from `offset` to physical address `dst`.
    fn copy_out<P: PhysMemory>(&self, mem: &P, offset: u64, dst: PhysAddr, len: u64) {
        let mut buf = [0u8; 256];
        let mut done = 0;
        while done < len {
            let off = offset + done;
            let in_frame = PAGE_SIZE - off % PAGE_SIZE;
            let n = (len - done).min(in_frame).min(buf.len() as u64);
            let src = self.frames[(off / PAGE_SIZE) as usize].start().as_u64() + off % PAGE_SIZE;
            mem.read(PhysAddr::new(src), &mut buf[..n as usize]);
            mem.write(PhysAddr::new(dst.as_u64() + done), &buf[..n as usize]);
            done += n;
        }
    }

    /// Gives the image's frame references back (`image.release` of an
    /// `Arc`; a [`TryArc`] cannot be a method receiver on stable Rust).
    /// Fails, returning the image, while an area still uses it.
    pub fn release<M: Machine>(
        image: TryArc<Self>,
        machine: &M,
    ) -> core::result::Result<(), TryArc<Self>> {
        let image = TryArc::try_unwrap(image)?;
        for f in image.frames {
            machine.frames().release(f);
        }
        Ok(())
    }
}

/// One loadable segment, with the load bias applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// First virtual address of the segment.
    pub vaddr: u64,
    /// Size in memory.
    pub memsz: u64,
    /// Size of the part backed by the file (the rest is zero: bss).
    pub filesz: u64,
    /// File offset of the first byte.
    pub offset: u64,
    /// Rights.
    pub flags: AreaFlags,
}

/// The ELF backend (HelenOS `elf_backend`): pages wholly inside the file
/// part of a read-only segment map the image's own frames; every other page
/// gets a private frame with the file bytes it covers and zeros elsewhere.
pub struct ElfBackend {
    image: TryArc<ElfImage>,
    segment: Segment,
}

impl ElfBackend {
    /// A backend for `segment` of `image` (bounds checked by the loader).
    pub fn new(image: TryArc<ElfImage>, segment: Segment) -> Self {
        Self { image, segment }
    }

    /// The segment.
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// The segment address that page `index` of an area of this segment
    /// stands for. The area may sit anywhere (a share maps it at another
    /// address), so only the page's index within its area counts, never
    /// its absolute address.
    fn segment_address(&self, index: u64) -> u64 {
        (self.segment.vaddr & !(PAGE_SIZE - 1)).wrapping_add(index.wrapping_mul(PAGE_SIZE))
    }

    /// The image frame that the page at segment address `a` maps directly,
    /// if it is one.
    fn image_frame(&self, a: u64) -> Option<Frame> {
        let s = &self.segment;
        let congruent = s.offset % PAGE_SIZE == s.vaddr % PAGE_SIZE;
        let inside = a >= s.vaddr && a + PAGE_SIZE <= s.vaddr + s.filesz;
        if s.flags.contains(AreaFlags::WRITE) || !congruent || !inside {
            return None;
        }
        self.image
            .frames
            .get(((s.offset + (a - s.vaddr)) / PAGE_SIZE) as usize)
            .copied()
    }

    /// The page indices (within an area of this segment) that map image
    /// frames directly, as a range: the pages wholly inside the file part
    /// of a read-only segment whose file offset is congruent with its
    /// address. Every other page is a private copy.
    fn direct_indices(&self) -> core::ops::Range<u64> {
        let s = &self.segment;
        let congruent = s.offset % PAGE_SIZE == s.vaddr % PAGE_SIZE;
        if s.flags.contains(AreaFlags::WRITE) || !congruent {
            return 0..0;
        }
        let lead = s.vaddr % PAGE_SIZE;
        // Page i covers [page_start + i * PAGE_SIZE, +PAGE_SIZE) with
        // page_start = vaddr - lead: inside the file part from the first
        // page starting at or after vaddr to the last one ending by
        // vaddr + filesz.
        let lo = u64::from(lead != 0);
        let hi = (lead + s.filesz) / PAGE_SIZE;
        // Page i (i >= lo) maps image frame offset / PAGE_SIZE + i; pages
        // past the image's frames are copies (zeros) too.
        let in_image = (self.image.frames.len() as u64).saturating_sub(s.offset / PAGE_SIZE);
        lo..hi.min(in_image).max(lo)
    }
}

impl<P: PhysMemory, F: FrameAllocator> Backend<P, F> for ElfBackend {
    fn name(&self) -> &'static str {
        "elf"
    }

    fn page_fault(
        &self,
        memory: &P,
        frames: &F,
        area: &AreaInfo,
        page: Page,
        _access: Access,
    ) -> Result<Frame> {
        let a = self.segment_address(area.page_index(page));
        if let Some(f) = self.image_frame(a) {
            frames.add_ref(f);
            return Ok(f);
        }
        let frame = zeroed_frame(memory, frames)?;
        let s = &self.segment;
        let lo = a.max(s.vaddr);
        let hi = (a + PAGE_SIZE).min(s.vaddr + s.filesz);
        if lo < hi {
            let dst = PhysAddr::new(frame.start().as_u64() + (lo - a));
            self.image
                .copy_out(memory, s.offset + (lo - s.vaddr), dst, hi - lo);
        }
        Ok(frame)
    }

    /// The default's (counted frames, resizing, sharing), and private:
    /// a segment's pages are copies or the image's read-only frames.
    fn caps(&self) -> crate::backend::BackendCaps {
        use crate::backend::BackendCaps;
        BackendCaps::REFCOUNTED | BackendCaps::RESIZE | BackendCaps::SHARE | BackendCaps::PRIVATE
    }

    /// The pages it copies: all but those mapping image frames directly.
    fn reserve_pages(&self, first: u64, count: u64) -> u64 {
        let end = first.saturating_add(count);
        let direct = self.direct_indices();
        let shared = end.min(direct.end).saturating_sub(first.max(direct.start));
        count - shared
    }
}
