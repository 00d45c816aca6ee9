//! A small allocator on Linux's memory calls: its arena grows with `mmap`
//! (placed anywhere, and at a hint), gives back the middle of a chunk with
//! a partial `munmap`, guards pages with `mprotect(PROT_NONE)`, grows a
//! chunk with `mremap(MREMAP_MAYMOVE)`, moves one with `MREMAP_DONTUNMAP`,
//! maps a shared page twice (`mremap` of length 0) and moves three mappings
//! with a guard page at once (`MREMAP_FIXED`, Linux 6.17+) and grows one
//! whose top page is a guard page while moving it; then `brk`,
//! `madvise(MADV_DONTNEED)`, `madvise(MADV_REMOVE)` (a hole punched in a
//! shared object, seen through a second mapping of it)
//! and the kernel's file (private copy-on-write and shared mappings). Every
//! block holds a pattern that is checked after each step; each step prints
//! a `PASS` or `FAIL` line.
//!
//! `arg` 0 runs the checks (exit 0 when all pass). 1 to 3 each make one
//! access the kernel must refuse, killing the task: 1 reads the freed
//! middle of a chunk, 2 writes a guard page, 3 writes a read-only private
//! file mapping (6, after 5, reads a page made a guard page with
//! `MADV_GUARD_INSTALL`). 4 makes thousands of calls with random arguments (fixed
//! seed), then gives everything back and checks no area stays. 5 runs two
//! threads: one writes a private file mapping (copy-on-write faults) while
//! the other drops its copies and maps and unmaps memory.
#![no_std]
#![no_main]

use aspace_user::linux::*;
use aspace_user::nr::{blob_byte, BLOB_FD, BLOB_PAGES, LINUX_END, LINUX_START};
use aspace_user::*;
use core::sync::atomic::{AtomicU64, Ordering};

const P: u64 = PAGE as u64;
/// Pages per arena chunk.
const CHUNK: u64 = 16;
const ANON: u64 = MAP_PRIVATE | MAP_ANONYMOUS;
const RW: u64 = PROT_READ | PROT_WRITE;
/// Where the hinted chunk goes (free: the window's middle).
const HINT: u64 = LINUX_START + 0x4000_0000;

/// A block handed out by the allocator.
#[derive(Clone, Copy, Default)]
struct Block {
    addr: u64,
    len: u64,
    id: u64,
}

/// The allocator: chunks of [`CHUNK`] pages from `mmap`, blocks cut from
/// the newest chunk, a new chunk when it is full.
struct Arena {
    chunks: [u64; 8],
    nchunks: usize,
    /// The next free byte of the newest chunk, and its end.
    next: u64,
    end: u64,
    blocks: [Block; 64],
    nblocks: usize,
    /// Ranges given back or guarded: blocks meeting them are not checked.
    holes: [(u64, u64); 4],
    nholes: usize,
}

impl Arena {
    const fn new() -> Self {
        Arena {
            chunks: [0; 8],
            nchunks: 0,
            next: 0,
            end: 0,
            blocks: [Block {
                addr: 0,
                len: 0,
                id: 0,
            }; 64],
            nblocks: 0,
            holes: [(0, 0); 4],
            nholes: 0,
        }
    }

    /// Grows the arena by a chunk at `hint` (0: anywhere); its address.
    fn grow(&mut self, hint: u64) -> Option<u64> {
        if self.nchunks == self.chunks.len() {
            return None;
        }
        let r = mmap(hint, CHUNK * P, RW, ANON, u64::MAX, 0);
        if r < 0 {
            println!("linux_alloc: mmap of a chunk = {r}");
            return None;
        }
        let c = r as u64;
        self.chunks[self.nchunks] = c;
        self.nchunks += 1;
        self.next = c;
        self.end = c + CHUNK * P;
        Some(c)
    }

    /// A block of `len` bytes (8-aligned), written with its pattern.
    fn alloc(&mut self, len: u64) -> Option<Block> {
        let len = (len + 7) & !7;
        if self.nblocks == self.blocks.len() || len > CHUNK * P {
            return None;
        }
        if self.next + len > self.end {
            self.grow(0)?;
        }
        let b = Block {
            addr: self.next,
            len,
            id: self.nblocks as u64 + 1,
        };
        self.next += len;
        self.blocks[self.nblocks] = b;
        self.nblocks += 1;
        fill(b.addr, b.len, b.id);
        Some(b)
    }

    /// Records `[lo, hi)` as given back or guarded.
    fn hole(&mut self, lo: u64, hi: u64) {
        if self.nholes < self.holes.len() {
            self.holes[self.nholes] = (lo, hi);
            self.nholes += 1;
        }
    }

    /// Whether every block holds its pattern (blocks that meet a hole are
    /// skipped).
    fn check(&self) -> bool {
        let holes = &self.holes[..self.nholes];
        self.blocks[..self.nblocks]
            .iter()
            .filter(|b| {
                holes
                    .iter()
                    .all(|&(lo, hi)| b.addr + b.len <= lo || b.addr >= hi)
            })
            .all(|b| holds(b.addr, b.len, b.id))
    }
}

fn word(id: u64, i: u64) -> u64 {
    id << 32 | (i * 0x9e37) & 0xffff_ffff
}

/// Writes block `id`'s pattern over `[addr, addr + len)`.
fn fill(addr: u64, len: u64, id: u64) {
    for i in 0..len / 8 {
        write((addr + i * 8) as *mut u64, word(id, i));
    }
}

/// Whether `[addr, addr + len)` holds block `id`'s pattern.
fn holds(addr: u64, len: u64, id: u64) -> bool {
    (0..len / 8).all(|i| read((addr + i * 8) as *const u64) == word(id, i))
}

fn zeros(addr: u64, len: u64) -> bool {
    (0..len / 8).all(|i| read((addr + i * 8) as *const u64) == 0)
}

