//! Numbers in the call text: addresses (`0x7f00_0000`, `4096`) and lengths
//! (`4096`, `16p` pages, `64K`, `1M`, `1G`), read and printed.

use crate::consts::PAGE_SIZE;
use core::fmt;

/// Parses an address or plain number: hexadecimal with `0x`, or decimal;
/// `_` separators allowed.
pub fn parse_u64(text: &str) -> Option<u64> {
    let (digits, radix) = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (text, 10),
    };
    if digits.is_empty() || digits.starts_with('_') {
        return None;
    }
    let mut value: u64 = 0;
    for c in digits.chars() {
        if c == '_' {
            continue;
        }
        let d = c.to_digit(radix)?;
        value = value.checked_mul(radix as u64)?.checked_add(d as u64)?;
    }
    Some(value)
}

/// Parses a length: a number, or a number with a unit suffix: `p` (pages of
/// [`PAGE_SIZE`]), `K`, `M`, `G` (binary units).
pub fn parse_len(text: &str) -> Option<u64> {
    let (body, unit) = match text.as_bytes().last()? {
        b'p' => (&text[..text.len() - 1], PAGE_SIZE),
        b'K' | b'k' => (&text[..text.len() - 1], 1 << 10),
        b'M' => (&text[..text.len() - 1], 1 << 20),
        b'G' => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    parse_u64(body)?.checked_mul(unit)
}

/// Prints an address: `0x` and lower-case hexadecimal.
#[derive(Clone, Copy, Debug)]
pub struct Addr(pub u64);

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// Prints a length: whole pages as `Np`, anything else in bytes.
#[derive(Clone, Copy, Debug)]
pub struct Len(pub u64);

impl fmt::Display for Len {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 != 0 && self.0 % PAGE_SIZE == 0 {
            write!(f, "{}p", self.0 / PAGE_SIZE)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn numbers_and_lengths() {
        assert_eq!(parse_u64("0x7fff_f000"), Some(0x7fff_f000));
        assert_eq!(parse_u64("4096"), Some(4096));
        assert_eq!(parse_u64("0x"), None);
        assert_eq!(parse_u64("12z"), None);
        assert_eq!(parse_u64("0xffffffffffffffffff"), None);
        assert_eq!(parse_len("16p"), Some(16 * 4096));
        assert_eq!(parse_len("64K"), Some(65536));
        assert_eq!(parse_len("1M"), Some(1 << 20));
        assert_eq!(parse_len("0x1000"), Some(4096));
        assert_eq!(Len(8192).to_string(), "2p");
        assert_eq!(Len(100).to_string(), "100");
        assert_eq!(Len(0).to_string(), "0");
        assert_eq!(Addr(0x1000).to_string(), "0x1000");
    }
}
