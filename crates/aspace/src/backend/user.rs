//! Pages supplied by a pager task (HelenOS `backend_user.c`).
//!
//! An area of this backend asks its [`Pager`] for each page the first time
//! it is touched: the fault handler sends a [`PageIn`] request (the area's
//! identifiers and the page's offset, as HelenOS's `IPC_M_PAGE_IN`), waits
//! for the answer *without* the area tree's or the area's lock, and maps the
//! frame the pager answers with. The pager answers with an address in its
//! own address space ([`PageIn::answer`]); the core translates it there and
//! takes a reference on the frame, so the client and the pager then share
//! that frame (a pager that wants private pages answers with a fresh page
//! each time). An error ([`PageIn::fail`]), a refused answer or a pager that
//! drops the request (it died) fails the faults waiting for it.
//!
//! Faults on a page already asked for join the request in flight instead of
//! asking again: each area keeps a table of requests in flight, keyed by
//! page index, under a lock of the machine's type (taken after the area's
//! lock, and only for a lookup or an insertion).
//!
//! The fault side lives in `core/page_in.rs`; this file holds the backend,
//! the request and the answer.

use alloc::sync::Arc;
use core::any::Any;
use core::fmt;

use crate::addr::{Frame, Page, VirtAddr};
use crate::backend::{AreaInfo, Backend, BackendCaps};
use crate::flags::{Access, AreaFlags};
use crate::internals::area_tree::AreaTree;
use crate::internals::try_arc::TryArc;
use crate::machine::{FrameAllocator, Machine, Sleep};
use crate::paging::PageTable;
use crate::space::AddressSpace;
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::{Error, Result, PAGE_SIZE};

/// The identifiers an area gives its pager with every request (HelenOS
/// `as_area_pager_info_t`'s `id1`..`id3`): what the pager needs to know which
/// object (file, device, ...) the area shows. The core never interprets them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PagerIds {
    /// First identifier (e.g. a file system's service).
    pub id1: u64,
    /// Second identifier (e.g. a file's index).
    pub id2: u64,
    /// Third identifier (e.g. an offset of the area within the file).
    pub id3: u64,
}

/// The kernel's end of a connection to a pager task: where the fault
/// handler delivers [`PageIn`] requests.
///
/// A kernel implements it by queueing the request for the pager task and
/// waking it (its "receive the next page-in request" system call takes the
/// request off the queue, its "answer" call calls [`PageIn::answer`] or
/// [`PageIn::fail`]). The simulator's pager is a thread reading a channel.
pub trait Pager: Send + Sync {
    /// Delivers `request`. Must not wait for the answer: the faulting CPU
    /// waits for it itself, polling with [`Machine::relax`] or asleep
    /// ([`Machine::pager_sleep`]). A pager that is
    /// gone (or cannot take more requests) simply drops the request, which
    /// fails every fault waiting for it with
    /// [`PagerGone`](crate::FaultReason::PagerGone).
    fn send(&self, request: PageIn);
}

/// Which address space a pager answers from: its id and its system (the
/// address of the system's shared state, so a space of another system with
/// the same id is not taken for it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Owner {
    pub space: u64,
    pub system: usize,
}

impl Owner {
    pub(crate) fn of<M: Machine>(space: &AddressSpace<M>) -> Self {
        Self {
            space: space.id(),
            system: TryArc::as_ptr(&space.shared) as usize,
        }
    }
}

/// The states of a request's answer.
const PENDING: u64 = 0;
/// Answered with a frame (with one reference, not yet taken).
const FRAME: u64 = 1;
/// Answered with an error, or the answer was refused.
const FAILED: u64 = 2;
/// The pager dropped the request: it is gone.
const GONE: u64 = 3;
/// The frame was taken by one of the waiting faults.
const TAKEN: u64 = 4;

/// How a request ended, as the waiting faults see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// A frame was answered (it may have been taken already).
    Frame,
    /// The pager answered an error, or its answer was refused.
    Failed,
    /// The pager is gone.
    Gone,
}

/// The answer to one request, shared by the faults waiting for it: written
/// once by the pager's side, read by the faults (lock-free).
pub(crate) struct Slot {
    state: AtomicU64,
    frame: AtomicU64,
    /// The rights ([`AreaFlags`] bits) the pager had on the page it lent:
    /// the most the client's area may map it with.
    rights: AtomicU64,
    waiters: AtomicU64,
    /// Where the faults waiting for the answer sleep, if they do.
    sleep: Option<&'static dyn Sleep>,
}

impl Slot {
    fn new(sleep: Option<&'static dyn Sleep>) -> Self {
        Self {
            state: AtomicU64::new(PENDING),
            frame: AtomicU64::new(0),
            rights: AtomicU64::new(0),
            waiters: AtomicU64::new(0),
            sleep,
        }
    }

