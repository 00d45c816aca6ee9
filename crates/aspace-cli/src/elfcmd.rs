//! `aspace elf PATH`: load an executable into a fresh address space, touch
//! every page, and report faults, private copies and shared image frames.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use aspace::backend::elf::ElfImage;
use aspace::{loader, AreaFlags, FaultReason, VirtAddr, PAGE_SIZE};
use serde_json::json;

use crate::cli::{write_svg, InputError, Opts};
use crate::engine::MachineSpec;
use crate::maps::{self, ShareGroups};
use crate::num::{human_bytes, rights_text};
use crate::script::MachineReq;
use crate::svg::{self, Snapshot};
use crate::{elfnames, input};

/// At most this many refused accesses are listed one by one; the rest are
/// counted.
pub const REFUSALS_LISTED: usize = 16;

/// An area that refuses this many pages in a row is not touched further
/// (its other pages would be refused the same way).
pub const REFUSALS_IN_A_ROW: u64 = 16;

fn input(m: String) -> InputError {
    InputError(vec![m])
}

/// Runs the command on `path` (or the built-in executable for `builtin`);
/// returns the checks of its own that failed.
pub fn run(opts: &Opts, path: &str) -> Result<Vec<String>, InputError> {
    let bytes = if path == "builtin" {
        crate::elfgen::builtin_elf()
    } else {
        input::read_bounded(Path::new(path), input::MAX_ELF_BYTES, "ELF file").map_err(input)?
    };
    run_bytes(opts, path, &bytes)
}

