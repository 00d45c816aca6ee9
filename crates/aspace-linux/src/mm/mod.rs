//! Linux's memory calls on an aspace address space (feature `aspace`).
//!
//! [`LinuxMm`] is one process's memory map: an `Arc<AddressSpace<M>>` of
//! the core, the mmap base below which `mmap(NULL)` places top-down, the
//! program break and the map-count limit (`vm.max_map_count`). Each call
//! follows the Linux man page (`mmap(2)`, `munmap(2)`, `mprotect(2)`,
//! `mremap(2)`, `brk(2)`, `madvise(2)`) and returns Linux's errno values;
//! every call documents its checks in the order Linux makes them.
//!
//! One Linux mapping ("VMA") is one core area. The layer keeps a record per
//! mapping beside the core (rights, what backs it, the object offset, the
//! `MAP_NORESERVE`/`MAP_GROWSDOWN` flags that Linux's merging looks at) and
//! changes the core and the records together.
//!
//! What the core cannot do yet is refused with [`Errno::ENOSYS`] before
//! anything changes (Linux never returns it for these calls): cutting a
//! mapping's head or middle (a partial `munmap`, `mprotect`, `madvise`
//! inside a mapping, `MAP_FIXED` over part of one) needs the core's area
//! split, and a moving `mremap` its range move. Cutting a tail is done with
//! [`AddressSpace::area_resize`].
//!
//! Differences from Linux, by design:
//! - **W^X**: the core refuses an area both writable and executable, so
//!   `PROT_WRITE | PROT_EXEC` is `EACCES` (as on a Linux whose security
//!   module denies `execmem`).
//! - **Stacks**: `MAP_GROWSDOWN` makes a core grows-down area, which keeps
//!   its guard page (the page below it) free: a fixed mapping there is
//!   refused (`ENOMEM`), where Linux allows it.
//! - **`MADV_FREE`** keeps the data (as Linux does until memory is short).
//! - **Private file mappings** copy a page at its first fault, read or
//!   write (see [`object`]).
//! - **Merging**: records are not merged; [`LinuxMm::maps`] prints
//!   neighbours Linux would merge (same rights and backing, contiguous
//!   offsets, same `MAP_NORESERVE`/`MAP_GROWSDOWN`) as one line.

pub mod object;
#[cfg(feature = "sim")]
pub mod sim;

use crate::consts::*;
use crate::errno::Errno;
use crate::flags::{Advice, MapFlags, RemapFlags};
use crate::maps::{Backing, MapKey, MapsLine};
use crate::prot::Prot;
use crate::{Call, FileRef};
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use aspace::backend::{AnonBackend, Backend};
use aspace::{AddressSpace, AreaAttrs, AreaFlags, Error, Machine, System, VirtAddr};
use object::{MemObject, ObjBackend};

/// The size of every in-memory file: 64 MiB (as the reference runner's).
pub const FILE_PAGES: u64 = (64 << 20) / PAGE_SIZE;

/// Linux's `stack_guard_gap`: placement keeps 256 pages free below a
/// grows-down mapping.
pub const STACK_GUARD_GAP: u64 = 256 * PAGE_SIZE;

/// Where a process's memory goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// `mmap(NULL)` places top-down below this address.
    pub mmap_base: u64,
    /// The lowest address placement uses (`vm.mmap_min_addr`).
    pub mmap_min: u64,
    /// One past the highest user address (`TASK_SIZE`).
    pub task_size: u64,
    /// Where the program break starts (`mm->start_brk`); page-aligned.
    pub brk_start: u64,
    /// The most mappings the process may have (`vm.max_map_count`).
    pub max_map_count: usize,
}

impl Layout {
    /// A layout with Linux's defaults around `mmap_base` and `brk_start`:
    /// `mmap_min_addr` 64 KiB, `max_map_count` 65530, a 47-bit user space.
    pub fn new(mmap_base: u64, brk_start: u64) -> Layout {
        Layout {
            mmap_base,
            mmap_min: 0x10000,
            task_size: 0x7fff_ffff_f000,
            brk_start,
            max_map_count: 65530,
        }
    }
}

/// What backs a mapping.
#[derive(Clone, Debug)]
pub enum Kind {
    /// Private anonymous memory.
    Anon,
    /// The program break's memory (`[heap]`).
    Heap,
    /// A memory object: an in-memory file (`file: Some`) or the object of a
    /// shared anonymous mapping.
    Object {
        /// The object.
        object: Arc<MemObject>,
        /// The file's name, if it is a file.
        file: Option<String>,
        /// `MAP_PRIVATE` (pages copied at first fault).
        private: bool,
    },
}

