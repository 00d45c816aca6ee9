//! The runner against Linux itself: known sequences give known answers.
//! Each test runs its own `linux-ref` child.

use aspace_linux::consts::PAGE_SIZE;
use aspace_linux::digest::page_digest;
use aspace_linux::maps::{Backing, MapKey};
use aspace_linux::protocol::Response;
use aspace_linux::runner::LinuxRef;
use aspace_linux::{Errno, Outcome, Prot};

const P: u64 = PAGE_SIZE;

struct Ref {
    r: LinuxRef,
    lo: u64,
    hi: u64,
}

impl Ref {
    fn new() -> Ref {
        let r = LinuxRef::spawn_at(env!("CARGO_BIN_EXE_linux-ref")).expect("start linux-ref");
        let (lo, hi) = r.header().window;
        assert_eq!(hi - lo, 64 << 20);
        assert_eq!(lo % P, 0);
        Ref { r, lo, hi }
    }

    /// Runs a line with `{T}` standing for the window's top address.
    fn run(&mut self, text: &str) -> Response {
        let text = text.replace("{T}", &format!("{:#x}", self.hi));
        let resp = self.r.run_text(&text).expect("runner answers");
        assert_eq!(resp.expect_failed, None, "{text}: got {}", resp.outcome);
        resp
    }

    fn keys(&self, resp: &Response) -> Vec<MapKey> {
        resp.state.keys(self.lo, self.hi)
    }

    /// `{T}` minus `n` pages.
    fn top(&self, n: u64) -> u64 {
        self.hi - n * P
    }
}

fn key(start: u64, end: u64, prot: Prot) -> MapKey {
    MapKey {
        start,
        end,
        prot,
        shared: false,
        offset: 0,
        backing: Backing::Anon,
    }
}

#[test]
fn noreplace_over_a_mapping_is_eexist_and_changes_nothing() {
    let mut t = Ref::new();
    let a = t.top(4);
    let before = t.run(&format!(
        "mmap {a:#x} 4p rw private anon fixed expect {a:#x}"
    ));
    let after = t.run(&format!(
        "mmap {:#x} 1p r private anon noreplace expect EEXIST",
        a + P
    ));
    assert_eq!(after.outcome, Outcome::Err(Errno::EEXIST));
    assert_eq!(after.state, before.state);
    // Next to it, where nothing is, it works.
    t.run(&format!(
        "mmap {:#x} 1p r private anon noreplace expect {:#x}",
        a - P,
        a - P
    ));
}

#[test]
fn mprotect_of_a_hole_is_enomem_and_linux_changes_the_part_before_it() {
    let mut t = Ref::new();
    let a = t.top(8);
    t.run(&format!("mmap {a:#x} 2p rw private anon fixed"));
    // Starting in a hole: nothing changes.
    let r = t.run(&format!("mprotect {:#x} 2p r expect ENOMEM", a - P));
    assert_eq!(t.keys(&r), vec![key(a, a + 2 * P, Prot::RW)]);
    // Starting mapped, running into a hole: Linux has already changed the
    // mapped part when it finds the hole (not all-or-nothing).
    let r = t.run(&format!("mprotect {a:#x} 4p r expect ENOMEM"));
    assert_eq!(t.keys(&r), vec![key(a, a + 2 * P, Prot::R)]);
    // madvise across a hole: ENOMEM too.
    t.run(&format!("madvise {a:#x} 4p dontneed expect ENOMEM"));
    // munmap across holes is fine.
    let r = t.run(&format!("munmap {:#x} 8p expect ok", a - 2 * P));
    assert!(r.state.maps.is_empty());
}

#[test]
fn munmap_of_the_middle_splits_one_line_into_two() {
    let mut t = Ref::new();
    let a = t.top(3);
    let r = t.run(&format!("mmap {a:#x} 3p rw private anon fixed"));
    assert_eq!(r.state.maps.len(), 1);
    let r = t.run(&format!("munmap {:#x} 1p expect ok", a + P));
    assert_eq!(
        t.keys(&r),
        vec![key(a, a + P, Prot::RW), key(a + 2 * P, a + 3 * P, Prot::RW)]
    );
    assert_eq!(r.state.maps.len(), 2);
}

