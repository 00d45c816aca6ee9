//! Page protection (`PROT_*` bits) and its text: `r-x`, `rw`, `none`.

use crate::consts::{PROT_EXEC, PROT_READ, PROT_WRITE};
use core::fmt;

/// A set of `PROT_*` bits, as `mmap` and `mprotect` take them. Other bits
/// (e.g. `PROT_GROWSDOWN`) are kept and printed as `+0xBITS`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Prot(pub u32);

impl Prot {
    /// No access.
    pub const NONE: Prot = Prot(0);
    /// Read only.
    pub const R: Prot = Prot(PROT_READ);
    /// Read and write.
    pub const RW: Prot = Prot(PROT_READ | PROT_WRITE);
    /// Read and execute.
    pub const RX: Prot = Prot(PROT_READ | PROT_EXEC);
    /// Everything.
    pub const RWX: Prot = Prot(PROT_READ | PROT_WRITE | PROT_EXEC);

    /// Whether `PROT_READ` is set.
    pub fn read(self) -> bool {
        self.0 & PROT_READ != 0
    }
    /// Whether `PROT_WRITE` is set.
    pub fn write(self) -> bool {
        self.0 & PROT_WRITE != 0
    }
    /// Whether `PROT_EXEC` is set.
    pub fn exec(self) -> bool {
        self.0 & PROT_EXEC != 0
    }

    /// The three `rwx` characters as `/proc/PID/maps` prints them (`r-x`).
    pub fn rwx(self) -> [char; 3] {
        [
            if self.read() { 'r' } else { '-' },
            if self.write() { 'w' } else { '-' },
            if self.exec() { 'x' } else { '-' },
        ]
    }

    /// Parses `r`, `w`, `x` and `-` in any order (`rw`, `r-x`, `---`), or
    /// `none`; an optional `+0xBITS` adds raw bits.
    pub fn parse(text: &str) -> Option<Prot> {
        let (rights, extra) = match text.split_once('+') {
            Some((r, bits)) => (
                r,
                crate::num::parse_u64(bits).and_then(|b| u32::try_from(b).ok())?,
            ),
            None => (text, 0),
        };
        if rights.is_empty() {
            return None;
        }
        let mut bits = extra;
        if rights != "none" {
            for c in rights.chars() {
                bits |= match c {
                    'r' => PROT_READ,
                    'w' => PROT_WRITE,
                    'x' => PROT_EXEC,
                    '-' => 0,
                    _ => return None,
                };
            }
        }
        Some(Prot(bits))
    }
}

impl fmt::Display for Prot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.rwx() {
            write!(f, "{c}")?;
        }
        let extra = self.0 & !(PROT_READ | PROT_WRITE | PROT_EXEC);
        if extra != 0 {
            write!(f, "+{extra:#x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn text_forms() {
        assert_eq!(Prot::parse("rw"), Some(Prot::RW));
        assert_eq!(Prot::parse("r-x"), Some(Prot::RX));
        assert_eq!(Prot::parse("none"), Some(Prot::NONE));
        assert_eq!(Prot::parse("---"), Some(Prot::NONE));
        assert_eq!(Prot::parse("rq"), None);
        assert_eq!(Prot::parse(""), None);
        assert_eq!(Prot::RW.to_string(), "rw-");
        let odd = Prot(PROT_READ | crate::consts::PROT_GROWSDOWN);
        assert_eq!(Prot::parse(&odd.to_string()), Some(odd));
    }
}