/// One mapping's record (Linux's VMA), beside its core area.
#[derive(Clone, Debug)]
pub struct Vma {
    /// First address.
    pub start: u64,
    /// One past the last.
    pub end: u64,
    /// Rights.
    pub prot: Prot,
    /// What backs it.
    pub kind: Kind,
    /// The object's page at `start` (0 for anonymous memory).
    pub first: u64,
    /// `MAP_NORESERVE`: memory reserved page by page at fault time.
    pub noreserve: bool,
    /// `MAP_GROWSDOWN`.
    pub growsdown: bool,
}

impl Vma {
    /// Its comparison key (see [`MapKey`]).
    pub fn key(&self) -> MapKey {
        let (shared, backing) = match &self.kind {
            Kind::Anon => (false, Backing::Anon),
            Kind::Heap => (false, Backing::Heap),
            Kind::Object {
                file: Some(name),
                private,
                ..
            } => (!private, Backing::File(name.clone())),
            Kind::Object { file: None, .. } => (true, Backing::SharedAnon),
        };
        MapKey {
            start: self.start,
            end: self.end,
            prot: Prot(self.prot.0 & 7),
            shared,
            offset: if backing.has_offset() {
                self.first * PAGE_SIZE
            } else {
                0
            },
            backing,
        }
    }

    /// The object, if any.
    pub fn object(&self) -> Option<&Arc<MemObject>> {
        match &self.kind {
            Kind::Object { object, .. } => Some(object),
            _ => None,
        }
    }

    /// Whether Linux would merge `next` (starting at this one's end) into it.
    fn merges_with(&self, next: &Vma) -> bool {
        let same_backing = match (&self.kind, &next.kind) {
            (Kind::Anon, Kind::Anon) | (Kind::Heap, Kind::Heap) => true,
            (
                Kind::Object {
                    object: a,
                    private: pa,
                    ..
                },
                Kind::Object {
                    object: b,
                    private: pb,
                    ..
                },
            ) => Arc::ptr_eq(a, b) && pa == pb && self.first + self.pages() == next.first,
            _ => false,
        };
        self.end == next.start
            && same_backing
            && self.prot == next.prot
            && self.noreserve == next.noreserve
            && self.growsdown == next.growsdown
    }

    fn pages(&self) -> u64 {
        (self.end - self.start) / PAGE_SIZE
    }
}

/// How a range meets one mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cut {
    /// The range covers it.
    Whole,
    /// The range covers its end from inside it.
    Tail,
    /// The range covers its start, not its end.
    Head,
    /// The range lies strictly inside it.
    Middle,
}

fn cut(v: &Vma, lo: u64, hi: u64) -> Cut {
    match (lo <= v.start, hi >= v.end) {
        (true, true) => Cut::Whole,
        (false, true) => Cut::Tail,
        (true, false) => Cut::Head,
        (false, false) => Cut::Middle,
    }
}

fn page_up(len: u64) -> Option<u64> {
    len.checked_add(PAGE_SIZE - 1).map(|l| l & !(PAGE_SIZE - 1))
}

fn aligned(addr: u64) -> bool {
    addr % PAGE_SIZE == 0
}

/// The core's error as Linux's errno for a mapping that cannot be made.
fn errno_of(e: Error) -> Errno {
    match e {
        Error::InvalidArgument => Errno::EINVAL,
        Error::PermissionDenied => Errno::EACCES,
        Error::NotSupported => Errno::ENODEV,
        Error::BadMemory => Errno::EFAULT,
        // No memory, no room, no area.
        Error::NoMemory | Error::AddressNotAvailable | Error::NotFound => Errno::ENOMEM,
    }
}

/// Result of a call: the value Linux returns on success, or its errno.
pub type MmResult = Result<u64, Errno>;

/// One process's memory map with Linux's calls (see the module docs).
pub struct LinuxMm<M: Machine> {
    system: Arc<System<M>>,
    space: Arc<AddressSpace<M>>,
    layout: Layout,
    /// The program break (`mm->brk`, not rounded).
    brk: u64,
    /// Mapping records by start address.
    vmas: BTreeMap<u64, Vma>,
    /// In-memory files by name.
    files: BTreeMap<String, Arc<MemObject>>,
    /// The next object number.
    next_id: u64,
}

