//! Linux's memory calls on an aspace address space (feature `aspace`).
//!
//! [`LinuxMm`] is one process's memory map: a `SpaceRef<M>` of
//! the core, the mmap base below which `mmap(NULL)` places top-down, the
//! program break and the map-count limit (`vm.max_map_count`). Each call
//! follows its Linux man page (`mmap(2)`, `munmap(2)`, `mprotect(2)`,
//! `mremap(2)`, `brk(2)`, `madvise(2)`, `msync(2)`, `mlock(2)`) and
//! returns Linux's errno values;
//! each documents its checks in the order Linux makes them.
//!
//! The core does the memory work with its range operations, each one
//! all-or-nothing with one TLB shootdown round:
//! [`unmap_range`](AddressSpace::unmap_range) (`munmap`, shrinking),
//! [`area_replace_with`](AddressSpace::area_replace_with) (`MAP_FIXED`
//! over mappings), [`protect_range`](AddressSpace::protect_range)
//! (`mprotect`), [`discard_ranges`](AddressSpace::discard_ranges)
//! (`MADV_DONTNEED`), [`move_range`](AddressSpace::move_range) and
//! [`move_range_over`](AddressSpace::move_range_over) (`mremap` moves:
//! page-table work per resident page, no data copied),
//! [`area_resize`](AddressSpace::area_resize) (growth in place) and
//! [`System::fork_replacing`] (`fork`). Each call is one such operation plus
//! the layer's records, whose room it takes before changing anything, so a
//! call refused for want of heap or frames changes nothing (faulting pages
//! in afterwards, as `MAP_POPULATE` and `mlock` do, is best effort, as on
//! Linux). Beside the
//! core the layer keeps Linux's view: one record per Linux mapping (VMA)
//! with what `/proc/PID/maps` shows and what Linux's merging looks at but
//! the maps do not (`MAP_NORESERVE`, `MAP_GROWSDOWN`, `VM_ACCOUNT`, the
//! `anon_vma` a private mapping gets at its first written page), split and
//! merged exactly when Linux splits and merges, so checks that depend on
//! where Linux's mappings end (`mremap`'s `EFAULT`) and the map count agree
//! with Linux. The core's own areas split and merge by the core's rules.
//! The records live in the core's arena B+tree (one search for a mapping
//! and its neighbours); as they cover exactly the core's areas, top-down
//! placement asks the core's free-gap summaries
//! ([`highest_free`](AddressSpace::highest_free)).
//!
//! Differences from Linux, by design (each pinned by the differential
//! test's configuration, see `tests/differential.rs`):
//! - **Holes**: Linux's `mprotect` changes the mappings before a hole and
//!   then fails with `ENOMEM`; so does this layer by default
//!   ([`HolePolicy::Linux`], as Linux callers may rely on it, and the
//!   differential test compares it), running the core's all-or-nothing
//!   `protect_range` over the part before the hole. `MADV_DONTNEED`
//!   likewise does every mapped part and then reports `ENOMEM`. That breaks
//!   the project's all-or-nothing rule, so it is a choice:
//!   [`HolePolicy::Refuse`] (set with [`LinuxMm::set_hole_policy`]) checks
//!   the whole range first and returns `ENOMEM` with nothing changed.
//! - **W^X**: the core refuses an area both writable and executable, so
//!   `PROT_WRITE | PROT_EXEC` is `EACCES` (as on a Linux whose security
//!   module denies `execmem`).
//! - **Stacks**: a `MAP_GROWSDOWN` mapping is placed and merged as Linux
//!   does (placement keeps `stack_guard_gap` free below it) and grows when
//!   the kernel asks, after a fault below it that no area holds
//!   ([`LinuxMm::expand_stack`], Linux's rules): its core area is a plain
//!   one that the layer extends (a core grows-down area would grow behind
//!   the layer's records, one page per fault, and keeps a guard page a
//!   fixed mapping may not take, which Linux allows).
//! - **`MADV_FREE`** keeps the data (as Linux does until memory is short,
//!   or until `MADV_PAGEOUT` reclaims the pages, which here does nothing).
//! - **`madvise` hints** (`MADV_RANDOM`, `MADV_HUGEPAGE`, ...) are recorded
//!   in the mappings ([`vm_flags`]: they split and merge them as on Linux) and
//!   `fork` honours `MADV_DONTFORK` and `MADV_WIPEONFORK`; none changes what
//!   the core maps. `MADV_COLLAPSE` is `EINVAL`.
//! - **`MADV_REMOVE`** punches a hole in the object of a shared mapping:
//!   every mapping of this process that shows one of those pages of the
//!   object loses it (a private file mapping only where it still borrows
//!   the file's page), the object gives its frames up; so do the mappings
//!   of the other processes of its `fork` family (`family`: the spaces
//!   `fork` made from one another, held weakly), as Linux unmaps a hole's
//!   pages from every mapping of the object.
//! - **Guard pages** (`MADV_GUARD_INSTALL`): areas of the core's
//!   [`GuardBackend`] under the unchanged records, or of its
//!   [`ReservingGuardBackend`] in a mapping that reserves memory (which
//!   keeps it, as Linux keeps charging them: `MADV_GUARD_REMOVE` needs
//!   none); `mremap` moves them with their
//!   mapping (the core moves its areas together), and grows a mapping
//!   whose top page is one by a new area above it, in place or moved (the
//!   core's `move_range_growing`: one step); with `MREMAP_DONTUNMAP` they
//!   go with the pages and the old range stays each mapping's part, empty,
//!   without them (the core's `move_range_leaving_as`); a fork's child has them as
//!   on Linux (none in `MADV_WIPEONFORK` ranges: those are empty mappings).
//! - **Private file mappings** (no difference left, only how it is done)
//!   are copy-on-write in the core itself: their areas have the mapping's
//!   real rights, and their backend *lends* the
//!   file's frames ([`object::ObjBackend`], `Backend::lends`): a page maps
//!   the file's frame without write access until its first write, which
//!   the core's fault handler answers by copying it (`aspace::cow`). So a
//!   mapping stays one core area however many pages it copies, a kernel's
//!   `copy_to_user` into a page not yet copied works like any fault, and
//!   `MADV_DONTNEED`, `mprotect`, `mremap` and fork keep the copies and the
//!   file's pages apart with no help from this layer.
//! - **`mremap` over several mappings** (a same-size `MREMAP_FIXED` move,
//!   Linux 6.17+, with or without `MREMAP_DONTUNMAP`) moves them and the
//!   holes between them in one core step, as a mapping the core keeps as
//!   several areas moves (what lies at the target under the old range's
//!   holes stays, as on Linux).

mod family;
pub mod object;
mod records;
#[cfg(feature = "sim")]
pub mod sim;
pub mod vm_flags;

use crate::consts::*;
use crate::errno::Errno;
use crate::flags::{Advice, LockAllFlags, LockFlags, MapFlags, RemapFlags, SyncFlags};
use crate::maps::{Backing, MapKey, MapsLine};
use crate::prot::Prot;
use crate::{Call, FileRef};
use alloc::string::ToString;
use alloc::sync::Arc;
use alloc::vec::Vec;
use aspace::backend::{AnonBackend, BackendRef, GuardBackend, ReservingGuardBackend};
use aspace::replace::Replacement;
use aspace::{
    Access, AddressSpace, AreaAttrs, AreaFlags, Error, FaultContext, FaultOutcome, ForkRange,
    Inherit, Machine, SpaceRef, System, TryArc, VirtAddr,
};
use family::Family;
use object::{MemObject, ObjBackend};
use records::Records;
use vm_flags::VmFlags;

/// The size of every in-memory file: 64 MiB (as the reference runner's).
pub const FILE_PAGES: u64 = (64 << 20) / PAGE_SIZE;

/// Linux's `stack_guard_gap`: placement keeps 256 pages free below a
/// grows-down mapping.
pub const STACK_GUARD_GAP: u64 = 256 * PAGE_SIZE;

/// Linux's default `RLIMIT_STACK` (8 MiB), where a new process map's stack
/// limit starts ([`LinuxMm::set_stack_limit`]).
pub const DEFAULT_STACK_LIMIT: u64 = 8 << 20;

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
    /// `mmap_min_addr` 64 KiB, `max_map_count` 65530, x86_64's 47-bit user
    /// space less its last page.
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
    /// A memory object: an in-memory file (`file`, named by the object) or
    /// the object of a shared anonymous mapping.
    Object {
        /// The object.
        object: TryArc<MemObject>,
        /// Whether it is a file ([`MemObject::name`] has its name).
        file: bool,
        /// `MAP_PRIVATE` (pages copied at their first write).
        private: bool,
    },
}

impl Kind {
    /// Whether the mapping is private (gets an `anon_vma` when written).
    fn private(&self) -> bool {
        match self {
            Kind::Anon | Kind::Heap => true,
            Kind::Object { private, .. } => *private,
        }
    }
}

/// One Linux mapping's record (a VMA).
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
    /// The page offset at `start` (Linux's `vm_pgoff`): the object's page
    /// for a file or shared anonymous mapping; for private anonymous
    /// memory the page number it was mapped at (which a move keeps once the
    /// mapping has an `anon_vma`, and which merging neighbours must
    /// continue). Maps lines show it only for objects.
    pub first: u64,
    /// `MAP_NORESERVE` (`VM_NORESERVE`).
    pub noreserve: bool,
    /// `MAP_GROWSDOWN` (`VM_GROWSDOWN`).
    pub growsdown: bool,
    /// `VM_ACCOUNT`: a private mapping that was writable (at creation or
    /// since) without `MAP_NORESERVE`. Linux never takes it away, and
    /// mappings that differ in it do not merge.
    pub account: bool,
    /// The `anon_vma` a private mapping gets when a page of it is first
    /// written; split parts share it. Two neighbours merge only if both
    /// have the same, or one has none and the other's did not come with a
    /// fork.
    pub anon: Option<AnonVma>,
    /// The `VM_*` flags `madvise` and `mlock` set (see [`vm_flags`]);
    /// mappings that differ in them do not merge.
    pub flags: VmFlags,
}

/// A private mapping's `anon_vma`, as far as merging looks at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AnonVma {
    /// The number naming it.
    pub id: u64,
    /// Whether the mapping got it in a fork: Linux's chain then links the
    /// parent's `anon_vma` too (`vma_had_uncowed_parents`), and Linux 6.18
    /// merges such a mapping only with one sharing its `anon_vma`, not with
    /// one that has none.
    pub inherited: bool,
}

impl Vma {
    /// Its comparison key (see [`MapKey`]).
    pub fn key(&self) -> MapKey {
        let (shared, backing) = match &self.kind {
            Kind::Anon => (false, Backing::Anon),
            Kind::Heap => (false, Backing::Heap),
            Kind::Object {
                object,
                file: true,
                private,
            } => (
                !private,
                Backing::File(object.name().unwrap_or_default().to_string()),
            ),
            Kind::Object { file: false, .. } => (true, Backing::SharedAnon),
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
    pub fn object(&self) -> Option<&TryArc<MemObject>> {
        match &self.kind {
            Kind::Object { object, .. } => Some(object),
            _ => None,
        }
    }

    fn pages(&self) -> u64 {
        (self.end - self.start) / PAGE_SIZE
    }

    /// Whether Linux would merge `next` (starting at this one's end) into it.
    fn merges_with(&self, next: &Vma) -> bool {
        self.merges_as(self.anon, next)
    }

    /// [`merges_with`](Self::merges_with) for this mapping with `anon` as
    /// its `anon_vma` (what it has once merged with the one below it).
    fn merges_as(&self, anon: Option<AnonVma>, next: &Vma) -> bool {
        let same_backing = match (&self.kind, &next.kind) {
            (Kind::Anon, Kind::Anon) | (Kind::Heap, Kind::Heap) => {
                self.first + self.pages() == next.first
            }
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
            ) => TryArc::ptr_eq(a, b) && pa == pb && self.first + self.pages() == next.first,
            _ => false,
        };
        let anon = match (anon, next.anon) {
            (Some(a), Some(b)) => a.id == b.id,
            (Some(a), None) => !a.inherited,
            (None, Some(b)) => !b.inherited,
            (None, None) => true,
        };
        self.end == next.start
            && same_backing
            && anon
            && self.prot == next.prot
            && self.noreserve == next.noreserve
            && self.growsdown == next.growsdown
            && self.account == next.account
            && self.flags == next.flags
    }

    /// Cuts it at `at` (inside it): it keeps the lower part, the upper part
    /// is returned.
    fn split_off(&mut self, at: u64) -> Vma {
        let upper = self.above(at);
        self.end = at;
        upper
    }

    /// Its part from `at` (inside it) up, as [`split_off`](Self::split_off)
    /// returns it, leaving it unchanged.
    fn above(&self, at: u64) -> Vma {
        let mut upper = self.clone();
        upper.start = at;
        upper.first = self.first + (at - self.start) / PAGE_SIZE;
        // Linux keeps VM_GROWSDOWN on both parts.
        upper
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

/// What `mprotect`, `madvise` and `mlock`/`munlock` do with a range that
/// has a hole (a page no mapping covers) after its start, and `madvise`
/// with a mapping that refuses the advice part way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HolePolicy {
    /// As Linux: the mappings before the hole or the refusal (`mprotect`,
    /// `mlock`, `munlock`, a refused `madvise`) or every mapped part
    /// (`madvise` over holes) change, then the call fails (`ENOMEM` for a
    /// hole). Not all-or-nothing; the default, as the differential test
    /// against Linux needs it.
    #[default]
    Linux,
    /// All-or-nothing: the whole range is checked first, and a hole (or a
    /// refusal) comes with nothing changed.
    Refuse,
}

/// What an `madvise` advice does, by kind (see [`LinuxMm::madvise`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    /// Drops the pages (`MADV_DONTNEED`, `MADV_DONTNEED_LOCKED`).
    Drop,
    /// `MADV_FREE`: private anonymous memory only; the data stays.
    Free,
    /// Sets or clears a hint flag of the mappings.
    Hint,
    /// A hint with nothing to do (`MADV_WILLNEED`, `MADV_COLD`,
    /// `MADV_PAGEOUT`).
    Nothing,
    /// Faults the pages in (`MADV_POPULATE_READ`, `MADV_POPULATE_WRITE`).
    Populate {
        /// As writes.
        write: bool,
    },
    /// `MADV_GUARD_INSTALL`: the pages become guard pages.
    GuardInstall,
    /// `MADV_GUARD_REMOVE`: guard pages become ordinary, empty ones.
    GuardRemove,
    /// `MADV_REMOVE`: a hole punched in a shared mapping's object.
    Remove,
}

impl Effect {
    /// The effect of `advice`; `None` for advice this layer refuses.
    fn of(advice: Advice) -> Option<Effect> {
        Some(match advice.0 {
            MADV_DONTNEED | MADV_DONTNEED_LOCKED => Effect::Drop,
            MADV_FREE => Effect::Free,
            MADV_WILLNEED | MADV_COLD | MADV_PAGEOUT => Effect::Nothing,
            MADV_POPULATE_READ => Effect::Populate { write: false },
            MADV_POPULATE_WRITE => Effect::Populate { write: true },
            MADV_GUARD_INSTALL => Effect::GuardInstall,
            MADV_GUARD_REMOVE => Effect::GuardRemove,
            MADV_REMOVE => Effect::Remove,
            _ if vm_flags::after(advice, VmFlags::NONE, true, false).is_some() => Effect::Hint,
            _ => return None,
        })
    }
}

/// Adds `[lo, hi)` (at or above the start of the last range) to the
/// ascending ranges `ranges`, joined to the last one where they touch or
/// overlap; `ENOMEM` if the heap refuses room.
fn add_range(ranges: &mut Vec<(VirtAddr, u64)>, lo: u64, hi: u64) -> Result<(), Errno> {
    match ranges.last_mut() {
        Some((base, size)) if base.as_u64() + *size >= lo => {
            *size = (*size).max(hi - base.as_u64());
        }
        _ => {
            ranges.try_reserve(1).map_err(|_| Errno::ENOMEM)?;
            ranges.push((VirtAddr::new(lo), hi - lo));
        }
    }
    Ok(())
}

/// How a new record meets its neighbours (see `LinuxMm::neighbours`).
#[derive(Clone, Copy, Default)]
struct Neighbours {
    /// A record ends where it starts or starts where it ends.
    touching: bool,
    /// The start of the record below that takes it in.
    prev: Option<u64>,
    /// The record above is merged into it.
    next: bool,
    /// Its `anon_vma` once merged with the one below.
    anon: Option<AnonVma>,
}

/// Result of a call: the value Linux returns on success, or its errno.
pub type MmResult = Result<u64, Errno>;

/// One process's memory map with Linux's calls (see the module docs).
pub struct LinuxMm<M: Machine> {
    system: Arc<System<M>>,
    space: SpaceRef<M>,
    layout: Layout,
    /// The program break (`mm->brk`, not rounded).
    brk: u64,
    /// Linux's mappings by start address.
    vmas: Records,
    /// The in-memory files (named by [`MemObject::name`]; few).
    files: Vec<TryArc<MemObject>>,
    /// The next object or `anon_vma` number.
    next_id: u64,
    /// What a hole in a range does (see [`HolePolicy`]).
    holes: HolePolicy,
    /// Whether a `MAP_GROWSDOWN` mapping was ever made (placement looks
    /// for the gap below one only then).
    any_growsdown: bool,
    /// Whether a mapping was ever locked (a grown mapping is looked at for
    /// its lock only then).
    any_locked: bool,
    /// Whether a mapping was ever sealed (the calls look for sealed
    /// mappings only then).
    any_sealed: bool,
    /// Whether a guard page was ever put in (`MADV_GUARD_INSTALL`: the
    /// calls look at the core's areas for guard pages only then).
    any_guarded: bool,
    /// The lock flags every new mapping gets (`mlockall(MCL_FUTURE)`:
    /// Linux's `mm->def_flags`).
    def_lock: VmFlags,
    /// `RLIMIT_MEMLOCK` in bytes; `None`: no limit (a process with
    /// `CAP_IPC_LOCK`, or an unlimited one).
    memlock: Option<u64>,
    /// `RLIMIT_STACK` in bytes (`None`: no limit): how far a stack may grow
    /// ([`expand_stack`](Self::expand_stack)).
    stack_limit: Option<u64>,
    /// Pages Linux still counts as locked though no mapping is: an
    /// `MREMAP_DONTUNMAP` move of a locked range counts the new range and
    /// never takes the old one off (`move_leaving`).
    locked_leak: u64,
    /// The spaces of the processes `fork` made from this one and from
    /// which it was made (made at the first `fork`): a hole punched in a
    /// shared object reaches their mappings of it too.
    family: Option<TryArc<Family<M>>>,
    /// The backend of every anonymous area (stateless: one for all).
    anon: BackendRef<M::Memory, M::Frames>,
    /// The backend of the guard pages of mappings that reserve no memory
    /// ([`GuardBackend`]).
    guard: BackendRef<M::Memory, M::Frames>,
    /// The backend of the guard pages of mappings that reserve memory
    /// ([`ReservingGuardBackend`]: the pages stay reserved, as Linux keeps
    /// charging them).
    reserving_guard: BackendRef<M::Memory, M::Frames>,
}

impl<M: Machine> LinuxMm<M> {
    /// A process map over `space` (a user space of `system`) laid out as
    /// `layout`; the break starts at `layout.brk_start`. A kernel may keep
    /// areas of its own in the space (a program's text and stack), outside
    /// the ranges it lets calls name: the layer changes nothing outside the
    /// range a call names, and `madvise` nothing but its own mappings'
    /// pages.
    pub fn new(system: Arc<System<M>>, space: SpaceRef<M>, layout: Layout) -> Self {
        // Guard pages a space brings along (a map made again over a space
        // that had one) are looked for as if put in here.
        let any_guarded = space
            .lookup()
            .iter()
            .any(|a| a.backend == GuardBackend::NAME);
        LinuxMm {
            system,
            space,
            brk: layout.brk_start,
            layout,
            vmas: Records::new(),
            files: Vec::new(),
            next_id: 1,
            holes: HolePolicy::Linux,
            any_growsdown: false,
            any_locked: false,
            any_sealed: false,
            any_guarded,
            def_lock: VmFlags::NONE,
            memlock: None,
            stack_limit: Some(DEFAULT_STACK_LIMIT),
            locked_leak: 0,
            family: None,
            anon: BackendRef::stateless(AnonBackend),
            guard: BackendRef::stateless(GuardBackend),
            reserving_guard: BackendRef::stateless(ReservingGuardBackend),
        }
    }

