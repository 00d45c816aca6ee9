//! `FORK` and `WAIT`: the parent fills an area and a Linux `mmap`
//! mapping, starts a second thread that keeps counting, forks; the child
//! (without that thread: its copy of the counter stays still) sees the
//! parent's data, writes its own,
//! forks a grandchild that does the same to the child's, and exits; the
//! parent waits and finds its data unchanged. Then the limits: the ninth
//! child not waited for is refused (`-EAGAIN`), each child's exit status
//! (and a killed one's) comes back once through `WAIT`; a fork whose
//! child could not reserve the parent's memory is refused (`-ENOMEM`)
//! with the parent unchanged; a page marked `MADV_DONTFORK` is not in the
//! child and one marked `MADV_WIPEONFORK` is there zero-filled (without
//! the parent's guard page, as on Linux). Exit 0
//! when every check passes.
#![no_std]
#![no_main]

use aspace_user::linux::{
    madvise, mmap, munmap, MADV_DONTFORK, MADV_GUARD_INSTALL, MADV_POPULATE_READ, MADV_WILLNEED,
    MADV_WIPEONFORK, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE,
};
use aspace_user::nr::{EAGAIN, ECHILD, ENOMEM, KILLED_STATUS, MAX_CHILDREN};
use aspace_user::*;
use core::sync::atomic::{AtomicU64, Ordering};

/// The area the parent fills (the "heap").
const HEAP: usize = 0x1000_0000;
const HEAP_PAGES: usize = 16;
/// Pages of the Linux mapping.
const MAP_PAGES: usize = 8;
/// Where the large area of the out-of-memory check goes.
const BIG: usize = 0x4000_0000;

/// The Linux mapping's address (the child has the same: a copy).
static MAP: AtomicU64 = AtomicU64::new(0);

/// The parent's second thread: counts until told to stop, then says so.
static COUNT: AtomicU64 = AtomicU64::new(0);
static STOP: AtomicU64 = AtomicU64::new(0);
static STOPPED: AtomicU64 = AtomicU64::new(0);
/// The counting thread's stack (an ordinary area).
const COUNTER_STACK: usize = 0x3000_0000;

extern "C" fn counter(_: u64) -> ! {
    while STOP.load(Ordering::SeqCst) == 0 {
        COUNT.fetch_add(1, Ordering::SeqCst);
        yield_now();
    }
    STOPPED.store(1, Ordering::SeqCst);
    exit(0)
}

/// Whether `COUNT` moves within `spins` turns of a busy loop (yielding
/// now and then). A loop, not a few yields: under QEMU's TCG another CPU
/// may not run at all for a few system calls' time.
fn count_moves(spins: u64) -> bool {
    let before = COUNT.load(Ordering::SeqCst);
    for i in 0..spins {
        if COUNT.load(Ordering::SeqCst) != before {
            return true;
        }
        if i % 4096 == 0 {
            yield_now();
        }
        core::hint::spin_loop();
    }
    false
}

const PARENT: u64 = 0x1111_0000_0000;
const CHILD: u64 = 0x2222_0000_0000;
const GRANDCHILD: u64 = 0x3333_0000_0000;
const PARENT_AGAIN: u64 = 0x4444_0000_0000;

/// Every page of the area and of the mapping: the first and last words.
fn pages() -> impl Iterator<Item = usize> {
    let map = MAP.load(Ordering::Relaxed) as usize;
    (0..HEAP_PAGES)
        .map(|i| HEAP + i * PAGE)
        .chain((0..MAP_PAGES).map(move |i| map + i * PAGE))
}

fn fill(seed: u64) {
    for a in pages() {
        write(a as *mut u64, seed ^ a as u64);
        write((a + PAGE - 8) as *mut u64, !(seed ^ a as u64));
    }
}

fn holds(seed: u64) -> bool {
    pages().all(|a| {
        read(a as *const u64) == seed ^ a as u64
            && read((a + PAGE - 8) as *const u64) == !(seed ^ a as u64)
    })
}

fn grandchild() -> i32 {
    let saw = holds(CHILD);
    fill(GRANDCHILD);
    let own = holds(GRANDCHILD);
    println!("fork: grandchild: saw the child's data {saw}, wrote its own {own}");
    if saw && own {
        0
    } else {
        1
    }
}