/// Whether `[addr, addr + len)` is free: a `MAP_FIXED_NOREPLACE` there
/// succeeds (and is given back).
fn free(addr: u64, len: u64) -> bool {
    let r = mmap(addr, len, RW, ANON | MAP_FIXED_NOREPLACE, u64::MAX, 0);
    r == addr as i64 && munmap(addr, len) == 0
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

/// The arena: chunks anywhere (top-down from the window's end) and at a
/// hint, blocks written and checked.
fn grow(a: &mut Arena) -> bool {
    let c0 = a.grow(0).unwrap_or(0);
    let sizes = [24u64, 4096, 100, 8192, 4000, 12288, 640, 3 * 4096 + 8];
    let mut ok = true;
    for i in 0..40 {
        ok &= a.alloc(sizes[i % sizes.len()]).is_some();
    }
    let hinted = a.grow(HINT).unwrap_or(0);
    for _ in 0..8 {
        ok &= a.alloc(4096).is_some();
    }
    let checked = a.check();
    println!(
        "linux_alloc: grow: {} chunks, first at {c0:#x}, hinted at {hinted:#x}, {} blocks written and checked: {}",
        a.nchunks,
        a.nblocks,
        verdict(ok && checked)
    );
    ok && checked && c0 == LINUX_END - CHUNK * P && hinted == HINT && a.nchunks >= 4
}

/// Gives back the middle 4 pages of the second chunk: the rest keeps its
/// data, the range is free again, a second `munmap` of it is fine.
fn partial_munmap(a: &mut Arena) -> bool {
    let c = a.chunks[1];
    let (lo, hi) = (c + 6 * P, c + 10 * P);
    let r = munmap(lo, hi - lo);
    a.hole(lo, hi);
    let kept = a.check();
    let gone = free(lo, hi - lo);
    let again = munmap(lo, hi - lo);
    let ok = r == 0 && kept && gone && again == 0;
    println!(
        "linux_alloc: partial munmap of {lo:#x}..{hi:#x} = {r}: other blocks intact {kept}, range free {gone}, again = {again}: {}",
        verdict(ok)
    );
    ok
}

/// Guard pages: the last page of the third chunk `PROT_NONE`, a page made
/// read-only and writable again; the data stays; bad calls refused. Then
/// the page below it made a guard page (`MADV_GUARD_INSTALL`): populating
/// stops there (`EFAULT`), `mincore` says it is not resident, the data
/// around it stays; taken out again (`MADV_GUARD_REMOVE`) it reads as zeros.
fn guard(a: &mut Arena) -> bool {
    let c = a.chunks[2];
    let g = c + (CHUNK - 1) * P;
    let r1 = mprotect(g, P, PROT_NONE);
    a.hole(g, g + P);
    let r2 = mprotect(c + P, P, PROT_READ);
    let ro = a.check();
    let r3 = mprotect(c + P, P, RW);
    write((c + P) as *mut u64, read((c + P) as *const u64));
    let r4 = mprotect(c + 1, P, RW);
    let r5 = mprotect(a.chunks[1] + 6 * P, 8 * P, RW);
    let ok = r1 == 0 && r2 == 0 && ro && r3 == 0 && r4 == EINVAL && r5 == ENOMEM;
    println!(
        "linux_alloc: guard page at {g:#x} = {r1}, read-only and back = {r2}, {r3}, data intact {ro}; unaligned = {r4}, over a hole = {r5}: {}",
        verdict(ok)
    );
    let m = g - P;
    let g1 = madvise(m, P, MADV_GUARD_INSTALL);
    a.hole(m, g);
    let populate = madvise(m - 2 * P, 3 * P, MADV_POPULATE_READ);
    let mut vec = [7u8; 2];
    let mc = mincore(m - P, 2 * P, vec.as_mut_ptr());
    let kept = a.check();
    let g2 = madvise(m, P, MADV_GUARD_REMOVE);
    let zero = read(m as *const u64) == 0 && read((m + P - 8) as *const u64) == 0;
    let ok2 = g1 == 0 && populate == -14 && mc == 0 && vec == [1, 0] && kept && g2 == 0 && zero;
    println!(
        "linux_alloc: MADV_GUARD_INSTALL at {m:#x} = {g1}: populate = {populate}, mincore {vec:?}, data around intact {kept}; MADV_GUARD_REMOVE = {g2}, reads zero {zero}: {}",
        verdict(ok2)
    );
    ok && ok2
}

/// Grows the first chunk (at the window's top: it cannot grow in place)
/// to 64 pages: refused without `MREMAP_MAYMOVE`, moved with it, its
/// blocks' data at the new place, the old range free.
fn remap(a: &mut Arena) -> bool {
    let old = a.chunks[0];
    let stay = mremap(old, CHUNK * P, 64 * P, 0, 0);
    let r = mremap(old, CHUNK * P, 64 * P, MREMAP_MAYMOVE, 0);
    let new = r as u64;
    let mut moved = r > 0 && new != old;
    if moved {
        for b in &mut a.blocks[..a.nblocks] {
            if b.addr >= old && b.addr < old + CHUNK * P {
                b.addr = b.addr - old + new;
            }
        }
        a.chunks[0] = new;
        moved &= a.check();
        // The grown part is fresh and usable.
        moved &= zeros(new + CHUNK * P, 48 * P);
        fill(new + CHUNK * P, 48 * P, 999);
        moved &= holds(new + CHUNK * P, 48 * P, 999);
    }
    let vacated = free(old, CHUNK * P);
    let ok = stay == ENOMEM && moved && vacated;
    println!(
        "linux_alloc: mremap {old:#x} to 64 pages: in place = {stay}, may move = {r:#x}, data moved {moved}, old range free {vacated}: {}",
        verdict(ok)
    );
    ok
}

/// `MREMAP_DONTUNMAP`: a private chunk's pages move (data at the new
/// place) and its old range stays mapped, empty (reads zero); an old length
/// of 0 maps a shared page a second time (each mapping sees the other's
/// writes), and is refused for a private mapping (`EINVAL`) and without
/// `MREMAP_MAYMOVE` (`ENOMEM`).
fn remap_leaving() -> bool {
    let c = mmap(0, 4 * P, RW, ANON, u64::MAX, 0);
    let s = mmap(0, 2 * P, RW, MAP_SHARED | MAP_ANONYMOUS, u64::MAX, 0);
    if c < 0 || s < 0 {
        println!("linux_alloc: mmap for mremap = {c}, {s}: FAIL");
        return false;
    }
    let (c, s) = (c as u64, s as u64);
    fill(c, 4 * P, 41);
    let r = mremap(c, 4 * P, 4 * P, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 0);
    let new = r as u64;
    let moved = r > 0 && new != c && holds(new, 4 * P, 41);
    let left = zeros(c, 4 * P);
    let nomove = mremap(c, 4 * P, 4 * P, MREMAP_DONTUNMAP, 0);
    write((s + P) as *mut u64, 0x5151);
    let d = mremap(s + P, 0, P, MREMAP_MAYMOVE, 0);
    let mut twice = d > 0 && d as u64 != s + P && read(d as *const u64) == 0x5151;
    if twice {
        write(d as *mut u64, 0x6262);
        twice = read((s + P) as *const u64) == 0x6262;
    }
    let private = mremap(c, 0, P, MREMAP_MAYMOVE, 0);
    let stay = mremap(s, 0, P, 0, 0);
    let gone = munmap(c, 4 * P) == 0
        && munmap(new, 4 * P) == 0
        && munmap(s, 2 * P) == 0
        && (d < 0 || munmap(d as u64, P) == 0);
    let ok =
        moved && left && nomove == EINVAL && twice && private == EINVAL && stay == ENOMEM && gone;
    println!(
        "linux_alloc: MREMAP_DONTUNMAP: moved {moved}, old range zero {left}, no MAYMOVE = {nomove}; old length 0: shared page twice {twice}, private = {private}, no MAYMOVE = {stay}: {}",
        verdict(ok)
    );
    ok
}

/// A read-write chunk of `pages` pages and an inaccessible target of
/// `target` pages for it to move to, both placed anywhere (`None`, said,
/// if either mapping fails).
fn chunk_and_target(pages: u64, target: u64) -> Option<(u64, u64)> {
    let c = mmap(0, pages * P, RW, ANON, u64::MAX, 0);
    let t = mmap(0, target * P, PROT_NONE, ANON, u64::MAX, 0);
    if c < 0 || t < 0 {
        println!("linux_alloc: mmap for mremap = {c}, {t}: FAIL");
        return None;
    }
    Some((c as u64, t as u64))
}

/// `mremap` moves a mapping with a guard page in it (the guard page goes
/// along: populating the moved range stops there) and, with
/// `MREMAP_FIXED` and the same size, several mappings at once (Linux
/// 6.17+): the data and the rights come along.
fn remap_several() -> bool {
    let Some((c, t)) = chunk_and_target(4, 4) else {
        return false;
    };
    fill(c, 4 * P, 43);
    let g = madvise(c + P, P, MADV_GUARD_INSTALL);
    let split = mprotect(c + 2 * P, P, PROT_READ);
    let fixed = MREMAP_MAYMOVE | MREMAP_FIXED;
    let r = mremap(c, 4 * P, 4 * P, fixed, t);
    let first = |k: u64| read((t + k * P) as *const u64) == word(43, k * P / 8);
    let moved = r == t as i64
        && holds(t, P, 43)
        && first(2)
        && first(3)
        && madvise(t, 4 * P, MADV_POPULATE_READ) == -14
        && mprotect(t + 2 * P, P, RW) == 0
        && free(c, 4 * P);
    let gone = munmap(t, 4 * P) == 0;
    let ok = g == 0 && split == 0 && moved && gone;
    println!(
        "linux_alloc: mremap of three mappings with a guard page to the fixed target = {}: data, guard page and rights moved {moved}: {}",
        r == t as i64,
        verdict(ok)
    );
    ok
}

/// `mremap` moves and grows a mapping whose top page is a guard page
/// (`MREMAP_FIXED` over a reserved range): the guard page stays where it
/// was in the mapping, and the growth above it is ordinary memory, zero
/// and writable.
fn remap_grow_guarded() -> bool {
    let Some((c, t)) = chunk_and_target(3, 6) else {
        return false;
    };
    fill(c, 2 * P, 44);
    let g = madvise(c + 2 * P, P, MADV_GUARD_INSTALL);
    let fixed = MREMAP_MAYMOVE | MREMAP_FIXED;
    let r = mremap(c, 3 * P, 6 * P, fixed, t);
    let moved = r == t as i64 && holds(t, 2 * P, 44) && free(c, 3 * P);
    // Populating stops at the guard page; above it the pages are fresh.
    let guarded = madvise(t, 6 * P, MADV_POPULATE_READ) == -14;
    let grown = zeros(t + 3 * P, 3 * P) && {
        write((t + 5 * P) as *mut u64, 55);
        read((t + 5 * P) as *const u64) == 55
    };
    let gone = munmap(t, 6 * P) == 0;
    let ok = g == 0 && moved && guarded && grown && gone;
    println!(
        "linux_alloc: mremap 3 to 6 pages with a guard page on top to the fixed target = {}: data moved {moved}, guard page kept {guarded}, growth fresh {grown}: {}",
        r == t as i64,
        verdict(ok)
    );
    ok
}

/// `MREMAP_DONTUNMAP` of a mapping with a guard page: the guard page goes
/// with the pages, and the old range stays mapped, empty, with none.
fn remap_leaving_guarded() -> bool {
    let c = mmap(0, 3 * P, RW, ANON, u64::MAX, 0);
    if c < 0 {
        println!("linux_alloc: mmap for mremap = {c}: FAIL");
        return false;
    }
    let c = c as u64;
    fill(c, 3 * P, 45);
    let g = madvise(c + P, P, MADV_GUARD_INSTALL);
    let r = mremap(c, 3 * P, 3 * P, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 0);
    let t = r as u64;
    let third =
        (0..P / 8).all(|i| read((t + 2 * P + i * 8) as *const u64) == word(45, 2 * P / 8 + i));
    let moved = r > 0 && holds(t, P, 45) && third && madvise(t, 3 * P, MADV_POPULATE_READ) == -14;
    let left = r > 0 && zeros(c, 3 * P) && madvise(c, 3 * P, MADV_POPULATE_READ) == 0;
    let gone = r > 0 && munmap(t, 3 * P) == 0 && munmap(c, 3 * P) == 0;
    let ok = g == 0 && moved && left && gone;
    println!(
        "linux_alloc: MREMAP_DONTUNMAP of 3 pages with a guard page = {}: data and guard page moved {moved}, old range empty without it {left}: {}",
        r > 0,
        verdict(ok)
    );
    ok
}

/// The program break grows, shrinks (the data below stays) and grows
/// again (the pages come back zeroed).
fn brk_steps() -> bool {
    let start = brk(0);
    let up = brk(start + 10 * P);
    fill(start, 10 * P, 7);
    let down = brk(start + 2 * P);
    let kept = holds(start, 2 * P, 7);
    let again = brk(start + 4 * P);
    let fresh = zeros(start + 2 * P, 2 * P);
    let below = brk(start - P);
    let ok = start == LINUX_START
        && up == start + 10 * P
        && down == start + 2 * P
        && kept
        && again == start + 4 * P
        && fresh
        && below == again;
    println!(
        "linux_alloc: brk from {start:#x}: up {up:#x}, down {down:#x} (data kept {kept}), up again {again:#x} (fresh pages zero {fresh}), below the start refused {}: {}",
        below == again,
        verdict(ok)
    );
    brk(start);
    ok
}

/// `MADV_DONTNEED` on two pages of the hinted chunk (refilled first): they
/// read zero, the neighbours keep their data.
fn dontneed() -> bool {
    let c = HINT;
    fill(c, CHUNK * P, 55);
    let mut before = [9u8; 3];
    let in_before = mincore(c + 3 * P, 3 * P, before.as_mut_ptr());
    let r = madvise(c + 4 * P, 2 * P, MADV_DONTNEED);
    // mincore: the pages given back are not resident until read again.
    let mut after = [9u8; 3];
    let in_after = mincore(c + 3 * P, 3 * P, after.as_mut_ptr());
    let zero = zeros(c + 4 * P, 2 * P);
    let kept = holds(c, 4 * P, 55);
    let bad = madvise(c, P, 999);
    let bad_vec = mincore(c, P, 0xffff_8000_0000_0000 as *mut u8);
    let resident_ok = in_before == 0
        && before == [1, 1, 1]
        && in_after == 0
        && after == [1, 0, 0]
        && bad_vec == -14;
    let ok = r == 0 && zero && kept && bad == EINVAL && resident_ok;
    println!(
        "linux_alloc: madvise DONTNEED = {r}: pages read zero {zero}, neighbours intact {kept}; unknown advice = {bad}; mincore {before:?} then {after:?}, kernel vector = {bad_vec}: {}",
        verdict(ok)
    );
    ok
}

/// `MADV_REMOVE` on the second page of a shared anonymous mapping mapped
/// twice (`mremap` of old length 0): both mappings read zeros there, the
/// first page keeps its data in both; private memory refuses it (`EINVAL`).
fn remove() -> bool {
    let s = mmap(0, 2 * P, RW, MAP_SHARED | MAP_ANONYMOUS, u64::MAX, 0);
    if s < 0 {
        println!("linux_alloc: mmap for MADV_REMOVE = {s}: FAIL");
        return false;
    }
    let s = s as u64;
    fill(s, 2 * P, 71);
    let d = mremap(s, 0, 2 * P, MREMAP_MAYMOVE, 0);
    let twice = d > 0 && holds(d as u64, 2 * P, 71);
    let r = madvise(s + P, P, MADV_REMOVE);
    let hole = zeros(s + P, P) && d > 0 && zeros(d as u64 + P, P);
    let kept = holds(s, P, 71) && d > 0 && holds(d as u64, P, 71);
    let c = mmap(0, P, RW, ANON, u64::MAX, 0);
    let private = if c > 0 {
        madvise(c as u64, P, MADV_REMOVE)
    } else {
        c
    };
    let gone = munmap(s, 2 * P) == 0
        && (d < 0 || munmap(d as u64, 2 * P) == 0)
        && (c < 0 || munmap(c as u64, P) == 0);
    let ok = twice && r == 0 && hole && kept && private == EINVAL && gone;
    println!(
        "linux_alloc: MADV_REMOVE = {r} on a shared page mapped twice ({twice}): a hole in both {hole}, the other page kept {kept}; private = {private}: {}",
        verdict(ok)
    );
    ok
}

/// `MADV_REMOVE` across a `fork`: the parent punches a hole in a shared
/// anonymous page the child maps too, and the child (waiting on a flag in
/// the mapping's other page) reads zeros there, as on Linux.
fn remove_forked() -> bool {
    let s = mmap(0, 2 * P, RW, MAP_SHARED | MAP_ANONYMOUS, u64::MAX, 0);
    if s < 0 {
        println!("linux_alloc: mmap for MADV_REMOVE across fork = {s}: FAIL");
        return false;
    }
    let s = s as u64;
    let (data, flag) = (s as *mut u64, (s + P) as *mut u64);
    write(data, 61);
    write(flag, 0);
    let pid = fork();
    if pid == 0 {
        // The child: waits for the parent's hole, then reads the page.
        while read(flag as *const u64) == 0 {
            core::hint::spin_loop();
        }
        exit(if read(data as *const u64) == 0 { 0 } else { 1 });
    }
    let r = madvise(s, P, MADV_REMOVE);
    write(flag, 1);
    let status = if pid > 0 { wait(pid as u64) } else { pid };
    let parent = zeros(s, P);
    let gone = munmap(s, 2 * P) == 0;
    let ok = pid > 0 && r == 0 && status == 0 && parent && gone;
    println!(
        "linux_alloc: MADV_REMOVE = {r} in a shared page after fork = {}: the child read zeros (status {status}), the parent too {parent}: {}",
        i64::from(pid > 0),
        verdict(ok)
    );
    ok
}

/// A `MAP_DROPPABLE` mapping (Linux 6.11+: private memory the kernel may
/// drop, never locked, never dumped, empty in a forked child): written and
/// read back; `mlock` over it succeeds without locking it (`MADV_DONTNEED`
/// then drops a page, which a locked one refuses); `MADV_DODUMP` and a
/// locked one are `EINVAL`; a forked child reads zeros where the parent
/// keeps its data.
fn droppable() -> bool {
    let d = mmap(0, 2 * P, RW, MAP_DROPPABLE | MAP_ANONYMOUS, u64::MAX, 0);
    if d < 0 {
        println!("linux_alloc: mmap of a droppable mapping = {d}: FAIL");
        return false;
    }
    let d = d as u64;
    fill(d, P, 91);
    fill(d + P, P, 92);
    let kept = holds(d, P, 91) && holds(d + P, P, 92);
    let lock = mlock(d, 2 * P, 0);
    let dropped = madvise(d, P, MADV_DONTNEED);
    let zero = zeros(d, P) && holds(d + P, P, 92);
    let dump = madvise(d, 2 * P, MADV_DODUMP);
    let locked = mmap(
        0,
        P,
        RW,
        MAP_DROPPABLE | MAP_ANONYMOUS | MAP_LOCKED,
        u64::MAX,
        0,
    );
    let pid = fork();
    if pid == 0 {
        exit(if zeros(d, 2 * P) { 0 } else { 1 });
    }
    let status = if pid > 0 { wait(pid as u64) } else { pid };
    let parent = holds(d + P, P, 92);
    let gone = munmap(d, 2 * P) == 0;
    let ok = kept
        && lock == 0
        && dropped == 0
        && zero
        && dump == EINVAL
        && locked == EINVAL
        && pid > 0
        && status == 0
        && parent
        && gone;
    println!(
        "linux_alloc: MAP_DROPPABLE: written and read back {kept}; mlock = {lock}, then MADV_DONTNEED = {dropped} (zero {zero}); MADV_DODUMP = {dump}, locked = {locked}; forked child read zeros (status {status}), parent kept {parent}: {}",
        verdict(ok)
    );
    ok
}

/// A `PROT_NONE` reservation of address space larger than the machine's
/// memory (16 GiB, as the JVM, Go and Wasm engines reserve their heaps) is
/// granted and charged nothing; a part made writable is charged and used;
/// the whole made writable is refused by the commit limit (`ENOMEM`, as
/// Linux refuses it without overcommit) and changes nothing; it goes back
/// whole.
fn reservation() -> bool {
    let len = 16 << 30;
    let r = mmap(0, len, PROT_NONE, ANON, u64::MAX, 0);
    if r < 0 {
        println!("linux_alloc: a PROT_NONE reservation of 16 GiB = {r}: FAIL");
        return false;
    }
    let r = r as u64;
    let part = mprotect(r, 4 * P, RW);
    fill(r, 4 * P, 97);
    let used = holds(r, 4 * P, 97);
    let whole = mprotect(r, len, RW);
    let kept = holds(r, 4 * P, 97);
    // Still PROT_NONE past the part: read-only there is a change again.
    let after = mprotect(r + 4 * P, 4 * P, PROT_READ);
    let gone = munmap(r, len) == 0;
    let ok = part == 0 && used && whole == ENOMEM && kept && after == 0 && gone;
    println!(
        "linux_alloc: a PROT_NONE reservation of 16 GiB: 4 pages made writable = {part}, used {used}; all made writable = {whole}, data kept {kept}; given back {gone}: {}",
        verdict(ok)
    );
    ok
}

/// A two-page `MAP_GROWSDOWN` mapping (a stack): a write three pages
/// below it faults, the kernel grows the mapping down to that page
/// (Linux's `expand_stack`) and the write is served; the grown mapping
/// reads back what was written, zeros between, and unmaps as one.
fn stack() -> bool {
    // Far from the other mappings: Linux keeps a stack from growing to
    // within 256 pages of a mapping below it.
    let at = HINT + 0x4000_0000;
    let flags = ANON | MAP_GROWSDOWN | MAP_FIXED_NOREPLACE;
    let s = mmap(at, 2 * P, RW, flags, u64::MAX, 0);
    if s != at as i64 {
        println!("linux_alloc: mmap of a stack = {s}: FAIL");
        return false;
    }
    let s = s as u64;
    let low = s - 3 * P;
    fill(low, P, 81);
    let grown = holds(low, P, 81) && zeros(low + P, 2 * P);
    let taken = !free(low, P) && !free(low + P, P);
    // A system call's copy below the stack grows it too: `mincore`'s
    // vector two pages below (Linux 6.18 answers so).
    let vec = low - 2 * P + 104;
    let answered = mincore(low, 2 * P, vec as *mut u8);
    let bytes = (answered == 0).then(|| {
        let w = read(vec as *const u64);
        [w as u8, (w >> 8) as u8]
    });
    let copied = answered == 0 && bytes == Some([1, 1]) && !free(low - 2 * P, 2 * P);
    let gone = munmap(low - 2 * P, 7 * P) == 0 && free(low - 2 * P, 7 * P);
    let ok = grown && taken && copied && gone;
    println!(
        "linux_alloc: a stack written 3 pages below grew: data {grown}, pages taken {taken}; mincore's vector 2 pages below it = {answered}, {bytes:?}, grew {copied}; unmapped whole {gone}: {}",
        verdict(ok)
    );
    ok
}

/// `mseal` on a read-only mapping: `munmap`, `mprotect`, `mremap` and
/// `MADV_DONTNEED` there are `EPERM` and its data stays; a hole in the
/// range `ENOMEM`, a flag `EINVAL`. (It stays mapped until the process
/// ends.)
fn seal() -> bool {
    // Far from the other mappings: the page above is a hole.
    let at = HINT + 0x5000_0000;
    let s = mmap(at, 2 * P, RW, ANON | MAP_FIXED_NOREPLACE, u64::MAX, 0);
    if s != at as i64 {
        println!("linux_alloc: mmap to seal = {s}: FAIL");
        return false;
    }
    let s = s as u64;
    fill(s, 2 * P, 91);
    let ro = mprotect(s, 2 * P, PROT_READ);
    let sealed = mseal(s, 2 * P, 0);
    let refused = [
        munmap(s, P),
        mprotect(s, P, RW),
        mremap(s, 2 * P, 4 * P, MREMAP_MAYMOVE, 0),
        madvise(s, P, MADV_DONTNEED),
    ];
    let kept = holds(s, 2 * P, 91);
    let hole = mseal(s, 3 * P, 0);
    let flag = mseal(s, P, 1);
    let ok = ro == 0
        && sealed == 0
        && refused.iter().all(|&r| r == EPERM)
        && kept
        && hole == ENOMEM
        && flag == EINVAL;
    println!(
        "linux_alloc: mseal = {sealed}: munmap, mprotect, mremap, MADV_DONTNEED = {refused:?}, data kept {kept}; a hole = {hole}, a flag = {flag}: {}",
        verdict(ok)
    );
    ok
}

/// `mlock` on two pages of the hinted chunk: `MADV_DONTNEED` there is
/// refused (`EINVAL`) and the data stays; `msync` checks its flags
/// (`MS_ASYNC` with `MS_SYNC` `EINVAL`, `MS_INVALIDATE` over locked pages
/// `EBUSY`); once `munlock`ed the pages can be dropped again.
fn locked() -> bool {
    let c = HINT;
    fill(c, CHUNK * P, 66);
    let lock = mlock(c + 2 * P, 2 * P, 0);
    let refused = madvise(c + 2 * P, P, MADV_DONTNEED);
    let kept = holds(c, 4 * P, 66);
    let sync = msync(c, 4 * P, 4);
    let both = msync(c, 4 * P, 5);
    let busy = msync(c, 4 * P, 2);
    let unlock = munlock(c, CHUNK * P);
    let dropped = madvise(c + 2 * P, P, MADV_DONTNEED);
    let zero = zeros(c + 2 * P, P);
    // mlockall(MCL_FUTURE): a mapping made now is locked; munlockall ends it.
    let future = mlockall(2);
    let m = mmap(
        0,
        P,
        PROT_READ | PROT_WRITE,
        MAP_PRIVATE | MAP_ANONYMOUS,
        u64::MAX,
        0,
    );
    let new_refused = madvise(m as u64, P, MADV_DONTNEED);
    let all = munlockall();
    let new_dropped = madvise(m as u64, P, MADV_DONTNEED);
    let unmapped = munmap(m as u64, P);
    // RLIMIT_MEMLOCK of 4 pages: 3 locked pass, 3 more (one of them
    // locked already) do not, nor does a locked mapping of 2.
    let limited = memlock_limit(4 * P);
    let three = mlock(c, 3 * P, 0);
    let over = mlock(c + 2 * P, 3 * P, 0);
    let locked_map = mmap(
        0,
        2 * P,
        PROT_READ | PROT_WRITE,
        MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED,
        u64::MAX,
        0,
    );
    let relock = munlock(c, 3 * P) + memlock_limit(u64::MAX);
    let limit_ok =
        limited == 0 && three == 0 && over == ENOMEM && locked_map == EAGAIN && relock == 0;
    let ok = limit_ok
        && lock == 0
        && refused == EINVAL
        && kept
        && sync == 0
        && both == EINVAL
        && busy == -16
        && unlock == 0
        && dropped == 0
        && zero
        && future == 0
        && m > 0
        && new_refused == EINVAL
        && all == 0
        && new_dropped == 0
        && unmapped == 0;
    // Two lines: the console prints at most 200 bytes at once.
    println!(
        "linux_alloc: mlock = {lock}: MADV_DONTNEED refused = {refused}, data kept {kept}; msync = {sync}, async+sync = {both}, invalidate = {busy}; munlock = {unlock}, then dropped = {dropped}, zero {zero}"
    );
    println!(
        "linux_alloc: mlockall(MCL_FUTURE) = {future}: a new mapping refuses MADV_DONTNEED ({new_refused}) until munlockall = {all} ({new_dropped})"
    );
    println!(
        "linux_alloc: RLIMIT_MEMLOCK 4 pages = {limited}: mlock 3 = {three}, 3 more = {over}, locked mmap of 2 = {locked_map}: {}",
        verdict(ok)
    );
    ok
}

fn blob_ok(addr: u64, page: u64) -> bool {
    (0..P)
        .step_by(64)
        .all(|j| read((addr + j) as *const u8) == blob_byte(page * P + j))
}

/// The kernel's file: a private and two shared mappings read its pattern;
/// a private write copies the page (the file and the shared mappings keep
/// theirs); a shared write is seen by the other shared mapping and by the
/// private mapping's page not yet copied.
fn file() -> bool {
    let pv = mmap(0, 2 * P, RW, MAP_PRIVATE, BLOB_FD, 0);
    let sh = mmap(0, 2 * P, RW, MAP_SHARED, BLOB_FD, 0);
    let sh2 = mmap(0, 2 * P, PROT_READ, MAP_SHARED, BLOB_FD, 0);
    if pv < 0 || sh < 0 || sh2 < 0 {
        println!("linux_alloc: file mappings = {pv}, {sh}, {sh2}: FAIL");
        return false;
    }
    let (pv, sh, sh2) = (pv as u64, sh as u64, sh2 as u64);
    let reads = blob_ok(pv, 0) && blob_ok(pv + P, 1) && blob_ok(sh, 0) && blob_ok(sh2 + P, 1);
    write(pv as *mut u64, 0x1111);
    let cow = read(pv as *const u64) == 0x1111 && blob_ok(sh, 0) && blob_ok(sh2, 0);
    write((sh + P) as *mut u64, 0x2222);
    let shared = read((sh2 + P) as *const u64) == 0x2222 && read((pv + P) as *const u64) == 0x2222;
    let badf = mmap(0, P, PROT_READ, MAP_PRIVATE, 7, 0);
    let unmapped = munmap(pv, 2 * P) == 0 && munmap(sh, 2 * P) == 0 && munmap(sh2, 2 * P) == 0;
    let ok = reads && cow && shared && badf == EBADF && unmapped;
    println!(
        "linux_alloc: file: pattern read {reads}, private write copied {cow}, shared write seen {shared}, bad fd = {badf}: {}",
        verdict(ok)
    );
    ok
}

/// Arguments the kernel must refuse.
fn refusals(a: &Arena) -> bool {
    let zero = mmap(0, 0, RW, ANON, u64::MAX, 0);
    let elf = mmap(0x40_0000, P, RW, ANON | MAP_FIXED, u64::MAX, 0);
    let prot = mmap(0, P, 8, ANON, u64::MAX, 0);
    let high = mmap(0, P, RW, ANON | 1 << 40, u64::MAX, 0);
    let exists = mmap(a.chunks[2], P, RW, ANON | MAP_FIXED_NOREPLACE, u64::MAX, 0);
    let kernel = munmap(0xffff_ffff_ffff_0000, P);
    let low = munmap(0x1000, P);
    let wx = mmap(0, P, RW | PROT_EXEC, ANON, u64::MAX, 0);
    let area = area_create(LINUX_START as usize, PAGE, READ | WRITE);
    // Nor by a base word naming the window, nor by growing into it.
    let mut base = LINUX_START as usize;
    let stored = area_create_any(&mut base, PAGE, READ | WRITE, 0);
    let grows = area_create(LINUX_END as usize, PAGE, READ | WRITE | GROWS_DOWN);
    let ok = zero == EINVAL
        && elf == EPERM
        && prot == EINVAL
        && high == EINVAL
        && exists == EEXIST
        && kernel == EINVAL
        && low == EINVAL
        && wx == -13
        && area == CREATE_FAILED
        && stored == CREATE_FAILED
        && grows == CREATE_FAILED;
    println!(
        "linux_alloc: refused: length 0 = {zero}, fixed on the program = {elf}, bad prot = {prot}, high flag = {high}, noreplace = {exists}"
    );
    println!(
        "linux_alloc: refused: kernel munmap = {kernel}, low munmap = {low}, write+exec = {wx}, area in the window = {} (stored base {}, growing into it {}): {}",
        area as isize,
        stored as isize,
        grows as isize,
        verdict(ok)
    );
    ok
}

/// A chunk of 8 pages with pages 2 and 3 given back; reads page 3.
fn touch_freed() {
    let c = mmap(0, 8 * P, RW, ANON, u64::MAX, 0) as u64;
    fill(c, 8 * P, 3);
    munmap(c + 2 * P, 2 * P);
    println!("linux_alloc: reading the freed page at {:#x}", c + 3 * P);
    read((c + 3 * P) as *const u64);
}

/// A chunk of 8 pages whose last is a guard; writes it.
fn touch_guard() {
    let c = mmap(0, 8 * P, RW, ANON, u64::MAX, 0) as u64;
    mprotect(c + 7 * P, P, PROT_NONE);
    println!("linux_alloc: writing the guard page at {:#x}", c + 7 * P);
    write((c + 7 * P) as *mut u64, 1);
}

/// A page made a guard page (`MADV_GUARD_INSTALL`); reads it.
fn touch_madv_guard() {
    let c = mmap(0, 4 * P, RW, ANON, u64::MAX, 0) as u64;
    write((c + P) as *mut u64, 5);
    madvise(c + P, P, MADV_GUARD_INSTALL);
    println!("linux_alloc: reading the guard page at {:#x}", c + P);
    read((c + P) as *const u64);
}

/// A read-only private mapping of the file; writes it.
fn write_read_only_file() {
    let c = mmap(0, P, PROT_READ, MAP_PRIVATE, BLOB_FD, 0) as u64;
    let ok = blob_ok(c, 0);
    println!("linux_alloc: writing the read-only file mapping at {c:#x} (pattern read {ok})");
    write(c as *mut u64, 1);
}

/// A xorshift generator (fixed seed: the same calls every run).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick(&mut self, options: &[u64]) -> u64 {
        options[self.below(options.len() as u64) as usize]
    }
}

