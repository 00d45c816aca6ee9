//! TLB shootdown: page-table changes that remove translations are batched,
//! and the frames they freed are released only after every TLB that may hold
//! the old translations has been flushed.
//!
//! The protocol per operation (HelenOS's start / invalidate / finalize):
//! 1. *start*: [`ShootdownBatch::new`]; every [`Unmapped`] token from the page
//!    table goes into it with [`ShootdownBatch::defer`], together with
//!    whether its frame reference is to be released.
//! 2. *invalidate*: on completion the current CPU flushes the range locally,
//!    CPUs running the address space get an IPI and flush it, and CPUs that
//!    ran it before but do not now are marked to flush its ASID before they
//!    next run it (no IPI needed).
//! 3. *finalize*: only then do the frames go back to the allocator.
//!
//! The list of frames to release grows on the heap. The core adds to it with
//! `ShootdownBatch::defer_or_flush` and
//! `ShootdownBatch::release_later_or_flush`, which never fail: if the heap
//! refuses to grow the list, the batch completes what it gathered so far
//! (one shootdown round for the translations removed until then, then their
//! frames go) and carries on in the room that freed, as Linux's `mmu_gather`
//! does when its page list is full. Unmapping therefore never needs the heap.

use alloc::vec::Vec;

use crate::addr::{Frame, Page, PageRange};
use crate::machine::{CpuSet, Cpus, FrameAllocator, Invalidation, Machine, Shootdown, Tlb};
use crate::paging::{Rewritten, Unmapped};
use crate::shared::Shared;
use crate::stats::Stats;

/// A pending TLB shootdown and the frames that wait for it.
///
/// Dropping a batch without completing it keeps its
/// frames forever (a leak, never a use-after-free).
#[must_use = "frames are released only when the shootdown completes"]
#[derive(Debug, Default)]
pub struct ShootdownBatch {
    low: u64,
    high: u64,
    unmapped: u64,
    release: Vec<Frame>,
}

impl ShootdownBatch {
    /// Starts a batch.
    pub fn new() -> Self {
        Self {
            low: u64::MAX,
            high: 0,
            unmapped: 0,
            release: Vec::new(),
        }
    }

    /// Adds a removed translation; `release` says whether its frame
    /// reference is dropped once the shootdown is done.
    pub fn defer(&mut self, unmapped: Unmapped, release: bool) {
        let n = unmapped.page().number();
        self.low = self.low.min(n);
        self.high = self.high.max(n + 1);
        self.unmapped += 1;
        if release {
            self.release.push(unmapped.frame());
        }
    }

    /// Adds `count` translations from `first` that were removed or changed
    /// while their frames stay in use (mapped elsewhere by
    /// [`PageTable::move_run`](crate::paging::PageTable::move_run)):
    /// nothing to release, but the TLBs must forget them all the same.
    pub fn defer_kept(&mut self, first: Page, count: u64) {
        if count == 0 {
            return;
        }
        let n = first.number();
        self.low = self.low.min(n);
        self.high = self.high.max(n + count);
        self.unmapped += count;
    }

    /// Adds the entries a [`PageTable::protect_run`](crate::paging::PageTable::protect_run)
    /// gave other rights: the TLBs must forget their old rights.
    pub fn defer_rewritten(&mut self, rewritten: Rewritten) {
        if let Some(span) = rewritten.span() {
            self.low = self.low.min(span.start.number());
            self.high = self.high.max(span.end().number());
            self.unmapped += rewritten.count();
        }
    }

    /// Makes room, if the heap gives it, for `frames` more frames to
    /// release, so a run of that many unmapped pages grows the list once;
    /// whether it did (if not, the list grows as pages come, or flushes
    /// early).
    pub fn reserve(&mut self, frames: usize) -> bool {
        self.release.try_reserve(frames).is_ok()
    }

    /// Adds the translations of the run of `count` pages from `first`,
    /// unmapped by `unmap` (which hands each frame to the function it is
    /// given, in page order; `release`: whether their references are
    /// dropped once the shootdown is done), with the range counted once
    /// for the run; room for every frame is made first, and if the heap
    /// refuses it, page by page as [`defer_or_flush`](Self::defer_or_flush).
    /// Returns how many were unmapped.
    pub(crate) fn defer_run_or_flush<M: Machine>(
        &mut self,
        first: Page,
        count: u64,
        release: bool,
        shared: &Shared<M>,
        as_id: u64,
        unmap: impl FnOnce(&mut dyn FnMut(Unmapped)),
    ) -> u64 {
        let mut unmapped = 0;
        let room = usize::try_from(count).is_ok_and(|n| !release || self.reserve(n));
        if !room {
            unmap(&mut |u| {
                unmapped += 1;
                self.defer_or_flush(u, release, shared, as_id);
            });
            return unmapped;
        }
        let release_list = &mut self.release;
        unmap(&mut |u| {
            unmapped += 1;
            if release {
                // Room made above: no allocation.
                release_list.push(u.frame());
            }
        });
        if unmapped > 0 {
            // Pages in order: the first and the last unmapped bound them;
            // the whole run bounds them too, which is as good a range.
            let n = first.number();
            self.low = self.low.min(n);
            self.high = self.high.max(n + count);
            self.unmapped += unmapped;
        }
        unmapped
    }