    /// Chooses what a hole in an `mprotect`, `madvise`, `mlock` or
    /// `munlock` range does (see [`HolePolicy`]; Linux's way by default).
    pub fn set_hole_policy(&mut self, policy: HolePolicy) {
        self.holes = policy;
    }

    /// What a hole in an `mprotect`, `madvise`, `mlock` or `munlock` range
    /// does.
    pub fn hole_policy(&self) -> HolePolicy {
        self.holes
    }

    /// Sets `RLIMIT_MEMLOCK` to `bytes` for a process without
    /// `CAP_IPC_LOCK` (`None`, the default: no limit, as for a process with
    /// it). With a limit, as Linux (which counts whole pages, the limit
    /// rounded down): `mlock` past it is `ENOMEM`, a locked `mmap`
    /// (`MAP_LOCKED`, or after `mlockall(MCL_FUTURE)`) or a locked mapping
    /// grown by `mremap` past it `EAGAIN`, the break grown past it stays,
    /// `mlockall(MCL_CURRENT)` with more mapped than it `ENOMEM`; with a
    /// limit of 0 bytes, `mlock`, `mlockall` and `MAP_LOCKED` are `EPERM`.
    /// A fork keeps it.
    pub fn set_memlock_limit(&mut self, bytes: Option<u64>) {
        self.memlock = bytes;
    }

    /// Sets `vm.max_map_count` (a sysctl on Linux, read at each call: a
    /// process already past a lowered limit keeps its mappings, and only
    /// calls that would add more are refused).
    pub fn set_max_map_count(&mut self, max: usize) {
        self.layout.max_map_count = max;
    }

    /// `RLIMIT_MEMLOCK` in bytes (`None`: no limit).
    pub fn memlock_limit(&self) -> Option<u64> {
        self.memlock
    }

    /// Sets `RLIMIT_STACK` to `bytes` (`None`: no limit; Linux's default,
    /// [`DEFAULT_STACK_LIMIT`], at first): the most a stack grown by
    /// [`expand_stack`](Self::expand_stack) may span. A fork keeps it.
    pub fn set_stack_limit(&mut self, bytes: Option<u64>) {
        self.stack_limit = bytes;
    }

    /// `RLIMIT_STACK` in bytes (`None`: no limit).
    pub fn stack_limit(&self) -> Option<u64> {
        self.stack_limit
    }

    /// Linux's `expand_stack`, for a fault at `addr` that no mapping holds
    /// (a kernel calls it when the core's fault handler finds no area
    /// there, and handles the fault again if it succeeds): the mapping
    /// right above `addr`, if it grows down (`MAP_GROWSDOWN`), takes the
    /// pages down to `addr`'s, empty (only the fault maps one), in one
    /// core step ([`AddressSpace::area_extend_down`]). The rights are not
    /// looked at: Linux grows the stack, then finds the access refused.
    /// As Linux's `expand_downwards`: `addr` below `vm.mmap_min_addr`
    /// `EPERM`; the mapping below ending less than `stack_guard_gap` under
    /// the new start, unless it is a stack too or has no rights, `ENOMEM`;
    /// growth past the stack's page offset (a stack `mremap` moved up keeps
    /// its offset), the stack spanning more than `RLIMIT_STACK`, a locked
    /// one passing `RLIMIT_MEMLOCK`, or memory to commit running out
    /// `ENOMEM`. A guard page at the stack's bottom stays where it is (the
    /// new pages are a core area of their own below its area). No
    /// mapping at or above `addr`, or one that does not grow down,
    /// `EFAULT` (the fault is the program's error). An address a mapping
    /// holds is `Ok`, nothing changed. The stack gets its `anon_vma` before
    /// the limits are checked, as Linux's (so it keeps it if they refuse:
    /// the only change a refusal leaves, as on Linux).
    pub fn expand_stack(&mut self, addr: u64) -> Result<(), Errno> {
        let a = addr & !(PAGE_SIZE - 1);
        if self.vma_at(a).is_some() {
            return Ok(());
        }
        let Some(v) = self.vmas.from(a) else {
            return Err(Errno::EFAULT);
        };
        if !v.growsdown {
            return Err(Errno::EFAULT);
        }
        let (start, end, flags, first) = (v.start, v.end, v.flags, v.first);
        if a < self.layout.mmap_min {
            return Err(Errno::EPERM);
        }
        if let Some(p) = self.vmas.below(a) {
            let accessible = p.prot.read() || p.prot.write() || p.prot.exec();
            if !p.growsdown && accessible && a - p.end < STACK_GUARD_GAP {
                return Err(Errno::ENOMEM);
            }
        }
        // The anon_vma first (Linux's anon_vma_prepare, before the limits
        // are looked at: it stays if they refuse).
        self.touched(start, true);
        let grow = (start - a) / PAGE_SIZE;
        // The page offset cannot go below 0 (a stack moved up by mremap
        // keeps its old one): Linux's `grow <= vm_pgoff`.
        if grow > first {
            return Err(Errno::ENOMEM);
        }
        if self.stack_limit.is_some_and(|limit| end - a > limit) {
            return Err(Errno::ENOMEM);
        }
        if !self.lock_fits(flags, grow) {
            return Err(Errno::ENOMEM);
        }
        let (base, new_base) = (VirtAddr::new(start), VirtAddr::new(a));
        match self.space.area_extend_down(base, new_base) {
            Ok(()) => {}
            // The stack's lowest page is a guard page (MADV_GUARD_INSTALL,
            // an area of its own here, a marker in the page table on
            // Linux): the new pages are an area of their own below it.
            Err(aspace::Error::NotSupported) => {
                let grown = self.vmas.get(start).ok_or(Errno::ENOMEM)?;
                let part = self.fresh_part(grown, start, a, start - a)?;
                self.space
                    .area_create_with(part.base, part.size, part.flags, part.attrs, part.backend)
                    .map_err(errno_of)?;
            }
            Err(e) => return Err(errno_of(e)),
        }
        if let Some(v) = self.vmas.set_start(start, a) {
            // An anonymous mapping's page offset is its start's page.
            v.first -= grow;
        }
        Ok(())
    }

    /// `RLIMIT_MEMLOCK` in whole pages, as Linux checks it.
    fn memlock_pages(&self) -> Option<u64> {
        self.memlock.map(|b| b / PAGE_SIZE)
    }

    /// Pages in locked mappings (Linux's `mm->locked_vm`, `VmLck` in
    /// `/proc/PID/status`): what `RLIMIT_MEMLOCK` is checked against.
    pub fn locked_pages(&self) -> u64 {
        self.locked_in(0, u64::MAX) + self.locked_leak
    }

    /// Pages of locked mappings in `[lo, hi)`.
    fn locked_in(&self, lo: u64, hi: u64) -> u64 {
        self.vmas
            .values()
            .filter(|v| v.flags.contains(VmFlags::LOCKED) && v.end > lo && v.start < hi)
            .map(|v| (v.end.min(hi) - v.start.max(lo)) / PAGE_SIZE)
            .sum()
    }

    /// Linux's `mlock_future_ok`: whether `pages` more pages of a mapping
    /// with flags `flags` stay within `RLIMIT_MEMLOCK` (always, unless the
    /// mapping is locked and there is a limit).
    fn lock_fits(&self, flags: VmFlags, pages: u64) -> bool {
        match self.memlock_pages() {
            Some(limit) if flags.contains(VmFlags::LOCKED) => {
                self.locked_pages().saturating_add(pages) <= limit
            }
            _ => true,
        }
    }

    /// Linux's `can_do_mlock`: `EPERM` with a limit of 0 bytes.
    fn may_lock(&self) -> Result<(), Errno> {
        match self.memlock {
            Some(0) => Err(Errno::EPERM),
            _ => Ok(()),
        }
    }

    /// A copy of this process's memory (Linux `fork`) in a new address
    /// space made by [`System::fork`]: the same mappings, break, layout and
    /// files. Private pages (anonymous memory, the heap, private file
    /// mappings' copies and the file pages they borrow) are copy-on-write
    /// in both processes; shared mappings (files, shared anonymous memory)
    /// show the same object's pages in both. Each private mapping that has an `anon_vma` gets a
    /// new one (Linux gives each child mapping its own, so the child's
    /// split parts stop merging with each other; Linux sometimes reuses
    /// one instead, which this does not model). Mappings marked
    /// `MADV_DONTFORK` are not in the child; those marked `MADV_WIPEONFORK`
    /// are, empty (zero-filled pages, no `anon_vma`, no guard page), as
    /// Linux's `dup_mmap` leaves them; the child's mappings are not locked.
    /// Guard pages elsewhere stay guard pages in the child. Refused (`ENOMEM`,
    /// nothing changed in this process) when the child's private pages pass
    /// the commit limit or frames or the heap run out. The core's
    /// [`System::fork_replacing`] leaves those ranges out (nothing copied or
    /// counted for them, the parent's pages there stay writable). A child's mapping whose `anon_vma` came with the
    /// fork merges only with mappings sharing it, not with ones that have
    /// none (Linux 6.18's `vma_had_uncowed_parents`, see [`AnonVma`]).
    pub fn fork(&mut self) -> Result<LinuxMm<M>, Errno> {
        // The heap first (the child's records and file list), then the
        // core's fork: a refusal leaves this process as it was.
        let mut vmas = self.vmas.try_clone().ok_or(Errno::ENOMEM)?;
        let mut files = Vec::new();
        files
            .try_reserve_exact(self.files.len())
            .map_err(|_| Errno::ENOMEM)?;
        files.extend(self.files.iter().cloned());
        // The ranges the child does not get, or gets empty, in order; a
        // wiped range with guard pages is a new area in the child (Linux
        // copies no page table entry there: no guard page).
        let mut ranges = Vec::new();
        let mut fresh: Vec<Replacement<M>> = Vec::new();
        for v in self.vmas.values() {
            let inherit = if v.flags.contains(VmFlags::DONTCOPY) {
                Inherit::Nothing
            } else if v.flags.contains(VmFlags::WIPEONFORK) {
                if self.any_guard(v.start, v.end) {
                    fresh.try_reserve(1).map_err(|_| Errno::ENOMEM)?;
                    fresh.push(self.fresh_part(v, v.start, v.start, v.end - v.start)?);
                    continue;
                }
                Inherit::Empty
            } else {
                continue;
            };
            ranges.try_reserve(1).map_err(|_| Errno::ENOMEM)?;
            ranges.push(ForkRange {
                base: VirtAddr::new(v.start),
                size: v.end - v.start,
                inherit,
            });
        }
        // The objects the child holds too (its mappings' and its file
        // table's), counted once the fork is done.
        let child_holds = self
            .held_objects(|v| !v.flags.contains(VmFlags::DONTCOPY))
            .ok_or(Errno::ENOMEM)?;
        // The family the child joins, locked for the fork (see
        // `Family::fork`).
        let family = match &self.family {
            Some(f) => f.clone(),
            None => Family::of(&self.space).ok_or(Errno::ENOMEM)?,
        };
        let space = family
            .fork(|| self.system.fork_replacing(&self.space, &ranges, &fresh))
            .ok_or(Errno::ENOMEM)?
            .map_err(errno_of)?;
        self.family = Some(family.clone());
        for o in &child_holds {
            o.hold();
        }
        // The records follow (nothing below fails): the ranges the child
        // does not have go, those it has empty lose their anon_vma, its
        // mappings are not locked (Linux's dup_mmap), and each private one
        // that has an anon_vma gets one of its own, inherited. One pass, no
        // list: each record is looked up by where the last one ended.
        let mut at = 0;
        while let Some(v) = vmas.from(at) {
            let (start, end) = (v.start, v.end);
            at = end;
            if v.flags.contains(VmFlags::DONTCOPY) {
                let _ = vmas.remove(start);
                continue;
            }
            let Some(mut v) = vmas.get_mut(start) else {
                continue;
            };
            if v.flags.contains(VmFlags::WIPEONFORK) {
                v.anon = None;
            }
            v.flags = v.flags - VmFlags::LOCK_MASK;
            if v.anon.is_some() {
                self.next_id += 1;
                v.anon = Some(AnonVma {
                    id: self.next_id,
                    inherited: true,
                });
            }
        }
        Ok(LinuxMm {
            system: self.system.clone(),
            space,
            layout: self.layout,
            brk: self.brk,
            vmas,
            files,
            next_id: self.next_id,
            holes: self.holes,
            any_growsdown: self.any_growsdown,
            any_locked: false,
            any_sealed: self.any_sealed,
            any_guarded: self.any_guarded,
            def_lock: VmFlags::NONE,
            memlock: self.memlock,
            stack_limit: self.stack_limit,
            locked_leak: 0,
            family: Some(family),
            anon: self.anon.clone(),
            guard: self.guard.clone(),
            reserving_guard: self.reserving_guard.clone(),
        })
    }

    /// The address space.
    pub fn space(&self) -> &SpaceRef<M> {
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

    /// Linux's mappings, in address order.
    pub fn vmas(&self) -> impl Iterator<Item = &Vma> {
        self.vmas.values()
    }

    /// The mapping containing `addr`.
    pub fn vma_at(&self, addr: u64) -> Option<&Vma> {
        self.vmas.at_or_below(addr).filter(|v| addr < v.end)
    }

    /// The in-memory file `name` (made on first use, 64 MiB of zeros);
    /// `ENOMEM` if the heap refuses a new one.
    pub fn file(&mut self, name: &str) -> Result<TryArc<MemObject>, Errno> {
        if let Some(f) = self.files.iter().find(|f| f.name() == Some(name)) {
            return Ok(f.clone());
        }
        self.files.try_reserve(1).map_err(|_| Errno::ENOMEM)?;
        let id = self.next_id + 1;
        let object = MemObject::file(FILE_PAGES, id, name).ok_or(Errno::ENOMEM)?;
        let f = TryArc::try_new(object).map_err(|_| Errno::ENOMEM)?;
        self.next_id = id;
        self.files.push(f.clone());
        Ok(f)
    }

    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Tells the layer that a user access to `addr` succeeded: the first
    /// write to a private mapping gives it an `anon_vma`, as on Linux
    /// (which changes how it merges). The fault path or whoever drives the
    /// accesses calls it; without it only merging differs.
    pub fn touched(&mut self, addr: u64, write: bool) {
        if !write {
            return;
        }
        let Some(start) = self.vma_at(addr).map(|v| v.start) else {
            return;
        };
        let Some(v) = self.vmas.get(start) else {
            return;
        };
        if !v.kind.private() || v.anon.is_some() {
            return;
        }
        let anon = match self.reusable_anon(v) {
            Some(a) => a,
            None => AnonVma {
                id: self.new_id(),
                inherited: false,
            },
        };
        if let Some(mut v) = self.vmas.get_mut(start) {
            v.anon = Some(anon);
        }
    }

    /// The `anon_vma` a private mapping `v` takes at its first write
    /// (Linux's `find_mergeable_anon_vma`): the next mapping's, else the
    /// previous one's, if that mapping is compatible with `v` (Linux's
    /// `anon_vma_compatible`: adjacent, the same backing at continuous
    /// offsets, the same flags but for the rights) and its `anon_vma` is
    /// its own, not linked to a parent's in a fork (Linux's
    /// `list_is_singular` of its chain). So neighbours that differ only in
    /// rights share an `anon_vma`, and merge once their rights agree.
    fn reusable_anon(&self, v: &Vma) -> Option<AnonVma> {
        let compatible = |a: &Vma, b: &Vma| {
            let same_backing = match (&a.kind, &b.kind) {
                (Kind::Anon, Kind::Anon) | (Kind::Heap, Kind::Heap) => true,
                (
                    Kind::Object {
                        object: x,
                        private: px,
                        ..
                    },
                    Kind::Object {
                        object: y,
                        private: py,
                        ..
                    },
                ) => TryArc::ptr_eq(x, y) && px == py,
                _ => false,
            };
            a.end == b.start
                && same_backing
                && a.first + a.pages() == b.first
                && a.noreserve == b.noreserve
                && a.growsdown == b.growsdown
                && a.account == b.account
                && a.flags == b.flags
        };
        let own = |a: Option<AnonVma>| a.filter(|a| !a.inherited);
        let next = self.vmas.get(v.end).filter(|n| compatible(v, n));
        if let Some(a) = next.and_then(|n| own(n.anon)) {
            return Some(a);
        }
        let prev = self.vmas.below(v.start).filter(|p| compatible(p, v));
        prev.and_then(|p| own(p.anon))
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
            Call::Msync { addr, len, flags } => self.msync(*addr, *len, *flags).map(|()| 0),
            Call::Mlock { addr, len, flags } => self.mlock(*addr, *len, *flags).map(|()| 0),
            Call::Munlock { addr, len } => self.munlock(*addr, *len).map(|()| 0),
            Call::Mlockall { flags } => self.mlockall(*flags).map(|()| 0),
            Call::Munlockall => self.munlockall().map(|()| 0),
            Call::Mseal { addr, len, flags } => self.mseal(*addr, *len, *flags).map(|()| 0),
            // The answers go nowhere here: see `mincore`.
            Call::Mincore { addr, len } => self.mincore_each(*addr, *len, |_, _| {}).map(|()| 0),
        }
    }

