//! Never ends: the scenario watchdog must end the run with a reason
//! (scenario `hang`, run only when the command line asks for it).
#![no_std]
#![no_main]

use aspace_user::*;

#[no_mangle]
fn main(_arg: u64) -> i32 {
    println!("spin: spinning for ever");
    loop {
        core::hint::spin_loop();
    }
}
