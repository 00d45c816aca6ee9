//! `TryArc`, the fallible reference-counted box areas, spaces and backends
//! live in: one drop with the last reference, unique access only while
//! unique, identity, weak references, unsized (trait-object) values.
//! Small enough for Miri.

use aspace::backend::{AreaInfo, Backend, BackendRef};
use aspace::internals::try_arc::{TryArc, Unwritten};
use aspace::{Access, Frame, FrameAllocator, Page, PhysMemory};
use aspace_sim::{FramePool, PhysMem};
use core::sync::atomic::{AtomicUsize, Ordering};

/// Counts its drops.
struct Counted<'a>(&'a AtomicUsize);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn the_value_is_dropped_once_with_the_last_reference() {
    let drops = AtomicUsize::new(0);
    let a = TryArc::try_new(Counted(&drops)).ok().unwrap();
    let clones: Vec<_> = (0..5).map(|_| a.clone()).collect();
    assert_eq!(TryArc::refs(&a), 6);
    assert!(clones.iter().all(|c| TryArc::ptr_eq(c, &a)));
    drop(clones);
    assert_eq!(drops.load(Ordering::Relaxed), 0);
    assert_eq!(TryArc::refs(&a), 1);
    drop(a);
    assert_eq!(drops.load(Ordering::Relaxed), 1);
}

#[test]
fn an_unwritten_block_holds_no_value_until_filled() {
    let drops = AtomicUsize::new(0);
    // Dropped unfilled: freed (Miri reports a leak otherwise), nothing
    // dropped in it.
    drop(Unwritten::<Counted>::try_new().unwrap());
    assert_eq!(drops.load(Ordering::Relaxed), 0);
    let block = Unwritten::try_new().unwrap();
    let a = block.fill(Counted(&drops));
    assert_eq!(TryArc::refs(&a), 1);
    let b = a.clone();
    drop(a);
    assert_eq!(drops.load(Ordering::Relaxed), 0);
    drop(b);
    assert_eq!(drops.load(Ordering::Relaxed), 1);
}

#[test]
fn recycle_drops_the_value_and_keeps_the_block_only_when_alone() {
    let drops = AtomicUsize::new(0);
    // Alone: the value dropped, its block filled again.
    let a = TryArc::try_new(Counted(&drops)).ok().unwrap();
    let block = TryArc::recycle(a).expect("the only reference");
    assert_eq!(drops.load(Ordering::Relaxed), 1);
    let b = block.fill(Counted(&drops));
    // Another strong reference: nothing dropped, the value stays.
    let c = b.clone();
    assert!(TryArc::recycle(b).is_none());
    assert_eq!(drops.load(Ordering::Relaxed), 1);
    assert_eq!(TryArc::refs(&c), 1);
    // A weak reference: the value is dropped (the last strong one went),
    // the block stays for the weak one, which no longer upgrades and frees
    // it when dropped (Miri reports a leak or a double free otherwise).
    let weak = TryArc::downgrade(&c);
    assert!(TryArc::recycle(c).is_none());
    assert_eq!(drops.load(Ordering::Relaxed), 2);
    assert!(weak.upgrade().is_none());
    drop(weak);
}

#[test]
fn take_unique_owns_the_value_only_when_alone() {
    let drops = AtomicUsize::new(0);
    // Another strong reference: the handle comes back, nothing dropped.
    let a = TryArc::try_new((Counted(&drops), 5u64)).ok().unwrap();
    let b = a.clone();
    let a = TryArc::take_unique(a).err().expect("two references");
    drop(b);
    // Alone: changed in place without a lock, then dropped with the block.
    let mut u = TryArc::take_unique(a).ok().expect("the only reference");
    u.1 += 1;
    assert_eq!(u.1, 6);
    assert_eq!(drops.load(Ordering::Relaxed), 0);
    drop(u);
    assert_eq!(drops.load(Ordering::Relaxed), 1);
    // Alone, recycled: the value dropped, the block filled again.
    let c = TryArc::try_new((Counted(&drops), 1u64)).ok().unwrap();
    let block = TryArc::take_unique(c)
        .ok()
        .unwrap()
        .recycle()
        .expect("no weak one");
    assert_eq!(drops.load(Ordering::Relaxed), 2);
    let d = block.fill((Counted(&drops), 2u64));
    // A weak reference: no upgrade once the value is owned; the block stays
    // for it (recycle gives none) and goes with it (Miri checks the free).
    let weak = TryArc::downgrade(&d);
    let u = TryArc::take_unique(d).ok().expect("weak ones do not count");
    assert!(weak.upgrade().is_none());
    assert!(u.recycle().is_none());
    assert_eq!(drops.load(Ordering::Relaxed), 3);
    drop(weak);
}

#[test]
fn get_mut_only_while_unique() {
    let mut a = TryArc::try_new(7u64).ok().unwrap();
    *TryArc::get_mut(&mut a).unwrap() += 1;
    let b = a.clone();
    assert!(TryArc::get_mut(&mut a).is_none());
    drop(b);
    assert_eq!(*TryArc::get_mut(&mut a).unwrap(), 8);
    let other = TryArc::try_new(8u64).ok().unwrap();
    assert!(!TryArc::ptr_eq(&a, &other));
    assert_eq!(*a, *other);
}

#[test]
fn zero_sized_and_large_values() {
    let unit = TryArc::try_new(()).ok().unwrap();
    let _u2 = unit.clone();
    let big = TryArc::try_new([3u8; 4096]).ok().unwrap();
    assert!(big.iter().all(|&b| b == 3));
}

