//! The built-in demo, written as a scenario (so `aspace demo
//! --print-scenario` shows it in the same format `aspace run` reads) and
//! sized to the machine: it uses every CPU it can and one more task than
//! there are ASIDs, plus one.

use std::fmt::Write;

use crate::elfgen::{self, BSS, DATA, DATA_MAGIC, ENTRY, ENTRY_BYTE, MESSAGE, RODATA};
use crate::engine::MachineSpec;

/// Keeps track of which CPU runs which task while the script is written,
/// so each access is made by a task that runs somewhere.
struct Gen {
    s: String,
    running: Vec<Option<String>>,
}

impl Gen {
    fn line(&mut self, l: &str) {
        self.s.push_str(l);
        self.s.push('\n');
    }

    fn run(&mut self, cpu: usize, task: &str, why: &str) {
        let cpu = cpu.min(self.running.len() - 1);
        if self.running[cpu].as_deref() == Some(task) {
            return;
        }
        self.running[cpu] = Some(task.to_string());
        if why.is_empty() {
            self.line(&format!("cpu {cpu} run {task}"));
        } else {
            self.line(&format!("{:<44}# {why}", format!("cpu {cpu} run {task}")));
        }
    }

    /// Makes sure `task` runs on some CPU, switching `cpu` to it if not.
    fn ensure(&mut self, cpu: usize, task: &str) {
        if !self.running.iter().any(|r| r.as_deref() == Some(task)) {
            self.run(cpu, task, "");
        }
    }

    fn c(&mut self, l: &str, comment: &str) {
        let gap = if l.len() >= 44 { " " } else { "" };
        self.line(&format!("{l:<44}{gap}# {comment}"));
    }
}