    /// Releases one reference of `frame` once the shootdown is done (a
    /// share record's page-map reference, for instance).
    pub fn release_later(&mut self, frame: Frame) {
        self.release.push(frame);
    }

    /// [`defer`](Self::defer) for a batch of address space `as_id`: if the
    /// heap refuses room for the frame, the batch is flushed first (see
    /// the [module documentation](self)), so this never fails.
    pub(crate) fn defer_or_flush<M: Machine>(
        &mut self,
        unmapped: Unmapped,
        release: bool,
        shared: &Shared<M>,
        as_id: u64,
    ) {
        let n = unmapped.page().number();
        self.low = self.low.min(n);
        self.high = self.high.max(n + 1);
        self.unmapped += 1;
        if release {
            self.push_or_flush(unmapped.frame(), shared, as_id);
        }
    }

    /// [`release_later`](Self::release_later) that flushes instead of
    /// failing, as [`defer_or_flush`](Self::defer_or_flush).
    pub(crate) fn release_later_or_flush<M: Machine>(
        &mut self,
        frame: Frame,
        shared: &Shared<M>,
        as_id: u64,
    ) {
        self.push_or_flush(frame, shared, as_id);
    }

    fn push_or_flush<M: Machine>(&mut self, frame: Frame, shared: &Shared<M>, as_id: u64) {
        if self.release.len() == self.release.capacity() && self.release.try_reserve(1).is_err() {
            // Every translation removed so far leaves every TLB, then the
            // frames gathered go, which frees room in the list.
            self.flush(shared, as_id);
            if self.release.capacity() == 0 {
                // Never had room: this frame's translation (if any) was in
                // the round just done, so it goes now.
                shared.machine.frames().release(frame);
                Stats::add(&shared.counters().frame_refs_released, 1);
                return;
            }
        }
        self.release.push(frame);
    }

    /// Completes what the batch holds now and empties it for more.
    fn flush<M: Machine>(&mut self, shared: &Shared<M>, as_id: u64) {
        if !self.is_empty() {
            self.shoot(shared, as_id);
        }
        if !self.release.is_empty() {
            shared.machine.frames().release_many(&self.release);
            let released = self.release.len() as u64;
            Stats::add(&shared.counters().frame_refs_released, released);
            self.release.clear();
        }
        self.low = u64::MAX;
        self.high = 0;
        self.unmapped = 0;
    }

    /// Number of translations removed.
    pub fn len(&self) -> u64 {
        self.unmapped
    }

    /// Whether nothing was removed.
    pub fn is_empty(&self) -> bool {
        self.unmapped == 0
    }

    /// The pages covered (from the lowest to the highest removed page).
    pub fn range(&self) -> PageRange {
        if self.is_empty() {
            PageRange::default()
        } else {
            PageRange::new(Page::from_number(self.low), self.high - self.low)
        }
    }

    /// Flushes every TLB that may hold the removed translations of address
    /// space `as_id`, then releases the frames.
    pub(crate) fn complete<M: Machine>(mut self, shared: &Shared<M>, as_id: u64) {
        self.flush(shared, as_id);
    }

    fn shoot<M: Machine>(&self, shared: &Shared<M>, as_id: u64) {
        let range = self.range();
        let machine = &shared.machine;
        let me = machine.cpus().current_cpu();
        let all = CpuSet::first(machine.cpus().cpu_count());
        let plan = shared.asids.lock().plan_shootdown(as_id, me, all);
        if let Some(plan) = plan {
            let what = Invalidation::Pages {
                asid: plan.asid,
                range,
            };
            // The round and a local invalidation are counted by the plan.
            if plan.local {
                machine.tlb().invalidate_local(what);
            }
            if !plan.remote.is_empty() {
                let ipis = machine.shootdown().shootdown(plan.remote, what);
                Stats::add(&shared.counters().ipis, ipis as u64);
            }
        }
    }
}
