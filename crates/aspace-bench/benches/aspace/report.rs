//! The ratio tables, from the estimates criterion wrote during this run.
//!
//! A figure is the median over the samples of the time per iteration,
//! divided by the iteration's element count (lookups, pages, operations).
//! Only estimates written since this process started are used, so every
//! ratio compares two figures of the same run; a cell whose benchmark did
//! not run (filtered out) shows `–`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::time::SystemTime;

use serde_json::Value;

use crate::{churn, fault, paired, scaling, used};

/// ns per element, by criterion's full id (`group/function/value`).
struct Figures(HashMap<String, f64>);

impl Figures {
    fn load(dir: &Path, since: SystemTime) -> Self {
        let mut map = HashMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                let fresh = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t >= since);
                if !fresh
                    || p.file_name() != Some("benchmark.json".as_ref())
                    || p.parent().and_then(|q| q.file_name()) != Some("new".as_ref())
                {
                    continue;
                }
                let Some((id, ns)) = read(&p) else {
                    continue;
                };
                map.insert(id, ns);
            }
        }
        Figures(map)
    }

    fn get(&self, id: &str) -> Option<f64> {
        self.0.get(id).copied()
    }
}

fn read(benchmark: &Path) -> Option<(String, f64)> {
    let b: Value = serde_json::from_str(&fs::read_to_string(benchmark).ok()?).ok()?;
    let e: Value =
        serde_json::from_str(&fs::read_to_string(benchmark.with_file_name("estimates.json")).ok()?)
            .ok()?;
    let id = b["full_id"].as_str()?.to_owned();
    let per_iter = e["median"]["point_estimate"].as_f64()?;
    let elements = b["throughput"]["Elements"].as_u64().unwrap_or(1).max(1);
    Some((id, per_iter / elements as f64))
}

fn time(ns: Option<f64>) -> String {
    match ns {
        None => "–".into(),
        Some(t) if t < 10.0 => format!("{t:.2} ns"),
        Some(t) if t < 1000.0 => format!("{t:.1} ns"),
        Some(t) if t < 1e6 => format!("{:.2} µs", t / 1e3),
        Some(t) => format!("{:.2} ms", t / 1e6),
    }
}

/// `ours ÷ theirs` for times: above 1 we are slower, and say so.
fn ratio(ours: Option<f64>, theirs: Option<f64>) -> String {
    match (ours, theirs) {
        (Some(a), Some(b)) if b > 0.0 => {
            let r = a / b;
            if r > 1.1 {
                format!("**{r:.2}× (we lose)**")
            } else if r < 0.91 {
                format!("{r:.2}× (we win)")
            } else {
                format!("{r:.2}× (par)")
            }
        }
        _ => "–".into(),
    }
}

/// A plain ratio, without verdict.
fn plain(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".into(),
    }
}

fn row(s: &mut String, cells: &[String]) {
    let _ = writeln!(s, "| {} |", cells.join(" | "));
}

fn header(s: &mut String, cells: &[&str]) {
    let _ = writeln!(s, "| {} |", cells.join(" | "));
    let _ = writeln!(s, "|{}", "---|".repeat(cells.len()));
}