    // ---- the records ----
    //
    // Each helper makes as few searches of the record tree as it can (one
    // to find the records meeting a range, one per neighbour), as every
    // call goes through them.

    /// Room for `more` new records, taken before a call changes anything
    /// (then no record update allocates): `ENOMEM` if the heap refuses.
    fn room(&mut self, more: usize) -> Result<(), Errno> {
        if self.vmas.try_reserve(more) {
            Ok(())
        } else {
            Err(Errno::ENOMEM)
        }
    }

    /// Whether `[lo, hi)` meets any mapping.
    fn taken(&self, lo: u64, hi: u64) -> bool {
        self.vmas.below(hi).is_some_and(|v| v.end > lo)
    }

    /// Removes the records' parts in `[lo, hi)`, each record looked up
    /// afresh (one removal may cut or re-key the next); gives back shared
    /// anonymous objects no mapping maps any more. Needs room for one
    /// record (the part above `hi` of a mapping holding the range).
    fn remove_recs(&mut self, lo: u64, hi: u64) {
        while let Some(v) = self.first_ending_above(lo).filter(|v| v.start < hi) {
            let s = v.start;
            if s < lo {
                // Across `lo`: it keeps its part below, and its part above
                // `hi` when the range is inside it (copied out first; the
                // record's end moves in the tree and in the record together).
                let upper = (v.end > hi).then(|| v.above(hi));
                self.vmas.set_end(s, lo);
                if let Some(u) = upper {
                    self.vmas.insert(u);
                }
                continue;
            }
            let Some(mut v) = self.vmas.remove(s) else {
                return;
            };
            if v.end > hi {
                let upper = v.split_off(hi);
                self.vmas.insert(upper);
            }
            // Given back once its last mapping goes (a later one in the
            // range still maps it until then).
            if let Some(o) = v.object() {
                self.drop_object_if_unused(o);
            }
        }
    }

    /// Merges the record ending at `at` with the one starting there, if
    /// Linux would.
    fn merge_at(&mut self, at: u64) {
        let (Some(prev), Some(next)) = self.vmas.meeting_at(at) else {
            return;
        };
        if prev.merges_with(next) {
            let (pstart, anon) = (prev.start, prev.anon.or(next.anon));
            let Some(next) = self.vmas.remove(at) else {
                return;
            };
            if let Some(p) = self.vmas.set_end(pstart, next.end) {
                p.anon = anon;
            }
        }
    }

    /// What [`place`](Self::place) will do with `v`: whether records touch
    /// it (so the core may merge areas), the record below it that takes it
    /// in, and whether the record above it is merged too.
    fn neighbours(&self, v: &Vma) -> Neighbours {
        let mut nb = Neighbours::default();
        let mut anon = v.anon;
        // One search for both: `v`'s range is free, so the last record
        // starting at or below its start and the first one above are its
        // neighbours (the latter if it starts at its end).
        let (last, next) = self.vmas.around(v.start);
        let next = next.filter(|n| n.start == v.end);
        if let Some(p) = last {
            let ps = p.start;
            debug_assert!(p.end <= v.start, "the new record's range is free");
            if p.end == v.start {
                nb.touching = true;
                if p.merges_with(v) {
                    nb.prev = Some(ps);
                    anon = p.anon.or(v.anon);
                }
            }
        }
        if let Some(n) = next {
            nb.touching = true;
            // The record after merging with the one below differs from `v`
            // only in where it starts and in its `anon_vma`.
            nb.next = v.merges_as(anon, n);
        }
        nb.anon = anon;
        nb
    }

    /// Records `v` and merges it with its neighbours as Linux would (the
    /// one below first, then the one above).
    fn insert_rec(&mut self, v: Vma) {
        let nb = self.neighbours(&v);
        self.place(v, nb);
    }

    /// Records `v` as [`neighbours`](Self::neighbours) found it.
    fn place(&mut self, mut v: Vma, nb: Neighbours) {
        let next = if nb.next {
            self.vmas.remove(v.end)
        } else {
            None
        };
        let end = next.as_ref().map_or(v.end, |n| n.end);
        let anon = match &next {
            Some(n) => nb.anon.or(n.anon),
            None => nb.anon,
        };
        match nb.prev.and_then(|ps| self.vmas.set_end(ps, end)) {
            Some(p) => p.anon = anon,
            None => {
                v.end = end;
                v.anon = anon;
                self.vmas.insert(v);
            }
        }
    }

    /// Lets a shared object go once no mapping of this process maps it and
    /// it is not in its file table: the last process holding it gives its
    /// frames back (a `fork` family shares it).
    fn drop_object_if_unused(&self, object: &TryArc<MemObject>) {
        let file = self.files.iter().any(|f| TryArc::ptr_eq(f, object));
        let mapped = self
            .vmas
            .values()
            .any(|v| v.object().is_some_and(|o| TryArc::ptr_eq(o, object)));
        if !file && !mapped {
            object.let_go(self.system.machine().frames(), self.system.reserve());
        }
    }

    /// The distinct objects this process holds (those of its mappings
    /// `keep` picks, and its file table's), each once; `None` if the heap
    /// refuses room.
    fn held_objects(&self, keep: impl Fn(&Vma) -> bool) -> Option<Vec<TryArc<MemObject>>> {
        let mut held: Vec<TryArc<MemObject>> = Vec::new();
        let objects = self
            .vmas
            .values()
            .filter(|v| keep(v))
            .filter_map(Vma::object);
        for o in objects.chain(self.files.iter()) {
            if !held.iter().any(|h| TryArc::ptr_eq(h, o)) {
                held.try_reserve(1).ok()?;
                held.push(o.clone());
            }
        }
        Some(held)
    }

    // ---- the core side ----

    fn rights(prot: Prot) -> Result<AreaFlags, Errno> {
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
        Ok(f)
    }

    /// Whether mappings of `kind` copy pages on their first write (private
    /// file mappings: the core maps the file's frames lent, see
    /// [`object::ObjBackend`]).
    fn copy_on_write(kind: &Kind) -> bool {
        matches!(
            kind,
            Kind::Object {
                file: true,
                private: true,
                ..
            }
        )
    }

    fn backend(&self, v: &Vma) -> aspace::Result<BackendRef<M::Memory, M::Frames>> {
        match &v.kind {
            Kind::Anon | Kind::Heap => Ok(self.anon.clone()),
            Kind::Object {
                object, private, ..
            } => TryArc::try_backend(ObjBackend {
                object: object.clone(),
                first: v.first,
                private: *private,
            }),
        }
    }

    /// The backend of mapping `v` as a mapping of it starting at its
    /// address `at` would have it (from that page of its object).
    fn backend_from(&self, v: &Vma, at: u64) -> Result<BackendRef<M::Memory, M::Frames>, Errno> {
        let mut part = v.clone();
        part.first = v.first + (at - v.start) / PAGE_SIZE;
        part.start = at;
        self.backend(&part).map_err(errno_of)
    }

    /// A new, empty core area of `size` bytes at `base` holding mapping
    /// `v`'s memory from its address `from` on (its rights, its backend
    /// from that page).
    fn fresh_part(
        &self,
        v: &Vma,
        from: u64,
        base: u64,
        size: u64,
    ) -> Result<Replacement<M>, Errno> {
        Ok(Replacement {
            base: VirtAddr::new(base),
            size,
            flags: Self::area_flags(v)?,
            attrs: AreaAttrs::empty(),
            backend: self.backend_from(v, from)?,
        })
    }

    /// Pages of memory a mapping reserves up front: a private mapping's
    /// while Linux charges it (`VM_ACCOUNT`: made writable, not
    /// `MAP_NORESERVE`).
    fn reserves(v: &Vma) -> u64 {
        if Self::late(v) || !v.kind.private() {
            0
        } else {
            v.pages()
        }
    }

    /// Whether `v`'s area reserves page by page, at its faults: with
    /// `MAP_NORESERVE`, and a private mapping Linux does not charge (not
    /// writable: a `PROT_NONE` or read-only reservation of address space
    /// costs no memory until its pages are used). The latter's area
    /// reserves the rest of its pages when `mprotect` makes it writable,
    /// as Linux charges it then ([`AreaFlags::RESERVE_ON_WRITE`]).
    fn late(v: &Vma) -> bool {
        v.noreserve || (v.kind.private() && !v.account)
    }

    /// The core area flags of `v`: its rights, and late reservation (see
    /// [`late`](Self::late)), until write access for a mapping Linux will
    /// charge then.
    fn area_flags(v: &Vma) -> Result<AreaFlags, Errno> {
        let flags = Self::rights(v.prot)?;
        let late = AreaFlags::LATE_RESERVE;
        Ok(if !Self::late(v) {
            flags
        } else if v.noreserve || v.prot.write() {
            // (The latter not made: a writable private mapping is charged.)
            flags | late
        } else {
            flags | late | AreaFlags::RESERVE_ON_WRITE
        })
    }

    /// Makes `v`'s core area over `backend` (made by
    /// [`backend`](Self::backend) beforehand, so that nothing but the core
    /// can refuse here), merged with compatible neighbours when a record
    /// `touching` it (no record touching it, no area does either).
    fn create_area(
        &self,
        v: &Vma,
        backend: BackendRef<M::Memory, M::Frames>,
        touching: bool,
    ) -> Result<(), Errno> {
        let flags = Self::area_flags(v)?;
        self.space
            .area_create_with(
                VirtAddr::new(v.start),
                v.end - v.start,
                flags,
                AreaAttrs::empty(),
                backend,
            )
            .map_err(errno_of)?;
        if touching {
            let _ = self.space.area_merge(VirtAddr::new(v.start));
        }
        Ok(())
    }

    /// Unmaps `[lo, hi)` in the core (holes fine) and in the records.
    fn unmap(&mut self, lo: u64, hi: u64) -> Result<(), Errno> {
        if lo >= hi {
            return Ok(());
        }
        // A sealed mapping in the range: nothing goes (Linux's
        // vms_gather_munmap_vmas).
        if self.sealed_in(lo, hi) {
            return Err(self.refused_by_seal(lo));
        }
        self.room(1)?;
        // The commonest case, a whole mapping: one search.
        if let Some(v) = self.vmas.remove_exact(lo, hi) {
            if let Err(e) = self.space.unmap_range(VirtAddr::new(lo), hi - lo) {
                self.vmas.insert(v);
                return Err(errno_of(e));
            }
            if let Some(o) = v.object() {
                self.drop_object_if_unused(o);
            }
            return Ok(());
        }
        // A range inside one mapping: one search, no list.
        if let Some(v) = self.vmas.below(hi) {
            let s = v.start;
            if s <= lo && v.end >= hi {
                self.space
                    .unmap_range(VirtAddr::new(lo), hi - lo)
                    .map_err(errno_of)?;
                self.remove_recs(lo, hi);
                return Ok(());
            }
        }
        if !self.taken(lo, hi) {
            return Ok(());
        }
        self.space
            .unmap_range(VirtAddr::new(lo), hi - lo)
            .map_err(errno_of)?;
        self.remove_recs(lo, hi);
        Ok(())
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
        let next = self.vmas.from(addr);
        let prev = self.vmas.below(addr);
        next.is_none_or(|n| end <= Self::start_gap(n)) && prev.is_none_or(|p| addr >= p.end)
    }

    /// The highest base of a free range of `len` bytes ending at or below
    /// the mmap base (Linux's top-down `unmapped_area_topdown`): the
    /// highest gap that fits is taken unless the mapping right above it
    /// grows down and its `stack_guard_gap` reaches into it; then the
    /// search starts again below that gap's start. Each round is one
    /// search of the core's free-gap summaries, O(log n).
    fn top_down(&self, len: u64) -> Option<u64> {
        let floor = self.layout.mmap_min;
        let mut high = self.layout.mmap_base;
        loop {
            // The core's areas cover exactly the records' ranges.
            let gap_end = self
                .space
                .highest_free(VirtAddr::new(floor), VirtAddr::new(high), len)?
                .as_u64()
                + len;
            debug_assert!(!self.taken(gap_end - len, gap_end), "a free gap");
            if !self.any_growsdown {
                return Some(gap_end - len);
            }
            match self.vmas.from(gap_end) {
                Some(n) if n.growsdown && Self::start_gap(n) < gap_end => {
                    high = Self::start_gap(n);
                }
                _ => return Some(gap_end - len),
            }
        }
    }

    // ---- the calls ----

