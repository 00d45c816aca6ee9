//! What each loadable segment of an executable holds, named for people:
//! `ls:.text`, `ls:.rodata`, `ls:.eh_frame`, `ls:.data`. The engine (`elf
//! TASK ...` in scenarios and the demo) and `aspace elf` both label their
//! areas through [`segment_names`].
//!
//! A segment is named after the sections (from the file's section headers)
//! that lie in it: the first of `.text`, `.rodata`, `.data`, `.bss` found
//! there, else its largest section. A file without section headers gets
//! `text`, `rodata` or `data` from the segment's rights. Two segments never
//! get the same name: a repeated name gets `#2`, `#3`, ... appended.

use aspace::loader::LoadedElf;
use aspace::AreaFlags;
use elf::endian::AnyEndian;
use elf::ElfBytes;

/// The sections that name a segment before any other, in this order.
pub const PREFERRED: [&str; 4] = [".text", ".rodata", ".data", ".bss"];

/// What one loadable segment holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentName {
    /// `text`, `data` or `rodata`, from the segment's rights.
    pub kind: &'static str,
    /// The allocated sections that overlap the segment, lowest first
    /// (empty when the file has no section headers).
    pub sections: Vec<String>,
    /// The segment's name, distinct from every other segment's.
    pub name: String,
}

/// `text` (executable), `data` (writable) or `rodata` (read-only).
pub fn kind(flags: AreaFlags) -> &'static str {
    if flags.contains(AreaFlags::EXEC) {
        "text"
    } else if flags.contains(AreaFlags::WRITE) {
        "data"
    } else {
        "rodata"
    }
}

/// One allocated section: its name, first address and size.
struct Section {
    name: String,
    addr: u64,
    size: u64,
}

/// The allocated, named, non-empty sections of `bytes`, lowest first; none
/// when the file has no section headers or they cannot be read.
fn sections(bytes: &[u8]) -> Vec<Section> {
    let Ok(file) = ElfBytes::<AnyEndian>::minimal_parse(bytes) else {
        return Vec::new();
    };
    let Ok((Some(headers), Some(names))) = file.section_headers_with_strtab() else {
        return Vec::new();
    };
    let mut out: Vec<Section> = headers
        .iter()
        .filter(|h| h.sh_flags & u64::from(elf::abi::SHF_ALLOC) != 0 && h.sh_size > 0)
        .filter_map(|h| {
            let name = names.get(h.sh_name as usize).ok()?;
            (!name.is_empty()).then(|| Section {
                name: name.to_string(),
                addr: h.sh_addr,
                size: h.sh_size,
            })
        })
        .collect();
    out.sort_by_key(|s| s.addr);
    out
}

/// The name of every segment `loaded` made from `bytes`, in the order of
/// `loaded.segments`. Never fails: what cannot be read is named from the
/// segment's rights.
pub fn segment_names(bytes: &[u8], loaded: &LoadedElf) -> Vec<SegmentName> {
    let all = sections(bytes);
    let mut out: Vec<SegmentName> = Vec::with_capacity(loaded.segments.len());
    for seg in &loaded.segments {
        // Section addresses are the file's; the segment's have the bias.
        let start = seg.vaddr.wrapping_sub(loaded.bias);
        let end = start.saturating_add(seg.memsz);
        let inside: Vec<&Section> = all
            .iter()
            .filter(|s| s.addr < end && start < s.addr.saturating_add(s.size))
            .collect();
        let kind = kind(seg.flags);
        let base = PREFERRED
            .iter()
            .find(|p| inside.iter().any(|s| s.name == **p))
            .map(|p| p.to_string())
            .or_else(|| inside.iter().max_by_key(|s| s.size).map(|s| s.name.clone()))
            .unwrap_or_else(|| kind.to_string());
        let mut name = base.clone();
        let mut n = 1;
        while out.iter().any(|o| o.name == name) {
            n += 1;
            name = format!("{base}#{n}");
        }
        out.push(SegmentName {
            kind,
            sections: inside.iter().map(|s| s.name.clone()).collect(),
            name,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aspace::backend::elf::Segment;
    use aspace::VirtAddr;

    fn seg(vaddr: u64, flags: AreaFlags) -> Segment {
        Segment {
            vaddr,
            memsz: 0x1000,
            filesz: 0x1000,
            offset: 0,
            flags,
        }
    }

    #[test]
    fn without_sections_names_come_from_rights_and_stay_distinct() {
        let r = AreaFlags::READ;
        let loaded = LoadedElf {
            entry: VirtAddr::new(0x1000),
            bias: 0,
            segments: vec![
                seg(0x1000, r),
                seg(0x2000, r | AreaFlags::EXEC),
                seg(0x3000, r),
                seg(0x4000, r | AreaFlags::WRITE),
                seg(0x5000, r),
            ],
        };
        let names: Vec<String> = segment_names(b"not an ELF", &loaded)
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["rodata", "text", "rodata#2", "data", "rodata#3"]);
    }

    #[test]
    fn the_builtin_elf_is_named_from_its_sections() {
        let bytes = crate::elfgen::builtin_elf();
        let (entry, bias, segments) =
            aspace::loader::parse(&bytes, None, 0x0000_8000_0000_0000).unwrap();
        let loaded = LoadedElf {
            entry,
            bias,
            segments,
        };
        let names = segment_names(&bytes, &loaded);
        let short: Vec<&str> = names.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(short, [".text", ".rodata", ".data"]);
        assert_eq!(names[2].sections, [".data", ".bss"]);
    }
}
