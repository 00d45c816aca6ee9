//! Integration tests for `aspace::paging::x86_64::X86_64PageTable`, driven
//! through the `aspace::paging::PageTable` trait on a small test physical
//! memory and a counting, reference-counting frame allocator.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aspace::paging::x86_64::X86_64PageTable;
use aspace::paging::{PageTable, Unmapped};
use aspace::{Error, Frame, FrameAllocator, Page, PageFlags, PhysAddr, PhysMemory, VirtAddr};

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
// Helpers
// ---------------------------------------------------------------------------

const P: u64 = 1 << 0;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const PCD: u64 = 1 << 4;
const G: u64 = 1 << 8;
const NX: u64 = 1 << 63;
const ADDR: u64 = 0x000f_ffff_ffff_f000;

/// The highest page of the user half (x86_64, 48-bit).
const TOP_USER_PAGE: u64 = 0x7fff_ffff_f000;
/// The first page of the kernel half (PML4 slot 256).
const KERNEL_BASE: u64 = 0xffff_8000_0000_0000;

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

/// Indices (PML4, PDPT, PD, PT) of a virtual address.
fn indices(addr: u64) -> [u64; 4] {
    [
        (addr >> 39) & 511,
        (addr >> 30) & 511,
        (addr >> 21) & 511,
        (addr >> 12) & 511,
    ]
}

fn entry(mem: &TestMemory, table: Frame, index: u64) -> u64 {
    mem.read_u64(PhysAddr::new(table.number() * PAGE + index * 8))
}

/// Walks the four levels by hand; returns the entries met on the way
/// (PML4E, PDPTE, PDE, PTE), stopping at the first non-present one.
fn walk(mem: &TestMemory, root: Frame, addr: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut table = root;
    for (level, idx) in indices(addr).into_iter().enumerate() {
        let e = entry(mem, table, idx);
        out.push(e);
        if e & P == 0 || level == 3 {
            break;
        }
        table = Frame::from_number((e & ADDR) / PAGE);
    }
    out
}

/// The leaf entry for `addr`, asserting the intermediate levels are
/// present tables (P | RW | US, no huge bit, executable).
fn leaf_entry(mem: &TestMemory, root: Frame, addr: u64) -> u64 {
    let w = walk(mem, root, addr);
    assert_eq!(w.len(), 4, "walk of {addr:#x} stopped early: {w:x?}");
    for (level, &e) in w[..3].iter().enumerate() {
        assert_eq!(
            e & (P | RW | US),
            P | RW | US,
            "level {level} entry {e:#x} of {addr:#x} not present/writable/user"
        );
        assert_eq!(e & (1 << 7), 0, "huge bit in level {level} entry {e:#x}");
        assert_eq!(e & NX, 0, "NX in intermediate entry {e:#x}");
    }
    w[3]
}

/// Memory, allocator and shorthands for the table operations.
struct TestMachine {
    mem: Arc<TestMemory>,
    frames: CountingFrames,
}

fn machine() -> TestMachine {
    let mem = Arc::new(TestMemory::new());
    TestMachine {
        frames: CountingFrames::new(mem.clone()),
        mem,
    }
}

impl TestMachine {
    fn table(&self) -> X86_64PageTable {
        X86_64PageTable::create(&*self.mem, &self.frames, None).expect("create")
    }

    fn user_table(&self, kernel: &X86_64PageTable) -> X86_64PageTable {
        X86_64PageTable::create(&*self.mem, &self.frames, Some(kernel)).expect("create user")
    }

    fn map(&self, pt: &mut X86_64PageTable, addr: u64, frame: Frame, flags: PageFlags) {
        pt.map(&*self.mem, &self.frames, page(addr), frame, flags)
            .unwrap_or_else(|e| panic!("map {addr:#x}: {e:?}"));
    }

    fn try_map(
        &self,
        pt: &mut X86_64PageTable,
        addr: u64,
        frame: Frame,
        flags: PageFlags,
    ) -> aspace::Result<()> {
        pt.map(&*self.mem, &self.frames, page(addr), frame, flags)
    }

    fn translate(&self, pt: &X86_64PageTable, addr: u64) -> Option<(Frame, PageFlags)> {
        pt.translate(&*self.mem, page(addr))
    }

    fn unmap(&self, pt: &mut X86_64PageTable, addr: u64) -> Option<Unmapped> {
        pt.unmap(&*self.mem, page(addr))
    }

    /// Unmaps a page that must be mapped; returns the frame it mapped.
    fn unmap_mapped(&self, pt: &mut X86_64PageTable, addr: u64) -> Frame {
        let u = self
            .unmap(pt, addr)
            .unwrap_or_else(|| panic!("{addr:#x} was not mapped"));
        assert_eq!(u.page(), page(addr));
        u.frame()
    }

