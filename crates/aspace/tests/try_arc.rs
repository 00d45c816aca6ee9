//! `TryArc`, the fallible reference-counted box areas live in: one drop
//! with the last reference, unique access only while unique, identity.
//! Small enough for Miri.

use aspace::internals::try_arc::TryArc;
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
