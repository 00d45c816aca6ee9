//! A picture of address spaces, written by hand as SVG text.
//!
//! Each snapshot is a panel; each task a horizontal band. The address axis
//! is shared by every band of a panel and log-compressed: the stretch
//! between two consecutive area edges (of any task) gets a width that grows
//! with the logarithm of its page count, and stretches no area covers get
//! less still, so a 1-page area and a 1-GiB one are both visible, and the
//! same address lines up in every band. Inside a stretch the scale is
//! linear, so resident pages are shaded where they really are. Shared
//! areas are linked across bands by curves.

use std::fmt::Write;

use crate::maps::TaskView;

/// The address spaces at one moment.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Panel title.
    pub title: String,
    /// The tasks.
    pub tasks: Vec<TaskView>,
}

const WIDTH: f64 = 1200.0;
const LEFT: f64 = 150.0;
const RIGHT: f64 = 100.0;
const BAND: f64 = 38.0;
const BAND_GAP: f64 = 34.0;
const AXIS: f64 = 86.0;
const TITLE: f64 = 34.0;

/// Escapes text for XML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            // Characters XML 1.0 does not allow.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => o.push('?'),
            c => o.push(c),
        }
    }
    o
}

fn color(mode: &str) -> &'static str {
    match mode.get(..3).unwrap_or("") {
        "r-x" | "--x" => "#e07b39",
        "rw-" | "-w-" => "#3b7dd8",
        "r--" => "#3ea55b",
        _ => "#8a8a8a",
    }
}

/// One past the last address of an area.
fn area_end(base: u64, pages: u64) -> u64 {
    base.saturating_add(pages.saturating_mul(aspace::PAGE_SIZE))
}

/// A piecewise-linear, log-compressed address axis.
struct Axis {
    /// (address, x) at every edge, ascending.
    edges: Vec<(u64, f64)>,
    /// Whether some area covers the stretch from edge `i` to edge `i + 1`.
    covered: Vec<bool>,
}

impl Axis {
    /// The axis for every area of every task of `s`, in O(n log n) for n
    /// areas: the edges sorted, then how many areas cover each stretch
    /// by one sweep over +1/-1 marks at the edges.
    fn new(s: &Snapshot) -> Option<Axis> {
        let mut cuts = Vec::new();
        for t in &s.tasks {
            for a in &t.areas {
                cuts.push(a.base);
                cuts.push(area_end(a.base, a.pages));
            }
        }
        cuts.sort_unstable();
        cuts.dedup();
        if cuts.len() < 2 {
            return None;
        }
        // An area [b, e) covers exactly the stretches from the edge at b up
        // to the one before e (both are edges).
        let mut marks = vec![0i64; cuts.len()];
        for t in &s.tasks {
            for a in &t.areas {
                let end = area_end(a.base, a.pages);
                if end > a.base {
                    marks[cuts.partition_point(|&c| c < a.base)] += 1;
                    marks[cuts.partition_point(|&c| c < end)] -= 1;
                }
            }
        }
        let mut depth = 0i64;
        let covered: Vec<bool> = marks[..cuts.len() - 1]
            .iter()
            .map(|m| {
                depth += m;
                depth > 0
            })
            .collect();
        let weights: Vec<f64> = cuts
            .windows(2)
            .zip(&covered)
            .map(|(w, &covered)| {
                let pages = ((w[1] - w[0]) / aspace::PAGE_SIZE).max(1) as f64;
                if covered {
                    1.0 + 0.6 * pages.log2()
                } else {
                    0.5 + 0.12 * pages.log2()
                }
            })
            .collect();
        let total: f64 = weights.iter().sum();
        let span = WIDTH - LEFT - RIGHT;
        let mut x = LEFT;
        let mut edges = vec![(cuts[0], x)];
        for (i, w) in weights.iter().enumerate() {
            x += w / total * span;
            edges.push((cuts[i + 1], x));
        }
        Some(Axis { edges, covered })
    }

    fn x(&self, addr: u64) -> f64 {
        let i = self.edges.partition_point(|&(a, _)| a <= addr);
        if i == 0 {
            return self.edges[0].1;
        }
        if i >= self.edges.len() {
            return self.edges[self.edges.len() - 1].1;
        }
        let (a0, x0) = self.edges[i - 1];
        let (a1, x1) = self.edges[i];
        x0 + (x1 - x0) * ((addr - a0) as f64 / (a1 - a0) as f64)
    }
}

