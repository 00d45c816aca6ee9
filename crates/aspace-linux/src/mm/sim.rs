//! The aspace side of the differential test (feature `sim`): runs lines on a
//! [`LinuxMm`] over the simulated machine and answers each with the same
//! [`Response`] block the reference runner (`linux-ref`) gives, so
//! [`protocol::compare`](crate::protocol::compare) can check them step by
//! step.
//!
//! Its window and break are the runner's (from its [`Header`]): placement
//! without a hint goes top-down from the window's end, as on the runner.
//! `write` and `read` lines go through the simulated CPUs in turn (TLBs,
//! page-table walks, faults into the core), and so do the page digests of
//! resident pages; pages not resident read as their backing has them.
//! Like the runner, a call reaching outside the window (or the break's span)
//! is `refused`, and a placement that lands outside the window is unmapped
//! at once.

use super::{HolePolicy, Kind, Layout, LinuxMm};
use crate::call::Call;
use crate::command::{Command, Line, Outcome, Residency};
use crate::consts::PAGE_SIZE;
use crate::digest::page_digest;
use crate::errno::Errno;
use crate::protocol::{Header, Response, State};
use alloc::vec;
use alloc::vec::Vec;
use aspace::{PhysMemory, VirtAddr};
use aspace_sim::{Cpu, Sim, SimConfig, SimMachine};
use std::string::ToString;

fn round_up(len: u64) -> Option<u64> {
    len.checked_add(PAGE_SIZE - 1).map(|l| l & !(PAGE_SIZE - 1))
}

/// A [`LinuxMm`] on a simulated machine, driven line by line.
pub struct SimEngine {
    cpus: Vec<Cpu>,
    mm: LinuxMm<SimMachine>,
    sim: Sim,
    header: Header,
    /// Which CPU does the next access.
    turn: usize,
}

impl SimEngine {
    /// A machine of `cpus` CPUs and 64 MiB running one process laid out as
    /// the runner's `header` says, every CPU running it.
    pub fn new(header: &Header, cpus: usize) -> aspace::Result<SimEngine> {
        let sim = Sim::new(SimConfig {
            cpus,
            memory: 64 << 20,
            ..SimConfig::default()
        })?;
        let space = sim.system().create()?;
        let mut layout = Layout::new(header.window.1, header.brk_start);
        layout.brk_start = header.brk_start;
        let mut all = Vec::new();
        for id in 0..cpus {
            let mut cpu = sim.cpu(id);
            cpu.switch_to(&space)?;
            all.push(cpu);
        }
        let mut mm = LinuxMm::new(sim.system().clone(), space, layout);
        // The runner's RLIMIT_MEMLOCK, where it binds.
        let setting = |k: &str| header.sysctl.iter().find(|(n, _)| n == k).map(|(_, v)| v);
        if setting("memlock.unlimited").is_some_and(|v| v == "0") {
            let bytes = setting("memlock.bytes").and_then(|v| v.parse().ok());
            mm.set_memlock_limit(bytes);
        }
        // Its RLIMIT_STACK, for stacks that grow.
        match setting("stack.bytes").map(|v| v.as_str()) {
            Some("unlimited") => mm.set_stack_limit(None),
            Some(v) => {
                if let Ok(bytes) = v.parse() {
                    mm.set_stack_limit(Some(bytes));
                }
            }
            None => {}
        }
        // The runner's guard page above the window (a shared mapping: it
        // merges with nothing), so nothing grows out of the window.
        let guard = Call::Mmap {
            addr: header.window.1,
            len: PAGE_SIZE,
            prot: crate::prot::Prot::NONE,
            flags: crate::flags::MapFlags(
                crate::consts::MAP_SHARED
                    | crate::consts::MAP_ANONYMOUS
                    | crate::consts::MAP_FIXED_NOREPLACE,
            ),
            file: None,
            offset: 0,
        };
        if mm.call(&guard).is_err() {
            return Err(aspace::Error::AddressNotAvailable);
        }
        if header.brk_now != header.brk_start {
            mm.brk(header.brk_now);
        }
        Ok(SimEngine {
            cpus: all,
            mm,
            sim,
            header: header.clone(),
            turn: 0,
        })
    }

    /// The process map.
    pub fn mm(&mut self) -> &mut LinuxMm<SimMachine> {
        &mut self.mm
    }

    /// The simulated machine.
    pub fn sim(&self) -> &Sim {
        &self.sim
    }