    fn destroy(&self, pt: X86_64PageTable) {
        pt.destroy(&*self.mem, &self.frames);
    }
}

// ---------------------------------------------------------------------------
// create / root
// ---------------------------------------------------------------------------

#[test]
fn create_allocates_one_zeroed_root() {
    let m = machine();
    let pt = m.table();
    assert_eq!(pt.table_frames(), 1);
    assert_eq!(m.frames.in_use(), 1);
    assert_eq!(m.frames.allocated(), vec![pt.root()]);
    // The allocator hands out garbage; the root must have been zeroed.
    for i in 0..512 {
        assert_eq!(entry(&m.mem, pt.root(), i), 0, "PML4[{i}] not zero");
    }
    m.destroy(pt);
    assert_eq!(m.frames.in_use(), 0);
}

#[test]
fn create_fails_with_no_memory_when_allocator_is_exhausted() {
    let m = machine();
    m.frames.set_budget(0);
    let r = X86_64PageTable::create(&*m.mem, &m.frames, None);
    assert!(matches!(r, Err(Error::NoMemory)), "{r:?}");
    assert_eq!(m.frames.in_use(), 0);
}

#[test]
fn empty_table_translates_nothing() {
    let m = machine();
    let pt = m.table();
    for addr in [0, PAGE, 0x40_0000, TOP_USER_PAGE, KERNEL_BASE] {
        assert_eq!(m.translate(&pt, addr), None, "{addr:#x}");
    }
    m.destroy(pt);
}

// ---------------------------------------------------------------------------
// map / translate
// ---------------------------------------------------------------------------

#[test]
fn map_then_translate_gives_frame_and_flags_back() {
    let m = machine();
    let mut pt = m.table();
    m.map(&mut pt, 0x40_0000, data_frame(7), rw_user());
    assert_eq!(
        m.translate(&pt, 0x40_0000),
        Some((data_frame(7), rw_user() | PageFlags::PRESENT))
    );
    // Neighbours stay unmapped.
    assert_eq!(m.translate(&pt, 0x40_0000 - PAGE), None);
    assert_eq!(m.translate(&pt, 0x40_0000 + PAGE), None);
    m.unmap_mapped(&mut pt, 0x40_0000);
    m.destroy(pt);
    assert_eq!(m.frames.in_use(), 0);
}

#[test]
fn flags_round_trip_for_every_combination() {
    let m = machine();
    let mut pt = m.table();
    let bits = [
        PageFlags::READ,
        PageFlags::WRITE,
        PageFlags::EXEC,
        PageFlags::USER,
        PageFlags::CACHEABLE,
        PageFlags::GLOBAL,
    ];
    for combo in 0u64..(1 << bits.len()) {
        let mut flags = PageFlags::empty();
        for (i, &b) in bits.iter().enumerate() {
            if combo & (1 << i) != 0 {
                flags |= b;
            }
        }
        let addr = 0x1000_0000 + combo * PAGE;
        m.map(&mut pt, addr, data_frame(combo), flags);
        // x86 cannot deny read of a present page: READ always comes back.
        let expect = flags | PageFlags::PRESENT | PageFlags::READ;
        assert_eq!(
            m.translate(&pt, addr),
            Some((data_frame(combo), expect)),
            "flags {flags:?}"
        );
    }
    for combo in 0u64..(1 << bits.len()) {
        let u = m.unmap(&mut pt, 0x1000_0000 + combo * PAGE).unwrap();
        assert_eq!(u.frame(), data_frame(combo));
    }
    m.destroy(pt);
    assert_eq!(m.frames.in_use(), 0);
}

#[test]
fn mapping_without_read_still_translates_readable() {
    let m = machine();
    let mut pt = m.table();
    m.map(&mut pt, PAGE * 3, data_frame(1), PageFlags::WRITE);
    let (_, f) = m.translate(&pt, PAGE * 3).unwrap();
    assert!(f.contains(PageFlags::PRESENT | PageFlags::READ | PageFlags::WRITE));
    assert!(!f.contains(PageFlags::EXEC));
    assert!(!f.contains(PageFlags::USER));
    assert!(!f.contains(PageFlags::CACHEABLE));
    m.unmap_mapped(&mut pt, PAGE * 3);
    m.destroy(pt);
}

#[test]
fn leaf_entry_bits_match_flags() {
    let m = machine();
    let mut pt = m.table();
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
        m.map(&mut pt, addr, frame, flags);
        let e = leaf_entry(&m.mem, pt.root(), addr);
        assert_eq!(e & ADDR, frame.number() * PAGE, "address of {flags:?}");
        assert_eq!(e & !ADDR, bits, "bits of {flags:?}: {e:#x}");
    }
    for i in 0..cases.len() as u64 {
        m.unmap_mapped(&mut pt, 0x20_0000 + i * PAGE);
    }
    m.destroy(pt);
}