fn child(parent: u64) -> i32 {
    let other = pid() != parent;
    // The parent's thread counts ~100 000 times in this long.
    let alone = !count_moves(1_000_000);
    let saw = holds(PARENT);
    fill(CHILD);
    let own = holds(CHILD);
    let g = fork();
    if g == 0 {
        exit(grandchild());
    }
    let status = if g > 0 { wait(g as u64) } else { g };
    let kept = holds(CHILD);
    println!(
        "fork: child: own process number {other}, only the forking thread {alone}, saw the parent's data {saw}, wrote its own {own}; \
         grandchild status {status:#x}, own data unchanged {kept}"
    );
    if other && alone && saw && own && status == 0 && kept {
        0
    } else {
        1
    }
}

/// [`MAX_CHILDREN`] children not waited for (one killed, the others
/// exiting with their index): one more is refused; each status comes back
/// once.
fn limits() -> bool {
    let mut kids = [0i64; MAX_CHILDREN];
    for (i, k) in kids.iter_mut().enumerate() {
        let r = fork();
        if r == 0 {
            if i == 0 {
                // Killed: a write to the NULL page.
                write(core::ptr::null_mut::<u64>(), 1);
            }
            exit(i as i32);
        }
        *k = r;
    }
    let over = fork();
    if over == 0 {
        exit(0);
    }
    let mut statuses = true;
    for (i, &k) in kids.iter().enumerate() {
        let want = if i == 0 {
            KILLED_STATUS as i64
        } else {
            (i as i64) << 8
        };
        statuses &= k > 0 && wait(k as u64) == want;
    }
    let again = wait(kids[1] as u64);
    let stranger = wait(1);
    let after = fork();
    if after == 0 {
        exit(0);
    }
    let after_status = if after > 0 { wait(after as u64) } else { after };
    if over > 0 {
        wait(over as u64);
    }
    let ok =
        over == -EAGAIN && statuses && again == -ECHILD && stranger == -ECHILD && after_status == 0;
    println!(
        "fork: {MAX_CHILDREN} children forked, one more refused = {over}; statuses (killed {KILLED_STATUS:#x}, exits 0x100 to 0x700) {statuses}; \
         waited again = {again}, not a child = {stranger}; then a fork = status {after_status:#x}: {}",
        if ok { "PASS" } else { "FAIL" }
    );
    ok
}

/// An area reserving more than half of what the commit limit leaves: the
/// child could not reserve it too, so the fork is refused, the parent as
/// it was; once the area is gone, forks work again.
fn no_memory(seed: u64) -> bool {
    let mut size = 1usize << 30;
    while size >= 16 * PAGE && area_create(BIG, size, READ | WRITE) != BIG {
        size /= 2;
    }
    let big = size >= 16 * PAGE;
    let r = fork();
    if r == 0 {
        exit(0);
    }
    let intact = holds(seed);
    let gone = area_destroy(BIG);
    let after = fork();
    if after == 0 {
        exit(if holds(seed) { 0 } else { 1 });
    }
    let status = if after > 0 { wait(after as u64) } else { after };
    if r > 0 {
        wait(r as u64);
    }
    let ok = big && r == -ENOMEM && intact && gone == 0 && status == 0;
    println!(
        "fork: more than half the free memory reserved: fork = {r}, data intact {intact}; \
         given back: fork = status {status:#x}: {}",
        if ok { "PASS" } else { "FAIL" }
    );
    ok
}

