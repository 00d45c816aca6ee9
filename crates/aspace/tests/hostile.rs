//! Hostile arguments to the public API of the core, driven through the
//! simulator: every call must either succeed or return an error (never
//! panic), the areas must stay apart and inside the user range, and every
//! frame and reservation must come back when the spaces go.
//!
//! Seeds are fixed; a failure prints the seed, the step and the call.

use std::panic::{catch_unwind, AssertUnwindSafe};

use aspace::fork::{ForkRange, Inherit};
use aspace::placement::Placement;
use aspace::replace::Replacement;
use aspace::syscall;
use aspace::{
    Access, AreaAttrs, AreaFlags, Error, FaultContext, FaultOutcome, VirtAddr, PAGE_SIZE,
};
use aspace_sim::{Cpu, Sim, SimConfig, SpaceHandle};

const P: u64 = PAGE_SIZE;
/// x86_64 layout of the simulator.
const USER_END: u64 = 0x0000_8000_0000_0000;
const KERNEL_START: u64 = 0xffff_8000_0000_0000;
/// The window most calls aim at: pages [W, W + N).
const W: u64 = 0x100;
const N: u64 = 40;

const R: AreaFlags = AreaFlags::READ;
const RW: AreaFlags = AreaFlags::READ.union(AreaFlags::WRITE);

fn va(a: u64) -> VirtAddr {
    VirtAddr::new(a)
}

mod common;
use common::Rng;

const HOSTILE_ADDRS: &[u64] = &[
    0,
    1,
    P - 1,
    P,
    P + 1,
    2 * P,
    USER_END - P,
    USER_END - 1,
    USER_END,
    USER_END + P,
    USER_END - 2 * P,
    KERNEL_START,
    KERNEL_START - P,
    KERNEL_START + P,
    u64::MAX,
    u64::MAX - P + 1,
    u64::MAX - 2 * P + 1,
    1 << 63,
    ((1u64 << 52) - 1) * P,
    0x7fff_ffff_f000,
];

const HOSTILE_SIZES: &[u64] = &[
    0,
    1,
    P - 1,
    P,
    P + 1,
    u64::MAX,
    u64::MAX - P + 1,
    u64::MAX - P + 2,
    u64::MAX - 2 * P,
    1 << 63,
    USER_END,
    USER_END - P,
    USER_END + P,
    KERNEL_START,
    ((1u64 << 52) - 1) * P,
];

thread_local! {
    /// First page of the window the current run aims at.
    static WINDOW: std::cell::Cell<u64> = const { std::cell::Cell::new(W) };
}

fn window() -> u64 {
    WINDOW.with(|w| w.get())
}

fn addr(rng: &mut Rng) -> u64 {
    if rng.chance(25) {
        return rng.pick(HOSTILE_ADDRS);
    }
    let a = (window() + rng.below(N)) * P;
    if rng.chance(8) {
        a.wrapping_add(rng.below(P))
    } else {
        a
    }
}

fn size(rng: &mut Rng) -> u64 {
    if rng.chance(20) {
        return rng.pick(HOSTILE_SIZES);
    }
    let s = (1 + rng.below(6)) * P;
    if rng.chance(8) {
        s - rng.below(P)
    } else {
        s
    }
}

fn flags(rng: &mut Rng) -> AreaFlags {
    match rng.below(16) {
        0 => AreaFlags::from_bits_retain(rng.next() as u32),
        1 => AreaFlags::from_bits_retain(rng.below(0x80) as u32),
        10 | 11 => AreaFlags::from_bits_retain(rng.below(0x80) as u32) - AreaFlags::EXEC,
        2 => AreaFlags::WRITE | AreaFlags::EXEC,
        3 => AreaFlags::empty(),
        4 => RW | AreaFlags::GUARD,
        5 => RW | AreaFlags::GROWS_DOWN,
        6 => RW | AreaFlags::LATE_RESERVE,
        7 => R | AreaFlags::EXEC,
        8 => R,
        _ => RW,
    }
}

/// Checks the invariants of `space`; `Err` with what is wrong.
fn check_space(space: &SpaceHandle) -> Result<(), String> {
    let areas = space.areas();
    let lo = if space.is_kernel() { KERNEL_START } else { P };
    let hi = if space.is_kernel() {
        u64::MAX
    } else {
        USER_END
    };
    let mut prev_end: u64 = 0;
    for a in &areas {
        let base = a.base.as_u64();
        if a.pages == 0 {
            return Err(format!("empty area {a:?}"));
        }
        let end_page = (base / P).checked_add(a.pages);
        let Some(end_page) = end_page else {
            return Err(format!("area end wraps {a:?}"));
        };
        if base < lo || (end_page - 1) > (hi - 1) / P {
            return Err(format!("area outside the window {a:?}"));
        }
        if base / P < prev_end {
            return Err(format!("areas overlap at {a:?}"));
        }
        if a.flags.guard_pages() > 0
            && base / P <= prev_end
            && prev_end != 0
            && base / P - 1 < prev_end
        {
            return Err(format!("guard page of {a:?} taken"));
        }
        if a.resident > a.pages {
            return Err(format!("more resident than pages {a:?}"));
        }
        if a.flags.validate().is_err() && a.flags.bits() & !AreaFlags::all().bits() != 0 {
            return Err(format!("area with unknown flag bits {a:?}"));
        }
        if a.flags.contains(AreaFlags::WRITE | AreaFlags::EXEC) {
            return Err(format!("area both writable and executable {a:?}"));
        }
        let used = space.used_space(a.base).ok_or("no used space")?;
        let mut n = 0;
        for r in used.iter() {
            let (s, e) = (r.start.number(), r.end().number());
            if s < base / P || e > end_page {
                return Err(format!("used run {r:?} outside its area {a:?}"));
            }
            for p in s..e {
                if space.translate(aspace::Page::from_number(p)).is_none() {
                    return Err(format!("used page {p:#x} not mapped in {a:?}"));
                }
            }
            n += r.count;
        }
        if n != a.resident {
            return Err(format!("resident {} but used {n} in {a:?}", a.resident));
        }
        prev_end = end_page;
    }
    Ok(())
}