/// An address for a random call: in the window (mostly near its top,
/// where `mmap(NULL)` places, or a place mapped before), or one the
/// kernel must refuse or ignore.
fn any_addr(r: &mut Rng, seen: &[u64]) -> u64 {
    let top = LINUX_END - r.below(256) * P;
    match r.below(10) {
        0..=3 => top,
        4 | 5 => seen[r.below(seen.len() as u64) as usize] + r.below(8) * P,
        6 => top + r.below(P),
        7 => LINUX_START + r.below(64) * P,
        _ => r.pick(&[
            0,
            0x40_0000,
            LINUX_START - P,
            LINUX_END,
            u64::MAX - P + 1,
            0xffff_8000_0000_0000,
            1 << 63,
        ]),
    }
}

fn any_len(r: &mut Rng) -> u64 {
    match r.below(8) {
        0..=4 => (r.below(16) + 1) * P,
        5 => r.below(3 * P),
        _ => r.pick(&[0, u64::MAX, u64::MAX - P + 2, 1 << 40, LINUX_END, 1 << 32]),
    }
}

/// Random calls with random arguments (`MAP_POPULATE` included); the kernel must answer each, never fault. Then everything
/// is given back and no area may stay in the window.
fn random_calls(seed: u64, n: u32) -> bool {
    let mut r = Rng(seed);
    let mut seen = [LINUX_END - P; 16];
    let mut ok_calls = 0u32;
    for i in 0..n {
        let a = any_addr(&mut r, &seen);
        let len = any_len(&mut r);
        let res = match r.below(7) {
            0 | 1 => {
                let prot = if r.below(8) == 0 {
                    r.next()
                } else {
                    r.below(8)
                };
                let flags = match r.below(8) {
                    0 => r.next() & 0xffff_ffff,
                    1 => r.next(),
                    _ => {
                        r.pick(&[MAP_PRIVATE, MAP_SHARED, 3, 0])
                            | r.pick(&[0, 0, MAP_FIXED, MAP_FIXED_NOREPLACE])
                            | r.pick(&[MAP_ANONYMOUS, MAP_ANONYMOUS, 0])
                            | r.pick(&[0, 0, 0, 0x8000, 0x4000, 0x100])
                    }
                };
                let fd = r.pick(&[u64::MAX, BLOB_FD, 0, 7, 1 << 40]);
                let offset = r.pick(&[0, P, 3 * P, 1, u64::MAX - P + 1, 1 << 40]);
                let res = mmap(a, len, prot, flags, fd, offset);
                if res > 0 {
                    seen[i as usize % seen.len()] = res as u64;
                }
                res
            }
            2 => munmap(a, len),
            3 => mprotect(
                a,
                len,
                if r.below(8) == 0 {
                    r.next()
                } else {
                    r.below(8)
                },
            ),
            4 => {
                let flags = r.pick(&[0, MREMAP_MAYMOVE, 3, 4, 5, 7, 1 << 40]);
                let new_len = any_len(&mut r);
                mremap(a, len, new_len, flags, any_addr(&mut r, &seen))
            }
            5 => match r.below(3) {
                0 => msync(a, len, r.pick(&[0, 1, 2, 4, 5, 8, 1 << 40])),
                1 => mlock(a + r.pick(&[0, 1]), len, r.pick(&[0, 0, 1, 2, 1 << 40])),
                _ => munlock(a, len),
            },
            _ => {
                if r.below(2) == 0 {
                    brk(LINUX_START + r.below(64) * P + r.pick(&[0, 0, 1, 1 << 40])) as i64
                } else {
                    madvise(
                        a,
                        len,
                        r.pick(&[MADV_DONTNEED, 8, 0, 9, 999, 1 << 40, 1, 10, 18, 22, 23]),
                    )
                }
            }
        };
        if res >= 0 {
            ok_calls += 1;
        }
    }
    brk(LINUX_START);
    let cleared = munmap(LINUX_START, LINUX_END - LINUX_START);
    let mut areas = [AreaInfo::default(); 64];
    let count = area_list(&mut areas);
    let left = areas[..(count.max(0) as usize).min(areas.len())]
        .iter()
        .filter(|a| a.base < LINUX_END && a.base + a.size > LINUX_START)
        .count();
    let ok = cleared == 0 && count > 0 && left == 0;
    println!(
        "linux_alloc: {n} random calls (seed {seed:#x}): {ok_calls} succeeded, all answered; window cleared = {cleared}, areas left in it {left}: {}",
        verdict(ok)
    );
    ok
}

