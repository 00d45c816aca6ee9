//! Operations over any range of pages, which may cover several areas,
//! parts of areas and holes (Linux's `munmap`, `mprotect`, `mremap`,
//! `madvise`): see [`AddressSpace::unmap_range`] and the others.
