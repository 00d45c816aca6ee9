//! Randomised model-based test: random sequences of address-space operations
//! and user-mode accesses run on a simulated 2-CPU machine and, side by side,
//! on a plain reference model (areas in a `BTreeMap`, memory contents as a
//! map of bytes, which CPU runs which space). Every result must match the
//! model exactly, and after every step the structural invariants of the
//! subsystem are checked: areas, used space == page table, frame accounting,
//! ASIDs, TLB coherence, no stale TLB access. At the end of each case
//! everything is torn down and must leave no frame and no ASID behind.
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

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use aspace::{
    Access, AreaAttrs, AreaFlags, Asid, CpuSet, Error, FaultReason, Layout, Page, PageFlags,
    StatsSnapshot, VirtAddr, PAGE_SIZE,
};
use aspace_sim::{AccessFault, Cpu, Sim, SimConfig, Space};
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
const USER_END: u64 = Layout::X86_64.user_end;
const TOP_BASE: u64 = USER_END - SLOT_PAGES * PAGE_SIZE;
const KERNEL_BASE: u64 = 0xffff_8000_0000_0000;

fn slot_base(slot: usize) -> u64 {
    if slot == TOP_SLOT {
        TOP_BASE
    } else {
        GRID_BASE + slot as u64 * SLOT_PAGES * PAGE_SIZE
    }
}

/// Every page the invariant check scans in each space: the NULL page, the
/// whole grid region, the top slot.
fn scanned_pages() -> impl Iterator<Item = u64> {
    std::iter::once(0)
        .chain(GRID_BASE / PAGE_SIZE..GRID_END / PAGE_SIZE)
        .chain(TOP_BASE / PAGE_SIZE..USER_END / PAGE_SIZE)
}

const R: AreaFlags = AreaFlags::READ;
const RW: AreaFlags = AreaFlags::READ.union(AreaFlags::WRITE);
const RX: AreaFlags = AreaFlags::READ.union(AreaFlags::EXEC);

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

/// Area flags shown as `rw-`, `r-x+c` (cacheable) and so on.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Fl(AreaFlags);

impl fmt::Debug for Fl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = |flag, c| if self.0.contains(flag) { c } else { '-' };
        write!(
            f,
            "{}{}{}{}",
            g(AreaFlags::READ, 'r'),
            g(AreaFlags::WRITE, 'w'),
            g(AreaFlags::EXEC, 'x'),
            if self.0.contains(AreaFlags::CACHEABLE) {
                "+c"
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
/// whose data was last cut away (slot 0 when none), so that operations
/// mostly find something to work on and reads meet earlier writes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum At {
    Slot(usize),
    Area(usize),
    LastWrite,
    /// A byte whose data a shrink or destroy removed most recently.
    LastCut,
}

impl fmt::Debug for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Slot(s) => write!(f, "slot{s}"),
            At::Area(k) => write!(f, "area#{k}"),
            At::LastWrite => write!(f, "last_write"),
            At::LastCut => write!(f, "last_cut"),
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
enum Op {
    /// `area_create(base, pages * PAGE_SIZE, flags)` with `base` a slot's
    /// base or (`At::LastCut`) the page of the last byte cut away.
    Create {
        space: usize,
        at: At,
        pages: u64,
        flags: Fl,
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
    ops: Vec<Op>,
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Case {{ cpus: {CPUS}, asids: {}, spaces: {SPACES}, tlb_entries: {}, \
             teardown: {} first, {} ops:",
            self.asids,
            self.tlb_entries,
            if self.spaces_first { "spaces" } else { "cpus" },
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
    )
        .prop_map(|(f, c)| Fl(if c { f | AreaFlags::CACHEABLE } else { f }))
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
        1 => Just(USER_END),
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
            .prop_map(move |(s, p, fl)| raw(Bad::Kernel, s, KERNEL_BASE, p * PAGE_SIZE, fl)),
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
            USER_END - PAGE_SIZE,
            p * PAGE_SIZE,
            fl
        )),
    ]
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
        ]
    };
    // Shrinks and destroys aim at written data more often.
    let cut_at = || {
        prop_oneof![
            4 => (0..4usize).prop_map(At::Area),
            1 => (0..SLOTS).prop_map(At::Slot),
            4 => Just(At::LastWrite),
        ]
    };
    let at_page = || prop_oneof![3 => Just(0u64), 1 => 0..SLOT_PAGES];
    prop_oneof![
        12 => sp().prop_flat_map(create),
        2 => bad_create(),
        6 => (sp(), cut_at(), at_page(), resize_size()).prop_map(|(space, at, at_page, size)| {
            Op::Resize {
                space,
                at,
                at_page,
                size,
            }
        }),
        2 => (sp(), cut_at(), at_page()).prop_map(|(space, at, at_page)| Op::Destroy {
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
                KERNEL_BASE..KERNEL_BASE + 4 * PAGE_SIZE,
                USER_END..USER_END + 4 * PAGE_SIZE,
            ],
            any::<bool>()
        )
            .prop_map(|(space, cpu, addr, write)| Op::AccessRaw {
                space,
                cpu,
                addr: Hex(addr),
                write,
            }),
    ]
}