/// Every TLB entry of `space`'s ASID names what the page table maps, with
/// no more rights.
fn no_stale(sim: &Sim, space: &SpaceHandle) -> Result<(), String> {
    let Some(asid) = space.asid() else {
        return Ok(());
    };
    let hw = sim.hardware();
    for cpu in 0..2 {
        for e in hw.tlb_entries(cpu) {
            if e.asid != asid || e.global {
                continue;
            }
            match space.translate(e.page) {
                Some((frame, flags)) => {
                    if frame != e.frame
                        || (e.writable && !flags.contains(aspace::PageFlags::WRITE))
                        || (e.executable && !flags.contains(aspace::PageFlags::EXEC))
                    {
                        return Err(format!(
                            "CPU {cpu}: stale {e:?}, page table {frame:?} {flags:?}"
                        ));
                    }
                }
                None => return Err(format!("CPU {cpu}: TLB entry {e:?} of an unmapped page")),
            }
        }
    }
    Ok(())
}

/// Runs `f`; a panic becomes `Err` with its message.
fn guarded<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "non-string panic".into())
    })
}

fn quiet_panics() {
    // Keep the default hook's output short: the test reports the panic.
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::env::var_os("HOSTILE_VERBOSE").is_some() {
            default(info);
        }
    }));
}

fn sim() -> Sim {
    Sim::new(SimConfig {
        cpus: 2,
        memory: 8 << 20,
        ..SimConfig::default()
    })
    .unwrap()
}

/// What happened in one random run.
#[derive(Debug)]
struct Failure {
    seed: u64,
    step: usize,
    call: String,
    what: String,
}