    /// Records the answer (once; later calls are ignored) and wakes the
    /// faults asleep waiting for it.
    fn complete(&self, state: u64, frame: Option<(Frame, AreaFlags)>) {
        if let Some((f, rights)) = frame {
            self.frame.store(f.number(), Ordering::Relaxed);
            self.rights
                .store(u64::from(rights.bits()), Ordering::Relaxed);
        }
        let recorded = self
            .state
            .compare_exchange(PENDING, state, Ordering::Release, Ordering::Relaxed)
            .is_ok();
        if let (true, Some(sleep)) = (recorded, self.sleep) {
            sleep.wake();
        }
    }

    /// Where the faults waiting for this answer sleep (the one its
    /// completion wakes), if they do.
    pub(crate) fn sleep(&self) -> Option<&'static dyn Sleep> {
        self.sleep
    }

    /// The answer, or `None` while the pager has not answered.
    pub(crate) fn answer(&self) -> Option<Answer> {
        match self.state.load(Ordering::Acquire) {
            PENDING => None,
            FRAME | TAKEN => Some(Answer::Frame),
            FAILED => Some(Answer::Failed),
            _ => Some(Answer::Gone),
        }
    }

    /// Takes the answered frame and its reference; `None` if there is none
    /// or another fault took it first.
    pub(crate) fn take(&self) -> Option<Frame> {
        self.state
            .compare_exchange(FRAME, TAKEN, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| Frame::from_number(self.frame.load(Ordering::Relaxed)))
    }

    /// The rights the pager had on the page it answered with (none before
    /// a frame was answered; read after [`answer`](Self::answer) saw one).
    pub(crate) fn rights(&self) -> AreaFlags {
        AreaFlags::from_bits_truncate(self.rights.load(Ordering::Relaxed) as u32)
    }

    /// One fault less waits for the answer.
    pub(crate) fn leave(&self) {
        self.waiters.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One page-in request (HelenOS `IPC_M_PAGE_IN`): which page of which
/// object, and the handle to answer it with. Answer it once, with
/// [`answer`](Self::answer) or [`fail`](Self::fail); dropping it
/// unanswered tells the waiting faults the pager is gone.
pub struct PageIn {
    /// Byte offset of the page within its area (HelenOS's first argument).
    pub offset: u64,
    /// Bytes asked for: one page.
    pub size: u64,
    /// The area's identifiers.
    pub ids: PagerIds,
    /// The access that faulted.
    pub access: Access,
    owner: Owner,
    slot: Option<TryArc<Slot>>,
}

impl fmt::Debug for PageIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PageIn")
            .field("offset", &self.offset)
            .field("size", &self.size)
            .field("ids", &self.ids)
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

impl PageIn {
    /// How many faults wait for this answer now (for observation and tests:
    /// a second fault on the same page joins the first's request).
    pub fn waiters(&self) -> u64 {
        self.slot
            .as_ref()
            .map_or(0, |s| s.waiters.load(Ordering::Relaxed))
    }

    /// Answers with the page mapped at `addr` in the pager's own address
    /// space `pager_space` (HelenOS: the pager answers with an address, the
    /// kernel translates it and takes a reference on the frame).
    ///
    /// Refused, failing the waiting faults with
    /// [`PagerError`](crate::FaultReason::PagerError): an unaligned `addr`
    /// (`InvalidArgument`); a space that is not the pager's the area was
    /// bound to (`PermissionDenied`); no area or no page mapped at `addr`
    /// (`NotFound`); a page of memory that is not the pager's to give
    /// (device memory, frames not counted: `PermissionDenied`). The page
    /// lends only the rights the pager has on it: a client area with more
    /// (now, or when the answer arrives) fails its fault with
    /// [`PagerError`](crate::FaultReason::PagerError), and one with fewer
    /// can never be given more (its maximum rights shrink to the page's).
    pub fn answer<M: Machine>(
        mut self,
        pager_space: &AddressSpace<M>,
        addr: VirtAddr,
    ) -> Result<()> {
        let slot = self.slot.take().expect("a request is answered once");
        let frame = self.lend(pager_space, addr);
        match frame {
            Ok(f) => slot.complete(FRAME, Some(f)),
            Err(_) => slot.complete(FAILED, None),
        }
        frame.map(|_| ())
    }

    /// The frame mapped at `addr` in `space`, with one more reference, and
    /// the rights `space` has on it, if `space` is the owner's and the
    /// frame is its to lend.
    fn lend<M: Machine>(
        &self,
        space: &AddressSpace<M>,
        addr: VirtAddr,
    ) -> Result<(Frame, AreaFlags)> {
        if !addr.is_page_aligned() {
            return Err(Error::InvalidArgument);
        }
        if Owner::of(space) != self.owner {
            return Err(Error::PermissionDenied);
        }
        let page = addr.page();
        let tree = space.read_areas();
        let slot = space.area_at(&tree, page.number()).ok_or(Error::NotFound)?;
        // The area's lock keeps the page mapped (every unmap takes it or the
        // tree's write lock) while the reference is taken.
        let mut st = slot.lock();
        if !st.used.contains(page) {
            return Err(Error::NotFound);
        }
        if !slot.area.backend.caps().contains(BackendCaps::REFCOUNTED) {
            return Err(Error::PermissionDenied);
        }
        // A copy-on-write page (the pager forked) is copied first, so the
        // frame lent is the pager's own, not one its fork still maps.
        if st.cow.contains(page) {
            space.cow_copy(&mut st, page, None)?;
        }
        let m = &space.shared.machine;
        let (frame, _) = space
            .pt()
            .translate(m.memory(), page)
            .ok_or(Error::NotFound)?;
        m.frames().add_ref(frame);
        Ok((frame, st.flags & AreaFlags::RIGHTS))
    }

    /// Answers with an error: the waiting faults fail with
    /// [`PagerError`](crate::FaultReason::PagerError).
    pub fn fail(mut self) {
        if let Some(slot) = self.slot.take() {
            slot.complete(FAILED, None);
        }
    }
}

impl Drop for PageIn {
    /// Unanswered: the pager is gone (or never got the request).
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.complete(GONE, None);
        }
    }
}