/// An `area_create` of `space` on a grid slot or at the page of the last
/// byte cut away (refused when it overlaps an area).
fn create(space: usize) -> impl Strategy<Value = Op> {
    let at = prop_oneof![3 => (0..SLOTS).prop_map(At::Slot), 1 => Just(At::LastCut)];
    (at, area_pages(), flags()).prop_map(move |(at, pages, flags)| Op::Create {
        space,
        at,
        pages,
        flags,
    })
}

fn case(steps: usize) -> impl Strategy<Value = Case> {
    // Most cases start with an area in every space, so that the random
    // operations after it mostly find something to work on.
    let prelude = (0..SPACES)
        .map(|s| prop::option::weighted(0.8, create(s)))
        .collect::<Vec<_>>();
    (
        prop_oneof![2 => Just(2u16), 1 => Just(3u16)],
        prop_oneof![Just(1usize), 2..=8usize, Just(64usize)],
        any::<bool>(),
        prelude,
        vec(op(), 1..=steps),
    )
        .prop_map(|(asids, tlb_entries, spaces_first, prelude, ops)| Case {
            asids,
            tlb_entries,
            spaces_first,
            ops: prelude.into_iter().flatten().chain(ops).collect(),
        })
}

// ---------------------------------------------------------------------------
// The reference model
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct MArea {
    pages: u64,
    flags: AreaFlags,
}

/// One address space as the model sees it.
#[derive(Default)]
struct MSpace {
    /// base page number -> area
    areas: BTreeMap<u64, MArea>,
    /// Bytes written (every other byte of an area reads as zero).
    bytes: BTreeMap<u64, u8>,
    /// Pages mapped now: touched by a permitted access and not cut since.
    resident: BTreeSet<u64>,
    /// Pages ever mapped (bounds the page-table frames from above).
    ever: BTreeSet<u64>,
    /// Pages whose written data was removed by a shrink or destroy
    /// (coverage only).
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
    /// and overlaps no area other than the one based at `avoid`.
    fn fits(&self, start: u64, pages: u64, avoid: Option<u64>) -> bool {
        let Some(end) = start.checked_add(pages) else {
            return false;
        };
        start >= 1
            && end <= USER_END / PAGE_SIZE
            && self
                .areas
                .iter()
                .all(|(&b, a)| Some(b) == avoid || b + a.pages <= start || end <= b)
    }

    fn create(&mut self, base: u64, size: u64, flags: AreaFlags) -> Result<(), Error> {
        if flags.contains(AreaFlags::WRITE | AreaFlags::EXEC)
            || !VirtAddr::new(base).is_page_aligned()
        {
            return Err(Error::InvalidArgument);
        }
        base.checked_add(size).ok_or(Error::InvalidArgument)?;
        let pages = size.div_ceil(PAGE_SIZE);
        if pages == 0 {
            return Err(Error::InvalidArgument);
        }
        let start = base / PAGE_SIZE;
        if !self.fits(start, pages, None) {
            return Err(Error::AddressNotAvailable);
        }
        self.areas.insert(start, MArea { pages, flags });
        Ok(())
    }

