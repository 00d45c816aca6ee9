//! The page-table suite, run for every format behind
//! `aspace::paging::PageTable` (x86_64, RISC-V Sv39 and Sv48, AArch64) on a
//! small test physical memory and a counting, reference-counting frame
//! allocator. The generic tests are written once against [`Format`], which
//! says what a format's tables look like (levels, the layout, how an
//! intermediate entry points down, which rights it can express); each
//! format then adds tests of its own entry bits.

use aspace::paging::aarch64::Aarch64PageTable;
use aspace::paging::riscv64::{RiscvMode, RiscvPageTable};
use aspace::paging::x86_64::X86_64PageTable;
use aspace::paging::{Layout, PageTable, Unmapped};
use aspace::{Error, Frame, FrameAllocator, Page, PageFlags, PhysAddr, PhysMemory, VirtAddr};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

// ---------------------------------------------------------------------------
// Test machine: physical memory and frame allocator
// ---------------------------------------------------------------------------

const PAGE: u64 = 4096;
/// Physical memory size: 4 MiB (1024 frames).
const MEM_BYTES: usize = 4 << 20;
/// Frames below this are never handed out (room for "data" frames that
/// mappings point at).
const FIRST_ALLOC_FRAME: u64 = 16;

/// Byte-addressed physical memory of a few MiB.
struct TestMemory {
    bytes: Mutex<Vec<u8>>,
}

impl TestMemory {
    fn new() -> Self {
        Self {
            bytes: Mutex::new(vec![0; MEM_BYTES]),
        }
    }

    fn range(addr: PhysAddr, len: usize) -> std::ops::Range<usize> {
        let start = usize::try_from(addr.as_u64()).unwrap();
        assert!(
            start + len <= MEM_BYTES,
            "physical access at {addr:?}+{len:#x} outside the test memory"
        );
        start..start + len
    }
}

// SAFETY: a test memory of its own, reached by index (out of range
// panics), words accessed atomically.
unsafe impl PhysMemory for TestMemory {
    fn read(&self, addr: PhysAddr, buf: &mut [u8]) {
        let mem = self.bytes.lock().unwrap();
        buf.copy_from_slice(&mem[Self::range(addr, buf.len())]);
    }

    fn write(&self, addr: PhysAddr, data: &[u8]) {
        let mut mem = self.bytes.lock().unwrap();
        mem[Self::range(addr, data.len())].copy_from_slice(data);
    }

    fn read_u64(&self, addr: PhysAddr) -> u64 {
        assert_eq!(addr.as_u64() % 8, 0, "unaligned read_u64 at {addr:?}");
        let mut b = [0u8; 8];
        self.read(addr, &mut b);
        u64::from_le_bytes(b)
    }

    fn write_u64(&self, addr: PhysAddr, value: u64) {
        assert_eq!(addr.as_u64() % 8, 0, "unaligned write_u64 at {addr:?}");
        self.write(addr, &value.to_le_bytes());
    }

    fn compare_exchange_u64(&self, addr: PhysAddr, current: u64, new: u64) -> Result<u64, u64> {
        assert_eq!(
            addr.as_u64() % 8,
            0,
            "unaligned compare_exchange_u64 at {addr:?}"
        );
        let mut mem = self.bytes.lock().unwrap();
        let word = &mut mem[Self::range(addr, 8)];
        let found = u64::from_le_bytes(word.try_into().unwrap());
        if found != current {
            return Err(found);
        }
        word.copy_from_slice(&new.to_le_bytes());
        Ok(found)
    }
}

#[derive(Default)]
struct AllocState {
    /// Reference count of every allocated frame.
    refs: BTreeMap<u64, u32>,
    /// Allocations still allowed (`None`: only limited by memory size).
    budget: Option<u64>,
    /// Total successful allocations.
    allocs: u64,
    /// Total frames freed.
    frees: u64,
}

/// A frame allocator over the test memory that counts frames in use and
/// keeps per-frame reference counts. Freshly allocated frames are filled
/// with garbage, since the trait leaves their contents unspecified.
struct CountingFrames {
    mem: Arc<TestMemory>,
    state: Mutex<AllocState>,
}

impl CountingFrames {
    fn new(mem: Arc<TestMemory>) -> Self {
        Self {
            mem,
            state: Mutex::new(AllocState::default()),
        }
    }

    /// Frames currently allocated.
    fn in_use(&self) -> u64 {
        self.state.lock().unwrap().refs.len() as u64
    }

    /// The allocated frames, ascending.
    fn allocated(&self) -> Vec<Frame> {
        self.state
            .lock()
            .unwrap()
            .refs
            .keys()
            .map(|&n| Frame::from_number(n))
            .collect()
    }

    fn refcount(&self, frame: Frame) -> u32 {
        self.state
            .lock()
            .unwrap()
            .refs
            .get(&frame.number())
            .copied()
            .unwrap_or(0)
    }

    /// Allows only `n` more allocations.
    fn set_budget(&self, n: u64) {
        self.state.lock().unwrap().budget = Some(n);
    }

    /// Lifts the allocation limit.
    fn unlimited(&self) {
        self.state.lock().unwrap().budget = None;
    }

    fn counters(&self) -> (u64, u64) {
        let s = self.state.lock().unwrap();
        (s.allocs, s.frees)
    }
}

// SAFETY: hands out frames of the test memory only, each once until its
// last reference is released.
unsafe impl FrameAllocator for CountingFrames {
    fn alloc(&self) -> Option<Frame> {
        let frame = {
            let mut s = self.state.lock().unwrap();
            if s.budget == Some(0) {
                return None;
            }
            let n =
                (FIRST_ALLOC_FRAME..MEM_BYTES as u64 / PAGE).find(|n| !s.refs.contains_key(n))?;
            s.refs.insert(n, 1);
            s.allocs += 1;
            if let Some(b) = s.budget.as_mut() {
                *b -= 1;
            }
            Frame::from_number(n)
        };
        // Unspecified contents: make sure nobody relies on zeroed frames.
        self.mem.write(frame.start(), &[0xa5; PAGE as usize]);
        Some(frame)
    }

    fn add_ref(&self, frame: Frame) {
        let mut s = self.state.lock().unwrap();
        let r = s
            .refs
            .get_mut(&frame.number())
            .unwrap_or_else(|| panic!("add_ref of free frame {frame:?}"));
        *r += 1;
    }

    fn release(&self, frame: Frame) -> bool {
        let mut s = self.state.lock().unwrap();
        let r = s
            .refs
            .get_mut(&frame.number())
            .unwrap_or_else(|| panic!("release of free frame {frame:?} (double free?)"));
        *r -= 1;
        if *r == 0 {
            s.refs.remove(&frame.number());
            s.frees += 1;
            true
        } else {
            false
        }
    }
}

// ---------------------------------------------------------------------------
// Formats
// ---------------------------------------------------------------------------

/// What the generic tests need to know of a format.
trait Format: 'static {
    /// The table type.
    type Table: PageTable;
    /// The mode its tables are created in.
    fn mode() -> <Self::Table as PageTable>::Mode;
    /// Levels of a walk (root first).
    const LEVELS: u32;
    /// Root slots a user table shares with the kernel's (empty when the
    /// kernel half has a table register of its own).
    const SHARED_ROOT: std::ops::Range<u64>;
    /// Whether an intermediate entry points to a table.
    fn is_table(e: u64) -> bool;
    /// The table an intermediate entry points to.
    fn next_table(e: u64) -> Frame;
    /// What `translate` gives back for a page mapped with `flags`.
    fn expect(flags: PageFlags) -> PageFlags;
    /// The message of `map`'s debug assertion on a mapped entry.
    const MAP_OVER: &'static str;
}