fn panel(out: &mut String, s: &Snapshot, top: f64) -> f64 {
    let _ = writeln!(
        out,
        r##"<text x="12" y="{:.1}" font-size="15" font-weight="bold">{}</text>"##,
        top + 22.0,
        escape(&s.title)
    );
    let bands_top = top + TITLE;
    let Some(axis) = Axis::new(s) else {
        let _ = writeln!(
            out,
            r##"<text x="{LEFT}" y="{:.1}" font-size="12" fill="#666">(no areas)</text>"##,
            bands_top + 16.0
        );
        return TITLE + 30.0;
    };
    let band_y = |i: usize| bands_top + i as f64 * (BAND + BAND_GAP);
    // (group, task index, x centre, band y)
    let mut shared: Vec<(usize, usize, f64, f64)> = Vec::new();
    for (ti, t) in s.tasks.iter().enumerate() {
        let y = band_y(ti);
        let _ = writeln!(
            out,
            r##"<g><text x="12" y="{:.1}" font-size="13" font-weight="bold">{}</text>"##,
            y + 16.0,
            escape(&t.task)
        );
        let asid = t
            .asid
            .map_or("no ASID".to_string(), |a| format!("ASID {a}"));
        let cpus = if t.cpus.is_empty() {
            String::new()
        } else {
            let c: Vec<String> = t.cpus.iter().map(|c| c.to_string()).collect();
            format!(", CPU {}", c.join(","))
        };
        let _ = writeln!(
            out,
            r##"<text x="12" y="{:.1}" font-size="10" fill="#555">{} resident, {}{}</text>"##,
            y + 30.0,
            if t.resident_pages == 1 {
                "1 page".to_string()
            } else {
                format!("{} pages", t.resident_pages)
            },
            escape(&asid),
            escape(&cpus)
        );
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#ccc" stroke-width="1"/>"##,
            y + BAND / 2.0,
            WIDTH - RIGHT,
            y + BAND / 2.0
        );
        for a in &t.areas {
            let end = area_end(a.base, a.pages);
            let (x0, x1) = (axis.x(a.base), axis.x(end));
            let w = (x1 - x0).max(1.5);
            let c = color(&a.mode);
            let tip = format!(
                "{} {}-{} {} {} {} pages, {} resident{}{}",
                t.task,
                a.start,
                a.end,
                a.mode,
                a.backend,
                a.pages,
                a.resident,
                a.share_group
                    .map_or(String::new(), |g| format!(", shared group s#{g}")),
                a.label
                    .as_ref()
                    .map_or(String::new(), |l| format!(" ({l})"))
            );
            let (stroke, sw, dash) = if a.shared {
                ("#8e44ad", 2.0, r##" stroke-dasharray="5,3""##)
            } else {
                ("#333", 0.8, "")
            };
            let _ = writeln!(
                out,
                r##"<g><title>{}</title><rect x="{x0:.2}" y="{y:.1}" width="{w:.2}" height="{BAND}" fill="{c}" fill-opacity="0.22" stroke="{stroke}" stroke-width="{sw}"{dash}/>"##,
                escape(&tip)
            );
            let page_w = w / a.pages.max(1) as f64;
            for &(start, count) in &a.runs {
                let rx = x0 + start as f64 * page_w;
                let rw = (count as f64 * page_w).max(1.0);
                let _ = writeln!(
                    out,
                    r##"<rect x="{rx:.2}" y="{:.1}" width="{rw:.2}" height="{:.1}" fill="{c}"/>"##,
                    y + 3.0,
                    BAND - 6.0
                );
            }
            let name = a.label.clone().unwrap_or_else(|| a.backend.to_string());
            if w > 7.0 * name.len() as f64 + 6.0 {
                let _ = writeln!(
                    out,
                    r##"<text x="{:.2}" y="{:.1}" font-size="11" text-anchor="middle" fill="#111">{}</text>"##,
                    x0 + w / 2.0,
                    y + BAND / 2.0 + 4.0,
                    escape(&name)
                );
            }
            let _ = writeln!(out, "</g>");
            if let Some(g) = a.share_group {
                shared.push((g, ti, x0 + w / 2.0, y));
            }
        }
        let _ = writeln!(out, "</g>");
    }
    // Links between areas of one share group, in band order.
    shared.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)).then(a.2.total_cmp(&b.2)));
    for pair in shared.windows(2) {
        let ((g, t0, x0, y0), (g1, t1, x1, y1)) = (pair[0], pair[1]);
        if g != g1 {
            continue;
        }
        let path = if t0 == t1 {
            // Shared within one space: an arc above the band.
            format!(
                "M {x0:.1} {y0:.1} C {x0:.1} {:.1}, {x1:.1} {:.1}, {x1:.1} {y1:.1}",
                y0 - 24.0,
                y1 - 24.0
            )
        } else {
            let (ya, yb) = (y0 + BAND, y1);
            let mid = (ya + yb) / 2.0;
            format!("M {x0:.1} {ya:.1} C {x0:.1} {mid:.1}, {x1:.1} {mid:.1}, {x1:.1} {yb:.1}")
        };
        let _ = writeln!(
            out,
            r##"<path d="{path}" fill="none" stroke="#8e44ad" stroke-width="2" stroke-opacity="0.8"><title>shared group s#{g}</title></path>"##
        );
    }
    // The axis: a tick at every edge, labels where there is room.
    let ay = band_y(s.tasks.len()) - BAND_GAP + 12.0;
    let _ = writeln!(
        out,
        r##"<line x1="{LEFT}" y1="{ay:.1}" x2="{:.1}" y2="{ay:.1}" stroke="#333" stroke-width="1"/>"##,
        WIDTH - RIGHT
    );
    let mut last_label = f64::NEG_INFINITY;
    for (i, &(addr, x)) in axis.edges.iter().enumerate() {
        let _ = writeln!(
            out,
            r##"<line x1="{x:.2}" y1="{ay:.1}" x2="{x:.2}" y2="{:.1}" stroke="#333" stroke-width="1"/>"##,
            ay + 5.0
        );
        if x - last_label >= 18.0 {
            let _ = writeln!(
                out,
                r##"<text x="{x:.2}" y="{:.1}" font-size="10" font-family="monospace" transform="rotate(40 {x:.2} {:.1})">{addr:#x}</text>"##,
                ay + 16.0,
                ay + 16.0
            );
            last_label = x;
        }
        // Mark stretches no area covers as compressed.
        if let Some(&(_, nx)) = axis.edges.get(i + 1) {
            if !axis.covered[i] && nx - x > 10.0 {
                let cx = (x + nx) / 2.0;
                let _ = writeln!(
                    out,
                    r##"<text x="{cx:.1}" y="{:.1}" font-size="12" text-anchor="middle" fill="#999">≈</text>"##,
                    ay + 4.0
                );
            }
        }
    }
    ay + AXIS - top
}