    fn resize(&mut self, addr: u64, size: u64) -> Result<(), Error> {
        let start = self.find(addr / PAGE_SIZE).ok_or(Error::NotFound)?;
        let area = self.areas[&start];
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
            if !self.fits(start, pages, Some(start)) {
                return Err(Error::AddressNotAvailable);
            }
        }
        if pages < area.pages {
            self.cut(start + pages, start + area.pages);
        }
        self.areas.get_mut(&start).expect("found").pages = pages;
        Ok(())
    }

    fn destroy(&mut self, addr: u64) -> Result<(), Error> {
        let start = self.find(addr / PAGE_SIZE).ok_or(Error::NotFound)?;
        let area = self.areas.remove(&start).expect("found");
        self.cut(start, start + area.pages);
        Ok(())
    }

    fn change_flags(&mut self, addr: u64, flags: AreaFlags) -> Result<(), Error> {
        if flags.contains(AreaFlags::WRITE | AreaFlags::EXEC) {
            return Err(Error::InvalidArgument);
        }
        let start = self.find(addr / PAGE_SIZE).ok_or(Error::NotFound)?;
        self.areas.get_mut(&start).expect("found").flags = flags;
        Ok(())
    }

    /// Pages `[from, to)` are no longer part of an area: their frames and
    /// data are gone.
    fn cut(&mut self, from: u64, to: u64) {
        self.resident.retain(|p| !(from..to).contains(p));
        let range = from * PAGE_SIZE..to * PAGE_SIZE;
        let wiped: Vec<u64> = self.bytes.range(range.clone()).map(|(&a, _)| a).collect();
        if let Some(&a) = wiped.first() {
            self.last_cut = Some(a);
        }
        for a in wiped {
            self.bytes.remove(&a);
            self.wiped.insert(a / PAGE_SIZE);
        }
    }

    /// A user access of `len` bytes at `addr`, split at page boundaries as
    /// the CPU does: the pieces before a refused one take effect. Returns
    /// the bytes read (nothing for a write).
    fn access(
        &mut self,
        addr: u64,
        len: u64,
        access: Access,
        data: Option<&[u8]>,
    ) -> Result<Vec<u8>, AccessFault> {
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
            let start = self.find(page).ok_or(refuse(FaultReason::NoArea))?;
            if !self.areas[&start].flags.permits(access) {
                return Err(refuse(FaultReason::Access));
            }
            self.resident.insert(page);
            self.ever.insert(page);
            for i in 0..n {
                match data {
                    Some(d) => {
                        self.bytes.insert(a + i, d[(done + i) as usize]);
                    }
                    None => out.push(self.bytes.get(&(a + i)).copied().unwrap_or(0)),
                }
            }
            done += n;
        }
        Ok(out)
    }
}

/// Page-table frames an x86_64 table needs to map `pages`: the PML4 plus
/// one table per distinct PDPT, PD and PT index prefix.
fn tables_for(pages: &BTreeSet<u64>) -> u64 {
    let distinct = |shift: u32| {
        pages
            .iter()
            .map(|p| p >> shift)
            .collect::<BTreeSet<_>>()
            .len()
    };
    1 + (distinct(27) + distinct(18) + distinct(9)) as u64
}

/// The rights a mapped page of an area with `flags` reads back with
/// (x86_64 cannot deny reads, so `READ` is always there).
fn page_flags(flags: AreaFlags) -> PageFlags {
    let mut f = PageFlags::PRESENT | PageFlags::USER | PageFlags::READ;
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
        t.frames_allocated += s.frames_allocated;
        t.frames_released += s.frames_released;
    }
}

struct World {
    sim: Sim,
    asids: u16,
    /// Frames in use right after `Sim::new` (the kernel's page table).
    baseline: u64,
    spaces: Vec<Arc<Space>>,
    cpus: Vec<Cpu>,
    model: Vec<MSpace>,
    running: [Run; CPUS],
    /// What the last step did, resolved (for the failure trace).
    note: String,
}

type Check = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(format!($($arg)+));
        }
    };
}