/// The format's user/kernel split.
fn layout<F: Format>() -> Layout {
    F::Table::layout(F::mode())
}

struct X86;
impl Format for X86 {
    type Table = X86_64PageTable;
    fn mode() {}
    const LEVELS: u32 = 4;
    const SHARED_ROOT: std::ops::Range<u64> = 256..512;
    fn is_table(e: u64) -> bool {
        e & P != 0
    }
    fn next_table(e: u64) -> Frame {
        Frame::from_number((e & ADDR) / PAGE)
    }
    fn expect(flags: PageFlags) -> PageFlags {
        let rights = PageFlags::READ | PageFlags::WRITE | PageFlags::EXEC;
        if flags.intersects(rights) {
            // x86 cannot deny reads of a present page.
            flags | PageFlags::PRESENT | PageFlags::READ
        } else {
            // No right at all: kept not present (PTE_SW_MAPPED), so it
            // faults; the global bit is not kept for it.
            (flags - PageFlags::GLOBAL) | PageFlags::PRESENT
        }
    }
    const MAP_OVER: &'static str = "map over a mapped entry";
}

struct Sv39;
struct Sv48;
macro_rules! riscv_format {
    ($t:ty, $mode:expr, $levels:expr) => {
        impl Format for $t {
            type Table = RiscvPageTable;
            fn mode() -> RiscvMode {
                $mode
            }
            const LEVELS: u32 = $levels;
            const SHARED_ROOT: std::ops::Range<u64> = 256..512;
            fn is_table(e: u64) -> bool {
                e & 0xf == 1
            }
            fn next_table(e: u64) -> Frame {
                Frame::from_number((e >> 10) & ((1 << 44) - 1))
            }
            fn expect(flags: PageFlags) -> PageFlags {
                let mut f = flags | PageFlags::PRESENT;
                // Write without read is reserved: write-only maps R+W.
                if f.contains(PageFlags::WRITE) {
                    f |= PageFlags::READ;
                }
                f
            }
            const MAP_OVER: &'static str = "map over a mapped entry";
        }
    };
}
riscv_format!(Sv39, RiscvMode::Sv39, 3);
riscv_format!(Sv48, RiscvMode::Sv48, 4);

struct Arm;
impl Format for Arm {
    type Table = Aarch64PageTable;
    fn mode() {}
    const LEVELS: u32 = 4;
    const SHARED_ROOT: std::ops::Range<u64> = 0..0;
    fn is_table(e: u64) -> bool {
        e & 0b11 == 0b11
    }
    fn next_table(e: u64) -> Frame {
        Frame::from_number((e & 0x0000_ffff_ffff_f000) >> 12)
    }
    fn expect(flags: PageFlags) -> PageFlags {
        let mut f = flags | PageFlags::PRESENT;
        if !f.intersects(PageFlags::READ | PageFlags::WRITE | PageFlags::EXEC) {
            return f;
        }
        // EL0 cannot write without reading; EL1 always reads.
        if f.contains(PageFlags::WRITE) || !f.contains(PageFlags::USER) {
            f |= PageFlags::READ;
        }
        f
    }
    const MAP_OVER: &'static str = "map over a mapped entry";
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// x86_64 entry bits (for the x86_64-only tests).
const P: u64 = 1 << 0;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const PCD: u64 = 1 << 4;
const G: u64 = 1 << 8;
const NX: u64 = 1 << 63;
const ADDR: u64 = 0x000f_ffff_ffff_f000;

/// The highest page of the address space (in the kernel half).
const TOP_PAGE: u64 = 0xffff_ffff_ffff_f000;

fn page(addr: u64) -> Page {
    Page::from_start(VirtAddr::new(addr)).expect("page-aligned address")
}

/// A frame that mappings point at; it need not exist in the test memory
/// since the page table never touches it.
fn data_frame(n: u64) -> Frame {
    Frame::from_number(0x10_0000 + n)
}

fn rw_user() -> PageFlags {
    PageFlags::READ | PageFlags::WRITE | PageFlags::USER | PageFlags::CACHEABLE
}

/// Bytes one entry of a level-`l` table covers (`l` = 1: a page); one
/// level-`l` table covers `span(l + 1)`.
const fn span(l: u32) -> u64 {
    1 << (12 + 9 * (l - 1))
}

/// The highest user page.
fn top_user<F: Format>() -> u64 {
    layout::<F>().user_end - PAGE
}

/// The first page of the next root slot's range: a new root slot.
fn second_root_slot<F: Format>() -> u64 {
    span(F::LEVELS)
}

/// Table indices of a virtual address, root first.
fn indices<F: Format>(addr: u64) -> Vec<u64> {
    (1..=F::LEVELS)
        .rev()
        .map(|l| (addr >> (12 + 9 * (l - 1))) & 511)
        .collect()
}

fn entry(mem: &TestMemory, table: Frame, index: u64) -> u64 {
    mem.read_u64(PhysAddr::new(table.number() * PAGE + index * 8))
}

/// Walks the levels by hand; returns the entries met on the way, stopping
/// at the first intermediate one that is no table.
fn walk<F: Format>(mem: &TestMemory, root: Frame, addr: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut table = root;
    let levels = indices::<F>(addr);
    for (level, &idx) in levels.iter().enumerate() {
        let e = entry(mem, table, idx);
        out.push(e);
        if level + 1 == levels.len() || !F::is_table(e) {
            break;
        }
        table = F::next_table(e);
    }
    out
}

/// The leaf entry for `addr`, asserting every intermediate level is a
/// table.
fn leaf_entry<F: Format>(mem: &TestMemory, root: Frame, addr: u64) -> u64 {
    let w = walk::<F>(mem, root, addr);
    assert_eq!(
        w.len(),
        F::LEVELS as usize,
        "walk of {addr:#x} stopped early: {w:x?}"
    );
    w[w.len() - 1]
}

/// Number of tables below the root the paths to `addrs` need.
fn path_tables<F: Format>(addrs: &[u64]) -> u64 {
    let mut prefixes = std::collections::BTreeSet::new();
    for &a in addrs {
        let idx = indices::<F>(a);
        for len in 1..F::LEVELS as usize {
            prefixes.insert(idx[..len].to_vec());
        }
    }
    prefixes.len() as u64
}

/// Memory, allocator and shorthands for the table operations.
struct TestMachine<F> {
    mem: Arc<TestMemory>,
    frames: CountingFrames,
    _format: std::marker::PhantomData<fn() -> F>,
}

fn machine<F: Format>() -> TestMachine<F> {
    let mem = Arc::new(TestMemory::new());
    TestMachine {
        frames: CountingFrames::new(mem.clone()),
        mem,
        _format: std::marker::PhantomData,
    }
}

impl<F: Format> TestMachine<F> {
    /// A kernel table (created with no kernel table to share).
    fn kernel_table(&self) -> F::Table {
        F::Table::create(&*self.mem, &self.frames, None, F::mode()).expect("create")
    }

    /// A table for user addresses, alone in this machine's memory. Where
    /// root slots are shared that is a kernel table (which maps both
    /// halves); where the user half has a table of its own (AArch64's
    /// `TTBR0_EL1`), a user table, created beside a kernel table in
    /// another memory, since creating it reads nothing of the kernel's.
    fn table(&self) -> F::Table {
        if F::SHARED_ROOT.is_empty() {
            let other = machine::<F>();
            let k = other.kernel_table();
            let t = F::Table::create(&*self.mem, &self.frames, Some(&k), F::mode())
                .expect("create user");
            other.destroy(k);
            t
        } else {
            self.kernel_table()
        }
    }

