//! The hardware page-table walk, written independently of the core's page
//! table code so that tests check the entries the core writes against what
//! an x86_64 MMU would do with them.

use aspace::paging::x86_64::{
    table_index, PTE_ADDR_MASK, PTE_NO_EXECUTE, PTE_PRESENT, PTE_USER, PTE_WRITABLE,
};
use aspace::{Frame, Page, PhysAddr, PhysMemory};

/// The effective rights of a translation: an access needs the right at
/// every level of the walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Walk {
    /// The frame mapped.
    pub frame: Frame,
    /// Writable at every level.
    pub writable: bool,
    /// User accessible at every level.
    pub user: bool,
    /// No level forbids execution.
    pub executable: bool,
}

/// Walks the 4-level table rooted at `root` for `page`; `None` when some
/// level is not present.
pub fn walk(mem: &impl PhysMemory, root: Frame, page: Page) -> Option<Walk> {
    let mut table = root;
    let (mut writable, mut user, mut executable) = (true, true, true);
    for level in (1..=4).rev() {
        let addr = PhysAddr::new(table.start().as_u64() + table_index(page, level) * 8);
        let e = mem.read_u64(addr);
        if e & PTE_PRESENT == 0 {
            return None;
        }
        writable &= e & PTE_WRITABLE != 0;
        user &= e & PTE_USER != 0;
        executable &= e & PTE_NO_EXECUTE == 0;
        table = PhysAddr::new(e & PTE_ADDR_MASK).frame();
    }
    Some(Walk {
        frame: table,
        writable,
        user,
        executable,
    })
}
