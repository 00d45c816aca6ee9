//! Random sequences of area creation (plain, guarded, growing down),
//! sharing, splits, merges and range operations (`unmap_range`,
//! `protect_range`, `move_range` and its variants that grow by an area of
//! the caller's or leave the old range mapped, `discard_range` and
//! `discard_ranges_where`) on two
//! address spaces,
//! checked after every step against a page-level reference model: page ->
//! (rights, backing, backing index, data), and the guarded areas by base.
//! Accesses to a guard page fault, or grow the area down over it, as the
//! model says. CPUs touch pages between operations; data is read back through
//! the simulated MMU, every TLB is checked for stale entries, the used
//! space against the page table, the reservation against the model (areas
//! reserve up front, late, or late until given write), and
//! at the end every frame and reservation must be back. Seeds are fixed;
//! `ASPACE_SEED` replays one, and a failure prints its seed and step.

use aspace::TryArc;
use std::collections::{BTreeMap, HashMap};

use aspace::backend::elf::{ElfBackend, ElfImage, Segment};
use aspace::{
    AreaAttrs, AreaFlags, Cpus, Error, FaultReason, Page, PageFlags, VirtAddr, PAGE_SIZE,
};
use aspace_sim::{Cpu, Sim, SimConfig, Space, SpaceHandle};

mod common;

const P: u64 = PAGE_SIZE;
/// The window the test works in: pages [W, W + N) of each space.
const W: u64 = 0x1000;
const N: u64 = 48;
const FILE_PAGES: u64 = 8;

const RW: AreaFlags = AreaFlags::READ.union(AreaFlags::WRITE);
const R: AreaFlags = AreaFlags::READ;
const RIGHTS: [AreaFlags; 3] = [R, RW, AreaFlags::empty()];

fn va(page: u64) -> VirtAddr {
    VirtAddr::new(page * P)
}

/// Where a page's contents come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backing {
    /// Private anonymous memory, with the word at its start.
    Anon(u64),
    /// Shared anonymous memory: share group, index in it.
    Shared(usize, u64),
    /// The file, read-only: page index in the ELF segment (which starts at
    /// file page `first`, and is `pages` long).
    Elf { first: u64, pages: u64, index: u64 },
}

#[derive(Clone, Copy, Debug)]
struct PageModel {
    rights: AreaFlags,
    backing: Backing,
    /// How its area reserves memory.
    late: Late,
}

/// How an area reserves memory for its anonymous pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Late {
    /// Every page, up front.
    No,
    /// Each page while it is mapped (`LATE_RESERVE`).
    Yes,
    /// So until the area is given write, then up front
    /// (`LATE_RESERVE | RESERVE_ON_WRITE`).
    UntilWrite,
}

impl Late {
    fn flags(self) -> AreaFlags {
        match self {
            Late::No => AreaFlags::empty(),
            Late::Yes => AreaFlags::LATE_RESERVE,
            Late::UntilWrite => AreaFlags::LATE_RESERVE | AreaFlags::RESERVE_ON_WRITE,
        }
    }
}

/// A guarded area (its guard page is the page below `base`, the key it is
/// kept under). Only the part holding the base keeps the guard: a split,
/// cut or move of any other part makes a plain area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Guarded {
    /// For an area that grows down, the lowest page it may grow to: its
    /// end less its growth limit, which splits, merges and cuts of its
    /// upper pages keep (each changes the limit by the pages its end
    /// moves). `None` for a guard that never grows.
    floor: Option<u64>,
}

#[derive(Default)]
struct Model {
    /// Per space: page number -> page.
    pages: [BTreeMap<u64, PageModel>; 2],
    /// Per space: base page -> guarded area.
    guards: [BTreeMap<u64, Guarded>; 2],
    /// Share group -> (size in pages, index -> word).
    groups: HashMap<usize, (u64, HashMap<u64, u64>)>,
}