    fn user_table(&self, kernel: &F::Table) -> F::Table {
        F::Table::create(&*self.mem, &self.frames, Some(kernel), F::mode()).expect("create user")
    }

    fn map(&self, pt: &F::Table, addr: u64, frame: Frame, flags: PageFlags) {
        pt.map(&*self.mem, &self.frames, page(addr), frame, flags)
            .unwrap_or_else(|e| panic!("map {addr:#x}: {e:?}"));
    }

    fn try_map(
        &self,
        pt: &F::Table,
        addr: u64,
        frame: Frame,
        flags: PageFlags,
    ) -> aspace::Result<()> {
        pt.map(&*self.mem, &self.frames, page(addr), frame, flags)
    }

    fn translate(&self, pt: &F::Table, addr: u64) -> Option<(Frame, PageFlags)> {
        pt.translate(&*self.mem, page(addr))
    }

    fn unmap(&self, pt: &F::Table, addr: u64) -> Option<Unmapped> {
        pt.unmap(&*self.mem, page(addr))
    }

    /// Unmaps a page that must be mapped; returns the frame it mapped.
    fn unmap_mapped(&self, pt: &F::Table, addr: u64) -> Frame {
        let u = self
            .unmap(pt, addr)
            .unwrap_or_else(|| panic!("{addr:#x} was not mapped"));
        assert_eq!(u.page(), page(addr));
        u.frame()
    }

    fn destroy(&self, pt: F::Table) {
        pt.destroy(&*self.mem, &self.frames);
    }
}

// ---------------------------------------------------------------------------
// The generic suite
// ---------------------------------------------------------------------------

/// Tests every format passes; each runs once per format through
/// [`suite!`].
mod generic {
    use super::*;

    pub fn create_allocates_one_zeroed_root<F: Format>() {
        let m = machine::<F>();
        let pt = m.table();
        assert_eq!(pt.table_frames(), 1);
        assert_eq!(m.frames.in_use(), 1);
        assert_eq!(m.frames.allocated(), vec![pt.root()]);
        // The allocator hands out garbage; the root must have been zeroed.
        for i in 0..512 {
            assert_eq!(entry(&m.mem, pt.root(), i), 0, "root[{i}] not zero");
        }
        m.destroy(pt);
        assert_eq!(m.frames.in_use(), 0);
    }

    pub fn create_fails_with_no_memory_when_allocator_is_exhausted<F: Format>() {
        let m = machine::<F>();
        m.frames.set_budget(0);
        let r = F::Table::create(&*m.mem, &m.frames, None, F::mode());
        assert!(matches!(r, Err(Error::NoMemory)));
        assert_eq!(m.frames.in_use(), 0);
    }

    pub fn empty_table_translates_nothing<F: Format>() {
        let m = machine::<F>();
        let pt = m.table();
        let k = layout::<F>().kernel_start;
        for addr in [0, PAGE, 0x40_0000, top_user::<F>(), k, TOP_PAGE] {
            assert_eq!(m.translate(&pt, addr), None, "{addr:#x}");
        }
        m.destroy(pt);
    }

    pub fn map_then_translate_gives_frame_and_flags_back<F: Format>() {
        let m = machine::<F>();
        let pt = m.table();
        m.map(&pt, 0x40_0000, data_frame(7), rw_user());
        assert_eq!(
            m.translate(&pt, 0x40_0000),
            Some((data_frame(7), rw_user() | PageFlags::PRESENT))
        );
        assert_eq!(m.translate(&pt, 0x40_0000 - PAGE), None);
        assert_eq!(m.translate(&pt, 0x40_0000 + PAGE), None);
        m.unmap_mapped(&pt, 0x40_0000);
        m.destroy(pt);
        assert_eq!(m.frames.in_use(), 0);
    }

    /// Every combination of rights, user and kernel pages alike (in the
    /// half they belong to), comes back as the format can express it.
    pub fn flags_round_trip_for_every_combination<F: Format>() {
        let m = machine::<F>();
        let k = m.kernel_table();
        let u = m.user_table(&k);
        let bits = [
            PageFlags::READ,
            PageFlags::WRITE,
            PageFlags::EXEC,
            PageFlags::USER,
            PageFlags::CACHEABLE,
            PageFlags::GLOBAL,
        ];
        // User pages in a user table, kernel pages in the kernel's.
        let place = |combo: u64, flags: PageFlags| {
            if flags.contains(PageFlags::USER) {
                (&u, 0x1000_0000 + combo * PAGE)
            } else {
                (&k, layout::<F>().kernel_start + 0x1000_0000 + combo * PAGE)
            }
        };
        let combos: Vec<PageFlags> = (0u64..(1 << bits.len()))
            .map(|combo| {
                bits.iter()
                    .enumerate()
                    .filter(|(i, _)| combo & (1 << i) != 0)
                    .fold(PageFlags::empty(), |f, (_, &b)| f | b)
            })
            .collect();
        for (combo, &flags) in combos.iter().enumerate() {
            let (pt, addr) = place(combo as u64, flags);
            m.map(pt, addr, data_frame(combo as u64), flags);
            assert_eq!(
                m.translate(pt, addr),
                Some((data_frame(combo as u64), F::expect(flags))),
                "flags {flags:?}"
            );
        }
        for (combo, &flags) in combos.iter().enumerate() {
            let (pt, addr) = place(combo as u64, flags);
            assert_eq!(m.unmap(pt, addr).unwrap().frame(), data_frame(combo as u64));
            assert_eq!(m.translate(pt, addr), None);
        }
        m.destroy(u);
        m.destroy(k);
        assert_eq!(m.frames.in_use(), 0);
    }

    pub fn intermediate_entries_point_at_allocated_tables<F: Format>() {
        let m = machine::<F>();
        let pt = m.table();
        let addr = (0x1234_5678_9000 % layout::<F>().user_end) & !(PAGE - 1);
        m.map(&pt, addr, data_frame(0), rw_user());
        let w = walk::<F>(&m.mem, pt.root(), addr);
        let levels = F::LEVELS as usize;
        assert_eq!(w.len(), levels);
        let mut tables: Vec<Frame> = vec![pt.root()];
        tables.extend(w[..levels - 1].iter().map(|&e| F::next_table(e)));
        tables.sort();
        assert_eq!(tables, m.frames.allocated());
        // Every entry of the new tables off the path is empty (they were
        // zeroed although the allocator filled them with garbage).
        let idx = indices::<F>(addr);
        let mut table = pt.root();
        for level in 0..levels {
            for i in 0..512 {
                if i != idx[level] {
                    assert_eq!(entry(&m.mem, table, i), 0, "level {level} slot {i}");
                }
            }
            if level + 1 < levels {
                table = F::next_table(w[level]);
            }
        }
        m.unmap_mapped(&pt, addr);
        m.destroy(pt);
    }

    pub fn frame_zero_can_be_mapped<F: Format>() {
        let m = machine::<F>();
        let pt = m.table();
        let f0 = Frame::from_number(0);
        m.map(&pt, PAGE, f0, PageFlags::READ | PageFlags::USER);
        assert_eq!(m.translate(&pt, PAGE).map(|(f, _)| f), Some(f0));
        assert_eq!(m.unmap(&pt, PAGE).unwrap(), Unmapped::new(page(PAGE), f0));
        m.destroy(pt);
    }