fn render(f: &Figures) -> String {
    let mut s = String::new();
    let sizes = ["16", "256", "4096", "65536", "1048576"];

    for (pattern, title) in [("random", "random addresses"), ("seq", "sequential sweep")] {
        let _ = writeln!(
            s,
            "\n### Area lookup, {title} (time per lookup)\n\n\
             Ours as a page fault looks areas up: with the area tree's read lock held \
             (`AddressSpace::lookup()`, taken once per {} lookups), as HelenOS's \
             `find_area_and_lock` runs with the address-space lock held.\n",
            crate::lookup::QUERIES
        );
        header(
            &mut s,
            &[
                "areas",
                "aspace `lookup().area()`",
                "BTreeMap",
                "nodit",
                "rangemap",
                "aspace ÷ BTreeMap",
                "aspace ÷ nodit",
                "aspace ÷ rangemap",
            ],
        );
        for n in sizes {
            let g = |who: &str| f.get(&format!("lookup_{pattern}/{who}/{n}"));
            let ours = g("aspace_lookup_held");
            row(
                &mut s,
                &[
                    n.into(),
                    time(ours),
                    time(g("btreemap")),
                    time(g("nodit")),
                    time(g("rangemap")),
                    ratio(ours, g("btreemap")),
                    ratio(ours, g("nodit")),
                    ratio(ours, g("rangemap")),
                ],
            );
        }
        let _ = writeln!(
            s,
            "\n### One-shot area queries, {title} (time per lookup)\n\n\
             Each call takes and drops the tree's read lock (two atomic read-modify-writes); \
             the peers have no lock, so the fair peer is a `BTreeMap` behind a read lock \
             taken per lookup.\n"
        );
        header(
            &mut s,
            &[
                "areas",
                "aspace `area()`",
                "aspace `check_access()`",
                "BTreeMap, read-locked",
                "BTreeMap",
                "nodit",
                "`area()` ÷ read-locked BTreeMap",
                "`area()` ÷ BTreeMap",
                "`area()` ÷ nodit",
                "lock (`area()` ÷ `lookup().area()`)",
            ],
        );
        for n in sizes {
            let g = |who: &str| f.get(&format!("lookup_{pattern}/{who}/{n}"));
            let ours = g("aspace_area");
            row(
                &mut s,
                &[
                    n.into(),
                    time(ours),
                    time(g("aspace_check_access")),
                    time(g("btreemap_rwlock")),
                    time(g("btreemap")),
                    time(g("nodit")),
                    ratio(ours, g("btreemap_rwlock")),
                    ratio(ours, g("btreemap")),
                    ratio(ours, g("nodit")),
                    plain(ours, g("aspace_lookup_held")),
                ],
            );
        }
    }

    for (pattern, title) in [("random", "random addresses"), ("seq", "sequential sweep")] {
        let _ = writeln!(
            s,
            "\n### Where the lookup time goes ({title}, time per lookup)\n\n\
             The core keeps its areas in an `AreaTree` (a B+tree with a last-hit hint) \
             under a reader-writer lock, and reads the area's published summary; these \
             rows take that apart: the tree, the hint, building the `AreaInfo` from the \
             summary, and the lock.\n"
        );
        header(
            &mut s,
            &[
                "areas",
                "BTreeMap",
                "AreaTree alone",
                "AreaTree alone, hinted",
                "BTreeMap, read-locked",
                "aspace `lookup().area()`",
                "aspace `area()`",
                "tree (AreaTree ÷ BTreeMap)",
                "hint (hinted ÷ AreaTree)",
                "read lock (read-locked ÷ BTreeMap)",
                "summary (`lookup().area()` ÷ hinted)",
                "lock (`area()` ÷ `lookup().area()`)",
            ],
        );
        for n in sizes {
            let g = |who: &str| f.get(&format!("lookup_{pattern}/{who}/{n}"));
            row(
                &mut s,
                &[
                    n.into(),
                    time(g("btreemap")),
                    time(g("areatree")),
                    time(g("areatree_hint")),
                    time(g("btreemap_rwlock")),
                    time(g("aspace_lookup_held")),
                    time(g("aspace_area")),
                    plain(g("areatree"), g("btreemap")),
                    plain(g("areatree_hint"), g("areatree")),
                    plain(g("btreemap_rwlock"), g("btreemap")),
                    plain(g("aspace_lookup_held"), g("areatree_hint")),
                    plain(g("aspace_area"), g("aspace_lookup_held")),
                ],
            );
        }
    }

    let _ = writeln!(
        s,
        "\n### Area churn: create + destroy one {}-page area (time per pair)\n",
        churn::CHURN_PAGES
    );
    let linux = f.get("churn/linux_mmap_munmap/own");
    let linux8k = f.get("churn/linux_mmap_munmap/8k_vmas");
    header(
        &mut s,
        &[
            "areas present",
            "aspace",
            "memory_set map+unmap",
            "aspace ÷ memory_set",
            "Linux mmap+munmap (process as is)",
            "Linux, 8K extra VMAs",
            "aspace ÷ Linux (as is)",
        ],
    );
    for n in ["4096", "1048576"] {
        let ours = f.get(&format!("churn/aspace_create_destroy/{n}"));
        let ms = f.get(&format!("churn/memory_set_map_unmap/{n}"));
        row(
            &mut s,
            &[
                n.into(),
                time(ours),
                time(ms),
                ratio(ours, ms),
                time(linux),
                time(linux8k),
                ratio(ours, linux),
            ],
        );
    }

    let _ = writeln!(
        s,
        "\n### Anonymous first touch (time per page; {} pages per area, create + touch + destroy)\n",
        fault::TOUCH_PAGES
    );
    let ours = f.get(&format!("first_touch/aspace/{}", fault::TOUCH_PAGES));
    let lin = f.get(&format!("first_touch/linux/{}", fault::TOUCH_PAGES));
    let simz = f.get("zero_frame/sim_zero_frame");
    let hot = f.get("zero_frame/memset_hot");
    let cold = f.get("zero_frame/memset_cold");
    header(&mut s, &["figure", "time per page", "aspace ÷ this"]);
    row(
        &mut s,
        &[
            "aspace (simulated MMU)".into(),
            time(ours),
            plain(ours, ours),
        ],
    );
    let core = f.get(&format!("first_touch/aspace_core/{}", fault::TOUCH_PAGES));
    row(
        &mut s,
        &[
            "aspace core only (`page_fault()` called directly, no MMU)".into(),
            time(core),
            plain(ours, core),
        ],
    );
    row(
        &mut s,
        &[
            "Linux real fault (this machine)".into(),
            time(lin),
            ratio(ours, lin),
        ],
    );
    row(
        &mut s,
        &[
            "floor: simulator `zero_frame` (atomic words)".into(),
            time(simz),
            plain(ours, simz),
        ],
    );
    row(
        &mut s,
        &[
            "floor: memset 4 KiB, hot".into(),
            time(hot),
            plain(ours, hot),
        ],
    );
    row(
        &mut s,
        &[
            "floor: memset 4 KiB, cold (512 MiB buffer)".into(),
            time(cold),
            plain(ours, cold),
        ],
    );
    let _ = writeln!(
        s,
        "\nLinux ÷ cold memset: {}; Linux ÷ hot memset: {}.",
        plain(lin, cold),
        plain(lin, hot)
    );

    let _ = writeln!(
        s,
        "\n### Re-fault of present pages (time per access, {} pages)\n",
        fault::WORKING_SET
    );
    let hit4 = f.get("refault/aspace_access_tlb_hit_4");
    let miss4 = f.get("refault/aspace_access_tlb_miss_4");
    let hit64 = f.get("refault/aspace_access_tlb_hit_64");
    let raced = f.get("refault/aspace_page_fault_raced");
    let look = f.get("refault/aspace_area_lookup");
    header(&mut s, &["figure", "time", "ratio"]);
    row(
        &mut s,
        &[
            "access, TLB hit (4-entry TLB)".into(),
            time(hit4),
            "1×".into(),
        ],
    );
    row(
        &mut s,
        &[
            "access, TLB miss + 4-level walk (4-entry TLB)".into(),
            time(miss4),
            format!("{} of a hit", plain(miss4, hit4)),
        ],
    );
    row(
        &mut s,
        &[
            "access, TLB hit (64-entry TLB, linear search)".into(),
            time(hit64),
            format!("{} of a 4-entry hit", plain(hit64, hit4)),
        ],
    );
    row(
        &mut s,
        &[
            "`page_fault()` on a mapped page (raced path)".into(),
            time(raced),
            format!("{} of `area()`", plain(raced, look)),
        ],
    );
    row(
        &mut s,
        &["`area()` on the same space".into(), time(look), "1×".into()],
    );

    let _ = writeln!(
        s,
        "\n### Used space: single-page updates of a {}-page area (time per operation)\n",
        used::PAGES
    );
    header(
        &mut s,
        &[
            "operation",
            "order",
            "aspace UsedSpace",
            "rangemap RangeSet",
            "ratio",
        ],
    );
    for op in ["insert", "remove"] {
        for order in ["seq", "random"] {
            let ours = f.get(&format!("used_space/aspace_{op}/{order}"));
            let theirs = f.get(&format!("used_space/rangemap_{op}/{order}"));
            row(
                &mut s,
                &[
                    op.into(),
                    order.into(),
                    time(ours),
                    time(theirs),
                    ratio(ours, theirs),
                ],
            );
        }
    }

    let _ = writeln!(
        s,
        "\n### ASID pressure: one CPU, spaces switched round-robin (time per switch)\n"
    );
    header(
        &mut s,
        &[
            "ASIDs",
            "spaces = ASIDs (no steal)",
            "spaces = 4 × ASIDs (steal on every switch)",
            "steal ÷ no steal",
        ],
    );
    for a in ["2", "4", "8"] {
        let fit = f.get(&format!("asid/switch_fit/{a}"));
        let steal = f.get(&format!("asid/switch_steal/{a}"));
        row(
            &mut s,
            &[a.into(), time(fit), time(steal), plain(steal, fit)],
        );
    }
    let fit = f.get("asid/switch_touch_fit/4");
    let steal = f.get("asid/switch_touch_steal/4");
    row(
        &mut s,
        &[
            "4, switch + first access".into(),
            time(fit),
            time(steal),
            plain(steal, fit),
        ],
    );

    let _ = writeln!(
        s,
        "\n### Scaling: first-touch faults on disjoint areas ({} pages per CPU), and a counter increment\n",
        scaling::PAGES_PER_CPU
    );
    header(
        &mut s,
        &[
            "who",
            "1 CPU, time per operation",
            "2 CPUs, time per operation",
            "throughput 2 CPUs ÷ 1 CPU (ideal 2)",
        ],
    );
    let one = f.get("scaling/aspace_faults/1cpu");
    for (who, id) in [
        ("aspace, one space, an area per CPU", "aspace_faults"),
        (
            "aspace, one space, one area (a half per CPU)",
            "aspace_faults_same_area",
        ),
        ("aspace, one space per CPU", "aspace_faults_2spaces"),
        (
            "aspace, one machine per CPU (nothing shared: control)",
            "aspace_faults_2machines",
        ),
        ("Linux, threads of one process", "linux_faults"),
    ] {
        let base = if id == "linux_faults" {
            f.get("scaling/linux_faults/1cpu")
        } else {
            one
        };
        let two = f.get(&format!("scaling/{id}/2cpu"));
        row(
            &mut s,
            &[who.into(), time(base), time(two), plain(base, two)],
        );
    }
    for (who, id) in [
        (
            "one relaxed `fetch_add` counter shared by the CPUs",
            "counter_shared",
        ),
        ("one counter per CPU (own cache line)", "counter_per_cpu"),
        ("simulator frame pool: alloc + release", "frame_pool"),
    ] {
        let one = f.get(&format!("scaling/{id}/1cpu"));
        let two = f.get(&format!("scaling/{id}/2cpu"));
        row(&mut s, &[who.into(), time(one), time(two), plain(one, two)]);
    }
    if let Some(p) = &*scaling::PAIRED.lock().unwrap() {
        let _ = writeln!(
            s,
            "\n### Scaling, paired: every setup once per round, {} rounds\n\n\
             Throughput of two CPUs ÷ one CPU in the same round (Linux: ÷ Linux's one \
             thread); median and quartiles over the rounds.\n",
            p.rounds
        );
        header(&mut s, &["who", "2 CPUs ÷ 1 CPU, median", "quartiles"]);
        for &(who, m, lo, hi) in &p.rows {
            row(
                &mut s,
                &[who.into(), format!("{m:.2}×"), format!("{lo:.2}–{hi:.2}×")],
            );
        }
    }
    s += &render_paired();
    s
}

