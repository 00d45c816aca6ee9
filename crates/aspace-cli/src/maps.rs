//! Address-space listings in the manner of `/proc/PID/maps` and `pmap -x`,
//! as text and as JSON.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write;

use aspace::share::ShareInfo;
use aspace::TryArc;
use aspace::{VirtAddr, PAGE_SIZE};
use aspace_sim::{SimMachine, Space};
use serde::Serialize;

use crate::num::rights_text;

/// Numbers share records so that the areas of one group get one number,
/// stable for the whole run. It keeps each record alive, so a number is
/// never given to two records (and an address, the key it is found by,
/// never to two records either).
#[derive(Default)]
pub struct ShareGroups {
    seen: Vec<TryArc<ShareInfo<SimMachine>>>,
    by_addr: HashMap<usize, usize>,
}

impl ShareGroups {
    /// The group number (from 1) of the area at `addr`, if it is shared.
    pub fn group(&mut self, space: &Space, addr: VirtAddr) -> Option<usize> {
        let info = space.share_info(addr)?;
        let key = TryArc::as_ptr(&info) as usize;
        if let Some(&n) = self.by_addr.get(&key) {
            return Some(n);
        }
        self.seen.push(info);
        self.by_addr.insert(key, self.seen.len());
        Some(self.seen.len())
    }
}

/// One area as listed.
#[derive(Clone, Debug, Serialize)]
pub struct AreaView {
    /// First address, hex.
    pub start: String,
    /// One past the last address, hex.
    pub end: String,
    /// Size in pages.
    pub pages: u64,
    /// Size in KiB.
    pub kbytes: u64,
    /// Pages mapped now.
    pub resident: u64,
    /// Resident pages that map an ELF image's own frames (no copy).
    pub image_pages: u64,
    /// Resident pages with frames of their own (or of their share group).
    pub private_pages: u64,
    /// Pages of memory reserved for the area against the commit limit (a
    /// shared area shows its group's reservation, counted once).
    pub reserved: u64,
    /// Whether the area reserves its pages at fault time.
    pub late_reserve: bool,
    /// Whether it does so only until it is given write access
    /// ([`AreaFlags::RESERVE_ON_WRITE`](aspace::AreaFlags::RESERVE_ON_WRITE)).
    pub reserve_on_write: bool,
    /// `rwxp` / `rwxs`.
    pub mode: String,
    /// Backend name.
    pub backend: &'static str,
    /// Whether the area shares its frames with other areas.
    pub shared: bool,
    /// Share group number (areas with the same number map the same frames).
    pub share_group: Option<usize>,
    /// Name given in the scenario, if any.
    pub label: Option<String>,
    /// First address.
    #[serde(skip)]
    pub base: u64,
    /// Resident runs: (first page index in the area, page count).
    #[serde(skip)]
    pub runs: Vec<(u64, u64)>,
}

/// One address space as listed.
#[derive(Clone, Debug, Serialize)]
pub struct TaskView {
    /// The task's name.
    pub task: String,
    /// The address space's number.
    pub space_id: u64,
    /// ASID held now.
    pub asid: Option<u16>,
    /// CPUs running it now.
    pub cpus: Vec<usize>,
    /// Areas, lowest first.
    pub areas: Vec<AreaView>,
    /// Pages mapped in all areas.
    pub resident_pages: u64,
    /// Pages reserved for its areas (a shared group's in each sharer).
    pub reserved_pages: u64,
    /// Frames of the page table itself.
    pub page_table_frames: u64,
}

