//! A small, valid x86_64 ELF64 executable built in memory, so that the demo
//! and `elf TASK builtin` need no file.
//!
//! Layout (`ET_EXEC`, three `PT_LOAD` segments):
//!
//! | segment | vaddr      | file offset | filesz  | memsz   | rights |
//! |---------|------------|-------------|---------|---------|--------|
//! | text    | `0x400000` | `0x0`       | `0x2000`| `0x2000`| R+X    |
//! | rodata  | `0x402000` | `0x2000`    | `0x1000`| `0x1000`| R      |
//! | data    | `0x404000` | `0x3000`    | `0x1800`| `0x4800`| R+W    |
//!
//! The text segment holds the headers and, at the entry point `0x401000`, a
//! real program (`write(1, msg, len); exit(0)`); rodata holds the message;
//! data starts with [`DATA_MAGIC`], and its last `0x3000` bytes are bss.
//!
//! Section headers name what the segments hold, as a linker's would:
//! `.text` (the program), `.rodata` (the message), `.data` and `.bss`,
//! with their names in `.shstrtab`; the table and the names sit in the
//! text segment's padding, before the program.

/// First address of the text segment (ELF headers included).
pub const TEXT: u64 = 0x40_0000;
/// The entry point.
pub const ENTRY: u64 = 0x40_1000;
/// First address of the read-only data segment.
pub const RODATA: u64 = 0x40_2000;
/// First address of the data segment.
pub const DATA: u64 = 0x40_4000;
/// First byte of bss (end of the data segment's file part).
pub const BSS: u64 = DATA + DATA_FILESZ;
/// One past the data segment's last byte.
pub const DATA_END: u64 = DATA + DATA_MEMSZ;
/// The message in rodata.
pub const MESSAGE: &str = "Hello from an ELF built inside the aspace CLI!\n";
/// The first 8 bytes of the data segment.
pub const DATA_MAGIC: u64 = 0x00C0_FFEE_5EED_AB1E;
/// The first instruction byte at the entry point (`lea rsi, [rip+..]`
/// starts with a REX.W prefix).
pub const ENTRY_BYTE: u8 = 0x48;

const DATA_FILESZ: u64 = 0x1800;
const DATA_MEMSZ: u64 = 0x4800;
const FILE_LEN: usize = 0x4800;

/// Where the section names are in the file.
const SHSTRTAB_OFF: usize = 0x200;
/// Where the section header table is in the file.
const SHDRS_OFF: usize = 0x240;
/// The section names, each ending in a NUL.
const SHSTRTAB: &[u8] = b"\0.text\0.rodata\0.data\0.bss\0.shstrtab\0";

const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;

struct Shdr {
    name: &'static str,
    kind: u32,
    flags: u64,
    addr: u64,
    offset: u64,
    size: u64,
}

/// Where `name` starts in [`SHSTRTAB`].
fn name_at(name: &str) -> u32 {
    let mut at = 0;
    for n in SHSTRTAB.split(|&b| b == 0) {
        if n == name.as_bytes() {
            return at as u32;
        }
        at += n.len() + 1;
    }
    0
}

