//! Randomised model-based test: random sequences of address-space operations
//! and user-mode accesses run on a simulated 2-CPU machine and, side by side,
//! on a plain reference model (areas in a `BTreeMap`, the contents of every
//! area or group of shared areas as a map of pages, which CPU runs which
//! space). Every result must match the model exactly, and after every step
//! the structural invariants of the subsystem are checked: areas, share
//! records, used space == page table, which frame each mapping uses and how
//! many references it has, frame accounting, ASIDs, TLB coherence, no stale
//! TLB access, and the contents of every mapped frame. At the end of each
//! case everything is torn down and must leave no frame and no ASID behind.
//!
//! Operations: area create (also refused ones), resize, destroy,
//! change_flags, share (`area_share` between the 3 spaces and within one,
//! also refused ones), CPU switches, replacing a space, 8-byte reads and
//! writes and 1-byte fetches through a CPU, and `copy_from_user` /
//! `copy_to_user` both through a CPU (simulated MMU, DEFER path) and through
//! the core (`AddressSpace::copy_*_user`, no CPU), including ranges crossing
//! pages and area ends, NULL, kernel, non-canonical and wrapping addresses.
//!
//! Knobs (environment variables):
//! - `ASPACE_MODEL_CASES`: number of cases (default 256),
//! - `ASPACE_MODEL_STEPS`: maximum operations per case (default 60),
//! - `ASPACE_MODEL_SEED`: RNG seed (default fixed, so runs are reproducible).
//!
//! On failure proptest shrinks the case and the test panics with the minimal
//! operation list, one operation per line, followed by a replay of it that
//! shows every step resolved against the state (addresses, CPU, result).
//! A passing run prints (with `--nocapture`) how often each outcome occurred;
//! with the default amount of work it also asserts that every interesting
//! outcome occurred at least once, so the generator cannot silently go blind.

use aspace::TryArc;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use aspace::Placement;
use aspace::{
    Access, AreaAttrs, AreaFlags, Asid, CpuSet, Error, FaultReason, Page, PageFlags, PhysMemory,
    StatsSnapshot, VirtAddr, PAGE_SIZE,
};
use aspace_sim::{AccessFault, Arch, Cpu, Sim, SimConfig, Space, SpaceHandle};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{
    Config as ProptestConfig, RngSeed, TestCaseError, TestError, TestRunner,
};

const CPUS: usize = 2;
const SPACES: usize = 3;
/// Slots `0..SLOTS-1` form a grid of area bases; the last slot sits at the
/// very top of user space.
const SLOTS: usize = 5;
const TOP_SLOT: usize = SLOTS - 1;
/// Distance between two grid slots, and the largest area created on one.
const SLOT_PAGES: u64 = 64;
/// How far resizes and accesses reach from a slot base (into the next slot).
const REACH_PAGES: u64 = 80;
/// Base of slot 0; the grid straddles the 2 MiB boundary at 0x1000_0000, so
/// its areas use two leaf page tables.
const GRID_BASE: u64 = 0x0ff8_0000;
const GRID_END: u64 = GRID_BASE + ((TOP_SLOT as u64) * SLOT_PAGES + REACH_PAGES) * PAGE_SIZE;

thread_local! {
    /// The architecture the current run simulates.
    static ARCH: Cell<Arch> = const { Cell::new(Arch::X86_64) };
}

/// The architecture of the current run.
fn arch() -> Arch {
    ARCH.with(Cell::get)
}

/// One past the highest user address of the current architecture.
fn user_end() -> u64 {
    arch().layout().user_end
}

/// The base of the top slot: the last pages of user space.
fn top_base() -> u64 {
    user_end() - SLOT_PAGES * PAGE_SIZE
}

/// The lowest kernel address of the current architecture.
fn kernel_base() -> u64 {
    arch().layout().kernel_start
}

/// Whether the architecture's page tables can deny loads of a mapped page
/// (all but x86_64): then execute-only areas are generated too.
fn exact_reads() -> bool {
    arch() != Arch::X86_64
}
/// Longest generated copy (3 pages, so a copy can span 4).
const MAX_COPY: u64 = 3 * PAGE_SIZE;

fn slot_base(slot: usize) -> u64 {
    if slot == TOP_SLOT {
        top_base()
    } else {
        GRID_BASE + slot as u64 * SLOT_PAGES * PAGE_SIZE
    }
}

/// Every page the invariant check scans in each space: the NULL page, the
/// whole grid region, the top slot.
fn scanned_pages() -> impl Iterator<Item = u64> {
    std::iter::once(0)
        .chain(GRID_BASE / PAGE_SIZE..GRID_END / PAGE_SIZE)
        .chain(top_base() / PAGE_SIZE..user_end() / PAGE_SIZE)
}

const R: AreaFlags = AreaFlags::READ;
const RW: AreaFlags = AreaFlags::READ.union(AreaFlags::WRITE);
const RX: AreaFlags = AreaFlags::READ.union(AreaFlags::EXEC);
const WX: AreaFlags = AreaFlags::WRITE.union(AreaFlags::EXEC);

/// The bytes a `copy_to_user` of `len` bytes with `fill` stores: varied, so
/// that a byte landing at the wrong offset shows.
fn pattern(fill: u8, len: u64) -> Vec<u8> {
    (0..len)
        .map(|i| fill.wrapping_add((i as u8).wrapping_mul(7)) ^ ((i >> 8) as u8))
        .collect()
}

// ---------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------

/// A `u64` shown in hex.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Hex(u64);

impl fmt::Debug for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// Area flags shown as `rw-`, `r-x+c` (cacheable), `rw-+late` (late
/// reserve) and so on.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Fl(AreaFlags);

impl fmt::Debug for Fl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = |flag, c| if self.0.contains(flag) { c } else { '-' };
        write!(
            f,
            "{}{}{}{}{}",
            g(AreaFlags::READ, 'r'),
            g(AreaFlags::WRITE, 'w'),
            g(AreaFlags::EXEC, 'x'),
            if self.0.contains(AreaFlags::CACHEABLE) {
                "+c"
            } else {
                ""
            },
            if self.0.contains(AreaFlags::LATE_RESERVE) {
                "+late"
            } else {
                ""
            }
        )
    }
}

/// Which refusal a raw `area_create` aims at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bad {
    /// Off the grid inside a slot: overlaps or not, depending on the state.
    Overlap,
    Unaligned,
    ZeroSize,
    WriteExec,
    NullPage,
    Kernel,
    Wrapping,
    PastUserEnd,
}

impl Bad {
    /// The error the operation must get regardless of the state.
    fn expected(self) -> Option<Error> {
        match self {
            Bad::Overlap => None,
            Bad::Unaligned | Bad::ZeroSize | Bad::WriteExec | Bad::Wrapping => {
                Some(Error::InvalidArgument)
            }
            Bad::NullPage | Bad::Kernel | Bad::PastUserEnd => Some(Error::AddressNotAvailable),
        }
    }
}

/// Where an operation aims: a grid slot's base, the k-th area of the space
/// (modulo the number of areas; the slot `k % SLOTS` when there is none), or
/// exactly the address of the space's last successful write or of a byte
/// whose data was last cut away (slot 0 when none), or the byte that the
/// last store through any area reached, as seen in an area of this space
/// sharing it, so that operations mostly find something to work on and
/// reads meet earlier writes, also through other sharers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum At {
    Slot(usize),
    Area(usize),
    LastWrite,
    /// A byte whose data a shrink or destroy removed most recently.
    LastCut,
    /// The byte of the last store into a shared group (in any space,
    /// through any area) or of data a share just made visible, in an area
    /// of this space of that group (as `LastWrite` when there is none).
    Peer,
    /// The page just below an area (its guard page, if it has one): where
    /// a stack that grows downwards grows.
    Below(usize),
}

impl fmt::Debug for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Slot(s) => write!(f, "slot{s}"),
            At::Area(k) => write!(f, "area#{k}"),
            At::LastWrite => write!(f, "last_write"),
            At::LastCut => write!(f, "last_cut"),
            At::Peer => write!(f, "peer"),
            At::Below(k) => write!(f, "below_area#{k}"),
        }
    }
}

/// The size an `area_share` names, relative to the source area's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ShareSize {
    Exact,
    PageLess,
    PageMore,
    ByteLess,
}

/// The rights an `area_share` asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mask {
    /// The source area's rights (without `CACHEABLE`, which is inherited).
    Same,
    /// Fixed rights, possibly ones the source lacks (or write+exec).
    Fixed(Fl),
}

impl fmt::Debug for Mask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mask::Same => write!(f, "same"),
            Mask::Fixed(fl) => write!(f, "{fl:?}"),
        }
    }
}

/// Where an `area_share` puts the destination area.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dst {
    Slot(usize),
    /// The base of the k-th area of the destination space (taken).
    Area(usize),
    /// The page of the destination space's last byte cut away.
    LastCut,
    /// A slot base plus an unaligned offset.
    Unaligned(usize, u64),
    Null,
    Kernel,
    /// The last user page.
    LastPage,
}

impl fmt::Debug for Dst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dst::Slot(s) => write!(f, "slot{s}"),
            Dst::Area(k) => write!(f, "area#{k}"),
            Dst::LastCut => write!(f, "last_cut"),
            Dst::Unaligned(s, o) => write!(f, "slot{s}+{o:#x}"),
            Dst::Null => write!(f, "NULL"),
            Dst::Kernel => write!(f, "kernel"),
            Dst::LastPage => write!(f, "last_page"),
        }
    }
}

/// Who performs a `copy_*_user`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    /// A CPU running the space (switched to it if none does): the copy goes
    /// through its TLB and the simulated MMU, faults take the DEFER path.
    Cpu(usize),
    /// The core, through the page table, on any space.
    Core,
}

impl fmt::Debug for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Via::Cpu(c) => write!(f, "cpu{c}"),
            Via::Core => write!(f, "core"),
        }
    }
}

/// Which kind of raw address a `copy_*_user` uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RawAddr {
    Null,
    Kernel,
    NonCanonical,
    /// Starting just below the end of user space, mostly crossing it.
    UserEnd,
    /// Near `u64::MAX`, so that `addr + len` wraps.
    Wrapping,
}

#[derive(Clone, PartialEq, Eq)]
enum Op {
    /// `area_create(base, pages * PAGE_SIZE, flags)` with `base` a slot's
    /// base or (`At::LastCut`) the page of the last byte cut away; on the
    /// top slot the area ends at the end of user space instead.
    Create {
        space: usize,
        at: At,
        pages: u64,
        flags: Fl,
    },
    /// `area_create_anywhere`: the lowest base at or above the target's
    /// address (a slot, the last cut), or (`top_down`) the highest whose
    /// area ends at or below it.
    CreateAnywhere {
        space: usize,
        at: At,
        pages: u64,
        flags: Fl,
        top_down: bool,
    },
    /// `area_create` with raw arguments, mostly refused.
    CreateRaw {
        kind: Bad,
        space: usize,
        base: Hex,
        size: Hex,
        flags: Fl,
    },
    /// `area_resize(target + at_page pages, size)` (inside the area for an
    /// `At::Area` target).
    Resize {
        space: usize,
        at: At,
        at_page: u64,
        size: Hex,
    },
    /// `area_destroy(target + at_page pages)`.
    Destroy {
        space: usize,
        at: At,
        at_page: u64,
    },
    /// `area_change_flags(target, flags)`.
    ChangeFlags {
        space: usize,
        at: At,
        flags: Fl,
    },
    Switch {
        cpu: usize,
        space: usize,
    },
    Idle {
        cpu: usize,
    },
    /// Drops the space (a CPU running it keeps it alive) and puts a new,
    /// empty one in its place.
    Recreate {
        space: usize,
    },
    /// `write_u64` at `target + page pages + offset` (for an `At::Area`
    /// target, `page` is taken modulo the area's pages + 1) through a CPU
    /// running `space` (`cpu` is switched to it if none does).
    Write {
        space: usize,
        cpu: usize,
        at: At,
        page: u64,
        offset: u64,
        value: Hex,
    },
    /// `read_u64`, addressed as for `Write`.
    Read {
        space: usize,
        cpu: usize,
        at: At,
        page: u64,
        offset: u64,
    },
    /// `fetch` (one byte, execute access), addressed as for `Write`.
    Fetch {
        space: usize,
        cpu: usize,
        at: At,
        page: u64,
        offset: u64,
    },
    /// An 8-byte read or write at a raw address (NULL page, kernel,
    /// non-canonical).
    AccessRaw {
        space: usize,
        cpu: usize,
        addr: Hex,
        write: bool,
    },
    /// `src.area_share(target, size, dst, base, mask)`.
    Share {
        src: usize,
        at: At,
        dst: usize,
        to: Dst,
        size: ShareSize,
        mask: Mask,
    },
    /// `copy_to_user` (of `pattern(fill, len)`) or `copy_from_user` of `len`
    /// bytes at an address found as for `Write`.
    Copy {
        space: usize,
        via: Via,
        to_user: bool,
        at: At,
        page: u64,
        offset: u64,
        len: u64,
        fill: u8,
    },
    /// A copy at a raw address.
    CopyRaw {
        kind: RawAddr,
        space: usize,
        via: Via,
        to_user: bool,
        addr: Hex,
        len: u64,
    },
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Op::Create {
                space,
                at,
                pages,
                flags,
            } => write!(f, "s{space}.create({at:?}, {pages}p, {flags:?})"),
            Op::CreateAnywhere {
                space,
                at,
                pages,
                flags,
                top_down,
            } => write!(
                f,
                "s{space}.create_anywhere({}{at:?}, {pages}p, {flags:?})",
                if top_down { "below " } else { "above " }
            ),
            Op::CreateRaw {
                kind,
                space,
                base,
                size,
                flags,
            } => write!(
                f,
                "s{space}.create_raw({kind:?}: base {base:?}, size {size:?}, {flags:?})"
            ),
            Op::Resize {
                space,
                at,
                at_page,
                size,
            } => write!(f, "s{space}.resize({at:?}+{at_page}p, size {size:?})"),
            Op::Destroy { space, at, at_page } => write!(f, "s{space}.destroy({at:?}+{at_page}p)"),
            Op::ChangeFlags { space, at, flags } => {
                write!(f, "s{space}.change_flags({at:?}, {flags:?})")
            }
            Op::Switch { cpu, space } => write!(f, "cpu{cpu}.switch_to(s{space})"),
            Op::Idle { cpu } => write!(f, "cpu{cpu}.idle()"),
            Op::Recreate { space } => write!(f, "recreate(s{space})"),
            Op::Write {
                space,
                cpu,
                at,
                page,
                offset,
                value,
            } => write!(
                f,
                "s{space}@cpu{cpu}.write_u64({at:?}+{page}p+{offset:#x}, {value:?})"
            ),
            Op::Read {
                space,
                cpu,
                at,
                page,
                offset,
            } => write!(f, "s{space}@cpu{cpu}.read_u64({at:?}+{page}p+{offset:#x})"),
            Op::Fetch {
                space,
                cpu,
                at,
                page,
                offset,
            } => write!(f, "s{space}@cpu{cpu}.fetch({at:?}+{page}p+{offset:#x})"),
            Op::AccessRaw {
                space,
                cpu,
                addr,
                write,
            } => write!(
                f,
                "s{space}@cpu{cpu}.{}({addr:?})",
                if write { "write_u64" } else { "read_u64" }
            ),
            Op::Share {
                src,
                at,
                dst,
                to,
                size,
                mask,
            } => write!(
                f,
                "s{src}.share({at:?}, size {size:?}, s{dst} at {to:?}, mask {mask:?})"
            ),
            Op::Copy {
                space,
                via,
                to_user,
                at,
                page,
                offset,
                len,
                fill,
            } => {
                if to_user {
                    write!(
                        f,
                        "s{space}@{via:?}.copy_to_user({at:?}+{page}p+{offset:#x}, \
                         {len:#x} bytes, fill {fill:#x})"
                    )
                } else {
                    write!(
                        f,
                        "s{space}@{via:?}.copy_from_user({at:?}+{page}p+{offset:#x}, \
                         {len:#x} bytes)"
                    )
                }
            }
            Op::CopyRaw {
                kind,
                space,
                via,
                to_user,
                addr,
                len,
            } => write!(
                f,
                "s{space}@{via:?}.copy_{}_user({kind:?}: {addr:?}, {len:#x} bytes)",
                if to_user { "to" } else { "from" }
            ),
        }
    }
}

