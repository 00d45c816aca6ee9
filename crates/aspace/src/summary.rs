//! An area's summary: the one word of an area that lookups read without
//! the area's lock, and without the area tree's lock too (through the
//! tree's lock-free [`Reader`](crate::area_tree::Reader)).
//!
//! The word is the area tree's tag of the area's entry, so it sits in the
//! tree's leaf beside the area's bounds: a lookup touches no memory of the
//! area itself. It packs the rights, attributes, share state, resident
//! count and backend (as an index into the program's [`BackendNames`]). It
//! is written when the area is created (with the tree write-locked) and
//! whenever the area's lock guard drops, so it never has two writers at
//! once.

use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use crate::addr::{Page, PAGE_SIZE};
use crate::area::{AreaInfo, AreaState};
use crate::flags::{AreaAttrs, AreaFlags};
use crate::machine::Machine;

/// Bits 0–7 of a summary word: the rights.
const RIGHTS_SHIFT: u32 = 0;
/// Bits 8–15: the attributes.
const ATTRS_SHIFT: u32 = 8;
/// Bit 16: shared.
const SHARED_BIT: u64 = 1 << 16;
/// Bits 17–20: the backend's index in [`BackendNames`], 0 if it has none.
const BACKEND_SHIFT: u32 = 17;
const BACKEND_MASK: u64 = 0xf << BACKEND_SHIFT;
/// Bits 21–63: the resident count (saturating; 2^43 pages is more than a
/// 48-bit address space holds, and lookups only compare it with the size).
const RESIDENT_SHIFT: u32 = 21;
const _: () = assert!(AreaFlags::all().bits() <= 0xff && AreaAttrs::all().bits() <= 0xff);

/// A summary word unpacked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Summary {
    pub flags: AreaFlags,
    pub attrs: AreaAttrs,
    pub shared: bool,
    pub resident: u64,
    /// Index in [`BackendNames`], 0 for none.
    pub backend: u64,
}

impl Summary {
    /// The summary of a new area: nothing resident, not shared.
    pub fn new(flags: AreaFlags, attrs: AreaAttrs, backend: u64) -> Self {
        Summary {
            flags,
            attrs,
            shared: false,
            resident: 0,
            backend,
        }
    }

    /// The word.
    #[inline]
    pub fn pack(&self) -> u64 {
        let resident = self.resident.min(u64::MAX >> RESIDENT_SHIFT);
        (u64::from(self.flags.bits() & 0xff) << RIGHTS_SHIFT)
            | (u64::from(self.attrs.bits() & 0xff) << ATTRS_SHIFT)
            | if self.shared { SHARED_BIT } else { 0 }
            | ((self.backend << BACKEND_SHIFT) & BACKEND_MASK)
            | (resident << RESIDENT_SHIFT)
    }

    /// Unpacks a word.
    #[inline]
    pub fn unpack(w: u64) -> Self {
        Summary {
            flags: AreaFlags::from_bits_truncate((w >> RIGHTS_SHIFT) as u32 & 0xff),
            attrs: AreaAttrs::from_bits_truncate((w >> ATTRS_SHIFT) as u32 & 0xff),
            shared: w & SHARED_BIT != 0,
            resident: w >> RESIDENT_SHIFT,
            backend: (w & BACKEND_MASK) >> BACKEND_SHIFT,
        }
    }

    /// Reads an area's word.
    pub fn load(word: &AtomicU64) -> Self {
        Self::unpack(word.load(Ordering::Acquire))
    }

    /// Stores the summary of `st` into an area's word, keeping the backend
    /// (which never changes). Called with the area locked, so nobody else
    /// writes the word meanwhile.
    pub fn publish<M: Machine>(word: &AtomicU64, st: &AreaState<M>) {
        let backend = Self::unpack(word.load(Ordering::Relaxed)).backend;
        let s = Summary {
            flags: st.flags,
            attrs: st.attrs,
            shared: st.share.is_some(),
            resident: st.used.pages(),
            backend,
        };
        word.store(s.pack(), Ordering::Release);
    }

    /// A snapshot of the area `[start, end)` (page numbers) whose backend
    /// is called `backend`.
    #[inline]
    pub fn info(&self, start: u64, end: u64, backend: &'static str) -> AreaInfo {
        AreaInfo {
            base: Page::from_number(start).start(),
            pages: end - start,
            flags: self.flags,
            attrs: self.attrs,
            backend,
            resident: self.resident,
            shared: self.shared,
        }
    }

