//! In-memory objects behind shared and file mappings, and the backend that
//! maps them.
//!
//! A [`MemObject`] is a fixed number of pages whose frames are made on first
//! use and held by the object (one reference each) until the last process
//! holding it lets it go ([`MemObject::let_go`]; `fork` makes more holders,
//! [`MemObject::hold`]): an in-memory file (`file F` in the call text) or
//! the object behind a `MAP_SHARED | MAP_ANONYMOUS` mapping (Linux's shmem
//! object, `/dev/zero (deleted)` in the maps). [`ObjBackend`] maps it:
//! - shared: every mapping of the object maps the object's own frame for a
//!   page (one more reference per mapping), so a write through one mapping
//!   is seen by every other one and by the object;
//! - private: a page maps the object's frame too, but *lent*
//!   ([`Backend::lends`]): the core maps it without write access and makes
//!   it copy-on-write, so the mapping sees later writes to the file until
//!   its own first write to the page, which the core answers by copying the
//!   page into a frame of the mapping's own (Linux's copy-on-write of a
//!   `MAP_PRIVATE` file mapping). The area keeps its real rights: many
//!   copied pages stay one area.
use alloc::string::String;
use alloc::vec::Vec;
use aspace::backend::{AreaInfo, Backend, BackendCaps};
use aspace::TryArc;
use aspace::{Access, Error, Frame, FrameAllocator, Page, PhysMemory, Reserve};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use spin::Mutex;

/// A memory object of a fixed number of pages (see the module docs).
pub struct MemObject {
    /// Pages in the object; an access past them is `SIGBUS` on Linux.
    pages: u64,
    /// The object's frames (one reference each held here).
    frames: Mutex<FrameTable>,
    /// A number naming the object in maps lines (the inode).
    id: u64,
    /// The file's name, for an in-memory file.
    name: Option<String>,
    /// The processes (Linux maps) holding it, each once whatever its
    /// mappings of it (and its file table): `fork` adds the child, and the
    /// last process to let it go gives its frames back. (Frames kept by a
    /// mapping's own reference stay with it until it goes.)
    holders: AtomicUsize,
    /// Pages reserved for it against the commit limit (a shared anonymous
    /// object's whole size, as Linux charges a shmem object when it is
    /// set up), given back with its frames by the last holder.
    charged: AtomicU64,
}

impl core::fmt::Debug for MemObject {
    /// Its number, name, size and resident pages (not each frame).
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MemObject")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("pages", &self.pages)
            .field("resident", &self.resident())
            .finish()
    }
}

impl MemObject {
    /// An object of `pages` pages of zeros numbered `id` (the object of a
    /// shared anonymous mapping).
    pub fn new(pages: u64, id: u64) -> MemObject {
        MemObject {
            pages,
            frames: Mutex::new(FrameTable::default()),
            id,
            name: None,
            holders: AtomicUsize::new(1),
            charged: AtomicU64::new(0),
        }
    }

    /// The in-memory file `name` of `pages` pages of zeros numbered `id`;
    /// `None` if the heap refuses the name.
    pub fn file(pages: u64, id: u64, name: &str) -> Option<MemObject> {
        let mut owned = String::new();
        owned.try_reserve_exact(name.len()).ok()?;
        owned.push_str(name);
        Some(MemObject {
            name: Some(owned),
            ..MemObject::new(pages, id)
        })
    }

    /// The file's name, for an in-memory file.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Its length in pages.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// The number naming it (an inode number in maps lines).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Frames the object holds now.
    pub fn resident(&self) -> usize {
        self.frames.lock().len()
    }

    /// The frame of page `index` (made of zeros on first use), with one
    /// more reference for the caller. `None` past the end or without memory.
    pub fn frame<P: PhysMemory, F: FrameAllocator>(
        &self,
        memory: &P,
        frames: &F,
        index: u64,
    ) -> Option<Frame> {
        if index >= self.pages {
            return None;
        }
        let mut table = self.frames.lock();
        let frame = match table.get(index) {
            Some(f) => f,
            None => {
                // Room first: a refused heap leaves no frame taken.
                let slot = table.slot(index)?;
                let f = frames.alloc()?;
                memory.zero_frame(f);
                *slot = f.number() + 1;
                table.len += 1;
                f
            }
        };
        frames.add_ref(frame);
        Some(frame)
    }

    /// The object's frame of page `index`, if it has one (no reference taken:
    /// use it only while the object holds it).
    pub fn peek(&self, index: u64) -> Option<Frame> {
        self.frames.lock().get(index)
    }