struct Phdr {
    flags: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
    memsz: u64,
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

/// The program at the entry point: `write(1, MESSAGE, len); exit(0)`.
fn code() -> Vec<u8> {
    let mut c = Vec::new();
    // lea rsi, [rip + disp32]  (7 bytes; disp from the next instruction)
    let disp = (RODATA - (ENTRY + 7)) as u32;
    c.extend_from_slice(&[0x48, 0x8d, 0x35]);
    c.extend_from_slice(&disp.to_le_bytes());
    c.extend_from_slice(&[0xbf, 1, 0, 0, 0]); // mov edi, 1
    c.push(0xba); // mov edx, len
    c.extend_from_slice(&(MESSAGE.len() as u32).to_le_bytes());
    c.extend_from_slice(&[0xb8, 1, 0, 0, 0]); // mov eax, 1 (write)
    c.extend_from_slice(&[0x0f, 0x05]); // syscall
    c.extend_from_slice(&[0xb8, 60, 0, 0, 0]); // mov eax, 60 (exit)
    c.extend_from_slice(&[0x31, 0xff]); // xor edi, edi
    c.extend_from_slice(&[0x0f, 0x05]); // syscall
    c
}

/// The executable's bytes.
pub fn builtin_elf() -> Vec<u8> {
    let mut f = vec![0u8; FILE_LEN];
    let phdrs = [
        Phdr {
            flags: PF_R | PF_X,
            offset: 0,
            vaddr: TEXT,
            filesz: 0x2000,
            memsz: 0x2000,
        },
        Phdr {
            flags: PF_R,
            offset: 0x2000,
            vaddr: RODATA,
            filesz: 0x1000,
            memsz: 0x1000,
        },
        Phdr {
            flags: PF_R | PF_W,
            offset: 0x3000,
            vaddr: DATA,
            filesz: DATA_FILESZ,
            memsz: DATA_MEMSZ,
        },
    ];
    // Sections (after the null section at index 0): SHT_PROGBITS 1,
    // SHT_STRTAB 3, SHT_NOBITS 8; SHF_WRITE 1, SHF_ALLOC 2, SHF_EXECINSTR 4.
    let shdrs = [
        Shdr {
            name: ".text",
            kind: 1,
            flags: 2 | 4,
            addr: ENTRY,
            offset: ENTRY - TEXT,
            size: code().len() as u64,
        },
        Shdr {
            name: ".rodata",
            kind: 1,
            flags: 2,
            addr: RODATA,
            offset: 0x2000,
            size: MESSAGE.len() as u64,
        },
        Shdr {
            name: ".data",
            kind: 1,
            flags: 1 | 2,
            addr: DATA,
            offset: 0x3000,
            size: DATA_FILESZ,
        },
        Shdr {
            name: ".bss",
            kind: 8,
            flags: 1 | 2,
            addr: BSS,
            offset: 0x3000 + DATA_FILESZ,
            size: DATA_MEMSZ - DATA_FILESZ,
        },
        Shdr {
            name: ".shstrtab",
            kind: 3,
            flags: 0,
            addr: 0,
            offset: SHSTRTAB_OFF as u64,
            size: SHSTRTAB.len() as u64,
        },
    ];
    // ELF header.
    put(&mut f, 0, &[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]); // 64-bit, LE, v1, SysV
    put(&mut f, 16, &2u16.to_le_bytes()); // e_type: ET_EXEC
    put(&mut f, 18, &62u16.to_le_bytes()); // e_machine: EM_X86_64
    put(&mut f, 20, &1u32.to_le_bytes()); // e_version
    put(&mut f, 24, &ENTRY.to_le_bytes()); // e_entry
    put(&mut f, 32, &64u64.to_le_bytes()); // e_phoff
    put(&mut f, 40, &(SHDRS_OFF as u64).to_le_bytes()); // e_shoff
    put(&mut f, 48, &0u32.to_le_bytes()); // e_flags
    put(&mut f, 52, &64u16.to_le_bytes()); // e_ehsize
    put(&mut f, 54, &56u16.to_le_bytes()); // e_phentsize
    put(&mut f, 56, &(phdrs.len() as u16).to_le_bytes()); // e_phnum
    put(&mut f, 58, &64u16.to_le_bytes()); // e_shentsize
    put(&mut f, 60, &((shdrs.len() + 1) as u16).to_le_bytes()); // e_shnum
    put(&mut f, 62, &(shdrs.len() as u16).to_le_bytes()); // e_shstrndx: the last
    for (i, p) in phdrs.iter().enumerate() {
        let at = 64 + i * 56;
        put(&mut f, at, &1u32.to_le_bytes()); // PT_LOAD
        put(&mut f, at + 4, &p.flags.to_le_bytes());
        put(&mut f, at + 8, &p.offset.to_le_bytes());
        put(&mut f, at + 16, &p.vaddr.to_le_bytes());
        put(&mut f, at + 24, &p.vaddr.to_le_bytes()); // p_paddr
        put(&mut f, at + 32, &p.filesz.to_le_bytes());
        put(&mut f, at + 40, &p.memsz.to_le_bytes());
        put(&mut f, at + 48, &0x1000u64.to_le_bytes()); // p_align
    }
    put(&mut f, SHSTRTAB_OFF, SHSTRTAB);
    for (i, sh) in shdrs.iter().enumerate() {
        let at = SHDRS_OFF + (i + 1) * 64; // entry 0 stays all zero
        put(&mut f, at, &name_at(sh.name).to_le_bytes());
        put(&mut f, at + 4, &sh.kind.to_le_bytes());
        put(&mut f, at + 8, &sh.flags.to_le_bytes());
        put(&mut f, at + 16, &sh.addr.to_le_bytes());
        put(&mut f, at + 24, &sh.offset.to_le_bytes());
        put(&mut f, at + 32, &sh.size.to_le_bytes());
        put(&mut f, at + 48, &1u64.to_le_bytes()); // sh_addralign
    }
    // Text: the program, then int3 up to the end of the segment.
    let entry_off = (ENTRY - TEXT) as usize;
    let code = code();
    f[entry_off..0x2000].fill(0xcc);
    put(&mut f, entry_off, &code);
    // Rodata: the message.
    put(&mut f, 0x2000, MESSAGE.as_bytes());
    // Data: magic, then a recognisable pattern in the file part.
    put(&mut f, 0x3000, &DATA_MAGIC.to_le_bytes());
    for (i, b) in f[0x3008..0x3000 + DATA_FILESZ as usize]
        .iter_mut()
        .enumerate()
    {
        *b = (i % 251) as u8 + 1;
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_elf_parses_into_three_segments() {
        let bytes = builtin_elf();
        let (entry, bias, segs) =
            aspace::loader::parse(&bytes, None, 0x0000_8000_0000_0000).expect("valid ELF");
        assert_eq!(entry.as_u64(), ENTRY);
        assert_eq!(bias, 0);
        assert_eq!(segs.len(), 3);
        assert_eq!(segs[2].vaddr + segs[2].memsz, DATA_END);
        assert_eq!(bytes[(ENTRY - TEXT) as usize], ENTRY_BYTE);
    }
}
