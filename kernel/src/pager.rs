//! User-space pagers: a task that serves the pages of other tasks' areas
//! (aspace's `Pager`, HelenOS's `backend_user.c`).
//!
//! Each pager task has one [`KPager`]: a queue of page-in requests not yet
//! received and a table of requests received but not answered, keyed by
//! a handle. The fault handler queues a request (`Pager::send`) and
//! waits, parked, for the answer; the pager task takes it with
//! `PAGER_RECEIVE` and answers with `PAGER_ANSWER`. When the pager task
//! ends, every request it still holds is dropped, which fails the faults
//! waiting for them with `PagerGone`, and later requests are dropped as
//! they come.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
use alloc::vec::Vec;

use aspace::backend::{PageIn, Pager};
use aspace::Error;

use crate::sync::SpinLock;

/// Most requests one pager holds (queued and received together); beyond,
/// a request is refused (its fault fails with `PagerError`, as if the
/// pager had answered with an error).
pub const MAX_REQUESTS: usize = 64;

/// Most of those from one client process: a client cannot fill the
/// pager's table and so fail the faults of its other clients.
pub const MAX_PER_CLIENT: usize = 16;

struct State {
    alive: bool,
    /// Requests not yet received, with their client's process number.
    queue: VecDeque<(u64, PageIn)>,
    received: BTreeMap<u64, (u64, PageIn)>,
    next_handle: u64,
}

/// The kernel's end of one pager task.
pub struct KPager {
    state: SpinLock<State>,
}

/// A request as the pager receives it.
pub struct Received {
    /// The handle to answer it with (the request stays in the table of
    /// received ones until answered).
    pub handle: u64,
    /// Byte offset of the page in its area.
    pub offset: u64,
    /// Bytes asked for (a page).
    pub size: u64,
    /// The area's three identifiers.
    pub ids: [u64; 3],
    /// The access that faulted: 1 read, 2 write, 4 execute.
    pub access: u64,
    /// The process number of the client whose area faulted (the kernel
    /// says it: a pager tells its clients apart, and may refuse those it
    /// does not serve).
    pub client: u64,
}

impl KPager {
    /// A pager with nothing queued.
    pub fn new() -> Self {
        Self {
            state: SpinLock::new(State {
                alive: true,
                queue: VecDeque::new(),
                received: BTreeMap::new(),
                next_handle: 1,
            }),
        }
    }

    /// Takes the next queued request into the table of received ones;
    /// `None` when nothing is queued.
    pub fn receive(&self) -> Option<Received> {
        let mut st = self.state.lock();
        let (client, req) = st.queue.pop_front()?;
        let handle = st.next_handle;
        st.next_handle += 1;
        let r = Received {
            handle,
            offset: req.offset,
            size: req.size,
            ids: [req.ids.id1, req.ids.id2, req.ids.id3],
            access: match req.access {
                aspace::Access::Read => 1,
                aspace::Access::Write => 2,
                aspace::Access::Exec => 4,
            },
            client,
        };
        st.received.insert(handle, (client, req));
        Some(r)
    }

    /// Puts a received request back at the head of the queue (its
    /// record could not be copied to the pager).
    pub fn unreceive(&self, handle: u64) {
        let mut st = self.state.lock();
        if let Some(entry) = st.received.remove(&handle) {
            st.queue.push_front(entry);
        }
    }

    /// Takes the received request `handle` out of the table, to answer it.
    pub fn take(&self, handle: u64) -> Result<PageIn, Error> {
        self.state
            .lock()
            .received
            .remove(&handle)
            .map(|(_, req)| req)
            .ok_or(Error::NotFound)
    }

    /// The pager task ended: every request it holds is dropped (outside
    /// the lock), failing the faults waiting with `PagerGone`, and so are
    /// later ones.
    pub fn close(&self) -> usize {
        let dropped: Vec<PageIn> = {
            let mut st = self.state.lock();
            st.alive = false;
            let mut v: Vec<PageIn> = st.queue.drain(..).map(|(_, r)| r).collect();
            v.extend(
                core::mem::take(&mut st.received)
                    .into_values()
                    .map(|(_, r)| r),
            );
            v
        };
        dropped.len()
    }
}

impl KPager {
    /// Queues `request` from the area of process `client`, unless the
    /// pager is gone (then it is dropped, failing its fault with
    /// `PagerGone`), or holds [`MAX_REQUESTS`], or [`MAX_PER_CLIENT`] of
    /// `client`'s, or the heap refuses room (then it is refused, failing
    /// its fault with `PagerError`).
    fn send_from(&self, client: u64, request: PageIn) {
        let mut st = self.state.lock();
        if !st.alive {
            drop(st);
            drop(request);
            return;
        }
        let held = st.queue.iter().filter(|(c, _)| *c == client).count()
            + st.received.values().filter(|(c, _)| *c == client).count();
        let full = st.queue.len() + st.received.len() >= MAX_REQUESTS || held >= MAX_PER_CLIENT;
        if full || st.queue.try_reserve(1).is_err() {
            drop(st);
            request.fail();
            return;
        }
        st.queue.push_back((client, request));
    }
}

/// One client's end of a pager: what an area of process `client` sends
/// its requests through.
struct ClientLink {
    pager: Arc<KPager>,
    client: u64,
}

impl Pager for ClientLink {
    fn send(&self, request: PageIn) {
        self.pager.send_from(self.client, request);
    }
}

/// A pager handle for aspace, for the areas of process `client`.
pub fn for_client(p: &Arc<KPager>, client: u64) -> Arc<dyn Pager> {
    Arc::new(ClientLink {
        pager: p.clone(),
        client,
    })
}
