//! A user-space pager on a thread of its own: the simulator's stand-in for
//! a pager task (HelenOS's `IPC_M_PAGE_IN` server).
//!
//! The core hands page-in requests to a [`ChannelPager`] (its
//! [`Pager`] end), which puts them on a channel; the pager thread takes
//! them off, decides with its serve function what to answer, and answers
//! with a page of its own address space ([`SimPager::space`]) or an error.
//! Tests steer it: hold requests (a slow pager), release them, kill it (a
//! dying pager: held and queued requests are dropped unanswered), and read
//! what it was asked.
//!
//! ```
//! use aspace::backend::PagerIds;
//! use aspace::{AreaFlags, VirtAddr, PAGE_SIZE};
//! use aspace_sim::pager::SimPager;
//! use aspace_sim::{Sim, SimConfig};
//!
//! let sim = Sim::new(SimConfig::default()).unwrap();
//! let pager = SimPager::file(&sim, b"hello, pager".to_vec()).unwrap();
//! let space = sim.system().create().unwrap();
//! let base = VirtAddr::new(0x40_0000);
//! space
//!     .area_create_paged(base, PAGE_SIZE, AreaFlags::READ, pager.link(), pager.space(),
//!                        PagerIds::default())
//!     .unwrap();
//! let mut cpu = sim.cpu(0);
//! cpu.switch_to(&space).unwrap();
//! let mut buf = [0u8; 12];
//! cpu.read(base, &mut buf).unwrap();
//! assert_eq!(&buf, b"hello, pager");
//! assert_eq!(pager.requests(), 1);
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aspace::backend::{PageIn, Pager};
use aspace::{AreaFlags, VirtAddr, PAGE_SIZE};

use crate::cpu::{Space, SpaceHandle};
use crate::Sim;

/// What the pager's serve function decides for one request.
#[derive(Clone)]
pub enum Reply {
    /// Answer with the page at this address of the pager's own space.
    Page(VirtAddr),
    /// Answer with the page at this address of *another* space, as a pager
    /// that tries to hand out memory it does not own (the core refuses).
    Foreign(SpaceHandle, VirtAddr),
    /// Answer with an error.
    Error,
    /// Drop the request unanswered (as a pager that crashed on it).
    Unanswered,
}

/// How the pager thread decides: given its own space and the request.
pub type Serve = Box<dyn FnMut(&SpaceHandle, &PageIn) -> Reply + Send>;

enum Msg {
    Request(PageIn),
    Release,
    Die,
}

/// The kernel's end of the connection: implements the core's [`Pager`] by
/// putting each request on the pager thread's channel. Once the thread is
/// gone, a request cannot be sent and is dropped, which fails its faults
/// with `PagerGone`.
pub struct ChannelPager {
    tx: Mutex<Sender<Msg>>,
}

impl Pager for ChannelPager {
    fn send(&self, request: PageIn) {
        // The queue is the machine's, not the core's heap use.
        crate::heap::exempt(|| {
            let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
            // On error the message, and with it the request, is dropped.
            let _ = tx.send(Msg::Request(request));
        });
    }
}

/// What the pager thread and its handle share.
#[derive(Default)]
struct State {
    /// Requests received, per offset.
    asked: Mutex<BTreeMap<u64, u64>>,
    /// Requests held back, waiting for [`SimPager::release`].
    held: Mutex<Vec<PageIn>>,
    /// Hold every request (`all`) or those at these offsets.
    hold: Mutex<(bool, BTreeSet<u64>)>,
    /// Answers the core refused.
    refused: AtomicU64,
    /// Requests answered with a page.
    answered: AtomicU64,
}

/// A pager thread with its own address space.
pub struct SimPager {
    tx: Sender<Msg>,
    link: Arc<ChannelPager>,
    state: Arc<State>,
    space: SpaceHandle,
    thread: Option<JoinHandle<()>>,
}

/// Where the file pager keeps the file's pages in its own space.
pub const FILE_BASE: u64 = 0x1000_0000;

impl SimPager {
    /// Starts a pager thread on `sim` with a new address space of its own,
    /// set up by `setup` (areas, contents) before the thread starts, and
    /// answering with `serve`.
    pub fn spawn(
        sim: &Sim,
        setup: impl FnOnce(&SpaceHandle) -> aspace::Result<()>,
        serve: Serve,
    ) -> aspace::Result<SimPager> {
        let space = sim.system().create()?;
        setup(&space)?;
        let (tx, rx) = mpsc::channel();
        let state = Arc::new(State::default());
        let thread = {
            let (space, state) = (space.clone(), state.clone());
            std::thread::Builder::new()
                .name("sim-pager".into())
                .spawn(move || run(rx, &space, &state, serve))
                .map_err(|_| aspace::Error::NoMemory)?
        };
        Ok(SimPager {
            link: Arc::new(ChannelPager {
                tx: Mutex::new(tx.clone()),
            }),
            tx,
            state,
            space,
            thread: Some(thread),
        })
    }