/// The user-pager backend of one area (HelenOS `user_backend`): its pager,
/// its identifiers and its requests in flight. Made by
/// [`AddressSpace::area_create_paged`], one per area.
///
/// Frames are counted (each mapping holds a reference on the pager's
/// frame); areas may be resized and change rights, but not be shared.
pub struct UserBackend<M: Machine> {
    pub(crate) pager: Arc<dyn Pager>,
    pub(crate) ids: PagerIds,
    pub(crate) owner: Owner,
    /// Page index to the request in flight for it. A leaf lock: taken under
    /// the area's lock (or alone), never the other way round.
    in_flight: lock_api::Mutex<M::Lock, AreaTree<TryArc<Slot>>>,
}

impl<M: Machine> UserBackend<M> {
    pub(crate) fn new(pager: Arc<dyn Pager>, ids: PagerIds, owner: Owner) -> Self {
        Self {
            pager,
            ids,
            owner,
            in_flight: lock_api::Mutex::new(AreaTree::new()),
        }
    }

    /// The request in flight for page `index`, joined (one more waiter);
    /// when there is none, a new one, with the request the caller is to
    /// send once it has dropped its locks. `None` (nothing changed) if the
    /// heap refuses the new request. A new request's answer wakes `sleep`.
    pub(crate) fn join(
        &self,
        index: u64,
        access: Access,
        sleep: Option<&'static dyn Sleep>,
    ) -> Option<(TryArc<Slot>, Option<PageIn>)> {
        let mut table = self.in_flight.lock();
        if let Some((_, slot)) = table.get(index) {
            slot.waiters.fetch_add(1, Ordering::Relaxed);
            return Some((slot.clone(), None));
        }
        if !table.try_reserve_insertion(index) {
            return None;
        }
        let slot = TryArc::try_new(Slot::new(sleep)).ok()?;
        slot.waiters.fetch_add(1, Ordering::Relaxed);
        let added = table.insert(index, index + 1, slot.clone()).is_ok();
        debug_assert!(added, "no request in flight for the page");
        let request = PageIn {
            offset: index * PAGE_SIZE,
            size: PAGE_SIZE,
            ids: self.ids,
            access,
            owner: self.owner,
            slot: Some(slot.clone()),
        };
        Some((slot, Some(request)))
    }

    /// Takes `slot` out of the table (if it is still there): later faults
    /// on the page ask anew.
    pub(crate) fn retire(&self, index: u64, slot: &TryArc<Slot>) {
        let mut table = self.in_flight.lock();
        if table
            .get(index)
            .is_some_and(|(_, s)| TryArc::ptr_eq(s, slot))
        {
            table.remove(index);
        }
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.lock().len()
    }

    /// The area's identifiers.
    pub fn ids(&self) -> PagerIds {
        self.ids
    }
}

impl<M: Machine> Backend<M::Memory, M::Frames> for UserBackend<M> {
    fn name(&self) -> &'static str {
        "pager"
    }

    /// Never called: the fault handler resolves this backend's pages itself,
    /// asking the pager without holding the area's lock.
    fn page_fault(
        &self,
        _memory: &M::Memory,
        _frames: &M::Frames,
        _area: &AreaInfo,
        _page: Page,
        _access: Access,
    ) -> Result<Frame> {
        Err(Error::NotSupported)
    }

    fn caps(&self) -> BackendCaps {
        BackendCaps::REFCOUNTED | BackendCaps::RESIZE | BackendCaps::CHANGE_FLAGS
    }

    /// None: every frame is the pager's, reserved (or not) in the pager's
    /// own space; the client only takes references on them.
    fn reserve_pages(&self, _first: u64, _count: u64) -> u64 {
        0
    }

    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}