/// One random step on `spaces[i]`; returns the call's description and its
/// result rendered.
fn step(
    rng: &mut Rng,
    sim: &Sim,
    cpu: &mut Cpu,
    spaces: &mut Vec<SpaceHandle>,
) -> (String, Result<String, String>) {
    let i = rng.below(spaces.len() as u64) as usize;
    let j = rng.below(spaces.len() as u64) as usize;
    let sp = spaces[i].clone();
    let other = spaces[j].clone();
    let (mut a, mut b, s, t) = (addr(rng), addr(rng), size(rng), size(rng));
    if sp.is_kernel() {
        // Mostly the same windows, in the kernel's half.
        if a < USER_END && rng.chance(85) {
            a += KERNEL_START;
        }
        if b < USER_END && rng.chance(85) {
            b += KERNEL_START;
        }
    }
    let f = flags(rng);
    let op = rng.below(44);
    let desc;
    let r: Result<String, String>;
    macro_rules! call {
        ($d:expr, $e:expr) => {{
            desc = format!("space{i}.{}", $d);
            r = guarded(|| cpu.run(|| format!("{:?}", $e)));
        }};
    }
    match op {
        0 | 1 | 34 | 35 => call!(
            format!("area_create({a:#x}, {s:#x}, {f:?})"),
            sp.area_create(va(a), s, f)
        ),
        2 => {
            let align = rng.pick(&[0u64, 1, 3, P, 2 * P, 1 << 20, 1 << 63, u64::MAX, P + 1]);
            let pl = match rng.below(3) {
                0 => Placement::LowestAbove {
                    bound: va(a),
                    align,
                },
                1 => Placement::LowestBetween {
                    bound: va(a),
                    ceiling: va(b),
                    align,
                },
                _ => Placement::HighestBelow {
                    ceiling: va(b),
                    align,
                },
            };
            call!(
                format!("area_create_anywhere({pl:?}, {s:#x}, {f:?})"),
                sp.area_create_anywhere(pl, s, f)
            )
        }
        3 => call!(
            format!("area_create_grows_down({a:#x}, {s:#x}, {t:#x}, {f:?})"),
            sp.area_create_grows_down(va(a), s, t, f)
        ),
        4 | 5 => call!(
            format!("area_resize({a:#x}, {s:#x})"),
            sp.area_resize(va(a), s)
        ),
        6 => call!(format!("area_destroy({a:#x})"), sp.area_destroy(va(a))),
        7 => call!(
            format!("area_change_flags({a:#x}, {f:?})"),
            sp.area_change_flags(va(a), f)
        ),
        8 => call!(
            format!("protect_range({a:#x}, {s:#x}, {f:?})"),
            sp.protect_range(va(a), s, f)
        ),
        9 => {
            // Released ranges: the range itself, a hostile one, or both.
            let release = [(va(a), s), (va(b), t)];
            let release = &release[rng.pick(&[0usize, 1, 0])..rng.pick(&[1usize, 2])];
            call!(
                format!("protect_range_releasing({a:#x}, {s:#x}, {f:?}, {release:x?})"),
                sp.protect_range_releasing(va(a), s, f, release)
            )
        }
        10 | 11 => call!(
            format!("unmap_range({a:#x}, {s:#x})"),
            sp.unmap_range(va(a), s)
        ),
        12 => call!(
            format!("move_range({a:#x}, {s:#x}, {b:#x}, {t:#x})"),
            sp.move_range(va(a), s, va(b), t)
        ),
        13 => call!(
            format!("move_range_over({a:#x}, {s:#x}, {b:#x}, {t:#x})"),
            sp.move_range_over(va(a), s, va(b), t)
        ),
        14 => {
            let over = rng.chance(50);
            call!(
                format!("move_range_leaving({a:#x}, {s:#x}, {b:#x}, {over})"),
                sp.move_range_leaving(va(a), s, va(b), over)
            )
        }
        15 => {
            let over = rng.chance(50);
            let gbase = if rng.chance(70) {
                b.wrapping_add(s.div_ceil(P).wrapping_mul(P))
            } else {
                addr(rng)
            };
            let g = Replacement {
                base: va(gbase),
                size: t,
                flags: f,
                attrs: AreaAttrs::empty(),
                backend: anon(),
            };
            call!(
                format!("move_range_growing({a:#x}, {s:#x}, {b:#x}, growth {gbase:#x}+{t:#x} {f:?}, {over})"),
                sp.move_range_growing(va(a), s, va(b), &g, over)
            )
        }
        16 => {
            let mask = flags(rng);
            call!(
                format!("area_share({a:#x}, {s:#x}, space{j}, {b:#x}, {mask:?})"),
                sp.area_share(va(a), s, &other, va(b), mask)
            )
        }
        17 => {
            // Share with the exact size of the area there, often.
            let size = sp.area_size(va(a));
            let size = if rng.chance(80) { size } else { s };
            let mask = if rng.chance(60) { R } else { flags(rng) };
            call!(
                format!("area_share({a:#x}, {size:#x}, space{j}, {b:#x}, {mask:?})"),
                sp.area_share(va(a), size, &other, va(b), mask)
            )
        }
        18 => call!(
            format!("discard_range({a:#x}, {s:#x})"),
            sp.discard_range(va(a), s)
        ),
        19 => call!(
            format!("discard_ranges([({a:#x}, {s:#x}), ({b:#x}, {t:#x})])"),
            sp.discard_ranges(&[(va(a), s), (va(b), t)])
        ),
        20 => call!(
            format!("area_extend_down({a:#x}, {b:#x})"),
            sp.area_extend_down(va(a), va(b))
        ),
        21 => call!(format!("area_split({a:#x})"), sp.area_split(va(a))),
        22 => call!(format!("area_merge({a:#x})"), sp.area_merge(va(a))),
        23 => call!(
            format!("area_restrict({a:#x}, {f:?})"),
            sp.area_restrict(va(a), f)
        ),
        24 => call!(
            format!("highest_free({a:#x}, {b:#x}, {s:#x})"),
            sp.highest_free(va(a), va(b), s)
        ),
        25 => {
            let acc = rng.pick(&[Access::Read, Access::Write, Access::Exec]);
            let ctx = rng.pick(&[
                FaultContext::User,
                FaultContext::Kernel,
                FaultContext::UserCopy,
            ]);
            let x = if rng.chance(50) {
                a.wrapping_add(rng.below(P))
            } else {
                a
            };
            call!(
                format!("page_fault({x:#x}, {acc:?}, {ctx:?})"),
                sp.page_fault(va(x), acc, ctx)
            )
        }
        26 | 36 | 37 | 38 | 39 => {
            // Touch through the CPU, which must run the space.
            desc = format!("cpu touch space{i} at {a:#x}");
            r = guarded(|| {
                cpu.switch_to(&sp).unwrap();
                let w = cpu.write_u64(va(a), a);
                let rd = cpu.read_u64(va(a));
                let fe = cpu.fetch(va(a));
                format!("{w:?} {rd:?} {fe:?}")
            });
        }
        27 => {
            let len = rng.pick(&[0usize, 1, 8, 4096, 4097, 3 * 4096]);
            call!(
                format!("copy_to_user({a:#x}, {len})"),
                sp.copy_to_user(va(a), &vec![7u8; len])
            )
        }
        28 => {
            let ranges = [
                ForkRange {
                    base: va(a),
                    size: s,
                    inherit: Inherit::Nothing,
                },
                ForkRange {
                    base: va(b),
                    size: t,
                    inherit: Inherit::Empty,
                },
            ];
            let n = rng.below(3) as usize;
            desc = format!("fork_except(space{i}, {:?})", &ranges[..n]);
            r = guarded(|| {
                cpu.run(|| match sim.system().fork_except(&sp, &ranges[..n]) {
                    Ok(child) => {
                        if spaces.len() < 5 {
                            spaces.push(child);
                        }
                        "Ok(child)".to_string()
                    }
                    Err(e) => format!("{e:?}"),
                })
            });
        }
        29 => {
            let fl = rng.next() as u32;
            let fl = if rng.chance(50) { fl & 0x7f } else { fl };
            let addr = if rng.chance(20) {
                syscall::AS_AREA_ANY
            } else {
                a as usize
            };
            call!(
                format!("sys_as_area_create({addr:#x}, {s:#x}, {fl:#x})"),
                syscall::sys_as_area_create(&sp, addr, s as usize, fl)
            )
        }
        30 => {
            let fl = rng.next() as u32 & if rng.chance(50) { 0x7f } else { u32::MAX };
            let which = rng.below(4);
            match which {
                0 => call!(
                    format!("sys_as_area_resize({a:#x}, {s:#x})"),
                    syscall::sys_as_area_resize(&sp, a as usize, s as usize, fl)
                ),
                1 => call!(
                    format!("sys_as_area_change_flags({a:#x}, {fl:#x})"),
                    syscall::sys_as_area_change_flags(&sp, a as usize, fl)
                ),
                2 => call!(
                    format!("sys_as_area_destroy({a:#x})"),
                    syscall::sys_as_area_destroy(&sp, a as usize)
                ),
                _ => call!(
                    format!("sys_as_area_get_info({a:#x}, {b:#x})"),
                    syscall::sys_as_area_get_info(&sp, a as usize, b as usize)
                ),
            }
        }
        31 => {
            let max = rng.pick(&[0usize, 1, 2, usize::MAX, usize::MAX / 40 + 1]);
            call!(
                format!("sys_as_area_list({a:#x}, {max:#x})"),
                syscall::sys_as_area_list(&sp, a as usize, max)
            )
        }
        32 => {
            let fl = rng.next() as u32 & 0x7f;
            let bound = b as usize;
            call!(
                format!("sys_as_area_create_any({a:#x}, {s:#x}, {fl:#x}, {bound:#x})"),
                syscall::sys_as_area_create_any(&sp, a as usize, s as usize, fl, bound)
            )
        }
        40 | 41 => {
            let f2 = flags(rng);
            let parts = [
                Replacement {
                    base: va(a),
                    size: s,
                    flags: f,
                    attrs: AreaAttrs::empty(),
                    backend: anon(),
                },
                Replacement {
                    base: va(b),
                    size: t,
                    flags: f2,
                    attrs: AreaAttrs::empty(),
                    backend: anon(),
                },
            ];
            let n = 1 + rng.below(2) as usize;
            call!(
                format!("area_replace_many([{a:#x}+{s:#x} {f:?}, {b:#x}+{t:#x} {f2:?}][..{n}])"),
                sp.area_replace_many(&parts[..n])
            )
        }
        42 => {
            let c = addr(rng);
            let over = rng.chance(50);
            let parts = [Replacement {
                base: va(a),
                size: t,
                flags: f,
                attrs: AreaAttrs::empty(),
                backend: anon(),
            }];
            let n = rng.below(2) as usize;
            call!(
                format!("move_range_leaving_as({a:#x}, {s:#x}, {c:#x}, {over}, [{a:#x}+{t:#x} {f:?}][..{n}])"),
                sp.move_range_leaving_as(va(a), s, va(c), over, &parts[..n])
            )
        }
        43 => {
            let fresh = [Replacement {
                base: va(a),
                size: s,
                flags: f,
                attrs: AreaAttrs::empty(),
                backend: anon(),
            }];
            let ranges = [ForkRange {
                base: va(b),
                size: t,
                inherit: Inherit::Nothing,
            }];
            let n = rng.below(2) as usize;
            desc = format!(
                "fork_replacing(space{i}, {:?}, fresh {a:#x}+{s:#x} {f:?})",
                &ranges[..n]
            );
            r = guarded(|| {
                cpu.run(
                    || match sim.system().fork_replacing(&sp, &ranges[..n], &fresh) {
                        Ok(child) => {
                            if spaces.len() < 5 {
                                spaces.push(child);
                            }
                            "Ok(child)".to_string()
                        }
                        Err(e) => format!("{e:?}"),
                    },
                )
            });
        }
        _ => {
            let k = rng.below(3);
            call!(
                format!("discard_object_pages_where(k={k})"),
                sp.discard_object_pages_where(
                    |o| o % 3 == k as usize,
                    |p, _| p.number() % 2 == 0,
                    || {}
                )
            )
        }
    }
    (desc, r)
}