#[test]
fn intermediate_entries_point_at_allocated_tables() {
    let m = machine();
    let mut pt = m.table();
    let addr = 0x1234_5678_9000 & !(PAGE - 1);
    m.map(&mut pt, addr, data_frame(0), rw_user());
    let w = walk(&m.mem, pt.root(), addr);
    assert_eq!(w.len(), 4);
    let mut tables: Vec<Frame> = vec![pt.root()];
    tables.extend(w[..3].iter().map(|e| Frame::from_number((e & ADDR) / PAGE)));
    tables.sort();
    assert_eq!(tables, m.frames.allocated());
    // Every entry of the new tables other than the path is empty (they were
    // zeroed although the allocator filled them with garbage).
    let idx = indices(addr);
    let mut table = pt.root();
    for level in 0..4 {
        for i in 0..512 {
            if i != idx[level] {
                assert_eq!(entry(&m.mem, table, i), 0, "level {level} slot {i}");
            }
        }
        if level < 3 {
            table = Frame::from_number((w[level] & ADDR) / PAGE);
        }
    }
    m.unmap_mapped(&mut pt, addr);
    m.destroy(pt);
}

#[test]
fn high_physical_frame_round_trips() {
    let m = machine();
    let mut pt = m.table();
    // The highest 4 KiB frame x86_64 can address (52-bit physical).
    let top = Frame::from_number((1 << 40) - 1);
    m.map(&mut pt, PAGE, top, rw_user());
    assert_eq!(
        m.translate(&pt, PAGE),
        Some((top, rw_user() | PageFlags::PRESENT))
    );
    let e = leaf_entry(&m.mem, pt.root(), PAGE);
    assert_eq!(e & ADDR, 0x000f_ffff_ffff_f000);
    assert_eq!(e & !ADDR & !NX, P | RW | US);
    assert_eq!(m.unmap(&mut pt, PAGE).unwrap().frame(), top);
    m.destroy(pt);
}

#[test]
fn frame_zero_can_be_mapped() {
    let m = machine();
    let mut pt = m.table();
    let f0 = Frame::from_number(0);
    m.map(&mut pt, PAGE, f0, PageFlags::READ);
    assert_eq!(m.translate(&pt, PAGE).map(|(f, _)| f), Some(f0));
    let u = m.unmap(&mut pt, PAGE).unwrap();
    assert_eq!(u, Unmapped::new(page(PAGE), f0));
    m.destroy(pt);
}

#[test]
fn page_one_maps_translates_and_unmaps() {
    let m = machine();
    let mut pt = m.table();
    m.map(&mut pt, PAGE, data_frame(1), rw_user());
    assert_eq!(indices(PAGE), [0, 0, 0, 1]);
    let e = leaf_entry(&m.mem, pt.root(), PAGE);
    assert_eq!(e, (data_frame(1).number() * PAGE) | P | RW | US | NX);
    assert_eq!(m.translate(&pt, 0), None, "page 0 must stay unmapped");
    assert_eq!(
        m.translate(&pt, PAGE),
        Some((data_frame(1), rw_user() | PageFlags::PRESENT))
    );
    let u = m.unmap(&mut pt, PAGE).unwrap();
    assert_eq!(u, Unmapped::new(page(PAGE), data_frame(1)));
    assert_eq!(m.translate(&pt, PAGE), None);
    m.destroy(pt);
    assert_eq!(m.frames.in_use(), 0);
}

#[test]
fn highest_user_page_maps_translates_and_unmaps() {
    let m = machine();
    let mut pt = m.table();
    assert_eq!(indices(TOP_USER_PAGE), [255, 511, 511, 511]);
    m.map(&mut pt, TOP_USER_PAGE, data_frame(2), rw_user());
    assert_eq!(
        m.translate(&pt, TOP_USER_PAGE),
        Some((data_frame(2), rw_user() | PageFlags::PRESENT))
    );
    let e = leaf_entry(&m.mem, pt.root(), TOP_USER_PAGE);
    assert_eq!(e, (data_frame(2).number() * PAGE) | P | RW | US | NX);
    // Nothing leaked into the kernel half.
    assert_eq!(entry(&m.mem, pt.root(), 256), 0);
    assert_eq!(pt.table_frames(), 4);
    assert_eq!(m.translate(&pt, TOP_USER_PAGE - PAGE), None);
    let u = m.unmap(&mut pt, TOP_USER_PAGE).unwrap();
    assert_eq!(u.page(), page(TOP_USER_PAGE));
    assert_eq!(u.frame(), data_frame(2));
    assert_eq!(m.translate(&pt, TOP_USER_PAGE), None);
    m.destroy(pt);
    assert_eq!(m.frames.in_use(), 0);
}