    /// Whether `[addr, addr + len)` lies in the window (an unaligned `addr`
    /// passes: the call refuses it itself), as the runner decides.
    fn in_window(&self, addr: u64, len: u64) -> bool {
        let (lo, hi) = self.header.window;
        // An unaligned address counts from its page, as `mlock` takes it
        // (the calls that refuse one refuse it on both sides anyway).
        let offset = addr % PAGE_SIZE;
        let (addr, len) = (addr - offset, len.saturating_add(offset));
        match round_up(len).and_then(|l| addr.checked_add(l)) {
            Some(end) => addr >= lo && end <= hi,
            None => false,
        }
    }

    /// Unmaps a placement outside the window, as the runner does.
    fn evict_outside(&mut self, addr: u64, len: u64) {
        if !self.in_window(addr, len) {
            if let Some(len) = round_up(len) {
                let _ = self.mm.munmap(addr, len);
            }
        }
    }

    fn refused(&self, call: &Call) -> bool {
        match call {
            Call::Mmap {
                addr, len, flags, ..
            } => flags.fixed() && *len != 0 && !self.in_window(*addr, *len),
            Call::Munmap { addr, len }
            | Call::Mprotect { addr, len, .. }
            | Call::Madvise { addr, len, .. }
            | Call::Msync { addr, len, .. }
            | Call::Mlock { addr, len, .. }
            | Call::Munlock { addr, len } => *len != 0 && !self.in_window(*addr, *len),
            Call::Mremap {
                old_addr,
                old_len,
                new_len,
                flags,
                new_addr,
            } => {
                !self.in_window(*old_addr, (*old_len).max(1))
                    || (flags.fixed() && !self.in_window(*new_addr, *new_len))
            }
            Call::Brk { addr } => *addr >= self.header.brk_span.1,
            Call::Mlockall { .. } | Call::Munlockall => false,
            Call::Mincore { addr, len } | Call::Mseal { addr, len, .. } => {
                *len != 0 && !self.in_window(*addr, *len)
            }
        }
    }

    fn call(&mut self, call: &Call) -> Outcome {
        if self.refused(call) {
            return Outcome::Refused;
        }
        let cpu = &self.cpus[0];
        let mm = &mut self.mm;
        if let Call::Mincore { addr, len } = *call {
            let mut answer = Residency::new();
            let r = cpu.run(|| mm.mincore_each(addr, len, |_, resident| answer.push(resident)));
            return match r {
                Ok(()) => Outcome::Resident(answer),
                Err(e) => Outcome::Err(e),
            };
        }
        let r = cpu.run(|| mm.call(call));
        match r {
            Err(e) => Outcome::Err(e),
            Ok(v) if call.returns_addr() => {
                match call {
                    Call::Mmap { len, .. } => self.evict_outside(v, *len),
                    Call::Mremap { new_len, .. } => self.evict_outside(v, *new_len),
                    _ => {}
                }
                Outcome::Addr(v)
            }
            Ok(_) => Outcome::Ok,
        }
    }

    fn access(&mut self, addr: u64, write: Option<u8>) -> Outcome {
        if self.mm.vma_at(addr).is_none() && !self.grow_stack(addr) {
            return Outcome::Fault;
        }
        let Some(v) = self.mm.vma_at(addr) else {
            return Outcome::Fault;
        };
        let (lo, hi) = self.header.window;
        let allowed = if write.is_some() {
            v.prot.write()
        } else {
            v.prot.read()
        };
        let page = addr & !(PAGE_SIZE - 1);
        if !allowed || addr < lo || addr >= hi || LinuxMm::<SimMachine>::past_end(v, page) {
            return Outcome::Fault;
        }
        let n = self.cpus.len();
        self.turn = (self.turn + 1) % n;
        let cpu = &mut self.cpus[self.turn];
        let at = VirtAddr::new(addr);
        match write {
            Some(byte) => {
                // A private file page's first write is copied by the core.
                match cpu.write(at, &[byte]) {
                    Ok(()) => {
                        self.mm.touched(addr, true);
                        Outcome::Ok
                    }
                    Err(_) => Outcome::Fault,
                }
            }
            None => {
                let mut b = [0u8];
                match cpu.read(at, &mut b) {
                    Ok(()) => Outcome::Byte(b[0]),
                    Err(_) => Outcome::Fault,
                }
            }
        }
    }

    /// The runner's rule for an access that no mapping holds: only below a
    /// readable `MAP_GROWSDOWN` mapping, at least `stack_guard_gap` above
    /// the window's start, is the stack asked to grow (as a kernel's fault
    /// handler asks, [`LinuxMm::expand_stack`]), then the byte read as the
    /// runner's probe reads it; whether it grew.
    fn grow_stack(&mut self, addr: u64) -> bool {
        let (lo, hi) = self.header.window;
        if addr < lo + super::STACK_GUARD_GAP || addr >= hi {
            return false;
        }
        let above = self.mm.vmas().find(|v| v.start > addr);
        if !above.is_some_and(|v| v.growsdown && v.prot.read()) {
            return false;
        }
        let mm = &mut self.mm;
        if self.cpus[0].run(|| mm.expand_stack(addr)).is_err() {
            return false;
        }
        // The runner's probe reads the byte (the page resident after it,
        // whatever the access then does): so does this side.
        let _ = self.cpus[0].read(VirtAddr::new(addr), &mut [0u8]);
        true
    }