#[test]
fn adjacent_private_anonymous_mappings_with_the_same_rights_merge() {
    let mut t = Ref::new();
    let a = t.top(6);
    t.run(&format!("mmap {a:#x} 2p rw private anon fixed"));
    t.run(&format!("write {a:#x} 1"));
    let r = t.run(&format!("mmap {:#x} 2p rw private anon fixed", a + 2 * P));
    assert_eq!(t.keys(&r), vec![key(a, a + 4 * P, Prot::RW)], "{r:?}");
    // Split by mprotect, merged back by mprotect.
    let r = t.run(&format!("mprotect {:#x} 2p r", a + P));
    assert_eq!(r.state.maps.len(), 3, "{r:#?}");
    let r = t.run(&format!("mprotect {:#x} 2p rw", a + P));
    assert_eq!(t.keys(&r), vec![key(a, a + 4 * P, Prot::RW)]);
    // Different rights do not merge; a hidden flag (VM_NORESERVE) does not
    // either, though the maps lines look alike.
    let r = t.run(&format!("mmap {:#x} 1p r private anon fixed", a - P));
    assert_eq!(r.state.maps.len(), 2);
    let r = t.run(&format!(
        "mmap {:#x} 1p rw private anon fixed noreserve expect ok",
        a + 4 * P
    ));
    assert_eq!(r.state.maps.len(), 3);
    assert_eq!(aspace_linux::maps::coalesce(&t.keys(&r)).len(), 2);
}

#[test]
fn faulted_neighbours_with_different_anon_vmas_do_not_merge() {
    // Linux merges a new private anonymous mapping into a neighbour, but two
    // neighbours that were each faulted on their own have different
    // `anon_vma`s and stay apart: the maps show two lines with the same
    // rights side by side. The aspace side either keeps that rule or the
    // comparison coalesces (see `maps::coalesce`).
    let mut t = Ref::new();
    let a = t.top(6);
    t.run(&format!("mmap {a:#x} 1p rw private anon fixed"));
    t.run(&format!("write {a:#x} 1"));
    t.run(&format!("mmap {:#x} 1p rw private anon fixed", a + 2 * P));
    t.run(&format!("write {:#x} 1", a + 2 * P));
    let r = t.run(&format!("mmap {:#x} 1p rw private anon fixed", a + P));
    assert_eq!(
        t.keys(&r),
        vec![
            key(a, a + 2 * P, Prot::RW),
            key(a + 2 * P, a + 3 * P, Prot::RW)
        ]
    );
    assert_eq!(
        aspace_linux::maps::coalesce(&t.keys(&r)),
        vec![key(a, a + 3 * P, Prot::RW)]
    );
}

#[test]
fn placement_without_a_hint_is_top_down_from_the_window_end() {
    let mut t = Ref::new();
    let (t1, t3) = (t.top(1), t.top(3));
    t.run(&format!("mmap 0 1p rw private anon expect {t1:#x}"));
    t.run(&format!("mmap 0 2p r private anon expect {t3:#x}"));
    // A free hint is taken; a taken one falls back to top-down.
    let h = t.top(100);
    t.run(&format!("mmap {h:#x} 1p rw private anon expect {h:#x}"));
    t.run(&format!(
        "mmap {h:#x} 1p r-x private anon expect {:#x}",
        t.top(4)
    ));
    // mremap may-move lands top-down too.
    let a = t.top(50);
    t.run(&format!("mmap {a:#x} 1p rw private anon fixed"));
    t.run(&format!("mmap {:#x} 1p r private anon fixed", a + P));
    t.run(&format!("write {a:#x} 0x5a"));
    t.run(&format!("mremap {a:#x} 1p 2p expect ENOMEM"));
    t.run(&format!(
        "mremap {a:#x} 1p 2p maymove expect {:#x}",
        t.top(6)
    ));
    t.run(&format!("read {:#x} expect 0x5a", t.top(6)));
    t.run(&format!("read {a:#x} expect fault"));
}