#[test]
fn page_one_and_highest_user_page_coexist() {
    let m = machine();
    let mut pt = m.table();
    m.map(&mut pt, PAGE, data_frame(1), rw_user());
    m.map(&mut pt, TOP_USER_PAGE, data_frame(2), PageFlags::READ);
    // Two disjoint paths: root + 3 + 3.
    assert_eq!(pt.table_frames(), 7);
    assert_eq!(m.frames.in_use(), 7);
    assert_eq!(m.translate(&pt, PAGE).unwrap().0, data_frame(1));
    assert_eq!(m.translate(&pt, TOP_USER_PAGE).unwrap().0, data_frame(2));
    m.unmap_mapped(&mut pt, PAGE);
    assert_eq!(m.translate(&pt, TOP_USER_PAGE).unwrap().0, data_frame(2));
    m.unmap_mapped(&mut pt, TOP_USER_PAGE);
    m.destroy(pt);
    assert_eq!(m.frames.in_use(), 0);
}

#[test]
fn full_leaf_table_of_mappings() {
    let m = machine();
    let mut pt = m.table();
    let base = 0x60_0000; // 2 MiB aligned: one whole PT
    for i in 0..512 {
        m.map(&mut pt, base + i * PAGE, data_frame(i), rw_user());
    }
    assert_eq!(pt.table_frames(), 4);
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
            m.unmap(&mut pt, base + i * PAGE),
            Some(Unmapped::new(page(base + i * PAGE), data_frame(i)))
        );
    }
    m.destroy(pt);
    assert_eq!(m.frames.in_use(), 0);
}

#[test]
fn same_frame_mapped_at_two_pages() {
    let m = machine();
    let mut pt = m.table();
    m.map(&mut pt, PAGE, data_frame(9), PageFlags::READ);
    m.map(
        &mut pt,
        0x7000_0000,
        data_frame(9),
        PageFlags::READ | PageFlags::WRITE,
    );
    assert_eq!(m.translate(&pt, PAGE).unwrap().0, data_frame(9));
    assert_eq!(m.translate(&pt, 0x7000_0000).unwrap().0, data_frame(9));
    assert_eq!(m.unmap(&mut pt, PAGE).unwrap().frame(), data_frame(9));
    assert_eq!(
        m.translate(&pt, 0x7000_0000),
        Some((
            data_frame(9),
            PageFlags::PRESENT | PageFlags::READ | PageFlags::WRITE
        ))
    );
    m.unmap_mapped(&mut pt, 0x7000_0000);
    m.destroy(pt);
}

#[test]
fn map_after_unmap_reuses_the_entry() {
    let m = machine();
    let mut pt = m.table();
    m.map(&mut pt, PAGE, data_frame(1), PageFlags::READ);
    m.unmap_mapped(&mut pt, PAGE);
    m.map(&mut pt, PAGE, data_frame(2), rw_user());
    assert_eq!(
        m.translate(&pt, PAGE),
        Some((data_frame(2), rw_user() | PageFlags::PRESENT))
    );
    assert_eq!(pt.table_frames(), 4);
    m.unmap_mapped(&mut pt, PAGE);
    m.destroy(pt);
    assert_eq!(m.frames.in_use(), 0);
}

#[cfg(debug_assertions)]
#[test]
#[should_panic(expected = "map over a present entry")]
fn map_over_present_entry_panics_in_debug_builds() {
    let m = machine();
    let mut pt = m.table();
    m.map(&mut pt, PAGE, data_frame(1), rw_user());
    // `map` requires an unmapped page; replacing a translation would need a
    // TLB flush the caller does not do.
    let _ = m.try_map(&mut pt, PAGE, data_frame(2), rw_user());
}

// ---------------------------------------------------------------------------
// unmap
// ---------------------------------------------------------------------------

#[test]
fn unmap_returns_unmapped_and_translate_then_gives_none() {
    let m = machine();
    let mut pt = m.table();
    let addr = 0x7f12_3456_7000;
    m.map(&mut pt, addr, data_frame(42), rw_user());
    let u = m.unmap(&mut pt, addr).expect("mapped");
    assert_eq!(u.page(), page(addr));
    assert_eq!(u.frame(), data_frame(42));
    assert_eq!(u, Unmapped::new(page(addr), data_frame(42)));
    assert_eq!(m.translate(&pt, addr), None);
    // The leaf entry is cleared entirely, the path stays.
    assert_eq!(leaf_entry(&m.mem, pt.root(), addr), 0);
    m.destroy(pt);
}