/// Runs the command on the executable `bytes`, named `path` in messages.
pub fn run_bytes(opts: &Opts, path: &str, bytes: &[u8]) -> Result<Vec<String>, InputError> {
    let spec: MachineSpec = opts.spec(&MachineReq::default());
    let sim = spec.build().map_err(input)?;
    let baseline = sim.frames_in_use();
    // Check the file before copying it into frames.
    loader::parse(bytes, None, spec.arch.layout().user_end)
        .map_err(|e| input(format!("{path}: cannot load: {e}")))?;
    let image = ElfImage::load(sim.system().machine(), bytes).map_err(|e| {
        input(format!(
            "{path}: {} bytes do not fit in memory ({e}); raise --memory",
            bytes.len()
        ))
    })?;
    let space = sim.system().create().map_err(|e| input(e.to_string()))?;
    let loaded = loader::load(&space, &image, bytes, None)
        .map_err(|e| input(format!("{path}: cannot load: {e}")))?;
    let name = std::path::Path::new(path)
        .file_name()
        .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned());
    let names = elfnames::segment_names(bytes, &loaded);
    let mut labels = BTreeMap::new();
    for (s, n) in loaded.segments.iter().zip(&names) {
        labels.insert(s.vaddr & !(PAGE_SIZE - 1), format!("{name}:{}", n.name));
    }
    let image_frames: HashSet<u64> = image.frames().iter().map(|f| f.number()).collect();
    let mut groups = ShareGroups::default();
    let before = maps::view(&name, &space, &labels, &image_frames, &mut groups);
    let total_pages: u64 = space
        .areas()
        .iter()
        .fold(0u64, |n, a| n.saturating_add(a.pages));
    let out = opts.out(total_pages);

    out.line(&format!(
        "aspace elf {path}: {} ({} bytes, {} image frames), entry {}, bias {:#x}",
        human_bytes(bytes.len() as u64),
        bytes.len(),
        image.frames().len(),
        loaded.entry,
        loaded.bias
    ));
    out.line(&format!("Machine: {}", spec.describe()));
    out.line("\nLoadable segments:");
    let cols: Vec<[String; 4]> = loaded
        .segments
        .iter()
        .map(|s| [s.vaddr, s.memsz, s.filesz, s.offset].map(|v| format!("{v:#x}")))
        .collect();
    let w = |i: usize, min: usize| cols.iter().map(|c| c[i].len()).max().unwrap_or(0).max(min);
    let (w0, w1, w2, w3) = (w(0, 18), w(1, 10), w(2, 10), w(3, 10));
    let w4 = names
        .iter()
        .map(|n| n.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    out.line(&format!(
        "   {:<w0$} {:>w1$} {:>w2$} {:>w3$}  {:<6}  {:<w4$}  sections",
        "vaddr", "memsz", "filesz", "offset", "rights", "name",
    ));
    for ((s, c), n) in loaded.segments.iter().zip(&cols).zip(&names) {
        out.line(&format!(
            "   {:<w0$} {:>w1$} {:>w2$} {:>w3$}  {:<6}  {:<w4$}  {}",
            c[0],
            c[1],
            c[2],
            c[3],
            rights_text(s.flags),
            n.name,
            if n.sections.is_empty() {
                "(no section headers)".to_string()
            } else {
                n.sections.join(" ")
            }
        ));
    }
    out.line("\nAreas after loading (nothing is resident until touched):");
    out.block(&maps::render(&before, "   "));

    let mut cpu = sim.cpu(0);
    cpu.switch_to(&space).map_err(|e| input(e.to_string()))?;
    let stats0 = sim.system().stats();
    let mut touched = 0u64;
    // Refused accesses: the first few listed, all counted.
    let mut refused = Vec::new();
    let mut refusals = 0u64;
    // Set when memory ran out: every later page would be refused the same
    // way, so touching stops there.
    let mut stopped: Option<String> = None;
    let mut visited = 0u64;
    // Pages of areas left after refusing REFUSALS_IN_A_ROW in a row.
    let mut skipped = 0u64;
    'areas: for a in space.areas() {
        let fetch = if a.flags.contains(AreaFlags::READ) {
            false
        } else if a.flags.contains(AreaFlags::EXEC) {
            true
        } else {
            visited = visited.saturating_add(a.pages);
            out.tick(a.pages);
            continue;
        };
        let mut in_a_row = 0u64;
        for i in 0..a.pages {
            if in_a_row >= REFUSALS_IN_A_ROW {
                let rest = a.pages - i;
                skipped = skipped.saturating_add(rest);
                visited = visited.saturating_add(rest);
                out.tick(rest);
                break;
            }
            let addr = VirtAddr::new(a.base.as_u64().saturating_add(i.saturating_mul(PAGE_SIZE)));
            let r = if fetch {
                cpu.fetch(addr).map(|_| ())
            } else {
                cpu.read(addr, &mut [0u8])
            };
            visited = visited.saturating_add(1);
            out.tick(1);
            match r {
                Ok(()) => {
                    touched += 1;
                    in_a_row = 0;
                }
                Err(f) => {
                    refusals += 1;
                    in_a_row += 1;
                    if refused.len() < REFUSALS_LISTED {
                        refused.push(f.to_string());
                    }
                    if f.reason == FaultReason::NoMemory {
                        let left = total_pages.saturating_sub(visited);
                        stopped = Some(format!(
                            "out of memory at {}: stopped after touching {touched} pages, \
                             {left} pages left untouched (raise --memory)",
                            f.addr
                        ));
                        break 'areas;
                    }
                }
            }
        }
    }
    out.finish();
    let d = sim.system().stats().since(&stats0);
    let after = maps::view(&name, &space, &labels, &image_frames, &mut groups);
    let image_pages: u64 = after.areas.iter().map(|a| a.image_pages).sum();
    let copies: u64 = after.areas.iter().map(|a| a.private_pages).sum();
    let peak = sim.hardware().frames().stats().peak;

    out.line(&format!(
        "\nTouching every page on CPU 0: {touched} pages in {} areas",
        after.areas.len()
    ));
    out.block(&maps::render(&after, "   "));
    out.line("\nResult:");
    let rows = [
        (
            "pages touched",
            touched,
            "a read per page (a fetch where not readable)",
        ),
        ("faults", d.faults_resolved, "one per page: demand paging"),
        (
            "private copies",
            copies,
            "frames of their own: writable segments, partial pages, bss",
        ),
        (
            "shared image frames",
            image_pages,
            "pages mapping the image's own frames: no copy",
        ),
        (
            "image frames",
            image.frames().len() as u64,
            "the file, copied into frames once",
        ),
        ("frames at peak", peak, "page tables and the image included"),
    ];
    for (k, v, note) in rows {
        out.line(&format!("   {k:<20} {v:>8}   {note}"));
    }
    for f in &refused {
        out.line(&format!("   refused: {f}"));
    }
    if refusals > refused.len() as u64 {
        out.line(&format!(
            "   ... and {} more refused",
            refusals - refused.len() as u64
        ));
    }
    if skipped > 0 {
        out.line(&format!(
            "   skipped: {skipped} pages of areas that refused {REFUSALS_IN_A_ROW} pages in a row"
        ));
    }
    if let Some(m) = &stopped {
        out.line(&format!("   stopped: {m}"));
    }

    // Tear down and check every frame comes back.
    drop(cpu);
    let snapshots = vec![
        Snapshot {
            title: format!("{name}: after loading"),
            tasks: vec![before],
        },
        Snapshot {
            title: format!("{name}: after touching every page"),
            tasks: vec![after.clone()],
        },
    ];
    drop(space);
    let released = ElfImage::release(image, sim.system().machine()).is_ok();
    let in_use = sim.frames_in_use();
    let stale = sim.hardware().stats().stale_accesses;
    let stale_fetches = sim.hardware().stats().stale_fetches;
    let mut failures = Vec::new();
    if let Some(m) = &stopped {
        failures.push(m.clone());
    }
    if !released {
        failures.push("the ELF image is still in use after its address space went".to_string());
    }
    if in_use != baseline {
        failures.push(format!(
            "frames leaked: {in_use} in use, {baseline} at start"
        ));
    }
    if stale != 0 {
        failures.push(format!("{stale} accesses through stale TLB entries"));
    }
    if stale_fetches != 0 {
        failures.push(format!(
            "{stale_fetches} instruction fetches from code the kernel wrote and did not sync"
        ));
    }
    if d.faults_resolved != touched {
        failures.push(format!(
            "{touched} pages touched but {} faults served",
            d.faults_resolved
        ));
    }
    if failures.is_empty() {
        out.line(&format!(
            "\nAddress space destroyed, image released: all frames back ({in_use} in use, as at start)."
        ));
    } else {
        out.error_block(&format!("FAILED:\n   {}\n", failures.join("\n   ")));
    }
    if opts.json {
        let doc = json!({
            "command": "elf",
            "path": path,
            "bytes": bytes.len(),
            "entry": format!("{:#x}", loaded.entry.as_u64()),
            "bias": format!("{:#x}", loaded.bias),
            "machine": spec,
            "segments": loaded.segments.iter().zip(&names).map(|(s, n)| json!({
                "name": n.name,
                "sections": n.sections,
                "vaddr": format!("{:#x}", s.vaddr),
                "memsz": s.memsz,
                "filesz": s.filesz,
                "offset": s.offset,
                "rights": rights_text(s.flags),
            })).collect::<Vec<_>>(),
            "areas": after.areas,
            "pages_touched": touched,
            "faults": d.faults_resolved,
            "private_copies": copies,
            "shared_image_frames": image_pages,
            "image_frames": bytes.len().div_ceil(PAGE_SIZE as usize),
            "frames_peak": peak,
            "refused": refused,
            "refusals": refusals,
            "stopped": stopped,
            "skipped": skipped,
            "failures": failures,
            "ok": failures.is_empty(),
        });
        opts.print(&serde_json::to_string_pretty(&doc).unwrap_or_default());
    }
    if let Some(p) = &opts.svg {
        write_svg(
            opts,
            p,
            &svg::render(&snapshots, &format!("aspace elf {path}")),
        )?;
    }
    Ok(failures)
}