    /// The indices in `lo..hi` of the pages that have a frame.
    pub fn indices_in(&self, lo: u64, hi: u64) -> alloc::vec::Vec<u64> {
        self.frames.lock().indices_in(lo, hi).collect()
    }

    /// Appends the frames of pages `lo..hi` that have one to `out`, as far
    /// as its capacity goes (allocates nothing); whether all fitted.
    pub fn frames_in(&self, lo: u64, hi: u64, out: &mut Vec<Frame>) -> bool {
        let table = self.frames.lock();
        for i in table.indices_in(lo, hi) {
            if let Some(f) = table.get(i) {
                if out.len() == out.capacity() {
                    return false;
                }
                out.push(f);
            }
        }
        true
    }

    /// Gives back the frames of pages `lo..hi` (a hole punched: those pages
    /// read as zeros again; a mapping still using one keeps its own
    /// reference). Allocates nothing.
    pub fn punch<F: FrameAllocator>(&self, lo: u64, hi: u64, frames: &F) {
        let mut table = self.frames.lock();
        let from = table.chunks.partition_point(|(n, _)| (n + 1) * CHUNK <= lo);
        let mut gone = 0;
        for (n, chunk) in table.chunks[from..].iter_mut() {
            if *n * CHUNK >= hi {
                break;
            }
            for (i, slot) in chunk.iter_mut().enumerate() {
                let index = *n * CHUNK + i as u64;
                if (lo..hi).contains(&index) && *slot != 0 {
                    frames.release(Frame::from_number(*slot - 1));
                    *slot = 0;
                    gone += 1;
                }
            }
        }
        table.len -= gone;
    }

    /// One more process holds it (a child `fork` made).
    pub fn hold(&self) {
        self.holders.fetch_add(1, Ordering::Relaxed);
    }

    /// Records that `pages` were reserved for the object in `reserve`
    /// (the one [`let_go`](Self::let_go) is given), to go back with its
    /// frames.
    pub fn set_charged(&self, pages: u64) {
        self.charged.store(pages, Ordering::Relaxed);
    }

    /// Pages reserved for the object (see [`set_charged`](Self::set_charged)).
    pub fn charged(&self) -> u64 {
        self.charged.load(Ordering::Relaxed)
    }

    /// A process lets it go (its last mapping of it gone and it is not in
    /// its file table, or the process ended): the last one gives the
    /// frames back, and the pages reserved for the object to `reserve`;
    /// whether this was the last.
    pub fn let_go<F: FrameAllocator>(&self, frames: &F, reserve: &Reserve) -> bool {
        // AcqRel: the last one sees every other holder's use of the frames.
        if self.holders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.release(frames);
            reserve.release(self.charged.swap(0, Ordering::Relaxed));
            true
        } else {
            false
        }
    }

    /// Gives back every frame the object holds (a mapping still using one
    /// keeps its own reference).
    fn release<F: FrameAllocator>(&self, frames: &F) {
        let table = core::mem::take(&mut *self.frames.lock());
        for f in table.frames() {
            frames.release(f);
        }
    }
}

/// Pages in one chunk of a [`FrameTable`].
const CHUNK: u64 = 512;

/// An object's frames by page index: chunks of [`CHUNK`] slots made on
/// first use (sorted by chunk number), each slot a frame number plus one
/// (0: no frame). Taking a slot asks the heap fallibly, so a fault on an
/// object refused memory fails cleanly instead of aborting.
#[derive(Debug, Default)]
struct FrameTable {
    chunks: Vec<(u64, Vec<u64>)>,
    len: usize,
}

impl FrameTable {
    /// The frame of page `index`, if it has one.
    fn get(&self, index: u64) -> Option<Frame> {
        let c = self
            .chunks
            .binary_search_by_key(&(index / CHUNK), |(n, _)| *n)
            .ok()?;
        match self.chunks[c].1[(index % CHUNK) as usize] {
            0 => None,
            n => Some(Frame::from_number(n - 1)),
        }
    }

    /// The slot of page `index` (the caller fills it and counts it in
    /// `len`); `None` with nothing changed if the heap refuses its chunk.
    fn slot(&mut self, index: u64) -> Option<&mut u64> {
        let key = index / CHUNK;
        let c = match self.chunks.binary_search_by_key(&key, |(n, _)| *n) {
            Ok(c) => c,
            Err(c) => {
                let mut chunk = Vec::new();
                chunk.try_reserve_exact(CHUNK as usize).ok()?;
                self.chunks.try_reserve(1).ok()?;
                chunk.resize(CHUNK as usize, 0);
                self.chunks.insert(c, (key, chunk));
                c
            }
        };
        Some(&mut self.chunks[c].1[(index % CHUNK) as usize])
    }