/// The demo scenario for a machine of `spec`'s size.
pub fn scenario(spec: &MachineSpec) -> String {
    let cpus = spec.cpus;
    let layout = spec.arch.layout();
    let kernel = layout.kernel_start;
    let mut g = Gen {
        s: String::new(),
        running: vec![None; cpus],
    };
    let _ = writeln!(
        g.s,
        "# The built-in demo of `aspace` (aspace demo --print-scenario prints it).\n\
         # Written for a machine of {} CPUs and {} ASIDs ({}); run it with\n\
         # `aspace run FILE` on a machine at least that size (--arch {}).\n",
        cpus, spec.asids, spec.arch, spec.arch
    );
    let (logger_cpu, viewer_cpu) = (2.min(cpus - 1), 3.min(cpus - 1));

    g.line("say 1. An ELF executable, loaded on demand");
    g.c("task init", "a new, empty address space");
    g.c(
        "elf init builtin",
        "a small ELF built in memory: text r-x, rodata r--, data rw- + bss",
    );
    g.c("map init", "three areas, nothing resident yet");
    g.run(0, "init", "CPU 0 starts running init: it gets an ASID");
    g.c(
        &format!("fetch init {ENTRY:#x} expect {ENTRY_BYTE:#x}"),
        "the first instruction: one fault maps the image's own frame",
    );
    g.c(
        &format!(
            "read init {RODATA:#x} str {} expect {:?}",
            MESSAGE.len(),
            MESSAGE
        ),
        "read-only data, also the image's frame",
    );
    g.c(
        &format!("read init {DATA:#x} u64 expect {DATA_MAGIC:#x}"),
        "initialised data: a private copy",
    );
    g.c(
        &format!("read init {:#x} u64 expect 0", BSS + 0x1000),
        "bss: a zero-filled frame",
    );
    g.c(
        &format!("write init {BSS:#x} u64 7"),
        "the page holding the end of the data and the start of bss",
    );
    g.line("check resident init == 5");
    g.line("map init");

    g.line("\nsay 2. Bad accesses are refused");
    g.c("fault init 0x0 read expect no-area", "NULL");
    g.c(
        &format!("fault init {kernel:#x} read expect no-area"),
        "the kernel's half",
    );
    g.c(
        &format!("fault init {ENTRY:#x} write expect access"),
        "text is read-only",
    );
    g.c(
        &format!("fault init {DATA:#x} exec expect access"),
        "data is not executable",
    );
    g.c(
        &format!(
            "fault init {:#x} read expect no-area",
            elfgen::DATA_END + 0x1000
        ),
        "past the end of the data",
    );

    g.line("\nsay 3. A heap placed anywhere, grown and shrunk (area_resize)");
    g.c(
        "area init any 4p rw above 0x10000000 heap",
        "the lowest free place at or above the bound (HelenOS AS_AREA_ANY)",
    );
    if cpus > 1 {
        g.run(1, "init", "a second thread of init, on CPU 1");
    }
    g.c("touch init 0x10000000 4p write", "four faults, four frames");
    g.c("resize init 0x10000000 64p", "grow: no frame until touched");
    g.c("touch init 0x10000000 64p write", "sixty more faults");
    g.c(
        "resize init 0x10000000 8p",
        "shrink: one shootdown (an IPI to the other thread's CPU), frames back",
    );
    g.line("check resident init 0x10000000 == 8");
    g.c(
        "fault init 0x10008000 write expect no-area",
        "above the new end",
    );
    g.c(
        "area init any 2p r above 0x10000000 table",
        "placed anywhere again: just above the heap",
    );
    g.line("map init");

    g.line("\nsay 4. A stack that grows by faults, downwards, over a guard page");
    let stack_top = layout.user_end;
    let stack = stack_top - 2 * 0x1000;
    g.c(
        &format!("area init {stack:#x} 2p rw grows-down stack"),
        "2 pages at the top of user space, a guard page below",
    );
    for i in 0..6u64 {
        let a = stack_top - 8 - i * 0x1000;
        let why = match i {
            0 => "each push onto a new page: one fault, one frame",
            2 => "a push into the guard page: the stack grows down a page",
            _ => "",
        };
        if why.is_empty() {
            g.line(&format!("write init {a:#x} u64 {}", 100 + i));
        } else {
            g.c(&format!("write init {a:#x} u64 {}", 100 + i), why);
        }
    }
    let grown = stack_top - 6 * 0x1000;
    g.line(&format!("check resident init {grown:#x} == 6"));
    g.c(
        &format!("read init {:#x} u64 expect 100", stack_top - 8),
        "the first push, still there",
    );
    let guarded = stack_top - 64 * 0x1000;
    g.c(
        &format!("area init {guarded:#x} 4p rw guard fixed-stack"),
        "a stack that does not grow: its guard page only refuses",
    );
    g.c(
        &format!("fault init {:#x} write expect guard", guarded - 8),
        "an overflow, told apart from a stray access",
    );
    g.c(
        &format!(
            "area init {:#x} 1p rw expect EADDRNOTAVAIL",
            guarded - 0x1000
        ),
        "no other area may take the guard page",
    );

    g.line("\nsay 5. Memory reserved up front, or page by page (HelenOS reserve.c)");
    g.c(
        "area init 0x30000000 16p rw reserved",
        "16 pages reserved now against the commit limit",
    );
    g.c(
        "area init 0x30100000 16p rw late-reserve lazy",
        "reserves each page when a fault maps it",
    );
    g.c("touch init 0x30100000 2p write", "two pages reserved");
    g.c(
        "area init 0x30200000 16p r reserve-on-write arena",
        "page by page until given write (Linux's charge at mprotect)",
    );
    g.c("touch init 0x30200000 1p read", "one page reserved");
    g.c(
        "flags init 0x30200000 rw",
        "given write: the other 15 pages reserved now",
    );
    g.c("map init", "the Resv. column: 16, 2 and 16");
    g.line("destroy init 0x30000000");
    g.line("destroy init 0x30100000");
    g.line("destroy init 0x30200000");

    g.line("\nsay 6. A user-space pager serves a file (HelenOS backend_user.c)");
    g.c(
        "pager books file \"It was a dark and stormy page fault.\"",
        "a pager task: it answers page-ins from its own memory",
    );
    g.c(
        "area init 0x40000000 1p r pager books novel",
        "pages come from the pager, on demand",
    );
    g.c(
        "read init 0x40000012 str 6 expect \"stormy\"",
        "one fault, one page-in, the pager's own frame mapped",
    );
    g.c("pager books kill", "the pager dies");
    g.line("destroy init 0x40000000");

    g.line("\nsay 7. Memory shared between two tasks (area_share)");
    g.line("task logger");
    g.run(logger_cpu, "logger", "");
    g.ensure(0, "init");
    g.line("area init 0x20000000 4p rw ring");
    g.c(
        "write init 0x20000000 str \"ping from init\"",
        "written before the share",
    );
    g.c(
        "share init 0x20000000 logger 0x30000000 rw",
        "logger maps the same frames elsewhere",
    );
    g.ensure(logger_cpu, "logger");
    g.line("read logger 0x30000000 str 14 expect \"ping from init\"");
    g.c(
        "write logger 0x30001000 u64 0xfeed",
        "a page first touched after the share",
    );
    g.ensure(0, "init");
    g.c(
        "read init 0x20001000 u64 expect 0xfeed",
        "init sees it: same frame",
    );
    g.line("task viewer");
    g.c(
        "share init 0x20000000 viewer 0x40000000 r",
        "a read-only view for a third task",
    );
    g.run(viewer_cpu, "viewer", "");
    g.line("read viewer 0x40001000 u64 expect 0xfeed");
    g.line("fault viewer 0x40000000 write expect access");
    g.line("map init logger viewer");

    g.line("\nsay 8. Rights changed: RW -> RX, then fetched (a tiny JIT)");
    g.ensure(0, "init");
    g.line("area init 0x50000000 1p rw jit");
    g.c("write init 0x50000000 u8 0xc3", "emit `ret`");
    g.c(
        "flags init 0x50000000 rx",
        "unmap, shoot down, map back r-x",
    );
    g.c("fetch init 0x50000000 expect 0xc3", "execute it");
    g.c(
        "fault init 0x50000000 write expect access",
        "no longer writable",
    );
    g.line("snapshot The demo's tasks after steps 1-6");

    g.line("\nsay 9. init forks: private pages copy-on-write (System::fork)");
    g.ensure(0, "init");
    g.c(
        "fork init child",
        "same areas; private frames read-only in both, no data copied",
    );
    let child_cpu = 1.min(cpus - 1);
    g.run(child_cpu, "child", "");
    g.c(
        &format!("read child {BSS:#x} u64 expect 7"),
        "init's data, through init's frame",
    );
    g.c(
        &format!("write child {BSS:#x} u64 8"),
        "the first write copies that one page",
    );
    g.ensure(0, "init");
    g.c(
        &format!("read init {BSS:#x} u64 expect 7"),
        "init keeps its own",
    );
    g.ensure(child_cpu, "child");
    g.c(
        "write child 0x20002000 u64 0xbeef",
        "the ring is a shared area: shared by the child too",
    );
    g.ensure(logger_cpu, "logger");
    g.line("read logger 0x30002000 u64 expect 0xbeef");
    g.c(
        "exit child",
        "its copies freed; frames init still maps stay",
    );
    g.running.iter_mut().for_each(|r| {
        if r.as_deref() == Some("child") {
            *r = None;
        }
    });

    let workers = spec.asids as usize + 2;
    // Each worker needs a page table (PML4 .. PT) and one data frame.
    let frames_needed = workers as u64 * 6 + 512;
    g.line(&format!(
        "\nsay 10. ASIDs recycled: {workers} more tasks, {} ASIDs",
        spec.asids
    ));
    if frames_needed > spec.memory / 4096 {
        g.line(&format!(
            "say (skipped: {workers} tasks need more memory than --memory gives; \
             lower --asids or raise --memory)"
        ));
    } else {
        for i in 0..workers {
            if i == 2 {
                g.c("echo off", "the rest alike, quietly");
            }
            let w = format!("w{i}");
            g.line(&format!("task {w}"));
            g.line(&format!("area {w} 0x10000000 1p rw"));
            g.run(i % cpus, &w, "");
            g.line(&format!("write {w} 0x10000000 u64 {}", 1000 + i));
        }
        g.line("echo on");
        g.c(
            "check asid_steals >= 2",
            "more tasks than ASIDs: inactive ones lost theirs",
        );
        g.c(
            "cpu 0 run w0",
            "w0 runs again: it takes an ASID back (another steal)",
        );
        g.running[0] = Some("w0".into());
        g.c(
            "read w0 0x10000000 u64 expect 1000",
            "its memory is intact: only TLB entries were dropped",
        );
    }

    g.line("\nsay 11. Every task destroyed, every frame back");
    if frames_needed <= spec.memory / 4096 {
        for i in 0..workers {
            if i == 1 {
                g.line("echo off");
            }
            g.line(&format!("exit w{i}"));
        }
        g.line("echo on");
    }
    g.line("exit viewer");
    g.line("exit logger");
    g.c(
        "exit init",
        "the last user of the ELF image: it is released too",
    );
    g.c("check clean", "no task, no image, every frame back");
    g.s
}
