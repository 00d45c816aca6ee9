//! Share records of shared areas (HelenOS `share_info_t`): a reference
//! count and a page map from page index within the area to frame, so that
//! every sharer maps the same frames, also for pages first touched after the
//! share.

use alloc::collections::BTreeMap;

use crate::addr::Frame;
use crate::machine::Machine;

pub(crate) struct ShareState {
    /// Areas using the record.
    pub refs: usize,
    /// page index -> frame; each entry holds one frame reference.
    pub pagemap: BTreeMap<u64, Frame>,
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
    pub(crate) fn new(refs: usize, pagemap: BTreeMap<u64, Frame>, reserved: u64) -> Self {
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
    pub(crate) fn remove_reference(&self) -> Option<impl Iterator<Item = Frame>> {
        let mut st = self.state.lock();
        debug_assert!(st.refs > 0);
        st.refs -= 1;
        if st.refs == 0 {
            // Taken out whole: allocates nothing.
            Some(core::mem::take(&mut st.pagemap).into_values())
        } else {
            None
        }
    }
}
