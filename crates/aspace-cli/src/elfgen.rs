//! A small, valid x86_64 ELF64 executable built in memory, so that the demo
//! and `elf TASK builtin` need no file.
//!
//! Layout (`ET_EXEC`, three `PT_LOAD` segments, no sections):
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

const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;

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
    // ELF header.
    put(&mut f, 0, &[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]); // 64-bit, LE, v1, SysV
    put(&mut f, 16, &2u16.to_le_bytes()); // e_type: ET_EXEC
    put(&mut f, 18, &62u16.to_le_bytes()); // e_machine: EM_X86_64
    put(&mut f, 20, &1u32.to_le_bytes()); // e_version
    put(&mut f, 24, &ENTRY.to_le_bytes()); // e_entry
    put(&mut f, 32, &64u64.to_le_bytes()); // e_phoff
    put(&mut f, 40, &0u64.to_le_bytes()); // e_shoff
    put(&mut f, 48, &0u32.to_le_bytes()); // e_flags
    put(&mut f, 52, &64u16.to_le_bytes()); // e_ehsize
    put(&mut f, 54, &56u16.to_le_bytes()); // e_phentsize
    put(&mut f, 56, &(phdrs.len() as u16).to_le_bytes()); // e_phnum
    put(&mut f, 58, &64u16.to_le_bytes()); // e_shentsize
    put(&mut f, 60, &0u16.to_le_bytes()); // e_shnum
    put(&mut f, 62, &0u16.to_le_bytes()); // e_shstrndx
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