#[test]
fn weak_references_upgrade_only_while_the_value_lives() {
    let drops = AtomicUsize::new(0);
    let a = TryArc::try_new(Counted(&drops)).ok().unwrap();
    let w = TryArc::downgrade(&a);
    let w2 = w.clone();
    assert_eq!(w.strong_count(), 1);
    assert_eq!(w.as_ptr(), TryArc::as_ptr(&a));
    let mut b = w.upgrade().expect("alive");
    assert_eq!(TryArc::refs(&a), 2);
    drop(a);
    // A weak reference alone makes no handle unique.
    assert!(TryArc::get_mut(&mut b).is_none());
    drop(b);
    assert_eq!(drops.load(Ordering::Relaxed), 1);
    assert_eq!(w.strong_count(), 0);
    assert!(w.upgrade().is_none());
    drop(w);
    assert!(w2.upgrade().is_none());
    drop(w2);
    let mut c = TryArc::try_new(5u32).ok().unwrap();
    drop(TryArc::downgrade(&c));
    assert_eq!(TryArc::get_mut(&mut c), Some(&mut 5));
}

#[test]
fn into_inner_and_try_unwrap_give_the_value_back_once() {
    let a = TryArc::try_new(String::from("x")).ok().unwrap();
    let b = a.clone();
    let w = TryArc::downgrade(&a);
    let a = TryArc::try_unwrap(a).expect_err("two references");
    assert_eq!(TryArc::into_inner(a), None);
    assert_eq!(TryArc::into_inner(b).as_deref(), Some("x"));
    assert!(w.upgrade().is_none());
    let c = TryArc::try_new(vec![1u8, 2]).ok().unwrap();
    assert_eq!(TryArc::try_unwrap(c).ok(), Some(vec![1, 2]));
    let made = TryArc::try_new_with(|| Ok(7u64)).unwrap();
    assert_eq!(*made, 7);
    let refused = TryArc::<u64>::try_new_with(|| Err(aspace::Error::NotSupported));
    assert_eq!(refused.err(), Some(aspace::Error::NotSupported));
}

/// Drops of [`Loud`] (only the unsized test makes them).
static LOUD_DROPS: AtomicUsize = AtomicUsize::new(0);

/// A backend that counts its drops, with a large alignment (the value's
/// offset in the block depends on it, and so does the block's layout).
#[repr(align(64))]
struct Loud {
    word: u64,
}

impl<P: PhysMemory, F: FrameAllocator> Backend<P, F> for Loud {
    fn name(&self) -> &'static str {
        if self.word == 42 {
            "loud"
        } else {
            "quiet"
        }
    }

    fn page_fault(&self, _: &P, _: &F, _: &AreaInfo, _: Page, _: Access) -> aspace::Result<Frame> {
        Err(aspace::Error::NotSupported)
    }
}

impl Drop for Loud {
    fn drop(&mut self) {
        LOUD_DROPS.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn an_unsized_value_is_dropped_and_freed_with_its_own_layout() {
    let typed = TryArc::try_new(Loud { word: 42 }).ok().unwrap();
    let addr = TryArc::as_ptr(&typed) as *const u8;
    let dynamic: BackendRef<PhysMem, FramePool> = TryArc::into_backend(typed);
    let counted = dynamic.as_counted().unwrap();
    assert_eq!(TryArc::as_ptr(counted) as *const u8, addr);
    assert_eq!(dynamic.name(), "loud");
    let clone = dynamic.clone();
    assert!(BackendRef::ptr_eq(&clone, &dynamic));
    assert_eq!(TryArc::refs(clone.as_counted().unwrap()), 2);
    drop(dynamic);
    assert_eq!(LOUD_DROPS.load(Ordering::Relaxed), 0);
    drop(clone);
    assert_eq!(LOUD_DROPS.load(Ordering::Relaxed), 1);
    // Made directly as a trait object; unique access through it.
    let mut made: BackendRef<PhysMem, FramePool> = TryArc::try_backend(Loud { word: 1 }).unwrap();
    let unique = TryArc::get_mut(made.as_counted_mut().unwrap());
    assert_eq!(unique.map(|b| b.name()), Some("quiet"));
    drop(made);
    assert_eq!(LOUD_DROPS.load(Ordering::Relaxed), 2);
}

#[test]
fn stateless_backends_are_not_counted_and_stay_apart() {
    use aspace::backend::{AnonBackend, GuardBackend};
    let anon = BackendRef::<PhysMem, FramePool>::stateless(AnonBackend);
    let guard = BackendRef::<PhysMem, FramePool>::stateless(GuardBackend);
    assert!(anon.as_counted().is_none());
    assert!(anon.is_stateless() && guard.is_stateless());
    // Two handles made apart on one type are one backend.
    assert!(BackendRef::ptr_eq(
        &anon,
        &BackendRef::stateless(AnonBackend)
    ));
    let copy = anon.clone();
    assert!(BackendRef::ptr_eq(&copy, &anon));
    assert_eq!(copy.name(), "anon");
    // Both are zero-sized, at one address: still two backends.
    assert!(!BackendRef::ptr_eq(&anon, &guard));
    assert_eq!(guard.name(), GuardBackend::NAME);
    let counted: BackendRef<PhysMem, FramePool> = TryArc::try_backend(AnonBackend).unwrap();
    assert!(!BackendRef::ptr_eq(&counted, &anon));
    assert!(!counted.is_stateless());
    // A zero-sized static is one too, as far as what it says goes.
    static GUARD: GuardBackend = GuardBackend;
    assert!(BackendRef::<PhysMem, FramePool>::of_static(&GUARD).is_stateless());
}