fn anon() -> aspace::BackendRef<aspace_sim::PhysMem, aspace_sim::FramePool> {
    aspace::BackendRef::stateless(aspace::backend::anon::AnonBackend)
}

fn run_seed(seed: u64, steps: usize) -> Result<(), Failure> {
    // Every fifth seed runs short of memory: few frames, a small commit
    // limit.
    let tight = seed % 5 == 2;
    // Three windows: the bottom of the user range (the NULL page and page
    // 1 in it), the middle, and the top (ending at the user end).
    let w = match seed % 3 {
        0 => 0,
        1 => W,
        _ => USER_END / P - N,
    };
    WINDOW.with(|c| c.set(w));
    let sim = if tight {
        Sim::new(SimConfig {
            cpus: 2,
            memory: 40 * P,
            ..SimConfig::default()
        })
        .unwrap()
    } else {
        sim()
    };
    if tight {
        sim.system().reserve().set_limit(12);
    }
    let base_frames = sim.frames_in_use();
    let base_kpt = sim.system().kernel().page_table_frames();
    let mut rng = Rng::new(seed);
    let mut cpu = sim.cpu(0);
    let mut spaces = vec![
        sim.system().create().unwrap(),
        sim.system().create().unwrap(),
    ];
    // Every fourth seed also works on the kernel space (as spaces[2]).
    let with_kernel = seed % 4 == 0;
    if with_kernel {
        spaces.push(sim.system().kernel().clone());
    }
    let fixed = spaces.len();
    let fail = |step, call: &str, what: String| Failure {
        seed,
        step,
        call: call.to_string(),
        what,
    };
    let mut last = String::new();
    for k in 0..steps {
        let (call, r) = step(&mut rng, &sim, &mut cpu, &mut spaces);
        if std::env::var_os("HOSTILE_TRACE").is_some() {
            eprintln!("{k}: {call} -> {r:?}");
        }
        if let Err(p) = r {
            return Err(fail(k, &call, format!("panic: {p}")));
        }
        for (n, sp) in spaces.iter().enumerate() {
            if let Err(e) =
                guarded(|| check_space(sp).and_then(|()| no_stale(&sim, sp))).unwrap_or_else(Err)
            {
                return Err(fail(k, &call, format!("space{n}: {e}")));
            }
        }
        last = call;
        // Occasionally drop a forked child.
        if spaces.len() > fixed && rng.chance(10) {
            cpu.idle();
            spaces.pop();
        }
    }
    cpu.idle();
    drop(cpu);
    if with_kernel {
        let k = sim.system().kernel();
        for a in k.areas() {
            if let Err(p) = guarded(|| k.area_destroy(a.base)) {
                return Err(fail(steps, "kernel area_destroy at the end", p));
            }
        }
    }
    drop(spaces);
    let hs = sim.hardware().stats();
    if hs.stale_accesses != 0 {
        return Err(fail(
            steps,
            &last,
            format!("{} stale accesses", hs.stale_accesses),
        ));
    }
    let committed = sim.system().reserve().committed();
    if committed != 0 {
        return Err(fail(
            steps,
            &last,
            format!("{committed} pages still reserved"),
        ));
    }
    // The kernel's page table keeps the intermediate tables it grew (as
    // every page table does until its space goes): not a leak.
    let kpt = sim.system().kernel().page_table_frames();
    let frames = sim.frames_in_use() - (kpt - base_kpt);
    if frames != base_frames {
        return Err(fail(
            steps,
            &last,
            format!("frames {frames} in use, {base_frames} before"),
        ));
    }
    Ok(())
}