/// The paired (interleaved) comparisons of this run.
fn render_paired() -> String {
    let records = paired::records();
    let mut s = String::new();
    if records.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "\n### Paired ratios: contenders interleaved round by round\n\n\
         Median over {} rounds of the per-round ratio ours ÷ theirs (time), and each \
         contender's median time per element; ratios to our own parts (the tree alone, \
         the other aspace call) are diagnostics and carry no verdict. Steadier than ratios of the criterion \
         figures above, which are measured seconds apart on a machine whose speed drifts.\n",
        records[0].rounds
    );
    header(
        &mut s,
        &[
            "comparison",
            "ours",
            "ours ÷ each contender (its time per element)",
        ],
    );
    for r in records.iter() {
        let cells: Vec<String> = (1..r.names.len())
            .map(|i| {
                // Our own parts (the tree alone, the other aspace call) are
                // diagnostics: a plain ratio, no verdict.
                let own = ["aspace", "AreaTree"]
                    .iter()
                    .any(|p| r.names[i].starts_with(p));
                let q = if own {
                    plain(Some(r.ratio[i]), Some(1.0))
                } else {
                    ratio(Some(r.ratio[i]), Some(1.0))
                };
                format!("{}: {} ({})", r.names[i], q, time(Some(r.ns[i])))
            })
            .collect();
        row(
            &mut s,
            &[
                r.id.clone(),
                format!("{}: {}", r.names[0], time(Some(r.ns[0]))),
                cells.join("; "),
            ],
        );
    }
    s
}