    /// The area's size in bytes, from its bounds.
    pub fn size(start: u64, end: u64) -> u64 {
        (end - start) * PAGE_SIZE
    }
}

/// The names of the backends areas use, each given a small index for
/// summary words (so that a lock-free lookup can name an area's backend).
/// One table serves the whole program ([`NAMES`]): the first 15 distinct
/// names get an index; areas of later ones get 0, and lookups of them take
/// the tree's lock.
pub(crate) struct BackendNames {
    slots: [NameSlot; 15],
}

/// One name: its length plus one (0 while free; claimed first) and its
/// bytes (null until published, after the length).
struct NameSlot {
    len: AtomicUsize,
    ptr: AtomicPtr<u8>,
}

/// The program's backend names.
pub(crate) static NAMES: BackendNames = BackendNames::new();

impl BackendNames {
    /// An empty table.
    pub const fn new() -> Self {
        BackendNames {
            slots: [const {
                NameSlot {
                    len: AtomicUsize::new(0),
                    ptr: AtomicPtr::new(ptr::null_mut()),
                }
            }; 15],
        }
    }

    /// The index of `name`, registering it if there is room; 0 if not. Two
    /// threads registering one name at once may give it two indices, which
    /// both name it.
    pub fn index(&self, name: &'static str) -> u64 {
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.len.load(Ordering::Acquire) == 0
                && slot
                    .len
                    .compare_exchange(0, name.len() + 1, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                slot.ptr.store(name.as_ptr().cast_mut(), Ordering::Release);
                return i as u64 + 1;
            }
            // Claimed by another name, or by this one (perhaps still being
            // published, then skipped). The same literal is the same
            // pointer, so most checks need not compare text.
            let same_str = slot.ptr.load(Ordering::Acquire) == name.as_ptr().cast_mut()
                && slot.len.load(Ordering::Relaxed) == name.len() + 1;
            if same_str || self.name(i as u64 + 1) == Some(name) {
                return i as u64 + 1;
            }
        }
        0
    }

    /// The name with index `index`, if it has one.
    #[inline]
    pub fn name(&self, index: u64) -> Option<&'static str> {
        let slot = self
            .slots
            .get(usize::try_from(index).ok()?.checked_sub(1)?)?;
        let ptr = slot.ptr.load(Ordering::Acquire);
        if ptr.is_null() {
            return None;
        }
        // The length was stored before the pointer was published.
        let len = slot.len.load(Ordering::Relaxed) - 1;
        // SAFETY: `ptr` and `len` are the address and length of a `&'static
        // str` given to `index` (only the thread that claimed the slot with
        // that length publishes a pointer, once), so the bytes are valid
        // UTF-8 that lives for ever.
        Some(unsafe { core::str::from_utf8_unchecked(core::slice::from_raw_parts(ptr, len)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_saturate() {
        let s = Summary {
            flags: AreaFlags::READ | AreaFlags::EXEC,
            attrs: AreaAttrs::all(),
            shared: true,
            resident: 12345,
            backend: 15,
        };
        assert_eq!(Summary::unpack(s.pack()), s);
        let huge = Summary {
            resident: u64::MAX,
            ..s
        };
        assert_eq!(
            Summary::unpack(huge.pack()).resident,
            u64::MAX >> RESIDENT_SHIFT
        );
        assert_eq!(Summary::unpack(huge.pack()).backend, 15);
    }

    #[test]
    fn backend_names_get_stable_indices_until_full() {
        let names = BackendNames::new();
        assert_eq!(names.name(0), None);
        assert_eq!(names.name(1), None);
        assert_eq!(names.index("anon"), 1);
        assert_eq!(names.index("elf"), 2);
        assert_eq!(names.index("anon"), 1);
        // Equal text is the same name, wherever it is stored.
        static ELF: [u8; 4] = *b"elf!";
        let elsewhere = core::str::from_utf8(&ELF[..3]).unwrap();
        assert_ne!(elsewhere.as_ptr(), "elf".as_ptr());
        assert_eq!(names.index(elsewhere), 2);
        const MORE: [&str; 13] = [
            "b3", "b4", "b5", "b6", "b7", "b8", "b9", "b10", "b11", "b12", "b13", "b14", "b15",
        ];
        for (i, n) in MORE.iter().enumerate() {
            assert_eq!(names.index(n), i as u64 + 3);
        }
        assert_eq!(names.index("one too many"), 0, "the table is full");
        assert_eq!(names.name(15), Some("b15"));
        assert_eq!(names.name(16), None);
        assert_eq!(names.index("anon"), 1);
    }
}