    /// `mmap(2)`. Linux's checks in order: an unaligned `offset` `EINVAL`;
    /// a file mapping without a file `EBADF`; `len` 0 `EINVAL`; `len` overflowing when rounded up `ENOMEM`; the
    /// offset's page plus the length overflowing `EOVERFLOW`; more than
    /// `vm.max_map_count` mappings `ENOMEM`; with `MAP_FIXED` or
    /// `MAP_FIXED_NOREPLACE` a range past the user space `ENOMEM`, an
    /// unaligned address `EINVAL` and one below `vm.mmap_min_addr` `EPERM`
    /// (a hint below it is raised to it); `MAP_FIXED_NOREPLACE` over a mapping
    /// `EEXIST`; `MAP_LOCKED` with an `RLIMIT_MEMLOCK` of 0 `EPERM`, a
    /// locked mapping (`MAP_LOCKED`, or after `mlockall(MCL_FUTURE)`) past
    /// the limit `EAGAIN` (see [`set_memlock_limit`](Self::set_memlock_limit));
    /// a file range reaching past `MAX_LFS_FILESIZE` `EOVERFLOW`;
    /// neither private nor shared `EINVAL`; a shared anonymous or a file
    /// `MAP_GROWSDOWN` `EINVAL`. `PROT_*` bits other than the three rights
    /// are ignored, as Linux ignores them.
    ///
    /// Without `MAP_FIXED*` the address is a hint (rounded down to a page),
    /// taken when the range is free (and off the gap below a grows-down
    /// mapping), else the range is placed top-down below the mmap base; no
    /// room is `ENOMEM`. `MAP_FIXED` replaces what was there in one step:
    /// everything that can refuse is checked first (rights, memory to
    /// reserve counting what the replaced mappings give back), then the
    /// core unmaps the range and creates the area. `MAP_NORESERVE` reserves
    /// memory page by page ([`AreaFlags::LATE_RESERVE`]), and so does a
    /// private mapping that is not writable (Linux does not charge it); `MAP_POPULATE`
    /// faults every page in (writing, for a private writable mapping);
    /// `PROT_NONE` is an area with no rights. Shared anonymous memory is a
    /// new object of the mapping's length, charged whole against the
    /// commit limit (not with `MAP_NORESERVE`) until its last holder lets
    /// it go; a file mapping maps the in-memory file of that name.
    pub fn mmap(
        &mut self,
        addr: u64,
        len: u64,
        prot: Prot,
        flags: MapFlags,
        file: Option<&FileRef>,
        offset: u64,
    ) -> MmResult {
        // Only the rights count (Linux's calc_vm_prot_bits ignores the
        // other bits, PROT_SEM and unknown ones alike).
        let prot = Prot(prot.0 & (PROT_READ | PROT_WRITE | PROT_EXEC));
        if !aligned(offset) {
            return Err(Errno::EINVAL);
        }
        // No file for a file mapping: Linux's fget, before do_mmap.
        if file.is_none() && !flags.anonymous() {
            return Err(Errno::EBADF);
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
        if len > self.layout.task_size {
            return Err(Errno::ENOMEM);
        }
        let base = if flags.fixed() {
            if addr > self.layout.task_size - len {
                return Err(Errno::ENOMEM);
            }
            if !aligned(addr) {
                return Err(Errno::EINVAL);
            }
            // Below vm.mmap_min_addr: a user task's EPERM (Linux's
            // security_mmap_addr without CAP_SYS_RAWIO).
            if addr < self.layout.mmap_min {
                return Err(Errno::EPERM);
            }
            addr
        } else {
            // A hint below vm.mmap_min_addr is raised to it (Linux's
            // round_hint_to_min).
            let floor = page_up(self.layout.mmap_min).unwrap_or(u64::MAX);
            let hint = match addr & !(PAGE_SIZE - 1) {
                0 => 0,
                h => h.max(floor),
            };
            if hint != 0 && self.hint_free(hint, len) {
                hint
            } else {
                self.top_down(len).ok_or(Errno::ENOMEM)?
            }
        };
        let end = base + len;
        if flags.has(MAP_FIXED_NOREPLACE) && self.taken(base, end) {
            return Err(Errno::EEXIST);
        }
        // RLIMIT_MEMLOCK, as do_mmap checks it (the whole length counts,
        // even over locked pages MAP_FIXED replaces).
        if flags.has(MAP_LOCKED) {
            self.may_lock()?;
        }
        let lock = if flags.has(MAP_LOCKED) {
            self.def_lock | VmFlags::LOCKED
        } else {
            self.def_lock
        };
        if !self.lock_fits(lock, len / PAGE_SIZE) {
            return Err(Errno::EAGAIN);
        }
        // A file's pages end at MAX_LFS_FILESIZE (Linux's file_mmap_ok).
        if !flags.anonymous() && pgoff > (i64::MAX as u64).saturating_sub(len) / PAGE_SIZE {
            return Err(Errno::EOVERFLOW);
        }
        // The mapping's type, as do_mmap takes it: a file's
        // MAP_SHARED_VALIDATE refuses flags it does not know, anonymous
        // memory has no MAP_SHARED_VALIDATE but has MAP_DROPPABLE.
        let growsdown = flags.has(MAP_GROWSDOWN);
        let droppable = flags.anonymous() && flags.0 & MAP_TYPE == MAP_DROPPABLE;
        let private = match (flags.0 & MAP_TYPE, flags.anonymous()) {
            (MAP_PRIVATE, _) => true,
            (MAP_SHARED, _) => false,
            (MAP_SHARED_VALIDATE, false) if flags.0 & !LEGACY_MAP_MASK != 0 => {
                return Err(Errno::EOPNOTSUPP)
            }
            (MAP_SHARED_VALIDATE, false) => false,
            (MAP_DROPPABLE, true) if flags.0 & (MAP_LOCKED | MAP_HUGETLB) != 0 || growsdown => {
                return Err(Errno::EINVAL)
            }
            (MAP_DROPPABLE, true) => true,
            _ => return Err(Errno::EINVAL),
        };
        // Room for the records (a mapping cut by MAP_FIXED, the new one).
        self.room(2)?;
        let kind = match (file, flags.anonymous()) {
            // A file mapping never grows down (Linux's do_mmap: EINVAL).
            (Some(_), false) if growsdown => return Err(Errno::EINVAL),
            (Some(FileRef(name)), false) => Kind::Object {
                object: self.file(name)?,
                file: true,
                private,
            },
            (None, false) => return Err(Errno::EBADF),
            (_, true) if private => Kind::Anon,
            (_, true) => {
                if growsdown {
                    return Err(Errno::EINVAL);
                }
                let id = self.next_id + 1;
                let object = TryArc::try_new(MemObject::new(len / PAGE_SIZE, id))
                    .map_err(|_| Errno::ENOMEM)?;
                self.next_id = id;
                Kind::Object {
                    object,
                    file: false,
                    private: false,
                }
            }
        };
        let first = match kind {
            Kind::Object { file: true, .. } => pgoff,
            Kind::Object { file: false, .. } => 0,
            Kind::Anon | Kind::Heap => base / PAGE_SIZE,
        };
        // A droppable mapping is never reserved (Linux: VM_NORESERVE).
        let noreserve = flags.has(MAP_NORESERVE) || droppable;
        let vma = Vma {
            start: base,
            end,
            prot,
            account: kind.private() && prot.write() && !noreserve,
            kind,
            first,
            noreserve,
            growsdown,
            anon: None,
            // MAP_LOCKED, what mlockall(MCL_FUTURE) asks of every new
            // mapping (Linux's mm->def_flags), and MAP_STACK's
            // VM_NOHUGEPAGE (Linux 6.7+).
            flags: {
                let mut f = lock;
                if flags.has(MAP_STACK) {
                    f = f | VmFlags::NOHUGEPAGE;
                }
                if droppable {
                    f = f | VmFlags::DROPPABLE | VmFlags::WIPEONFORK | VmFlags::DONTDUMP;
                }
                f
            },
        };
        // Everything that can refuse, before anything changes. A placed
        // range is free: nothing to unmap, nothing given back.
        Self::rights(prot)?;
        let fixed = flags.fixed();
        if fixed && self.sealed_in(base, end) {
            return Err(self.refused_by_seal(base));
        }
        let freed: u64 = if !fixed {
            0
        } else {
            self.vmas
                .rev_below(end)
                .take_while(|v| v.end > base)
                .map(|v| {
                    let part = v.end.min(end) - v.start.max(base);
                    if Self::reserves(v) > 0 {
                        part / PAGE_SIZE
                    } else {
                        0
                    }
                })
                .sum()
        };
        if Self::reserves(&vma) > self.system.reserve().available() + freed {
            return Err(Errno::ENOMEM);
        }
        // A shared anonymous object is charged whole now (Linux's shmem
        // setup; not with MAP_NORESERVE), before what it replaces is given
        // back, and keeps the charge until its last holder lets it go.
        let charge = match &vma.kind {
            Kind::Object {
                object,
                file: false,
                ..
            } if !noreserve => Some((object.clone(), object.pages())),
            _ => None,
        };
        if let Some((_, pages)) = &charge {
            if !self.system.reserve().try_reserve(*pages) {
                return Err(Errno::ENOMEM);
            }
        }
        let lock = vma.flags;
        if let Err(e) = self.install(vma, fixed) {
            if let Some((_, pages)) = charge {
                self.system.reserve().release(pages);
            }
            return Err(e);
        }
        if let Some((object, pages)) = charge {
            object.set_charged(pages);
        }
        if lock.contains(VmFlags::LOCKED) {
            self.any_locked = true;
            // As mlock: faulted in now (errors ignored, as mm_populate),
            // not at all with VM_LOCKONFAULT (MAP_POPULATE neither).
            let _ = self.populate_vmas(base, end, true);
        } else if flags.0 & (MAP_POPULATE | MAP_NONBLOCK) == MAP_POPULATE {
            // Each mapping of the range until its first page that cannot be
            // faulted in (Linux's mm_populate, errors ignored).
            let _ = self.populate_vmas(base, end, true);
        }
        Ok(base)
    }

    /// Makes the mapping `vma` (checked, with room for its records) in the
    /// core and the records: over what is there (`fixed`) in one core step,
    /// the records following, or in a free range; merged with its
    /// neighbours as Linux merges it.
    fn install(&mut self, vma: Vma, fixed: bool) -> Result<(), Errno> {
        let (base, end) = (vma.start, vma.end);
        let backend = self.backend(&vma).map_err(errno_of)?;
        let nb = if fixed && self.taken(base, end) {
            // What was there goes and the new area comes in one core step
            // (a refusal changes nothing), then the records follow.
            let flags = Self::area_flags(&vma)?;
            self.space
                .area_replace_with(
                    VirtAddr::new(base),
                    end - base,
                    flags,
                    AreaAttrs::empty(),
                    backend,
                )
                .map_err(errno_of)?;
            self.remove_recs(base, end);
            let nb = self.neighbours(&vma);
            if nb.touching {
                let _ = self.space.area_merge(VirtAddr::new(base));
            }
            nb
        } else {
            let nb = self.neighbours(&vma);
            self.create_area(&vma, backend, nb.touching)?;
            nb
        };
        self.any_growsdown |= vma.growsdown;
        self.place(vma, nb);
        Ok(())
    }

    /// `munmap(2)`: an unaligned address, a range past the user space or a
    /// length of 0 `EINVAL`; holes in the range are fine; cutting a mapping
    /// in the middle past `vm.max_map_count` `ENOMEM`. The core unmaps the
    /// whole range in one step.
    pub fn munmap(&mut self, addr: u64, len: u64) -> Result<(), Errno> {
        let ts = self.layout.task_size;
        if !aligned(addr) || addr > ts || len > ts - addr {
            return Err(Errno::EINVAL);
        }
        let len = page_up(len).ok_or(Errno::EINVAL)?;
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let end = addr + len;
        if self.vmas.len() >= self.layout.max_map_count
            && self
                .vma_at(addr)
                .is_some_and(|v| v.start < addr && end < v.end)
        {
            return Err(Errno::ENOMEM);
        }
        self.unmap(addr, end)
    }

    /// `mprotect(2)`: `PROT_GROWSDOWN` with `PROT_GROWSUP` `EINVAL`; an
    /// unaligned address `EINVAL`; a length of 0 does nothing; a range that
    /// overflows `ENOMEM`; unknown `PROT_*` bits `EINVAL` (`PROT_SEM` is
    /// known, and ignored); with `PROT_GROWSDOWN` the range starts at the
    /// start of the first mapping meeting it, which must grow down
    /// (`EINVAL`; none `ENOMEM`); `PROT_GROWSUP` `EINVAL` where a mapping
    /// holds the start (none grows up on x86-64), else `ENOMEM`; no mapping at the start `ENOMEM` (nothing changed);
    /// `PROT_WRITE | PROT_EXEC` `EACCES` (W^X, see the module docs); a cut
    /// that would pass `vm.max_map_count` `ENOMEM` (before any change). The
    /// mappings from the start up to the first hole change (the core's
    /// `protect_range` over that part, in one step), and a hole then gives
    /// `ENOMEM`, as on Linux; with [`HolePolicy::Refuse`] a hole is `ENOMEM`
    /// before any change. A private mapping made writable that Linux has
    /// not charged yet is charged then (its area reserves the rest of its
    /// pages): `ENOMEM` past the commit limit, nothing changed; a private
    /// anonymous one never written that loses write is charged no more
    /// (its area gives back all but its mapped pages' reservation).
    pub fn mprotect(&mut self, addr: u64, len: u64, prot: Prot) -> Result<(), Errno> {
        let grows = prot.0 & (PROT_GROWSDOWN | PROT_GROWSUP);
        if grows == PROT_GROWSDOWN | PROT_GROWSUP {
            return Err(Errno::EINVAL);
        }
        if !aligned(addr) {
            return Err(Errno::EINVAL);
        }
        if len == 0 {
            return Ok(());
        }
        let len = page_up(len).ok_or(Errno::ENOMEM)?;
        let end = addr.checked_add(len).ok_or(Errno::ENOMEM)?;
        // x86's arch_validate_prot: PROT_SEM passes (and means nothing).
        let known = PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM | PROT_GROWSDOWN | PROT_GROWSUP;
        if prot.0 & !known != 0 {
            return Err(Errno::EINVAL);
        }
        let prot = Prot(prot.0 & (PROT_READ | PROT_WRITE | PROT_EXEC));
        let mut addr = addr;
        if grows != 0 {
            // The first mapping meeting the range (Linux's vma_find).
            let Some(v) = self.next_rec(addr, end) else {
                return Err(Errno::ENOMEM);
            };
            if grows == PROT_GROWSUP {
                // No mapping grows up on x86-64 (no VM_GROWSUP).
                return Err(if v.start > addr {
                    Errno::ENOMEM
                } else {
                    Errno::EINVAL
                });
            }
            if !v.growsdown {
                return Err(Errno::EINVAL);
            }
            // From the stack's start (below `addr`, or above it past a hole).
            addr = v.start;
        }
        // The mappings from `addr` up to the first hole (or `end`): one
        // search each, nothing collected. `cuts`: where a changing mapping
        // is cut (below `addr`, above the covered part).
        let mut covered = addr;
        let (mut any_change, mut cuts, mut last_change) = (false, 0usize, false);
        let mut next = self.vmas.at_or_below(addr).filter(|v| v.end > addr);
        // The common case, one mapping holding the whole range: its start.
        let single = next.filter(|v| v.end >= end).map(|v| v.start);
        // A sealed mapping stops the walk as a hole does, with EPERM.
        let mut sealed = false;
        // The mappings Linux stops charging (never written, losing write):
        // their areas give back their reservation (runs of them joined).
        let mut release: Vec<(VirtAddr, u64)> = Vec::new();
        while let Some(v) = next {
            if v.flags.contains(VmFlags::SEALED) {
                sealed = true;
                break;
            }
            let account = Self::account_after(v, prot);
            if v.account && !account {
                let (lo, hi) = (v.start.max(addr), v.end.min(end));
                match release.last_mut() {
                    Some((b, n)) if b.as_u64() + *n == lo => *n += hi - lo,
                    _ => {
                        release.try_reserve(1).map_err(|_| Errno::ENOMEM)?;
                        release.push((VirtAddr::new(lo), hi - lo));
                    }
                }
            }
            let change = v.prot != prot || account != v.account;
            any_change |= change;
            cuts += usize::from(change && v.start < addr);
            last_change = change;
            covered = v.end;
            if covered >= end {
                break;
            }
            next = self.vmas.get(covered);
        }
        let last_end = covered;
        let covered = covered.min(end);
        cuts += usize::from(last_change && last_end > covered);
        let stopped = if sealed { Errno::EPERM } else { Errno::ENOMEM };
        if covered == addr || (covered < end && self.holes == HolePolicy::Refuse) {
            return Err(stopped);
        }
        let rights = Self::rights(prot)?;
        // Cutting a mapping past `vm.max_map_count` (Linux checks at each
        // cut and stops there; this refuses before any change).
        if cuts > 0
            && self.vmas.len() + cuts > self.layout.max_map_count
            && !self.map_count_fits(addr, covered, |v| {
                let account = Self::account_after(v, prot);
                (v.prot != prot || account != v.account).then(|| {
                    let mut c = v.clone();
                    c.prot = prot;
                    c.account = account;
                    c
                })
            })
        {
            return Err(Errno::ENOMEM);
        }
        self.room(cuts)?;
        // One step for the whole part; the core keeps copy-on-write pages
        // (a private file mapping's lent ones) read-only whatever the rights.
        if any_change {
            self.space
                .protect_range_releasing(VirtAddr::new(addr), covered - addr, rights, &release)
                .map_err(errno_of)?;
        }
        // Linux's mprotect_fixup, mapping by mapping: cut the changed part
        // out, change it, merge it with its neighbours. A mapping looked up
        // again by address, as the one before may have taken it in.
        if let Some(start) = single {
            if any_change {
                self.reprotect_rec(start, addr, end, prot);
            }
            return Ok(());
        }
        let mut at = addr;
        while at < covered {
            let Some(v) = self.vmas.at_or_below(at) else {
                break;
            };
            let start = v.start;
            if v.end <= at {
                break;
            }
            let hi = v.end.min(covered);
            if v.prot != prot || Self::account_after(v, prot) != v.account {
                self.reprotect_rec(start, at, hi, prot);
            }
            at = hi;
        }
        if covered < end {
            Err(stopped)
        } else {
            Ok(())
        }
    }

    /// Where a move of `[old, old_end)` to `target` that Linux makes
    /// mapping by mapping, each one's target part unmapped first, stops
    /// with `EPERM`: the start of the first mapping's part that is sealed
    /// or whose target part meets a sealed mapping, and in the latter case
    /// where that target part starts (Linux's unmapping cuts there:
    /// [`refused_by_seal`](Self::refused_by_seal)); `None` if none does.
    fn seal_stop(&self, old: u64, old_end: u64, target: u64) -> Option<(u64, Option<u64>)> {
        if !self.any_sealed {
            return None;
        }
        let mut from = old;
        while let Some(r) = self.next_rec(from, old_end) {
            let (lo, hi) = (r.start.max(old), r.end.min(old_end));
            let at = target + (lo - old);
            if r.flags.contains(VmFlags::SEALED) {
                return Some((lo, None));
            }
            if self.sealed_in(at, at + (hi - lo)) {
                return Some((lo, Some(at)));
            }
            from = hi;
        }
        None
    }

    /// A move of several mappings stopped by [`seal_stop`](Self::seal_stop)
    /// at `stop` (those below it moved by `moved`): Linux's cut of the
    /// target, then `EPERM`.
    fn stopped_by_seal(
        &mut self,
        old: u64,
        (stop, cut): (u64, Option<u64>),
        moved: impl FnOnce(&mut Self, u64) -> MmResult,
    ) -> MmResult {
        if stop > old {
            moved(self, stop - old)?;
        }
        match cut {
            Some(at) => Err(self.refused_by_seal(at)),
            None => Err(Errno::EPERM),
        }
    }

    /// What Linux's unmapping leaves when a sealed mapping past the
    /// range's first refuses it (`EPERM`, returned): the mapping the range
    /// starts inside, if not sealed, cut at the start (Linux's
    /// vms_gather_munmap_vmas splits it before it meets the sealed one,
    /// and nothing joins the parts again).
    fn refused_by_seal(&mut self, lo: u64) -> Errno {
        let cut = self
            .vma_at(lo)
            .filter(|v| v.start < lo && !v.flags.contains(VmFlags::SEALED))
            .cloned();
        if let Some(v) = cut {
            if self.room(1).is_ok() {
                let mut upper = v.clone();
                upper.first = v.first + (lo - v.start) / PAGE_SIZE;
                upper.start = lo;
                self.vmas.set_end(v.start, lo);
                self.vmas.insert(upper);
            }
        }
        Errno::EPERM
    }

    /// Whether a sealed mapping meets `[lo, hi)`.
    fn sealed_in(&self, lo: u64, hi: u64) -> bool {
        self.any_sealed
            && self
                .vmas
                .rev_below(hi)
                .take_while(|v| v.end > lo)
                .any(|v| v.flags.contains(VmFlags::SEALED))
    }

    /// `mseal(2)` (Linux 6.10+): seals every mapping of `[addr, addr +
    /// len)` (cut at the range's ends, merged with sealed neighbours):
    /// from then on it is never unmapped, moved, resized or given other
    /// rights (`EPERM` for `munmap`, `mremap`, `mprotect`, `MAP_FIXED` over
    /// it, a shrinking `brk`), nor are its pages dropped by `madvise` if it
    /// is private anonymous memory that may not be written. Refusals, each
    /// before any change: `flags` not 0, an unaligned address or a range
    /// that overflows `EINVAL`; a hole in the range `ENOMEM`; cuts past
    /// `vm.max_map_count` `ENOMEM` (a part that merges into a sealed
    /// neighbour needs no cut; where Linux would make one cut of two and
    /// then fail, nothing is cut). A length of 0 does nothing.
    pub fn mseal(&mut self, addr: u64, len: u64, flags: u64) -> Result<(), Errno> {
        if flags != 0 || !aligned(addr) {
            return Err(Errno::EINVAL);
        }
        let len = page_up(len).ok_or(Errno::EINVAL)?;
        let end = addr.checked_add(len).ok_or(Errno::EINVAL)?;
        if end == addr {
            return Ok(());
        }
        // Every page mapped, and the cuts counted.
        let mut at = addr;
        let mut cuts = 0;
        while at < end {
            let v = self.vma_at(at).ok_or(Errno::ENOMEM)?;
            if !v.flags.contains(VmFlags::SEALED) {
                cuts += usize::from(v.start < at) + usize::from(v.end > end);
            }
            at = v.end;
        }
        if cuts > 0
            && self.vmas.len() + cuts > self.layout.max_map_count
            && !self.map_count_fits(addr, end, |v| {
                (!v.flags.contains(VmFlags::SEALED)).then(|| {
                    let mut c = v.clone();
                    c.flags = c.flags | VmFlags::SEALED;
                    c
                })
            })
        {
            return Err(Errno::ENOMEM);
        }
        self.room(cuts)?;
        self.any_sealed = true;
        let mut at = addr;
        while at < end {
            let Some(v) = self.vma_at(at) else { break };
            let (start, hi, sealed) = (v.start, v.end.min(end), v.flags.contains(VmFlags::SEALED));
            if !sealed {
                self.modify_rec(start, at, hi, |v| v.flags = v.flags | VmFlags::SEALED);
            }
            at = hi;
        }
        Ok(())
    }

    /// Whether changing every mapping's part in `[lo, hi)` as `change`
    /// says (the whole mapping as the change would leave it, `None` where
    /// nothing changes) stays within `vm.max_map_count`, counted as Linux's
    /// `vma_modify` goes, mapping by mapping: a part at one end of its
    /// mapping that merges into the mapping beside it there (the one below
    /// as already changed) moves a boundary instead of cutting, a whole
    /// mapping merged away lowers the count, and each cut needs the count
    /// below the limit. Asked only when counting every cut passes the
    /// limit; where Linux would stop after some cuts, nothing is changed.
    fn map_count_fits(&self, lo: u64, hi: u64, change: impl Fn(&Vma) -> Option<Vma>) -> bool {
        let max = self.layout.max_map_count;
        let mut count = self.vmas.len();
        let mut below: Option<Vma> = self.vmas.below(lo).filter(|p| p.end == lo).cloned();
        // The `anon_vma` a mapping has once the part below it merged into
        // it (its start and that `anon_vma`).
        let mut carried: Option<(u64, Option<AnonVma>)> = None;
        let mut at = lo;
        while let Some(rec) = self.next_rec(at, hi) {
            let mut v = rec.clone();
            if let Some((start, anon)) = carried.take() {
                if start == v.start {
                    v.anon = anon;
                }
            }
            let (a, b) = (v.start.max(lo), v.end.min(hi));
            at = v.end;
            let Some(mut part) = change(&v) else {
                below = Some(v);
                continue;
            };
            part.first = v.first + (a - v.start) / PAGE_SIZE;
            part.start = a;
            part.end = b;
            let prev = below.as_ref().filter(|p| a == v.start && p.end == a);
            let left = prev.is_some_and(|p| p.merges_with(&part));
            if left {
                // What merged keeps the `anon_vma` of the one below, or
                // takes the part's (as the records do).
                part.anon = prev.and_then(|p| p.anon).or(part.anon);
            }
            let next = self.vmas.get(b).filter(|_| b == v.end);
            let right = next.is_some_and(|n| part.merges_with(n));
            if let Some(n) = next.filter(|_| right) {
                carried = Some((n.start, part.anon.or(n.anon)));
            }
            let cut = match (a > v.start, b < v.end) {
                (false, false) => {
                    count -= usize::from(left) + usize::from(right);
                    0
                }
                (false, true) => usize::from(!left),
                (true, false) => usize::from(!right),
                (true, true) => 2,
            };
            for _ in 0..cut {
                if count >= max {
                    return false;
                }
                count += 1;
            }
            below = Some(part);
        }
        true
    }

    /// Gives the part `[lo, hi)` of the record at `start` rights `prot`:
    /// the parts below and above stay as they were, the changed part merges
    /// with its neighbours as Linux would.
    fn reprotect_rec(&mut self, start: u64, lo: u64, hi: u64, prot: Prot) {
        // Linux's mprotect_fixup faults in a locked private mapping made
        // writable (breaking copy-on-write now, as mlock would have).
        let fault_in = core::cell::Cell::new(false);
        self.modify_rec(start, lo, hi, |v| {
            fault_in.set(
                prot.write()
                    && !v.prot.write()
                    && v.flags.contains(VmFlags::LOCKED)
                    && !v.flags.contains(VmFlags::LOCKONFAULT)
                    && v.kind.private(),
            );
            v.account = Self::account_after(v, prot);
            v.prot = prot;
        });
        if fault_in.get() {
            let _ = self.fault_in(lo, hi, Access::Write);
        }
    }

    /// Applies `change` to the part `[lo, hi)` of the record at `start`
    /// (Linux's `vma_modify`): the parts below and above stay as they were,
    /// the changed part merges with its neighbours as Linux would.
    fn modify_rec(&mut self, start: u64, lo: u64, hi: u64, change: impl Fn(&mut Vma)) {
        // The record keeps its place in the tree as its lowest part; the
        // parts cut off above go in as new records.
        let Some(mut v) = self.vmas.get_mut(start) else {
            return;
        };
        let (cut_above, cut_below) = (v.end > hi, start < lo);
        if !cut_above && !cut_below {
            // All of it: changed in place, then merged with its neighbours.
            change(&mut v);
            drop(v);
            self.merge_in_place(start);
            return;
        }
        if cut_above && cut_below {
            // Between two parts that stay as they were: nothing merges.
            let upper = v.above(hi);
            let mut changed = v.above(lo);
            drop(v);
            changed.end = hi;
            change(&mut changed);
            self.vmas.split_twice(start, changed, upper);
            return;
        }
        let (upper, mid) = (
            cut_above.then(|| v.above(hi)),
            cut_below.then(|| v.above(lo)),
        );
        drop(v);
        let _ = self.vmas.set_end(start, if cut_below { lo } else { hi });
        let mut changed = match mid {
            Some(mut m) => {
                m.end = hi;
                m
            }
            None => match self.vmas.remove(start) {
                Some(m) => m,
                None => return,
            },
        };
        if let Some(u) = upper {
            self.vmas.insert(u);
        }
        change(&mut changed);
        // Merged with the one below, then (as that) with the one above
        // (a part cut off stays as it was: no merge with it).
        self.insert_rec(changed);
    }

    /// Merges the record at `start`, changed where it lies, with its
    /// neighbours as [`insert_rec`](Self::insert_rec) would merge it: the
    /// one below first, then (as that) the one above.
    fn merge_in_place(&mut self, start: u64) {
        let [prev, Some(v), next] = self.vmas.with_neighbours(start) else {
            return;
        };
        let prev = prev.filter(|p| p.merges_with(v));
        let mut anon = prev.map_or(v.anon, |p| p.anon.or(v.anon));
        let next = next.filter(|n| v.merges_as(anon, n));
        if let Some(n) = next {
            anon = anon.or(n.anon);
        }
        let grown = match (prev.map(|p| p.start), next.is_some()) {
            (None, false) => return,
            (Some(p), true) => self.vmas.join_next_two(p),
            (Some(p), false) => self.vmas.join_next(p).map(|(_, g)| g),
            (None, true) => self.vmas.join_next(start).map(|(_, g)| g),
        };
        if let Some(grown) = grown {
            grown.anon = anon;
        }
    }

    /// `VM_ACCOUNT` after `mprotect` to `prot` (Linux's `mprotect_fixup`):
    /// a private mapping made writable is accounted (unless
    /// `MAP_NORESERVE`); an anonymous one made read-only before any page
    /// was written is not any more.
    fn account_after(v: &Vma, prot: Prot) -> bool {
        if prot.write() {
            v.account || (v.kind.private() && !v.noreserve && !v.prot.write())
        } else if v.account && matches!(v.kind, Kind::Anon | Kind::Heap) && v.anon.is_none() {
            false
        } else {
            v.account
        }
    }

    /// `mremap(2)`. Both lengths are rounded up to pages as Linux does,
    /// wrapping (an old length rounding to 0 asks for a copy). Checks in
    /// Linux 6.18's order: unknown flags, an unaligned address, a new
    /// length of 0 or past the user space `EINVAL`; with `MREMAP_FIXED` or
    /// `MREMAP_DONTUNMAP` (whose address, a hint, is checked all the same)
    /// an unaligned new address, a new range past the user space, no
    /// `MREMAP_MAYMOVE`, `MREMAP_DONTUNMAP` with a new size or a new
    /// range overlapping the old one `EINVAL`;
    /// with either flag, a map count that leaves no room for both ranges
    /// cut in three, four maps below `vm.max_map_count`, `ENOMEM`; no
    /// mapping at the address `EFAULT`; a sealed one `EPERM`; a fixed
    /// target below `vm.mmap_min_addr` `EPERM`. A shrink unmaps the tail (any
    /// mappings and holes) and returns the address. A growth of a range
    /// with a hole or spanning several mappings is `EFAULT`, of a locked
    /// mapping past `RLIMIT_MEMLOCK` `EAGAIN`; it is made in
    /// place when the range ends its mapping and the pages above are free;
    /// else it fails with `ENOMEM` without `MREMAP_MAYMOVE`, or the pages
    /// move (top-down placement, or the fixed target, whose old contents are
    /// replaced in the same step): the core's `move_range` or
    /// `move_range_over` moves the resident pages' translations, no data is
    /// copied; a shrinking fixed move drops the old range's tail in that
    /// step too; guard pages move along, and a mapping whose top page is
    /// one grows by a new area above it (`move_range_growing`, in place
    /// `grow_above`). `MREMAP_DONTUNMAP`: see `move_leaving`. A shared anonymous mapping grown
    /// keeps its object's size: the pages past it raise `SIGBUS`, as on
    /// Linux. An old length of 0 maps a shared object a second time
    /// (`duplicate`; a private mapping `EINVAL`).
    pub fn mremap(
        &mut self,
        old: u64,
        old_len: u64,
        new_len: u64,
        flags: RemapFlags,
        new_addr: u64,
    ) -> MmResult {
        let at = self.remap(old, old_len, new_len, flags, new_addr)?;
        // A locked mapping grown: its new pages are faulted in (Linux's
        // mremap ends with mm_populate of them, errors ignored).
        if let (true, Some(o), Some(n)) = (self.any_locked, page_up(old_len), page_up(new_len)) {
            if n > o
                && self
                    .vma_at(at)
                    .is_some_and(|v| v.flags.contains(VmFlags::LOCKED))
            {
                let _ = self.populate_vmas(at + o, at + n, true);
            }
        }
        Ok(at)
    }

    /// [`mremap`](Self::mremap) but for faulting in a locked mapping's new
    /// pages.
    fn remap(
        &mut self,
        old: u64,
        old_len: u64,
        new_len: u64,
        flags: RemapFlags,
        new_addr: u64,
    ) -> MmResult {
        // Both lengths rounded up as Linux's PAGE_ALIGN does, wrapping:
        // an old length rounding to 0 asks for a copy, a new one is EINVAL.
        let (old_len, new_len) = (page_align(old_len), page_align(new_len));
        let ts = self.layout.task_size;
        if flags.0 & !(MREMAP_FIXED | MREMAP_MAYMOVE | MREMAP_DONTUNMAP) != 0
            || !aligned(old)
            || new_len == 0
            || new_len > ts
        {
            return Err(Errno::EINVAL);
        }
        // MREMAP_DONTUNMAP names a target as MREMAP_FIXED does (a hint,
        // but checked the same).
        if (flags.fixed() || flags.dont_unmap())
            && (new_addr > ts - new_len
                || !aligned(new_addr)
                || !flags.may_move()
                || (flags.dont_unmap() && old_len != new_len)
                || (old < new_addr.saturating_add(new_len)
                    && new_addr < old.saturating_add(old_len)))
        {
            return Err(Errno::EINVAL);
        }

        // A move to a new address: Linux wants room for both ranges cut in
        // three, four maps below vm.max_map_count, before anything else.
        if (flags.fixed() || flags.dont_unmap())
            && self.vmas.len() + 2 >= self.layout.max_map_count.saturating_sub(3)
        {
            return Err(Errno::ENOMEM);
        }
        let v = self.vma_at(old).ok_or(Errno::EFAULT)?;
        // A sealed mapping is neither resized nor moved nor copied.
        if v.flags.contains(VmFlags::SEALED) {
            return Err(Errno::EPERM);
        }
        let low = flags.fixed() && new_addr < self.layout.mmap_min;
        // An old range wrapping past the top: a shrink's tail is past the
        // user space (EINVAL, a fixed target unmapped first), anything else
        // crosses the mapping's end.
        let old_end = match old.checked_add(old_len) {
            Some(e) => e,
            None if new_len < old_len => {
                if flags.fixed() && self.holes == HolePolicy::Linux {
                    self.unmap(new_addr, new_addr + new_len)?;
                }
                return Err(Errno::EINVAL);
            }
            None => return Err(Errno::EFAULT),
        };
        if old_len == 0 {
            // (MREMAP_DONTUNMAP needs the same sizes: refused above.)
            return self.duplicate(old, new_len, flags, new_addr);
        }
        if flags.dont_unmap() {
            // Mapping by mapping, as a same-size move of several (only
            // to a fixed target: placed, one mapping is all it moves).
            if !flags.fixed() {
                return self.move_leaving(old, old_len, flags, new_addr);
            }
            if low {
                return Err(self.low_target(new_addr, new_len, None));
            }
            return match self.seal_stop(old, old_end, new_addr) {
                None => self.move_leaving(old, old_len, flags, new_addr),
                Some(stop) => self.stopped_by_seal(old, stop, |mm, len| {
                    mm.move_leaving(old, len, flags, new_addr)
                }),
            };
        }
        let (vend, vflags) = (v.end, v.flags);
        if flags.fixed() {
            // What lies at the target goes (not a sealed mapping) once the
            // source is found good.
            let target_sealed = self.sealed_in(new_addr, new_addr + new_len);
            if old_end.min(old + new_len) > vend {
                // Linux 6.17+ moves a same-size range spanning mappings.
                return if old_len == new_len && low {
                    Err(self.low_target(new_addr, new_len, None))
                } else if old_len == new_len {
                    // Linux moves mapping by mapping, each one's target
                    // unmapped first: those before the first sealed one
                    // (or the first whose target part is sealed) move,
                    // then EPERM.
                    match self.seal_stop(old, old_end, new_addr) {
                        None => self.move_many(old, old_len, new_addr, false),
                        Some(stop) => self.stopped_by_seal(old, stop, |mm, len| {
                            mm.move_many(old, len, new_addr, false)
                        }),
                    }
                } else {
                    Err(Errno::EFAULT)
                };
            }
            // A locked mapping grown past RLIMIT_MEMLOCK: refused before
            // the target is unmapped (Linux's check_prep_vma).
            if new_len > old_len && !self.lock_fits(vflags, (new_len - old_len) / PAGE_SIZE) {
                return Err(Errno::EAGAIN);
            }
            if target_sealed {
                return Err(self.refused_by_seal(new_addr));
            }
            // Then the part a shrink cuts off.
            if new_len < old_len && old_end > ts {
                self.unmap(new_addr, new_addr + new_len)?;
                return Err(Errno::EINVAL);
            }
            if new_len < old_len && self.sealed_in(old + new_len, old_end) {
                // Linux's mremap_to has unmapped the target already.
                self.unmap(new_addr, new_addr + new_len)?;
                return Err(self.refused_by_seal(old + new_len));
            }
            if low {
                let tail = (new_len < old_len).then_some((old + new_len, old_end));
                return Err(self.low_target(new_addr, new_len, tail));
            }
            let guard_top = new_len > old_len && self.is_guard(old_end - PAGE_SIZE);
            return self.move_to(old, old_len, new_addr, new_len, false, guard_top);
        }
        if new_len <= old_len {
            // The part cut off goes as munmap would take it: refused past
            // TASK_SIZE (what lies above is not the task's).
            if old_end > ts {
                return Err(Errno::EINVAL);
            }
            self.unmap(old + new_len, old_end)?;
            return Ok(old);
        }
        // A hole or a second mapping in the old range (the mapping at
        // `old` covers it all otherwise).
        if old_end > vend {
            return Err(Errno::EFAULT);
        }
        // A locked mapping grown past RLIMIT_MEMLOCK.
        if !self.lock_fits(vflags, (new_len - old_len) / PAGE_SIZE) {
            return Err(Errno::EAGAIN);
        }
        if self.vmas.len() > self.layout.max_map_count {
            return Err(Errno::ENOMEM);
        }
        let guard_top = self.is_guard(old_end - PAGE_SIZE);
        let new_end = old.checked_add(new_len).ok_or(Errno::ENOMEM)?;
        if old_end == vend && new_end <= ts && !self.taken(old_end, new_end) && guard_top {
            // A guard page at the top does not grow: a new area does.
            if self.grow_above(old, old_end, new_end).is_ok() {
                return Ok(old);
            }
        } else if old_end == vend && new_end <= ts && !self.taken(old_end, new_end) {
            let core_base = self
                .space
                .area(VirtAddr::new(old_end - PAGE_SIZE))
                .map(|a| a.base.as_u64());
            if let Some(cb) = core_base {
                if self
                    .space
                    .area_resize(VirtAddr::new(cb), new_end - cb)
                    .is_ok()
                {
                    let start = self.vma_at(old).map_or(old, |v| v.start);
                    self.vmas.set_end(start, new_end);
                    self.merge_at(new_end);
                    return Ok(old);
                }
            }
        }
        if !flags.may_move() {
            return Err(Errno::ENOMEM);
        }
        let to = self.top_down(new_len).ok_or(Errno::ENOMEM)?;
        self.move_to(old, old_len, to, new_len, true, guard_top)
    }

    /// Grows the mapping holding `old` from `old_end` (its end, a guard
    /// page below it) to `new_end` (free) in place: a new core area over
    /// the mapping's backend from that page of it, in one core step, and
    /// the record follows.
    fn grow_above(&mut self, old: u64, old_end: u64, new_end: u64) -> Result<(), Errno> {
        let v = self.vma_at(old).ok_or(Errno::EFAULT)?;
        let start = v.start;
        let mut part = v.clone();
        part.first = v.first + (old_end - v.start) / PAGE_SIZE;
        part.start = old_end;
        part.end = new_end;
        let backend = self.backend(&part).map_err(errno_of)?;
        self.create_area(&part, backend, true)?;
        self.vmas.set_end(start, new_end);
        self.merge_at(new_end);
        Ok(())
    }

    /// A fixed `mremap` target below vm.mmap_min_addr: Linux finds it
    /// last (a user task's `EPERM`), after unmapping the target and a
    /// shrink's `tail`, which the Linux hole policy does too (the refusing
    /// one changes nothing). Returns the `EPERM` (or the unmap's error).
    fn low_target(&mut self, new_addr: u64, new_len: u64, tail: Option<(u64, u64)>) -> Errno {
        if self.holes == HolePolicy::Linux {
            for (lo, hi) in [(new_addr, new_addr + new_len)].into_iter().chain(tail) {
                if let Err(e) = self.unmap(lo, hi) {
                    return e;
                }
            }
        }
        Errno::EPERM
    }

    /// `mremap` with an old length of 0 (after the common checks, `old`
    /// inside a mapping): a second mapping of the same shared object, from
    /// `old`'s page of it, `new_len` bytes long, at `new_addr` with
    /// `MREMAP_FIXED` (replacing what is there) or placed top-down. Linux's
    /// refusals in order: a private mapping `EINVAL`; a locked one past
    /// `RLIMIT_MEMLOCK` `EAGAIN`; without `MREMAP_MAYMOVE` (it cannot grow
    /// in place from nothing) or past `vm.max_map_count`, or no room,
    /// `ENOMEM`; a fixed target at `old` itself `EFAULT` (Linux unmaps the
    /// target first, and the page it copies from with it: so does this
    /// layer but with [`HolePolicy::Refuse`]); a fixed target below
    /// `vm.mmap_min_addr` `EPERM`. A locked mapping's copy is locked and
    /// faulted in.
    fn duplicate(&mut self, old: u64, new_len: u64, flags: RemapFlags, new_addr: u64) -> MmResult {
        let Some(v) = self.vma_at(old) else {
            return Err(Errno::EFAULT);
        };
        if v.kind.private() {
            return Err(Errno::EINVAL);
        }
        if !self.lock_fits(v.flags, new_len / PAGE_SIZE) {
            return Err(Errno::EAGAIN);
        }
        if !flags.may_move() || self.vmas.len() >= self.layout.max_map_count {
            return Err(Errno::ENOMEM);
        }
        // The fixed target is unmapped first: not a sealed mapping.
        if flags.fixed() && self.sealed_in(new_addr, new_addr + new_len) {
            return Err(self.refused_by_seal(new_addr));
        }
        if flags.fixed() && new_addr < self.layout.mmap_min {
            return Err(self.low_target(new_addr, new_len, None));
        }
        if flags.fixed() && new_addr == old {
            // Linux unmaps the target, then finds no mapping at `old` any
            // more: `EFAULT`, the target gone (with HolePolicy::Refuse:
            // nothing changed).
            if self.holes == HolePolicy::Linux {
                self.unmap(new_addr, new_addr + new_len)?;
            }
            return Err(Errno::EFAULT);
        }
        let mut copy = v.clone();
        copy.first = v.first + (old - v.start) / PAGE_SIZE;
        copy.anon = None;
        let to = if flags.fixed() {
            new_addr
        } else {
            self.top_down(new_len).ok_or(Errno::ENOMEM)?
        };
        copy.start = to;
        copy.end = to + new_len;
        self.room(2)?;
        let lock = copy.flags;
        self.install(copy, flags.fixed())?;
        if lock.contains(VmFlags::LOCKED) && !lock.contains(VmFlags::LOCKONFAULT) {
            let _ = self.populate_vmas(to, to + new_len, true);
        }
        Ok(to)
    }

    /// `mremap` with `MREMAP_DONTUNMAP` (after the common checks: a move of
    /// the same size, `old` inside a mapping): the pages of `[old, old +
    /// len)` move (to `new_addr` with `MREMAP_FIXED`, replacing what is
    /// there, else placed top-down) and the old range stays mapped, empty
    /// (private pages read as zeros, a file's as the file has them), in one
    /// core step ([`move_range_leaving`](AddressSpace::move_range_leaving)).
    /// The range past its mapping's end `EFAULT`, but with `MREMAP_FIXED`
    /// moved with the mappings after it (Linux 6.17+, [`move_many`](Self::move_many));
    /// past `vm.max_map_count` or no room `ENOMEM`. Guard pages go with the
    /// pages (the old range keeps none). As Linux, for each mapping: the new mapping keeps the
    /// old one's flags (but `VM_LOCKED` when it lands beside the old one
    /// and merges with it: Linux clears that on what the merge made, the
    /// mapping below too if it merged) and
    /// `anon_vma` and is charged as new memory; the old
    /// mapping keeps its charge, loses `VM_LOCKED` (its pages staying
    /// counted against `RLIMIT_MEMLOCK`: Linux does not take them off), and
    /// its `anon_vma` if the range was all of it (after a fixed target cut
    /// it).
    fn move_leaving(&mut self, old: u64, len: u64, flags: RemapFlags, new_addr: u64) -> MmResult {
        let Some(v) = self.vma_at(old) else {
            return Err(Errno::EFAULT);
        };
        // Linux 6.17+ moves a fixed range spanning mappings.
        if old + len > v.end && !flags.fixed() {
            return Err(Errno::EFAULT);
        }
        if self.vmas.len() >= self.layout.max_map_count {
            return Err(Errno::ENOMEM);
        }
        let to = if flags.fixed() {
            new_addr
        } else {
            self.top_down(len).ok_or(Errno::ENOMEM)?
        };
        self.move_many(old, len, to, true)
    }

    /// Moves `[old, old + old_len)` (inside one mapping) to `to` with
    /// `new_len` bytes: the target is unmapped, a shrink unmaps the old
    /// tail, the core moves the rest (in one area or several: guard pages
    /// move along). `placed`: the target was placed (free, nothing to
    /// replace there); `guard_top`: the old range's top page is a guard
    /// page (a growth is then a new area above it).
    fn move_to(
        &mut self,
        old: u64,
        old_len: u64,
        to: u64,
        new_len: u64,
        placed: bool,
        guard_top: bool,
    ) -> MmResult {
        // The mapping cut at both ends of the moved part, its target cut
        // at both ends, the moved record: at most four more at once.
        self.room(4)?;
        let moved = old_len.min(new_len);
        let v = self.vma_at(old).ok_or(Errno::EFAULT)?;
        let (start, end, reserves) = (v.start, v.end, Self::reserves(v) > 0);
        let grow = new_len.saturating_sub(old_len) / PAGE_SIZE;
        if reserves && grow > self.system.reserve().available() {
            return Err(Errno::ENOMEM);
        }
        // One core step: the target's contents replaced and a shrinking
        // move's tail dropped with the move (Linux unmaps the tail first).
        // A placed target is free.
        let (lo, hi, tail) = (to, to + new_len, old + new_len..old + old_len);
        let shrink = old_len > new_len && self.taken(tail.start, tail.end);
        let over = shrink || (!placed && self.taken(lo, hi));
        let (from, at) = (VirtAddr::new(old), VirtAddr::new(to));
        // A guard page at the top of what grows stays one page: the growth
        // is a new area of the mapping above it, made in the same step.
        let growth = if grow > 0 && guard_top {
            let base = to + old_len;
            Some(self.fresh_part(v, old + old_len, base, hi - base)?)
        } else {
            None
        };
        let step = |space: &AddressSpace<M>| {
            if let Some(growth) = &growth {
                space.move_range_growing(from, old_len, at, growth, over)
            } else if over {
                let size = if shrink { old_len } else { moved };
                space.move_range_over(from, size, at, new_len)
            } else {
                space.move_range(from, moved, at, new_len)
            }
        };
        step(&self.space).map_err(errno_of)?;
        if over {
            self.remove_recs(lo, hi);
        }
        if shrink {
            self.remove_recs(tail.start, tail.end);
        }
        // The records: cut the moved part out and put it at `to` (a target
        // replaced may have cut the mapping's lower part: its start is
        // looked up again then).
        // A whole record moved: in place in the tree when it can, merged
        // with its new neighbours as an insertion would merge it.
        if !over && start == old && end == old + moved {
            if let Some(rec) = self.vmas.relocate(start, to, to + new_len) {
                Self::anon_first(rec);
                self.merge_at(to);
                self.merge_at(to + new_len);
                return Ok(to);
            }
        }
        let rec = match over {
            true => {
                let start = self.vmas.at_or_below(old).map_or(start, |v| v.start);
                self.cut_out(start, old, old + moved)
            }
            // The record as it was found.
            false => self.cut_out_of(start, end, old, old + moved),
        }
        .expect("the moved mapping");
        self.insert_rec(Self::placed(rec, to, to + new_len));
        Ok(to)
    }

    /// A same-size `MREMAP_FIXED` move of `[old, old + len)` spanning
    /// several mappings (Linux 6.17+; `old` in a mapping): each mapping's
    /// part and the holes between them move to `to`, replacing what is
    /// there, in one core step (the core's `move_range` of several areas);
    /// the records follow, cut at both ends, each merged at its new place
    /// with its neighbours as Linux's `copy_vma` merges it.
    fn move_many(&mut self, old: u64, len: u64, to: u64, leave: bool) -> MmResult {
        let end = old + len;
        // The mappings' parts, where they land: Linux moves each mapping
        // by itself, replacing only what lies where one lands (what lies
        // under a hole stays), and so does the core's move over several
        // areas.
        let mut parts: Vec<(u64, u64)> = Vec::new();
        let mut at = old;
        while let Some((start, stop)) = self.next_span(at, end) {
            parts.try_reserve(1).map_err(|_| Errno::ENOMEM)?;
            parts.push((start.max(old), stop.min(end)));
            at = stop;
        }
        let count = parts.len();
        // A hole at the end moves nothing.
        let moved_len = at.min(end) - old;
        // The records moved, and room for cuts at both ends of every part
        // of both ranges.
        let mut moved: Vec<Vma> = Vec::new();
        moved.try_reserve_exact(count).map_err(|_| Errno::ENOMEM)?;
        self.room(3 * count + 4)?;
        let over = self.taken(to, to + moved_len);
        let (from, at) = (VirtAddr::new(old), VirtAddr::new(to));
        let r = if leave && self.any_guard(old, end) {
            // The guard pages go with the pages (Linux moves their page
            // table entries): what stays is each mapping's part, empty.
            let left = self.left_parts(&parts)?;
            self.space
                .move_range_leaving_as(from, moved_len, at, over, &left)
        } else if leave {
            self.space.move_range_leaving(from, moved_len, at, over)
        } else if over {
            self.space.move_range_over(from, moved_len, at, moved_len)
        } else {
            self.space.move_range(from, moved_len, at, moved_len)
        };
        r.map_err(errno_of)?;
        if leave {
            self.leave_recs(old, end, to, over);
            return Ok(to);
        }
        if over {
            for &(lo, hi) in &parts {
                self.remove_recs(lo - old + to, hi - old + to);
            }
        }
        let mut at = old;
        while let Some((start, _)) = self.next_span(at, end) {
            let Some(rec) = self.cut_out(start, old, end) else {
                break;
            };
            at = rec.end;
            let (lo, hi) = (rec.start - old + to, rec.end - old + to);
            moved.push(Self::placed(rec, lo, hi));
        }
        for rec in moved {
            self.insert_rec(rec);
        }
        Ok(to)
    }

    /// The core areas a move leaving `parts` (each inside one mapping, in
    /// order) puts there: each part of its mapping, empty, without its
    /// guard pages.
    fn left_parts(&self, parts: &[(u64, u64)]) -> Result<Vec<Replacement<M>>, Errno> {
        let mut left = Vec::new();
        left.try_reserve_exact(parts.len())
            .map_err(|_| Errno::ENOMEM)?;
        for &(lo, hi) in parts {
            let v = self.vma_at(lo).ok_or(Errno::EFAULT)?;
            left.push(self.fresh_part(v, lo, lo, hi - lo)?);
        }
        Ok(left)
    }

    /// The records of a move of `[old, end)` to `to` leaving the old range
    /// mapped (`MREMAP_DONTUNMAP`, after the core's step), mapping by
    /// mapping as Linux 6.18 goes: what lies where the part lands goes
    /// (`over`), the part gets a copy there (merged with its neighbours as
    /// they are then), and the old mapping stays whole, without its
    /// `anon_vma` when the part was all of it and without `VM_LOCKED`
    /// ([`unlock_left`](Self::unlock_left)) before the next part moves: a
    /// copy that merged with the mapping it came from loses it too, and a
    /// later copy landing beside an unlocked one keeps its own.
    fn leave_recs(&mut self, old: u64, end: u64, to: u64, over: bool) {
        let mut at = old;
        while let Some((start, stop)) = self.next_span(at, end) {
            let (lo, hi) = (start.max(old), stop.min(end));
            at = hi;
            let (tlo, thi) = (lo - old + to, hi - old + to);
            if over {
                self.remove_recs(tlo, thi);
            }
            // The mapping as the target's removal left it (it may have cut
            // it, outside the part).
            let Some((start, stop)) = self.vma_at(lo).map(|v| (v.start, v.end)) else {
                break;
            };
            let Some(mut v) = self.vmas.get_mut(start) else {
                break;
            };
            let mut copy = v.clone();
            if (lo, hi) == (start, stop) {
                v.anon = None;
            }
            drop(v);
            copy.first += (lo - start) / PAGE_SIZE;
            self.insert_rec(Self::placed(copy, tlo, thi));
            self.unlock_left(lo, hi);
        }
    }

    /// After a move that left `[old, end)` mapped (`MREMAP_DONTUNMAP`, the
    /// copies recorded): the mappings there lose `VM_LOCKED`, as Linux
    /// clears it on them, their pages still counted against
    /// `RLIMIT_MEMLOCK` (Linux does not take them off). A copy that
    /// landed right beside the mapping it came from and merged with it
    /// (an anonymous one never written, say: Linux's copy_vma merges it
    /// while both are still locked, with the mapping below it too if that
    /// one may) is part of what loses it.
    fn unlock_left(&mut self, old: u64, end: u64) {
        let mut at = old;
        while let Some((start, stop)) = self.next_span(at, end) {
            at = stop;
            let Some(mut v) = self.vmas.get_mut(start) else {
                break;
            };
            if v.flags.contains(VmFlags::LOCKED) {
                self.locked_leak += (stop - start) / PAGE_SIZE;
            }
            v.flags = v.flags - VmFlags::LOCK_MASK;
        }
    }

    /// Takes the record at `start` out, its parts below `lo` and above
    /// `hi` put back (room for them taken), and returns the rest.
    fn cut_out(&mut self, start: u64, lo: u64, hi: u64) -> Option<Vma> {
        let end = self.vmas.get(start)?.end;
        self.cut_out_of(start, end, lo, hi)
    }

    /// [`cut_out`](Self::cut_out) of the record `[start, end)`. A part
    /// from its start or to its end is copied out and the rest keeps its
    /// place in the tree, its start moved up or its end down (no removal
    /// and insertion).
    fn cut_out_of(&mut self, start: u64, end: u64, lo: u64, hi: u64) -> Option<Vma> {
        if start == lo && end > hi {
            let rest = self.vmas.set_start(start, hi)?;
            let mut part = rest.clone();
            part.start = start;
            part.end = hi;
            rest.first += (hi - start) / PAGE_SIZE;
            return Some(part);
        }
        if start < lo && end == hi {
            let lower = self.vmas.set_end(start, lo)?;
            let mut part = lower.above(lo);
            part.end = end;
            return Some(part);
        }
        let mut rec = self.vmas.remove(start)?;
        if rec.end > hi {
            let upper = rec.split_off(hi);
            self.vmas.insert(upper);
        }
        if rec.start < lo {
            let part = rec.split_off(lo);
            let lower = core::mem::replace(&mut rec, part);
            self.vmas.insert(lower);
        }
        Some(rec)
    }

    /// `rec` moved to `[start, end)`: Linux's copy_vma gives an anonymous
    /// mapping never written the page offset of its new place (so it
    /// merges there); one with an anon_vma keeps its old one (and does
    /// not).
    fn placed(mut rec: Vma, start: u64, end: u64) -> Vma {
        rec.start = start;
        rec.end = end;
        Self::anon_first(&mut rec);
        rec
    }

    /// [`placed`](Self::placed)'s page offset for `rec` at its new start.
    fn anon_first(rec: &mut Vma) {
        if matches!(rec.kind, Kind::Anon | Kind::Heap) && rec.anon.is_none() {
            rec.first = rec.start / PAGE_SIZE;
        }
    }

    /// The first record meeting `[at, end)`.
    fn next_rec(&self, at: u64, end: u64) -> Option<&Vma> {
        if at >= end {
            return None;
        }
        self.vmas
            .at_or_below(at)
            .filter(|v| v.end > at)
            .or_else(|| self.vmas.from(at).filter(|v| v.start < end))
    }

    /// [`next_rec`](Self::next_rec)'s start and end.
    fn next_span(&self, at: u64, end: u64) -> Option<(u64, u64)> {
        self.next_rec(at, end).map(|v| (v.start, v.end))
    }

    /// `brk(2)` as the kernel does it (the C library's wrapper differs):
    /// returns the new break, or the current one when the request is
    /// refused (below the break's start, into the page below another
    /// mapping, past `RLIMIT_MEMLOCK` after `mlockall(MCL_FUTURE)`, or out
    /// of memory). The break itself need not be aligned;
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
            // Linux shrinks only a break that still has a mapping there.
            if !self.taken(new_top, old_top) || self.unmap(new_top, old_top).is_err() {
                return self.brk;
            }
            self.brk = addr;
            return addr;
        }
        // Grow, within RLIMIT_MEMLOCK after mlockall(MCL_FUTURE), and
        // with one free page below the next mapping.
        // Linux's check_brk_limits: the new part must fit below TASK_SIZE
        // (get_unmapped_area with MAP_FIXED), then the lock limit.
        if new_top > self.layout.task_size
            || !self.lock_fits(self.def_lock, (new_top - old_top) / PAGE_SIZE)
        {
            return self.brk;
        }
        let limit = new_top
            .saturating_add(PAGE_SIZE)
            .saturating_add(STACK_GUARD_GAP);
        // The first mapping reaching above the old top (one holding it,
        // as a MAP_FIXED mapping over the heap's last page may, counts).
        let next = self.first_ending_above(old_top).filter(|v| v.start < limit);
        if next.is_some_and(|n| new_top + PAGE_SIZE > Self::start_gap(n)) {
            return self.brk;
        }
        if self.vmas.len() > self.layout.max_map_count {
            return self.brk;
        }
        let grown = Vma {
            start: old_top,
            end: new_top,
            prot: Prot::RW,
            kind: Kind::Heap,
            first: old_top / PAGE_SIZE,
            noreserve: false,
            growsdown: false,
            account: true,
            anon: None,
            flags: self.def_lock,
        };
        // Linux's do_brk_flags grows the heap's last mapping only if the
        // new part would merge with it (same rights, flags, hints).
        let heap = self
            .vma_at(old_top - 1)
            .filter(|v| matches!(v.kind, Kind::Heap) && v.merges_with(&grown));
        let ok = match heap.map(|v| v.start) {
            // A guard page at the top does not grow: a new area does.
            Some(hs) if old_top > start && !self.is_guard(old_top - PAGE_SIZE) => {
                let cb = self
                    .space
                    .area(VirtAddr::new(old_top - PAGE_SIZE))
                    .map_or(hs, |a| a.base.as_u64());
                let r = self.space.area_resize(VirtAddr::new(cb), new_top - cb);
                if r.is_ok() {
                    self.vmas.set_end(hs, new_top);
                }
                r.is_ok()
            }
            _ => {
                let nb = self.neighbours(&grown);
                let ok = self.room(1).is_ok()
                    && self
                        .backend(&grown)
                        .is_ok_and(|b| self.create_area(&grown, b, nb.touching).is_ok());
                if ok {
                    self.place(grown, nb);
                }
                ok
            }
        };
        if ok {
            self.brk = addr;
            if self.def_lock.contains(VmFlags::LOCKED) {
                // mlockall(MCL_FUTURE): the new part faulted in.
                let _ = self.populate_vmas(old_top, new_top, true);
            }
        }
        self.brk
    }