#[test]
fn hostile_random_sequences() {
    quiet_panics();
    let seeds: Vec<u64> = match std::env::var("HOSTILE_SEED") {
        Ok(s) => vec![s.parse().unwrap()],
        Err(_) => {
            let n = std::env::var("HOSTILE_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(200);
            (1..=n).collect()
        }
    };
    let steps = std::env::var("HOSTILE_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1500);
    let mut failures = Vec::new();
    for seed in seeds {
        if let Err(f) = run_seed(seed, steps) {
            eprintln!(
                "FAIL seed {} step {}: {}\n    {}",
                f.seed, f.step, f.call, f.what
            );
            failures.push(f);
        }
    }
    assert!(failures.is_empty(), "{} seeds failed", failures.len());
}

/// A kernel area that grows down stays in the kernel's half: a fault in
/// its guard page at the start of the kernel range is refused (it grew
/// out of the range before: its new guard page, then its pages, in the
/// user half).
#[test]
fn a_kernel_grows_down_area_stays_in_the_kernel_half() {
    let sim = sim();
    let k = sim.system().kernel().clone();
    let base = KERNEL_START + P;
    k.area_create_grows_down(va(base), P, 16 * P, RW).unwrap();
    // The guard page is the first page of the kernel range: growing over
    // it would put the new guard page below the kernel range, which
    // `area_create` refuses for a kernel area with a guard page.
    assert_eq!(
        k.area_create_grows_down(va(KERNEL_START), P, 16 * P, RW),
        Err(Error::AddressNotAvailable),
        "a kernel grows-down area's guard may not lie below the kernel range"
    );
    let r1 = k.page_fault(va(KERNEL_START), Access::Write, FaultContext::Kernel);
    let r2 = k.page_fault(va(KERNEL_START - P), Access::Write, FaultContext::Kernel);
    let areas = k.areas();
    for a in &areas {
        let _ = k.area_destroy(a.base);
    }
    assert!(
        areas.iter().all(|a| a.base.as_u64() >= KERNEL_START),
        "kernel area grown below the kernel range: {areas:?} (faults: {r1:?}, {r2:?})"
    );
    assert_ne!(
        r2,
        FaultOutcome::Ok,
        "a fault in the user half grew a kernel area"
    );
}

/// `move_range_growing` of the range `[0, 2^64)` (old = 0, old_size =
/// u64::MAX: 2^52 pages, whose size in bytes overflows) is refused (it
/// panicked on the overflow before).
#[test]
fn move_range_growing_of_the_whole_space_is_refused() {
    quiet_panics();
    let sim = sim();
    let sp = sim.system().create().unwrap();
    sp.area_create(va(0x10_0000), 2 * P, RW).unwrap();
    let growth = Replacement {
        base: va(0x20_0000),
        size: P,
        flags: RW,
        attrs: AreaAttrs::empty(),
        backend: anon(),
    };
    for old_size in [u64::MAX, u64::MAX - P + 2] {
        let r = guarded(|| sp.move_range_growing(va(0), old_size, va(0x20_0000), &growth, false));
        match r {
            Ok(Err(_)) => {}
            other => panic!("move_range_growing(0, {old_size:#x}, ..) = {other:?}; want an error"),
        }
    }
}

/// Fixed hostile calls with the error HelenOS (and the crate's docs)
/// give for each; every call also runs under `catch_unwind`.
#[test]
fn fixed_hostile_calls_return_documented_errors() {
    use Error::*;
    quiet_panics();
    let sim = sim();
    let base_frames = sim.frames_in_use();
    let sp = sim.system().create().unwrap();
    let a = 0x10_0000u64;
    sp.area_create(va(a), 4 * P, RW).unwrap();
    let top = USER_END - 2 * P;
    sp.area_create(va(top), 2 * P, RW).unwrap();
    let bad = std::cell::RefCell::new(Vec::new());
    let expect = |what: &str, got: Result<Result<(), Error>, String>, want: Result<(), Error>| {
        if got.as_ref().ok() != Some(&want) {
            bad.borrow_mut()
                .push(format!("{what}: got {got:?}, want {want:?}"));
        }
        assert!(
            check_space(&sp).is_ok(),
            "after {what}: {:?}",
            check_space(&sp)
        );
    };
    let c = |r: Result<VirtAddr, Error>| r.map(|_| ());
    // Creation.
    expect(
        "create at 0",
        guarded(|| c(sp.area_create(va(0), P, RW))),
        Err(AddressNotAvailable),
    );
    expect(
        "create unaligned",
        guarded(|| c(sp.area_create(va(a + 8 * P + 1), P, RW))),
        Err(InvalidArgument),
    );
    expect(
        "create size 0",
        guarded(|| c(sp.area_create(va(a + 8 * P), 0, RW))),
        Err(InvalidArgument),
    );
    expect(
        "create size u64::MAX",
        guarded(|| c(sp.area_create(va(a + 8 * P), u64::MAX, RW))),
        Err(InvalidArgument),
    );
    expect(
        "create wrapping",
        guarded(|| c(sp.area_create(va(u64::MAX - P + 1), 2 * P, RW))),
        Err(InvalidArgument),
    );
    expect(
        "create past user end",
        guarded(|| c(sp.area_create(va(USER_END), P, RW))),
        Err(AddressNotAvailable),
    );
    expect(
        "create across user end",
        guarded(|| c(sp.area_create(va(USER_END - 3 * P), 4 * P, RW))),
        Err(AddressNotAvailable),
    );
    expect(
        "create kernel half",
        guarded(|| c(sp.area_create(va(KERNEL_START), P, RW))),
        Err(AddressNotAvailable),
    );
    expect(
        "create W+X",
        guarded(|| c(sp.area_create(va(a + 8 * P), P, AreaFlags::WRITE | AreaFlags::EXEC))),
        Err(InvalidArgument),
    );
    expect(
        "create unknown bits",
        guarded(|| c(sp.area_create(va(a + 8 * P), P, AreaFlags::from_bits_retain(0x100 | 3)))),
        Err(InvalidArgument),
    );
    expect(
        "create overlapping",
        guarded(|| c(sp.area_create(va(a + P), P, RW))),
        Err(AddressNotAvailable),
    );
    expect(
        "create guarded on neighbour's end",
        guarded(|| c(sp.area_create(va(a + 4 * P), P, RW | AreaFlags::GUARD))),
        Err(AddressNotAvailable),
    );
    expect(
        "anywhere size 0",
        guarded(|| c(sp.area_create_anywhere(Placement::above(va(0)), 0, RW))),
        Err(InvalidArgument),
    );
    expect(
        "anywhere align 3",
        guarded(|| {
            c(sp.area_create_anywhere(
                Placement::LowestAbove {
                    bound: va(0),
                    align: 3,
                },
                P,
                RW,
            ))
        }),
        Err(InvalidArgument),
    );
    expect(
        "anywhere huge",
        guarded(|| c(sp.area_create_anywhere(Placement::above(va(0)), u64::MAX, RW))),
        Err(NoMemory),
    );
    expect(
        "anywhere above the user end",
        guarded(|| c(sp.area_create_anywhere(Placement::above(va(USER_END)), P, RW))),
        Err(NoMemory),
    );
    expect(
        "anywhere align 2^63",
        guarded(|| {
            c(sp.area_create_anywhere(
                Placement::LowestAbove {
                    bound: va(0),
                    align: 1 << 63,
                },
                P,
                RW,
            ))
        }),
        Err(NoMemory),
    );
    // Resize.
    expect(
        "resize no area",
        guarded(|| sp.area_resize(va(a - P), P)),
        Err(NotFound),
    );
    expect(
        "resize to 0",
        guarded(|| sp.area_resize(va(a), 0)),
        Err(PermissionDenied),
    );
    expect(
        "resize u64::MAX",
        guarded(|| sp.area_resize(va(a), u64::MAX)),
        Err(InvalidArgument),
    );
    expect(
        "resize wrapping from inside",
        guarded(|| sp.area_resize(va(a + 3 * P), u64::MAX - 2 * P)),
        Err(InvalidArgument),
    );
    expect(
        "resize past user end",
        guarded(|| sp.area_resize(va(top), 3 * P)),
        Err(AddressNotAvailable),
    );
    expect(
        "resize over the other area",
        guarded(|| sp.area_resize(va(top - 0x1000_0000), P)),
        Err(NotFound),
    );
    expect(
        "resize to the user end",
        guarded(|| sp.area_resize(va(top), 2 * P)),
        Ok(()),
    );
    // Change of rights, destroy.
    expect(
        "change_flags W+X",
        guarded(|| sp.area_change_flags(va(a), AreaFlags::WRITE | AreaFlags::EXEC)),
        Err(InvalidArgument),
    );
    expect(
        "change_flags unknown",
        guarded(|| sp.area_change_flags(va(a), AreaFlags::from_bits_retain(1 << 31))),
        Err(InvalidArgument),
    );
    expect(
        "change_flags no area",
        guarded(|| sp.area_change_flags(va(0), R)),
        Err(NotFound),
    );
    expect(
        "destroy u64::MAX",
        guarded(|| sp.area_destroy(va(u64::MAX))),
        Err(NotFound),
    );
    // Ranges.
    expect(
        "unmap size 0",
        guarded(|| sp.unmap_range(va(a), 0)),
        Err(InvalidArgument),
    );
    expect(
        "unmap wrapping",
        guarded(|| sp.unmap_range(va(a), u64::MAX)),
        Err(InvalidArgument),
    );
    expect(
        "unmap whole space",
        guarded(|| sp.unmap_range(va(0), u64::MAX)),
        Ok(()),
    );
    assert!(
        sp.areas().is_empty(),
        "unmap_range(0, u64::MAX) removes everything"
    );
    sp.area_create(va(a), 4 * P, RW).unwrap();
    expect(
        "protect hole",
        guarded(|| sp.protect_range(va(a), 5 * P, R)),
        Err(NotFound),
    );
    expect(
        "protect W+X",
        guarded(|| sp.protect_range(va(a), P, AreaFlags::WRITE | AreaFlags::EXEC)),
        Err(InvalidArgument),
    );
    expect(
        "move onto itself",
        guarded(|| sp.move_range(va(a), P, va(a), P)),
        Err(AddressNotAvailable),
    );
    expect(
        "move overlapping",
        guarded(|| sp.move_range(va(a), 2 * P, va(a + P), 2 * P)),
        Err(AddressNotAvailable),
    );
    expect(
        "move past user end",
        guarded(|| sp.move_range(va(a), P, va(USER_END), P)),
        Err(AddressNotAvailable),
    );
    expect(
        "move to the kernel half",
        guarded(|| sp.move_range(va(a), P, va(KERNEL_START), P)),
        Err(AddressNotAvailable),
    );
    expect(
        "move to page 0",
        guarded(|| sp.move_range(va(a), P, va(0), P)),
        Err(AddressNotAvailable),
    );
    expect(
        "move over onto itself",
        guarded(|| sp.move_range_over(va(a), P, va(a), P)),
        Err(AddressNotAvailable),
    );
    expect(
        "share size mismatch",
        guarded(|| sp.area_share(va(a), P, &sp, va(a + 16 * P), R)),
        Err(PermissionDenied),
    );
    expect(
        "share more rights",
        guarded(|| sp.area_share(va(a), 4 * P, &sp, va(a + 16 * P), R | AreaFlags::EXEC)),
        Err(PermissionDenied),
    );
    expect(
        "share unknown mask bits",
        guarded(|| {
            sp.area_share(
                va(a),
                4 * P,
                &sp,
                va(a + 16 * P),
                AreaFlags::from_bits_retain(0x8001),
            )
        }),
        Err(InvalidArgument),
    );
    expect(
        "share onto itself",
        guarded(|| sp.area_share(va(a), 4 * P, &sp, va(a), R)),
        Err(AddressNotAvailable),
    );
    expect(
        "share to page 0",
        guarded(|| sp.area_share(va(a), 4 * P, &sp, va(0), R)),
        Err(AddressNotAvailable),
    );
    expect(
        "share past user end",
        guarded(|| sp.area_share(va(a), 4 * P, &sp, va(USER_END - P), R)),
        Err(AddressNotAvailable),
    );
    expect(
        "extend down to page 0",
        guarded(|| sp.area_extend_down(va(a), va(0))),
        Err(InvalidArgument),
    );
    expect(
        "extend down unaligned",
        guarded(|| sp.area_extend_down(va(a), va(a - 1))),
        Err(InvalidArgument),
    );
    expect(
        "extend down above base",
        guarded(|| sp.area_extend_down(va(a), va(a + P))),
        Err(InvalidArgument),
    );
    expect(
        "split unaligned",
        guarded(|| sp.area_split(va(a + 1))),
        Err(InvalidArgument),
    );
    expect(
        "discard wrapping",
        guarded(|| sp.discard_range(va(a), u64::MAX)),
        Err(InvalidArgument),
    );
    expect(
        "discard out of order",
        guarded(|| sp.discard_ranges(&[(va(a + P), P), (va(a), P)])),
        Err(InvalidArgument),
    );
    let r = guarded(|| sp.highest_free(va(0), va(USER_END), 0));
    if r != Ok(None) {
        bad.borrow_mut().push(format!(
            "highest_free(size 0): got {r:?}, want None (as documented)"
        ));
    }
    // System calls and their errno values.
    let s = |r: isize| -> Result<(), Error> {
        if r == 0 {
            Ok(())
        } else {
            Err(Error::from_errno(r as i32).expect("an errno of ours"))
        }
    };
    expect(
        "sys_resize no area",
        guarded(|| s(syscall::sys_as_area_resize(&sp, 0, P as usize, 0))),
        Err(NotFound),
    );
    expect(
        "sys_resize to 0",
        guarded(|| s(syscall::sys_as_area_resize(&sp, a as usize, 0, 0))),
        Err(PermissionDenied),
    );
    expect(
        "sys_change_flags W+X",
        guarded(|| s(syscall::sys_as_area_change_flags(&sp, a as usize, 6))),
        Err(InvalidArgument),
    );
    expect(
        "sys_change_flags unknown",
        guarded(|| {
            s(syscall::sys_as_area_change_flags(
                &sp,
                a as usize,
                0x8000_0001,
            ))
        }),
        Err(InvalidArgument),
    );
    expect(
        "sys_destroy no area",
        guarded(|| s(syscall::sys_as_area_destroy(&sp, usize::MAX))),
        Err(NotFound),
    );
    expect(
        "sys_get_info no area",
        guarded(|| s(syscall::sys_as_area_get_info(&sp, 0, a as usize))),
        Err(NotFound),
    );
    expect(
        "sys_get_info bad dest",
        guarded(|| {
            s(syscall::sys_as_area_get_info(
                &sp,
                a as usize,
                usize::MAX - 8,
            ))
        }),
        Err(BadMemory),
    );
    expect(
        "sys_list bad dest",
        guarded(|| s(syscall::sys_as_area_list(&sp, usize::MAX, usize::MAX))),
        Err(BadMemory),
    );
    let created = guarded(|| syscall::sys_as_area_create(&sp, 0, P as usize, 3)).unwrap();
    if created != syscall::CREATE_FAILED {
        bad.borrow_mut()
            .push(format!("sys_as_area_create(0, ..) = {created:#x}"));
    }
    let created = guarded(|| syscall::sys_as_area_create(&sp, a as usize, P as usize, 3)).unwrap();
    if created != syscall::CREATE_FAILED {
        bad.borrow_mut()
            .push(format!("sys_as_area_create over an area = {created:#x}"));
    }
    let created =
        guarded(|| syscall::sys_as_area_create(&sp, syscall::AS_AREA_ANY, usize::MAX, 3)).unwrap();
    if created != syscall::CREATE_FAILED {
        bad.borrow_mut().push(format!(
            "sys_as_area_create(ANY, usize::MAX) = {created:#x}"
        ));
    }
    let created =
        guarded(|| syscall::sys_as_area_create_any(&sp, usize::MAX, P as usize, 3, 0)).unwrap();
    if created != syscall::CREATE_FAILED {
        bad.borrow_mut().push(format!(
            "sys_as_area_create_any(bad pointer) = {created:#x}"
        ));
    }
    drop(sp);
    assert_eq!(sim.frames_in_use(), base_frames, "frames back");
    assert_eq!(sim.system().reserve().committed(), 0, "reservation back");
    let bad = bad.into_inner();
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// `fork_replacing` with a fresh area outside the user window: documented
/// `AddressNotAvailable` (as `area_replace_many`, whose checks it shares).
#[test]
fn fork_replacing_fresh_outside_window() {
    quiet_panics();
    let sim = sim();
    let sp = sim.system().create().unwrap();
    sp.area_create(va(0x10_0000), 2 * P, RW).unwrap();
    let cases = [
        (KERNEL_START, P),
        (USER_END, P),
        (USER_END - P, 2 * P),
        (0, P),
        (0xffff_7fff_ffff_f000, 0x7fff_ffff_f000),
    ];
    let mut bad = Vec::new();
    for (base, size) in cases {
        let fresh = [Replacement {
            base: va(base),
            size,
            flags: RW,
            attrs: AreaAttrs::empty(),
            backend: anon(),
        }];
        let replaced = guarded(|| sp.area_replace_many(&fresh).err());
        let forked = guarded(|| sim.system().fork_replacing(&sp, &[], &fresh).err());
        if forked != Ok(Some(Error::AddressNotAvailable)) {
            bad.push(format!("fork_replacing fresh {base:#x}+{size:#x}: {forked:?} (area_replace_many: {replaced:?})"));
        }
    }
    drop(sp);
    assert_eq!(sim.system().reserve().committed(), 0);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