    /// Executes one line and observes the state after it. A call the layer
    /// could not do would answer `err ENOSYS` and change nothing (none
    /// does now; see [`LinuxMm`]).
    pub fn run(&mut self, line: &Line) -> Response {
        self.mm.set_hole_policy(if line.refuse_holes {
            HolePolicy::Refuse
        } else {
            HolePolicy::Linux
        });
        let outcome = match &line.command {
            Command::Call(call) => self.call(call),
            Command::Write { addr, byte } => self.access(*addr, Some(*byte)),
            Command::Read { addr } => self.access(*addr, None),
        };
        let expect_failed = line.expect.filter(|e| !e.matches(outcome));
        Response {
            command: line.command.to_string(),
            outcome,
            expect_failed,
            state: self.state(),
        }
    }

    /// The contents of one readable page of the window.
    fn page(&mut self, page: u64) -> Vec<u8> {
        let mut buf = vec![0u8; PAGE_SIZE as usize];
        let space = self.mm.space().clone();
        let at = VirtAddr::new(page);
        if space.translate(at.page()).is_some() {
            let n = self.cpus.len();
            self.turn = (self.turn + 1) % n;
            if self.cpus[self.turn].read(at, &mut buf).is_ok() {
                return buf;
            }
        }
        // Not resident: what the backing holds.
        if let Some(v) = self.mm.vma_at(page) {
            if let Kind::Object { object, .. } = &v.kind {
                if let Some(f) = object.peek(v.first + (page - v.start) / PAGE_SIZE) {
                    self.sim.hardware().memory().read(f.start(), &mut buf);
                }
            }
        }
        buf
    }

    /// The maps meeting the window or the break's span, the digests of
    /// their readable pages that are not all zeros and the ranges past
    /// their objects' ends. Only pages that can hold data are read: those
    /// the core maps (its used space) and those whose object has a frame.
    pub fn state(&mut self) -> State {
        let ranges = [self.header.window, self.header.brk_span];
        let mut state = State::default();
        let mut candidates: Vec<u64> = Vec::new();
        let space = self.mm.space().clone();
        for v in self.mm.vmas() {
            let mut meets = false;
            for &(lo, hi) in &ranges {
                let (a, b) = (v.start.max(lo), v.end.min(hi));
                if a >= b {
                    continue;
                }
                meets = true;
                if !v.prot.read() {
                    continue;
                }
                // Past the object's end: bus ranges.
                let valid_end = match v.object() {
                    Some(o) => {
                        let end = v.start + o.pages().saturating_sub(v.first) * PAGE_SIZE;
                        end.clamp(a, b)
                    }
                    None => b,
                };
                if valid_end < b {
                    match state.bus.last_mut() {
                        Some(last) if last.1 == valid_end => last.1 = b,
                        _ => state.bus.push((valid_end, b)),
                    }
                }
                let mut at = a;
                while at < valid_end {
                    let Some(used) = space.used_space(VirtAddr::new(at)) else {
                        break;
                    };
                    let info = space.area(VirtAddr::new(at)).expect("an area");
                    for p in used.iter_pages() {
                        let p = p.start().as_u64();
                        if p >= at && p < valid_end {
                            candidates.push(p);
                        }
                    }
                    at = info.end().as_u64();
                }
                if let Some(o) = v.object() {
                    let first = v.first + (a - v.start) / PAGE_SIZE;
                    let last = v.first + (valid_end - v.start) / PAGE_SIZE;
                    for i in o.indices_in(first, last) {
                        candidates.push(v.start + (i - v.first) * PAGE_SIZE);
                    }
                }
            }
            if meets {
                state
                    .maps
                    .push(v.key().to_line(v.object().map_or(0, |o| o.id())));
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        for page in candidates {
            // A guard page faults: Linux's runner does not read it either.
            if self.mm.is_guard(page) {
                continue;
            }
            let bytes = self.page(page);
            if bytes.iter().any(|&b| b != 0) {
                state.pages.push((page, page_digest(&bytes)));
            }
        }
        state.bus.sort_unstable();
        state
    }
}

/// Whether an outcome means "the layer cannot do this yet" (nothing
/// changed): the differential test skips such lines on both sides.
pub fn unsupported(outcome: Outcome) -> bool {
    outcome == Outcome::Err(Errno::ENOSYS)
}