/// The worker thread is done (1) and saw a word it did not expect (1).
static DONE: AtomicU64 = AtomicU64::new(0);
static BAD: AtomicU64 = AtomicU64::new(0);
/// Rounds the worker writes every page of the file mapping.
const ROUNDS: u64 = 24;
/// Pages of the file mapping the two threads share.
const SHARED_PAGES: u64 = 16;
/// The worker's stack (an ordinary area, outside the Linux window).
const WORKER_STACK: usize = 0x6100_0000;

/// The file's first word of page `i` (its pattern, little-endian; past
/// the pattern's [`BLOB_PAGES`] pages the file holds zeros).
fn blob_word(i: u64) -> u64 {
    if i >= BLOB_PAGES {
        return 0;
    }
    (0..8).fold(0, |w, b| w | u64::from(blob_byte(i * P + b)) << (8 * b))
}

/// The worker: writes every page of the private file mapping at `f`
/// round after round (each write after the main thread dropped the copies
/// faults and copies the page again), and maps, writes and unmaps memory
/// of its own between rounds.
extern "C" fn worker(f: u64) -> ! {
    for round in 1..=ROUNDS {
        for i in 0..SHARED_PAGES {
            let p = (f + i * P) as *mut u64;
            let w = round << 32 | i;
            write(p, w);
            let v = read(p);
            // The main thread may drop the copy between the two: the
            // file's word shows again then.
            if v != w && v != blob_word(i) {
                BAD.store(1, Ordering::SeqCst);
            }
        }
        let m = mmap(0, 2 * P, RW, ANON, u64::MAX, 0);
        if m < 0 {
            BAD.store(1, Ordering::SeqCst);
        } else {
            fill(m as u64, 2 * P, round);
            if !holds(m as u64, 2 * P, round) || munmap(m as u64, 2 * P) != 0 {
                BAD.store(1, Ordering::SeqCst);
            }
        }
    }
    DONE.store(1, Ordering::SeqCst);
    exit(0)
}