impl Model {
    /// Whether no page of `[s, e)` is in an area or is an area's guard page.
    fn free(&self, sp: usize, s: u64, e: u64) -> bool {
        self.pages[sp].range(s..e).next().is_none()
            && self.guards[sp].range(s + 1..e + 1).next().is_none()
    }
    /// Whether a new area may take `[s, e)`: free, and with a guard page
    /// (`guarded`) the page below it in no area.
    fn fits(&self, sp: usize, s: u64, e: u64, guarded: bool) -> bool {
        self.free(sp, s, e) && !(guarded && self.pages[sp].contains_key(&(s - 1)))
    }
    /// An access to page `g`, in no area: `NoArea`, or `Guard` for a guard
    /// page, unless its area grows down over it (within its floor, with
    /// the rights for the access, the page below free): then `Ok`, and the
    /// page is the area's new base, anonymous and zero.
    fn guard_fault(&mut self, sp: usize, g: u64, write: bool) -> Result<(), FaultReason> {
        let Some(&guard) = self.guards[sp].get(&(g + 1)) else {
            return Err(FaultReason::NoArea);
        };
        match guard.floor {
            Some(floor) if g >= floor && g > 0 => {}
            _ => return Err(FaultReason::Guard),
        }
        let PageModel { rights, late, .. } = self.pages[sp][&(g + 1)];
        let need = if write {
            AreaFlags::WRITE
        } else {
            AreaFlags::READ
        };
        if !rights.contains(need) {
            return Err(FaultReason::Access);
        }
        if self.pages[sp].contains_key(&(g - 1)) {
            return Err(FaultReason::Guard);
        }
        let backing = Backing::Anon(0);
        self.pages[sp].insert(
            g,
            PageModel {
                rights,
                backing,
                late,
            },
        );
        self.guards[sp].remove(&(g + 1));
        self.guards[sp].insert(g, guard);
        Ok(())
    }
    fn covered(&self, sp: usize, s: u64, e: u64) -> bool {
        self.pages[sp].range(s..e).count() as u64 == e - s
    }
    /// The word a read of `p` returns.
    fn word(&self, p: &PageModel) -> u64 {
        match p.backing {
            Backing::Anon(w) => w,
            Backing::Shared(g, i) => self.groups[&g].1.get(&i).copied().unwrap_or(0),
            Backing::Elf {
                first,
                pages,
                index,
            } => {
                if index < pages && first + index < FILE_PAGES {
                    file_word(first + index)
                } else {
                    0
                }
            }
        }
    }
    /// Pages reserved up front: a private anonymous page each (but in a
    /// late-reserving area, which the caller counts by its mapped pages),
    /// a live share group's size, an ELF page past the segment's file part
    /// (a copy).
    fn reserved(&self) -> u64 {
        let mut n = 0;
        let mut live = std::collections::HashSet::new();
        for sp in &self.pages {
            for p in sp.values() {
                match p.backing {
                    Backing::Anon(_) => n += u64::from(p.late == Late::No),
                    Backing::Shared(g, _) => {
                        live.insert(g);
                    }
                    Backing::Elf { pages, index, .. } => n += u64::from(index >= pages),
                }
            }
        }
        n + live.iter().map(|g| self.groups[g].0).sum::<u64>()
    }
}

fn file_word(page: u64) -> u64 {
    0xf11e_0000 + page
}

fn file() -> Vec<u8> {
    let mut f = vec![0u8; (FILE_PAGES * P) as usize];
    for i in 0..FILE_PAGES {
        f[(i * P) as usize..][..8].copy_from_slice(&file_word(i).to_le_bytes());
    }
    f
}

struct Rng(common::XorShift);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }
    fn range(&mut self) -> (u64, u64) {
        let s = W + self.below(N);
        let len = 1 + self.below(8.min(W + N - s));
        (s, s + len)
    }
    fn short_range(&mut self) -> (u64, u64) {
        let s = W + self.below(N);
        let len = 1 + self.below(3.min(W + N - s));
        (s, s + len)
    }
}

struct World {
    sim: Sim,
    spaces: [SpaceHandle; 2],
    /// CPU 0 and 2 run space 0, CPU 1 space 1.
    cpus: Vec<Cpu>,
    image: TryArc<ElfImage>,
    model: Model,
    next_group: usize,
    /// Operations that did something, by kind (so a run that tested
    /// nothing fails).
    done: HashMap<&'static str, u64>,
    /// How each new area reserves: drawn apart from the operations' own
    /// stream, which stays as it was before areas reserved late.
    late_rng: common::XorShift,
}

impl World {
    fn new() -> Self {
        let sim = Sim::new(SimConfig {
            arch: common::arch(),
            cpus: 3,
            asids: 4,
            memory: 8 << 20,
            tlb_entries: 32,
        })
        .unwrap();
        let spaces = [
            sim.system().create().unwrap(),
            sim.system().create().unwrap(),
        ];
        let mut cpus: Vec<Cpu> = (0..3).map(|c| sim.cpu(c)).collect();
        cpus[0].switch_to(&spaces[0]).unwrap();
        cpus[1].switch_to(&spaces[1]).unwrap();
        cpus[2].switch_to(&spaces[0]).unwrap();
        let image = ElfImage::load(sim.system().machine(), &file()).unwrap();
        World {
            sim,
            spaces,
            cpus,
            image,
            model: Model::default(),
            next_group: 0,
            done: HashMap::new(),
            late_rng: common::XorShift::new(1),
        }
    }

    /// The CPU an operation on space `sp` runs on.
    fn cpu_of(&self, sp: usize) -> &Cpu {
        &self.cpus[if sp == 0 { 0 } else { 1 }]
    }

