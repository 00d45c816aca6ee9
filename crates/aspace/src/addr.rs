//! Typed addresses: a virtual address is not a physical one, a page is not a
//! byte count.
//!
//! [`VirtAddr`] and [`PhysAddr`] are byte addresses; [`Page`] and [`Frame`] are
//! page-aligned units of 4 KiB. Conversions between them are explicit so that
//! a byte count cannot be passed where a page count is expected.

use core::fmt;

/// Size of a page (and of a frame) in bytes.
pub const PAGE_SIZE: u64 = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;

/// A virtual (linear) address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct VirtAddr(u64);

/// A physical address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct PhysAddr(u64);

/// A virtual page: the 4 KiB page that starts at `number * PAGE_SIZE`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct Page(u64);

/// A physical frame: the 4 KiB of physical memory at `number * PAGE_SIZE`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct Frame(u64);

impl VirtAddr {
    /// Wraps a raw virtual address.
    pub const fn new(addr: u64) -> Self {
        Self(addr)
    }
    /// The raw address.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
    /// Whether the address is a multiple of [`PAGE_SIZE`].
    pub const fn is_page_aligned(self) -> bool {
        self.0 & (PAGE_SIZE - 1) == 0
    }
    /// The page that contains this address.
    pub const fn page(self) -> Page {
        Page(self.0 >> PAGE_SHIFT)
    }
    /// Offset of the address inside its page.
    pub const fn page_offset(self) -> u64 {
        self.0 & (PAGE_SIZE - 1)
    }
    /// `self + bytes`, or `None` if it wraps.
    pub const fn checked_add(self, bytes: u64) -> Option<VirtAddr> {
        match self.0.checked_add(bytes) {
            Some(v) => Some(VirtAddr(v)),
            None => None,
        }
    }
}

impl PhysAddr {
    /// Wraps a raw physical address.
    pub const fn new(addr: u64) -> Self {
        Self(addr)
    }
    /// The raw address.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
    /// The frame that contains this address.
    pub const fn frame(self) -> Frame {
        Frame(self.0 >> PAGE_SHIFT)
    }
    /// Offset of the address inside its frame.
    pub const fn frame_offset(self) -> u64 {
        self.0 & (PAGE_SIZE - 1)
    }
}

impl Page {
    /// The page with the given page number.
    pub const fn from_number(n: u64) -> Self {
        Self(n)
    }
    /// The page starting at `addr`, or `None` if `addr` is not page aligned.
    pub const fn from_start(addr: VirtAddr) -> Option<Self> {
        if addr.is_page_aligned() {
            Some(addr.page())
        } else {
            None
        }
    }
    /// The page number (address / [`PAGE_SIZE`]).
    pub const fn number(self) -> u64 {
        self.0
    }
    /// First address of the page.
    pub const fn start(self) -> VirtAddr {
        VirtAddr(self.0 << PAGE_SHIFT)
    }
    /// The page `n` pages above this one (wrapping is the caller's check).
    pub const fn add(self, n: u64) -> Page {
        Page(self.0 + n)
    }
    /// Number of pages from `other` up to `self` (`self >= other`).
    pub const fn pages_since(self, other: Page) -> u64 {
        self.0 - other.0
    }
}

impl Frame {
    /// The frame with the given frame number.
    pub const fn from_number(n: u64) -> Self {
        Self(n)
    }
    /// The frame number (address / [`PAGE_SIZE`]).
    pub const fn number(self) -> u64 {
        self.0
    }
    /// First physical address of the frame.
    pub const fn start(self) -> PhysAddr {
        PhysAddr(self.0 << PAGE_SHIFT)
    }
}

/// A run of `count` consecutive pages starting at `start`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct PageRange {
    /// First page of the run.
    pub start: Page,
    /// Number of pages.
    pub count: u64,
}

impl PageRange {
    /// The range `start .. start + count`.
    pub const fn new(start: Page, count: u64) -> Self {
        Self { start, count }
    }
    /// One past the last page.
    pub const fn end(&self) -> Page {
        Page(self.start.0 + self.count)
    }
    /// Whether `page` lies inside the range.
    pub const fn contains(&self, page: Page) -> bool {
        page.0 >= self.start.0 && page.0 < self.start.0 + self.count
    }
    /// Whether the two ranges share at least one page.
    pub const fn overlaps(&self, other: &PageRange) -> bool {
        self.start.0 < other.start.0 + other.count && other.start.0 < self.start.0 + self.count
    }
}

/// Number of pages needed to hold `bytes` bytes (rounded up).
pub const fn bytes_to_pages(bytes: u64) -> u64 {
    bytes.div_ceil(PAGE_SIZE)
}

macro_rules! hex_fmt {
    ($t:ty, $name:literal, $field:ident => $e:expr) => {
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let $field = self.0;
                write!(f, concat!($name, "({:#x})"), $e)
            }
        }
    };
}
hex_fmt!(VirtAddr, "VirtAddr", a => a);
hex_fmt!(PhysAddr, "PhysAddr", a => a);
hex_fmt!(Page, "Page", n => n << PAGE_SHIFT);
hex_fmt!(Frame, "Frame", n => n << PAGE_SHIFT);

impl fmt::Display for VirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::Display for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}
