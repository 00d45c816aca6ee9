//! `aspace`: runs the built-in demo on the simulated machine and prints the
//! address-space map and counters.

use std::process::ExitCode;

use aspace::{AreaFlags, VirtAddr, PAGE_SIZE};
use aspace_sim::{Sim, SimConfig};

fn main() -> ExitCode {
    match demo() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aspace: demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(ok: bool, what: &str) -> Result<(), String> {
    if ok {
        println!("  ok: {what}");
        Ok(())
    } else {
        Err(format!("check failed: {what}"))
    }
}

fn demo() -> Result<(), String> {
    let sim = Sim::new(SimConfig::default()).map_err(|e| e.to_string())?;
    let baseline = sim.frames_in_use();
    let space = sim.system().create().map_err(|e| e.to_string())?;
    let heap = VirtAddr::new(0x1000_0000);
    let rw = AreaFlags::READ | AreaFlags::WRITE;
    println!("== creating a 16-page heap at {heap}");
    space.area_create(heap, 16 * PAGE_SIZE, rw).map_err(|e| e.to_string())?;
    let mut cpu = sim.cpu(0);
    cpu.switch_to(&space).map_err(|e| e.to_string())?;
    println!("== touching 8 pages through the simulated MMU");
    for i in 0..8 {
        cpu.write_u64(VirtAddr::new(heap.as_u64() + i * PAGE_SIZE), i * 11)
            .map_err(|e| e.to_string())?;
    }
    let read = cpu.read_u64(VirtAddr::new(heap.as_u64() + 7 * PAGE_SIZE)).map_err(|e| e.to_string())?;
    check(read == 77, "data read back through the MMU")?;
    print!("{}", space.map());
    println!("== shrinking the heap to 4 pages");
    cpu.run(|| space.area_resize(heap, 4 * PAGE_SIZE)).map_err(|e| e.to_string())?;
    check(space.resident_pages() == 4, "pages above the new end unmapped")?;
    print!("{}", space.map());
    println!("== a write outside the heap is refused");
    let fault = cpu.write_u64(VirtAddr::new(heap.as_u64() + 4 * PAGE_SIZE), 1);
    check(fault.is_err(), "write past the end faults")?;
    if let Err(f) = fault {
        println!("  {f}");
    }
    drop(cpu);
    drop(space);
    check(sim.frames_in_use() == baseline, "every frame back after destroy")?;
    let s = sim.system().stats();
    println!(
        "faults served {}  frames released {}  shootdown rounds {}  IPIs {}  ASID steals {}",
        s.faults_resolved, s.frames_released, s.shootdown_rounds, s.ipis, s.asid_steals
    );
    Ok(())
}