    fn step(&mut self, rng: &mut Rng) -> String {
        let sp = rng.below(2) as usize;
        let space = self.spaces[sp].clone();
        match rng.below(15) {
            0..=2 => {
                let (s, e) = rng.range();
                let mut rights = RIGHTS[rng.below(3) as usize];
                let mut late = Late::No;
                let size = (e - s) * P;
                let (kind, r, guard) = match rng.below(6) {
                    0 => {
                        let r = space.area_create(va(s), size, rights | AreaFlags::GUARD);
                        ("guarded", r, Some(Guarded { floor: None }))
                    }
                    1 => {
                        // Mostly a writable stack, which writes grow.
                        if rng.below(2) == 0 {
                            rights = RW;
                        }
                        let limit = e - s + rng.below(8);
                        let r = space.area_create_grows_down(va(s), size, limit * P, rights);
                        let floor = Some(e - limit);
                        ("grows-down", r, Some(Guarded { floor }))
                    }
                    _ => {
                        // A quarter late-reserving, a quarter reserving on
                        // write (or late, if writable already).
                        late = match self.late_rng.below(4) {
                            0 => Late::Yes,
                            1 if !rights.contains(AreaFlags::WRITE) => Late::UntilWrite,
                            1 => Late::Yes,
                            _ => Late::No,
                        };
                        let r = space.area_create(va(s), size, rights | late.flags());
                        ("create", r, None)
                    }
                };
                if self.model.fits(sp, s, e, guard.is_some()) {
                    r.unwrap();
                    for p in s..e {
                        let backing = Backing::Anon(0);
                        let page = PageModel {
                            rights,
                            backing,
                            late,
                        };
                        self.model.pages[sp].insert(p, page);
                    }
                    if let Some(guard) = guard {
                        self.model.guards[sp].insert(s, guard);
                    }
                } else {
                    assert_eq!(r, Err(Error::AddressNotAvailable), "{kind}");
                }
                format!("{kind} {sp} {s:#x}..{e:#x} {rights:?} {late:?}")
            }
            3 => {
                let (s, e) = rng.range();
                let first = rng.below(FILE_PAGES);
                let pages = e - s;
                let seg = Segment {
                    vaddr: s * P,
                    memsz: pages * P,
                    filesz: pages.min(FILE_PAGES - first) * P,
                    offset: first * P,
                    flags: R,
                };
                let backend =
                    TryArc::try_backend(ElfBackend::new(self.image.clone(), seg)).unwrap();
                let r = space.area_create_with(va(s), pages * P, R, AreaAttrs::empty(), backend);
                if self.model.free(sp, s, e) {
                    r.unwrap();
                    let filed = pages.min(FILE_PAGES - first);
                    for (i, p) in (s..e).enumerate() {
                        let backing = Backing::Elf {
                            first,
                            pages: filed,
                            index: i as u64,
                        };
                        let page = PageModel {
                            rights: R,
                            backing,
                            late: Late::No,
                        };
                        self.model.pages[sp].insert(p, page);
                    }
                } else {
                    assert_eq!(r, Err(Error::AddressNotAvailable));
                }
                format!("elf {sp} {s:#x}..{e:#x} file page {first}")
            }
            4 => {
                // A shared area: created in space 0, shared into space 1.
                let (s, e) = rng.range();
                let d = W + rng.below(N - (e - s));
                let (de, pages) = (d + e - s, e - s);
                if !self.model.free(0, s, e) || !self.model.free(1, d, de) {
                    return "share skipped".into();
                }
                self.spaces[0].area_create(va(s), pages * P, RW).unwrap();
                self.spaces[0]
                    .area_share(va(s), pages * P, &self.spaces[1], va(d), RW)
                    .unwrap();
                let g = self.next_group;
                self.next_group += 1;
                self.model.groups.insert(g, (pages, HashMap::new()));
                for i in 0..pages {
                    let page = PageModel {
                        rights: RW,
                        backing: Backing::Shared(g, i),
                        late: Late::No,
                    };
                    self.model.pages[0].insert(s + i, page);
                    self.model.pages[1].insert(d + i, page);
                }
                format!("share {s:#x}..{e:#x} -> {d:#x}")
            }
            5 | 6 => {
                let p = W + rng.below(N);
                let r = self.cpu_of(sp).run(|| space.area_split(va(p)));
                if self.model.pages[sp].contains_key(&p) {
                    r.unwrap();
                    *self.done.entry("split").or_default() += 1;
                } else {
                    assert_eq!(r, Err(Error::NotFound));
                }
                format!("split {sp} {p:#x}")
            }
            7 => {
                // Mostly an area's first page, which a split may have made.
                let areas = space.areas();
                let p = match areas.get(rng.below(areas.len() as u64 + 1) as usize) {
                    Some(a) => a.base.page().number(),
                    None => W + rng.below(N),
                };
                let r = self.cpu_of(sp).run(|| space.area_merge(va(p)));
                if self.model.pages[sp].contains_key(&p) {
                    if r.unwrap() {
                        *self.done.entry("merge").or_default() += 1;
                    }
                } else {
                    assert_eq!(r, Err(Error::NotFound));
                }
                format!("merge {sp} {p:#x}")
            }
            8 => {
                let (s, e) = rng.range();
                self.cpu_of(sp)
                    .run(|| space.unmap_range(va(s), (e - s) * P))
                    .unwrap();
                let gone: Vec<u64> = self.model.pages[sp].range(s..e).map(|(&p, _)| p).collect();
                if !gone.is_empty() {
                    *self.done.entry("unmap").or_default() += 1;
                }
                for p in gone {
                    self.model.pages[sp].remove(&p);
                }
                // An area that lost its base lost its guard.
                self.model.guards[sp].retain(|&base, _| !(s..e).contains(&base));
                format!("unmap {sp} {s:#x}..{e:#x}")
            }
            9 | 10 => {
                let (s, e) = rng.short_range();
                let rights = RIGHTS[rng.below(3) as usize];
                // Now and then the whole range may go back to reserving
                // late (drawn apart, as how areas reserve).
                let release = self.late_rng.below(3) == 0;
                let ranges = [(va(s), (e - s) * P)];
                let ranges = if release { &ranges[..] } else { &[] };
                let r = self
                    .cpu_of(sp)
                    .run(|| space.protect_range_releasing(va(s), (e - s) * P, rights, ranges));
                let m = &mut self.model.pages[sp];
                if m.range(s..e).count() as u64 != e - s {
                    assert_eq!(r, Err(Error::NotFound));
                } else if m
                    .range(s..e)
                    .any(|(_, p)| matches!(p.backing, Backing::Elf { .. }))
                {
                    assert_eq!(r, Err(Error::NotSupported));
                } else {
                    r.unwrap();
                    *self.done.entry("protect").or_default() += 1;
                    let (mut converted, mut released) = (false, false);
                    for (_, p) in m.range_mut(s..e) {
                        p.rights = rights;
                        // Given write: up front from now on.
                        if rights.contains(AreaFlags::WRITE) && p.late == Late::UntilWrite {
                            p.late = Late::No;
                            converted = true;
                        }
                        // Released without write: late until given write.
                        let private = !matches!(p.backing, Backing::Shared(..));
                        if release
                            && private
                            && p.late == Late::No
                            && !rights.contains(AreaFlags::WRITE)
                        {
                            p.late = Late::UntilWrite;
                            released = true;
                        }
                    }
                    if converted {
                        *self.done.entry("reserve on write").or_default() += 1;
                    }
                    if released {
                        *self.done.entry("released to reserve on write").or_default() += 1;
                    }
                }
                let how = if release { " releasing" } else { "" };
                format!("protect{how} {sp} {s:#x}..{e:#x} {rights:?}")
            }
            11 if rng.below(2) == 0 => {
                // Only the mapped pages whose frame is odd, holes skipped.
                let (s, e) = rng.short_range();
                let frames: Vec<(u64, u64)> = (s..e)
                    .filter_map(|n| {
                        let (f, _) = space.translate(Page::from_number(n))?;
                        Some((n, f.number()))
                    })
                    .collect();
                let odd: Vec<u64> = frames
                    .iter()
                    .filter(|&&(_, f)| f % 2 == 1)
                    .map(|&(n, _)| n)
                    .collect();
                let (mut asked, mut then) = (0, 0);
                self.cpu_of(sp)
                    .run(|| {
                        space.discard_ranges_where(
                            &[(va(s), (e - s) * P)],
                            |_, f| {
                                asked += 1;
                                f.number() % 2 == 1
                            },
                            || then += 1,
                        )
                    })
                    .unwrap();
                assert_eq!(then, 1, "the hook once");
                assert_eq!(asked, frames.len(), "asked of each mapped page once");
                *self.done.entry("discard where").or_default() += 1;
                for n in odd {
                    if let Some(PageModel {
                        backing: Backing::Anon(w),
                        ..
                    }) = self.model.pages[sp].get_mut(&n)
                    {
                        *w = 0;
                    }
                }
                format!("discard odd frames {sp} {s:#x}..{e:#x}")
            }
            11 => {
                let (s, e) = rng.short_range();
                let r = self
                    .cpu_of(sp)
                    .run(|| space.discard_range(va(s), (e - s) * P));
                if self.model.covered(sp, s, e) {
                    r.unwrap();
                    *self.done.entry("discard").or_default() += 1;
                    for (_, p) in self.model.pages[sp].range_mut(s..e) {
                        if let Backing::Anon(w) = &mut p.backing {
                            *w = 0;
                        }
                    }
                } else {
                    assert_eq!(r, Err(Error::NotFound));
                }
                format!("discard {sp} {s:#x}..{e:#x}")
            }
            12 | 13 => self.moves(sp, rng),
            _ => {
                // Writes: a few words through a CPU of the space.
                let mut done = String::from("writes");
                for _ in 0..4 {
                    // Now and then a guard page (where a stack grows).
                    let guards: Vec<u64> = self.model.guards[sp].keys().copied().collect();
                    let p = match guards.get(rng.below(2 * guards.len() as u64 + 1) as usize) {
                        Some(&base) => base - 1,
                        None => W + rng.below(N),
                    };
                    let value = rng.below(1 << 40) + 1;
                    let cpu = if sp == 0 {
                        2 * rng.below(2) as usize
                    } else {
                        1
                    };
                    let r = self.cpus[cpu].write_u64(va(p), value);
                    done += &format!(" {sp}:{p:#x}={value:#x}");
                    if !self.model.pages[sp].contains_key(&p) {
                        if let Err(reason) = self.model.guard_fault(sp, p, true) {
                            assert_eq!(r.unwrap_err().reason, reason, "{done}");
                            self.count_fault(reason);
                            continue;
                        }
                        *self.done.entry("grow (write)").or_default() += 1;
                        done += " (grew)";
                    }
                    match self.model.pages[sp].get_mut(&p) {
                        None => unreachable!("a page in no area was handled above"),
                        Some(m) if !m.rights.contains(AreaFlags::WRITE) => {
                            assert_eq!(r.unwrap_err().reason, FaultReason::Access)
                        }
                        Some(m) => {
                            r.unwrap();
                            match &mut m.backing {
                                Backing::Anon(w) => *w = value,
                                Backing::Shared(g, i) => {
                                    let (g, i) = (*g, *i);
                                    self.model.groups.get_mut(&g).unwrap().1.insert(i, value);
                                }
                                Backing::Elf { .. } => unreachable!("ELF areas are read-only"),
                            }
                        }
                    }
                }
                done
            }
        }
    }

