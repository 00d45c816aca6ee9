//! Simulated physical memory: an array of 64-bit words that several CPU
//! threads read and write concurrently without data races.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};

use aspace::memory::WORDS_PER_FRAME;
use aspace::{Frame, PhysAddr, PhysMemory, PAGE_SIZE};

use crate::host_memory::Words;

/// Physical memory of a fixed size.
///
/// It also models the hazard of split instruction and data caches: a frame
/// the kernel writes through [`PhysMemory`] (`write`, `zero_frame`,
/// `copy_frame`) is marked *unsynced* until [`PhysMemory::sync_icache`]
/// (or [`PhysMemory::sync_icache_frames`]) names it, and the simulated CPU counts an instruction fetch from an
/// unsynced frame as stale (`HwStats::stale_fetches`), where real AArch64
/// or RISC-V hardware could execute old instructions. Stores a task makes
/// through its own mappings ([`write_user`](Self::write_user)) do not
/// mark it: making those visible is the task's job, as on those machines.
pub struct PhysMem {
    words: Words,
    /// One bit per frame: written by the kernel since its last sync.
    unsynced: Box<[AtomicU64]>,
    /// Syncs that found a frame to sync (see [`sync_rounds`](Self::sync_rounds)).
    sync_rounds: AtomicU64,
}

impl PhysMem {
    /// `bytes` of zeroed memory (rounded up to whole frames).
    pub fn new(bytes: u64) -> Self {
        let frames = bytes.div_ceil(PAGE_SIZE);
        let words = (frames * PAGE_SIZE / 8) as usize;
        Self {
            words: Words::zeroed(words),
            unsynced: (0..frames.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
            sync_rounds: AtomicU64::new(0),
        }
    }

    /// Calls of [`PhysMemory::sync_icache`] or
    /// [`PhysMemory::sync_icache_frames`] that found at least one frame
    /// unsynced: the instruction-cache fences a RISC-V machine, whose
    /// `fence.i` covers every frame, would send to every hart.
    pub fn sync_rounds(&self) -> u64 {
        self.sync_rounds.load(Relaxed)
    }

    /// Clears frame `n`'s unsynced bit; whether it was set.
    fn take_unsynced(&self, n: u64) -> bool {
        self.sync_bit(n)
            .is_some_and(|(word, bit)| word.fetch_and(!bit, Relaxed) & bit != 0)
    }

    /// The bit of frame `n` in `unsynced`: its word and mask.
    fn sync_bit(&self, n: u64) -> Option<(&AtomicU64, u64)> {
        let word = self.unsynced.get(usize::try_from(n / 64).ok()?)?;
        Some((word, 1 << (n % 64)))
    }

    fn mark_unsynced(&self, first: PhysAddr, len: usize) {
        if len == 0 {
            return;
        }
        let (a, b) = (
            first.as_u64() / PAGE_SIZE,
            (first.as_u64() + len as u64 - 1) / PAGE_SIZE,
        );
        for n in a..=b {
            if let Some((word, bit)) = self.sync_bit(n) {
                word.fetch_or(bit, Relaxed);
            }
        }
    }

    /// Whether the kernel wrote `frame` since it last synced it for
    /// instruction fetches.
    pub fn unsynced(&self, frame: Frame) -> bool {
        self.sync_bit(frame.number())
            .is_some_and(|(word, bit)| word.load(Relaxed) & bit != 0)
    }

    /// A store of a task through its own mapping: as
    /// [`PhysMemory::write`], without marking the frame unsynced.
    pub fn write_user(&self, addr: PhysAddr, data: &[u8]) {
        self.store_bytes(addr, data);
    }

    fn store_bytes(&self, addr: PhysAddr, data: &[u8]) {
        let mut off = 0usize;
        while off < data.len() {
            let a = addr.as_u64() + off as u64;
            let b = (a % 8) as usize;
            let n = (8 - b).min(data.len() - off);
            let w = self.word(a);
            if n == 8 {
                w.store(
                    u64::from_le_bytes(data[off..off + 8].try_into().unwrap()),
                    Relaxed,
                );
            } else {
                let _ = w.fetch_update(Relaxed, Relaxed, |old| {
                    let mut v = old.to_le_bytes();
                    v[b..b + n].copy_from_slice(&data[off..off + n]);
                    Some(u64::from_le_bytes(v))
                });
            }
            off += n;
        }
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.words.len() as u64 * 8
    }

    /// Number of frames.
    pub fn frames(&self) -> u64 {
        self.size() / PAGE_SIZE
    }

    #[inline]
    fn word(&self, addr: u64) -> &AtomicU64 {
        match self.words.get((addr / 8) as usize) {
            Some(w) => w,
            None => panic!("physical address {addr:#x} beyond the end of simulated memory"),
        }
    }
}

// SAFETY: every access goes to this array's words (an address past its end
// panics in `word`; `frame_words` lends a frame's own words or none), stores
// and the compare-and-swap are single atomic operations with release/acquire
// ordering, and the array is reached only through this trait and the
// simulated MMU's atomic loads.
unsafe impl PhysMemory for PhysMem {
    #[inline]
    fn frame_words(&self, frame: Frame) -> Option<&[AtomicU64; WORDS_PER_FRAME]> {
        let first = usize::try_from(frame.number())
            .ok()?
            .checked_mul(WORDS_PER_FRAME)?;
        self.words
            .get(first..first.checked_add(WORDS_PER_FRAME)?)?
            .try_into()
            .ok()
    }

