//! Memory backends: what fills an area's pages on a fault.
//!
//! The core owns the page table, the used space and the share records; a
//! backend only supplies frames. Frames of a *reference-counted* backend
//! (anonymous memory, ELF images) carry one reference per mapping and one
//! per share record, and are freed by the last release; frames of other
//! backends (device memory) are never counted nor freed.
//!
//! A new backend needs no change to the core: implement [`Backend`] and
//! hand it to [`AddressSpace::area_create_with`](crate::AddressSpace::area_create_with).
//! This one fills every page with one byte:
//!
//! ```
//! use aspace::backend::{AreaInfo, Backend, BackendCaps};
//! use aspace::{Access, AreaAttrs, AreaFlags, Error, Frame, FrameAllocator, Page, PhysMemory,
//!              TryArc, VirtAddr, PAGE_SIZE};
//! use aspace_sim::{Sim, SimConfig};
//!
//! /// Pages that read as `fill`, page after page.
//! struct Pattern { fill: u8 }
//!
//! impl<P: PhysMemory, F: FrameAllocator> Backend<P, F> for Pattern {
//!     fn name(&self) -> &'static str { "pattern" }
//!     fn page_fault(&self, memory: &P, frames: &F, _area: &AreaInfo, _page: Page,
//!                   _access: Access) -> aspace::Result<Frame> {
//!         let frame = frames.alloc().ok_or(Error::NoMemory)?;
//!         memory.write(frame.start(), &[self.fill; PAGE_SIZE as usize]);
//!         Ok(frame)
//!     }
//!     // Read-only patterns: no growth, no sharing, no change of rights.
//!     fn caps(&self) -> BackendCaps { BackendCaps::REFCOUNTED }
//! }
//!
//! let sim = Sim::new(SimConfig::default()).unwrap();
//! let space = sim.system().create().unwrap();
//! let base = VirtAddr::new(0x40_0000);
//! space
//!     .area_create_with(base, 2 * PAGE_SIZE, AreaFlags::READ, AreaAttrs::empty(),
//!                       TryArc::try_backend(Pattern { fill: 0xa5 }).unwrap())
//!     .unwrap();
//! let mut cpu = sim.cpu(0);
//! cpu.switch_to(&space).unwrap();
//! assert_eq!(cpu.read_u64(VirtAddr::new(0x40_1000)).unwrap(), 0xa5a5_a5a5_a5a5_a5a5);
//! assert_eq!(cpu.run(|| space.area_resize(base, PAGE_SIZE)), Err(Error::NotSupported));
//! assert_eq!(space.area(base).unwrap().backend, "pattern");
//! ```

pub mod anon;
pub mod elf;
pub mod guard;
mod handle;
pub mod phys;
pub mod user;

use core::fmt;

use crate::addr::{Frame, Page, VirtAddr, PAGE_SIZE};
use crate::flags::{Access, AreaAttrs, AreaFlags};
use crate::memory::{FrameAllocator, PhysMemory};
use crate::Result;

pub use anon::AnonBackend;
pub use elf::ElfBackend;
pub use guard::{GuardBackend, ReservingGuardBackend};
pub use handle::BackendRef;
pub use phys::PhysBackend;
pub use user::{PageIn, Pager, PagerIds, UserBackend};

bitflags::bitflags! {
    /// What a backend's areas can do, declared once by the backend.
    #[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
    pub struct BackendCaps: u32 {
        /// Frames are reference counted by the frame allocator (released
        /// when unmapped); without it they are borrowed (device memory),
        /// never counted nor freed.
        const REFCOUNTED = 1;
        /// Areas may change size.
        const RESIZE = 2;
        /// Areas may change their rights in place.
        const CHANGE_FLAGS = 4;
        /// Areas may be shared.
        const SHARE = 8;
        /// A page's contents do not depend on its index in the area, so
        /// the area may grow at its bottom
        /// ([`AreaFlags::GROWS_DOWN`](crate::AreaFlags::GROWS_DOWN)): its
        /// pages' indices shift, which only index-free backends allow.
        const GROW_DOWN = 16;
        /// An area's pages are its own: a write to one changes no other
        /// area's page (anonymous memory, an ELF segment's copies). A
        /// [fork](crate::System::fork) makes such pages copy-on-write in
        /// both spaces; an area without it (device memory, a backend
        /// whose frames belong to an object every mapping sees) is mapped
        /// anew by the child from the same backend.
        const PRIVATE = 32;
    }
}

