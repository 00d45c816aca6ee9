//! The whole observable state of a simulated machine and its spaces, for
//! tests that check a refused operation changed nothing (frame and heap
//! failure injection).

use crate::{Sim, Space, SpaceHandle, TlbEntry};
use aspace::{AreaInfo, Cpus, Frame, Page, PageFlags};

/// What one address space shows.
#[derive(Debug, PartialEq)]
pub struct SpaceState {
    /// The areas, lowest first.
    pub areas: Vec<AreaInfo>,
    /// Per area: its used space as runs (first page, pages).
    used: Vec<Vec<(u64, u64)>>,
    /// Per area: its copy-on-write pages as runs (first page, pages).
    cow: Vec<Vec<(u64, u64)>>,
    /// Every page of every area and what it maps to.
    pages: Vec<(u64, Option<(Frame, PageFlags)>)>,
    table_frames: u64,
    /// Per area: the share record's references and page-map size.
    shares: Vec<Option<(usize, usize)>>,
    asid: Option<aspace::Asid>,
    active: aspace::CpuSet,
}

/// The whole observable state of a machine and its spaces.
#[derive(Debug, PartialEq)]
pub struct State {
    spaces: Vec<SpaceState>,
    frames_in_use: u64,
    /// Reference count of every frame of the machine.
    refcounts: Vec<u32>,
    free_asids: usize,
    tlbs: Vec<Vec<TlbEntry>>,
    /// Pages reserved against the commit limit.
    committed: u64,
}

/// What `s` shows now.
pub fn space_state(s: &Space) -> SpaceState {
    let areas = s.areas();
    let mut pages = Vec::new();
    let mut shares = Vec::new();
    let mut used = Vec::new();
    let mut cow = Vec::new();
    for a in &areas {
        let runs = s.used_space(a.base).expect("the area is there");
        used.push(runs.iter().map(|r| (r.start.number(), r.count)).collect());
        let set = s.cow_pages(a.base).expect("the area is there");
        cow.push(set.iter().map(|r| (r.start.number(), r.count)).collect());
        for i in 0..a.pages {
            let p = Page::from_number(a.base.page().number() + i);
            pages.push((p.number(), s.translate(p)));
        }
        shares.push(s.share_info(a.base).map(|sh| (sh.refs(), sh.pages())));
    }
    SpaceState {
        areas,
        used,
        cow,
        pages,
        table_frames: s.page_table_frames(),
        shares,
        asid: s.asid(),
        active: s.active_cpus(),
    }
}

/// What the machine of `sim` and `spaces` show now.
pub fn state(sim: &Sim, spaces: &[&SpaceHandle]) -> State {
    let hw = sim.hardware();
    let frames = hw.memory().frames();
    State {
        spaces: spaces.iter().map(|s| space_state(s)).collect(),
        frames_in_use: sim.frames_in_use(),
        refcounts: (0..frames)
            .map(|n| hw.frames().refcount(Frame::from_number(n)))
            .collect(),
        free_asids: sim.system().free_asids(),
        tlbs: (0..hw.cpu_count()).map(|c| hw.tlb_entries(c)).collect(),
        committed: sim.system().reserve().committed(),
    }
}
