//! Prints, and shows that bad pointers handed to the kernel fail cleanly.
#![no_std]
#![no_main]

use aspace_user::*;

#[no_mangle]
fn main(arg: u64) -> i32 {
    println!("hello from ring 3 (arg {arg}, cpu {})", cpu());
    let r = print_raw(core::ptr::null(), 16);
    println!("print(NULL) = {r}");
    let r = print_raw(0xffff_8000_0000_0000 as *const u8, 16);
    println!("print(kernel address) = {r}");
    let r = print_raw(0x7000_0000 as *const u8, 16);
    println!("print(unmapped) = {r}");
    0
}