#[test]
fn writes_reads_and_page_digests() {
    let mut t = Ref::new();
    let a = t.top(2);
    t.run(&format!("mmap {a:#x} 2p rw private anon fixed"));
    let r = t.run(&format!("write {:#x} 0x2a", a + 5));
    let mut page = [0u8; 4096];
    page[5] = 0x2a;
    assert_eq!(r.state.pages, vec![(a, page_digest(&page))]);
    t.run(&format!("read {:#x} expect 0x2a", a + 5));
    t.run(&format!("read {:#x} expect 0", a + P));
    t.run(&format!("mprotect {a:#x} 1p r"));
    t.run(&format!("write {a:#x} 1 expect fault"));
    t.run(&format!("read {:#x} expect 0x2a", a + 5));
    let r = t.run(&format!("mprotect {a:#x} 1p none"));
    assert!(r.state.pages.is_empty(), "unreadable pages are not read");
    t.run(&format!("read {a:#x} expect fault"));
    t.run(&format!("read {:#x} expect fault", a - P));
    // MADV_DONTNEED: private anonymous pages read as zero after.
    t.run(&format!("mprotect {a:#x} 1p rw"));
    let r = t.run(&format!("madvise {a:#x} 1p dontneed expect ok"));
    assert!(r.state.pages.is_empty());
    t.run(&format!("read {:#x} expect 0", a + 5));
}

#[test]
fn file_mappings_share_pages_and_private_ones_copy_on_write() {
    let mut t = Ref::new();
    let (s, p) = (t.top(2), t.top(10));
    let r = t.run(&format!("mmap {s:#x} 2p rw shared file F 4p fixed"));
    assert_eq!(
        t.keys(&r),
        vec![MapKey {
            start: s,
            end: s + 2 * P,
            prot: Prot::RW,
            shared: true,
            offset: 4 * P,
            backing: Backing::File("F".into())
        }]
    );
    t.run(&format!("mmap {p:#x} 1p rw private file F 5p fixed"));
    t.run(&format!("write {:#x} 0x11", s + P));
    t.run(&format!("read {p:#x} expect 0x11"));
    t.run(&format!("write {p:#x} 0x22"));
    t.run(&format!("read {:#x} expect 0x11", s + P));
    t.run(&format!("read {p:#x} expect 0x22"));
    // Offsets follow a split.
    let r = t.run(&format!("mprotect {:#x} 1p r", s + P));
    let keys = t.keys(&r);
    assert_eq!(
        keys.iter().map(|k| k.offset).collect::<Vec<_>>(),
        vec![5 * P, 4 * P, 5 * P]
    );
}

#[test]
fn a_grown_shared_anonymous_mapping_has_pages_past_its_object() {
    let mut t = Ref::new();
    let a = t.top(8);
    t.run(&format!("mmap {a:#x} 2p rw shared anon fixed"));
    let r = t.run(&format!("mremap {a:#x} 2p 4p expect {a:#x}"));
    assert_eq!(r.state.bus, vec![(a + 2 * P, a + 4 * P)]);
    t.run(&format!("write {:#x} 1 expect fault", a + 2 * P));
    t.run(&format!("write {:#x} 1 expect ok", a + P));
}

#[test]
fn brk_moves_the_break_in_its_span() {
    let mut t = Ref::new();
    let h = t.r.header().clone();
    assert_eq!(h.brk_now, h.brk_start, "nothing else moved the break");
    assert!(
        h.sysctl
            .iter()
            .any(|(k, v)| k == "vm.max_map_count" && v.parse::<u64>().is_ok()),
        "{h:?}"
    );
    let b = h.brk_start;
    let r = t.run(&format!("brk {:#x} expect {:#x}", b + 3 * P, b + 3 * P));
    let keys = r.state.keys(h.brk_span.0, h.brk_span.1);
    assert_eq!(keys.len(), 1);
    assert_eq!(
        (keys[0].start, keys[0].end, keys[0].backing.clone()),
        (b, b + 3 * P, Backing::Heap)
    );
    // Unaligned: the break is kept as asked, the area rounded up.
    let r = t.run(&format!("brk {:#x} expect {:#x}", b + P + 5, b + P + 5));
    assert_eq!(r.state.keys(h.brk_span.0, h.brk_span.1)[0].end, b + 2 * P);
    // Below its start: refused by Linux, which returns the current break.
    t.run(&format!("brk {:#x} expect {:#x}", b - P, b + P + 5));
    let r = t.run(&format!("brk {b:#x} expect {b:#x}"));
    assert!(r.state.maps.is_empty());
}

#[test]
fn calls_outside_the_window_are_refused_and_bad_lines_reported() {
    let mut t = Ref::new();
    let r = t.r.run_text(&format!("munmap {:#x} 1p", t.hi)).unwrap();
    assert_eq!(r.outcome, Outcome::Refused);
    let r =
        t.r.run_text(&format!("mmap {:#x} 2p rw private anon fixed", t.hi - P))
            .unwrap();
    assert_eq!(r.outcome, Outcome::Refused);
    let r = t.r.run_text("frobnicate 1").unwrap();
    assert_eq!(r.outcome, Outcome::Refused);
    let r = t.r.run_text("munmap 0 1p expect EINVAL").unwrap();
    assert_eq!(r.outcome, Outcome::Refused);
    assert!(r.expect_failed.is_some());
    let status = t.r.finish().unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "a bad line or failed expect makes the exit status 1"
    );
}