#[test]
fn unmap_of_unmapped_page_gives_none() {
    let m = machine();
    let mut pt = m.table();
    // No tables at all on the path.
    assert_eq!(m.unmap(&mut pt, 0x40_0000), None);
    // Leaf table exists, entry empty.
    m.map(&mut pt, 0x40_0000, data_frame(1), rw_user());
    assert_eq!(m.unmap(&mut pt, 0x40_1000), None);
    // Only some levels exist (same PML4/PDPT slot, other PD slot).
    assert_eq!(m.unmap(&mut pt, 0x80_0000), None);
    // Unmapping twice: second time None.
    assert!(m.unmap(&mut pt, 0x40_0000).is_some());
    assert_eq!(m.unmap(&mut pt, 0x40_0000), None);
    // Unmapping allocates nothing.
    assert_eq!(pt.table_frames(), 4);
    assert_eq!(m.frames.in_use(), 4);
    m.destroy(pt);
}

#[test]
fn unmap_leaves_other_mappings_alone() {
    let m = machine();
    let mut pt = m.table();
    for i in 0..4 {
        m.map(&mut pt, 0x40_0000 + i * PAGE, data_frame(i), rw_user());
    }
    m.unmap_mapped(&mut pt, 0x40_0000 + PAGE);
    assert_eq!(m.translate(&pt, 0x40_0000).unwrap().0, data_frame(0));
    assert_eq!(m.translate(&pt, 0x40_0000 + PAGE), None);
    assert_eq!(
        m.translate(&pt, 0x40_0000 + 2 * PAGE).unwrap().0,
        data_frame(2)
    );
    assert_eq!(
        m.translate(&pt, 0x40_0000 + 3 * PAGE).unwrap().0,
        data_frame(3)
    );
    for i in [0, 2, 3] {
        m.unmap_mapped(&mut pt, 0x40_0000 + i * PAGE);
    }
    m.destroy(pt);
}

// ---------------------------------------------------------------------------
// table_frames / destroy
// ---------------------------------------------------------------------------

#[test]
fn table_frames_counts_root_and_new_intermediate_tables() {
    let m = machine();
    let mut pt = m.table();
    let check = |pt: &X86_64PageTable, expect: u64| {
        assert_eq!(pt.table_frames(), expect);
        assert_eq!(m.frames.in_use(), expect, "allocator disagrees");
    };
    check(&pt, 1);
    // First page: PDPT + PD + PT.
    m.map(&mut pt, PAGE, data_frame(0), rw_user());
    check(&pt, 4);
    // Same 2 MiB region: nothing new.
    m.map(&mut pt, 2 * PAGE, data_frame(1), rw_user());
    m.map(&mut pt, 0x1f_f000, data_frame(2), rw_user());
    check(&pt, 4);
    // New 2 MiB region in the same 1 GiB: one PT.
    m.map(&mut pt, 0x20_0000, data_frame(3), rw_user());
    check(&pt, 5);
    // New 1 GiB region in the same 512 GiB: PD + PT.
    m.map(&mut pt, 0x4000_0000, data_frame(4), rw_user());
    check(&pt, 7);
    // New 512 GiB region: PDPT + PD + PT.
    m.map(&mut pt, 0x80_0000_0000, data_frame(5), rw_user());
    check(&pt, 10);
    // Another page in each existing region: nothing new.
    m.map(&mut pt, 0x20_1000, data_frame(6), rw_user());
    m.map(&mut pt, 0x4000_1000, data_frame(7), rw_user());
    m.map(&mut pt, 0x80_0000_1000, data_frame(8), rw_user());
    check(&pt, 10);
    // Unmapping does not free tables.
    for addr in [PAGE, 2 * PAGE, 0x1f_f000, 0x20_0000, 0x20_1000] {
        m.unmap_mapped(&mut pt, addr);
    }
    check(&pt, 10);
    for addr in [0x4000_0000, 0x4000_1000, 0x80_0000_0000, 0x80_0000_1000] {
        m.unmap_mapped(&mut pt, addr);
    }
    m.destroy(pt);
    assert_eq!(m.frames.in_use(), 0);
}

#[test]
fn destroy_returns_every_table_frame() {
    let m = machine();
    let mut pt = m.table();
    let addrs = [
        PAGE,
        0x40_0000,
        0x4000_0000,
        0x1_0000_0000,
        0x80_0000_0000,
        0x7f00_0000_0000,
        TOP_USER_PAGE,
    ];
    for (i, &a) in addrs.iter().enumerate() {
        m.map(&mut pt, a, data_frame(i as u64), rw_user());
    }
    let tables = pt.table_frames();
    assert_eq!(m.frames.in_use(), tables);
    for &a in &addrs {
        m.unmap_mapped(&mut pt, a);
    }
    let (allocs_before, frees_before) = m.frames.counters();
    m.destroy(pt);
    let (allocs, frees) = m.frames.counters();
    assert_eq!(allocs, allocs_before, "destroy allocated");
    assert_eq!(frees - frees_before, tables, "each table freed once");
    assert_eq!(m.frames.in_use(), 0);
}