    /// A pager serving `bytes` as a file, lazily: the page at offset `o` is
    /// copied into the pager's own memory (at [`FILE_BASE`] + `o`) on the
    /// first request for it, and answered with. Past the file's last page
    /// it answers an error.
    pub fn file(sim: &Sim, bytes: Vec<u8>) -> aspace::Result<SimPager> {
        let pages = (bytes.len() as u64).div_ceil(PAGE_SIZE).max(1);
        let mut filled = BTreeSet::new();
        Self::spawn(
            sim,
            |space| {
                space
                    .area_create(
                        VirtAddr::new(FILE_BASE),
                        pages * PAGE_SIZE,
                        AreaFlags::READ | AreaFlags::WRITE,
                    )
                    .map(|_| ())
            },
            Box::new(move |space, req| {
                if req.offset >= pages * PAGE_SIZE {
                    return Reply::Error;
                }
                let at = VirtAddr::new(FILE_BASE + req.offset);
                if filled.insert(req.offset) && fill(space, &bytes, req.offset).is_err() {
                    filled.remove(&req.offset);
                    return Reply::Error;
                }
                Reply::Page(at)
            }),
        )
    }

    /// The connection to hand to
    /// [`area_create_paged`](aspace::AddressSpace::area_create_paged).
    pub fn link(&self) -> Arc<dyn Pager> {
        self.link.clone()
    }

    /// The pager's own address space.
    pub fn space(&self) -> &SpaceHandle {
        &self.space
    }

    /// Holds every request from now on, unanswered, until
    /// [`release`](Self::release): a slow pager.
    pub fn hold_all(&self) {
        self.state.hold.lock().unwrap().0 = true;
    }

    /// Holds requests for the page at `offset` until
    /// [`release`](Self::release).
    pub fn hold(&self, offset: u64) {
        self.state.hold.lock().unwrap().1.insert(offset);
    }

    /// Stops holding and serves the held requests.
    pub fn release(&self) {
        *self.state.hold.lock().unwrap() = (false, BTreeSet::new());
        let _ = self.tx.send(Msg::Release);
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.state.asked.lock().unwrap().values().sum()
    }

    /// Requests received for the page at `offset`.
    pub fn requests_at(&self, offset: u64) -> u64 {
        self.state
            .asked
            .lock()
            .unwrap()
            .get(&offset)
            .copied()
            .unwrap_or(0)
    }

    /// Requests held now, and how many faults wait for each (by offset).
    pub fn held(&self) -> Vec<(u64, u64)> {
        let held = self.state.held.lock().unwrap();
        held.iter().map(|r| (r.offset, r.waiters())).collect()
    }

    /// Answers the core refused (bad address, a page not the pager's).
    pub fn refused(&self) -> u64 {
        self.state.refused.load(Relaxed)
    }

    /// Requests answered with a page the core took.
    pub fn answered(&self) -> u64 {
        self.state.answered.load(Relaxed)
    }

    /// Waits up to `timeout` for `cond` to hold; returns whether it did.
    pub fn wait_until(&self, timeout: Duration, cond: impl Fn(&SimPager) -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if cond(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        cond(self)
    }

    /// Kills the pager thread and waits for it: requests it held or had
    /// not read yet are dropped unanswered, and later ones cannot be sent.
    pub fn kill(&mut self) {
        let _ = self.tx.send(Msg::Die);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Whether the pager thread still runs.
    pub fn alive(&self) -> bool {
        self.thread.is_some()
    }
}

impl Drop for SimPager {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Copies the file's page at `offset` into the pager's memory.
fn fill(space: &Space, bytes: &[u8], offset: u64) -> aspace::Result<()> {
    let mut page = vec![0u8; PAGE_SIZE as usize];
    let start = (offset as usize).min(bytes.len());
    let end = (start + PAGE_SIZE as usize).min(bytes.len());
    page[..end - start].copy_from_slice(&bytes[start..end]);
    space.copy_to_user(VirtAddr::new(FILE_BASE + offset), &page)
}

/// The pager thread: serve requests until told to die or every sender is
/// gone. Returning drops the held requests and (with the receiver) the
/// queued ones, unanswered.
fn run(rx: Receiver<Msg>, space: &SpaceHandle, state: &State, mut serve: Serve) {
    let answer = |serve: &mut Serve, req: PageIn| match serve(space, &req) {
        Reply::Foreign(other, at) => match req.answer(&other, at) {
            Ok(()) => {
                state.answered.fetch_add(1, Relaxed);
            }
            Err(_) => {
                state.refused.fetch_add(1, Relaxed);
            }
        },
        Reply::Page(at) => match req.answer(space, at) {
            Ok(()) => {
                state.answered.fetch_add(1, Relaxed);
            }
            Err(_) => {
                state.refused.fetch_add(1, Relaxed);
            }
        },
        Reply::Error => req.fail(),
        Reply::Unanswered => drop(req),
    };
    while let Ok(msg) = rx.recv() {
        match msg {
            Msg::Request(req) => {
                *state.asked.lock().unwrap().entry(req.offset).or_insert(0) += 1;
                let held = {
                    let hold = state.hold.lock().unwrap();
                    hold.0 || hold.1.contains(&req.offset)
                };
                if held {
                    state.held.lock().unwrap().push(req);
                } else {
                    answer(&mut serve, req);
                }
            }
            Msg::Release => {
                let held = std::mem::take(&mut *state.held.lock().unwrap());
                for req in held {
                    answer(&mut serve, req);
                }
            }
            Msg::Die => break,
        }
    }
    // Dying: what was held goes unanswered.
    state.held.lock().unwrap().clear();
}