/// The 1, 5 and 15-minute load averages (other work on the machine skews
/// the figures, the scaling ones most).
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn commit() -> String {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    if let Ok(c) = std::env::var("ASPACE_BENCH_COMMIT") {
        return c;
    }
    let head = run(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = run(&[
        "status",
        "--porcelain",
        "--",
        "../aspace/src",
        "../aspace-sim/src",
    ])
    .is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{head} (core or simulator sources modified)")
    } else {
        head
    }
}

/// Prints the tables and writes them to `aspace-report.md` in `dir`.
pub fn write(dir: &Path, since: SystemTime, load_before: &str, clock: &str) {
    let f = Figures::load(dir, since);
    if f.0.is_empty() {
        println!("no estimates written in this run: no ratio table");
        return;
    }
    let mut text = format!(
        "\nCommit {}; load average before the run {load_before}, after {}; timed with \
         {clock} (the scaling figures: wall-clock spans).\n",
        commit(),
        load_average()
    );
    text += &render(&f);
    println!("\n## Ratios (medians of this run)\n{text}");
    let path = dir.join("aspace-report.md");
    match fs::write(&path, &text) {
        Ok(()) => println!("(also written to {})", path.display()),
        Err(e) => eprintln!("could not write {}: {e}", path.display()),
    }
}
