//! Reading input files with a bound: only regular files, and only up to a
//! size limit, so `aspace run /dev/zero`, a FIFO or a huge file is refused
//! with a message instead of blocking or eating the machine's memory.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::num::human_bytes;

/// The largest scenario file `aspace run` reads: 16 MiB.
pub const MAX_SCENARIO_BYTES: u64 = 16 << 20;

/// The largest ELF file `aspace elf` and a scenario's `elf` line read:
/// 256 MiB.
pub const MAX_ELF_BYTES: u64 = 256 << 20;

/// The kind of a file that is not a regular one, in words.
fn kind_of(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Checks, without opening it, that `path` is a regular file of at most
/// `limit` bytes; `what` names it in messages ("scenario file"). Returns
/// its size.
pub fn check_file(path: &Path, limit: u64, what: &str) -> Result<u64, String> {
    let name = path.display();
    let m = std::fs::metadata(path).map_err(|e| format!("cannot read {name}: {e}"))?;
    if !m.is_file() {
        return Err(not_regular(path, m.file_type(), what));
    }
    if m.len() > limit {
        return Err(too_big(path, m.len(), limit, what));
    }
    Ok(m.len())
}

fn not_regular(path: &Path, t: std::fs::FileType, what: &str) -> String {
    format!(
        "cannot read {}: it is {}; {what}s are read only from regular files",
        path.display(),
        kind_of(t)
    )
}

fn too_big(path: &Path, len: u64, limit: u64, what: &str) -> String {
    format!(
        "cannot read {}: it has {len} bytes, more than the {} limit for {what}s",
        path.display(),
        human_bytes(limit)
    )
}

/// Reads a regular file of at most `limit` bytes. Anything else (a
/// directory, a device, a FIFO, a larger file, one that grows past the
/// limit while read) is refused with a message naming the file.
pub fn read_bounded(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>, String> {
    // Checked before opening: opening a FIFO would block.
    check_file(path, limit, what)?;
    let name = path.display();
    let f = File::open(path).map_err(|e| format!("cannot read {name}: {e}"))?;
    // Checked again on what was opened, in case the path changed between.
    let m = f
        .metadata()
        .map_err(|e| format!("cannot read {name}: {e}"))?;
    if !m.is_file() {
        return Err(not_regular(path, m.file_type(), what));
    }
    let mut bytes = Vec::with_capacity(m.len().min(limit) as usize);
    f.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {name}: {e}"))?;
    if bytes.len() as u64 > limit {
        return Err(too_big(path, bytes.len() as u64, limit, what));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_directories_and_big_files_are_refused() {
        let e = read_bounded(Path::new("/dev/zero"), 1 << 20, "scenario file").unwrap_err();
        assert!(e.contains("a character device"), "{e}");
        let e = read_bounded(Path::new("/"), 1 << 20, "scenario file").unwrap_err();
        assert!(e.contains("a directory"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        std::fs::write(&p, vec![b'#'; 100]).unwrap();
        assert_eq!(read_bounded(&p, 100, "x").unwrap().len(), 100);
        let e = read_bounded(&p, 99, "scenario file").unwrap_err();
        assert!(
            e.contains("it has 100 bytes, more than the 99B limit"),
            "{e}"
        );
    }
}