    pub fn page_one_maps_translates_and_unmaps<F: Format>() {
        let m = machine::<F>();
        let pt = m.table();
        m.map(&pt, PAGE, data_frame(1), rw_user());
        let mut want = vec![0; F::LEVELS as usize];
        *want.last_mut().unwrap() = 1;
        assert_eq!(indices::<F>(PAGE), want);
        assert_ne!(leaf_entry::<F>(&m.mem, pt.root(), PAGE), 0);
        assert_eq!(m.translate(&pt, 0), None, "page 0 must stay unmapped");
        assert_eq!(
            m.translate(&pt, PAGE),
            Some((data_frame(1), rw_user() | PageFlags::PRESENT))
        );
        let u = m.unmap(&pt, PAGE).unwrap();
        assert_eq!(u, Unmapped::new(page(PAGE), data_frame(1)));
        assert_eq!(m.translate(&pt, PAGE), None);
        m.destroy(pt);
        assert_eq!(m.frames.in_use(), 0);
    }

    pub fn highest_user_page_maps_translates_and_unmaps<F: Format>() {
        let m = machine::<F>();
        let pt = m.table();
        let top = top_user::<F>();
        let idx = indices::<F>(top);
        assert!(idx[1..].iter().all(|&i| i == 511), "{idx:?}");
        m.map(&pt, top, data_frame(2), rw_user());
        assert_eq!(
            m.translate(&pt, top),
            Some((data_frame(2), rw_user() | PageFlags::PRESENT))
        );
        // Nothing leaked into the kernel half.
        for i in F::SHARED_ROOT {
            assert_eq!(entry(&m.mem, pt.root(), i), 0);
        }
        assert_eq!(pt.table_frames(), u64::from(F::LEVELS));
        assert_eq!(m.translate(&pt, top - PAGE), None);
        let u = m.unmap(&pt, top).unwrap();
        assert_eq!((u.page(), u.frame()), (page(top), data_frame(2)));
        assert_eq!(m.translate(&pt, top), None);
        m.destroy(pt);
        assert_eq!(m.frames.in_use(), 0);
    }

    pub fn page_one_and_highest_user_page_coexist<F: Format>() {
        let m = machine::<F>();
        let pt = m.table();
        let top = top_user::<F>();
        m.map(&pt, PAGE, data_frame(1), rw_user());
        m.map(&pt, top, data_frame(2), PageFlags::READ | PageFlags::USER);
        // Two disjoint paths below the root.
        let expect = 1 + 2 * u64::from(F::LEVELS - 1);
        assert_eq!(pt.table_frames(), expect);
        assert_eq!(m.frames.in_use(), expect);
        assert_eq!(m.translate(&pt, PAGE).unwrap().0, data_frame(1));
        assert_eq!(m.translate(&pt, top).unwrap().0, data_frame(2));
        m.unmap_mapped(&pt, PAGE);
        assert_eq!(m.translate(&pt, top).unwrap().0, data_frame(2));
        m.unmap_mapped(&pt, top);
        m.destroy(pt);
        assert_eq!(m.frames.in_use(), 0);
    }

    pub fn full_leaf_table_of_mappings<F: Format>() {
        let m = machine::<F>();
        let pt = m.table();
        let base = 0x60_0000; // 2 MiB aligned: one whole leaf table
        for i in 0..512 {
            m.map(&pt, base + i * PAGE, data_frame(i), rw_user());
        }
        assert_eq!(pt.table_frames(), u64::from(F::LEVELS));
        for i in 0..512 {
            assert_eq!(
                m.translate(&pt, base + i * PAGE),
                Some((data_frame(i), rw_user() | PageFlags::PRESENT))
            );
        }
        assert_eq!(m.translate(&pt, base + 512 * PAGE), None);
        assert_eq!(m.translate(&pt, base - PAGE), None);
        for i in (0..512).rev() {
            assert_eq!(
                m.unmap(&pt, base + i * PAGE),
                Some(Unmapped::new(page(base + i * PAGE), data_frame(i)))
            );
        }
        m.destroy(pt);
        assert_eq!(m.frames.in_use(), 0);
    }

    pub fn same_frame_mapped_at_two_pages<F: Format>() {
        let m = machine::<F>();
        let pt = m.table();
        let ro = PageFlags::READ | PageFlags::USER;
        m.map(&pt, PAGE, data_frame(9), ro);
        m.map(&pt, 0x7000_0000, data_frame(9), ro | PageFlags::WRITE);
        assert_eq!(m.translate(&pt, PAGE).unwrap().0, data_frame(9));
        assert_eq!(m.translate(&pt, 0x7000_0000).unwrap().0, data_frame(9));
        assert_eq!(m.unmap(&pt, PAGE).unwrap().frame(), data_frame(9));
        assert_eq!(
            m.translate(&pt, 0x7000_0000),
            Some((data_frame(9), F::expect(ro | PageFlags::WRITE)))
        );
        m.unmap_mapped(&pt, 0x7000_0000);
        m.destroy(pt);
    }

    pub fn map_after_unmap_reuses_the_entry<F: Format>() {
        let m = machine::<F>();
        let pt = m.table();
        m.map(&pt, PAGE, data_frame(1), PageFlags::READ | PageFlags::USER);
        m.unmap_mapped(&pt, PAGE);
        m.map(&pt, PAGE, data_frame(2), rw_user());
        assert_eq!(
            m.translate(&pt, PAGE),
            Some((data_frame(2), rw_user() | PageFlags::PRESENT))
        );
        assert_eq!(pt.table_frames(), u64::from(F::LEVELS));
        m.unmap_mapped(&pt, PAGE);
        m.destroy(pt);
        assert_eq!(m.frames.in_use(), 0);
    }