    /// A move of part of an area to a random place, resized.
    fn moves(&mut self, sp: usize, rng: &mut Rng) -> String {
        let space = self.spaces[sp].clone();
        let p = W + rng.below(N);
        let Some(info) = space.area(va(p)) else {
            return "move skipped".into();
        };
        let (start, end) = (info.base.page().number(), info.end().page().number());
        // Half the time from the area's base (which takes a guard along).
        let os = if rng.below(2) == 0 {
            start
        } else {
            start + rng.below(end - start)
        };
        // A quarter of the time on past the area's end: several areas (and
        // the holes between them) move together.
        // A fifth of the time up to the end of the next area: several
        // areas (and the hole between them) move together.
        let next_end = space
            .areas()
            .iter()
            .map(|a| (a.base.page().number(), a.end().page().number()))
            .find(|&(s, _)| s >= end)
            .map(|(_, e)| e);
        // (Not for a guarded area: its moves are rarer.)
        let span =
            next_end.is_some() && !self.model.guards[sp].contains_key(&start) && rng.below(5) == 0;
        let oe = match next_end {
            Some(e) if span => e,
            _ => os + 1 + rng.below(end - os),
        };
        let old = oe - os;
        // Half of those keep their size (several areas do not shrink).
        let new_pages = if span && rng.below(2) == 0 {
            old
        } else {
            1 + rng.below(8)
        };
        // A fifth of the moves keep their size and leave the old range
        // mapped, empty (`move_range_leaving`); half of those leave areas
        // of the caller's there (`move_range_leaving_as`).
        let leave = rng.below(5) == 0;
        let given = leave && rng.below(2) == 0;
        let new_pages = if leave { old } else { new_pages };
        let ns = W + rng.below(N - new_pages + 1);
        let ne = ns + new_pages;
        // The areas after the first one in the old range.
        let others: Vec<u64> = space
            .areas()
            .iter()
            .map(|a| a.base.page().number())
            .filter(|&s| s >= end && s < oe)
            .collect();
        // A third of the growths are a new anonymous area of their own
        // (`move_range_growing`), with rights of their own.
        let growth = (new_pages > old && rng.below(3) == 0).then(|| aspace::replace::Replacement {
            base: va(ns + old),
            size: (new_pages - old) * P,
            flags: RIGHTS[rng.below(RIGHTS.len() as u64) as usize],
            attrs: AreaAttrs::empty(),
            backend: TryArc::into_backend(TryArc::new(aspace::backend::AnonBackend)),
        });
        // The caller's areas: one per area's part, with its rights.
        let rights = AreaFlags::READ | AreaFlags::WRITE | AreaFlags::EXEC;
        let left: Vec<_> = space
            .areas()
            .iter()
            .map(|a| (a.base.page().number(), a.end().page().number(), a.flags))
            .filter(|&(s, e, _)| s < oe && e > os)
            .map(|(s, e, flags)| {
                let (s, e) = (s.max(os), e.min(oe));
                aspace::replace::Replacement {
                    base: va(s),
                    size: (e - s) * P,
                    flags: flags & rights,
                    attrs: AreaAttrs::empty(),
                    backend: TryArc::into_backend(TryArc::new(aspace::backend::AnonBackend)),
                }
            })
            .collect();
        let r = self.cpu_of(sp).run(|| match &growth {
            Some(g) => space.move_range_growing(va(os), old * P, va(ns), g, false),
            None if given => space.move_range_leaving_as(va(os), old * P, va(ns), false, &left),
            None if leave => space.move_range_leaving(va(os), old * P, va(ns), false),
            None => space.move_range(va(os), old * P, va(ns), new_pages * P),
        });
        let m = &self.model.pages[sp];
        // A resize is the last page's area's.
        let shared = matches!(
            m.get(&(oe - 1)).map(|p| p.backing),
            Some(Backing::Shared(..))
        );
        let guards = &self.model.guards[sp];
        // The part holding a guarded area's base takes the guard along.
        let guard = if os == start {
            guards.get(&os).copied()
        } else {
            None
        };
        let grows_down = guards.get(&start).is_some_and(|g| g.floor.is_some());
        let multi = !others.is_empty();
        let grown = growth.as_ref().map(|g| g.flags);
        let how = match (grown, leave, given) {
            (Some(_), _, _) => " growing",
            (_, true, true) => " leaving the caller's areas",
            (_, true, false) => " leaving",
            _ => "",
        };
        let is_shared = |p: u64| matches!(m.get(&p).map(|p| p.backing), Some(Backing::Shared(..)));
        let others_shared = others.iter().any(|&s| is_shared(s));
        let desc = format!("move{how} {sp} {os:#x}..{oe:#x} -> {ns:#x}..{ne:#x}");
        if oe > end && !multi {
            assert_eq!(r, Err(Error::NotFound), "{desc}");
        } else if multi
            && (new_pages < old
                || others.iter().any(|s| guards.contains_key(s))
                || (leave && others_shared))
        {
            assert_eq!(r, Err(Error::NotSupported), "{desc}");
        } else if multi && new_pages != old && !m.contains_key(&(oe - 1)) {
            assert_eq!(r, Err(Error::NotFound), "{desc}");
        } else if ns < oe && os < ne {
            assert_eq!(r, Err(Error::AddressNotAvailable), "{desc}");
        } else if (multi && grows_down) || (shared && new_pages != old && grown.is_none()) {
            assert_eq!(r, Err(Error::NotSupported), "{desc}");
        } else if !self.model.fits(sp, ns, ne, guard.is_some()) {
            assert_eq!(r, Err(Error::AddressNotAvailable), "{desc}");
        } else if leave && (guards.contains_key(&start) || is_shared(os)) {
            // A guarded or growing-down area, or a shared one, leaves no
            // area behind.
            assert_eq!(r, Err(Error::NotSupported), "{desc}");
        } else {
            r.unwrap();
            *self.done.entry("move").or_default() += 1;
            if multi {
                *self.done.entry("move of several areas").or_default() += 1;
            }
            if grown.is_some() {
                *self.done.entry("move growing by a new area").or_default() += 1;
            }
            if leave {
                *self.done.entry("move leaving").or_default() += 1;
            }
            let moved: Vec<Option<PageModel>> = (os..oe).map(|p| m.get(&p).copied()).collect();
            let m = &mut self.model.pages[sp];
            for p in os..oe {
                m.remove(&p);
            }
            for i in 0..new_pages {
                let page = match moved.get(i as usize) {
                    Some(&Some(page)) => page,
                    // A hole stays one.
                    Some(None) => continue,
                    // A growth of its own: new, empty memory.
                    None if grown.is_some() => PageModel {
                        rights: grown.expect("checked"),
                        backing: Backing::Anon(0),
                        late: Late::No,
                    },
                    // Growth continues the backing past the last page.
                    None => {
                        let last = moved.last().copied().flatten().expect("checked");
                        let beyond = i - old + 1;
                        let backing = match last.backing {
                            Backing::Anon(_) => Backing::Anon(0),
                            Backing::Elf {
                                first,
                                pages,
                                index,
                            } => Backing::Elf {
                                first,
                                pages,
                                index: index + beyond,
                            },
                            Backing::Shared(..) => unreachable!(),
                        };
                        PageModel {
                            rights: last.rights,
                            backing,
                            late: last.late,
                        }
                    }
                };
                m.insert(ns + i, page);
            }
            if leave {
                // The old range's pages in areas stay, empty: a file's
                // pages read from the file again (the left area keeps the
                // backend), the caller's areas are anonymous.
                for (i, page) in moved.iter().enumerate() {
                    let Some(page) = page else { continue };
                    let backing = match page.backing {
                        Backing::Elf { .. } if !given => page.backing,
                        _ => Backing::Anon(0),
                    };
                    // The caller's areas reserve up front.
                    let late = if given { Late::No } else { page.late };
                    let rights = page.rights;
                    m.insert(
                        os + i as u64,
                        PageModel {
                            rights,
                            backing,
                            late,
                        },
                    );
                }
            }
            if let Some(guard) = guard {
                *self.done.entry("guarded move").or_default() += 1;
                // The moved part's limit: the pages up to its old end from
                // the floor, at least its new size (its old one when the
                // growth is an area of its own).
                let (top, size) = match grown {
                    Some(_) => (ns + old, old),
                    None => (ne, new_pages),
                };
                let floor = guard.floor.map(|f| top - (oe - f).max(size));
                self.model.guards[sp].remove(&os);
                self.model.guards[sp].insert(ns, Guarded { floor });
            }
        }
        desc
    }