/// One generated case: machine parameters and the operations.
#[derive(Clone)]
struct Case {
    /// User ASIDs: fewer than the address spaces (2) makes switches steal
    /// them; 3 makes stealing rare (only replaced spaces compete).
    asids: u16,
    tlb_entries: usize,
    /// Tear down by dropping the spaces first (CPUs keep the ones they run)
    /// rather than the CPUs first.
    spaces_first: bool,
    /// The commit limit in pages (`None`: the system's default, the free
    /// frames).
    commit_limit: Option<u64>,
    ops: Vec<Op>,
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Case {{ cpus: {CPUS}, asids: {}, spaces: {SPACES}, tlb_entries: {}, \
             teardown: {} first, commit limit {:?}, {} ops:",
            self.asids,
            self.tlb_entries,
            if self.spaces_first { "spaces" } else { "cpus" },
            self.commit_limit,
            self.ops.len()
        )?;
        for (i, op) in self.ops.iter().enumerate() {
            writeln!(f, "  [{i:3}] {op:?}")?;
        }
        write!(f, "}}")
    }
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

fn flags() -> impl Strategy<Value = Fl> {
    (
        prop_oneof![2 => Just(R), 5 => Just(RW), 1 => Just(RX)],
        any::<bool>(),
        prop::bool::weighted(0.2),
        0..10u8,
    )
        .prop_map(|(f, c, late, roll)| {
            // Execute-only where the page table can deny loads.
            let f = if roll == 0 && exact_reads() {
                AreaFlags::EXEC
            } else {
                f
            };
            let f = if c { f | AreaFlags::CACHEABLE } else { f };
            Fl(if late { f | AreaFlags::LATE_RESERVE } else { f })
        })
}

/// Rights for a new area, now and then with a guard page or growing down.
fn create_flags() -> impl Strategy<Value = Fl> {
    (flags(), prop_oneof![6 => Just(AreaFlags::empty()), 1 => Just(AreaFlags::GUARD), 2 => Just(AreaFlags::GROWS_DOWN)])
        .prop_map(|(f, p)| Fl(f.0 | p))
}

fn area_pages() -> impl Strategy<Value = u64> {
    prop_oneof![2 => 1..=8u64, 1 => 1..=SLOT_PAGES]
}

/// A page index relative to the target, mostly low so that reads meet
/// earlier writes.
fn access_page() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0..4u64, 1 => 0..REACH_PAGES]
}

/// A byte offset inside a page: mostly a few fixed ones (so that reads meet
/// earlier writes, also partly), often near the end so that 8-byte accesses
/// cross into the next page.
fn access_offset() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => prop::sample::select(vec![0, 4, 8, 0x800]),
        2 => prop::sample::select(vec![PAGE_SIZE - 8, PAGE_SIZE - 4, PAGE_SIZE - 1]),
        1 => 0..PAGE_SIZE,
    ]
}

fn resize_size() -> impl Strategy<Value = Hex> {
    prop_oneof![
        6 => (0..=4u64).prop_map(|p| p * PAGE_SIZE),
        4 => (0..=REACH_PAGES).prop_map(|p| p * PAGE_SIZE),
        3 => 0..=REACH_PAGES * PAGE_SIZE,
        1 => Just(u64::MAX),
        1 => Just(user_end()),
    ]
    .prop_map(Hex)
}

fn bad_create() -> impl Strategy<Value = Op> {
    let sp = 0..SPACES;
    let raw = |kind, space, base: u64, size: u64, flags| Op::CreateRaw {
        kind,
        space,
        base: Hex(base),
        size: Hex(size),
        flags,
    };
    prop_oneof![
        3 => (sp.clone(), 0..SLOTS, 1..SLOT_PAGES, area_pages(), flags()).prop_map(
            move |(s, slot, off, p, fl)| raw(
                Bad::Overlap,
                s,
                slot_base(slot) + off * PAGE_SIZE,
                p * PAGE_SIZE,
                fl
            )
        ),
        1 => (sp.clone(), 0..SLOTS, 1..PAGE_SIZE, 1..=8u64, flags()).prop_map(
            move |(s, slot, off, p, fl)| raw(
                Bad::Unaligned,
                s,
                slot_base(slot) + off,
                p * PAGE_SIZE,
                fl
            )
        ),
        1 => (sp.clone(), 0..SLOTS, flags())
            .prop_map(move |(s, slot, fl)| raw(Bad::ZeroSize, s, slot_base(slot), 0, fl)),
        1 => (sp.clone(), 0..SLOTS, 1..=8u64, any::<bool>()).prop_map(move |(s, slot, p, r)| {
            let wx = AreaFlags::WRITE | AreaFlags::EXEC;
            let fl = Fl(if r { wx | AreaFlags::READ } else { wx });
            raw(Bad::WriteExec, s, slot_base(slot), p * PAGE_SIZE, fl)
        }),
        1 => (sp.clone(), 1..=4u64, flags())
            .prop_map(move |(s, p, fl)| raw(Bad::NullPage, s, 0, p * PAGE_SIZE, fl)),
        1 => (sp.clone(), 1..=4u64, flags())
            .prop_map(move |(s, p, fl)| raw(Bad::Kernel, s, kernel_base(), p * PAGE_SIZE, fl)),
        1 => (sp.clone(), 0..SLOTS, 0..PAGE_SIZE, flags()).prop_map(move |(s, slot, k, fl)| raw(
            Bad::Wrapping,
            s,
            slot_base(slot),
            u64::MAX - k,
            fl
        )),
        1 => (sp, 2..=8u64, flags()).prop_map(move |(s, p, fl)| raw(
            Bad::PastUserEnd,
            s,
            user_end() - PAGE_SIZE,
            p * PAGE_SIZE,
            fl
        )),
    ]
}

fn via() -> impl Strategy<Value = Via> {
    prop_oneof![(0..CPUS).prop_map(Via::Cpu), Just(Via::Core)]
}

/// Copy lengths: empty, short, about a page (crossing into the next one
/// from most offsets), up to `MAX_COPY`.
fn copy_len() -> impl Strategy<Value = u64> {
    prop_oneof![
        1 => Just(0u64),
        4 => 1..=16u64,
        3 => PAGE_SIZE - 16..=PAGE_SIZE + 16,
        2 => 1..=MAX_COPY,
    ]
}

fn share_dst() -> impl Strategy<Value = Dst> {
    prop_oneof![
        12 => (0..SLOTS).prop_map(Dst::Slot),
        2 => (0..4usize).prop_map(Dst::Area),
        1 => Just(Dst::LastCut),
        1 => (0..SLOTS, 1..PAGE_SIZE).prop_map(|(s, o)| Dst::Unaligned(s, o)),
        1 => Just(Dst::Null),
        1 => Just(Dst::Kernel),
        1 => Just(Dst::LastPage),
    ]
}

fn share_size() -> impl Strategy<Value = ShareSize> {
    prop_oneof![
        16 => Just(ShareSize::Exact),
        1 => Just(ShareSize::PageLess),
        1 => Just(ShareSize::PageMore),
        1 => Just(ShareSize::ByteLess),
    ]
}

fn share_mask() -> impl Strategy<Value = Mask> {
    prop_oneof![
        10 => Just(Mask::Same),
        3 => Just(Mask::Fixed(Fl(R))),
        2 => flags().prop_map(Mask::Fixed),
        1 => Just(Mask::Fixed(Fl(WX))),
        1 => Just(Mask::Fixed(Fl(RW | AreaFlags::EXEC))),
    ]
}

/// A copy at a raw address: refused by the range check (kernel,
/// non-canonical, crossing the end of user space, wrapping) or by the
/// fault handler (NULL page), except for empty copies ending at most at the
/// end of user space and copies below it that stay in an area.
fn raw_copy() -> impl Strategy<Value = Op> {
    let raw = |kind, space, via, to_user, addr: u64, len| Op::CopyRaw {
        kind,
        space,
        via,
        to_user,
        addr: Hex(addr),
        len,
    };
    (
        0..SPACES,
        via(),
        any::<bool>(),
        prop_oneof![
            1 => (0..PAGE_SIZE, 0..=16u64).prop_map(|(a, l)| (RawAddr::Null, a, l)),
            1 => (0..4 * PAGE_SIZE, 0..=16u64)
                .prop_map(|(a, l)| (RawAddr::Kernel, kernel_base() + a, l)),
            1 => (0..4 * PAGE_SIZE, 1..=16u64)
                .prop_map(|(a, l)| (RawAddr::NonCanonical, user_end() + a, l)),
            // `k` bytes below the end, ending there or up to 16 bytes past.
            3 => (
                prop_oneof![
                    1 => Just(0u64),
                    3 => 1..=16u64,
                    2 => PAGE_SIZE - 8..=PAGE_SIZE + 8
                ],
                prop_oneof![2 => Just(0u64), 1 => 1..=16u64]
            )
                .prop_map(|(k, d)| (RawAddr::UserEnd, user_end() - k, k + d)),
            1 => (0..16u64, 0..=64u64).prop_map(|(k, l)| (RawAddr::Wrapping, u64::MAX - k, l)),
        ],
    )
        .prop_map(move |(space, via, to_user, (kind, addr, len))| {
            raw(kind, space, via, to_user, addr, len)
        })
}

fn op() -> impl Strategy<Value = Op> {
    let sp = || 0..SPACES;
    let cpu = || 0..CPUS;
    let at = || {
        prop_oneof![
            8 => (0..4usize).prop_map(At::Area),
            1 => (0..SLOTS).prop_map(At::Slot),
            3 => Just(At::LastWrite),
            2 => Just(At::LastCut),
            4 => Just(At::Peer),
            3 => (0..4usize).prop_map(At::Below),
        ]
    };
    // Shrinks and destroys aim at written data more often.
    let cut_at = || {
        prop_oneof![
            4 => (0..4usize).prop_map(At::Area),
            1 => (0..SLOTS).prop_map(At::Slot),
            4 => Just(At::LastWrite),
            3 => Just(At::Peer),
        ]
    };
    // Shares mostly find a source area.
    let src_at = || {
        prop_oneof![
            8 => (0..4usize).prop_map(At::Area),
            1 => (0..SLOTS).prop_map(At::Slot),
            1 => Just(At::LastWrite),
            2 => Just(At::Peer),
        ]
    };
    let at_page = || prop_oneof![3 => Just(0u64), 1 => 0..SLOT_PAGES];
    prop_oneof![
        12 => sp().prop_flat_map(create),
        3 => sp().prop_flat_map(create_anywhere),
        2 => bad_create(),
        6 => (sp(), cut_at(), at_page(), resize_size()).prop_map(|(space, at, at_page, size)| {
            Op::Resize {
                space,
                at,
                at_page,
                size,
            }
        }),
        3 => (sp(), cut_at(), at_page()).prop_map(|(space, at, at_page)| Op::Destroy {
            space,
            at,
            at_page
        }),
        2 => (sp(), at(), prop_oneof![5 => flags(), 1 => Just(Fl(RW | AreaFlags::EXEC))])
            .prop_map(|(space, at, flags)| Op::ChangeFlags { space, at, flags }),
        4 => (cpu(), sp()).prop_map(|(cpu, space)| Op::Switch { cpu, space }),
        1 => cpu().prop_map(|cpu| Op::Idle { cpu }),
        1 => sp().prop_map(|space| Op::Recreate { space }),
        10 => (sp(), cpu(), at(), access_page(), access_offset(), any::<u64>()).prop_map(
            |(space, cpu, at, page, offset, value)| Op::Write {
                space,
                cpu,
                at,
                page,
                offset,
                value: Hex(value),
            }
        ),
        8 => (sp(), cpu(), at(), access_page(), access_offset()).prop_map(
            |(space, cpu, at, page, offset)| Op::Read {
                space,
                cpu,
                at,
                page,
                offset,
            }
        ),
        2 => (sp(), cpu(), at(), access_page(), access_offset()).prop_map(
            |(space, cpu, at, page, offset)| Op::Fetch {
                space,
                cpu,
                at,
                page,
                offset,
            }
        ),
        1 => (
            sp(),
            cpu(),
            prop_oneof![
                0..PAGE_SIZE - 8,
                kernel_base()..kernel_base() + 4 * PAGE_SIZE,
                user_end()..user_end() + 4 * PAGE_SIZE,
            ],
            any::<bool>()
        )
            .prop_map(|(space, cpu, addr, write)| Op::AccessRaw {
                space,
                cpu,
                addr: Hex(addr),
                write,
            }),
        6 => (sp(), src_at(), sp(), share_dst(), share_size(), share_mask()).prop_map(
            |(src, at, dst, to, size, mask)| Op::Share {
                src,
                at,
                dst,
                to,
                size,
                mask,
            }
        ),
        8 => (
            sp(),
            via(),
            any::<bool>(),
            at(),
            access_page(),
            access_offset(),
            copy_len(),
            1..=255u8
        )
            .prop_map(|(space, via, to_user, at, page, offset, len, fill)| Op::Copy {
                space,
                via,
                to_user,
                at,
                page,
                offset,
                len,
                fill,
            }),
        2 => raw_copy(),
    ]
}