impl<M: Machine> LinuxMm<M> {
    /// A process map over `space` (a user space of `system`, with no areas
    /// the layer did not make) laid out as `layout`; the break starts at
    /// `layout.brk_start`.
    pub fn new(system: Arc<System<M>>, space: Arc<AddressSpace<M>>, layout: Layout) -> Self {
        LinuxMm {
            system,
            space,
            brk: layout.brk_start,
            layout,
            vmas: BTreeMap::new(),
            files: BTreeMap::new(),
            next_id: 1,
        }
    }

    /// The address space.
    pub fn space(&self) -> &Arc<AddressSpace<M>> {
        &self.space
    }

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The current program break.
    pub fn brk_now(&self) -> u64 {
        self.brk
    }

    /// The mapping records, in address order.
    pub fn vmas(&self) -> impl Iterator<Item = &Vma> {
        self.vmas.values()
    }

    /// The mapping containing `addr`.
    pub fn vma_at(&self, addr: u64) -> Option<&Vma> {
        self.vmas
            .range(..=addr)
            .next_back()
            .map(|(_, v)| v)
            .filter(|v| addr < v.end)
    }

    /// The in-memory file `name` (made on first use, 64 MiB of zeros).
    pub fn file(&mut self, name: &str) -> Arc<MemObject> {
        if let Some(f) = self.files.get(name) {
            return f.clone();
        }
        let f = Arc::new(MemObject::new(FILE_PAGES, self.new_id()));
        self.files.insert(name.to_string(), f.clone());
        f
    }

    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Runs one call; returns what the system call returns (an address, the
    /// break, or 0) or its errno.
    pub fn call(&mut self, call: &Call) -> MmResult {
        match call {
            Call::Mmap {
                addr,
                len,
                prot,
                flags,
                file,
                offset,
            } => self.mmap(*addr, *len, *prot, *flags, file.as_ref(), *offset),
            Call::Munmap { addr, len } => self.munmap(*addr, *len).map(|()| 0),
            Call::Mprotect { addr, len, prot } => self.mprotect(*addr, *len, *prot).map(|()| 0),
            Call::Mremap {
                old_addr,
                old_len,
                new_len,
                flags,
                new_addr,
            } => self.mremap(*old_addr, *old_len, *new_len, *flags, *new_addr),
            Call::Brk { addr } => Ok(self.brk(*addr)),
            Call::Madvise { addr, len, advice } => self.madvise(*addr, *len, *advice).map(|()| 0),
        }
    }

    // ---- the core side ----

    fn area_flags(prot: Prot, noreserve: bool, growsdown: bool) -> Result<AreaFlags, Errno> {
        let mut f = AreaFlags::CACHEABLE;
        if prot.read() {
            f |= AreaFlags::READ;
        }
        if prot.write() {
            f |= AreaFlags::WRITE;
        }
        if prot.exec() {
            f |= AreaFlags::EXEC;
        }
        if f.contains(AreaFlags::WRITE | AreaFlags::EXEC) {
            return Err(Errno::EACCES);
        }
        if noreserve {
            f |= AreaFlags::LATE_RESERVE;
        }
        if growsdown {
            f |= AreaFlags::GROWS_DOWN;
        }
        Ok(f)
    }

    fn backend(v: &Vma) -> Arc<dyn Backend<M::Memory, M::Frames>> {
        match &v.kind {
            Kind::Anon | Kind::Heap => Arc::new(AnonBackend),
            Kind::Object {
                object, private, ..
            } => Arc::new(ObjBackend {
                object: object.clone(),
                first: v.first,
                private: *private,
            }),
        }
    }

    /// Makes `v`'s core area and records it.
    fn insert(&mut self, v: Vma) -> Result<(), Errno> {
        let flags = Self::area_flags(v.prot, v.noreserve, v.growsdown)?;
        self.space
            .area_create_with(
                VirtAddr::new(v.start),
                v.end - v.start,
                flags,
                AreaAttrs::empty(),
                Self::backend(&v),
            )
            .map_err(errno_of)?;
        self.vmas.insert(v.start, v);
        Ok(())
    }

    /// Starts of the mappings meeting `[lo, hi)`, in address order.
    fn meeting(&self, lo: u64, hi: u64) -> Vec<u64> {
        let first = self
            .vmas
            .range(..lo)
            .next_back()
            .filter(|(_, v)| v.end > lo)
            .map(|(&s, _)| s);
        first
            .into_iter()
            .chain(self.vmas.range(lo..hi).map(|(&s, _)| s))
            .collect()
    }

    /// Whether `[lo, hi)` meets any mapping.
    fn taken(&self, lo: u64, hi: u64) -> bool {
        !self.meeting(lo, hi).is_empty()
    }

    /// The extent of the mapping Linux would have around the record at
    /// `start`: the record and every neighbour it would merge with.
    fn merged_at(&self, start: u64) -> (u64, u64) {
        let v = &self.vmas[&start];
        let (mut lo, mut hi) = (v.start, v.end);
        let mut cur = v;
        for (_, p) in self.vmas.range(..start).rev() {
            if !p.merges_with(cur) {
                break;
            }
            lo = p.start;
            cur = p;
        }
        let mut cur = v;
        for (_, n) in self.vmas.range(start + 1..) {
            if !cur.merges_with(n) {
                break;
            }
            hi = n.end;
            cur = n;
        }
        (lo, hi)
    }

    /// Whether `[lo, hi)` has a page no mapping covers.
    fn has_hole(&self, lo: u64, hi: u64) -> bool {
        let mut at = lo;
        for s in self.meeting(lo, hi) {
            let v = &self.vmas[&s];
            if v.start > at {
                return true;
            }
            at = v.end;
        }
        at < hi
    }

    /// Checks that `[lo, hi)` can be unmapped (`ENOSYS` for a cut the core
    /// cannot make yet; `ENOMEM` when a cut in the middle would pass the
    /// map-count limit).
    fn check_unmap(&self, lo: u64, hi: u64) -> Result<(), Errno> {
        for s in self.meeting(lo, hi) {
            match cut(&self.vmas[&s], lo, hi) {
                Cut::Whole | Cut::Tail => {}
                Cut::Middle if self.vmas.len() >= self.layout.max_map_count => {
                    return Err(Errno::ENOMEM)
                }
                Cut::Head | Cut::Middle => return Err(Errno::ENOSYS),
            }
        }
        Ok(())
    }

    /// Unmaps `[lo, hi)`, checked by [`check_unmap`](Self::check_unmap).
    fn do_unmap(&mut self, lo: u64, hi: u64) {
        let mut gone = Vec::new();
        for s in self.meeting(lo, hi) {
            let c = cut(&self.vmas[&s], lo, hi);
            match c {
                Cut::Whole => {
                    let r = self.space.area_destroy(VirtAddr::new(s));
                    debug_assert_eq!(r, Ok(()));
                    if let Some(v) = self.vmas.remove(&s) {
                        gone.extend(v.object().cloned());
                    }
                }
                Cut::Tail => {
                    let r = self.space.area_resize(VirtAddr::new(s), lo - s);
                    debug_assert_eq!(r, Ok(()));
                    if let Some(v) = self.vmas.get_mut(&s) {
                        v.end = lo;
                    }
                }
                Cut::Head | Cut::Middle => debug_assert!(false, "checked"),
            }
        }
        for object in gone {
            self.drop_object_if_unused(&object);
        }
    }

    /// Gives back a shared anonymous object's frames once no mapping maps it.
    fn drop_object_if_unused(&self, object: &Arc<MemObject>) {
        let file = self.files.values().any(|f| Arc::ptr_eq(f, object));
        let mapped = self
            .vmas
            .values()
            .any(|v| v.object().is_some_and(|o| Arc::ptr_eq(o, object)));
        if !file && !mapped {
            object.release(self.system.machine().frames());
        }
    }

    // ---- placement ----

    /// The start of the gap Linux keeps below a mapping (`vm_start_gap`).
    fn start_gap(v: &Vma) -> u64 {
        if v.growsdown {
            v.start.saturating_sub(STACK_GUARD_GAP)
        } else {
            v.start
        }
    }

    /// Whether `[addr, addr + len)` is free for a hint (Linux's
    /// `arch_get_unmapped_area_topdown` first test).
    fn hint_free(&self, addr: u64, len: u64) -> bool {
        if addr < self.layout.mmap_min || addr > self.layout.task_size - len {
            return false;
        }
        let end = addr + len;
        let next = self.vmas.range(addr..).next().map(|(_, v)| v);
        let prev = self.vmas.range(..addr).next_back().map(|(_, v)| v);
        next.is_none_or(|n| end <= Self::start_gap(n)) && prev.is_none_or(|p| addr >= p.end)
    }

    /// The highest base of a free range of `len` bytes ending at or below
    /// the mmap base (Linux's top-down `unmapped_area_topdown`).
    fn top_down(&self, len: u64) -> Option<u64> {
        let mut ceiling = self.layout.mmap_base;
        let floor = self.layout.mmap_min;
        for v in self.vmas.values().rev() {
            if v.end <= ceiling {
                // The gap [v.end, ceiling).
                if ceiling - v.end >= len {
                    return Some(ceiling - len);
                }
            }
            ceiling = ceiling.min(Self::start_gap(v));
            if ceiling < floor + len {
                return None;
            }
        }
        (ceiling >= floor + len).then(|| ceiling - len)
    }

    // ---- the calls ----

    /// `mmap(2)`. Linux's checks in order: an unaligned `offset` `EINVAL`;
    /// `len` 0 `EINVAL`; `len` overflowing when rounded up `ENOMEM`; the
    /// offset's page plus the length overflowing `EOVERFLOW`; over
    /// `vm.max_map_count` mappings `ENOMEM`; with `MAP_FIXED` or
    /// `MAP_FIXED_NOREPLACE` an unaligned address `EINVAL` and one past the
    /// user space `ENOMEM`; `MAP_FIXED_NOREPLACE` over a mapping `EEXIST`;
    /// neither private nor shared `EINVAL`; a shared anonymous `MAP_GROWSDOWN`
    /// `EINVAL`.
    ///
    /// Without `MAP_FIXED*` the address is a hint (rounded down to a page), taken when the range is
    /// free (and off the gap below a grows-down mapping), else the range is
    /// placed top-down below the mmap base; no room is `ENOMEM`. `MAP_FIXED`
    /// replaces what was there. `MAP_NORESERVE` reserves memory page by page
    /// ([`AreaFlags::LATE_RESERVE`]); `MAP_POPULATE` maps every page at once
    /// (on the caller's next touch here: the simulator has no prefault;
    /// contents are the same); `PROT_NONE` is an area with no rights.
    pub fn mmap(
        &mut self,
        addr: u64,
        len: u64,
        prot: Prot,
        flags: MapFlags,
        file: Option<&FileRef>,
        offset: u64,
    ) -> MmResult {
        if !aligned(offset) {
            return Err(Errno::EINVAL);
        }
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let len = page_up(len).ok_or(Errno::ENOMEM)?;
        let pgoff = offset / PAGE_SIZE;
        if pgoff.checked_add(len / PAGE_SIZE).is_none() {
            return Err(Errno::EOVERFLOW);
        }
        if self.vmas.len() > self.layout.max_map_count {
            return Err(Errno::ENOMEM);
        }
        let fixed = flags.fixed();
        if len > self.layout.task_size {
            return Err(Errno::ENOMEM);
        }
        let base = if fixed {
            if addr > self.layout.task_size - len {
                return Err(Errno::ENOMEM);
            }
            if !aligned(addr) {
                return Err(Errno::EINVAL);
            }
            addr
        } else {
            let hint = addr & !(PAGE_SIZE - 1);
            if hint != 0 && self.hint_free(hint, len) {
                hint
            } else {
                self.top_down(len).ok_or(Errno::ENOMEM)?
            }
        };
        if flags.has(MAP_FIXED_NOREPLACE) && self.taken(base, base + len) {
            return Err(Errno::EEXIST);
        }
        let private = match flags.0 & MAP_TYPE {
            MAP_PRIVATE => true,
            MAP_SHARED | MAP_SHARED_VALIDATE => false,
            _ => return Err(Errno::EINVAL),
        };
        let growsdown = flags.has(MAP_GROWSDOWN);
        let kind = match (file, flags.anonymous()) {
            (Some(FileRef(name)), false) => Kind::Object {
                object: self.file(name),
                file: Some(name.clone()),
                private,
            },
            (None, false) => return Err(Errno::EBADF),
            (_, true) if private => Kind::Anon,
            (_, true) => {
                if growsdown {
                    return Err(Errno::EINVAL);
                }
                let id = self.new_id();
                Kind::Object {
                    object: Arc::new(MemObject::new(len / PAGE_SIZE, id)),
                    file: None,
                    private: false,
                }
            }
        };
        let first = match kind {
            Kind::Object { file: Some(_), .. } => pgoff,
            _ => 0,
        };
        let vma = Vma {
            start: base,
            end: base + len,
            prot,
            kind,
            first,
            noreserve: flags.has(MAP_NORESERVE),
            growsdown,
        };
        // Everything that can refuse, before anything changes.
        Self::area_flags(prot, vma.noreserve, growsdown)?;
        self.check_unmap(base, base + len)?;
        self.do_unmap(base, base + len);
        if let Err(e) = self.insert(vma) {
            // A refused creation after the unmap (memory ran out): Linux
            // also leaves the old range unmapped when a MAP_FIXED fails late.
            return Err(e);
        }
        Ok(base)
    }

    /// `munmap(2)`: an unaligned address, a range past the user space or a
    /// length of 0 `EINVAL`; holes in the range are fine; cutting a mapping
    /// in the middle past `vm.max_map_count` `ENOMEM`.
    pub fn munmap(&mut self, addr: u64, len: u64) -> Result<(), Errno> {
        let ts = self.layout.task_size;
        if !aligned(addr) || addr > ts || len > ts - addr {
            return Err(Errno::EINVAL);
        }
        let len = page_up(len).ok_or(Errno::EINVAL)?;
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        self.check_unmap(addr, addr + len)?;
        self.do_unmap(addr, addr + len);
        Ok(())
    }

    /// `mprotect(2)`: an unaligned address `EINVAL`; a length of 0 does
    /// nothing; a range that overflows `ENOMEM`; unknown `PROT_*` bits
    /// `EINVAL`; no mapping at the start `ENOMEM` (nothing changed). The
    /// mappings are then changed from the start up to the first hole, and a
    /// hole gives `ENOMEM` with the part before it changed, as Linux does
    /// (not all-or-nothing: a Linux caller may rely on it).
    pub fn mprotect(&mut self, addr: u64, len: u64, prot: Prot) -> Result<(), Errno> {
        if !aligned(addr) {
            return Err(Errno::EINVAL);
        }
        if len == 0 {
            return Ok(());
        }
        let len = page_up(len).ok_or(Errno::ENOMEM)?;
        let end = addr.checked_add(len).ok_or(Errno::ENOMEM)?;
        if prot.0 & !(PROT_READ | PROT_WRITE | PROT_EXEC) != 0 {
            return Err(Errno::EINVAL);
        }
        // The run of mappings Linux walks: from the one at `addr` while
        // they touch.
        let mut run = Vec::new();
        let mut at = addr;
        for s in self.meeting(addr, end) {
            let v = &self.vmas[&s];
            if v.start > at {
                break;
            }
            run.push(s);
            at = v.end;
        }
        let hole = at < end;
        if run.is_empty() {
            return Err(Errno::ENOMEM);
        }
        for &s in &run {
            let v = &self.vmas[&s];
            if cut(v, addr, end) != Cut::Whole && v.prot != prot {
                return Err(Errno::ENOSYS);
            }
            Self::area_flags(prot, v.noreserve, v.growsdown)?;
        }
        for s in run {
            let v = self.vmas.get_mut(&s).expect("listed");
            if v.prot == prot {
                continue;
            }
            let flags = Self::area_flags(prot, v.noreserve, v.growsdown)?;
            self.space
                .area_change_flags(VirtAddr::new(s), flags)
                .map_err(errno_of)?;
            v.prot = prot;
        }
        if hole {
            Err(Errno::ENOMEM)
        } else {
            Ok(())
        }
    }

    /// `mremap(2)`: unknown flags, `MREMAP_FIXED` or `MREMAP_DONTUNMAP`
    /// without `MREMAP_MAYMOVE`, `MREMAP_DONTUNMAP` with a new size, an
    /// unaligned address or a new length of 0 `EINVAL`; no mapping from the
    /// address to the old end `EFAULT` (Linux 6.18 looks the mapping up
    /// first, also for a shrink). A shrink unmaps the tail (any mappings and
    /// holes) and returns the address. A growth
    /// grows in place when the old range ends the mapping and the pages
    /// above are free, else moves with `MREMAP_MAYMOVE` or fails with
    /// `ENOMEM`. A shared anonymous mapping grown keeps its object's size:
    /// the pages past it raise `SIGBUS`, as on Linux.
    pub fn mremap(
        &mut self,
        old: u64,
        old_len: u64,
        new_len: u64,
        flags: RemapFlags,
        new_addr: u64,
    ) -> MmResult {
        let _ = new_addr;
        if flags.0 & !(MREMAP_FIXED | MREMAP_MAYMOVE | MREMAP_DONTUNMAP) != 0
            || (flags.fixed() && !flags.may_move())
            || (flags.dont_unmap() && (!flags.may_move() || old_len != new_len))
            || !aligned(old)
        {
            return Err(Errno::EINVAL);
        }
        let old_len = page_up(old_len).ok_or(Errno::EINVAL)?;
        let new_len = page_up(new_len).ok_or(Errno::EINVAL)?;
        if new_len == 0 {
            return Err(Errno::EINVAL);
        }
        if flags.fixed() || flags.dont_unmap() || old_len == 0 {
            // Moves to a given place need the core's range move.
            return Err(Errno::ENOSYS);
        }
        let old_end = old.checked_add(old_len).ok_or(Errno::EINVAL)?;
        let v = self.vma_at(old).ok_or(Errno::EFAULT)?;
        if new_len <= old_len {
            // The tail goes, whatever mappings and holes it spans.
            self.check_unmap(old + new_len, old_end)?;
            self.do_unmap(old + new_len, old_end);
            return Ok(old);
        }
        // Linux's mapping: this record and the neighbours it would merge.
        let (start, end) = self.merged_at(v.start);
        if self.has_hole(old, old_end) || old_end > end {
            return Err(Errno::EFAULT);
        }
        let new_end = old.checked_add(new_len).ok_or(Errno::ENOMEM)?;
        if self.vmas.len() > self.layout.max_map_count {
            return Err(Errno::ENOMEM);
        }
        let last = self.vma_at(end - 1).map_or(start, |l| l.start);
        if old_end == end
            && new_end <= self.layout.task_size
            && !self.taken(old_end, new_end)
            && self
                .space
                .area_resize(VirtAddr::new(last), new_end - last)
                .is_ok()
        {
            if let Some(v) = self.vmas.get_mut(&last) {
                v.end = new_end;
            }
            return Ok(old);
        }
        if !flags.may_move() {
            return Err(Errno::ENOMEM);
        }
        // A move needs the core's range move.
        Err(Errno::ENOSYS)
    }

    /// `brk(2)` as the kernel does it (the C library's wrapper differs):
    /// returns the new break, or the current one when the request is
    /// refused (below the break's start, into the page below another
    /// mapping, or out of memory). The break itself need not be aligned;
    /// the `[heap]` mapping ends at it rounded up.
    pub fn brk(&mut self, addr: u64) -> u64 {
        let start = self.layout.brk_start;
        if addr < start {
            return self.brk;
        }
        let (Some(new_top), Some(old_top)) = (page_up(addr), page_up(self.brk)) else {
            return self.brk;
        };
        if new_top == old_top {
            self.brk = addr;
            return addr;
        }
        if addr <= self.brk {
            // Shrink: unmap [new_top, old_top).
            if new_top == start {
                if self.vmas.contains_key(&start) {
                    let _ = self.space.area_destroy(VirtAddr::new(start));
                    self.vmas.remove(&start);
                }
            } else if self
                .space
                .area_resize(VirtAddr::new(start), new_top - start)
                .is_err()
            {
                return self.brk;
            } else if let Some(v) = self.vmas.get_mut(&start) {
                v.end = new_top;
            }
            self.brk = addr;
            return addr;
        }
        // Grow: one free page must stay below the next mapping.
        let next = self.vmas.range(old_top..).next().map(|(_, v)| v);
        if next.is_some_and(|n| new_top + PAGE_SIZE > Self::start_gap(n)) {
            return self.brk;
        }
        if self.vmas.len() > self.layout.max_map_count {
            return self.brk;
        }
        let ok = if old_top == start {
            self.insert(Vma {
                start,
                end: new_top,
                prot: Prot::RW,
                kind: Kind::Heap,
                first: 0,
                noreserve: false,
                growsdown: false,
            })
            .is_ok()
        } else {
            let r = self
                .space
                .area_resize(VirtAddr::new(start), new_top - start);
            if r.is_ok() {
                if let Some(v) = self.vmas.get_mut(&start) {
                    v.end = new_top;
                }
            }
            r.is_ok()
        };
        if ok {
            self.brk = addr;
        }
        self.brk
    }

    /// `madvise(2)` with `MADV_DONTNEED` (the range's pages are dropped:
    /// private anonymous memory reads as zeros afterwards, shared and file
    /// mappings read their object again, private file mappings the file),
    /// `MADV_FREE` (private anonymous mappings only, `EINVAL` elsewhere; the
    /// data stays until memory is short, which here is never) and
    /// `MADV_NORMAL` (nothing). Unknown advice or an unaligned address
    /// `EINVAL`; a length of 0 does nothing; holes in the range `ENOMEM`
    /// after every mapped part is done, as Linux does.
    pub fn madvise(&mut self, addr: u64, len: u64, advice: Advice) -> Result<(), Errno> {
        if !matches!(advice, Advice::DONTNEED | Advice::FREE | Advice::NORMAL) {
            return Err(Errno::EINVAL);
        }
        if !aligned(addr) {
            return Err(Errno::EINVAL);
        }
        let plen = page_up(len).ok_or(Errno::EINVAL)?;
        if len != 0 && plen == 0 {
            return Err(Errno::EINVAL);
        }
        let end = addr.checked_add(plen).ok_or(Errno::EINVAL)?;
        if end == addr {
            return Ok(());
        }
        let run = self.meeting(addr, end);
        let mut covered = addr;
        let mut hole = false;
        for &s in &run {
            let v = &self.vmas[&s];
            if v.start > covered {
                hole = true;
            }
            covered = v.end;
            if advice == Advice::FREE && !matches!(v.kind, Kind::Anon | Kind::Heap) {
                // Linux stops here with EINVAL; MADV_FREE changed nothing
                // before (it keeps data), so stopping is all that matters.
                return Err(Errno::EINVAL);
            }
            if advice == Advice::DONTNEED && cut(v, addr, end) != Cut::Whole {
                if self.space.area(VirtAddr::new(s)).is_some_and(|a| a.resident == 0)
                    && v.object().is_none()
                {
                    continue;
                }
                return Err(Errno::ENOSYS);
            }
        }
        if covered < end || run.is_empty() {
            hole = true;
        }
        if advice == Advice::DONTNEED {
            for s in run {
                let v = self.vmas[&s].clone();
                if cut(&v, addr, end) != Cut::Whole {
                    continue;
                }
                // Drop every page: the area again, empty.
                let r = self.space.area_destroy(VirtAddr::new(s));
                debug_assert_eq!(r, Ok(()));
                self.vmas.remove(&s);
                if let Err(e) = self.insert(v) {
                    return Err(e);
                }
            }
        }
        if hole {
            Err(Errno::ENOMEM)
        } else {
            Ok(())
        }
    }

    // ---- observing ----

    /// The mappings as comparison keys, neighbours Linux would merge joined.
    pub fn keys(&self) -> Vec<MapKey> {
        let mut out: Vec<(MapKey, Vma)> = Vec::new();
        for v in self.vmas.values() {
            if let Some((k, last)) = out.last_mut() {
                if last.merges_with(v) {
                    k.end = v.end;
                    last.end = v.end;
                    continue;
                }
            }
            out.push((v.key(), v.clone()));
        }
        out.into_iter().map(|(k, _)| k).collect()
    }

    /// The maps as Linux prints them (`/proc/PID/maps`), with merged
    /// neighbours as one line; objects are named by their numbers as
    /// inodes on device `00:01`.
    pub fn maps(&self) -> Vec<MapsLine> {
        let mut lines = Vec::new();
        for k in self.keys() {
            let inode = self.vma_at(k.start).and_then(|v| v.object()).map_or(0, |o| o.id());
            lines.push(k.to_line(inode));
        }
        lines
    }

    /// Whether page `page` of mapping `v` lies past its object's end (an
    /// access there is `SIGBUS` on Linux).
    pub fn past_end(v: &Vma, page: u64) -> bool {
        v.object()
            .is_some_and(|o| v.first + (page - v.start) / PAGE_SIZE >= o.pages())
    }
}

impl<M: Machine> Drop for LinuxMm<M> {
    fn drop(&mut self) {
        let frames = self.system.machine().frames();
        for v in self.vmas.values() {
            let _ = self.space.area_destroy(VirtAddr::new(v.start));
        }
        for v in core::mem::take(&mut self.vmas).into_values() {
            if let Some(o) = v.object() {
                o.release(frames);
            }
        }
        for f in self.files.values() {
            f.release(frames);
        }
    }
}