    /// CPUs touch random pages (to fill their TLBs), faults as the model says.
    fn touch(&mut self, rng: &mut Rng) {
        for _ in 0..6 {
            let cpu = rng.below(3) as usize;
            let sp = usize::from(cpu == 1);
            let p = W + rng.below(N);
            let r = self.cpus[cpu].read_u64(va(p));
            self.expect_read(sp, p, r);
        }
    }

    /// Counts a fault on a guard page (of an area that could not grow, or
    /// without the right).
    fn count_fault(&mut self, reason: FaultReason) {
        if reason != FaultReason::NoArea {
            *self.done.entry("guard fault").or_default() += 1;
        }
    }

    /// Checks the read `r` of page `p` of space `sp` against the model,
    /// which grows a grows-down area where the read did.
    fn expect_read(&mut self, sp: usize, p: u64, r: Result<u64, aspace_sim::AccessFault>) {
        if !self.model.pages[sp].contains_key(&p) {
            match self.model.guard_fault(sp, p, false) {
                Err(reason) => {
                    assert_eq!(r.unwrap_err().reason, reason, "space {sp} page {p:#x}");
                    self.count_fault(reason);
                    return;
                }
                Ok(()) => *self.done.entry("grow (read)").or_default() += 1,
            }
        }
        match self.model.pages[sp].get(&p) {
            None => unreachable!("a page in no area was handled above"),
            // x86_64 cannot deny loads of a present page (see its page
            // table's documentation): a write-only or execute-only page
            // that is resident still reads there (one with no right at all
            // is kept not present, and faults).
            Some(m) if !m.rights.contains(AreaFlags::READ) => match r {
                Ok(w)
                    if common::arch() == aspace_sim::Arch::X86_64
                        && m.rights.intersects(AreaFlags::WRITE | AreaFlags::EXEC) =>
                {
                    assert_eq!(w, self.model.word(m), "space {sp} page {p:#x}")
                }
                r => assert_eq!(r.unwrap_err().reason, FaultReason::Access, "page {p:#x}"),
            },
            Some(m) => assert_eq!(r.unwrap(), self.model.word(m), "space {sp} page {p:#x}"),
        }
    }