/// An `area_create` of `space` on a grid slot or at the page of the last
/// byte cut away (refused when it overlaps an area).
fn create(space: usize) -> impl Strategy<Value = Op> {
    let at = prop_oneof![3 => (0..SLOTS).prop_map(At::Slot), 1 => Just(At::LastCut)];
    (at, area_pages(), create_flags()).prop_map(move |(at, pages, flags)| Op::Create {
        space,
        at,
        pages,
        flags,
    })
}

/// An `area_create_anywhere` of `space` above or below a grid slot or the
/// last cut.
fn create_anywhere(space: usize) -> impl Strategy<Value = Op> {
    let at = prop_oneof![3 => (0..SLOTS).prop_map(At::Slot), 1 => Just(At::LastCut)];
    (at, area_pages(), create_flags(), any::<bool>()).prop_map(
        move |(at, pages, flags, top_down)| Op::CreateAnywhere {
            space,
            at,
            pages,
            flags,
            top_down,
        },
    )
}

fn case(steps: usize) -> impl Strategy<Value = Case> {
    // Most cases start with an area in every space, so that the random
    // operations after it mostly find something to work on, and many with
    // the first area of a space written to and shared into another space
    // (or the same), so that accesses through several sharers are frequent;
    // some then destroy the written area, leaving its data to the other.
    let prelude = (0..SPACES)
        .map(|s| prop::option::weighted(0.8, create(s)))
        .collect::<Vec<_>>();
    let share = (
        (0..SPACES, 0..SPACES, 0..SLOTS, share_mask()),
        prop::option::weighted(0.7, (0..CPUS, access_page(), access_offset(), any::<u64>())),
        prop::bool::weighted(0.25),
    )
        .prop_map(|((src, dst, slot, mask), write, destroy)| {
            let write = write.map(|(cpu, page, offset, value)| Op::Write {
                space: src,
                cpu,
                at: At::Area(0),
                page,
                offset,
                value: Hex(value),
            });
            let share = Op::Share {
                src,
                at: At::Area(0),
                dst,
                to: Dst::Slot(slot),
                size: ShareSize::Exact,
                mask,
            };
            let destroy = destroy.then_some(Op::Destroy {
                space: src,
                at: At::LastWrite,
                at_page: 0,
            });
            // After the writer's area is gone, the destination reads what
            // it wrote (data the share record keeps for the other sharer).
            let peek = destroy.is_some().then_some(Op::Read {
                space: dst,
                cpu: 0,
                at: At::Peer,
                page: 0,
                offset: 0,
            });
            write
                .into_iter()
                .chain(std::iter::once(share))
                .chain(destroy)
                .chain(peek)
                .collect::<Vec<_>>()
        });
    (
        prop_oneof![2 => Just(2u16), 1 => Just(3u16)],
        prop_oneof![Just(1usize), 2..=8usize, Just(64usize)],
        (any::<bool>(), prop::option::weighted(0.5, 0..=160u64)),
        prelude,
        prop::option::weighted(0.7, share),
        vec(op(), 1..=steps),
    )
        .prop_map(
            |(asids, tlb_entries, (spaces_first, commit_limit), prelude, share, ops)| Case {
                asids,
                tlb_entries,
                spaces_first,
                commit_limit,
                ops: prelude
                    .into_iter()
                    .flatten()
                    .chain(share.into_iter().flatten())
                    .chain(ops)
                    .collect(),
            },
        )
}

// ---------------------------------------------------------------------------
// The reference model
// ---------------------------------------------------------------------------

/// Guard pages kept below an area with `flags`.
fn guard_of(flags: AreaFlags) -> u64 {
    u64::from(flags.intersects(AreaFlags::GUARD | AreaFlags::GROWS_DOWN))
}

/// How far a grows-down area of the model may grow, in pages.
const GROW_LIMIT: u64 = aspace::placement::DEFAULT_GROW_LIMIT / PAGE_SIZE;

#[derive(Clone, Copy, Debug)]
struct MArea {
    pages: u64,
    flags: AreaFlags,
    /// The group whose contents the area shows (see `MGroup`).
    group: u64,
    /// Unique among all areas of the case.
    id: u64,
}

/// The contents of one area, or of a group of areas sharing their pages.
///
/// Every area starts in a group of its own. A share that passes the
/// source's checks turns the source's group into a shared one (the core's
/// share record, with a page map holding the frames of the pages the source
/// has mapped), even if creating the destination then fails (as HelenOS
/// does); a successful one adds the destination to the group. A shared
/// group keeps every page touched in any member in its page map, also when
/// no member maps it any more, until its last member goes.
#[derive(Default)]
struct MGroup {
    /// Whether the core has a share record for the group.
    shared: bool,
    /// Pages the share record reserves for the group (its first area's
    /// size when it was first shared; shared areas cannot resize).
    reserved: u64,
    /// Ids of the areas in the group.
    members: BTreeSet<u64>,
    /// Page indices (within the area) in the share record's page map; each
    /// holds a frame and one reference to it.
    pagemap: BTreeSet<u64>,
    /// Page index -> contents (pages absent read as zeros).
    data: BTreeMap<u64, Vec<u8>>,
    /// Page index -> id of the area that last stored into it (coverage).
    writer: BTreeMap<u64, u64>,
}

/// One address space as the model sees it.
#[derive(Default)]
struct MSpace {
    /// base page number -> area
    areas: BTreeMap<u64, MArea>,
    /// Pages mapped now: touched by a permitted access and not cut since.
    resident: BTreeSet<u64>,
    /// Pages ever mapped (bounds the page-table frames from above).
    ever: BTreeSet<u64>,
    /// Pages whose written data was removed from this space by a shrink or
    /// destroy (coverage only).
    wiped: BTreeSet<u64>,
    /// Address of the last write that stored something (addressing only).
    last_write: Option<u64>,
    /// Address of a byte removed by the last cut that removed data
    /// (addressing only).
    last_cut: Option<u64>,
}

impl MSpace {
    fn find(&self, page: u64) -> Option<u64> {
        let (&b, a) = self.areas.range(..=page).next_back()?;
        (page < b + a.pages).then_some(b)
    }

    /// Whether `[start, start+pages)` lies in user space off the NULL page
    /// and, with `guard` free pages below it, overlaps no area nor an
    /// area's guard page, other than the area based at `avoid`.
    fn fits(&self, start: u64, pages: u64, guard: u64, avoid: Option<u64>) -> bool {
        let Some(end) = start.checked_add(pages) else {
            return false;
        };
        start >= 1
            && end <= user_end() / PAGE_SIZE
            && self.areas.iter().all(|(&b, a)| {
                Some(b) == avoid || b + a.pages <= start - guard || end <= b - guard_of(a.flags)
            })
    }
}

/// A space replaced by `Recreate` while a CPU ran it: alive (with its
/// areas, still members of their groups) until no CPU runs it any more.
struct Zombie {
    space: aspace::TryWeak<Space>,
    m: MSpace,
}

/// The whole reference model: the spaces, the replaced spaces still alive,
/// and the contents of every group of areas.
#[derive(Default)]
struct Model {
    spaces: Vec<MSpace>,
    zombies: Vec<Zombie>,
    groups: BTreeMap<u64, MGroup>,
    next_id: u64,
    /// Page-map entries ever made (each took a frame reference).
    pagemap_inserts: u64,
    /// Group and byte offset within the area of the last store into a
    /// shared group, or of data a successful share made visible in a new
    /// area (addressing only).
    last_store: Option<(u64, u64)>,
    /// What the last read access saw beyond plain data (coverage only).
    read_note: Option<&'static str>,
    /// The system's commit limit in pages.
    limit: u64,
    /// Pages grown-down areas grew by (coverage only).
    growths: u64,
}

impl Model {
    fn new(limit: u64) -> Model {
        Model {
            spaces: (0..SPACES).map(|_| MSpace::default()).collect(),
            limit,
            ..Model::default()
        }
    }

    /// Pages reserved for `area` (based at page `start` of `ms`): a shared
    /// group's reservation, every page of a private area, or the mapped
    /// pages of a late-reserving one.
    fn reserved(&self, ms: &MSpace, start: u64, area: &MArea) -> u64 {
        let g = &self.groups[&area.group];
        if g.shared {
            g.reserved
        } else if area.flags.contains(AreaFlags::LATE_RESERVE) {
            ms.resident.range(start..start + area.pages).count() as u64
        } else {
            area.pages
        }
    }

    /// Pages reserved in the whole system: every private area's, and each
    /// shared group's once.
    fn committed(&self) -> u64 {
        let private: u64 = self
            .all_spaces()
            .flat_map(|m| {
                m.areas
                    .iter()
                    .filter(|(_, a)| !self.groups[&a.group].shared)
                    .map(move |(&b, a)| (m, b, a))
            })
            .map(|(m, b, a)| self.reserved(m, b, a))
            .sum();
        let shared: u64 = self
            .groups
            .values()
            .filter(|g| g.shared)
            .map(|g| g.reserved)
            .sum();
        private + shared
    }

    /// Whether `pages` more can be reserved within the limit.
    fn can_reserve(&self, pages: u64) -> bool {
        self.committed() + pages <= self.limit
    }

    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn area_at(&self, s: usize, page: u64) -> Option<(u64, MArea)> {
        let start = self.spaces[s].find(page)?;
        Some((start, self.spaces[s].areas[&start]))
    }

    fn create(&mut self, s: usize, base: u64, size: u64, flags: AreaFlags) -> Result<(), Error> {
        self.place(s, base, size, flags, None)
    }

    /// `area_create` in space `s`: the new area joins `group`, or a new
    /// group of its own.
    fn place(
        &mut self,
        s: usize,
        base: u64,
        size: u64,
        flags: AreaFlags,
        group: Option<u64>,
    ) -> Result<(), Error> {
        if flags.contains(WX) || !VirtAddr::new(base).is_page_aligned() {
            return Err(Error::InvalidArgument);
        }
        base.checked_add(size).ok_or(Error::InvalidArgument)?;
        let pages = size.div_ceil(PAGE_SIZE);
        if pages == 0 {
            return Err(Error::InvalidArgument);
        }
        let start = base / PAGE_SIZE;
        let flags = if flags.contains(AreaFlags::GROWS_DOWN) {
            flags | AreaFlags::GUARD
        } else {
            flags
        };
        if !self.spaces[s].fits(start, pages, guard_of(flags), None) {
            return Err(Error::AddressNotAvailable);
        }
        // A share destination takes the group's reservation; a new area
        // reserves its pages unless it reserves late.
        let need = if group.is_some() || flags.contains(AreaFlags::LATE_RESERVE) {
            0
        } else {
            pages
        };
        if !self.can_reserve(need) {
            return Err(Error::NoMemory);
        }
        let id = self.new_id();
        let group = match group {
            Some(g) => g,
            None => {
                let g = self.new_id();
                self.groups.insert(g, MGroup::default());
                g
            }
        };
        self.groups
            .get_mut(&group)
            .expect("live group")
            .members
            .insert(id);
        self.spaces[s].areas.insert(
            start,
            MArea {
                pages,
                flags,
                group,
                id,
            },
        );
        Ok(())
    }

    /// Where `area_create_anywhere` puts `pages` pages in space `s`: a
    /// scan of the gaps between its areas, lowest first (the lowest base at
    /// or above `bound`) or highest first (the highest whose area ends at or
    /// below `ceiling`); `NoMemory` when none fits.
    fn anywhere(
        &self,
        s: usize,
        pages: u64,
        flags: AreaFlags,
        limit: u64,
        top_down: bool,
    ) -> Result<u64, Error> {
        let hi = user_end() / PAGE_SIZE;
        // The new area's guard, if any, may be the NULL page.
        let g = guard_of(flags);
        let mut gaps = Vec::new();
        let mut prev = 0;
        for (&b, a) in &self.spaces[s].areas {
            gaps.push((prev, b - guard_of(a.flags)));
            prev = b + a.pages;
        }
        gaps.push((prev, hi));
        let found = if top_down {
            let ceiling = (limit / PAGE_SIZE).min(hi);
            gaps.iter().rev().find_map(|&(a, b)| {
                let b = b.min(ceiling);
                let least = (a + g).max(1);
                (b >= least + pages).then(|| b - pages)
            })
        } else {
            let bound = limit.div_ceil(PAGE_SIZE).max(1);
            gaps.iter().find_map(|&(a, b)| {
                let base = (a + g).max(bound);
                (base + pages <= b).then_some(base)
            })
        };
        found.ok_or(Error::NoMemory)
    }

