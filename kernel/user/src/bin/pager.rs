//! A user-space pager serving a "file" of 4 pages to a client task
//! (`pager_client`), which maps it as an area of this pager
//! (`AREA_CREATE_PAGED`): each page is asked for on the client's first
//! touch (`PAGER_RECEIVE`) and answered with this task's own page holding
//! that part of the file (`PAGER_ANSWER`). Modes (the argument):
//!
//! - 0: serve the 4 pages; check each is asked for once, with the area's
//!   identifiers; then end;
//! - 1 (slow): as 0, but each answer comes only after 2000 yields, while
//!   the client's other thread works;
//! - 2 (dying): serve page 0, take the request for page 1, and end
//!   without answering it (the client's fault fails: the pager is gone);
//! - 3 (refusing): answer the first request with an address that is not a
//!   page's (refused: EINVAL, the client's fault fails with the pager's
//!   error), and an unknown handle (ENOENT);
//! - 4 (flood): one client (`pager_client` 4) faults on many pages at
//!   once from many threads and another (`pager_client` 5) on one page:
//!   this pager holds every request of the first unanswered and serves the
//!   second. The kernel keeps at most `MAX_PER_CLIENT` (16) requests of one
//!   client and refuses the faults past them (the kernel kills those
//!   threads); the other client is served all the same. The requests held
//!   are answered once nothing more came for a while.
#![no_std]
#![no_main]

use aspace_user::*;

/// The file's pages.
pub const PAGES: usize = 4;

/// Byte `i` of the file.
fn byte(i: usize) -> u8 {
    (i.wrapping_mul(31) ^ (i / PAGE).wrapping_mul(0x5b)) as u8
}

#[no_mangle]
fn main(mode: u64) -> i32 {
    // The file, in this task's memory (placed anywhere).
    let file = area_anywhere(PAGES * PAGE, READ | WRITE, 0x3000_0000);
    if file == CREATE_FAILED {
        println!("pager: no memory for the file");
        return 1;
    }
    for i in 0..PAGES * PAGE {
        write((file + i) as *mut u8, byte(i));
    }
    println!("pager: mode {mode}: serving {PAGES} pages from {file:#x}");
    let mut asked = [0u32; PAGES];
    let mut bad = 0;
    if mode == 3 {
        let Ok(req) = pager_receive() else {
            return 1;
        };
        let r = pager_answer(req.handle, file + 1);
        let again = pager_answer(req.handle, file);
        let unknown = pager_answer(9999, file);
        println!(
            "pager: answer with an unaligned address = {r}; the same handle again = {again}; an unknown handle = {unknown}"
        );
        return if r == -13 && again == -1 && unknown == -1 {
            0
        } else {
            1
        };
    }
    if mode == 4 {
        return flood(file);
    }
    let serve = if mode == 2 { 1 } else { PAGES };
    // Every request names the one client task (the kernel says which).
    let mut client = 0;
    for _ in 0..serve {
        let req = match pager_receive() {
            Ok(r) => r,
            Err(e) => {
                println!("pager: receive = {e}");
                return 1;
            }
        };
        let page = req.offset as usize / PAGE;
        println!(
            "pager: request {} for offset {:#x} size {:#x} ids {:?} access {}",
            req.handle, req.offset, req.size, req.ids, req.access
        );
        if client == 0 {
            client = req.client;
        }
        let from_client = req.client == client && req.client != pid();
        if page >= PAGES || req.ids != [7, 42, mode] || req.size != PAGE as u64 || !from_client {
            bad += 1;
            pager_fail(req.handle);
            continue;
        }
        asked[page] += 1;
        if mode == 1 {
            // Long enough that a host running the emulated CPUs on fewer
            // cores still gives the client's other thread a turn meanwhile.
            for _ in 0..2000 {
                yield_now();
            }
        }
        let r = pager_answer(req.handle, file + page * PAGE);
        if r != 0 {
            println!("pager: answer = {r}");
            bad += 1;
        }
    }
    if mode == 2 {
        match pager_receive() {
            Ok(req) => println!(
                "pager: took the request for offset {:#x}; ending without an answer",
                req.offset
            ),
            Err(e) => println!("pager: receive = {e}"),
        }
        return 0;
    }
    let once = asked.iter().all(|&n| n == 1);
    println!(
        "pager: served {PAGES} pages, each asked for once: {}",
        if once && bad == 0 { "ok" } else { "BAD" }
    );
    if once && bad == 0 {
        0
    } else {
        1
    }
}

/// The kernel's bound on the requests of one client a pager holds.
const MAX_PER_CLIENT: usize = 16;

/// Mode 4: see the module docs. Receives without waiting until the other
/// client was served, 16 requests of the flooding one are held, and
/// nothing more came for a long while (a 17th would be one too many).
fn flood(file: usize) -> i32 {
    // (handle, offset) of each request held.
    let mut held = [(0u64, 0u64); 32];
    let (mut nheld, mut flooder, mut served) = (0, 0, 0);
    let mut idle = 0u64;
    while !(served > 0 && nheld >= MAX_PER_CLIENT && idle > 20_000) {
        if idle > 5_000_000 {
            println!("pager: flood: held {nheld}, served {served}: gave up waiting: BAD");
            return 1;
        }
        let Ok(req) = pager_try_receive() else {
            idle += 1;
            yield_now();
            continue;
        };
        idle = 0;
        if req.ids[2] == 4 && nheld < held.len() {
            flooder = req.client;
            held[nheld] = (req.handle, req.offset);
            nheld += 1;
        } else if pager_answer(req.handle, page_for(file, req.offset)) == 0 {
            served += 1;
        } else {
            println!("pager: flood: the other client's request refused: BAD");
            return 1;
        }
    }
    // The threads whose requests were held wait for them still.
    let mut accepted = 0;
    for &(h, offset) in &held[..nheld] {
        accepted += usize::from(pager_answer(h, page_for(file, offset)) == 0);
    }
    let ok = nheld == MAX_PER_CLIENT && served == 1 && accepted == nheld;
    println!(
        "pager: flood: held {nheld} requests of client {flooder} unanswered (the bound, {MAX_PER_CLIENT}: {}), served the other client {served} page, then answered the {accepted} held",
        if ok { "ok" } else { "BAD" }
    );
    if ok {
        0
    } else {
        1
    }
}

/// The file's page that answers a request for `offset` of a larger area:
/// the file repeats.
fn page_for(file: usize, offset: u64) -> usize {
    file + (offset as usize / PAGE % PAGES) * PAGE
}
