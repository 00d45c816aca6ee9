//! Share records of shared areas (HelenOS `share_info_t`): a reference
//! count and a page map from page index within the area to frame, so that
//! every sharer maps the same frames, also for pages first touched after the
//! share.

use crate::addr::Frame;
use crate::internals::area_tree::AreaTree;
use crate::machine::Machine;

pub(crate) struct ShareState {
    /// Areas using the record.
    pub refs: usize,
    /// page index -> frame; each entry holds one frame reference.
    pub pagemap: PageMap,
}

/// A share record's page map: page index to frame, in an arena B+tree
/// (one single-page entry per page) so that room for an insertion can be
/// asked of the heap first, and refused without harm.
#[derive(Default)]
pub struct PageMap(AreaTree<Frame>);

impl PageMap {
    /// An empty map; allocates nothing.
    pub const fn new() -> Self {
        Self(AreaTree::new())
    }

    /// Makes room for `additional` more pages (so that inserting them
    /// allocates nothing); `false` (nothing changed) if the heap refuses.
    pub fn try_reserve(&mut self, additional: usize) -> bool {
        self.0.try_reserve(additional)
    }

    /// Makes sure inserting page `index` allocates nothing; `false`
    /// (nothing changed) if the heap refuses.
    pub fn try_reserve_one(&mut self, index: u64) -> bool {
        self.0.try_reserve_insertion(index)
    }

    /// The frame of page `index`.
    pub fn get(&self, index: u64) -> Option<Frame> {
        self.0.get(index).map(|(_, &f)| f)
    }

    /// Records `frame` for page `index` (not in the map yet); allocates only
    /// without room reserved first.
    pub fn insert(&mut self, index: u64, frame: Frame) {
        let added = self.0.insert(index, index + 1, frame);
        debug_assert!(added.is_ok(), "page {index} already in the page map");
    }

    /// Number of pages in the map.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every frame in the map, by page index.
    pub fn frames(&self) -> impl Iterator<Item = Frame> + '_ {
        self.0.iter().map(|(_, _, &f)| f)
    }
}

/// The share record of a group of areas.
pub struct ShareInfo<M: Machine> {
    pub(crate) state: lock_api::Mutex<M::Lock, ShareState>,
    /// Pages reserved for the group (see [`crate::reserve`]): the first
    /// area's reservation, taken over when it was first shared (shared
    /// areas cannot resize, so it never changes), given back by the last
    /// area to leave.
    reserved: u64,
}

impl<M: Machine> ShareInfo<M> {
    pub(crate) fn new(refs: usize, pagemap: PageMap, reserved: u64) -> Self {
        Self {
            state: lock_api::Mutex::new(ShareState { refs, pagemap }),
            reserved,
        }
    }

    /// Pages reserved for the group, once for all its areas.
    pub fn reserved(&self) -> u64 {
        self.reserved
    }

    /// Number of areas sharing the record.
    pub fn refs(&self) -> usize {
        self.state.lock().refs
    }

    /// Number of pages in the page map.
    pub fn pages(&self) -> usize {
        self.state.lock().pagemap.len()
    }

    /// Drops one area's reference; when it was the last, returns the frames
    /// whose page-map references are to be released (after a shootdown)
    /// (the caller then gives back the [reservation](Self::reserved)).
    pub(crate) fn remove_reference(&self) -> Option<PageMap> {
        let mut st = self.state.lock();
        debug_assert!(st.refs > 0);
        st.refs -= 1;
        if st.refs == 0 {
            // Taken out whole: allocates nothing.
            Some(core::mem::take(&mut st.pagemap))
        } else {
            None
        }
    }
}