    /// Everything the model says, without touching memory (no fault).
    fn check(&self) {
        // Pages mapped in late-reserving areas: one page reserved each.
        let mut late_mapped = 0;
        for sp in 0..2 {
            let s = &self.spaces[sp];
            for p in W..W + N {
                let info = s.area(va(p));
                let mapped = s.translate(Page::from_number(p));
                match self.model.pages[sp].get(&p) {
                    None => {
                        assert!(info.is_none(), "space {sp} page {p:#x}: an area {info:?}");
                        assert!(mapped.is_none());
                    }
                    Some(m) => {
                        let info =
                            info.unwrap_or_else(|| panic!("space {sp} page {p:#x}: no area"));
                        let rights = info.flags - AreaFlags::PLACEMENT - Late::UntilWrite.flags();
                        assert_eq!(rights, m.rights, "space {sp} page {p:#x}");
                        assert_eq!(
                            info.flags & Late::UntilWrite.flags(),
                            m.late.flags(),
                            "space {sp} page {p:#x}: how its area reserves"
                        );
                        if m.late != Late::No && matches!(m.backing, Backing::Anon(_)) {
                            late_mapped += u64::from(mapped.is_some());
                        }
                        let index = info.page_index(Page::from_number(p));
                        match m.backing {
                            Backing::Anon(_) => assert_eq!(info.backend, "anon"),
                            Backing::Shared(_, i) => {
                                assert!(info.shared);
                                assert_eq!(index, i, "space {sp} page {p:#x}");
                            }
                            Backing::Elf { index: i, .. } => {
                                assert_eq!(info.backend, "elf");
                                assert_eq!(index, i, "space {sp} page {p:#x}");
                            }
                        }
                        // Used space exactly when mapped.
                        let used = s.used_space(va(p)).unwrap();
                        assert_eq!(used.contains(Page::from_number(p)), mapped.is_some());
                        if let Some((_, flags)) = mapped {
                            assert_eq!(
                                flags.contains(PageFlags::WRITE),
                                m.rights.contains(AreaFlags::WRITE),
                                "space {sp} page {p:#x}"
                            );
                        }
                    }
                }
            }
            // Areas are maximal only as far as merges ran; but they never
            // overlap, and every area is in the model.
            let areas = s.areas();
            for w in areas.windows(2) {
                assert!(w[0].end() <= w[1].base);
            }
            // The guarded areas are the model's, by base, each growing
            // down exactly when the model's does, as far (its end less its
            // growth limit is the model's floor).
            let guarded: BTreeMap<u64, Guarded> = areas
                .iter()
                .filter(|a| a.flags.intersects(AreaFlags::PLACEMENT))
                .map(|a| {
                    assert!(a.flags.contains(AreaFlags::GUARD), "{a:?}");
                    let end = a.end().page().number();
                    let floor = a
                        .flags
                        .contains(AreaFlags::GROWS_DOWN)
                        .then(|| end - a.grow_limit);
                    (a.base.page().number(), Guarded { floor })
                })
                .collect();
            assert_eq!(
                guarded, self.model.guards[sp],
                "space {sp}: guarded areas (base, floor)"
            );
            no_stale(&self.sim, s);
        }
        assert_eq!(
            self.sim.system().reserve().committed(),
            self.model.reserved() + late_mapped,
            "reservation"
        );
        assert_eq!(self.sim.hardware().stats().stale_accesses, 0);
    }