    /// A fault on `page`, in no area, of space `s`: the guard page of a
    /// grows-down area grows it (moving its base and its pages' indices)
    /// when the area is unshared, under its limit, and the page below is
    /// free and not below page 0; any other guard page is a stack overflow.
    fn guard_fault(&mut self, s: usize, page: u64, access: Access) -> Result<(), FaultReason> {
        let ms = &self.spaces[s];
        let Some((&base, &area)) = ms.areas.range(page + 1..).next() else {
            return Err(FaultReason::NoArea);
        };
        if base - guard_of(area.flags) > page {
            return Err(FaultReason::NoArea);
        }
        let below_free = ms
            .areas
            .range(..page)
            .next_back()
            .is_none_or(|(&b, a)| b + a.pages < page);
        let growable = area.flags.contains(AreaFlags::GROWS_DOWN)
            && !self.groups[&area.group].shared
            && area.pages < GROW_LIMIT
            && page >= 1;
        if !growable {
            return Err(FaultReason::Guard);
        }
        // The rights are checked before the room below (as the core does).
        if !area.flags.permits(access) {
            return Err(FaultReason::Access);
        }
        // The new page reserves memory as a resize's would, before the
        // room below is looked at.
        let late = area.flags.contains(AreaFlags::LATE_RESERVE);
        if !late && !self.can_reserve(1) {
            return Err(FaultReason::NoMemory);
        }
        if !below_free {
            return Err(FaultReason::Guard);
        }
        // A late-reserving area reserves the new page when the same fault
        // maps it; the core grows and maps in one step, so a page that
        // cannot be reserved leaves the area as it was.
        if late && !self.can_reserve(1) {
            return Err(FaultReason::NoMemory);
        }
        let ms = &mut self.spaces[s];
        let mut grown = ms.areas.remove(&base).expect("found");
        grown.pages += 1;
        ms.areas.insert(page, grown);
        let g = self.groups.get_mut(&area.group).expect("live group");
        g.data = std::mem::take(&mut g.data)
            .into_iter()
            .map(|(i, d)| (i + 1, d))
            .collect();
        g.writer = std::mem::take(&mut g.writer)
            .into_iter()
            .map(|(i, w)| (i + 1, w))
            .collect();
        if let Some((grp, off)) = &mut self.last_store {
            if *grp == area.group {
                *off += PAGE_SIZE;
            }
        }
        self.growths += 1;
        Ok(())
    }

    fn resize(&mut self, s: usize, addr: u64, size: u64) -> Result<(), Error> {
        let (start, area) = self.area_at(s, addr / PAGE_SIZE).ok_or(Error::NotFound)?;
        if self.groups[&area.group].shared {
            return Err(Error::NotSupported);
        }
        let offset = addr - start * PAGE_SIZE;
        let bytes = offset.checked_add(size).ok_or(Error::InvalidArgument)?;
        let pages = bytes.div_ceil(PAGE_SIZE);
        if pages == 0 {
            return Err(Error::PermissionDenied);
        }
        if pages > area.pages {
            (start * PAGE_SIZE)
                .checked_add(bytes)
                .ok_or(Error::InvalidArgument)?;
            if !self.spaces[s].fits(start, pages, guard_of(area.flags), Some(start)) {
                return Err(Error::AddressNotAvailable);
            }
            let late = area.flags.contains(AreaFlags::LATE_RESERVE);
            if !late && !self.can_reserve(pages - area.pages) {
                return Err(Error::NoMemory);
            }
        }
        if pages < area.pages {
            self.cut(s, start, area, pages, true);
        }
        self.spaces[s].areas.get_mut(&start).expect("found").pages = pages;
        Ok(())
    }

    /// Destroys the area containing `addr`; says whether it was private,
    /// a sharer leaving others behind, or the last sharer.
    fn destroy(&mut self, s: usize, addr: u64) -> Result<&'static str, Error> {
        let (start, area) = self.area_at(s, addr / PAGE_SIZE).ok_or(Error::NotFound)?;
        self.spaces[s].areas.remove(&start);
        let g = &self.groups[&area.group];
        let last = g.members.len() == 1;
        let kind = match (g.shared, last) {
            (false, _) => "private",
            (true, true) => "last sharer",
            (true, false) => "shared, others keep the data",
        };
        self.cut(s, start, area, 0, last);
        self.leave(&area);
        Ok(kind)
    }

    /// Pages `from..` of `area` (based at page `start` of space `s`) leave
    /// the space: unmapped, and their data gone too when `lose`.
    fn cut(&mut self, s: usize, start: u64, area: MArea, from: u64, lose: bool) {
        let ms = &mut self.spaces[s];
        let (lo, hi) = (start + from, start + area.pages);
        ms.resident.retain(|p| !(lo..hi).contains(p));
        let g = self.groups.get_mut(&area.group).expect("live group");
        let pages: Vec<u64> = g.data.range(from..area.pages).map(|(&i, _)| i).collect();
        let mut first = None;
        for i in pages {
            if let Some(off) = g.data[&i].iter().position(|&b| b != 0) {
                first.get_or_insert((start + i) * PAGE_SIZE + off as u64);
                ms.wiped.insert(start + i);
            }
            if lose {
                g.data.remove(&i);
                g.writer.remove(&i);
            }
        }
        if first.is_some() {
            ms.last_cut = first;
        }
    }

    /// `area` is gone: it leaves its group, which goes with its last member.
    fn leave(&mut self, area: &MArea) {
        let g = self.groups.get_mut(&area.group).expect("live group");
        g.members.remove(&area.id);
        if g.members.is_empty() {
            self.groups.remove(&area.group);
        }
    }

    fn change_flags(&mut self, s: usize, addr: u64, flags: AreaFlags) -> Result<(), Error> {
        if flags.contains(WX) {
            return Err(Error::InvalidArgument);
        }
        let (start, area) = self.area_at(s, addr / PAGE_SIZE).ok_or(Error::NotFound)?;
        if self.groups[&area.group].shared {
            return Err(Error::NotSupported);
        }
        // The area keeps its own way of reserving; guard and growth stay
        // as they were made.
        let keep = AreaFlags::LATE_RESERVE | AreaFlags::GUARD | AreaFlags::GROWS_DOWN;
        self.spaces[s].areas.get_mut(&start).expect("found").flags =
            (flags - keep) | (area.flags & keep);
        Ok(())
    }

    /// `area_share` (HelenOS `as_area_share`); also says which check
    /// decided (for coverage).
    fn share(
        &mut self,
        src: usize,
        src_addr: u64,
        size: u64,
        dst: usize,
        dst_base: u64,
        mask: AreaFlags,
    ) -> (Result<(), Error>, &'static str) {
        let Some((start, area)) = self.area_at(src, src_addr / PAGE_SIZE) else {
            return (Err(Error::NotFound), "no source");
        };
        if area.flags.contains(AreaFlags::LATE_RESERVE) {
            return (Err(Error::NotSupported), "late-reserving source");
        }
        let mut mask = mask;
        if area.flags.contains(AreaFlags::CACHEABLE) {
            mask |= AreaFlags::CACHEABLE;
        }
        if area.pages.checked_mul(PAGE_SIZE) != Some(size) {
            return (Err(Error::PermissionDenied), "size");
        }
        if !area.flags.contains(mask) {
            // The source never has write and exec together, so a write+exec
            // mask always asks for a right the source lacks.
            let why = if mask.contains(WX) {
                "write+exec"
            } else {
                "rights"
            };
            return (Err(Error::PermissionDenied), why);
        }
        let ms = &self.spaces[src];
        let g = self.groups.get_mut(&area.group).expect("live group");
        let first = !g.shared;
        if first {
            g.shared = true;
            g.reserved = area.pages;
            g.pagemap = ms
                .resident
                .range(start..start + area.pages)
                .map(|p| p - start)
                .collect();
            self.pagemap_inserts += g.pagemap.len() as u64;
        }
        match self.place(dst, dst_base, size, mask, Some(area.group)) {
            Ok(()) => {
                let g = &self.groups[&area.group];
                let data = g.data.iter().find_map(|(&i, p)| {
                    let off = p.iter().position(|&b| b != 0)?;
                    Some(i * PAGE_SIZE + off as u64)
                });
                if let Some(off) = data {
                    self.last_store = Some((area.group, off));
                }
                (Ok(()), if first { "first" } else { "again" })
            }
            Err(e) => {
                // All or nothing: a refused destination leaves the source
                // as it was, unshared if this was to be its first share.
                if first {
                    let g = self.groups.get_mut(&area.group).expect("live group");
                    g.shared = false;
                    g.reserved = 0;
                    self.pagemap_inserts -= g.pagemap.len() as u64;
                    g.pagemap.clear();
                }
                (Err(e), "destination")
            }
        }
    }

    /// A user access of `len` bytes at `addr` in space `s`, split at page
    /// boundaries as the CPU does: the pieces before a refused one take
    /// effect (mapping pages and, for a write, storing). Returns the bytes
    /// read (nothing for a write).
    fn access(
        &mut self,
        s: usize,
        addr: u64,
        len: u64,
        access: Access,
        data: Option<&[u8]>,
    ) -> Result<Vec<u8>, AccessFault> {
        self.read_note = None;
        let mut out = Vec::new();
        let mut done = 0;
        while done < len {
            let a = addr + done;
            let n = (PAGE_SIZE - a % PAGE_SIZE).min(len - done);
            let page = a / PAGE_SIZE;
            let refuse = |reason| AccessFault {
                addr: VirtAddr::new(a),
                access,
                reason,
            };
            if self.area_at(s, page).is_none() {
                self.guard_fault(s, page, access).map_err(refuse)?;
            }
            let (start, area) = self.area_at(s, page).ok_or(refuse(FaultReason::NoArea))?;
            if !area.flags.permits(access) {
                return Err(refuse(FaultReason::Access));
            }
            let idx = page - start;
            // A late-reserving area reserves the page it maps.
            let late = area.flags.contains(AreaFlags::LATE_RESERVE);
            if late && !self.spaces[s].resident.contains(&page) && !self.can_reserve(1) {
                return Err(refuse(FaultReason::NoMemory));
            }
            let ms = &mut self.spaces[s];
            let g = self.groups.get_mut(&area.group).expect("live group");
            if ms.resident.insert(page) {
                ms.ever.insert(page);
                if g.shared && g.pagemap.insert(idx) {
                    self.pagemap_inserts += 1;
                }
            }
            let off = (a % PAGE_SIZE) as usize;
            let (d, n) = (done as usize, n as usize);
            match data {
                Some(bytes) => {
                    g.data
                        .entry(idx)
                        .or_insert_with(|| vec![0; PAGE_SIZE as usize])[off..off + n]
                        .copy_from_slice(&bytes[d..d + n]);
                    g.writer.insert(idx, area.id);
                    if done == 0 && g.shared {
                        self.last_store = Some((area.group, idx * PAGE_SIZE + off as u64));
                    }
                }
                None => match g.data.get(&idx) {
                    Some(p) => {
                        let bytes = &p[off..off + n];
                        let w = g.writer.get(&idx).copied();
                        if bytes.iter().any(|&b| b != 0) && w.is_some_and(|w| w != area.id) {
                            self.read_note = Some(if w.is_some_and(|w| g.members.contains(&w)) {
                                "data written through another sharer"
                            } else {
                                "data written by a destroyed sharer"
                            });
                        }
                        out.extend_from_slice(bytes);
                    }
                    None => out.resize(out.len() + n, 0),
                },
            }
            done += n as u64;
        }
        Ok(out)
    }

    /// The address in space `s` of the byte of the last store, in an area
    /// of the same group (the `pick`-th of them modulo their number).
    fn peer(&self, s: usize, pick: u64) -> Option<u64> {
        let (g, off) = self.last_store?;
        let hits: Vec<u64> = self.spaces[s]
            .areas
            .iter()
            .filter(|(_, a)| a.group == g && off < a.pages * PAGE_SIZE)
            .map(|(&b, _)| b * PAGE_SIZE + off)
            .collect();
        (!hits.is_empty()).then(|| hits[(pick % hits.len() as u64) as usize])
    }

    /// The spaces alive: the current ones and the replaced ones a CPU
    /// still runs.
    fn all_spaces(&self) -> impl Iterator<Item = &MSpace> {
        self.spaces.iter().chain(self.zombies.iter().map(|z| &z.m))
    }

    /// Frames holding data: every page in a shared group's page map, and
    /// every mapped page of a private area.
    fn data_frames(&self) -> u64 {
        let shared: u64 = self
            .groups
            .values()
            .filter(|g| g.shared)
            .map(|g| g.pagemap.len() as u64)
            .sum();
        let private: u64 = self
            .all_spaces()
            .flat_map(|m| {
                m.areas
                    .iter()
                    .filter(|(_, a)| !self.groups[&a.group].shared)
                    .map(|(&b, a)| m.resident.range(b..b + a.pages).count() as u64)
            })
            .sum();
        shared + private
    }

    /// Frame references held by the address spaces: one per mapping and
    /// one per page-map entry.
    fn references(&self) -> u64 {
        let maps: u64 = self.all_spaces().map(|m| m.resident.len() as u64).sum();
        let pagemaps: u64 = self.groups.values().map(|g| g.pagemap.len() as u64).sum();
        maps + pagemaps
    }

    /// Whether some shared group holds a page in its page map that none of
    /// its members maps (coverage only).
    fn pagemap_page_unmapped(&self) -> bool {
        let mut mapped: BTreeSet<(u64, u64)> = BTreeSet::new();
        for m in self.all_spaces() {
            for (&b, a) in &m.areas {
                for p in m.resident.range(b..b + a.pages) {
                    mapped.insert((a.group, p - b));
                }
            }
        }
        self.groups
            .iter()
            .any(|(&id, g)| g.pagemap.iter().any(|&i| !mapped.contains(&(id, i))))
    }

    /// Replaced spaces no CPU runs any more are gone: their areas leave
    /// their groups.
    fn reap(&mut self) {
        let (dead, alive): (Vec<Zombie>, Vec<Zombie>) = std::mem::take(&mut self.zombies)
            .into_iter()
            .partition(|z| z.space.strong_count() == 0);
        self.zombies = alive;
        for z in dead {
            self.drop_space(z.m);
        }
    }

    fn drop_space(&mut self, m: MSpace) {
        for a in m.areas.values() {
            self.leave(a);
        }
    }
}