/// Two threads of one process make Linux calls and fault at once: the
/// worker writes a private file mapping (copy-on-write faults) while the
/// main thread keeps dropping its copies with `MADV_DONTNEED` and maps,
/// guards and unmaps memory of its own (shootdowns to the worker's CPU).
fn two_threads() -> bool {
    let f = mmap(0, SHARED_PAGES * P, RW, MAP_PRIVATE, BLOB_FD, 0);
    if f < 0 || area_create(WORKER_STACK, 16 * PAGE, READ | WRITE) != WORKER_STACK {
        println!("linux_alloc: two threads: setup failed ({f}): FAIL");
        return false;
    }
    let f = f as u64;
    let t = thread_create(worker, WORKER_STACK + 16 * PAGE, f);
    let mut calls = 0u64;
    let mut ok = t > 0;
    while ok && DONE.load(Ordering::SeqCst) == 0 && calls < 200_000 {
        ok &= madvise(f, SHARED_PAGES * P, MADV_DONTNEED) == 0;
        let m = mmap(0, 4 * P, RW, ANON, u64::MAX, 0);
        ok &= m > 0;
        if m > 0 {
            let m = m as u64;
            fill(m, 4 * P, 77);
            ok &= mprotect(m + 3 * P, P, PROT_NONE) == 0;
            ok &= holds(m, 3 * P, 77);
            ok &= munmap(m, 4 * P) == 0;
        }
        calls += 5;
    }
    let done = DONE.load(Ordering::SeqCst) == 1;
    let clean = BAD.load(Ordering::SeqCst) == 0;
    // The copies the worker left, then the file's pattern again.
    let last = (0..SHARED_PAGES).all(|i| {
        let v = read((f + i * P) as *const u64);
        v == ROUNDS << 32 | i || v == blob_word(i)
    });
    ok &= done && clean && last && munmap(f, SHARED_PAGES * P) == 0;
    println!(
        "linux_alloc: two threads: the worker wrote {ROUNDS} rounds of copy-on-write pages (done {done}, words as expected {clean}) while the main thread made calls: {}",
        verdict(ok)
    );
    ok
}

