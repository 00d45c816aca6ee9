//! TLB shootdown by inter-processor interrupts: one request at a time (a
//! global lock), a fixed IPI vector, a per-CPU request generation and an
//! acknowledgement counter (the IPI itself is the architecture's:
//! `arch::send_shootdown_ipi`). Targets serve the request in the IPI handler or,
//! when they are spinning on a lock with interrupts off, in the spin loop
//! ([`poll`]), so a shootdown issued under a lock never deadlocks.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use aspace::{Asid, CpuSet, Invalidation, Page, PageRange, Tlb};

use crate::arch::{cpu_id, ArchTlb, MAX_CPUS};

static BUSY: AtomicBool = AtomicBool::new(false);
static GEN: AtomicU64 = AtomicU64::new(0);
static REQUEST: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static DONE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static ACKS: AtomicUsize = AtomicUsize::new(0);
// The request: kind (0 all, 1 asid, 2 pages), asid, first page, count.
static WHAT: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
/// Shootdown requests sent (one per call with targets).
pub static ROUNDS: AtomicU64 = AtomicU64::new(0);
/// IPIs sent.
pub static SENT: AtomicU64 = AtomicU64::new(0);

fn encode(what: Invalidation) {
    let (k, a, s, c) = match what {
        Invalidation::All => (0, 0, 0, 0),
        Invalidation::Asid(a) => (1, a.0 as u64, 0, 0),
        Invalidation::Pages { asid, range } => {
            (2, asid.0 as u64, range.start.number(), range.count)
        }
    };
    WHAT[0].store(k, Ordering::Relaxed);
    WHAT[1].store(a, Ordering::Relaxed);
    WHAT[2].store(s, Ordering::Relaxed);
    WHAT[3].store(c, Ordering::Relaxed);
}

fn decode() -> Invalidation {
    let asid = Asid(WHAT[1].load(Ordering::Relaxed) as u16);
    match WHAT[0].load(Ordering::Relaxed) {
        0 => Invalidation::All,
        1 => Invalidation::Asid(asid),
        _ => Invalidation::Pages {
            asid,
            range: PageRange::new(
                Page::from_number(WHAT[2].load(Ordering::Relaxed)),
                WHAT[3].load(Ordering::Relaxed),
            ),
        },
    }
}

/// Serves a shootdown request addressed to this CPU, if one is pending.
#[inline]
pub fn poll() {
    let cpu = cpu_id();
    let req = REQUEST[cpu].load(Ordering::Acquire);
    if req > DONE[cpu].load(Ordering::Relaxed) {
        serve(cpu, req);
    }
}

#[cold]
fn serve(cpu: usize, req: u64) {
    ArchTlb.invalidate_local(decode());
    DONE[cpu].store(req, Ordering::Relaxed);
    crate::stats::IPIS_SERVED.fetch_add(1, Ordering::Relaxed);
    ACKS.fetch_add(1, Ordering::AcqRel);
}

/// The shootdown IPI handler.
pub fn ipi() {
    poll();
}

/// Makes every CPU of `targets` but this one perform `what`; returns when
/// all have acknowledged. Returns the number of IPIs sent.
pub fn shootdown(targets: CpuSet, what: Invalidation) -> usize {
    let me = cpu_id();
    let count = crate::machine::CPU_COUNT.load(Ordering::Relaxed);
    let mut t = targets;
    t.remove(me);
    let targets: CpuSet = CpuSet(t.0 & CpuSet::first(count).0 & crate::arch::online().0);
    if targets.is_empty() {
        return 0;
    }
    while BUSY
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        crate::sync::relax();
    }
    encode(what);
    ACKS.store(0, Ordering::Relaxed);
    let gen = GEN.fetch_add(1, Ordering::Relaxed) + 1;
    let n = targets.len();
    for cpu in targets.iter() {
        REQUEST[cpu].store(gen, Ordering::Release);
        crate::arch::send_shootdown_ipi(cpu);
    }
    while ACKS.load(Ordering::Acquire) < n {
        core::hint::spin_loop();
    }
    BUSY.store(false, Ordering::Release);
    ROUNDS.fetch_add(1, Ordering::Relaxed);
    SENT.fetch_add(n as u64, Ordering::Relaxed);
    n
}
