//! Linux errno values (x86_64, the generic table) and their names.

use core::fmt;

/// A Linux errno number, e.g. [`Errno::EEXIST`] (17). Any number can be held;
/// the known ones have names ([`Errno::name`]), the others print as `E#NN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Errno(pub i32);

macro_rules! errnos {
    ($($name:ident = $num:expr, $what:expr;)*) => {
        impl Errno {
            $(#[doc = $what] pub const $name: Errno = Errno($num);)*
            /// Every errno this crate names, in number order.
            pub const ALL: &'static [Errno] = &[$(Errno::$name),*];

            /// The symbolic name (`"EEXIST"`), if this crate knows the number.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($num => Some(stringify!($name)),)*
                    _ => None,
                }
            }

            /// The errno of a symbolic name (`"ENOMEM"`), if known.
            pub fn from_name(name: &str) -> Option<Errno> {
                match name {
                    $(stringify!($name) => Some(Errno::$name),)*
                    _ => None,
                }
            }
        }
    };
}

errnos! {
    EPERM = 1, "Operation not permitted.";
    ENOENT = 2, "No such file or directory.";
    ESRCH = 3, "No such process.";
    EINTR = 4, "Interrupted system call.";
    EIO = 5, "I/O error.";
    ENXIO = 6, "No such device or address.";
    E2BIG = 7, "Argument list too long.";
    ENOEXEC = 8, "Exec format error.";
    EBADF = 9, "Bad file descriptor (e.g. `mmap` of a file mapping without a file).";
    ECHILD = 10, "No child processes.";
    EAGAIN = 11, "Try again (e.g. locked memory over its limit).";
    ENOMEM = 12, "Out of memory, or a range that is not (fully) mapped.";
    EACCES = 13, "Permission denied (e.g. a shared write mapping of a read-only file).";
    EFAULT = 14, "Bad address.";
    ENOTBLK = 15, "Block device required.";
    EBUSY = 16, "Device or resource busy.";
    EEXIST = 17, "Already exists (`MAP_FIXED_NOREPLACE` over a mapping).";
    EXDEV = 18, "Cross-device link.";
    ENODEV = 19, "No such device (the file cannot be mapped).";
    ENOTDIR = 20, "Not a directory.";
    EISDIR = 21, "Is a directory.";
    EINVAL = 22, "Invalid argument (unaligned address, zero length, bad flags).";
    ENFILE = 23, "File table overflow.";
    EMFILE = 24, "Too many open files.";
    ENOTTY = 25, "Not a typewriter.";
    ETXTBSY = 26, "Text file busy.";
    EFBIG = 27, "File too large.";
    ENOSPC = 28, "No space left on device.";
    ESPIPE = 29, "Illegal seek.";
    EROFS = 30, "Read-only file system.";
    EMLINK = 31, "Too many links.";
    EPIPE = 32, "Broken pipe.";
    EDOM = 33, "Math argument out of domain.";
    ERANGE = 34, "Math result not representable.";
    ENOSYS = 38, "Function not implemented.";
    EOVERFLOW = 75, "Value too large (e.g. an `mmap` offset that overflows).";
    EOPNOTSUPP = 95, "Operation not supported.";
}

impl Errno {
    /// Parses a name (`EEXIST`) or a number in the printed form `E#17`.
    pub fn parse(text: &str) -> Option<Errno> {
        if let Some(num) = text.strip_prefix("E#") {
            return num.parse().ok().map(Errno);
        }
        Errno::from_name(text)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "E#{}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn names_and_numbers_round_trip() {
        for &e in Errno::ALL {
            let text = e.to_string();
            assert_eq!(Errno::parse(&text), Some(e), "{text}");
        }
        assert_eq!(Errno::EEXIST.0, 17);
        assert_eq!(Errno::ENOMEM.0, 12);
        assert_eq!(Errno(200).to_string(), "E#200");
        assert_eq!(Errno::parse("E#200"), Some(Errno(200)));
        assert_eq!(Errno::parse("ENOTHING"), None);
    }
}