    /// `map` requires an unmapped page; replacing a translation would need
    /// a TLB flush (and on AArch64 break-before-make) the caller does not
    /// do.
    pub fn map_over_present_entry_panics_in_debug_builds<F: Format>() {
        let m = machine::<F>();
        let pt = m.table();
        m.map(&pt, PAGE, data_frame(1), rw_user());
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = m.try_map(&pt, PAGE, data_frame(2), rw_user());
        }));
        let err = r.expect_err("map over a mapped page did not panic");
        let msg = err
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        assert!(msg.contains(F::MAP_OVER), "{msg}");
    }

    pub fn unmap_returns_unmapped_and_translate_then_gives_none<F: Format>() {
        let m = machine::<F>();
        let pt = m.table();
        let addr = 0x3f_1234_5000 % layout::<F>().user_end;
        m.map(&pt, addr, data_frame(42), rw_user());
        let u = m.unmap(&pt, addr).expect("mapped");
        assert_eq!(u, Unmapped::new(page(addr), data_frame(42)));
        assert_eq!(m.translate(&pt, addr), None);
        // The leaf entry is cleared entirely, the path stays.
        assert_eq!(leaf_entry::<F>(&m.mem, pt.root(), addr), 0);
        m.destroy(pt);
    }

    pub fn unmap_of_unmapped_page_gives_none<F: Format>() {
        let m = machine::<F>();
        let pt = m.table();
        assert_eq!(m.unmap(&pt, 0x40_0000), None);
        m.map(&pt, 0x40_0000, data_frame(1), rw_user());
        assert_eq!(m.unmap(&pt, 0x40_1000), None);
        // Only some levels exist (other level-2 slot).
        assert_eq!(m.unmap(&pt, 0x80_0000), None);
        assert!(m.unmap(&pt, 0x40_0000).is_some());
        assert_eq!(m.unmap(&pt, 0x40_0000), None);
        // Unmapping allocates nothing.
        assert_eq!(pt.table_frames(), u64::from(F::LEVELS));
        assert_eq!(m.frames.in_use(), u64::from(F::LEVELS));
        m.destroy(pt);
    }

    pub fn unmap_leaves_other_mappings_alone<F: Format>() {
        let m = machine::<F>();
        let pt = m.table();
        for i in 0..4 {
            m.map(&pt, 0x40_0000 + i * PAGE, data_frame(i), rw_user());
        }
        m.unmap_mapped(&pt, 0x40_0000 + PAGE);
        assert_eq!(m.translate(&pt, 0x40_0000).unwrap().0, data_frame(0));
        assert_eq!(m.translate(&pt, 0x40_0000 + PAGE), None);
        for i in [2, 3] {
            assert_eq!(
                m.translate(&pt, 0x40_0000 + i * PAGE).unwrap().0,
                data_frame(i)
            );
        }
        for i in [0, 2, 3] {
            m.unmap_mapped(&pt, 0x40_0000 + i * PAGE);
        }
        m.destroy(pt);
    }

    pub fn table_frames_counts_root_and_new_intermediate_tables<F: Format>() {
        let m = machine::<F>();
        let pt = m.table();
        let check = |pt: &F::Table, expect: u64| {
            assert_eq!(pt.table_frames(), expect);
            assert_eq!(m.frames.in_use(), expect, "allocator disagrees");
        };
        check(&pt, 1);
        let levels = u64::from(F::LEVELS);
        m.map(&pt, PAGE, data_frame(0), rw_user());
        check(&pt, levels);
        // Same leaf table: nothing new.
        m.map(&pt, 2 * PAGE, data_frame(1), rw_user());
        m.map(&pt, 0x1f_f000, data_frame(2), rw_user());
        check(&pt, levels);
        // The first page of each next region one level up needs one table
        // per level below it.
        let mut expect = levels;
        let mut mapped = vec![PAGE, 2 * PAGE, 0x1f_f000];
        for l in 2..=F::LEVELS {
            let a = span(l);
            m.map(&pt, a, data_frame(u64::from(l)), rw_user());
            expect += u64::from(l) - 1;
            check(&pt, expect);
            m.map(&pt, a + PAGE, data_frame(u64::from(l)), rw_user());
            check(&pt, expect);
            mapped.extend([a, a + PAGE]);
        }
        // Unmapping does not free tables.
        for &a in &mapped {
            m.unmap_mapped(&pt, a);
        }
        check(&pt, expect);
        m.destroy(pt);
        assert_eq!(m.frames.in_use(), 0);
    }

    pub fn destroy_returns_every_table_frame<F: Format>() {
        let m = machine::<F>();
        let pt = m.table();
        let mut addrs = vec![
            PAGE,
            0x40_0000,
            0x4000_0000,
            0x1_0000_0000,
            second_root_slot::<F>(),
            top_user::<F>() - 0x100_0000_0000 % layout::<F>().user_end,
            top_user::<F>(),
        ];
        addrs.sort();
        addrs.dedup();
        for (i, &a) in addrs.iter().enumerate() {
            m.map(&pt, a, data_frame(i as u64), rw_user());
        }
        let tables = pt.table_frames();
        assert_eq!(tables, 1 + path_tables::<F>(&addrs));
        assert_eq!(m.frames.in_use(), tables);
        for &a in &addrs {
            m.unmap_mapped(&pt, a);
        }
        let (allocs_before, frees_before) = m.frames.counters();
        m.destroy(pt);
        let (allocs, frees) = m.frames.counters();
        assert_eq!(allocs, allocs_before, "destroy allocated");
        assert_eq!(frees - frees_before, tables, "each table freed once");
        assert_eq!(m.frames.in_use(), 0);
    }

    pub fn destroy_of_fresh_table_frees_the_root<F: Format>() {
        let m = machine::<F>();
        let pt = m.table();
        let root = pt.root();
        assert_eq!(m.frames.refcount(root), 1);
        m.destroy(pt);
        assert_eq!(m.frames.refcount(root), 0);
        assert_eq!(m.frames.in_use(), 0);
    }

    /// Mapped frames belong to the caller (backends), not to the table.
    pub fn destroy_does_not_release_mapped_frames<F: Format>() {
        let m = machine::<F>();
        let pt = m.table();
        let data = m.frames.alloc().unwrap();
        m.map(&pt, PAGE, data, rw_user());
        assert_eq!(m.unmap(&pt, PAGE).unwrap().frame(), data);
        m.destroy(pt);
        assert_eq!(m.frames.allocated(), vec![data]);
        assert_eq!(m.frames.refcount(data), 1);
        assert!(m.frames.release(data));
        assert_eq!(m.frames.in_use(), 0);
    }

    /// Kernel addresses: the first and last kernel pages and one in
    /// between.
    fn kernel_pages<F: Format>() -> [u64; 3] {
        let k = layout::<F>().kernel_start;
        [k, k + span(F::LEVELS - 1) * 3, TOP_PAGE]
    }

    fn kflags() -> PageFlags {
        PageFlags::READ | PageFlags::WRITE | PageFlags::CACHEABLE | PageFlags::GLOBAL
    }

    pub fn kernel_table_destroy_frees_kernel_half_too<F: Format>() {
        let m = machine::<F>();
        let k = m.kernel_table();
        let addrs = kernel_pages::<F>();
        for (i, &a) in addrs.iter().enumerate() {
            m.map(&k, a, data_frame(i as u64), kflags());
            assert_eq!(
                m.translate(&k, a),
                Some((data_frame(i as u64), F::expect(kflags())))
            );
        }
        assert_eq!(k.table_frames(), 1 + path_tables::<F>(&addrs));
        for a in addrs {
            m.unmap_mapped(&k, a);
        }
        m.destroy(k);
        assert_eq!(m.frames.in_use(), 0);
    }

    /// A user table holds the kernel's root slots of the kernel half (or,
    /// where the kernel half has its own table register, nothing).
    pub fn user_table_shares_the_kernel_half<F: Format>() {
        let m = machine::<F>();
        let k = m.kernel_table();
        let addrs = kernel_pages::<F>();
        for (i, &a) in addrs.iter().enumerate() {
            m.map(&k, a, data_frame(i as u64), kflags());
        }
        let u = m.user_table(&k);
        assert_eq!(u.table_frames(), 1);
        assert_ne!(u.root(), k.root());
        for i in 0..512 {
            let want = if F::SHARED_ROOT.contains(&i) {
                entry(&m.mem, k.root(), i)
            } else {
                0
            };
            assert_eq!(entry(&m.mem, u.root(), i), want, "user root[{i}]");
        }
        for (i, &a) in addrs.iter().enumerate() {
            let want = if F::SHARED_ROOT.is_empty() {
                None
            } else {
                Some((data_frame(i as u64), F::expect(kflags())))
            };
            assert_eq!(m.translate(&u, a), want, "{a:#x}");
        }
        m.destroy(u);
        for a in addrs {
            m.unmap_mapped(&k, a);
        }
        m.destroy(k);
        assert_eq!(m.frames.in_use(), 0);
    }

    pub fn destroying_user_table_keeps_kernel_tables<F: Format>() {
        let m = machine::<F>();
        let k = m.kernel_table();
        let [k0, _, ktop] = kernel_pages::<F>();
        m.map(&k, k0, data_frame(0), kflags());
        m.map(&k, ktop, data_frame(1), kflags());
        let kernel_tables = k.table_frames();
        assert_eq!(kernel_tables, 1 + 2 * u64::from(F::LEVELS - 1));
        let kernel_frames = m.frames.allocated();

        let u = m.user_table(&k);
        m.map(&u, PAGE, data_frame(2), rw_user());
        m.map(&u, top_user::<F>(), data_frame(3), rw_user());
        assert_eq!(u.table_frames(), 1 + 2 * u64::from(F::LEVELS - 1));
        m.unmap_mapped(&u, PAGE);
        m.unmap_mapped(&u, top_user::<F>());
        m.destroy(u);

        // Exactly the kernel's frames are left, each with one reference.
        assert_eq!(m.frames.allocated(), kernel_frames);
        for f in &kernel_frames {
            assert_eq!(m.frames.refcount(*f), 1, "{f:?}");
        }
        assert_eq!(m.translate(&k, k0).unwrap().0, data_frame(0));
        assert_eq!(m.translate(&k, ktop).unwrap().0, data_frame(1));
        for _ in 0..3 {
            let u = m.user_table(&k);
            m.map(&u, 0x40_0000, data_frame(4), rw_user());
            m.unmap_mapped(&u, 0x40_0000);
            m.destroy(u);
            assert_eq!(m.frames.allocated(), kernel_frames);
        }
        m.unmap_mapped(&k, k0);
        m.unmap_mapped(&k, ktop);
        m.destroy(k);
        assert_eq!(m.frames.in_use(), 0);
    }

    pub fn map_with_exhausted_allocator_fails_with_no_memory<F: Format>() {
        let m = machine::<F>();
        let pt = m.table();
        let (top, far) = (top_user::<F>(), second_root_slot::<F>());
        m.map(&pt, PAGE, data_frame(1), rw_user());
        m.map(&pt, top, data_frame(2), PageFlags::READ | PageFlags::USER);
        let before = pt.table_frames();
        m.frames.set_budget(0);
        // A page under a new root slot needs a table per level below.
        assert_eq!(
            m.try_map(&pt, far, data_frame(3), rw_user()),
            Err(Error::NoMemory)
        );
        assert_eq!(m.translate(&pt, far), None);
        assert_eq!(pt.table_frames(), before);
        assert_eq!(m.frames.in_use(), before);
        assert_eq!(
            m.translate(&pt, PAGE),
            Some((data_frame(1), rw_user() | PageFlags::PRESENT))
        );
        assert_eq!(m.translate(&pt, top).unwrap().0, data_frame(2));
        // A page whose tables exist needs no frame and still maps.
        m.map(&pt, 2 * PAGE, data_frame(4), rw_user());
        assert_eq!(m.translate(&pt, 2 * PAGE).unwrap().0, data_frame(4));
        m.frames.unlimited();
        m.map(&pt, far, data_frame(3), rw_user());
        assert_eq!(m.translate(&pt, far).unwrap().0, data_frame(3));
        assert_eq!(pt.table_frames(), before + u64::from(F::LEVELS - 1));
        for a in [PAGE, 2 * PAGE, top, far] {
            m.unmap_mapped(&pt, a);
        }
        m.destroy(pt);
        assert_eq!(m.frames.in_use(), 0);
    }

    /// With budget for only some of the tables a new root slot needs, the
    /// map fails, nothing changes, and it succeeds once memory is back.
    pub fn map_failing_part_way_keeps_table_consistent<F: Format>() {
        let far = second_root_slot::<F>();
        for budget in 0..u64::from(F::LEVELS - 1) {
            let m = machine::<F>();
            let pt = m.table();
            m.map(&pt, PAGE, data_frame(1), rw_user());
            m.frames.set_budget(budget);
            let r = m.try_map(&pt, far, data_frame(2), rw_user());
            assert_eq!(r, Err(Error::NoMemory), "budget {budget}");
            assert_eq!(m.translate(&pt, far), None);
            assert_eq!(pt.table_frames(), u64::from(F::LEVELS), "budget {budget}");
            assert_eq!(m.frames.in_use(), u64::from(F::LEVELS), "budget {budget}");
            assert_eq!(m.translate(&pt, PAGE).unwrap().0, data_frame(1));
            assert_eq!(m.translate(&pt, far + PAGE), None);
            m.frames.unlimited();
            m.map(&pt, far, data_frame(2), rw_user());
            let all = 1 + 2 * u64::from(F::LEVELS - 1);
            assert_eq!(pt.table_frames(), all, "budget {budget}");
            assert_eq!(m.frames.in_use(), all);
            m.unmap_mapped(&pt, PAGE);
            m.unmap_mapped(&pt, far);
            m.destroy(pt);
            assert_eq!(m.frames.in_use(), 0, "budget {budget}");
        }
    }

    /// Threads mapping interleaved pages that need the same, still missing
    /// intermediate tables race to install them: every page translates to
    /// its frame afterwards, one table per level is reachable, and each
    /// losing thread's table is freed. Repeated on fresh tables so that the
    /// races happen.
    pub fn concurrent_maps_share_new_intermediate_tables<F: Format>() {
        const THREADS: u64 = 4;
        const PER_THREAD: u64 = 32;
        for round in 0..100 {
            let m = machine::<F>();
            let pt = m.table();
            // All pages below one leaf table, in a root slot nothing used.
            let base = layout::<F>().user_end - span(F::LEVELS) + round * 0x20_0000;
            let start = std::sync::Barrier::new(THREADS as usize);
            std::thread::scope(|s| {
                for t in 0..THREADS {
                    let (m, pt, start) = (&m, &pt, &start);
                    s.spawn(move || {
                        start.wait();
                        for k in 0..PER_THREAD {
                            let n = k * THREADS + t;
                            m.try_map(pt, base + n * PAGE, data_frame(n), rw_user())
                                .unwrap_or_else(|e| panic!("round {round}: page {n}: {e:?}"));
                        }
                    });
                }
            });
            for n in 0..THREADS * PER_THREAD {
                assert_eq!(
                    m.translate(&pt, base + n * PAGE),
                    Some((data_frame(n), rw_user() | PageFlags::PRESENT)),
                    "round {round}: page {n}"
                );
            }
            assert_eq!(pt.table_frames(), u64::from(F::LEVELS), "round {round}");
            assert_eq!(
                m.frames.in_use(),
                u64::from(F::LEVELS),
                "round {round}: a losing table leaked"
            );
            m.destroy(pt);
            assert_eq!(m.frames.in_use(), 0, "round {round}");
        }
    }

    /// A new kernel mapping under a root slot the user table shares lands
    /// in the shared subtree, so the user table sees it (only for formats
    /// that share root slots).
    pub fn user_table_sees_later_kernel_mappings<F: Format>() {
        assert!(!F::SHARED_ROOT.is_empty());
        let m = machine::<F>();
        let k = m.kernel_table();
        let k0 = layout::<F>().kernel_start;
        m.map(&k, k0, data_frame(0), kflags());
        let u = m.user_table(&k);
        m.map(&k, k0 + span(F::LEVELS - 1), data_frame(1), kflags());
        assert_eq!(
            m.translate(&u, k0 + span(F::LEVELS - 1)).map(|(f, _)| f),
            Some(data_frame(1))
        );
        m.unmap_mapped(&k, k0);
        assert_eq!(m.translate(&u, k0), None);
        m.map(&u, PAGE, data_frame(2), rw_user());
        assert_eq!(m.translate(&k, PAGE), None);
        m.unmap_mapped(&u, PAGE);
        m.destroy(u);
        m.unmap_mapped(&k, k0 + span(F::LEVELS - 1));
        m.destroy(k);
        assert_eq!(m.frames.in_use(), 0);
    }
}