#[test]
fn spawn_finds_the_runner_next_to_the_test() {
    let r = LinuxRef::spawn().expect("linux-ref found beside the test executable");
    assert!(r.header().window.1 > r.header().window.0);
}

#[test]
fn a_hint_in_the_guard_gap_below_a_grows_down_mapping_is_not_taken() {
    // Linux keeps `stack_guard_gap` (256 pages) free below a grows-down
    // mapping for placement: a hint there falls back to top-down placement.
    let mut t = Ref::new();
    let g = t.top(10);
    t.run(&format!("mmap {g:#x} 1p rw private anon fixed growsdown"));
    let h = g - 5 * P;
    let r = t.run(&format!("mmap {h:#x} 1p rw private anon expect ok"));
    assert_ne!(r.outcome, Outcome::Addr(h));
    let far = g - 300 * P;
    t.run(&format!("mmap {far:#x} 1p rw private anon expect {far:#x}"));
}

#[cfg(target_arch = "x86_64")]
#[test]
fn the_constants_are_linuxs() {
    use aspace_linux::consts::*;
    assert_eq!(PAGE_SIZE, unsafe_free_page_size());
    let pairs: &[(u32, i32)] = &[
        (PROT_READ, libc::PROT_READ),
        (PROT_WRITE, libc::PROT_WRITE),
        (PROT_EXEC, libc::PROT_EXEC),
        (PROT_GROWSDOWN, libc::PROT_GROWSDOWN),
        (MAP_SHARED, libc::MAP_SHARED),
        (MAP_PRIVATE, libc::MAP_PRIVATE),
        (MAP_SHARED_VALIDATE, libc::MAP_SHARED_VALIDATE),
        (MAP_FIXED, libc::MAP_FIXED),
        (MAP_ANONYMOUS, libc::MAP_ANONYMOUS),
        (MAP_GROWSDOWN, libc::MAP_GROWSDOWN),
        (MAP_LOCKED, libc::MAP_LOCKED),
        (MAP_NORESERVE, libc::MAP_NORESERVE),
        (MAP_POPULATE, libc::MAP_POPULATE),
        (MAP_NONBLOCK, libc::MAP_NONBLOCK),
        (MAP_STACK, libc::MAP_STACK),
        (MAP_HUGETLB, libc::MAP_HUGETLB),
        (MAP_SYNC, libc::MAP_SYNC),
        (MAP_FIXED_NOREPLACE, libc::MAP_FIXED_NOREPLACE),
        (MREMAP_MAYMOVE, libc::MREMAP_MAYMOVE),
        (MREMAP_FIXED, libc::MREMAP_FIXED),
        (MREMAP_DONTUNMAP, libc::MREMAP_DONTUNMAP),
        (MS_ASYNC, libc::MS_ASYNC),
        (MS_INVALIDATE, libc::MS_INVALIDATE),
        (MS_SYNC, libc::MS_SYNC),
        (MLOCK_ONFAULT, libc::MLOCK_ONFAULT as i32),
    ];
    for &(ours, theirs) in pairs {
        assert_eq!(ours as i32, theirs);
    }
    for (ours, theirs) in [
        (MADV_NORMAL, libc::MADV_NORMAL),
        (MADV_DONTNEED, libc::MADV_DONTNEED),
        (MADV_FREE, libc::MADV_FREE),
        (MADV_REMOVE, libc::MADV_REMOVE),
        (MADV_RANDOM, libc::MADV_RANDOM),
        (MADV_SEQUENTIAL, libc::MADV_SEQUENTIAL),
        (MADV_WILLNEED, libc::MADV_WILLNEED),
        (MADV_DONTFORK, libc::MADV_DONTFORK),
        (MADV_DOFORK, libc::MADV_DOFORK),
        (MADV_MERGEABLE, libc::MADV_MERGEABLE),
        (MADV_UNMERGEABLE, libc::MADV_UNMERGEABLE),
        (MADV_HUGEPAGE, libc::MADV_HUGEPAGE),
        (MADV_NOHUGEPAGE, libc::MADV_NOHUGEPAGE),
        (MADV_DONTDUMP, libc::MADV_DONTDUMP),
        (MADV_DODUMP, libc::MADV_DODUMP),
        (MADV_WIPEONFORK, libc::MADV_WIPEONFORK),
        (MADV_KEEPONFORK, libc::MADV_KEEPONFORK),
        (MADV_COLD, libc::MADV_COLD),
        (MADV_PAGEOUT, libc::MADV_PAGEOUT),
        (MADV_POPULATE_READ, libc::MADV_POPULATE_READ),
        (MADV_POPULATE_WRITE, libc::MADV_POPULATE_WRITE),
    ] {
        assert_eq!(ours, theirs);
    }
    for &e in Errno::ALL {
        let name = e.name().unwrap();
        let theirs = match name {
            "EPERM" => libc::EPERM,
            "ENOENT" => libc::ENOENT,
            "ENOMEM" => libc::ENOMEM,
            "EACCES" => libc::EACCES,
            "EFAULT" => libc::EFAULT,
            "EEXIST" => libc::EEXIST,
            "EINVAL" => libc::EINVAL,
            "EAGAIN" => libc::EAGAIN,
            "EBADF" => libc::EBADF,
            "ENODEV" => libc::ENODEV,
            "EOVERFLOW" => libc::EOVERFLOW,
            "ENOSYS" => libc::ENOSYS,
            "EOPNOTSUPP" => libc::EOPNOTSUPP,
            "ETXTBSY" => libc::ETXTBSY,
            "EBUSY" => libc::EBUSY,
            "ESRCH" => libc::ESRCH,
            "EINTR" => libc::EINTR,
            "EIO" => libc::EIO,
            "ENXIO" => libc::ENXIO,
            "E2BIG" => libc::E2BIG,
            "ENOEXEC" => libc::ENOEXEC,
            "ECHILD" => libc::ECHILD,
            "ENOTBLK" => libc::ENOTBLK,
            "EXDEV" => libc::EXDEV,
            "ENOTDIR" => libc::ENOTDIR,
            "EISDIR" => libc::EISDIR,
            "ENFILE" => libc::ENFILE,
            "EMFILE" => libc::EMFILE,
            "ENOTTY" => libc::ENOTTY,
            "EFBIG" => libc::EFBIG,
            "ENOSPC" => libc::ENOSPC,
            "ESPIPE" => libc::ESPIPE,
            "EROFS" => libc::EROFS,
            "EMLINK" => libc::EMLINK,
            "EPIPE" => libc::EPIPE,
            "EDOM" => libc::EDOM,
            "ERANGE" => libc::ERANGE,
            other => panic!("no libc value listed for {other}"),
        };
        assert_eq!(e.0, theirs, "{name}");
    }
}