/// The SVG document for `snapshots`.
pub fn render(snapshots: &[Snapshot], title: &str) -> String {
    let mut body = String::new();
    let mut y = 64.0;
    for s in snapshots {
        y += panel(&mut body, s, y);
    }
    if snapshots.is_empty() {
        let _ = writeln!(
            body,
            r##"<text x="12" y="90" font-size="13">(nothing recorded)</text>"##
        );
        y += 40.0;
    }
    let height = y + 10.0;
    let mut out = String::new();
    let _ = writeln!(out, r##"<?xml version="1.0" encoding="UTF-8"?>"##);
    let _ = writeln!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0}" viewBox="0 0 {WIDTH} {height:.0}" font-family="sans-serif">"##
    );
    let _ = writeln!(out, "<title>{}</title>", escape(title));
    let _ = writeln!(
        out,
        r##"<rect x="0" y="0" width="{WIDTH}" height="{height:.0}" fill="white"/>"##
    );
    let _ = writeln!(
        out,
        r##"<text x="12" y="22" font-size="17" font-weight="bold">{}</text>"##,
        escape(title)
    );
    // Legend.
    let legend = [
        ("#e07b39", "r-x code"),
        ("#3b7dd8", "rw- data"),
        ("#3ea55b", "r-- read-only"),
        ("#8a8a8a", "other"),
    ];
    let mut lx = 12.0;
    for (c, name) in legend {
        let _ = writeln!(
            out,
            r##"<rect x="{lx}" y="34" width="12" height="12" fill="{c}"/><text x="{}" y="44" font-size="11">{}</text>"##,
            lx + 16.0,
            escape(name)
        );
        lx += 110.0;
    }
    let _ = writeln!(
        out,
        r##"<text x="{lx}" y="44" font-size="11" fill="#444">dark = resident pages, pale = not yet faulted in; purple dashed + curves = shared; axis log-compressed</text>"##
    );
    out.push_str(&body);
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::{AreaView, TaskView};

    fn area(base: u64, pages: u64, runs: Vec<(u64, u64)>) -> AreaView {
        AreaView {
            start: format!("{base:#x}"),
            end: format!("{:#x}", base + pages * 4096),
            pages,
            kbytes: pages * 4,
            resident: runs.iter().map(|r| r.1).sum(),
            image_pages: 0,
            private_pages: 0,
            reserved: pages,
            late_reserve: false,
            reserve_on_write: false,
            mode: "rw-p".into(),
            backend: "anon",
            shared: false,
            share_group: None,
            label: Some("<a & b>".into()),
            base,
            runs,
        }
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
        assert_eq!(escape("x\u{1}y"), "x?y");
    }

    #[test]
    fn the_axis_is_monotonic_and_gives_small_areas_room() {
        let s = Snapshot {
            title: "t".into(),
            tasks: vec![TaskView {
                task: "A".into(),
                space_id: 1,
                asid: None,
                cpus: vec![],
                areas: vec![
                    area(0x1000, 1, vec![(0, 1)]),
                    area(0x4000_0000, 1 << 18, vec![(5, 10)]),
                ],
                resident_pages: 11,
                reserved_pages: 1 + (1 << 18),
                page_table_frames: 1,
            }],
        };
        let axis = Axis::new(&s).unwrap();
        assert!(axis.edges.windows(2).all(|w| w[0].1 < w[1].1));
        let small = axis.x(0x2000) - axis.x(0x1000);
        assert!(small > 10.0, "a one-page area is visible: {small}");
        let svg = render(&[s], "title & more");
        assert!(svg.contains("&lt;a &amp; b&gt;"));
        assert!(svg.starts_with("<?xml"));
    }
}