#[test]
fn destroy_of_fresh_table_frees_the_root() {
    let m = machine();
    let pt = m.table();
    let root = pt.root();
    assert_eq!(m.frames.refcount(root), 1);
    m.destroy(pt);
    assert_eq!(m.frames.refcount(root), 0);
    assert_eq!(m.frames.in_use(), 0);
}

#[test]
fn destroy_does_not_release_mapped_frames() {
    // Mapped frames belong to the caller (backends), not to the table.
    let m = machine();
    let mut pt = m.table();
    let data = m.frames.alloc().unwrap();
    m.map(&mut pt, PAGE, data, rw_user());
    assert_eq!(m.unmap(&mut pt, PAGE).unwrap().frame(), data);
    m.destroy(pt);
    assert_eq!(m.frames.allocated(), vec![data]);
    assert_eq!(m.frames.refcount(data), 1);
    assert!(m.frames.release(data));
    assert_eq!(m.frames.in_use(), 0);
}

#[test]
fn kernel_table_destroy_frees_kernel_half_too() {
    let m = machine();
    let mut k = m.table();
    m.map(&mut k, KERNEL_BASE, data_frame(0), PageFlags::READ);
    m.map(
        &mut k,
        0xffff_ffff_ffff_f000,
        data_frame(1),
        PageFlags::READ,
    );
    m.map(&mut k, PAGE, data_frame(2), PageFlags::READ);
    assert_eq!(k.table_frames(), 10);
    for a in [KERNEL_BASE, 0xffff_ffff_ffff_f000, PAGE] {
        m.unmap_mapped(&mut k, a);
    }
    m.destroy(k);
    assert_eq!(m.frames.in_use(), 0);
}

// ---------------------------------------------------------------------------
// Kernel half sharing
// ---------------------------------------------------------------------------

#[test]
fn kernel_addresses_use_pml4_slots_256_to_511() {
    assert_eq!(indices(KERNEL_BASE)[0], 256);
    assert_eq!(indices(0xffff_ffff_ffff_f000), [511, 511, 511, 511]);
    let m = machine();
    let mut k = m.table();
    m.map(
        &mut k,
        0xffff_ffff_ffff_f000,
        data_frame(3),
        PageFlags::READ,
    );
    assert_ne!(entry(&m.mem, k.root(), 511), 0);
    let e = leaf_entry(&m.mem, k.root(), 0xffff_ffff_ffff_f000);
    assert_eq!(e, (data_frame(3).number() * PAGE) | P | NX | PCD);
    assert_eq!(
        m.translate(&k, 0xffff_ffff_ffff_f000),
        Some((data_frame(3), PageFlags::PRESENT | PageFlags::READ))
    );
    m.unmap_mapped(&mut k, 0xffff_ffff_ffff_f000);
    m.destroy(k);
    assert_eq!(m.frames.in_use(), 0);
}

#[test]
fn user_table_copies_kernel_pml4_slots() {
    let m = machine();
    let mut k = m.table();
    let kflags = PageFlags::READ | PageFlags::WRITE | PageFlags::CACHEABLE | PageFlags::GLOBAL;
    m.map(&mut k, KERNEL_BASE, data_frame(0), kflags);
    m.map(&mut k, 0xffff_c000_0000_0000, data_frame(1), kflags);
    m.map(&mut k, 0xffff_ffff_ffff_f000, data_frame(2), kflags);
    // A user-half mapping in the kernel table is not shared.
    m.map(&mut k, PAGE, data_frame(3), kflags);

    let u = m.user_table(&k);
    assert_eq!(u.table_frames(), 1);
    assert_ne!(u.root(), k.root());
    for i in 0..256 {
        assert_eq!(entry(&m.mem, u.root(), i), 0, "user PML4[{i}]");
    }
    for i in 256..512 {
        assert_eq!(
            entry(&m.mem, u.root(), i),
            entry(&m.mem, k.root(), i),
            "PML4[{i}] not copied"
        );
    }
    for (a, f) in [
        (KERNEL_BASE, 0),
        (0xffff_c000_0000_0000, 1),
        (0xffff_ffff_ffff_f000, 2),
    ] {
        assert_eq!(
            m.translate(&u, a),
            Some((data_frame(f), kflags | PageFlags::PRESENT)),
            "{a:#x}"
        );
    }
    assert_eq!(m.translate(&u, PAGE), None);

    m.destroy(u);
    for a in [
        KERNEL_BASE,
        0xffff_c000_0000_0000,
        0xffff_ffff_ffff_f000,
        PAGE,
    ] {
        m.unmap_mapped(&mut k, a);
    }
    m.destroy(k);
    assert_eq!(m.frames.in_use(), 0);
}