/// Page-table frames a table of the current architecture needs to map
/// `pages`: the root plus one table per distinct index prefix of each
/// level below it.
fn tables_for(pages: &BTreeSet<u64>) -> u64 {
    let levels = match arch() {
        Arch::Riscv64Sv39 => 3,
        _ => 4,
    };
    let distinct = |shift: u32| {
        pages
            .iter()
            .map(|p| p >> shift)
            .collect::<BTreeSet<_>>()
            .len()
    };
    1 + (1..levels).map(|l| distinct(9 * l) as u64).sum::<u64>()
}

/// The rights a mapped page of an area with `flags` reads back with
/// (x86_64 cannot deny reads, so `READ` is always there; elsewhere a
/// writable page is readable too).
fn page_flags(flags: AreaFlags) -> PageFlags {
    let mut f = PageFlags::PRESENT | PageFlags::USER;
    if !exact_reads() || flags.intersects(AreaFlags::READ | AreaFlags::WRITE) {
        f |= PageFlags::READ;
    }
    if flags.contains(AreaFlags::WRITE) {
        f |= PageFlags::WRITE;
    }
    if flags.contains(AreaFlags::EXEC) {
        f |= PageFlags::EXEC;
    }
    if flags.contains(AreaFlags::CACHEABLE) {
        f |= PageFlags::CACHEABLE;
    }
    f
}

// ---------------------------------------------------------------------------
// The system under test next to the model
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Run {
    /// The kernel address space (or nothing yet).
    Idle,
    Space(usize),
    /// A space that was replaced by `Recreate` while this CPU ran it.
    Zombie,
}

/// What the whole run saw, for the coverage report.
#[derive(Default)]
struct Coverage {
    outcomes: BTreeMap<String, u64>,
    stats: StatsSnapshot,
    tlb_hits: u64,
    ipis: u64,
    steps: u64,
    cases: u64,
}

impl Coverage {
    fn hit(&mut self, what: impl Into<String>) {
        *self.outcomes.entry(what.into()).or_default() += 1;
    }

    fn add_stats(&mut self, s: &StatsSnapshot) {
        let t = &mut self.stats;
        t.faults += s.faults;
        t.faults_resolved += s.faults_resolved;
        t.faults_raced += s.faults_raced;
        t.faults_failed += s.faults_failed;
        t.shootdown_rounds += s.shootdown_rounds;
        t.ipis += s.ipis;
        t.local_invalidations += s.local_invalidations;
        t.lazy_flushes += s.lazy_flushes;
        t.asid_allocs += s.asid_allocs;
        t.asid_steals += s.asid_steals;
        t.pages_mapped += s.pages_mapped;
        t.frame_refs_released += s.frame_refs_released;
    }
}

struct World {
    sim: Sim,
    asids: u16,
    /// Frames in use right after `Sim::new` (the kernel's page table).
    baseline: u64,
    spaces: Vec<SpaceHandle>,
    cpus: Vec<Cpu>,
    model: Model,
    running: [Run; CPUS],
    /// What the last step did, resolved (for the failure trace).
    note: String,
}

type Check = Result<(), String>;

/// A live space: its name in messages, the space, its model.
type Live<'a> = (String, SpaceHandle, &'a MSpace);

macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(format!($($arg)+));
        }
    };
}