impl World {
    fn new(asids: u16, tlb_entries: usize, steps: usize) -> Result<World, String> {
        // Each access maps at most two pages; leave room for page tables.
        let frames = (steps as u64 * 2 + 512).max(1024);
        let sim = Sim::new(SimConfig {
            cpus: CPUS,
            memory: frames * PAGE_SIZE,
            asids,
            tlb_entries,
        })
        .map_err(|e| format!("Sim::new: {e:?}"))?;
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
            model: (0..SPACES).map(|_| MSpace::default()).collect(),
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
        let want = self.model[space].create(base, size, flags);
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
        let (want, got) = match access {
            Access::Read => (
                self.model[space].access(addr, 8, access, None),
                self.cpus[c].read_u64(va).map(|v| v.to_le_bytes().to_vec()),
            ),
            Access::Write => (
                self.model[space].access(addr, 8, access, Some(&bytes)),
                self.cpus[c].write_u64(va, value).map(|()| Vec::new()),
            ),
            Access::Exec => (
                self.model[space].access(addr, 1, access, None),
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
            self.model[space].last_write = Some(addr);
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
        if access == Access::Read && got.is_ok() {
            let m = &self.model[space];
            if [addr, addr + 7]
                .iter()
                .any(|a| m.wiped.contains(&(a / PAGE_SIZE)))
            {
                cov.hit("Read: ok, page whose data was cut before");
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
        let m = &self.model[space];
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
            At::LastWrite if m.last_write.is_some() => m.last_write.expect("checked"),
            At::Area(k) => slot_base(k % SLOTS) + page * PAGE_SIZE + offset,
            At::Slot(s) => slot_base(s) + page * PAGE_SIZE + offset,
            At::LastCut if m.last_cut.is_some() => m.last_cut.expect("checked"),
            At::LastWrite | At::LastCut => slot_base(0) + page * PAGE_SIZE + offset,
        }
    }

    fn step(&mut self, op: &Op, cov: &mut Coverage) -> Check {
        match *op {
            Op::Create {
                space,
                at,
                pages,
                flags,
            } => self.create(
                space,
                self.target(space, at, 0, 0, true) / PAGE_SIZE * PAGE_SIZE,
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
            Op::Resize {
                space,
                at,
                at_page,
                size,
            } => {
                let addr = self.target(space, at, at_page, 0, true);
                let old = self.model[space]
                    .find(addr / PAGE_SIZE)
                    .map(|b| (b, self.model[space].areas[&b].pages));
                let want = self.model[space].resize(addr, size.0);
                let got = self.spaces[space].area_resize(VirtAddr::new(addr), size.0);
                self.note = format!("area_resize({addr:#x}, {:#x}) = {got:?}", size.0);
                ensure!(
                    got == want,
                    "area_resize({addr:#x}, {:#x}): got {got:?}, model expects {want:?}",
                    size.0
                );
                let how = match old {
                    Some((b, o)) if got.is_ok() => {
                        let new = self.model[space].areas[&b].pages;
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
                let want = self.model[space].destroy(addr);
                let got = self.spaces[space].area_destroy(VirtAddr::new(addr));
                self.note = format!("area_destroy({addr:#x}) = {got:?}");
                ensure!(
                    got == want,
                    "area_destroy({addr:#x}): got {got:?}, model expects {want:?}"
                );
                cov.hit(format!("destroy: {got:?}"));
                Ok(())
            }
            Op::ChangeFlags { space, at, flags } => {
                let addr = self.target(space, at, 0, 0, true);
                let want = self.model[space].change_flags(addr, flags.0);
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
                drop(std::mem::replace(&mut self.spaces[space], new));
                self.model[space] = MSpace::default();
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
        }
    }

    /// The user spaces alive now: the model's and those only a CPU still
    /// holds, each once.
    fn live_spaces(&self) -> Vec<(String, Arc<Space>, Option<usize>)> {
        let mut live: Vec<(String, Arc<Space>, Option<usize>)> = self
            .spaces
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("s{i}"), s.clone(), Some(i)))
            .collect();
        for (c, cpu) in self.cpus.iter().enumerate() {
            if let Some(cur) = cpu.current() {
                if !cur.is_kernel() && !live.iter().any(|(_, s, _)| Arc::ptr_eq(s, cur)) {
                    live.push((format!("zombie on cpu{c}"), cur.clone(), None));
                }
            }
        }
        live
    }

    /// Every invariant, after every step.
    fn check(&self) -> Check {
        let hw = self.sim.hardware();
        let stale = hw.stats().stale_accesses;
        ensure!(stale == 0, "{stale} stale TLB accesses");

        let live = self.live_spaces();
        let mut frames_expected = self.baseline;
        let mut owner: BTreeMap<u64, String> = BTreeMap::new();
        for (name, space, idx) in &live {
            let model = idx.map(|i| &self.model[i]);
            let areas = space.areas();
            if let Some(m) = model {
                let got: Vec<(u64, u64, Fl)> = areas
                    .iter()
                    .map(|a| (a.base.as_u64(), a.pages, Fl(a.flags)))
                    .collect();
                let want: Vec<(u64, u64, Fl)> = m
                    .areas
                    .iter()
                    .map(|(&b, a)| (b * PAGE_SIZE, a.pages, Fl(a.flags)))
                    .collect();
                ensure!(
                    got == want,
                    "{name}: areas {got:x?}, model expects {want:x?}"
                );
            }
            let mut in_areas = BTreeSet::new();
            for a in &areas {
                ensure!(
                    a.attrs == AreaAttrs::empty() && a.backend == "anon",
                    "{name}: area {a}: unexpected attributes or backend"
                );
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
                let base = a.base.page().number();
                let mut mapped = BTreeSet::new();
                for n in base..base + a.pages {
                    in_areas.insert(n);
                    let Some((frame, pf)) = space.translate(Page::from_number(n)) else {
                        continue;
                    };
                    mapped.insert(n);
                    ensure!(
                        pf == page_flags(a.flags),
                        "{name}: page {:#x} mapped with {pf:?}, area {a} wants {:?}",
                        n * PAGE_SIZE,
                        page_flags(a.flags)
                    );
                    let refs = hw.frames().refcount(frame);
                    ensure!(
                        refs == 1,
                        "{name}: frame {frame:?} of page {:#x} has {refs} references",
                        n * PAGE_SIZE
                    );
                    if let Some(other) =
                        owner.insert(frame.number(), format!("{name} page {:#x}", n * PAGE_SIZE))
                    {
                        return Err(format!(
                            "frame {frame:?} mapped twice: {other} and {name} page {:#x}",
                            n * PAGE_SIZE
                        ));
                    }
                }
                ensure!(
                    used_pages == mapped,
                    "{name}: area {a}: used space {:x?} != page table {:x?}",
                    used_pages.iter().map(|p| p * PAGE_SIZE).collect::<Vec<_>>(),
                    mapped.iter().map(|p| p * PAGE_SIZE).collect::<Vec<_>>()
                );
                if let Some(m) = model {
                    let want: BTreeSet<u64> =
                        m.resident.range(base..base + a.pages).copied().collect();
                    ensure!(
                        want == mapped,
                        "{name}: area {a}: resident pages {:x?}, model expects {:x?}",
                        mapped.iter().map(|p| p * PAGE_SIZE).collect::<Vec<_>>(),
                        want.iter().map(|p| p * PAGE_SIZE).collect::<Vec<_>>()
                    );
                }
            }
            for n in scanned_pages().filter(|n| !in_areas.contains(n)) {
                ensure!(
                    space.translate(Page::from_number(n)).is_none(),
                    "{name}: page {:#x} is mapped but in no area",
                    n * PAGE_SIZE
                );
            }
            let resident = space.resident_pages();
            let tables = space.page_table_frames();
            if let Some(m) = model {
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
            }
            frames_expected += resident + tables;
        }
        let in_use = self.sim.frames_in_use();
        ensure!(
            in_use == frames_expected,
            "{in_use} frames in use, expected {frames_expected} (kernel {} + spaces' \
             resident pages and page tables)",
            self.baseline
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
                    cur.is_some_and(|s| Arc::ptr_eq(s, &self.spaces[i]))
                        && self.spaces[i].asid() == Some(loaded),
                    "cpu{c} should run s{i} (ASID {:?}), has ASID {} loaded",
                    self.spaces[i].asid(),
                    loaded.0
                ),
                Run::Zombie => ensure!(
                    cur.is_some_and(|s| !s.is_kernel()
                        && !self.spaces.iter().any(|m| Arc::ptr_eq(m, s))
                        && s.asid() == Some(loaded)),
                    "cpu{c} should run a replaced space with its ASID loaded ({})",
                    loaded.0
                ),
            }
        }
        for (name, space, _) in &live {
            let mut want = CpuSet::EMPTY;
            for (c, cpu) in self.cpus.iter().enumerate() {
                if cpu.current().is_some_and(|s| Arc::ptr_eq(s, space)) {
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

    /// Drops everything; nothing may be left behind.
    fn teardown(self, spaces_first: bool, cov: &mut Coverage) -> Check {
        let World {
            sim,
            asids,
            baseline,
            spaces,
            cpus,
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
        ensure!(
            stats.frames_allocated == stats.frames_released,
            "{} frames allocated for mappings, {} released",
            stats.frames_allocated,
            stats.frames_released
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
    let mut world = World::new(case.asids, case.tlb_entries, steps)?;
    world.check().map_err(|e| format!("initially: {e}"))?;
    for (i, op) in case.ops.iter().enumerate() {
        world.note.clear();
        let result = world.step(op, cov).and_then(|()| world.check());
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
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        ..ProptestConfig::default()
    };
    let cov = RefCell::new(Coverage::default());
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
                "model test failed (ASPACE_MODEL_SEED={seed} ASPACE_MODEL_CASES={cases} \
                 ASPACE_MODEL_STEPS={steps}).\n{reason}\nMinimal failing case:\n{case:#?}\n\
                 Replay of it, step by step as resolved (replay result: {again:?}):\n{}",
                trace.join("\n")
            )
        }
        Err(TestError::Abort(why)) => panic!("model test aborted: {why}"),
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
    if cases >= 256 && steps >= 60 {
        let must = [
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
        ];
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