/// `MADV_DONTFORK` on page 1 of a 5-page mapping and `MADV_WIPEONFORK` on
/// pages 2 and 3, with a guard page at 3 (`MADV_GUARD_INSTALL`): the child
/// has no page 1 (`madvise(MADV_WILLNEED)` there is `ENOMEM`, as for any
/// unmapped range), reads pages 2 and 3 as zeros (no guard page in a wiped
/// mapping, as Linux's child) and pages 0 and 4 as the parent wrote them;
/// the parent keeps its pages and its guard page (populating it `EFAULT`).
fn fork_hints() -> bool {
    let len = 5 * PAGE as u64;
    let m = mmap(
        0,
        len,
        PROT_READ | PROT_WRITE,
        MAP_PRIVATE | MAP_ANONYMOUS,
        u64::MAX,
        0,
    );
    if m < 0 {
        println!("fork: hints: mmap = {m}: FAIL");
        return false;
    }
    let m = m as usize;
    let word = |i: usize| (m + i * PAGE) as *mut u64;
    for i in 0..5 {
        write(word(i), 0x5eed_0000 + i as u64);
    }
    let dontfork = madvise((m + PAGE) as u64, PAGE as u64, MADV_DONTFORK);
    let wipe = madvise((m + 2 * PAGE) as u64, 2 * PAGE as u64, MADV_WIPEONFORK);
    let guard = madvise((m + 3 * PAGE) as u64, PAGE as u64, MADV_GUARD_INSTALL);
    let c = fork();
    if c == 0 {
        let gone =
            madvise((m + PAGE) as u64, PAGE as u64, MADV_WILLNEED) == aspace_user::linux::ENOMEM;
        let wiped = read(word(2)) == 0 && read(word(3)) == 0;
        let kept = read(word(0)) == 0x5eed_0000 && read(word(4)) == 0x5eed_0004;
        exit(if gone && wiped && kept { 0 } else { 1 });
    }
    let status = if c > 0 { wait(c as u64) } else { c };
    let parent = [0, 1, 2, 4]
        .iter()
        .all(|&i| read(word(i)) == 0x5eed_0000 + i as u64);
    let guarded = madvise((m + 3 * PAGE) as u64, PAGE as u64, MADV_POPULATE_READ) == -14;
    let freed = munmap(m as u64, len) == 0;
    let ok = dontfork == 0 && wipe == 0 && guard == 0 && status == 0 && parent && guarded && freed;
    println!(
        "fork: hints: dontfork = {dontfork}, wipeonfork = {wipe}, guard = {guard}; child status {status:#x} (page left out, pages wiped, no guard page, others copied); parent's kept {parent}, guard page {guarded}: {}",
        if ok { "PASS" } else { "FAIL" }
    );
    ok
}

#[no_mangle]
fn main(_arg: u64) -> i32 {
    if area_create(HEAP, HEAP_PAGES * PAGE, READ | WRITE) != HEAP {
        println!("fork: cannot create the area: FAIL");
        return 1;
    }
    let len = (MAP_PAGES * PAGE) as u64;
    let map = mmap(
        0,
        len,
        PROT_READ | PROT_WRITE,
        MAP_PRIVATE | MAP_ANONYMOUS,
        u64::MAX,
        0,
    );
    if map < 0 {
        println!("fork: mmap = {map}: FAIL");
        return 1;
    }
    MAP.store(map as u64, Ordering::Relaxed);
    fill(PARENT);
    let stack = area_create(COUNTER_STACK, 4 * PAGE, READ | WRITE);
    let t = thread_create(counter, COUNTER_STACK + 4 * PAGE, 0);
    if stack != COUNTER_STACK || t <= 0 {
        println!("fork: cannot start the counting thread ({t}): FAIL");
        return 1;
    }
    let me = pid();
    let c = fork();
    if c == 0 {
        exit(child(me));
    }
    if c < 0 {
        println!("fork: fork = {c}: FAIL");
        return 1;
    }
    let status = wait(c as u64);
    let kept = holds(PARENT);
    // The parent's counting thread still runs; stopped now.
    let counting = count_moves(50_000_000);
    STOP.store(1, Ordering::SeqCst);
    while STOPPED.load(Ordering::SeqCst) == 0 {
        yield_now();
    }
    // The child wrote its own copies: the parent's frames are its alone
    // again, so these writes take them over.
    fill(PARENT_AGAIN);
    let again = holds(PARENT_AGAIN);
    let ok = status == 0 && kept && again && counting;
    println!(
        "fork: child status {status:#x}; the parent's {HEAP_PAGES} area and {MAP_PAGES} mmap pages unchanged {kept}, written again {again}; its second thread still counting {counting}: {}",
        if ok { "PASS" } else { "FAIL" }
    );
    let limits = limits();
    let no_memory = no_memory(PARENT_AGAIN);
    let freed =
        area_destroy(HEAP) == 0 && area_destroy(COUNTER_STACK) == 0 && munmap(map as u64, len) == 0;
    let hints = fork_hints();
    let all = ok && limits && no_memory && freed && hints;
    println!("fork: all: {}", if all { "PASS" } else { "FAIL" });
    if all {
        0
    } else {
        1
    }
}