/// A source of pages for areas (HelenOS `mem_backend_t`). Generic over
/// what it uses, physical memory `P` and the frame allocator `F`, so one
/// backend serves any machine with those.
pub trait Backend<P: PhysMemory, F: FrameAllocator>: Send + Sync {
    /// Short name for listings (`anon`, `elf`, `phys`).
    fn name(&self) -> &'static str;

    /// Supplies the frame that `page` of `area` is to map after a fault with
    /// `access`. A backend must key on the page's place in its area
    /// ([`AreaInfo::page_index`]), never on its address: a share maps the
    /// same backend elsewhere. For a [reference-counted](BackendCaps::REFCOUNTED)
    /// backend the frame comes with one reference, owned by the new
    /// mapping. Errors make the fault fail: `PermissionDenied` at once, as
    /// a [`FaultReason::Guard`](crate::FaultReason::Guard) (the page is
    /// never to be mapped: [`GuardBackend`]); any other (e.g.
    /// [`NoMemory`](crate::Error::NoMemory)) as
    /// [`FaultReason::NoMemory`](crate::FaultReason::NoMemory), after the
    /// fault handler has tried again a few times.
    fn page_fault(
        &self,
        memory: &P,
        frames: &F,
        area: &AreaInfo,
        page: Page,
        access: Access,
    ) -> Result<Frame>;

    /// A frame this backend would supply for *any* page of an area, made
    /// ready before the fault handler takes the area's lock, so the slow
    /// part of a fault (anonymous memory: zeroing) runs outside it. Comes
    /// with one reference, like [`page_fault`](Backend::page_fault)'s; the
    /// handler releases it if the page turns out to be mapped already.
    /// `None` (the default, and when memory is short): the frame depends on
    /// the page, and `page_fault` supplies it under the lock.
    fn prepare(&self, memory: &P, frames: &F) -> Option<Frame> {
        let _ = (memory, frames);
        None
    }

    /// What areas of this backend can do: by default reference-counted
    /// frames, resizing and sharing, but no change of rights in place.
    fn caps(&self) -> BackendCaps {
        BackendCaps::REFCOUNTED | BackendCaps::RESIZE | BackendCaps::SHARE
    }

    /// How many of the pages with indices `first..first + count` (within
    /// an area) need memory reserved for them (see [`crate::reserve`]):
    /// those for which [`page_fault`](Backend::page_fault) would allocate a
    /// frame of its own. The core reserves this for an area's pages when it
    /// is created or grown and gives it back when it shrinks or goes (or
    /// page by page, at fault and unmap, for
    /// [`LATE_RESERVE`](AreaFlags::LATE_RESERVE) areas), so the count for a
    /// range must be the sum of the counts of its pages.
    ///
    /// Policies: anonymous memory reserves every page; device memory
    /// ([`PhysBackend`]) none; an ELF segment ([`ElfBackend`]) the pages it
    /// copies (all of a writable segment's; of a read-only one, those not
    /// wholly inside the file part); a backend whose frames belong to
    /// someone else (a user-space pager) none. By default: every page for a
    /// [reference-counted](BackendCaps::REFCOUNTED) backend, whose frames
    /// come from the allocator, none otherwise.
    fn reserve_pages(&self, first: u64, count: u64) -> u64 {
        let _ = first;
        if self.caps().contains(BackendCaps::REFCOUNTED) {
            count
        } else {
            0
        }
    }

    /// The backend's index of a new area's first page (the area's offset,
    /// see [`AreaInfo::page_index`]): 0 by default; a backend over an
    /// object mapped from some page on (a file at an offset) names that
    /// page, so that its areas at contiguous indices of one object
    /// ([`object_id`](Backend::object_id)) can merge, and a page's index is
    /// its page of the object wherever the area was made. (Not for a
    /// backend whose areas grow down, which must be index-free, nor a user
    /// pager's, whose requests name a page by its place in the area.)
    fn first_index(&self) -> u64 {
        0
    }

    /// Which object the backend shows, for telling areas of the same
    /// object (a file) from areas of different ones, in listings and when
    /// adjacent areas are merged: areas whose backends have equal ids and
    /// names are interchangeable as to where their pages come from (page
    /// `i` of the object is the same wherever it is mapped). By default
    /// the backend's own address (each backend value its own object, but
    /// for zero-sized ones, which share an address: areas of two
    /// [stateless](BackendRef::stateless) backends merge only when their
    /// types are the same);
    /// anonymous memory answers 0 for all its instances (any anonymous
    /// page is as good as another: they start zeroed).
    fn object_id(&self) -> usize {
        self as *const Self as *const u8 as usize
    }