/// Instantiates the generic suite for one format, in a module of its own.
macro_rules! suite {
    ($module:ident, $format:ty, [$($extra:ident),* $(,)?]) => {
        mod $module {
            use super::*;
            suite!(@tests $format,
                create_allocates_one_zeroed_root,
                create_fails_with_no_memory_when_allocator_is_exhausted,
                empty_table_translates_nothing,
                map_then_translate_gives_frame_and_flags_back,
                flags_round_trip_for_every_combination,
                intermediate_entries_point_at_allocated_tables,
                frame_zero_can_be_mapped,
                page_one_maps_translates_and_unmaps,
                highest_user_page_maps_translates_and_unmaps,
                page_one_and_highest_user_page_coexist,
                full_leaf_table_of_mappings,
                same_frame_mapped_at_two_pages,
                map_after_unmap_reuses_the_entry,
                unmap_returns_unmapped_and_translate_then_gives_none,
                unmap_of_unmapped_page_gives_none,
                unmap_leaves_other_mappings_alone,
                table_frames_counts_root_and_new_intermediate_tables,
                destroy_returns_every_table_frame,
                destroy_of_fresh_table_frees_the_root,
                destroy_does_not_release_mapped_frames,
                kernel_table_destroy_frees_kernel_half_too,
                user_table_shares_the_kernel_half,
                destroying_user_table_keeps_kernel_tables,
                map_with_exhausted_allocator_fails_with_no_memory,
                map_failing_part_way_keeps_table_consistent,
                concurrent_maps_share_new_intermediate_tables,
                $($extra,)*
            );
            #[cfg(debug_assertions)]
            #[test]
            fn map_over_present_entry_panics_in_debug_builds() {
                generic::map_over_present_entry_panics_in_debug_builds::<$format>();
            }
        }
    };
    (@tests $format:ty, $($name:ident,)*) => {
        $(
            #[test]
            fn $name() {
                generic::$name::<$format>();
            }
        )*
    };
}