    /// Reads every page of both spaces through the MMU.
    fn read_all(&mut self) {
        for p in W..W + N {
            let r = self.cpus[2].read_u64(va(p));
            self.expect_read(0, p, r);
            let r = self.cpus[1].read_u64(va(p));
            self.expect_read(1, p, r);
        }
    }
}

/// Every TLB entry of `space`'s ASID names what the page table maps, with
/// no more rights.
fn no_stale(sim: &Sim, space: &Space) {
    let Some(asid) = space.asid() else { return };
    let hw = sim.hardware();
    for cpu in 0..hw.cpu_count() {
        for e in hw.tlb_entries(cpu) {
            if e.asid != asid || e.global {
                continue;
            }
            match space.translate(e.page) {
                Some((frame, flags)) => {
                    assert_eq!(frame, e.frame, "CPU {cpu}: stale {e:?}");
                    assert!(
                        !e.writable || flags.contains(PageFlags::WRITE),
                        "CPU {cpu}: {e:?}"
                    );
                }
                None => panic!("CPU {cpu}: TLB entry {e:?} of an unmapped page"),
            }
        }
    }
}

/// Runs `steps` random steps from `seed`; what succeeded, by kind.
fn run(seed: u64, steps: usize) -> HashMap<&'static str, u64> {
    let baseline = Sim::new(SimConfig {
        arch: common::arch(),
        cpus: 1,
        asids: 1,
        memory: 8 << 20,
        tlb_entries: 32,
    })
    .unwrap()
    .frames_in_use();
    let mut w = World::new();
    w.late_rng = common::XorShift::new(seed ^ 0x1a7e);
    let mut rng = Rng(common::XorShift::new(seed));
    let mut log: Vec<String> = Vec::new();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for step in 0..steps {
            let what = w.step(&mut rng);
            log.push(what);
            w.check();
            w.touch(&mut rng);
            if step % 16 == 15 {
                w.read_all();
            }
        }
        w.read_all();
        w.check();
    }));
    if let Err(e) = outcome {
        let tail = log.len().saturating_sub(12);
        eprintln!(
            "range model: seed {seed} failed at step {} (replay: ASPACE_SEED={seed}); last steps:\n  {}",
            log.len(),
            log[tail..].join("\n  ")
        );
        std::panic::resume_unwind(e);
    }
    for kind in [
        "split",
        "merge",
        "unmap",
        "protect",
        "discard",
        "discard where",
        "move",
    ] {
        assert!(
            w.done.get(kind).copied().unwrap_or(0) >= 3,
            "seed {seed}: too few successful {kind}s: {:?}",
            w.done
        );
    }
    eprintln!("range model: seed {seed}: {:?}", w.done);
    let World {
        sim,
        spaces,
        cpus,
        image,
        done,
        ..
    } = w;
    drop(cpus);
    drop(spaces);
    ElfImage::release(image, sim.system().machine()).unwrap();
    assert_eq!(sim.frames_in_use(), baseline, "seed {seed}: frames left");
    assert_eq!(sim.system().reserve().committed(), 0, "seed {seed}");
    done
}

#[test]
fn range_operations_match_the_page_model() {
    let seeds: Vec<u64> = match std::env::var("ASPACE_SEED") {
        Ok(s) => vec![s.parse().expect("ASPACE_SEED is a number")],
        Err(_) => (1..=8).collect(),
    };
    let mut total: HashMap<&str, u64> = HashMap::new();
    for seed in seeds.iter().copied() {
        for (kind, n) in run(seed, 1000) {
            *total.entry(kind).or_default() += n;
        }
    }
    // Guarded areas are rarer: over the seeds, some grew, some faulted on
    // their guard page, some moved with their guard; some reserve-on-write
    // areas were given write.
    if seeds.len() > 1 {
        for kind in [
            "grow (read)",
            "grow (write)",
            "guard fault",
            "guarded move",
            "move of several areas",
            "reserve on write",
            "released to reserve on write",
        ] {
            assert!(
                total.get(kind).copied().unwrap_or(0) >= 3,
                "{kind}: {total:?}"
            );
        }
    }
}

other_archs!(range_operations_match_the_page_model);
