//! A fault that finds memory exhausted while another CPU holds the last frame,
//! prepared for the same page, must not fail: it waits for that fault and
//! then finds the page mapped. (Found in review: before the fix the second
//! fault failed with `NoMemory` although the page ended up mapped.)

use aspace::TryArc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

use aspace::backend::Backend;
use aspace::machine::{FrameAllocator, PhysMemory};
use aspace::AreaInfo;
use aspace::{Access, AreaAttrs, AreaFlags, Error, FaultOutcome, Frame, Page, VirtAddr, PAGE_SIZE};
use aspace_sim::{FramePool, PhysMem, Sim, SimConfig};

const BASE: u64 = 0x40_0000;

/// Anonymous memory whose first `prepare` (once armed) holds its zeroed
/// frame until the backend has been asked, and failed, to supply a frame
/// under the area's lock: the other fault's path.
struct HoldingAnon {
    armed: AtomicBool,
    holding: AtomicBool,
    other_failed: AtomicBool,
    supplied: AtomicU32,
}

fn zeroed(memory: &PhysMem, frames: &FramePool) -> Option<Frame> {
    let f = frames.alloc()?;
    memory.zero_frame(f);
    Some(f)
}

fn wait_for(flag: &AtomicBool) {
    let t = Instant::now();
    while !flag.load(SeqCst) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the other fault never came"
        );
        std::thread::yield_now();
    }
}

impl Backend<PhysMem, FramePool> for HoldingAnon {
    fn name(&self) -> &'static str {
        "holding"
    }

    fn page_fault(
        &self,
        memory: &PhysMem,
        frames: &FramePool,
        _: &AreaInfo,
        _: Page,
        _: Access,
    ) -> aspace::Result<Frame> {
        let f = zeroed(memory, frames);
        if f.is_none() {
            self.other_failed.store(true, SeqCst);
        } else {
            self.supplied.fetch_add(1, SeqCst);
        }
        f.ok_or(Error::NoMemory)
    }

    fn prepare(&self, memory: &PhysMem, frames: &FramePool) -> Option<Frame> {
        let f = zeroed(memory, frames);
        if f.is_some() && self.armed.swap(false, SeqCst) {
            self.holding.store(true, SeqCst);
            wait_for(&self.other_failed);
        }
        f
    }
}

#[test]
fn fault_racing_the_holder_of_the_last_frame_waits_and_succeeds() {
    let sim = Sim::new(SimConfig {
        cpus: 2,
        ..SimConfig::default()
    })
    .unwrap();
    let baseline = sim.frames_in_use();
    let space = sim.system().create().unwrap();
    let backend = TryArc::try_new(HoldingAnon {
        armed: AtomicBool::new(false),
        holding: AtomicBool::new(false),
        other_failed: AtomicBool::new(false),
        supplied: AtomicU32::new(0),
    })
    .ok()
    .unwrap();
    let rw = AreaFlags::READ | AreaFlags::WRITE;
    space
        .area_create_with(
            VirtAddr::new(BASE),
            2 * PAGE_SIZE,
            rw,
            AreaAttrs::empty(),
            TryArc::into_backend(backend.clone()),
        )
        .unwrap();
    // The first page brings the page-table levels in, without holding.
    let first = VirtAddr::new(BASE);
    assert_eq!(
        space.page_fault(first, Access::Write, aspace::FaultContext::User),
        FaultOutcome::Ok
    );
    let frames = sim.hardware().frames();
    let in_use = frames.in_use();
    frames.set_limit(Some(in_use + 1)); // one frame left
    backend.armed.store(true, SeqCst);
    let page = VirtAddr::new(BASE + PAGE_SIZE);
    let (holder, other) = std::thread::scope(|s| {
        let holder = s.spawn(|| space.page_fault(page, Access::Write, aspace::FaultContext::User));
        wait_for(&backend.holding);
        let other = space.page_fault(page, Access::Write, aspace::FaultContext::User);
        (holder.join().unwrap(), other)
    });
    assert_eq!(holder, FaultOutcome::Ok);
    assert_eq!(
        other,
        FaultOutcome::Ok,
        "the page got mapped: the racing fault must not fail"
    );
    assert!(backend.other_failed.load(SeqCst), "the race was not set up");
    assert_eq!(frames.in_use(), in_use + 1);
    assert_eq!(space.resident_pages(), 2);
    frames.set_limit(None);
    // Truly out of memory, a fault still fails (after its retries).
    let more = VirtAddr::new(BASE + 2 * PAGE_SIZE);
    space
        .area_create_with(
            more,
            PAGE_SIZE,
            rw,
            AreaAttrs::empty(),
            TryArc::into_backend(backend.clone()),
        )
        .unwrap();
    frames.set_limit(Some(frames.in_use()));
    assert_eq!(
        space.page_fault(more, Access::Write, aspace::FaultContext::User),
        FaultOutcome::Fault(aspace::FaultReason::NoMemory)
    );
    frames.set_limit(None);
    drop(space);
    assert_eq!(sim.frames_in_use(), baseline, "every frame back");
}