suite!(x86_64, X86, [user_table_sees_later_kernel_mappings]);
suite!(sv39, Sv39, [user_table_sees_later_kernel_mappings]);
suite!(sv48, Sv48, [user_table_sees_later_kernel_mappings]);
suite!(aarch64, Arm, []);

// ---------------------------------------------------------------------------
// x86_64 entry bits
// ---------------------------------------------------------------------------

mod x86_64_bits {
    use super::*;

    #[test]
    fn leaf_entry_bits_match_flags() {
        let m = machine::<X86>();
        let pt = m.table();
        let cases: [(PageFlags, u64); 7] = [
            // Read-only, kernel, non-executable, cacheable.
            (PageFlags::READ | PageFlags::CACHEABLE, P | NX),
            // Writable user data.
            (rw_user(), P | RW | US | NX),
            // User code.
            (
                PageFlags::READ | PageFlags::EXEC | PageFlags::USER | PageFlags::CACHEABLE,
                P | US,
            ),
            // Uncached device memory: PCD set.
            (PageFlags::READ | PageFlags::WRITE, P | RW | NX | PCD),
            // Uncached executable.
            (PageFlags::READ | PageFlags::EXEC, P | PCD),
            // Global kernel mapping.
            (
                PageFlags::READ | PageFlags::WRITE | PageFlags::CACHEABLE | PageFlags::GLOBAL,
                P | RW | NX | G,
            ),
            // PRESENT passed in explicitly changes nothing.
            (PageFlags::PRESENT | rw_user(), P | RW | US | NX),
        ];
        for (i, &(flags, bits)) in cases.iter().enumerate() {
            let addr = 0x20_0000 + i as u64 * PAGE;
            let frame = data_frame(100 + i as u64);
            m.map(&pt, addr, frame, flags);
            let e = leaf_entry::<X86>(&m.mem, pt.root(), addr);
            assert_eq!(e & ADDR, frame.number() * PAGE, "address of {flags:?}");
            assert_eq!(e & !ADDR, bits, "bits of {flags:?}: {e:#x}");
        }
        for i in 0..cases.len() as u64 {
            m.unmap_mapped(&pt, 0x20_0000 + i * PAGE);
        }
        m.destroy(pt);
    }

    #[test]
    fn intermediate_entries_are_present_writable_user_tables() {
        let m = machine::<X86>();
        let pt = m.table();
        m.map(&pt, TOP_PAGE, data_frame(3), PageFlags::READ);
        let w = walk::<X86>(&m.mem, pt.root(), TOP_PAGE);
        assert_eq!(indices::<X86>(TOP_PAGE), [511, 511, 511, 511]);
        for &e in &w[..3] {
            assert_eq!(e & (P | RW | US | (1 << 7) | NX), P | RW | US, "{e:#x}");
        }
        assert_eq!(w[3], (data_frame(3).number() * PAGE) | P | NX | PCD);
        m.unmap_mapped(&pt, TOP_PAGE);
        m.destroy(pt);
    }

    #[test]
    fn high_physical_frame_round_trips() {
        let m = machine::<X86>();
        let pt = m.table();
        // The highest 4 KiB frame x86_64 can address (52-bit physical).
        let top = Frame::from_number((1 << 40) - 1);
        m.map(&pt, PAGE, top, rw_user());
        assert_eq!(
            m.translate(&pt, PAGE),
            Some((top, rw_user() | PageFlags::PRESENT))
        );
        let e = leaf_entry::<X86>(&m.mem, pt.root(), PAGE);
        assert_eq!(e & ADDR, 0x000f_ffff_ffff_f000);
        assert_eq!(e & !ADDR & !NX, P | RW | US);
        assert_eq!(m.unmap(&pt, PAGE).unwrap().frame(), top);
        m.destroy(pt);
    }
}

// ---------------------------------------------------------------------------
// RISC-V entry bits
// ---------------------------------------------------------------------------

mod riscv_bits {
    use super::*;
    use aspace::paging::riscv64::{
        satp, PTE_A, PTE_D, PTE_G, PTE_R, PTE_SW_MAPPED, PTE_SW_NO_CACHE, PTE_U, PTE_V, PTE_W,
        PTE_X,
    };
    use aspace::Asid;

    fn ppn(frame: Frame) -> u64 {
        frame.number() << 10
    }

    #[test]
    fn leaf_entry_bits_match_flags() {
        let m = machine::<Sv39>();
        let pt = m.table();
        let c = PageFlags::CACHEABLE;
        let u = PageFlags::USER;
        let (r, w, x) = (PageFlags::READ, PageFlags::WRITE, PageFlags::EXEC);
        let ad = PTE_V | PTE_A | PTE_D;
        let cases = [
            (r | c | u, ad | PTE_R | PTE_U),
            (rw_user(), ad | PTE_R | PTE_W | PTE_U),
            (r | x | c | u, ad | PTE_R | PTE_X | PTE_U),
            // Execute-only: X alone (loads fault unless MXR).
            (x | c | u, ad | PTE_X | PTE_U),
            // Write-only: W without R is reserved, so R+W.
            (w | c | u, ad | PTE_R | PTE_W | PTE_U),
            // Non-cacheable: remembered in a software bit.
            (r | w, ad | PTE_R | PTE_W | PTE_SW_NO_CACHE),
            (r | w | c | PageFlags::GLOBAL, ad | PTE_R | PTE_W | PTE_G),
            // No right at all: invalid, but the frame and a mark kept.
            (c | u, PTE_A | PTE_D | PTE_U | PTE_SW_MAPPED),
        ];
        for (i, &(flags, bits)) in cases.iter().enumerate() {
            let addr = 0x20_0000 + i as u64 * PAGE;
            let frame = data_frame(100 + i as u64);
            m.map(&pt, addr, frame, flags);
            let e = leaf_entry::<Sv39>(&m.mem, pt.root(), addr);
            assert_eq!(e, ppn(frame) | bits, "{flags:?}: {e:#x}");
            // Intermediate entries: V and a PPN only (A, D, U reserved).
            for &t in &walk::<Sv39>(&m.mem, pt.root(), addr)[..2] {
                assert_eq!(t & 0x3ff, PTE_V, "{t:#x}");
            }
        }
        for i in 0..cases.len() as u64 {
            m.unmap_mapped(&pt, 0x20_0000 + i * PAGE);
        }
        m.destroy(pt);
    }