#[cfg(target_arch = "x86_64")]
fn unsafe_free_page_size() -> u64 {
    // `sysconf` has no preconditions.
    // SAFETY: sysconf reads a system value and touches no memory of ours.
    (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }) as u64
}

/// How many of the pages a `mincore` line's response counts resident.
fn resident(r: &Response) -> (u64, u64) {
    match r.outcome {
        Outcome::Resident(v) => (v.resident, v.pages),
        other => panic!("mincore answered {other}"),
    }
}

/// A page of a shared object (a file, shared anonymous memory) that was only
/// read stays in the object when Linux drops its caches: the runner
/// allocates every page of its objects up front, so `mincore` does not
/// depend on when the machine dropped caches (which the differential test
/// once saw: a read page of a file, in a `PROT_NONE` mapping, gone from
/// Linux's cache, not from aspace's). Needs root to drop the caches; without it, only the part
/// before the drop runs.
#[test]
fn pages_read_from_shared_objects_stay_when_linux_drops_caches() {
    let mut t = Ref::new();
    let (f, s) = (t.top(4), t.top(8));
    t.run(&format!("mmap {f:#x} 4p rw shared file F 0 fixed"));
    t.run(&format!("mmap {s:#x} 4p rw shared anon fixed"));
    for a in [f, s] {
        t.run(&format!("read {a:#x} expect 0"));
        t.run(&format!("write {:#x} 5", a + P));
        // The page table forgets both pages; the object keeps them. (The
        // runner's observer reads the resident pages of readable mappings
        // after each step, which maps them again: hence `none` first.)
        t.run(&format!("mprotect {a:#x} 4p none"));
        t.run(&format!("madvise {a:#x} 4p dontneed expect ok"));
        assert_eq!(resident(&t.run(&format!("mincore {a:#x} 4p"))), (2, 4));
    }
    let dropped = std::fs::write("/proc/sys/vm/drop_caches", "1\n").is_ok();
    eprintln!("caches dropped: {dropped}");
    for a in [f, s] {
        assert_eq!(
            resident(&t.run(&format!("mincore {a:#x} 4p"))),
            (2, 4),
            "the page read at {a:#x} stays"
        );
        t.run(&format!("mprotect {a:#x} 4p rw"));
        t.run(&format!("read {:#x} expect 5", a + P));
    }
}