/// Lists `space`. `labels` names areas by base address; `image_frames` holds
/// the frame numbers of every loaded ELF image.
pub fn view(
    name: &str,
    space: &Space,
    labels: &BTreeMap<u64, String>,
    image_frames: &HashSet<u64>,
    groups: &mut ShareGroups,
) -> TaskView {
    let mut areas = Vec::new();
    for a in space.areas() {
        let mut image_pages = 0;
        let mut runs = Vec::new();
        if let Some(used) = space.used_space(a.base) {
            for r in used.iter() {
                runs.push((r.start.pages_since(a.base.page()), r.count));
            }
            if !image_frames.is_empty() {
                for page in used.iter_pages() {
                    if let Some((f, _)) = space.translate(page) {
                        if image_frames.contains(&f.number()) {
                            image_pages += 1;
                        }
                    }
                }
            }
        }
        let share_group = if a.shared {
            groups.group(space, a.base)
        } else {
            None
        };
        areas.push(AreaView {
            start: format!("{:#x}", a.base.as_u64()),
            end: format!("{:#x}", a.end().as_u64()),
            pages: a.pages,
            kbytes: a.pages * PAGE_SIZE / 1024,
            resident: a.resident,
            image_pages,
            private_pages: a.resident - image_pages,
            reserved: a.reserved,
            late_reserve: a.flags.contains(aspace::AreaFlags::LATE_RESERVE),
            reserve_on_write: a.flags.contains(aspace::AreaFlags::RESERVE_ON_WRITE),
            mode: format!(
                "{}{}",
                rights_text(a.flags),
                if a.shared { 's' } else { 'p' }
            ),
            backend: a.backend,
            shared: a.shared,
            share_group,
            // By the address it was created at, which a grows-down area
            // has left behind but still covers.
            label: labels
                .range(a.base.as_u64()..a.end().as_u64())
                .next()
                .map(|(_, l)| l.clone()),
            base: a.base.as_u64(),
            runs,
        });
    }
    TaskView {
        task: name.to_string(),
        space_id: space.id(),
        asid: space.asid().map(|a| a.0),
        cpus: space.active_cpus().iter().collect(),
        resident_pages: areas.iter().map(|a| a.resident).sum(),
        reserved_pages: areas.iter().map(|a| a.reserved).sum(),
        areas,
        page_table_frames: space.page_table_frames(),
    }
}

/// The listing as text: a header line, then one line per area and a total.
pub fn render(v: &TaskView, indent: &str) -> String {
    let mut s = String::new();
    let asid = v.asid.map_or("none".to_string(), |a| a.to_string());
    let cpus = if v.cpus.is_empty() {
        "runs on no CPU".to_string()
    } else {
        let list: Vec<String> = v.cpus.iter().map(|c| c.to_string()).collect();
        format!("running on CPU {}", list.join(", "))
    };
    let _ = writeln!(
        s,
        "{indent}{}: address space {}, ASID {asid}, {cpus}",
        v.task, v.space_id
    );
    if v.areas.is_empty() {
        let _ = writeln!(s, "{indent}  (no areas)");
        return s;
    }
    let kb: u64 = v.areas.iter().map(|a| a.kbytes).sum();
    let pages: u64 = v.areas.iter().map(|a| a.pages).sum();
    let img: u64 = v.areas.iter().map(|a| a.image_pages).sum();
    // Columns as wide as their widest number (the totals are), so huge
    // areas do not push the rest of their line out of line.
    let width = |total: u64, min: usize| total.to_string().len().max(min);
    let (wk, wp, wr, wv, wi) = (
        width(kb, 8),
        width(pages, 7),
        width(v.resident_pages, 7),
        width(v.reserved_pages, 6),
        width(img, 6),
    );
    let _ = writeln!(
        s,
        "{indent}  {:<16}  {:>wk$} {:>wp$} {:>wr$} {:>wv$} {:>wi$}  {:<4}  {:<7} {:<6} Mapping",
        "Address", "Kbytes", "Pages", "Resid.", "Resv.", "Image", "Mode", "Backend", "Share"
    );
    for a in &v.areas {
        let share = a.share_group.map_or("-".to_string(), |g| format!("s#{g}"));
        let _ = writeln!(
            s,
            "{indent}  {:016x}  {:>wk$} {:>wp$} {:>wr$} {:>wv$} {:>wi$}  {:<4}  {:<7} {:<6} {}{}",
            a.base,
            a.kbytes,
            a.pages,
            a.resident,
            a.reserved,
            a.image_pages,
            a.mode,
            a.backend,
            share,
            match &a.label {
                Some(l) => l.clone(),
                None => format!("[{}]", a.backend),
            },
            match (a.late_reserve, a.reserve_on_write) {
                (_, true) => " (reserve on write)",
                (true, false) => " (late reserve)",
                _ => "",
            }
        );
    }
    let _ = writeln!(
        s,
        "{indent}  {:<16}  {:>wk$} {:>wp$} {:>wr$} {:>wv$} {:>wi$}  page tables: {} frames",
        "total", kb, pages, v.resident_pages, v.reserved_pages, img, v.page_table_frames
    );
    s
}