    #[test]
    fn sv39_splits_at_256_gib_and_kernel_slots_start_at_256() {
        assert_eq!(layout::<Sv39>().user_end, 256 << 30);
        assert_eq!(indices::<Sv39>(layout::<Sv39>().kernel_start)[0], 256);
        assert_eq!(indices::<Sv39>(top_user::<Sv39>()), [255, 511, 511]);
        assert_eq!(indices::<Sv48>(top_user::<Sv48>()), [255, 511, 511, 511]);
    }

    #[test]
    fn satp_holds_mode_asid_and_root() {
        let root = Frame::from_number(0x8_0123);
        assert_eq!(
            satp(RiscvMode::Sv39, Asid(0xbeef), root),
            (8 << 60) | (0xbeef << 44) | 0x8_0123
        );
        assert_eq!(satp(RiscvMode::Sv48, Asid(1), root) >> 60, 9);
        let m = machine::<Sv48>();
        let pt = m.table();
        assert_eq!(pt.satp(Asid(3)), satp(RiscvMode::Sv48, Asid(3), pt.root()));
        m.destroy(pt);
    }

    #[test]
    fn user_table_takes_the_kernel_tables_mode() {
        let m = machine::<Sv48>();
        let k = m.table();
        let u = RiscvPageTable::create(&*m.mem, &m.frames, Some(&k), RiscvMode::Sv48).unwrap();
        assert_eq!(u.mode(), RiscvMode::Sv48);
        m.destroy(u);
        m.destroy(k);
    }
}

// ---------------------------------------------------------------------------
// AArch64 descriptor bits
// ---------------------------------------------------------------------------

mod aarch64_bits {
    use super::*;
    use aspace::paging::aarch64::{
        ttbr, DESC_AF, DESC_AP_EL0, DESC_AP_RO, DESC_NG, DESC_PXN, DESC_SH_INNER, DESC_SW_MAPPED,
        DESC_SW_USER, DESC_UXN, MAIR_EL1,
    };
    use aspace::Asid;

    const PAGE_DESC: u64 = 0b11 | DESC_AF | DESC_SH_INNER;
    const DEVICE: u64 = 1 << 2;

    #[test]
    fn leaf_descriptor_bits_match_flags() {
        let m = machine::<Arm>();
        let k = m.kernel_table();
        let u = m.user_table(&k);
        let c = PageFlags::CACHEABLE;
        let usr = PageFlags::USER;
        let (r, w, x) = (PageFlags::READ, PageFlags::WRITE, PageFlags::EXEC);
        let user_cases = [
            (
                r | c | usr,
                PAGE_DESC | DESC_NG | DESC_AP_EL0 | DESC_AP_RO | DESC_PXN | DESC_UXN,
            ),
            (
                rw_user(),
                PAGE_DESC | DESC_NG | DESC_AP_EL0 | DESC_PXN | DESC_UXN,
            ),
            (
                r | x | c | usr,
                PAGE_DESC | DESC_NG | DESC_AP_EL0 | DESC_AP_RO | DESC_PXN,
            ),
            // Execute-only at EL0: no EL0 data access, UXN clear.
            (x | c | usr, PAGE_DESC | DESC_NG | DESC_AP_RO | DESC_PXN),
            // Write-only: EL0 write implies read.
            (
                w | c | usr,
                PAGE_DESC | DESC_NG | DESC_AP_EL0 | DESC_PXN | DESC_UXN,
            ),
            // Device memory: attribute 1.
            (
                r | x | usr,
                PAGE_DESC | DESC_NG | DEVICE | DESC_AP_EL0 | DESC_AP_RO | DESC_PXN,
            ),
            // No right: invalid, the frame and marks kept.
            (c | usr, DESC_NG | DESC_SW_MAPPED | DESC_SW_USER),
        ];
        let kernel_cases = [
            (
                r | w | c | PageFlags::GLOBAL,
                PAGE_DESC | DESC_PXN | DESC_UXN,
            ),
            (
                r | x | c | PageFlags::GLOBAL,
                PAGE_DESC | DESC_AP_RO | DESC_UXN,
            ),
            (r | w, PAGE_DESC | DESC_NG | DEVICE | DESC_PXN | DESC_UXN),
        ];
        let kbase = Layout::AARCH64.kernel_start;
        for (pt, base, cases) in [
            (&u, 0x20_0000, &user_cases[..]),
            (&k, kbase, &kernel_cases[..]),
        ] {
            for (i, &(flags, bits)) in cases.iter().enumerate() {
                let addr = base + i as u64 * PAGE;
                let frame = data_frame(100 + i as u64);
                m.map(pt, addr, frame, flags);
                let e = leaf_entry::<Arm>(&m.mem, pt.root(), addr);
                assert_eq!(e, (frame.number() << 12) | bits, "{flags:?}: {e:#x}");
                // Table descriptors: address and 0b11, no attributes.
                for &t in &walk::<Arm>(&m.mem, pt.root(), addr)[..3] {
                    assert_eq!(t & !0x0000_ffff_ffff_f000, 0b11, "{t:#x}");
                }
            }
            for i in 0..cases.len() as u64 {
                m.unmap_mapped(pt, base + i * PAGE);
            }
        }
        m.destroy(u);
        m.destroy(k);
        assert_eq!(m.frames.in_use(), 0);
    }

    #[test]
    fn each_table_maps_only_its_own_half() {
        let m = machine::<Arm>();
        let k = m.kernel_table();
        let u = m.user_table(&k);
        let kbase = Layout::AARCH64.kernel_start;
        assert_eq!(
            m.try_map(&u, kbase, data_frame(1), rw_user()),
            Err(Error::InvalidArgument)
        );
        assert_eq!(
            m.try_map(&k, PAGE, data_frame(1), PageFlags::READ),
            Err(Error::InvalidArgument)
        );
        // The same table indices in the other half do not alias.
        m.map(&u, PAGE, data_frame(2), rw_user());
        assert_eq!(m.translate(&u, kbase + PAGE), None);
        assert_eq!(m.unmap(&u, kbase + PAGE), None);
        m.map(&k, kbase + PAGE, data_frame(3), PageFlags::READ);
        assert_eq!(m.translate(&k, PAGE), None);
        assert_eq!((u.table_frames(), k.table_frames()), (4, 4));
        m.unmap_mapped(&u, PAGE);
        m.unmap_mapped(&k, kbase + PAGE);
        m.destroy(u);
        m.destroy(k);
        assert_eq!(m.frames.in_use(), 0);
    }

    #[test]
    fn ttbr_holds_asid_and_root() {
        let root = Frame::from_number(0x4_0123);
        assert_eq!(ttbr(root, Asid(0xbeef)), (0xbeef << 48) | 0x4012_3000);
        let m = machine::<Arm>();
        let pt = m.table();
        assert_eq!(pt.ttbr(Asid(7)), ttbr(pt.root(), Asid(7)));
        m.destroy(pt);
        assert_eq!(MAIR_EL1 & 0xff, 0xff);
        assert_eq!((MAIR_EL1 >> 8) & 0xff, 0x04);
    }
}