    /// `madvise(2)`, as Linux 6.18 takes each advice:
    /// - `MADV_DONTNEED`, `MADV_DONTNEED_LOCKED`: the range's pages are
    ///   dropped (private anonymous memory reads as zeros afterwards, shared
    ///   and file mappings read their object again, private file mappings
    ///   the file);
    /// - `MADV_FREE`: private anonymous mappings only, `EINVAL` elsewhere;
    ///   the data stays until memory is short, which here is never;
    /// - `MADV_NORMAL`, `MADV_RANDOM`, `MADV_SEQUENTIAL`, `MADV_DONTFORK`,
    ///   `MADV_DOFORK`, `MADV_DONTDUMP`, `MADV_DODUMP`, `MADV_WIPEONFORK`
    ///   (private anonymous memory only, `EINVAL` elsewhere),
    ///   `MADV_KEEPONFORK`, `MADV_HUGEPAGE`, `MADV_NOHUGEPAGE`,
    ///   `MADV_MERGEABLE`, `MADV_UNMERGEABLE`: set or clear the mappings'
    ///   [`VmFlags`], splitting and merging them as Linux does (a split past
    ///   `vm.max_map_count` is `ENOMEM`, checked before any change); `fork`
    ///   leaves `MADV_DONTFORK` ranges out of the child and gives it
    ///   `MADV_WIPEONFORK` ranges empty;
    /// - `MADV_WILLNEED`, `MADV_COLD`, `MADV_PAGEOUT`: hints with nothing to
    ///   do here (no read-ahead, no reclaim);
    /// - `MADV_POPULATE_READ`, `MADV_POPULATE_WRITE`: the pages are faulted
    ///   in as reads or writes would, in order, stopping at the first page
    ///   that cannot be: a hole `ENOMEM`, a mapping without the right
    ///   (`PROT_READ`, `PROT_WRITE`) `EINVAL`, a page past its object's end
    ///   `EFAULT`.
    ///
    /// - `MADV_GUARD_INSTALL`: the pages become guard pages (their contents
    ///   gone, every access a fault, the maps unchanged; a locked mapping
    ///   `EINVAL`); `MADV_GUARD_REMOVE`: ordinary empty pages again (see
    ///   `guard_parts`); all the mappings' parts in one core step.
    ///
    /// - `MADV_REMOVE`: a hole punched in the object of each shared mapping
    ///   in the range (see the module docs); a locked mapping, or
    ///   one of private anonymous memory, `EINVAL`; a private file mapping
    ///   `EACCES`.
    ///
    /// Other advice (`MADV_COLLAPSE`, ...) or an
    /// unaligned address is `EINVAL`; a length of 0 does nothing. A mapping
    /// that refuses the advice stops the walk with its error (the mappings
    /// before it changed, as on Linux); holes in the range are `ENOMEM`
    /// after every mapped part is done, as on Linux. With
    /// [`HolePolicy::Refuse`] the whole range is checked first and either
    /// refusal comes with nothing changed.
    pub fn madvise(&mut self, addr: u64, len: u64, advice: Advice) -> Result<(), Errno> {
        let effect = Effect::of(advice).ok_or(Errno::EINVAL)?;
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
        if let Effect::Populate { write } = effect {
            return self.populate_advice(addr, end, write);
        }
        // mseal: advice that drops pages is refused over a sealed private
        // anonymous mapping that may not be written (Linux's
        // can_madvise_modify, mapping by mapping in the walk).
        let discards = matches!(
            advice.0,
            MADV_DONTNEED
                | MADV_DONTNEED_LOCKED
                | MADV_FREE
                | MADV_REMOVE
                | MADV_DONTFORK
                | MADV_WIPEONFORK
                | MADV_GUARD_INSTALL
        );

        // Linux's madvise_walk_vmas: the mappings in order; one that
        // refuses stops the walk; a hole is reported once all is done.
        let mut at = addr;
        let mut hole = false;
        let mut cuts = 0;
        let mut refused: Option<(u64, Errno)> = None;
        // The mappings walked, as runs of contiguous ones: what the core
        // may drop is only theirs (a kernel may keep areas of its own in
        // the holes).
        let mut runs: Vec<(VirtAddr, u64)> = Vec::new();
        // Guard advice: each mapping's part walked, with its start.
        let mut parts: Vec<(u64, u64, u64)> = Vec::new();
        // MADV_REMOVE: each object's pages to punch out, `[lo, hi)`.
        let mut holes_punched: Vec<(TryArc<MemObject>, u64, u64)> = Vec::new();
        let mut next = self.first_ending_above(addr).filter(|v| v.start < end);
        while let Some(v) = next {
            next = self.vmas.from(v.end).filter(|n| n.start < end);
            if v.start > at {
                hole = true;
            }
            let anonymous = matches!(v.kind, Kind::Anon | Kind::Heap);
            if discards && anonymous && v.flags.contains(VmFlags::SEALED) && !v.prot.write() {
                refused = Some((v.start.max(addr), Errno::EPERM));
                break;
            }
            // Locked pages are not dropped nor reclaimed (Linux's
            // can_madv_lru_vma); MADV_DONTNEED_LOCKED is for them.
            let lru = matches!(
                advice.0,
                MADV_DONTNEED | MADV_FREE | MADV_COLD | MADV_PAGEOUT
            );
            // Nor are guard pages put in locked mappings (Linux's
            // is_valid_guard_vma).
            let guard_refused = effect == Effect::GuardInstall;
            if (lru || guard_refused) && v.flags.contains(VmFlags::LOCKED) {
                refused = Some((v.start.max(addr), Errno::EINVAL));
                break;
            }
            match effect {
                Effect::Free if !anonymous => {
                    refused = Some((v.start.max(addr), Errno::EINVAL));
                    break;
                }
                // Linux's madvise_remove: not a locked mapping, a mapping
                // of an object (a file: shmem for shared anonymous
                // memory), and a shared one that may be written.
                Effect::Remove => {
                    let refusal = match &v.kind {
                        _ if v.flags.contains(VmFlags::LOCKED) => Some(Errno::EINVAL),
                        Kind::Object {
                            private: false,
                            object,
                            ..
                        } => {
                            let (lo, hi) = (v.start.max(addr), v.end.min(end));
                            let first = v.first + (lo - v.start) / PAGE_SIZE;
                            holes_punched.try_reserve(1).map_err(|_| Errno::ENOMEM)?;
                            holes_punched.push((
                                object.clone(),
                                first,
                                first + (hi - lo) / PAGE_SIZE,
                            ));
                            None
                        }
                        Kind::Object { .. } => Some(Errno::EACCES),
                        Kind::Anon | Kind::Heap => Some(Errno::EINVAL),
                    };
                    if let Some(e) = refusal {
                        refused = Some((v.start.max(addr), e));
                        break;
                    }
                }
                Effect::Hint => {
                    let shared = !v.kind.private();
                    match vm_flags::after(advice, v.flags, anonymous, shared) {
                        Some(Err(e)) => {
                            refused = Some((v.start.max(addr), e));
                            break;
                        }
                        Some(Ok(h)) if h != v.flags => {
                            cuts += usize::from(v.start < addr) + usize::from(v.end > end);
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
            at = v.end;
            if matches!(effect, Effect::GuardInstall | Effect::GuardRemove) {
                parts.try_reserve(1).map_err(|_| Errno::ENOMEM)?;
                parts.push((v.start.max(addr), v.end.min(end), v.start));
            }
            if effect == Effect::Drop {
                add_range(&mut runs, v.start.max(addr), v.end.min(end))?;
            }
        }
        if refused.is_none() && at < end {
            hole = true;
        }
        let refuse_all = self.holes == HolePolicy::Refuse;
        if let Some((_, e)) = refused {
            // MADV_FREE changed nothing before on Linux either.
            if refuse_all || effect == Effect::Free {
                return Err(e);
            }
        } else if hole && refuse_all {
            return Err(Errno::ENOMEM);
        }
        // A split past `vm.max_map_count`: Linux's madvise reports it as
        // `EAGAIN` (after the splits before it; this refuses before any).
        if cuts > 0
            && self.vmas.len() + cuts > self.layout.max_map_count
            && !self.map_count_fits(addr, refused.map_or(end, |(at, _)| at), |v| {
                let anonymous = matches!(v.kind, Kind::Anon | Kind::Heap);
                match vm_flags::after(advice, v.flags, anonymous, !v.kind.private()) {
                    Some(Ok(h)) if h != v.flags => {
                        let mut c = v.clone();
                        c.flags = h;
                        Some(c)
                    }
                    _ => None,
                }
            })
        {
            return Err(Errno::EAGAIN);
        }
        let stop = refused.map_or(end, |(at, _)| at);
        match effect {
            // The mapped parts before the stop, in one step.
            Effect::Drop if !runs.is_empty() => {
                self.space.discard_ranges(&runs).map_err(errno_of)?;
            }
            Effect::Hint => {
                self.room(cuts)?;
                self.rehint(addr, stop, advice);
            }
            Effect::GuardInstall | Effect::GuardRemove => {
                self.guard_parts(&parts, effect == Effect::GuardInstall)?;
            }
            Effect::Remove if !holes_punched.is_empty() => self.punch(&holes_punched)?,
            Effect::Drop
            | Effect::Free
            | Effect::Nothing
            | Effect::Populate { .. }
            | Effect::Remove => {}
        }
        match refused {
            Some((_, e)) => Err(e),
            None if hole => Err(Errno::ENOMEM),
            None => Ok(()),
        }
    }

    /// Punches the holes `holes` (an object and its pages `[lo, hi)` each)
    /// in one core step: every mapping of this process that shows one of
    /// those pages of its object loses it (every page a shared one maps
    /// is the object's, perhaps one the object gave up when another
    /// process punched it; a private one shows the object's frame until
    /// it copies the page), a private mapping's own copies stay, and the
    /// object gives the frames up, so the next access finds a page of
    /// zeros (Linux's hole punch in shmem and its `unmap_mapping_range`).
    /// The other processes of its `fork` family lose the pages of those
    /// objects' frames too, in each mapping that shows one (a private file
    /// mapping's copies stay; best effort: see `Family::drop_frames`).
    fn punch(&self, holes: &[(TryArc<MemObject>, u64, u64)]) -> Result<(), Errno> {
        // Every mapping's part that shows a punched page: its range, the
        // object's page at its start, its hole and whether it is private.
        let mut shown: Vec<(u64, u64, u64, usize, bool)> = Vec::new();
        // The holes by object, so that each mapping looks at its object's.
        let key = |k: &usize| TryArc::as_ptr(&holes[*k].0) as usize;
        let mut by_object: Vec<usize> = Vec::new();
        by_object
            .try_reserve_exact(holes.len())
            .map_err(|_| Errno::ENOMEM)?;
        by_object.extend(0..holes.len());
        by_object.sort_unstable_by_key(key);
        for v in self.vmas.values() {
            let Some(o) = v.object() else { continue };
            let (vlo, vhi) = (v.first, v.first + v.pages());
            let at = TryArc::as_ptr(o) as usize;
            let from = by_object.partition_point(|k| key(k) < at);
            let to = by_object.partition_point(|k| key(k) <= at);
            for &k in &by_object[from..to] {
                let (_, lo, hi) = &holes[k];
                let (a, b) = ((*lo).max(vlo), (*hi).min(vhi));
                if a < b {
                    let at = |i: u64| v.start + (i - v.first) * PAGE_SIZE;
                    shown.try_reserve(1).map_err(|_| Errno::ENOMEM)?;
                    shown.push((at(a), at(b), a, k, v.kind.private()));
                }
            }
        }
        shown.sort_unstable_by_key(|p| p.0);
        let mut ranges: Vec<(VirtAddr, u64)> = Vec::new();
        for &(lo, hi, ..) in &shown {
            add_range(&mut ranges, lo, hi)?;
        }
        // A page of a shared mapping goes; one of a private mapping if it
        // maps its object's frame (not a copy of its own). The object
        // gives its frames up under the same lock.
        let chosen =
            |page: aspace::Page, frame| {
                let va = page.start().as_u64();
                let i = shown.partition_point(|p| p.0 <= va);
                shown[..i].iter().rev().find(|p| va < p.1).is_some_and(
                    |&(lo, _, first, k, private)| {
                        !private || holes[k].0.peek(first + (va - lo) / PAGE_SIZE) == Some(frame)
                    },
                )
            };
        // With other processes of a fork family: room for the frames the
        // holes take out (collected under the step's lock, so that no page
        // faulted in meanwhile is missed), and the objects' ids.
        let mut punched: Vec<aspace::Frame> = Vec::new();
        let mut objects: Vec<usize> = Vec::new();
        if self.family.is_some() {
            let pages: u64 = holes.iter().map(|(_, lo, hi)| hi - lo).sum();
            let room = usize::try_from(pages).map_err(|_| Errno::ENOMEM)?;
            punched.try_reserve_exact(room).map_err(|_| Errno::ENOMEM)?;
            objects
                .try_reserve_exact(holes.len())
                .map_err(|_| Errno::ENOMEM)?;
            objects.extend(holes.iter().map(|(o, ..)| TryArc::as_ptr(o) as usize));
        }
        let frames = self.system.machine().frames();
        let collect = self.family.is_some();
        self.space
            .discard_ranges_where(&ranges, chosen, || {
                for (object, lo, hi) in holes {
                    if collect {
                        let from = punched.len();
                        let all = object.frames_in(*lo, *hi, &mut punched);
                        debug_assert!(all, "room for every page of the holes");
                        // Kept until the other members lost them: no frame
                        // is another page's by then.
                        for &f in &punched[from..] {
                            aspace::FrameAllocator::add_ref(frames, f);
                        }
                    }
                    object.punch(*lo, *hi, frames);
                }
            })
            .map_err(errno_of)?;
        // The other processes' mappings of those objects lose them too.
        if let Some(family) = &self.family {
            punched.sort_unstable();
            family.drop_frames(&self.space, &objects, &punched);
            aspace::FrameAllocator::release_many(frames, &punched);
        }
        Ok(())
    }

    /// Sets the flags `advice` gives (none refuses it) on every mapping's
    /// part in `[lo, hi)`, holes skipped: Linux's `madvise_update_vma`,
    /// mapping by mapping, each looked up again as the one before may have
    /// taken it in.
    fn rehint(&mut self, lo: u64, hi: u64, advice: Advice) {
        let mut at = lo;
        while let Some(v) = self.next_rec(at, hi) {
            let (start, from, to) = (v.start, v.start.max(at), v.end.min(hi));
            let anonymous = matches!(v.kind, Kind::Anon | Kind::Heap);
            if let Some(Ok(h)) = vm_flags::after(advice, v.flags, anonymous, !v.kind.private()) {
                if h != v.flags {
                    self.modify_rec(start, from, to, |v| v.flags = h);
                }
            }
            at = to;
        }
    }

    /// `MADV_GUARD_INSTALL` (`install`) or `MADV_GUARD_REMOVE` over the
    /// mappings' parts `parts` (`(from, to, the mapping's start)`), in one
    /// core step ([`area_replace_many`](AddressSpace::area_replace_many)):
    /// a part put in becomes a guard area (its pages gone, as Linux zaps
    /// them), a guard area taken out an ordinary area of its mapping again
    /// (empty: private pages read as zeros, a file's as the file has them),
    /// merged with its neighbours where the core allows. Guard pages put
    /// in a private anonymous mapping give it its `anon_vma`, as on Linux.
    fn guard_parts(&mut self, parts: &[(u64, u64, u64)], install: bool) -> Result<(), Errno> {
        let mut new: Vec<Replacement<M>> = Vec::new();
        for &(lo, hi, start) in parts {
            let Some(v) = self.vmas.get(start) else {
                continue;
            };
            let flags = Self::area_flags(v)?;
            let mut at = lo;
            while at < hi {
                // Put in: the whole part; taken out: each guard area in it.
                let (to, guard) = if install {
                    (hi, true)
                } else {
                    match self.space.area(VirtAddr::new(at)) {
                        Some(a) => (a.end().as_u64().min(hi), a.backend == GuardBackend::NAME),
                        None => break,
                    }
                };
                if guard {
                    // Reserving like the mapping: now, or once it is
                    // made writable (charged whole then, guard pages too).
                    let charged =
                        Self::reserves(v) > 0 || flags.contains(AreaFlags::RESERVE_ON_WRITE);
                    let backend = if install && charged {
                        self.reserving_guard.clone()
                    } else if install {
                        self.guard.clone()
                    } else {
                        self.backend_from(v, at)?
                    };
                    new.try_reserve(1).map_err(|_| Errno::ENOMEM)?;
                    new.push(Replacement {
                        base: VirtAddr::new(at),
                        size: to - at,
                        flags,
                        attrs: AreaAttrs::empty(),
                        backend,
                    });
                }
                at = to;
            }
        }
        if new.is_empty() {
            return Ok(());
        }
        // Set before the step (a refused one leaves a flag that only
        // costs the lookups it saves).
        self.any_guarded |= install;
        self.space.area_replace_many(&new).map_err(errno_of)?;
        if install {
            for &(lo, _, start) in parts {
                if self
                    .vmas
                    .get(start)
                    .is_some_and(|v| matches!(v.kind, Kind::Anon | Kind::Heap))
                {
                    self.touched(lo, true);
                }
            }
        } else {
            for r in &new {
                let _ = self.space.area_merge(r.base);
            }
        }
        Ok(())
    }

    /// Whether the page at `addr` is a guard page (`MADV_GUARD_INSTALL`).
    pub fn is_guard(&self, addr: u64) -> bool {
        self.any_guarded
            && self
                .space
                .area(VirtAddr::new(addr))
                .is_some_and(|a| a.backend == GuardBackend::NAME)
    }

    /// The first page of `[lo, hi)` (in mapping `v`) that no fault can
    /// fill: past the object's end, or a guard page (Linux's populating
    /// stops there with `EFAULT`).
    fn first_unfillable(&self, v: &Vma, lo: u64, hi: u64) -> Option<u64> {
        // The mapping's first page past its object's end, if in range.
        let past = v.object().and_then(|o| {
            let within = o.pages().saturating_sub(v.first);
            let end = v.start.saturating_add(within.saturating_mul(PAGE_SIZE));
            (end < hi).then_some(end.max(lo))
        });
        self.first_guard(lo, past.unwrap_or(hi)).or(past)
    }

    /// Whether any page of `[lo, hi)` is a guard page.
    fn any_guard(&self, lo: u64, hi: u64) -> bool {
        self.first_guard(lo, hi).is_some()
    }

    /// The first guard page of `[lo, hi)`, by a walk over the core's areas
    /// there (holes skipped by the records).
    fn first_guard(&self, lo: u64, hi: u64) -> Option<u64> {
        if !self.any_guarded {
            return None;
        }
        let mut at = lo;
        while at < hi {
            match self.space.area(VirtAddr::new(at)) {
                Some(a) if a.backend == GuardBackend::NAME => return Some(at),
                Some(a) => at = a.end().as_u64(),
                // A hole: on to the next mapping (whose areas cover it).
                None => match self.vmas.from(at) {
                    Some(v) if v.start < hi => at = v.start,
                    _ => return None,
                },
            }
        }
        None
    }

    /// `MADV_POPULATE_READ`/`_WRITE` over `[lo, hi)` (see
    /// [`madvise`](Self::madvise)): Linux faults the pages in order and
    /// stops at the first it cannot, the ones before staying populated.
    fn populate_advice(&mut self, lo: u64, hi: u64, write: bool) -> Result<(), Errno> {
        let (at, failed) = self.populate_check(lo, hi, write);
        if failed.is_some() && self.holes == HolePolicy::Refuse {
            return Err(failed.unwrap_or(Errno::ENOMEM));
        }
        let access = if write { Access::Write } else { Access::Read };
        let mut page = lo;
        while page < at {
            let Some(v) = self.vma_at(page) else {
                break;
            };
            let to = v.end.min(at);
            if self.fault_in(page, to, access) < to {
                return Err(Errno::ENOMEM);
            }
            page = to;
        }
        failed.map_or(Ok(()), Err)
    }

    /// How far `MADV_POPULATE_*` over `[lo, hi)` gets: the end of the pages
    /// it can fault in, and the error at that point (`None`: all of them).
    fn populate_check(&self, lo: u64, hi: u64, write: bool) -> (u64, Option<Errno>) {
        let mut at = lo;
        while at < hi {
            let Some(v) = self.vma_at(at) else {
                return (at, Some(Errno::ENOMEM));
            };
            if !(if write { v.prot.write() } else { v.prot.read() }) {
                return (at, Some(Errno::EINVAL));
            }
            let to = v.end.min(hi);
            if let Some(page) = self.first_unfillable(v, at, to) {
                return (page, Some(Errno::EFAULT));
            }
            at = to;
        }
        (hi, None)
    }

    /// `mincore(2)`: for each page of `[addr, addr + len)` (`len` rounded
    /// up to pages), whether it is resident, in `vec[i]` (1 or 0), as Linux
    /// 6.18 answers: a page the page table maps is resident; one it does
    /// not map is resident only in a file or shared anonymous mapping whose
    /// object holds it (Linux's page cache), never in private anonymous
    /// memory. Checks in Linux's order: an unaligned address `EINVAL`; a
    /// range that wraps or passes the user space `ENOMEM`; `vec` shorter
    /// than the pages `EFAULT`; then mapping by mapping, a hole `ENOMEM`,
    /// the pages before it answered already (as Linux copies them out).
    /// A length of 0 passes the address checks and answers nothing, mapped
    /// or not. Changes nothing, allocates nothing.
    pub fn mincore(&self, addr: u64, len: u64, vec: &mut [u8]) -> Result<(), Errno> {
        let pages = self.mincore_check(addr, len)?;
        if (vec.len() as u64) < pages {
            return Err(Errno::EFAULT);
        }
        self.mincore_walk(addr, pages, |i, resident| {
            vec[i as usize] = u8::from(resident)
        })
    }

    /// [`mincore`](Self::mincore) with each page's answer handed to
    /// `answer` (its index, whether resident) instead of a vector, which is
    /// not checked.
    pub fn mincore_each(
        &self,
        addr: u64,
        len: u64,
        answer: impl FnMut(u64, bool),
    ) -> Result<(), Errno> {
        let pages = self.mincore_check(addr, len)?;
        self.mincore_walk(addr, pages, answer)
    }

    /// The checks of [`mincore`](Self::mincore) before its vector's: the
    /// number of pages to answer.
    pub fn mincore_check(&self, addr: u64, len: u64) -> Result<u64, Errno> {
        if !aligned(addr) {
            return Err(Errno::EINVAL);
        }
        // Linux's access_ok (6.12 on): the range may end at the top of the
        // user space, not past it, and must not wrap.
        match addr.checked_add(len) {
            Some(end) if end <= self.layout.task_size => {}
            _ => return Err(Errno::ENOMEM),
        }
        Ok(len.div_ceil(PAGE_SIZE))
    }

    /// [`mincore`](Self::mincore) after its checks, each page's answer
    /// handed to `answer` (its index from `addr`, whether resident), in
    /// order: `ENOMEM` at the first hole, the pages before it answered.
    pub fn mincore_walk(
        &self,
        addr: u64,
        pages: u64,
        mut answer: impl FnMut(u64, bool),
    ) -> Result<(), Errno> {
        let mut i = 0;
        while i < pages {
            let at = addr + i * PAGE_SIZE;
            let v = self.vma_at(at).ok_or(Errno::ENOMEM)?;
            let object = match &v.kind {
                Kind::Object { object, .. } => Some(object),
                Kind::Anon | Kind::Heap => None,
            };
            let first = (at - v.start) / PAGE_SIZE;
            let count = ((v.end - at) / PAGE_SIZE).min(pages - i);
            for k in 0..count {
                let page = VirtAddr::new(at + k * PAGE_SIZE).page();
                let mapped = self.space.translate(page).is_some();
                let cached = || object.is_some_and(|o| o.peek(v.first + first + k).is_some());
                answer(i + k, mapped || cached());
            }
            i += count;
        }
        Ok(())
    }

    /// `msync(2)`, as Linux 6.18 checks it: unknown flags, an unaligned
    /// address, or `MS_ASYNC` with `MS_SYNC` `EINVAL`; a length that wraps
    /// `ENOMEM`; `MS_INVALIDATE` over a locked mapping `EBUSY`; holes
    /// `ENOMEM` (at once with `MS_ASYNC` alone, else after the rest).
    /// Nothing to write back: the objects live in memory, so a mapping is
    /// always in sync with its object.
    pub fn msync(&mut self, addr: u64, len: u64, flags: SyncFlags) -> Result<(), Errno> {
        let f = flags.0;
        if f & !(MS_ASYNC | MS_INVALIDATE | MS_SYNC) != 0
            || !aligned(addr)
            || (f & MS_ASYNC != 0 && f & MS_SYNC != 0)
        {
            return Err(Errno::EINVAL);
        }
        // Linux rounds the length with wrapping arithmetic.
        let len = page_align(len);
        let end = addr.wrapping_add(len);
        if end < addr {
            return Err(Errno::ENOMEM);
        }
        let mut at = addr;
        let mut unmapped = false;
        while at < end {
            let Some(v) = self.first_ending_above(at) else {
                return Err(Errno::ENOMEM);
            };
            if at < v.start {
                if f == MS_ASYNC || v.start >= end {
                    return Err(Errno::ENOMEM);
                }
                unmapped = true;
            }
            if f & MS_INVALIDATE != 0 && v.flags.contains(VmFlags::LOCKED) {
                return Err(Errno::EBUSY);
            }
            at = v.end;
        }
        if unmapped {
            Err(Errno::ENOMEM)
        } else {
            Ok(())
        }
    }

    /// `mlock2(2)` (`mlock` with no flag): the range is `[addr rounded down,
    /// addr + len rounded up)`. Unknown flags `EINVAL`; a hole at its start
    /// `ENOMEM` with nothing changed, a later one `ENOMEM` after the
    /// mappings before it are locked (or nothing changed with
    /// [`HolePolicy::Refuse`]). The mappings get `VM_LOCKED` (and
    /// `VM_LOCKONFAULT` with `MLOCK_ONFAULT`), splitting and merging as
    /// Linux does; without `MLOCK_ONFAULT` their pages are then faulted in
    /// (written where a private mapping is writable, breaking
    /// copy-on-write), and a page that cannot be (no access right, past its
    /// object's end) is `ENOMEM`. With an `RLIMIT_MEMLOCK` set
    /// ([`set_memlock_limit`](Self::set_memlock_limit)): 0 `EPERM`, more
    /// pages locked than it `ENOMEM`, with nothing changed.
    pub fn mlock(&mut self, addr: u64, len: u64, flags: LockFlags) -> Result<(), Errno> {
        if flags.0 & !MLOCK_ONFAULT != 0 {
            return Err(Errno::EINVAL);
        }
        let lock = if flags.0 & MLOCK_ONFAULT != 0 {
            VmFlags::LOCKED | VmFlags::LOCKONFAULT
        } else {
            VmFlags::LOCKED
        };
        self.may_lock()?;
        // RLIMIT_MEMLOCK, as do_mlock, before the range is checked (a
        // wrapping length is this ENOMEM under a limit): the range's pages
        // and those locked already, less the ones in the range that are.
        if let Some(limit) = self.memlock_pages() {
            let (start, len) = Self::lock_span(addr, len);
            let mut locked = (len / PAGE_SIZE).saturating_add(self.locked_pages());
            if locked > limit && start.checked_add(len).is_some() {
                locked -= self.locked_in(start, start + len);
            }
            if locked > limit {
                return Err(Errno::ENOMEM);
            }
        }
        let (start, end) = Self::lock_range(addr, len)?;
        self.apply_lock(start, end, lock)?;
        // Linux's __mlock_posix_error_return: a page that cannot be faulted
        // in is ENOMEM, memory running out EAGAIN.
        self.populate_vmas(start, end, false).map_err(|e| match e {
            Errno::EFAULT => Errno::ENOMEM,
            _ => Errno::EAGAIN,
        })
    }

    /// `munlock(2)`: the range as [`mlock`](Self::mlock) takes it loses
    /// `VM_LOCKED` and `VM_LOCKONFAULT`, with the same refusals.
    pub fn munlock(&mut self, addr: u64, len: u64) -> Result<(), Errno> {
        let (start, end) = Self::lock_range(addr, len)?;
        self.apply_lock(start, end, VmFlags::NONE)
    }

    /// `mlockall(2)`: flags 0, unknown bits or `MCL_ONFAULT` alone
    /// `EINVAL`. `MCL_FUTURE` makes every later mapping (and the break's
    /// growth) locked (with `VM_LOCKONFAULT` given `MCL_ONFAULT`), or stops
    /// that without it; `MCL_CURRENT` locks every mapping now and faults
    /// their pages in (errors ignored, as Linux's `mm_populate`). With an
    /// `RLIMIT_MEMLOCK` of 0 `EPERM`; `MCL_CURRENT` with more pages mapped
    /// than the limit `ENOMEM`.
    pub fn mlockall(&mut self, flags: LockAllFlags) -> Result<(), Errno> {
        let f = flags.0;
        if f == 0 || f & !(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) != 0 || f == MCL_ONFAULT {
            return Err(Errno::EINVAL);
        }
        self.may_lock()?;
        // Linux's check: everything mapped (`total_vm`) within the limit.
        if let (Some(limit), true) = (self.memlock_pages(), f & MCL_CURRENT != 0) {
            let total: u64 = self
                .vmas
                .values()
                .map(|v| (v.end - v.start) / PAGE_SIZE)
                .sum();
            if total > limit {
                return Err(Errno::ENOMEM);
            }
        }
        let lock = match f & MCL_ONFAULT {
            0 => VmFlags::LOCKED,
            _ => VmFlags::LOCKED | VmFlags::LOCKONFAULT,
        };
        self.def_lock = if f & MCL_FUTURE != 0 {
            lock
        } else {
            VmFlags::NONE
        };
        self.any_locked = true;
        if f & MCL_CURRENT != 0 {
            self.relock_all(lock);
            let _ = self.populate_vmas(0, u64::MAX, true);
        }
        Ok(())
    }

    /// `munlockall(2)`: every mapping unlocked, and later ones are not
    /// locked any more.
    pub fn munlockall(&mut self) -> Result<(), Errno> {
        self.def_lock = VmFlags::NONE;
        self.relock_all(VmFlags::NONE);
        Ok(())
    }

    /// Gives every mapping the lock flags `lock`, merging as Linux does.
    fn relock_all(&mut self, lock: VmFlags) {
        let mut at = 0;
        while let Some(v) = self.first_ending_above(at) {
            let (s, e) = (v.start, v.end);
            let new = (v.flags - VmFlags::LOCK_MASK) | lock;
            if new != v.flags {
                self.modify_rec(s, s, e, |r| r.flags = new);
            }
            at = self.vma_at(s).map_or(e, |v| v.end).max(e);
        }
    }

    /// The pages `mlock(addr, len)` covers: `addr`'s page up to `addr +
    /// len` rounded up, in Linux's wrapping arithmetic; `EINVAL` if the end
    /// wraps past the top.
    fn lock_range(addr: u64, len: u64) -> Result<(u64, u64), Errno> {
        let (start, len) = Self::lock_span(addr, len);
        let end = start.wrapping_add(len);
        if end < start {
            return Err(Errno::EINVAL);
        }
        Ok((start, end))
    }

    /// `addr`'s page and the length from it rounded up to pages, in
    /// Linux's wrapping arithmetic (`do_mlock`'s `start` and `len`).
    fn lock_span(addr: u64, len: u64) -> (u64, u64) {
        let len = len
            .wrapping_add(addr & (PAGE_SIZE - 1))
            .wrapping_add(PAGE_SIZE - 1)
            & !(PAGE_SIZE - 1);
        (addr & !(PAGE_SIZE - 1), len)
    }

    /// Gives every mapping's part in `[start, end)` the lock flags `lock`
    /// (Linux's `apply_vma_lock_flags`): a hole `ENOMEM`, the parts before
    /// it changed unless [`HolePolicy::Refuse`].
    fn apply_lock(&mut self, start: u64, end: u64, lock: VmFlags) -> Result<(), Errno> {
        if start == end {
            return Ok(());
        }
        self.any_locked |= !lock.is_empty();
        // The splits it makes, counted against `vm.max_map_count` before
        // any change (Linux checks at each split, after the ones before);
        // with HolePolicy::Refuse, a hole anywhere refuses it too.
        let (mut at, mut cuts) = (start, 0);
        while at < end {
            let Some(v) = self.vma_at(at) else {
                if self.holes == HolePolicy::Refuse {
                    return Err(Errno::ENOMEM);
                }
                break;
            };
            if Self::lock_flags(v.flags, lock) != v.flags {
                cuts += usize::from(v.start < at) + usize::from(v.end > end);
            }
            at = v.end;
        }
        // (Up to a hole: what lies past it is not changed.)
        if cuts > 0
            && self.vmas.len() + cuts > self.layout.max_map_count
            && !self.map_count_fits(start, at.min(end), |v| {
                let flags = Self::lock_flags(v.flags, lock);
                (flags != v.flags).then(|| {
                    let mut c = v.clone();
                    c.flags = flags;
                    c
                })
            })
        {
            return Err(Errno::ENOMEM);
        }
        self.room(cuts)?;
        let mut at = start;
        while at < end {
            let v = self.vma_at(at).ok_or(Errno::ENOMEM)?;
            let (s, to) = (v.start, v.end.min(end));
            let new = Self::lock_flags(v.flags, lock);
            if new != v.flags {
                self.modify_rec(s, at, to, |r| r.flags = new);
            }
            // Past the record now holding `at` (it may have merged on).
            at = self.vma_at(at).map_or(to, |v| v.end).max(to);
        }
        Ok(())
    }

    /// A mapping's flags after `mlock`'s `lock` (Linux's `mlock_fixup`): a
    /// droppable mapping is never locked (nor cut).
    fn lock_flags(flags: VmFlags, lock: VmFlags) -> VmFlags {
        if flags.contains(VmFlags::DROPPABLE) {
            flags
        } else {
            (flags - VmFlags::LOCK_MASK) | lock
        }
    }

    /// Linux's `__mm_populate` over `[lo, hi)`: each mapping's pages but
    /// `VM_LOCKONFAULT` ones faulted in, a private writable mapping written,
    /// others read; a mapping that cannot be stops it, with `EFAULT` (no
    /// access right, a page past its object's end, a guard page) or
    /// `ENOMEM` (no memory),
    /// or with `ignore_errors` (`mm_populate`) is left for the next.
    fn populate_vmas(&mut self, lo: u64, hi: u64, ignore_errors: bool) -> Result<(), Errno> {
        let mut at = lo;
        while at < hi {
            let Some(v) = self.first_ending_above(at).filter(|v| v.start < hi) else {
                return Ok(());
            };
            let (from, to) = (v.start.max(at), v.end.min(hi));
            at = to;
            if v.flags.contains(VmFlags::LOCKONFAULT) {
                continue;
            }
            let write = v.prot.write() && v.kind.private();
            let access = if write {
                Access::Write
            } else if v.prot.read() || v.prot.write() {
                Access::Read
            } else if v.prot.exec() {
                Access::Exec
            } else if ignore_errors {
                continue;
            } else {
                return Err(Errno::EFAULT);
            };
            let past = self.first_unfillable(v, from, to);
            let until = past.unwrap_or(to);
            let short = self.fault_in(from, until, access) < until;
            if !ignore_errors && (short || past.is_some()) {
                return Err(if short { Errno::ENOMEM } else { Errno::EFAULT });
            }
        }
        Ok(())
    }

    /// Faults in `[lo, hi)` (one mapping's) page by page with `access` (a
    /// private file page lent on a write fault is copied by a second one,
    /// as Linux's write faults do), stopping at the first page the core
    /// refuses; returns where it stopped (`hi` if it did them all). A
    /// private mapping written hears of it ([`touched`](Self::touched)).
    fn fault_in(&mut self, lo: u64, hi: u64, access: Access) -> u64 {
        let cow = access == Access::Write
            && self
                .vma_at(lo)
                .is_some_and(|v| Self::copy_on_write(&v.kind));
        // A page mapped with the access already needs no fault (one would
        // find it mapped and drop this CPU's TLB entry for nothing).
        let fault = |space: &SpaceRef<M>, va: VirtAddr| {
            let mapped = space.translate(va.page());
            mapped.is_some_and(|(_, f)| f.permits(access))
                || space.page_fault(va, access, FaultContext::User) == FaultOutcome::Ok
        };
        let mut page = lo;
        while page < hi {
            let va = VirtAddr::new(page);
            if !fault(&self.space, va) || (cow && !fault(&self.space, va)) {
                break;
            }
            page += PAGE_SIZE;
        }
        if page > lo {
            self.touched(lo, access == Access::Write);
        }
        page
    }

    /// The first mapping ending above `at` (Linux's `find_vma`).
    fn first_ending_above(&self, at: u64) -> Option<&Vma> {
        self.vmas
            .at_or_below(at)
            .filter(|v| v.end > at)
            .or_else(|| self.vmas.from(at))
    }

    // ---- observing ----

    /// The maps as Linux prints them (`/proc/PID/maps`): one line per
    /// mapping; objects are named by their numbers as inodes on device
    /// `00:01`.
    pub fn maps(&self) -> Vec<MapsLine> {
        self.vmas
            .values()
            .map(|v| v.key().to_line(v.object().map_or(0, |o| o.id())))
            .collect()
    }

    /// Whether the page at address `page` of mapping `v` lies past its object's end (an
    /// access there is `SIGBUS` on Linux).
    pub fn past_end(v: &Vma, page: u64) -> bool {
        v.object()
            .is_some_and(|o| v.first + (page - v.start) / PAGE_SIZE >= o.pages())
    }
}

impl<M: Machine> Drop for LinuxMm<M> {
    fn drop(&mut self) {
        let (frames, reserve) = (self.system.machine().frames(), self.system.reserve());
        for v in self.vmas.values() {
            let _ = self
                .space
                .unmap_range(VirtAddr::new(v.start), v.end - v.start);
        }
        // Each object held once: let go (the last holder gives its frames
        // back). Without room for the list, each one's first record (or
        // file entry) is found by looking back.
        match self.held_objects(|_| true) {
            Some(held) => {
                for o in held {
                    o.let_go(frames, reserve);
                }
            }
            None => {
                let all = || {
                    self.vmas
                        .values()
                        .filter_map(Vma::object)
                        .chain(self.files.iter())
                };
                for (i, o) in all().enumerate() {
                    if !all().take(i).any(|p| TryArc::ptr_eq(p, o)) {
                        o.let_go(frames, reserve);
                    }
                }
            }
        }
        self.vmas = Records::new();
        self.files.clear();
    }
}