impl World {
    fn new(
        asids: u16,
        tlb_entries: usize,
        commit_limit: Option<u64>,
        steps: usize,
    ) -> Result<World, String> {
        // Each step maps at most `MAX_COPY / PAGE_SIZE + 1` pages; leave
        // room for page tables.
        let frames = (steps as u64 * (MAX_COPY / PAGE_SIZE + 1) + 512).max(1024);
        let sim = Sim::new(SimConfig {
            arch: arch(),
            cpus: CPUS,
            memory: frames * PAGE_SIZE,
            asids,
            tlb_entries,
        })
        .map_err(|e| format!("Sim::new: {e:?}"))?;
        if let Some(limit) = commit_limit {
            sim.system().reserve().set_limit(limit);
        }
        let limit = sim.system().reserve().limit();
        let baseline = sim.frames_in_use();
        let kernel_tables = sim.system().kernel().page_table_frames();
        ensure!(
            baseline == kernel_tables,
            "frames in use after Sim::new: {baseline}, kernel page table: {kernel_tables}"
        );
        let spaces = (0..SPACES)
            .map(|_| sim.system().create())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("create space: {e:?}"))?;
        let cpus = (0..CPUS).map(|i| sim.cpu(i)).collect();
        Ok(World {
            sim,
            asids,
            baseline,
            spaces,
            cpus,
            model: Model::new(limit),
            running: [Run::Idle; CPUS],
            note: String::new(),
        })
    }

    fn switch(&mut self, cpu: usize, space: usize) -> Check {
        let asid = self.cpus[cpu]
            .switch_to(&self.spaces[space])
            .map_err(|e| format!("cpu{cpu}.switch_to(s{space}) failed: {e:?}"))?;
        ensure!(asid != Asid::KERNEL, "user space got the kernel ASID");
        self.running[cpu] = Run::Space(space);
        // The space this CPU ran may have been replaced: gone now, it gave
        // its reservation back before anything the step does next.
        self.model.reap();
        Ok(())
    }

    /// A CPU running `space`: `cpu` if it does, else the other one if it
    /// does, else `cpu` after switching it to `space`.
    fn cpu_for(&mut self, space: usize, cpu: usize) -> Result<usize, String> {
        if self.running[cpu] == Run::Space(space) {
            return Ok(cpu);
        }
        if let Some(c) = (0..CPUS).find(|&c| self.running[c] == Run::Space(space)) {
            return Ok(c);
        }
        self.switch(cpu, space)?;
        Ok(cpu)
    }

    fn create(
        &mut self,
        space: usize,
        base: u64,
        size: u64,
        flags: AreaFlags,
        kind: Option<Bad>,
        cov: &mut Coverage,
    ) -> Check {
        let want = self.model.create(space, base, size, flags);
        if let Some(e) = kind.and_then(Bad::expected) {
            ensure!(
                want == Err(e),
                "model bug: expected {e:?}, model says {want:?}"
            );
        }
        let got = self.spaces[space].area_create(VirtAddr::new(base), size, flags);
        if let Ok(addr) = got {
            ensure!(
                addr.as_u64() == base,
                "area_create returned {addr:?}, asked for {base:#x}"
            );
        }
        let got = got.map(|_| ());
        self.note = format!(
            "area_create({base:#x}, {size:#x}, {:?}) = {got:?}",
            Fl(flags)
        );
        ensure!(
            got == want,
            "area_create: got {got:?}, model expects {want:?}"
        );
        let what = match kind {
            Some(k) => format!("create {k:?}"),
            None => "create".into(),
        };
        cov.hit(format!("{what}: {got:?}"));
        Ok(())
    }

    fn access(
        &mut self,
        space: usize,
        cpu: usize,
        addr: u64,
        access: Access,
        value: u64,
        cov: &mut Coverage,
    ) -> Check {
        let c = self.cpu_for(space, cpu)?;
        let va = VirtAddr::new(addr);
        let bytes = value.to_le_bytes();
        let grew = self.model.growths;
        let (want, got) = match access {
            Access::Read => (
                self.model.access(space, addr, 8, access, None),
                self.cpus[c].read_u64(va).map(|v| v.to_le_bytes().to_vec()),
            ),
            Access::Write => (
                self.model.access(space, addr, 8, access, Some(&bytes)),
                self.cpus[c].write_u64(va, value).map(|()| Vec::new()),
            ),
            Access::Exec => (
                self.model.access(space, addr, 1, access, None),
                self.cpus[c].fetch(va).map(|b| vec![b]),
            ),
        };
        self.note = format!("{access:?} at {addr:#x} via cpu{c} = {got:x?}");
        ensure!(
            got == want,
            "{access:?} at {addr:#x} via cpu{c}: got {got:x?}, model expects {want:x?}"
        );
        let stored = match &got {
            Ok(_) => true,
            Err(f) => f.addr != va,
        };
        if access == Access::Write && stored {
            self.model.spaces[space].last_write = Some(addr);
        }
        let len = if access == Access::Exec { 1 } else { 8 };
        let crosses = addr / PAGE_SIZE != (addr + len - 1) / PAGE_SIZE;
        let label = match &got {
            Ok(_) if crosses => "ok, crossing pages".to_string(),
            Ok(v) if v.iter().any(|&b| b != 0) => "ok, data".to_string(),
            Ok(_) => "ok".to_string(),
            Err(f) if f.addr != va => format!("{:?} on second page (first page done)", f.reason),
            Err(f) => format!("{:?}", f.reason),
        };
        cov.hit(format!("{access:?}: {label}"));
        // A fetch that mapped an execute-only page: a load from the same
        // address must now be refused by the page table itself, where the
        // architecture can deny loads of a mapped page.
        if access == Access::Exec && got.is_ok() && exact_reads() {
            let page = addr / PAGE_SIZE;
            let xonly = self.model.area_at(space, page).is_some_and(|(_, a)| {
                a.flags
                    - AreaFlags::CACHEABLE
                    - AreaFlags::LATE_RESERVE
                    - AreaFlags::GUARD
                    - AreaFlags::GROWS_DOWN
                    == AreaFlags::EXEC
            });
            let load = addr & !7;
            if xonly && load / PAGE_SIZE == page {
                let want = self.model.access(space, load, 8, Access::Read, None);
                let got = self.cpus[c]
                    .read_u64(VirtAddr::new(load))
                    .map(|v| v.to_le_bytes().to_vec());
                ensure!(
                    got == want,
                    "load after fetch at {load:#x}: got {got:x?}, model expects {want:x?}"
                );
                if got.as_ref().is_err_and(|f| f.reason == FaultReason::Access) {
                    cov.hit("Read: Access, execute-only page mapped");
                }
            }
        }
        if let Err(f) = &got {
            // A load refused by the page table itself, not for want of a
            // mapping: an execute-only page that is mapped.
            let page = f.addr.as_u64() / PAGE_SIZE;
            let xonly = self.model.area_at(space, page).is_some_and(|(_, a)| {
                a.flags
                    - AreaFlags::CACHEABLE
                    - AreaFlags::LATE_RESERVE
                    - AreaFlags::GUARD
                    - AreaFlags::GROWS_DOWN
                    == AreaFlags::EXEC
            });
            if access == Access::Read && xonly && self.model.spaces[space].resident.contains(&page)
            {
                cov.hit("Read: Access, execute-only page mapped");
            }
        }
        if self.model.growths > grew {
            cov.hit(format!("{access:?}: a grows-down area grew"));
        }
        if access == Access::Read && got.is_ok() {
            let m = &self.model.spaces[space];
            if [addr, addr + 7]
                .iter()
                .any(|a| m.wiped.contains(&(a / PAGE_SIZE)))
            {
                cov.hit("Read: ok, page whose data was cut before");
            }
            if let Some(note) = self.model.read_note {
                cov.hit(format!("Read: ok, {note}"));
                cov.hit(format!("read or copy_from: {note}"));
            }
        }
        Ok(())
    }

    /// A `copy_to_user` (of `pattern(fill, len)`) or `copy_from_user` of
    /// `len` bytes at `addr` of `space`, through a CPU or the core. It
    /// succeeds when the range ends at most at the end of user space and
    /// every byte lies in an area with the right; otherwise it fails with
    /// `BadMemory`, having mapped (and, copying to user memory, written)
    /// exactly the pages before the first inaccessible one, unless the
    /// range itself was refused, which touches nothing.
    #[allow(clippy::too_many_arguments)]
    fn copy(
        &mut self,
        space: usize,
        via: Via,
        to_user: bool,
        addr: u64,
        len: u64,
        fill: u8,
        raw: Option<RawAddr>,
        cov: &mut Coverage,
    ) -> Check {
        let data = pattern(fill, len);
        let in_range = addr.checked_add(len).is_some_and(|end| end <= user_end());
        // The CPU first: switching it may end a replaced space it ran,
        // whose reservation the copy's faults may then use.
        let on = match via {
            Via::Cpu(cpu) => Some(self.cpu_for(space, cpu)?),
            Via::Core => None,
        };
        let mut first_pages_done = false;
        let want = if in_range {
            let (access, bytes) = if to_user {
                (Access::Write, Some(&data[..]))
            } else {
                (Access::Read, None)
            };
            self.model
                .access(space, addr, len, access, bytes)
                .map_err(|f| {
                    first_pages_done = f.addr.as_u64() / PAGE_SIZE != addr / PAGE_SIZE;
                    Error::BadMemory
                })
        } else {
            Err(Error::BadMemory)
        };
        let va = VirtAddr::new(addr);
        let mut buf = vec![0u8; len as usize];
        let (got, by) = match on {
            Some(c) => {
                let cpu = &mut self.cpus[c];
                let got = if to_user {
                    cpu.copy_to_user(va, &data)
                } else {
                    cpu.copy_from_user(va, &mut buf)
                };
                (got, format!("cpu{c}"))
            }
            None => {
                let s = &self.spaces[space];
                let got = if to_user {
                    s.copy_to_user(va, &data)
                } else {
                    s.copy_from_user(va, &mut buf)
                };
                (got, "core".to_string())
            }
        };
        let got = got.map(|()| if to_user { Vec::new() } else { buf });
        let dir = if to_user { "to" } else { "from" };
        let short = |r: &Result<Vec<u8>, Error>| match r {
            Ok(v) => format!("Ok({} bytes)", v.len()),
            Err(e) => format!("Err({e:?})"),
        };
        self.note = format!(
            "copy_{dir}_user({addr:#x}, {len:#x} bytes) via {by} = {}",
            short(&got)
        );
        if got != want {
            let detail = match (&got, &want) {
                (Ok(g), Ok(w)) => {
                    let i = g.iter().zip(w).position(|(a, b)| a != b).unwrap_or(0);
                    format!(
                        "byte {i:#x} (address {:#x}) is {:#x}, model expects {:#x}",
                        addr + i as u64,
                        g[i],
                        w[i]
                    )
                }
                _ => format!("got {}, model expects {}", short(&got), short(&want)),
            };
            return Err(format!(
                "copy_{dir}_user({addr:#x}, {len:#x} bytes) via {by}: {detail}"
            ));
        }
        if via == Via::Core && !to_user {
            // The kernel's own space has no user memory.
            let mut kbuf = vec![0u8; len as usize];
            let kernel = self.sim.system().kernel().copy_from_user(va, &mut kbuf);
            ensure!(
                kernel == Err(Error::BadMemory),
                "kernel space copy_from_user({addr:#x}, {len:#x} bytes) = {kernel:?}, \
                 expected Err(BadMemory)"
            );
        }
        if to_user && (got.is_ok() || first_pages_done) && len > 0 {
            self.model.spaces[space].last_write = Some(addr);
        }
        let who = if via == Via::Core { "core" } else { "cpu" };
        let crosses = len > 0 && in_range && addr / PAGE_SIZE != (addr + len - 1) / PAGE_SIZE;
        let label = match &got {
            Ok(_) if len == 0 => "Ok, empty",
            Ok(_) if crosses => "Ok, crossing pages",
            Ok(v) if v.iter().any(|&b| b != 0) => "Ok, data",
            Ok(_) => "Ok",
            Err(_) if !in_range => "Err(BadMemory), range refused",
            Err(_) if first_pages_done => "Err(BadMemory), first pages done",
            Err(_) => "Err(BadMemory)",
        };
        cov.hit(format!("copy_{dir} {who}: {label}"));
        if let Some(kind) = raw {
            let how = match &got {
                Ok(_) if len == 0 => "Ok, empty",
                Ok(_) => "Ok",
                Err(_) => "Err(BadMemory)",
            };
            cov.hit(format!("copy raw {kind:?}: {how}"));
        }
        if !to_user && got.is_ok() {
            if let Some(note) = self.model.read_note {
                cov.hit(format!("copy_from: {note}"));
                cov.hit(format!("read or copy_from: {note}"));
            }
        }
        Ok(())
    }

    /// Where a share puts its destination in `space`.
    fn dst_base(&self, space: usize, to: Dst) -> u64 {
        match to {
            Dst::Slot(s) => slot_base(s),
            Dst::Area(k) => self.target(space, At::Area(k), 0, 0, true),
            Dst::LastCut => self.target(space, At::LastCut, 0, 0, true) / PAGE_SIZE * PAGE_SIZE,
            Dst::Unaligned(s, off) => slot_base(s) + off,
            Dst::Null => 0,
            Dst::Kernel => kernel_base(),
            Dst::LastPage => user_end() - PAGE_SIZE,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn share(
        &mut self,
        src: usize,
        at: At,
        dst: usize,
        to: Dst,
        size: ShareSize,
        mask: Mask,
        cov: &mut Coverage,
    ) -> Check {
        let addr = self.target(src, at, 0, 0, true);
        let area = self.model.area_at(src, addr / PAGE_SIZE);
        let (pages, flags, mapped) = match area {
            Some((b, a)) => {
                let m = &self.model.spaces[src];
                (a.pages, a.flags, m.resident.range(b..b + a.pages).count())
            }
            None => (1, RW, 0),
        };
        let size = match size {
            ShareSize::Exact => pages * PAGE_SIZE,
            ShareSize::PageLess => (pages - 1) * PAGE_SIZE,
            ShareSize::PageMore => (pages + 1) * PAGE_SIZE,
            ShareSize::ByteLess => pages * PAGE_SIZE - 1,
        };
        let mask = match mask {
            Mask::Same => flags - AreaFlags::CACHEABLE,
            Mask::Fixed(f) => f.0,
        };
        let base = self.dst_base(dst, to);
        let (want, why) = self.model.share(src, addr, size, dst, base, mask);
        let got = self.spaces[src].area_share(
            VirtAddr::new(addr),
            size,
            &self.spaces[dst],
            VirtAddr::new(base),
            mask,
        );
        self.note = format!(
            "s{src}.area_share({addr:#x}, {size:#x}, s{dst}, {base:#x}, {:?}) = {got:?}",
            Fl(mask)
        );
        ensure!(
            got == want,
            "s{src}.area_share({addr:#x}, {size:#x}, s{dst}, {base:#x}, {:?}): got {got:?}, \
             model expects {want:?}",
            Fl(mask)
        );
        cov.hit(format!("share {why}: {got:?}"));
        if got.is_ok() {
            if src == dst {
                cov.hit("share: Ok, into the same space");
            }
            if why == "first" && mapped > 0 {
                cov.hit("share: Ok, source pages mapped before");
            }
            let group = area.expect("shared an area").1.group;
            if self.model.groups[&group].members.len() >= 3 {
                cov.hit("share: Ok, 3+ sharers");
            }
            if flags.contains(AreaFlags::CACHEABLE) {
                cov.hit("share: Ok, cacheable inherited");
            }
        }
        Ok(())
    }

    /// The address `page` pages (plus `offset` bytes) above the target `at`
    /// in `space`. For an existing area, `page` is reduced modulo its size,
    /// except that with `!inside` a `page` of `SLOT_PAGES` or more lands
    /// `page - SLOT_PAGES` pages past the area's end. `At::LastWrite` is the
    /// exact address of the last write, regardless of `page` and `offset`.
    fn target(&self, space: usize, at: At, page: u64, offset: u64, inside: bool) -> u64 {
        let m = &self.model.spaces[space];
        let at = match at {
            At::Peer => match self.model.peer(space, page) {
                Some(a) => return a,
                None => At::LastWrite,
            },
            at => at,
        };
        match at {
            At::Area(k) if !m.areas.is_empty() => {
                let (&base, a) = m.areas.iter().nth(k % m.areas.len()).expect("k < len");
                let index = if inside || page < SLOT_PAGES {
                    page % a.pages
                } else {
                    a.pages + (page - SLOT_PAGES)
                };
                (base + index) * PAGE_SIZE + offset
            }
            At::Below(k) if !m.areas.is_empty() => {
                let (&base, _) = m.areas.iter().nth(k % m.areas.len()).expect("k < len");
                (base - 1) * PAGE_SIZE + offset
            }
            At::LastWrite if m.last_write.is_some() => m.last_write.expect("checked"),
            At::Area(k) => slot_base(k % SLOTS) + page * PAGE_SIZE + offset,
            At::Slot(s) => slot_base(s) + page * PAGE_SIZE + offset,
            At::LastCut if m.last_cut.is_some() => m.last_cut.expect("checked"),
            At::LastWrite | At::LastCut | At::Peer | At::Below(_) => {
                slot_base(0) + page * PAGE_SIZE + offset
            }
        }
    }

    /// Runs one operation on the system and the model; then replaced spaces
    /// no CPU runs any more leave the model.
    fn step(&mut self, op: &Op, cov: &mut Coverage) -> Check {
        let result = self.step_inner(op, cov);
        self.model.reap();
        result
    }

    fn step_inner(&mut self, op: &Op, cov: &mut Coverage) -> Check {
        match *op {
            Op::Create {
                space,
                at,
                pages,
                flags,
            } => self.create(
                space,
                if at == At::Slot(TOP_SLOT) {
                    user_end() - pages * PAGE_SIZE
                } else {
                    self.target(space, at, 0, 0, true) / PAGE_SIZE * PAGE_SIZE
                },
                pages * PAGE_SIZE,
                flags.0,
                None,
                cov,
            ),
            Op::CreateRaw {
                kind,
                space,
                base,
                size,
                flags,
            } => self.create(space, base.0, size.0, flags.0, Some(kind), cov),
            Op::CreateAnywhere {
                space,
                at,
                pages,
                flags,
                top_down,
            } => {
                let limit = self.target(space, at, 0, 0, true);
                let late = flags.0.contains(AreaFlags::LATE_RESERVE);
                let want = self
                    .model
                    .anywhere(space, pages, flags.0, limit, top_down)
                    .and_then(|start| {
                        // Room found, then the memory reservation.
                        if late || self.model.can_reserve(pages) {
                            Ok(start)
                        } else {
                            Err(Error::NoMemory)
                        }
                    });
                let placement = if top_down {
                    Placement::HighestBelow {
                        ceiling: VirtAddr::new(limit),
                        align: 1,
                    }
                } else {
                    Placement::above(VirtAddr::new(limit))
                };
                let got = self.spaces[space]
                    .area_create_anywhere(placement, pages * PAGE_SIZE, flags.0)
                    .map(|a| a.as_u64() / PAGE_SIZE);
                self.note = format!("area_create_anywhere({placement:?}, {pages}p) = {got:?}");
                ensure!(
                    got == want,
                    "area_create_anywhere: got {got:?}, model expects {want:?}"
                );
                if let Ok(start) = want {
                    let made =
                        self.model
                            .create(space, start * PAGE_SIZE, pages * PAGE_SIZE, flags.0);
                    ensure!(made.is_ok(), "model refused its own placement: {made:?}");
                }
                cov.hit(format!(
                    "create anywhere {}: {}",
                    if top_down { "top-down" } else { "bottom-up" },
                    match &got {
                        Ok(_) => "ok",
                        Err(_) if late || self.model.can_reserve(pages) => "no room",
                        Err(_) => "over the commit limit",
                    }
                ));
                Ok(())
            }
            Op::Resize {
                space,
                at,
                at_page,
                size,
            } => {
                let addr = self.target(space, at, at_page, 0, true);
                let old = self
                    .model
                    .area_at(space, addr / PAGE_SIZE)
                    .map(|(b, a)| (b, a.pages));
                let want = self.model.resize(space, addr, size.0);
                let got = self.spaces[space].area_resize(VirtAddr::new(addr), size.0);
                self.note = format!("area_resize({addr:#x}, {:#x}) = {got:?}", size.0);
                ensure!(
                    got == want,
                    "area_resize({addr:#x}, {:#x}): got {got:?}, model expects {want:?}",
                    size.0
                );
                let how = match old {
                    Some((b, o)) if got.is_ok() => {
                        let new = self.model.spaces[space].areas[&b].pages;
                        match new.cmp(&o) {
                            std::cmp::Ordering::Less => "Ok shrink",
                            std::cmp::Ordering::Equal => "Ok same",
                            std::cmp::Ordering::Greater => "Ok grow",
                        }
                        .to_string()
                    }
                    _ => format!("{got:?}"),
                };
                cov.hit(format!("resize: {how}"));
                Ok(())
            }
            Op::Destroy { space, at, at_page } => {
                let addr = self.target(space, at, at_page, 0, true);
                let want = self.model.destroy(space, addr);
                let got = self.spaces[space].area_destroy(VirtAddr::new(addr));
                self.note = format!("area_destroy({addr:#x}) = {got:?}");
                ensure!(
                    got == want.map(|_| ()),
                    "area_destroy({addr:#x}): got {got:?}, model expects {want:?}"
                );
                cov.hit(format!("destroy: {got:?}"));
                if let Ok(kind) = want {
                    cov.hit(format!("destroy: {kind}"));
                }
                Ok(())
            }
            Op::ChangeFlags { space, at, flags } => {
                let addr = self.target(space, at, 0, 0, true);
                let want = self.model.change_flags(space, addr, flags.0);
                let got = self.spaces[space].area_change_flags(VirtAddr::new(addr), flags.0);
                self.note = format!("area_change_flags({addr:#x}, {flags:?}) = {got:?}");
                ensure!(
                    got == want,
                    "area_change_flags({addr:#x}): got {got:?}, model expects {want:?}"
                );
                cov.hit(format!("change_flags: {got:?}"));
                Ok(())
            }
            Op::Switch { cpu, space } => {
                cov.hit("switch");
                self.switch(cpu, space)
            }
            Op::Idle { cpu } => {
                self.cpus[cpu].idle();
                self.running[cpu] = Run::Idle;
                cov.hit("idle");
                Ok(())
            }
            Op::Recreate { space } => {
                let new = self
                    .sim
                    .system()
                    .create()
                    .map_err(|e| format!("create space: {e:?}"))?;
                let old = std::mem::replace(&mut self.spaces[space], new);
                let weak = TryArc::downgrade(&old);
                drop(old);
                let m = std::mem::take(&mut self.model.spaces[space]);
                self.model.zombies.push(Zombie { space: weak, m });
                let mut zombie = false;
                for r in &mut self.running {
                    if *r == Run::Space(space) {
                        *r = Run::Zombie;
                        zombie = true;
                    }
                }
                cov.hit(if zombie {
                    "recreate: old space still running"
                } else {
                    "recreate: old space destroyed"
                });
                Ok(())
            }
            Op::Write {
                space,
                cpu,
                at,
                page,
                offset,
                value,
            } => {
                let addr = self.target(space, at, page, offset, false);
                self.access(space, cpu, addr, Access::Write, value.0, cov)
            }
            Op::Read {
                space,
                cpu,
                at,
                page,
                offset,
            } => {
                let addr = self.target(space, at, page, offset, false);
                self.access(space, cpu, addr, Access::Read, 0, cov)
            }
            Op::Fetch {
                space,
                cpu,
                at,
                page,
                offset,
            } => {
                let addr = self.target(space, at, page, offset, false);
                self.access(space, cpu, addr, Access::Exec, 0, cov)
            }
            Op::AccessRaw {
                space,
                cpu,
                addr,
                write,
            } => {
                let access = if write { Access::Write } else { Access::Read };
                self.access(space, cpu, addr.0, access, 0x5a5a_5a5a_5a5a_5a5a, cov)
            }
            Op::Share {
                src,
                at,
                dst,
                to,
                size,
                mask,
            } => self.share(src, at, dst, to, size, mask, cov),
            Op::Copy {
                space,
                via,
                to_user,
                at,
                page,
                offset,
                len,
                fill,
            } => {
                let addr = self.target(space, at, page, offset, false);
                self.copy(space, via, to_user, addr, len, fill, None, cov)
            }
            Op::CopyRaw {
                kind,
                space,
                via,
                to_user,
                addr,
                len,
            } => self.copy(space, via, to_user, addr.0, len, 0x5a, Some(kind), cov),
        }
    }

    /// The user spaces alive now, each once, with their models: the current
    /// ones and the replaced ones a CPU still runs.
    fn live_spaces(&self) -> Result<Vec<Live<'_>>, String> {
        let mut live: Vec<Live<'_>> = self
            .spaces
            .iter()
            .zip(&self.model.spaces)
            .enumerate()
            .map(|(i, (s, m))| (format!("s{i}"), s.clone(), m))
            .collect();
        let mut zombies = 0;
        for (c, cpu) in self.cpus.iter().enumerate() {
            if let Some(cur) = cpu.current() {
                if !cur.is_kernel() && !live.iter().any(|(_, s, _)| TryArc::ptr_eq(s, cur)) {
                    let z = self
                        .model
                        .zombies
                        .iter()
                        .find(|z| std::ptr::eq(z.space.as_ptr(), TryArc::as_ptr(cur)))
                        .ok_or_else(|| format!("cpu{c} runs a space the model does not know"))?;
                    live.push((format!("zombie on cpu{c}"), cur.clone(), &z.m));
                    zombies += 1;
                }
            }
        }
        ensure!(
            zombies == self.model.zombies.len(),
            "the model has {} replaced spaces alive, the CPUs run {zombies}",
            self.model.zombies.len()
        );
        Ok(live)
    }

    /// Every invariant, after every step.
    fn check(&self) -> Check {
        let hw = self.sim.hardware();
        let stale = hw.stats().stale_accesses;
        ensure!(stale == 0, "{stale} stale TLB accesses");

        let live = self.live_spaces()?;
        let groups = &self.model.groups;
        let mut tables_total = 0;
        // (group, page index) -> the frame mapping it and where.
        let mut slots: BTreeMap<(u64, u64), (u64, String)> = BTreeMap::new();
        // frame -> (group, page index), mappings
        let mut frames: BTreeMap<u64, ((u64, u64), u32)> = BTreeMap::new();
        for (name, space, m) in &live {
            let areas = space.areas();
            let got: Vec<(u64, u64, Fl, bool)> = areas
                .iter()
                .map(|a| (a.base.as_u64(), a.pages, Fl(a.flags), a.shared))
                .collect();
            let want: Vec<(u64, u64, Fl, bool)> = m
                .areas
                .iter()
                .map(|(&b, a)| {
                    let shared = groups.get(&a.group).is_some_and(|g| g.shared);
                    (b * PAGE_SIZE, a.pages, Fl(a.flags), shared)
                })
                .collect();
            ensure!(
                got == want,
                "{name}: areas (base, pages, flags, shared) {got:x?}, model expects {want:x?}"
            );
            let mut in_areas = BTreeSet::new();
            for a in &areas {
                ensure!(
                    a.attrs == AreaAttrs::empty() && a.backend == "anon",
                    "{name}: area {a}: unexpected attributes or backend"
                );
                let base = a.base.page().number();
                let ma = m.areas[&base];
                let g = groups
                    .get(&ma.group)
                    .ok_or_else(|| format!("model bug: {name}: area {a} in no group"))?;
                let reserved = self.model.reserved(m, base, &ma);
                ensure!(
                    a.reserved == reserved,
                    "{name}: area {a}: {} pages reserved, model expects {reserved}",
                    a.reserved
                );
                match space.share_info(a.base) {
                    Some(info) => ensure!(
                        g.shared
                            && info.refs() == g.members.len()
                            && info.pages() == g.pagemap.len(),
                        "{name}: area {a}: share record with {} areas and {} pages, model \
                         expects {} areas and {} pages (shared: {})",
                        info.refs(),
                        info.pages(),
                        g.members.len(),
                        g.pagemap.len(),
                        g.shared
                    ),
                    None => ensure!(!g.shared, "{name}: area {a}: no share record"),
                }
                let used = space
                    .used_space(a.base)
                    .ok_or_else(|| format!("{name}: no used space for area {a}"))?;
                let used_pages: BTreeSet<u64> = used.iter_pages().map(|p| p.number()).collect();
                ensure!(
                    used.pages() == used_pages.len() as u64 && a.resident == used.pages(),
                    "{name}: area {a}: used space counts {} pages, holds {}, area says {}",
                    used.pages(),
                    used_pages.len(),
                    a.resident
                );
                let mut mapped = BTreeSet::new();
                for n in base..base + a.pages {
                    in_areas.insert(n);
                    let Some((frame, pf)) = space.translate(Page::from_number(n)) else {
                        continue;
                    };
                    mapped.insert(n);
                    let here = format!("{name} page {:#x}", n * PAGE_SIZE);
                    ensure!(
                        pf == page_flags(a.flags),
                        "{here} mapped with {pf:?}, area {a} wants {:?}",
                        page_flags(a.flags)
                    );
                    // Every page of a group has one frame, and a frame holds
                    // one page of one group.
                    let slot = (ma.group, n - base);
                    if let Some((other, there)) = slots.get(&slot) {
                        ensure!(
                            *other == frame.number(),
                            "page {:#x} of a share group is frame {other:#x} in {there} but \
                             frame {:#x} in {here}",
                            slot.1,
                            frame.number()
                        );
                    } else {
                        slots.insert(slot, (frame.number(), here.clone()));
                    }
                    let e = frames.entry(frame.number()).or_insert((slot, 0));
                    ensure!(
                        e.0 == slot,
                        "frame {frame:?} mapped at {here} also holds another page (group {}, \
                         index {})",
                        e.0 .0,
                        e.0 .1
                    );
                    e.1 += 1;
                }
                ensure!(
                    used_pages == mapped,
                    "{name}: area {a}: used space {:x?} != page table {:x?}",
                    used_pages.iter().map(|p| p * PAGE_SIZE).collect::<Vec<_>>(),
                    mapped.iter().map(|p| p * PAGE_SIZE).collect::<Vec<_>>()
                );
                let want: BTreeSet<u64> = m.resident.range(base..base + a.pages).copied().collect();
                ensure!(
                    want == mapped,
                    "{name}: area {a}: resident pages {:x?}, model expects {:x?}",
                    mapped.iter().map(|p| p * PAGE_SIZE).collect::<Vec<_>>(),
                    want.iter().map(|p| p * PAGE_SIZE).collect::<Vec<_>>()
                );
            }
            for n in scanned_pages().filter(|n| !in_areas.contains(n)) {
                ensure!(
                    space.translate(Page::from_number(n)).is_none(),
                    "{name}: page {:#x} is mapped but in no area",
                    n * PAGE_SIZE
                );
            }
            // Point queries at every area's edges and just outside them:
            // the one-shot calls and those of one held lookup (taken after
            // them: a reader does not lock twice) agree with the model.
            let mut probes = vec![0];
            for (&b, a) in &m.areas {
                probes.extend([b - 1, b, b + a.pages - 1, b + a.pages]);
            }
            let accesses = [Access::Read, Access::Write, Access::Exec];
            // (base, pages, rights) of the area at an address.
            type Found = Option<(u64, u64, AreaFlags)>;
            let info = |a: aspace::AreaInfo| (a.base.as_u64(), a.pages, a.flags);
            let answers = |area: &dyn Fn(VirtAddr) -> Found,
                           size: &dyn Fn(VirtAddr) -> u64,
                           check: &dyn Fn(VirtAddr, Access) -> bool| {
                probes
                    .iter()
                    .map(|&n| {
                        let addr = VirtAddr::new(n * PAGE_SIZE + 0x123);
                        let a = area(addr).map(|(b, p, f)| (b, p, Fl(f)));
                        (n, a, size(addr), accesses.map(|acc| check(addr, acc)))
                    })
                    .collect::<Vec<_>>()
            };
            let want = answers(
                &|addr| {
                    let b = m.find(addr.page().number())?;
                    Some((b * PAGE_SIZE, m.areas[&b].pages, m.areas[&b].flags))
                },
                &|addr| {
                    m.find(addr.page().number())
                        .map_or(0, |b| m.areas[&b].pages * PAGE_SIZE)
                },
                &|addr, acc| {
                    m.find(addr.page().number())
                        .is_some_and(|b| m.areas[&b].flags.permits(acc))
                },
            );
            let one = answers(
                &|addr| space.area(addr).map(info),
                &|addr| space.area_size(addr),
                &|addr, acc| space.check_access(addr, acc),
            );
            let held = space.lookup();
            ensure!(held.len() == m.areas.len(), "{name}: lookup().len()");
            let many = answers(
                &|addr| held.area(addr).map(info),
                &|addr| held.area_size(addr),
                &|addr, acc| held.check_access(addr, acc),
            );
            drop(held);
            ensure!(
                one == want && many == want,
                "{name}: point queries (page, (base, pages, flags), size, [r, w, x]): one-shot \
                 {one:x?}, held lookup {many:x?}, model expects {want:x?}"
            );
            let resident = space.resident_pages();
            let tables = space.page_table_frames();
            ensure!(
                resident == m.resident.len() as u64,
                "{name}: {resident} resident pages, model expects {}",
                m.resident.len()
            );
            let (lo, hi) = (tables_for(&m.resident), tables_for(&m.ever));
            ensure!(
                (lo..=hi).contains(&tables),
                "{name}: {tables} page-table frames, expected between {lo} and {hi}"
            );
            tables_total += tables;
        }
        // A frame's references: one per mapping, one for a page-map entry.
        for (&f, &((group, index), maps)) in &frames {
            let in_pagemap = groups[&group].pagemap.contains(&index);
            let refs = hw.frames().refcount(aspace::Frame::from_number(f));
            ensure!(
                refs == maps + in_pagemap as u32,
                "frame {f:#x} (page {index:#x} of a group): {refs} references, expected {maps} \
                 mappings{}",
                if in_pagemap {
                    " + 1 page-map entry"
                } else {
                    ""
                }
            );
        }
        let data = self.model.data_frames();
        let in_use = self.sim.frames_in_use();
        let frames_expected = self.baseline + tables_total + data;
        ensure!(
            in_use == frames_expected,
            "{in_use} frames in use, expected {frames_expected} (kernel {} + page tables \
             {tables_total} + distinct data frames {data})",
            self.baseline
        );
        // The reservation: every private area's pages (a late-reserving
        // one's mapped pages) and each shared group's once.
        let reserve = self.sim.system().reserve();
        ensure!(
            reserve.committed() == self.model.committed() && reserve.limit() == self.model.limit,
            "{} of {} pages reserved, model expects {} of {}",
            reserve.committed(),
            reserve.limit(),
            self.model.committed(),
            self.model.limit
        );
        // References taken and given back by the core: one per mapping made
        // (`pages_mapped`) and one per page-map entry, minus those
        // released (`frame_refs_released`), leaves those still held.
        let stats = self.sim.system().stats();
        let held = (stats.pages_mapped + self.model.pagemap_inserts)
            .checked_sub(stats.frame_refs_released)
            .ok_or_else(|| {
                format!(
                    "{} references released, only {} mappings and {} page-map entries made",
                    stats.frame_refs_released, stats.pages_mapped, self.model.pagemap_inserts
                )
            })?;
        ensure!(
            held == self.model.references(),
            "{held} frame references held (mappings made {} + page-map entries {} - \
             released {}), model expects {}",
            stats.pages_mapped,
            self.model.pagemap_inserts,
            stats.frame_refs_released,
            self.model.references()
        );

        // ASIDs: distinct, accounted for, loaded where the spaces run.
        let mut holders: BTreeMap<u16, &str> = BTreeMap::new();
        for (name, space, _) in &live {
            if let Some(a) = space.asid() {
                ensure!(a != Asid::KERNEL, "{name} holds the kernel ASID");
                if let Some(other) = holders.insert(a.0, name.as_str()) {
                    return Err(format!("ASID {} held by both {other} and {name}", a.0));
                }
            }
        }
        let free = self.sim.system().free_asids();
        ensure!(
            free + holders.len() == self.asids as usize,
            "{free} free ASIDs + {} held != {}",
            holders.len(),
            self.asids
        );
        for (c, cpu) in self.cpus.iter().enumerate() {
            let loaded = hw.loaded_asid(c);
            let cur = cpu.current();
            match self.running[c] {
                Run::Idle => ensure!(
                    cur.is_none_or(|s| s.is_kernel()) && loaded == Asid::KERNEL,
                    "cpu{c} should be idle, runs ASID {}",
                    loaded.0
                ),
                Run::Space(i) => ensure!(
                    cur.is_some_and(|s| TryArc::ptr_eq(s, &self.spaces[i]))
                        && self.spaces[i].asid() == Some(loaded),
                    "cpu{c} should run s{i} (ASID {:?}), has ASID {} loaded",
                    self.spaces[i].asid(),
                    loaded.0
                ),
                Run::Zombie => ensure!(
                    cur.is_some_and(|s| !s.is_kernel()
                        && !self.spaces.iter().any(|m| TryArc::ptr_eq(m, s))
                        && s.asid() == Some(loaded)),
                    "cpu{c} should run a replaced space with its ASID loaded ({})",
                    loaded.0
                ),
            }
        }
        for (name, space, _) in &live {
            let mut want = CpuSet::EMPTY;
            for (c, cpu) in self.cpus.iter().enumerate() {
                if cpu.current().is_some_and(|s| TryArc::ptr_eq(s, space)) {
                    want.insert(c);
                }
            }
            let got = space.active_cpus();
            ensure!(got == want, "{name}: active on {got:?}, runs on {want:?}");
        }

        // TLB coherence: what a CPU may use for the space it runs agrees with
        // that space's page table.
        for (c, cpu) in self.cpus.iter().enumerate() {
            let Some(cur) = cpu.current().filter(|s| !s.is_kernel()) else {
                continue;
            };
            let asid = hw.loaded_asid(c);
            for e in hw.tlb_entries(c).iter().filter(|e| e.asid == asid) {
                let pte = cur.translate(e.page);
                let ok = pte.is_some_and(|(f, pf)| {
                    f == e.frame
                        && (!e.writable || pf.contains(PageFlags::WRITE))
                        && (!e.executable || pf.contains(PageFlags::EXEC))
                });
                ensure!(
                    ok,
                    "cpu{c}: TLB entry {e:?} (ASID {}) disagrees with the page table: {pte:?}",
                    asid.0
                );
            }
        }
        Ok(())
    }

    /// Compares the contents of every mapped frame with the model (after
    /// every step, like `check`).
    fn check_contents(&self) -> Check {
        let mem = self.sim.hardware().memory();
        let zeros = vec![0u8; PAGE_SIZE as usize];
        let mut buf = vec![0u8; PAGE_SIZE as usize];
        let mut seen = BTreeSet::new();
        for (name, space, m) in &self.live_spaces()? {
            for (&b, a) in &m.areas {
                let g = &self.model.groups[&a.group];
                for &n in m.resident.range(b..b + a.pages) {
                    let (frame, _) = space
                        .translate(Page::from_number(n))
                        .ok_or_else(|| format!("{name}: page {:#x} not mapped", n * PAGE_SIZE))?;
                    if !seen.insert(frame.number()) {
                        continue;
                    }
                    mem.read(frame.start(), &mut buf);
                    let want = g.data.get(&(n - b)).unwrap_or(&zeros);
                    if let Some(i) = buf.iter().zip(want).position(|(x, y)| x != y) {
                        return Err(format!(
                            "{name}: byte at {:#x} (frame {frame:?}) is {:#x}, model expects {:#x}",
                            n * PAGE_SIZE + i as u64,
                            buf[i],
                            want[i]
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Coverage of states the checks went through.
    fn observe(&self, cov: &mut Coverage) {
        if self.model.pagemap_page_unmapped() {
            cov.hit("state: a page-map page no sharer maps");
        }
        if !self.model.zombies.is_empty()
            && self.model.zombies.iter().any(|z| {
                z.m.areas
                    .values()
                    .any(|a| self.model.groups[&a.group].shared)
            })
        {
            cov.hit("state: a replaced space still running shares an area");
        }
        let late_mapped = self.model.all_spaces().any(|m| {
            m.areas.iter().any(|(&b, a)| {
                a.flags.contains(AreaFlags::LATE_RESERVE)
                    && m.resident.range(b..b + a.pages).next().is_some()
            })
        });
        if late_mapped {
            cov.hit("state: a late-reserving area with pages mapped");
        }
        if self
            .model
            .groups
            .values()
            .any(|g| g.shared && g.reserved > 0 && g.members.len() >= 3)
        {
            cov.hit("state: a shared group reserving once for 3+ sharers");
        }
    }

    /// Drops everything; nothing may be left behind.
    fn teardown(self, spaces_first: bool, cov: &mut Coverage) -> Check {
        let World {
            sim,
            asids,
            baseline,
            spaces,
            cpus,
            model,
            ..
        } = self;
        if spaces_first {
            drop(spaces);
            drop(cpus);
        } else {
            drop(cpus);
            drop(spaces);
        }
        let hw = sim.hardware().stats();
        let stats = sim.system().stats();
        cov.add_stats(&stats);
        cov.tlb_hits += hw.tlb_hits;
        cov.ipis += hw.ipis;
        ensure!(
            hw.stale_accesses == 0,
            "{} stale TLB accesses",
            hw.stale_accesses
        );
        let in_use = sim.frames_in_use();
        ensure!(
            in_use == baseline,
            "after teardown {in_use} frames in use, {baseline} before (leak)"
        );
        let free = sim.system().free_asids();
        ensure!(
            free == asids as usize,
            "after teardown {free} of {asids} ASIDs free"
        );
        let committed = sim.system().reserve().committed();
        ensure!(
            committed == 0,
            "after teardown {committed} pages still reserved"
        );
        // Every reference taken (one per mapping made, one per page-map
        // entry) has been given back.
        ensure!(
            stats.pages_mapped + model.pagemap_inserts == stats.frame_refs_released,
            "{} mappings made + {} page-map entries, {} references released",
            stats.pages_mapped,
            model.pagemap_inserts,
            stats.frame_refs_released
        );
        Ok(())
    }
}

/// Runs one case; with `trace`, records every step as it was resolved
/// against the state (addresses, CPUs, results).
fn run_case(
    case: &Case,
    steps: usize,
    cov: &mut Coverage,
    mut trace: Option<&mut Vec<String>>,
) -> Check {
    let mut world = World::new(case.asids, case.tlb_entries, case.commit_limit, steps)?;
    world.check().map_err(|e| format!("initially: {e}"))?;
    for (i, op) in case.ops.iter().enumerate() {
        world.note.clear();
        let result = world
            .step(op, cov)
            .and_then(|()| world.check())
            .and_then(|()| world.check_contents());
        if result.is_ok() {
            world.observe(cov);
        }
        if let Some(t) = trace.as_deref_mut() {
            let mut line = format!("[{i:3}] {op:?}");
            if !world.note.is_empty() {
                line += &format!("\n        {}", world.note);
            }
            t.push(line);
        }
        result.map_err(|e| format!("step [{i}] {op:?}: {e}"))?;
        cov.steps += 1;
    }
    world
        .teardown(case.spaces_first, cov)
        .map_err(|e| format!("teardown: {e}"))?;
    cov.cases += 1;
    Ok(())
}

fn env_or(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

#[test]
fn model_based_random_operations() {
    let cases = env_or("ASPACE_MODEL_CASES", 256) as u32;
    let steps = env_or("ASPACE_MODEL_STEPS", 60).max(1) as usize;
    let seed = env_or("ASPACE_MODEL_SEED", 0x0a5b_ace5);
    let only = std::env::var("ASPACE_MODEL_ARCH").ok();
    let cov = RefCell::new(Coverage::default());
    let mut exact_reads_cases = 0;
    for a in Arch::ALL {
        if only.as_deref().is_some_and(|o| o != a.name()) {
            continue;
        }
        ARCH.with(|c| c.set(a));
        // The other formats run a quarter of the cases each, to keep the
        // test's time in bounds; ASPACE_MODEL_ARCH picks one to run fully.
        let cases = if a == Arch::X86_64 || only.is_some() {
            cases
        } else {
            (cases / 4).max(1)
        };
        if a != Arch::X86_64 {
            exact_reads_cases += cases;
        }
        let config = ProptestConfig {
            cases,
            failure_persistence: None,
            rng_seed: RngSeed::Fixed(seed),
            ..ProptestConfig::default()
        };
        let mut runner = TestRunner::new(config);
        let result = runner.run(&case(steps), |case| {
            run_case(&case, steps, &mut cov.borrow_mut(), None).map_err(TestCaseError::fail)
        });
        match result {
            Ok(()) => {}
            Err(TestError::Fail(reason, case)) => {
                let mut trace = Vec::new();
                let again = run_case(&case, steps, &mut Coverage::default(), Some(&mut trace));
                panic!(
                    "model test failed on {a} (ASPACE_MODEL_ARCH={a} ASPACE_MODEL_SEED={seed} \
                     ASPACE_MODEL_CASES={cases} ASPACE_MODEL_STEPS={steps}).\n{reason}\n\
                     Minimal failing case:\n{case:#?}\n\
                     Replay of it, step by step as resolved (replay result: {again:?}):\n{}",
                    trace.join("\n")
                )
            }
            Err(TestError::Abort(why)) => panic!("model test aborted on {a}: {why}"),
        }
    }

    let cov = cov.into_inner();
    println!(
        "{} cases, {} steps (seed {seed}); core counters: {:?}; tlb hits {}, ipis {}",
        cov.cases, cov.steps, cov.stats, cov.tlb_hits, cov.ipis
    );
    for (what, n) in &cov.outcomes {
        println!("  {n:6}  {what}");
    }
    // With the default amount of work every interesting path must have been
    // taken at least once, or the generator has gone blind.
    if cases >= 256 && steps >= 60 && only.is_none() {
        let mut must = vec![
            "create: Ok(())",
            "create: Err(AddressNotAvailable)",
            "create Overlap: Ok(())",
            "create Overlap: Err(AddressNotAvailable)",
            "create Unaligned: Err(InvalidArgument)",
            "create ZeroSize: Err(InvalidArgument)",
            "create WriteExec: Err(InvalidArgument)",
            "create NullPage: Err(AddressNotAvailable)",
            "create Kernel: Err(AddressNotAvailable)",
            "create Wrapping: Err(InvalidArgument)",
            "create PastUserEnd: Err(AddressNotAvailable)",
            "resize: Ok grow",
            "resize: Ok shrink",
            "resize: Err(NotFound)",
            "resize: Err(PermissionDenied)",
            "resize: Err(AddressNotAvailable)",
            "resize: Err(InvalidArgument)",
            "destroy: Ok(())",
            "destroy: Err(NotFound)",
            "change_flags: Ok(())",
            "change_flags: Err(InvalidArgument)",
            "recreate: old space still running",
            "Write: ok",
            "Write: ok, crossing pages",
            "Write: Access",
            "Write: NoArea",
            "Write: NoArea on second page (first page done)",
            "Read: ok, data",
            "Read: ok, crossing pages",
            "Read: NoArea",
            "Read: ok, page whose data was cut before",
            "Exec: ok",
            "Exec: Access",
            // Sharing.
            "share first: Ok(())",
            "share again: Ok(())",
            "share: Ok, into the same space",
            "share: Ok, source pages mapped before",
            "share: Ok, 3+ sharers",
            "share: Ok, cacheable inherited",
            "share no source: Err(NotFound)",
            "share size: Err(PermissionDenied)",
            "share rights: Err(PermissionDenied)",
            "share write+exec: Err(PermissionDenied)",
            "share destination: Err(AddressNotAvailable)",
            "share destination: Err(InvalidArgument)",
            "resize: Err(NotSupported)",
            "change_flags: Err(NotSupported)",
            "destroy: shared, others keep the data",
            "destroy: last sharer",
            "Read: ok, data written through another sharer",
            "read or copy_from: data written by a destroyed sharer",
            "state: a page-map page no sharer maps",
            // Copies, both ways, both flavours.
            "copy_from cpu: Ok, data",
            "copy_from cpu: Ok, crossing pages",
            "copy_from cpu: Ok, empty",
            "copy_from cpu: Err(BadMemory)",
            "copy_from cpu: Err(BadMemory), first pages done",
            "copy_from cpu: Err(BadMemory), range refused",
            "copy_from core: Ok, data",
            "copy_from core: Ok, crossing pages",
            "copy_from core: Err(BadMemory)",
            "copy_from core: Err(BadMemory), first pages done",
            "copy_from core: Err(BadMemory), range refused",
            "copy_to cpu: Ok",
            "copy_to cpu: Ok, crossing pages",
            "copy_to cpu: Err(BadMemory)",
            "copy_to cpu: Err(BadMemory), first pages done",
            "copy_to cpu: Err(BadMemory), range refused",
            "copy_to core: Ok",
            "copy_to core: Ok, crossing pages",
            "copy_to core: Err(BadMemory)",
            "copy_to core: Err(BadMemory), first pages done",
            "copy_to core: Err(BadMemory), range refused",
            "copy raw Null: Err(BadMemory)",
            "copy raw Kernel: Err(BadMemory)",
            "copy raw NonCanonical: Err(BadMemory)",
            "copy raw UserEnd: Err(BadMemory)",
            "copy raw UserEnd: Ok",
            "copy raw UserEnd: Ok, empty",
            "copy raw Wrapping: Err(BadMemory)",
            // Memory reservation.
            "create: Err(NoMemory)",
            "resize: Err(NoMemory)",
            "Write: NoMemory",
            "share late-reserving source: Err(NotSupported)",
            "state: a late-reserving area with pages mapped",
            "state: a shared group reserving once for 3+ sharers",
        ];
        if exact_reads_cases > 0 {
            must.push("Read: Access, execute-only page mapped");
        }
        let missing: Vec<&str> = must
            .iter()
            .copied()
            .filter(|m| !cov.outcomes.contains_key(*m))
            .collect();
        assert!(missing.is_empty(), "never exercised: {missing:#?}");
        let s = &cov.stats;
        assert!(s.asid_steals > 0, "no ASID was ever stolen");
        assert!(s.lazy_flushes > 0, "no lazy flush ever happened");
        assert!(cov.ipis > 0, "no shootdown IPI was ever sent");
        assert!(cov.tlb_hits > 0, "the TLB never hit");
    }
}