    /// Whether `frame`, which [`page_fault`](Backend::page_fault) just
    /// supplied for `page`, is *lent*: a frame the backend shares with
    /// others (a file's cached page) that this area may read but must not
    /// write. The core then maps it without write access and makes the
    /// page copy-on-write (see [`crate::cow`]): the first write copies it
    /// into a frame of the area's own, as a private file mapping does, with
    /// no change of the area's rights. A backend that wants a write fault
    /// on a page not yet resident to copy at once supplies the copy itself
    /// (and answers `false` for it). Not asked for shared areas (their
    /// share record holds the frames), nor of a backend that is not
    /// [reference-counted](BackendCaps::REFCOUNTED) (its frames map as
    /// they are: the core could neither release a copy nor leave the lent
    /// frame's count alone). By default `false`.
    fn lends(&self, area: &AreaInfo, page: Page, frame: Frame) -> bool {
        let _ = (area, page, frame);
        false
    }

    /// The backend itself, for the few backends the fault handler resolves
    /// in its own way (the [user pager](user::UserBackend), whose fault
    /// waits for another task without the area's lock); `None` (the
    /// default) for every other backend.
    fn as_any(&self) -> Option<&dyn core::any::Any> {
        None
    }
}

/// A snapshot of one area, for backends, listings and callers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AreaInfo {
    /// First address.
    pub base: VirtAddr,
    /// Size in pages.
    pub pages: u64,
    /// Access rights.
    pub flags: AreaFlags,
    /// Attributes.
    pub attrs: AreaAttrs,
    /// The backend's name.
    pub backend: &'static str,
    /// Pages mapped now.
    pub resident: u64,
    /// Pages of memory reserved for the area (see [`crate::reserve`]); for
    /// a shared area, those of its share record, which every sharer shows
    /// and the system counts once.
    pub reserved: u64,
    /// Whether the area shares its pages with other areas.
    pub shared: bool,
    /// The backend's index of the area's first page: the backend's
    /// [`first_index`](Backend::first_index) (mostly 0) for an area as
    /// created; after a split, the upper part's plus its distance from the
    /// original base (so an ELF or file area split in two reads the same
    /// bytes in both parts). In pages.
    pub offset: u64,
    /// The identity of the object behind the backend
    /// ([`Backend::object_id`]): two areas show the same object (the same
    /// file, say) exactly when these are equal.
    pub object_id: usize,
    /// For a [grows-down](AreaFlags::GROWS_DOWN) area, the most pages it
    /// may span by growing (its end less this is the lowest page it can
    /// reach); 0 for any other area.
    pub grow_limit: u64,
}

impl AreaInfo {
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.pages * PAGE_SIZE
    }
    /// One past the last address.
    pub fn end(&self) -> VirtAddr {
        VirtAddr::new(self.base.as_u64() + self.size())
    }
    /// The backend's index of `page`: the area's
    /// [`offset`](Self::offset) plus the page's place in the area.
    pub fn page_index(&self, page: Page) -> u64 {
        self.offset + page.pages_since(self.base.page())
    }
    /// `rwx` text in the manner of `/proc/PID/maps`, `p` for private, `s`
    /// for shared.
    pub fn rights(&self) -> [u8; 4] {
        let f = self.flags;
        [
            if f.contains(AreaFlags::READ) {
                b'r'
            } else {
                b'-'
            },
            if f.contains(AreaFlags::WRITE) {
                b'w'
            } else {
                b'-'
            },
            if f.contains(AreaFlags::EXEC) {
                b'x'
            } else {
                b'-'
            },
            if self.shared { b's' } else { b'p' },
        ]
    }
}

impl fmt::Display for AreaInfo {
    /// One line of an address-space map:
    /// `start-end rights backend resident/pages pages reserved reserved`,
    /// then `late-reserve` and `partial` where they apply.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.rights();
        write!(
            f,
            "{:016x}-{:016x} {}{}{}{} {:<5} {:>6}/{:<6} pages {:>6} reserved{}{}",
            self.base.as_u64(),
            self.end().as_u64(),
            r[0] as char,
            r[1] as char,
            r[2] as char,
            r[3] as char,
            self.backend,
            self.resident,
            self.pages,
            self.reserved,
            if self.flags.contains(AreaFlags::LATE_RESERVE) {
                " late-reserve"
            } else {
                ""
            },
            if self.attrs.contains(AreaAttrs::PARTIAL) {
                " partial"
            } else {
                ""
            }
        )
    }
}