    /// The indices in `lo..hi` of the pages that have a frame: only the
    /// chunks made are looked at.
    fn indices_in(&self, lo: u64, hi: u64) -> impl Iterator<Item = u64> + '_ {
        let from = self.chunks.partition_point(|(n, _)| (n + 1) * CHUNK <= lo);
        self.chunks[from..]
            .iter()
            .take_while(move |(n, _)| n * CHUNK < hi)
            .flat_map(move |(n, chunk)| {
                chunk
                    .iter()
                    .enumerate()
                    .filter(|&(_, &f)| f != 0)
                    .map(move |(i, _)| n * CHUNK + i as u64)
            })
            .filter(move |i| (lo..hi).contains(i))
    }

    /// How many pages have a frame.
    fn len(&self) -> usize {
        self.len
    }

    /// Every frame held.
    fn frames(&self) -> impl Iterator<Item = Frame> + '_ {
        self.chunks
            .iter()
            .flat_map(|(_, c)| c.iter())
            .filter(|&&n| n != 0)
            .map(|&n| Frame::from_number(n - 1))
    }
}

/// The backend of a mapping of a [`MemObject`]: page `i` of the area is page
/// `first + i` of the object (the area's offset starts at `first`:
/// [`Backend::first_index`]). Every mapping of one object, private or
/// shared, shows it as one object ([`Backend::object_id`]); private and
/// shared ones have different names, so the core merges areas of one
/// object only with the same kind at contiguous pages of it.
#[derive(Debug, Clone)]
pub struct ObjBackend {
    /// The object.
    pub object: TryArc<MemObject>,
    /// The object's page at the area's base.
    pub first: u64,
    /// Private (the object's frames lent, copied at the first write) rather
    /// than shared.
    pub private: bool,
}

impl<P: PhysMemory, F: FrameAllocator> Backend<P, F> for ObjBackend {
    fn name(&self) -> &'static str {
        if self.private {
            "file-private"
        } else {
            "shared"
        }
    }

    fn page_fault(
        &self,
        memory: &P,
        frames: &F,
        area: &AreaInfo,
        page: Page,
        _access: Access,
    ) -> aspace::Result<Frame> {
        let index = area.page_index(page);
        if index >= self.object.pages {
            // Past the object's end: SIGBUS on Linux.
            return Err(Error::BadMemory);
        }
        // Shared or private, the object's frame: a private mapping's is
        // lent (see `lends`), and the core copies it on the first write.
        self.object
            .frame(memory, frames, index)
            .ok_or(Error::NoMemory)
    }

    /// A private mapping borrows the object's frame for any access: the
    /// core maps it without write and copies it at the first write (so a
    /// write fault on a page not yet resident maps the file's page first,
    /// and the retried write copies it). A shared mapping's frame is the
    /// object's own, never lent (and the core does not ask).
    fn lends(&self, _area: &AreaInfo, _page: Page, _frame: Frame) -> bool {
        self.private
    }

    /// A private mapping's pages are its own (a fork makes them
    /// copy-on-write); a shared mapping's are the object's.
    fn caps(&self) -> BackendCaps {
        let caps = BackendCaps::REFCOUNTED | BackendCaps::RESIZE | BackendCaps::CHANGE_FLAGS;
        if self.private {
            caps | BackendCaps::PRIVATE
        } else {
            caps
        }
    }

    /// The object's page at a new area's base.
    fn first_index(&self) -> u64 {
        self.first
    }

    /// The object's address.
    fn object_id(&self) -> usize {
        TryArc::as_ptr(&self.object) as *const u8 as usize
    }

    /// A private mapping's pages may each get a copy; a shared mapping's
    /// frames are the object's.
    fn reserve_pages(&self, _first: u64, count: u64) -> u64 {
        if self.private {
            count
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_table_finds_what_it_holds() {
        let mut t = FrameTable::default();
        for (i, f) in [(3u64, 10u64), (600, 11), (1500, 12)] {
            *t.slot(i).expect("room") = f + 1;
            t.len += 1;
        }
        assert_eq!(t.indices_in(0, 2000).collect::<Vec<_>>(), [3, 600, 1500]);
        assert_eq!(t.indices_in(4, 1500).collect::<Vec<_>>(), [600]);
        assert_eq!(t.indices_in(1501, 4000).count(), 0);
        assert_eq!(t.get(600), Some(Frame::from_number(11)));
        assert_eq!(t.get(601), None);
        assert_eq!(t.get(9000), None);
        assert_eq!(t.len(), 3);
        let mut all: Vec<_> = t.frames().map(|f| f.number()).collect();
        all.sort_unstable();
        assert_eq!(all, [10, 11, 12]);
    }
}