/// After `MADV_REMOVE` the runner allocates the hole's pages again, and
/// only them: a page read in the hole stays when Linux drops its caches,
/// the pages never touched stay absent from `mincore` (a second
/// allocation of a page allocated before would make it up to date), and
/// the written page outside the hole keeps its data. Needs root to drop
/// the caches; without it, only the part before the drop runs.
#[test]
fn a_page_read_in_a_hole_stays_when_linux_drops_caches() {
    let mut t = Ref::new();
    let s = t.top(4);
    t.run(&format!("mmap {s:#x} 4p rw shared anon fixed"));
    for i in 0..2 {
        t.run(&format!("write {:#x} 7", s + i * P));
    }
    t.run(&format!("madvise {s:#x} 1p remove expect ok"));
    t.run(&format!("read {s:#x} expect 0"));
    // As above: the page table forgets the pages, the object keeps them.
    t.run(&format!("mprotect {s:#x} 4p none"));
    t.run(&format!("madvise {s:#x} 4p dontneed expect ok"));
    assert_eq!(resident(&t.run(&format!("mincore {s:#x} 4p"))), (2, 4));
    let dropped = std::fs::write("/proc/sys/vm/drop_caches", "1\n").is_ok();
    eprintln!("caches dropped: {dropped}");
    assert_eq!(
        resident(&t.run(&format!("mincore {s:#x} 4p"))),
        (2, 4),
        "the page read in the hole stays, the untouched ones stay absent"
    );
    t.run(&format!("mprotect {s:#x} 4p rw"));
    t.run(&format!("read {:#x} expect 7", s + P));
}

/// Guard pages on Linux (6.13+; the runner reads them from
/// `/proc/self/pagemap`, 6.14+): an access there is a fault, which the
/// runner answers without touching the page; the maps do not change; a
/// private page is gone once they are taken out, a file's page is not.
#[test]
fn guard_pages_fault_and_the_maps_do_not_change() {
    let mut t = Ref::new();
    let guards =
        t.r.header()
            .sysctl
            .iter()
            .any(|(k, v)| k == "madv.guard" && v == "1");
    if !guards {
        eprintln!("this kernel has no guard pages the runner can see");
        return;
    }
    let (a, f) = (t.top(4), t.top(8));
    t.run(&format!("mmap {a:#x} 4p rw private anon fixed"));
    t.run(&format!("mmap {f:#x} 2p rw shared file F 0 fixed"));
    t.run(&format!("write {:#x} 5", a + P));
    t.run(&format!("write {f:#x} 6"));
    let before = t.run(&format!("mincore {a:#x} 4p"));
    let r = t.run(&format!("madvise {a:#x} 2p guard_install expect ok"));
    assert_eq!(t.keys(&r), t.keys(&before));
    t.run(&format!("read {:#x} expect fault", a + P));
    t.run(&format!("write {a:#x} 1 expect fault"));
    t.run(&format!("read {:#x} expect 0", a + 2 * P));
    t.run(&format!("madvise {a:#x} 4p dontneed expect ok"));
    t.run(&format!("read {:#x} expect fault", a + P));
    t.run(&format!("madvise {a:#x} 4p populate_read expect EFAULT"));
    t.run(&format!("madvise {a:#x} 4p guard_remove expect ok"));
    t.run(&format!("read {:#x} expect 0", a + P));
    t.run(&format!("madvise {f:#x} 1p guard_install expect ok"));
    t.run(&format!("read {f:#x} expect fault"));
    assert_eq!(resident(&t.run(&format!("mincore {f:#x} 2p"))).0, 1);
    t.run(&format!("madvise {f:#x} 1p guard_remove expect ok"));
    t.run(&format!("read {f:#x} expect 6"));
}
