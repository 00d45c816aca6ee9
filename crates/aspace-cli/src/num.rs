//! Numbers, sizes and rights as a person writes them: `42`, `0x40_0000`,
//! `16p` (pages), `64K`, `1G`, `rw`, `r-x`.

use aspace::{AreaFlags, PAGE_SIZE};

/// Why a number could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NumError {
    /// Not a number at all.
    Bad(String),
    /// A number, but more than 64 bits.
    TooBig(String),
}

impl std::fmt::Display for NumError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NumError::Bad(s) => write!(
                f,
                "bad number '{s}': write it in decimal (4096) or hex (0x1000), \
                 '_' may separate digits"
            ),
            NumError::TooBig(s) => write!(f, "number '{s}' is out of range (more than 64 bits)"),
        }
    }
}

/// A plain number: decimal, `0x` hex, `0b` binary or `0o` octal, with `_`
/// allowed between digits.
pub fn parse_u64(text: &str) -> Result<u64, NumError> {
    let bad = || NumError::Bad(text.to_string());
    let clean: String = text.chars().filter(|&c| c != '_').collect();
    let (digits, radix) = match clean.get(..2).map(|p| p.to_ascii_lowercase()) {
        Some(p) if p == "0x" => (&clean[2..], 16),
        Some(p) if p == "0b" => (&clean[2..], 2),
        Some(p) if p == "0o" => (&clean[2..], 8),
        _ => (&clean[..], 10),
    };
    if digits.is_empty() || text.starts_with('_') || text.ends_with('_') {
        return Err(bad());
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(bad());
    }
    u64::from_str_radix(digits, radix).map_err(|_| NumError::TooBig(text.to_string()))
}

/// Why a size could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SizeError {
    /// Not a size.
    Bad(String),
    /// A size over 64 bits.
    TooBig(String),
}

impl std::fmt::Display for SizeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SizeError::Bad(s) => write!(
                f,
                "bad size '{s}': write bytes (4096, 0x1000), pages (16p) or \
                 a unit (64K, 1M, 2G)"
            ),
            SizeError::TooBig(s) => write!(f, "size '{s}' is out of range (more than 64 bits)"),
        }
    }
}

/// A size in bytes: a number, optionally followed by `p` (pages of 4 KiB),
/// `K`/`KiB`, `M`/`MiB`, `G`/`GiB` or `T`/`TiB` (powers of 1024; `B` alone
/// is bytes).
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let t = text.trim();
    let too_big = || SizeError::TooBig(text.to_string());
    // A plain number first: "0x1b" is hex, not 0x1 bytes.
    match parse_u64(t) {
        Ok(v) => return Ok(v),
        Err(NumError::TooBig(_)) => return Err(too_big()),
        Err(NumError::Bad(_)) => {}
    }
    const UNITS: [(&str, u64); 14] = [
        ("pages", PAGE_SIZE),
        ("page", PAGE_SIZE),
        ("kib", 1 << 10),
        ("mib", 1 << 20),
        ("gib", 1 << 30),
        ("tib", 1 << 40),
        ("kb", 1 << 10),
        ("mb", 1 << 20),
        ("gb", 1 << 30),
        ("tb", 1 << 40),
        ("k", 1 << 10),
        ("m", 1 << 20),
        ("g", 1 << 30),
        ("t", 1 << 40),
    ];
    let lower = t.to_ascii_lowercase();
    let found = UNITS
        .iter()
        .chain(&[("p", PAGE_SIZE), ("b", 1)])
        .find(|(u, _)| lower.len() > u.len() && lower.ends_with(u));
    let Some(&(unit, mult)) = found else {
        return Err(SizeError::Bad(text.to_string()));
    };
    match parse_u64(&t[..t.len() - unit.len()]) {
        Ok(n) => n.checked_mul(mult).ok_or_else(too_big),
        Err(NumError::TooBig(_)) => Err(too_big()),
        Err(NumError::Bad(_)) => Err(SizeError::Bad(text.to_string())),
    }
}

/// Area rights from letters: `r`, `w`, `x` (and `c` for cacheable), in any
/// order; `-` is ignored so `r-x` works too.
pub fn parse_rights(text: &str) -> Result<AreaFlags, String> {
    let mut f = AreaFlags::empty();
    if text.is_empty() {
        return Err("empty rights: use letters r, w, x (e.g. rw, rx, r)".into());
    }
    for c in text.chars() {
        f |= match c.to_ascii_lowercase() {
            'r' => AreaFlags::READ,
            'w' => AreaFlags::WRITE,
            'x' => AreaFlags::EXEC,
            'c' => AreaFlags::CACHEABLE,
            '-' => AreaFlags::empty(),
            _ => {
                return Err(format!(
                    "bad rights '{text}': use letters r, w, x (e.g. rw, rx, r)"
                ))
            }
        };
    }
    Ok(f)
}

/// `rwx` text of area rights (`-` for a missing right).
pub fn rights_text(f: AreaFlags) -> String {
    let mut s = String::with_capacity(3);
    s.push(if f.contains(AreaFlags::READ) {
        'r'
    } else {
        '-'
    });
    s.push(if f.contains(AreaFlags::WRITE) {
        'w'
    } else {
        '-'
    });
    s.push(if f.contains(AreaFlags::EXEC) {
        'x'
    } else {
        '-'
    });
    s
}

/// A byte count for people: `4K`, `1.5M`, `64M`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("T", 1 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ];
    for (u, m) in UNITS {
        if bytes >= m {
            return if bytes.is_multiple_of(m) {
                format!("{}{u}", bytes / m)
            } else {
                format!("{:.1}{u}", bytes as f64 / m as f64)
            };
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_u64("42"), Ok(42));
        assert_eq!(parse_u64("0x40_0000"), Ok(0x40_0000));
        assert_eq!(parse_u64("0XFF"), Ok(255));
        assert_eq!(parse_u64("0b101"), Ok(5));
        assert!(matches!(parse_u64("12z"), Err(NumError::Bad(_))));
        assert!(matches!(parse_u64("0x"), Err(NumError::Bad(_))));
        assert!(matches!(parse_u64(""), Err(NumError::Bad(_))));
        assert!(matches!(
            parse_u64("0x1_0000_0000_0000_0000"),
            Err(NumError::TooBig(_))
        ));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16p"), Ok(16 * 4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("0x1000"), Ok(0x1000));
        assert_eq!(parse_size("0x1b"), Ok(0x1b));
        assert_eq!(parse_size("0xabc"), Ok(0xabc));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(matches!(parse_size("12q"), Err(SizeError::Bad(_))));
        assert!(matches!(parse_size("p"), Err(SizeError::Bad(_))));
        assert!(matches!(
            parse_size("99999999999999T"),
            Err(SizeError::TooBig(_))
        ));
    }

    #[test]
    fn rights() {
        let rw = AreaFlags::READ | AreaFlags::WRITE;
        assert_eq!(parse_rights("rw"), Ok(rw));
        assert_eq!(parse_rights("r-x"), Ok(AreaFlags::READ | AreaFlags::EXEC));
        assert!(parse_rights("rq").is_err());
        assert_eq!(rights_text(rw), "rw-");
        assert_eq!(human_bytes(64 << 20), "64M");
        assert_eq!(human_bytes(1536), "1.5K");
    }
}