#[test]
fn user_table_sees_later_kernel_mappings_in_shared_subtrees() {
    let m = machine();
    let mut k = m.table();
    m.map(&mut k, KERNEL_BASE, data_frame(0), PageFlags::READ);
    let mut u = m.user_table(&k);
    // A new kernel mapping under an existing PML4 slot lands in the shared
    // subtree, so the user table sees it without being touched.
    m.map(
        &mut k,
        KERNEL_BASE + 0x4000_0000,
        data_frame(1),
        PageFlags::READ,
    );
    assert_eq!(
        m.translate(&u, KERNEL_BASE + 0x4000_0000).map(|(f, _)| f),
        Some(data_frame(1))
    );
    // And unmapping in the kernel table is seen too.
    m.unmap_mapped(&mut k, KERNEL_BASE);
    assert_eq!(m.translate(&u, KERNEL_BASE), None);
    // User mappings are private to the user table.
    m.map(&mut u, PAGE, data_frame(2), rw_user());
    assert_eq!(m.translate(&k, PAGE), None);
    m.unmap_mapped(&mut u, PAGE);
    m.destroy(u);
    m.unmap_mapped(&mut k, KERNEL_BASE + 0x4000_0000);
    m.destroy(k);
    assert_eq!(m.frames.in_use(), 0);
}

#[test]
fn destroying_user_table_keeps_kernel_subtrees() {
    let m = machine();
    let mut k = m.table();
    m.map(&mut k, KERNEL_BASE, data_frame(0), PageFlags::READ);
    m.map(
        &mut k,
        0xffff_ffff_ffff_f000,
        data_frame(1),
        PageFlags::READ,
    );
    let kernel_tables = k.table_frames();
    assert_eq!(kernel_tables, 7);
    let kernel_frames = m.frames.allocated();

    let mut u = m.user_table(&k);
    m.map(&mut u, PAGE, data_frame(2), rw_user());
    m.map(&mut u, TOP_USER_PAGE, data_frame(3), rw_user());
    assert_eq!(u.table_frames(), 7);
    assert_eq!(m.frames.in_use(), kernel_tables + 7);
    m.unmap_mapped(&mut u, PAGE);
    m.unmap_mapped(&mut u, TOP_USER_PAGE);
    m.destroy(u);

    // Exactly the kernel's frames are left, each with one reference.
    assert_eq!(m.frames.in_use(), kernel_tables);
    assert_eq!(m.frames.allocated(), kernel_frames);
    for f in &kernel_frames {
        assert_eq!(m.frames.refcount(*f), 1, "{f:?}");
    }
    // And the kernel table still works.
    assert_eq!(m.translate(&k, KERNEL_BASE).unwrap().0, data_frame(0));
    assert_eq!(
        m.translate(&k, 0xffff_ffff_ffff_f000).unwrap().0,
        data_frame(1)
    );

    // Several user tables come and go; the kernel keeps its subtrees.
    for _ in 0..3 {
        let mut u = m.user_table(&k);
        m.map(&mut u, 0x40_0000, data_frame(4), rw_user());
        assert_eq!(m.translate(&u, KERNEL_BASE).unwrap().0, data_frame(0));
        m.unmap_mapped(&mut u, 0x40_0000);
        m.destroy(u);
        assert_eq!(m.frames.allocated(), kernel_frames);
    }

    m.unmap_mapped(&mut k, KERNEL_BASE);
    m.unmap_mapped(&mut k, 0xffff_ffff_ffff_f000);
    m.destroy(k);
    assert_eq!(m.frames.in_use(), 0);
}

// ---------------------------------------------------------------------------
// Running out of frames
// ---------------------------------------------------------------------------