#[no_mangle]
fn main(arg: u64) -> i32 {
    match arg {
        1 => touch_freed(),
        2 => touch_guard(),
        3 => write_read_only_file(),
        4 => {
            return if random_calls(0x5eed_0016, 3000) {
                0
            } else {
                1
            }
        }
        5 => return if two_threads() { 0 } else { 1 },
        6 => touch_madv_guard(),
        _ => {}
    }
    if arg != 0 {
        println!("linux_alloc: the access was not refused: FAIL");
        return 1;
    }
    let mut a = Arena::new();
    let mut ok = grow(&mut a);
    if !ok {
        println!("linux_alloc: FAIL");
        return 1;
    }
    ok &= partial_munmap(&mut a);
    ok &= guard(&mut a);
    ok &= remap(&mut a);
    ok &= remap_leaving();
    ok &= remap_several();
    ok &= remap_grow_guarded();
    ok &= remap_leaving_guarded();
    ok &= brk_steps();
    ok &= dontneed();
    ok &= remove();
    ok &= remove_forked();
    ok &= droppable();
    ok &= reservation();
    ok &= stack();
    ok &= seal();
    ok &= locked();
    ok &= file();
    ok &= refusals(&a);
    let mut gone = true;
    for &c in &a.chunks[..a.nchunks] {
        let len = if c == a.chunks[0] { 64 * P } else { CHUNK * P };
        gone &= munmap(c, len) == 0;
    }
    ok &= gone;
    println!("linux_alloc: arena given back {gone}; all: {}", verdict(ok));
    if ok {
        0
    } else {
        1
    }
}