    fn read(&self, addr: PhysAddr, buf: &mut [u8]) {
        let mut off = 0usize;
        while off < buf.len() {
            let a = addr.as_u64() + off as u64;
            let b = (a % 8) as usize;
            let n = (8 - b).min(buf.len() - off);
            let v = self.word(a).load(Relaxed).to_le_bytes();
            buf[off..off + n].copy_from_slice(&v[b..b + n]);
            off += n;
        }
    }

    fn write(&self, addr: PhysAddr, data: &[u8]) {
        self.store_bytes(addr, data);
        self.mark_unsynced(addr, data.len());
    }

    #[inline]
    fn read_u64(&self, addr: PhysAddr) -> u64 {
        debug_assert_eq!(addr.as_u64() % 8, 0);
        // Acquire pairs with the release store of an entry, so a walker that
        // sees a new entry also sees the table it points to zeroed.
        self.word(addr.as_u64()).load(Acquire)
    }

    #[inline]
    fn write_u64(&self, addr: PhysAddr, value: u64) {
        debug_assert_eq!(addr.as_u64() % 8, 0);
        self.word(addr.as_u64()).store(value, Release);
    }

    fn compare_exchange_u64(&self, addr: PhysAddr, current: u64, new: u64) -> Result<u64, u64> {
        debug_assert_eq!(addr.as_u64() % 8, 0);
        // Release publishes the zeroed table to walkers (their loads are
        // acquire); acquire on failure lets the loser use the winner's.
        self.word(addr.as_u64())
            .compare_exchange(current, new, AcqRel, Acquire)
    }

    fn zero_frame(&self, frame: Frame) {
        let first = (frame.start().as_u64() / 8) as usize;
        for w in &self.words[first..first + (PAGE_SIZE / 8) as usize] {
            w.store(0, Relaxed);
        }
        self.mark_unsynced(frame.start(), PAGE_SIZE as usize);
    }

    fn copy_frame(&self, dst: Frame, src: Frame) {
        let (d, s) = (
            (dst.start().as_u64() / 8) as usize,
            (src.start().as_u64() / 8) as usize,
        );
        for i in 0..(PAGE_SIZE / 8) as usize {
            self.words[d + i].store(self.words[s + i].load(Relaxed), Relaxed);
        }
        self.mark_unsynced(dst.start(), PAGE_SIZE as usize);
    }

    fn sync_icache(&self, frame: Frame) {
        if self.take_unsynced(frame.number()) {
            self.sync_rounds.fetch_add(1, Relaxed);
        }
    }

    fn sync_icache_frames(&self, frames: &mut dyn Iterator<Item = Frame>) {
        // Every frame's bit is taken (no short cut): one round for them all.
        let synced = frames.fold(false, |any, f| self.take_unsynced(f.number()) | any);
        if synced {
            self.sync_rounds.fetch_add(1, Relaxed);
        }
    }
}