#[test]
fn map_with_exhausted_allocator_fails_with_no_memory() {
    let m = machine();
    let mut pt = m.table();
    m.map(&mut pt, PAGE, data_frame(1), rw_user());
    m.map(&mut pt, TOP_USER_PAGE, data_frame(2), PageFlags::READ);
    let before = pt.table_frames();
    m.frames.set_budget(0);

    // A page in a new 512 GiB region needs three tables.
    let r = m.try_map(&mut pt, 0x80_0000_0000, data_frame(3), rw_user());
    assert_eq!(r, Err(Error::NoMemory));
    assert_eq!(m.translate(&pt, 0x80_0000_0000), None);
    assert_eq!(pt.table_frames(), before);
    assert_eq!(m.frames.in_use(), before);

    // Other mappings are intact.
    assert_eq!(
        m.translate(&pt, PAGE),
        Some((data_frame(1), rw_user() | PageFlags::PRESENT))
    );
    assert_eq!(
        m.translate(&pt, TOP_USER_PAGE),
        Some((data_frame(2), PageFlags::PRESENT | PageFlags::READ))
    );

    // A page whose tables exist needs no frame and still maps.
    m.map(&mut pt, 2 * PAGE, data_frame(4), rw_user());
    assert_eq!(m.translate(&pt, 2 * PAGE).unwrap().0, data_frame(4));

    // Once memory is back the failed map succeeds.
    m.frames.unlimited();
    m.map(&mut pt, 0x80_0000_0000, data_frame(3), rw_user());
    assert_eq!(m.translate(&pt, 0x80_0000_0000).unwrap().0, data_frame(3));
    assert_eq!(pt.table_frames(), before + 3);

    for a in [PAGE, 2 * PAGE, TOP_USER_PAGE, 0x80_0000_0000] {
        m.unmap_mapped(&mut pt, a);
    }
    m.destroy(pt);
    assert_eq!(m.frames.in_use(), 0);
}

#[test]
fn map_failing_part_way_keeps_table_consistent() {
    // Budget for only some of the three tables a new region needs: the map
    // fails, the page stays unmapped, table_frames still matches what the
    // allocator handed out, other mappings survive, and destroy frees it all.
    for budget in 0..3 {
        let m = machine();
        let mut pt = m.table();
        m.map(&mut pt, PAGE, data_frame(1), rw_user());
        m.frames.set_budget(budget);
        let r = m.try_map(&mut pt, 0x80_0000_0000, data_frame(2), rw_user());
        assert_eq!(r, Err(Error::NoMemory), "budget {budget}");
        assert_eq!(m.translate(&pt, 0x80_0000_0000), None);
        assert_eq!(pt.table_frames(), m.frames.in_use(), "budget {budget}");
        assert_eq!(m.translate(&pt, PAGE).unwrap().0, data_frame(1));
        // Pages next to the failed one are not mapped either.
        assert_eq!(m.translate(&pt, 0x80_0000_1000), None);

        m.frames.unlimited();
        m.map(&mut pt, 0x80_0000_0000, data_frame(2), rw_user());
        assert_eq!(pt.table_frames(), 7, "budget {budget}");
        assert_eq!(m.frames.in_use(), 7);
        assert_eq!(m.translate(&pt, 0x80_0000_0000).unwrap().0, data_frame(2));

        m.unmap_mapped(&mut pt, PAGE);
        m.unmap_mapped(&mut pt, 0x80_0000_0000);
        m.destroy(pt);
        assert_eq!(m.frames.in_use(), 0, "budget {budget}");
    }
}

#[test]
fn destroy_after_failed_map_frees_partial_tables() {
    let m = machine();
    let mut pt = m.table();
    m.frames.set_budget(2);
    assert_eq!(
        m.try_map(&mut pt, PAGE, data_frame(1), rw_user()),
        Err(Error::NoMemory)
    );
    assert_eq!(m.translate(&pt, PAGE), None);
    assert_eq!(pt.table_frames(), m.frames.in_use());
    m.destroy(pt);
    assert_eq!(m.frames.in_use(), 0);
}

// ---------------------------------------------------------------------------
// concurrent changes
// ---------------------------------------------------------------------------

/// Threads mapping interleaved pages that need the same, still missing
/// intermediate tables race to install them: every page must translate to
/// its frame afterwards, exactly one table per level must be reachable, and
/// each losing thread's table must be freed, not leaked. Repeated on fresh
/// tables so that the races actually happen.
#[test]
fn concurrent_maps_share_new_intermediate_tables() {
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 32;
    for round in 0..200 {
        let m = machine();
        let pt = m.table();
        // All pages below one leaf table, in a PML4 slot nothing used yet.
        let base = 0x7f00_0000_0000 + round * 0x20_0000;
        let start = std::sync::Barrier::new(THREADS as usize);
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (m, pt, start) = (&m, &pt, &start);
                s.spawn(move || {
                    start.wait();
                    for k in 0..PER_THREAD {
                        let n = k * THREADS + t;
                        pt.map(
                            &*m.mem,
                            &m.frames,
                            page(base + n * PAGE),
                            data_frame(n),
                            rw_user(),
                        )
                        .unwrap_or_else(|e| panic!("round {round}: map page {n}: {e:?}"));
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
        // Root, PDPT, PD, PT: the only frames the allocator handed out and
        // did not get back.
        assert_eq!(pt.table_frames(), 4, "round {round}");
        assert_eq!(m.frames.in_use(), 4, "round {round}: a losing table leaked");
        m.destroy(pt);
        assert_eq!(m.frames.in_use(), 0, "round {round}");
    }
}
