//! The one error type of the subsystem and its mapping to HelenOS errno values.

use core::fmt;

/// Why an address-space operation was refused.
///
/// Every variant maps to one HelenOS kernel errno value (see [`Error::errno`]),
/// so system-call wrappers can return what HelenOS user space expects:
///
/// | variant | errno | value |
/// |---|---|---|
/// | [`NotFound`](Error::NotFound) | `ENOENT` | -1 |
/// | [`NoMemory`](Error::NoMemory) | `ENOMEM` | -2 |
/// | [`PermissionDenied`](Error::PermissionDenied) | `EPERM` | -6 |
/// | [`BadMemory`](Error::BadMemory) | `EBADMEM` | -9 |
/// | [`NotSupported`](Error::NotSupported) | `ENOTSUP` | -10 |
/// | [`AddressNotAvailable`](Error::AddressNotAvailable) | `EADDRNOTAVAIL` | -11 |
/// | [`InvalidArgument`](Error::InvalidArgument) | `EINVAL` | -13 |
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Error {
    /// No area (or address space) at the given address.
    NotFound,
    /// Frames (or kernel memory for bookkeeping) ran out.
    NoMemory,
    /// The request asks for rights the caller does not have, or would leave
    /// an area of zero pages.
    PermissionDenied,
    /// A user buffer is not (fully) accessible: a kernel copy from or to user
    /// memory faulted.
    BadMemory,
    /// The area's backend or state does not support the operation.
    NotSupported,
    /// The requested range overlaps another area, the NULL page, or the
    /// kernel's range, or lies outside the address space.
    AddressNotAvailable,
    /// Malformed argument: unaligned address, zero or wrapping size, unknown
    /// flag bits, write together with execute.
    InvalidArgument,
}

impl Error {
    /// The HelenOS errno value (negative, as HelenOS returns them).
    pub const fn errno(self) -> i32 {
        match self {
            Error::NotFound => -1,
            Error::NoMemory => -2,
            Error::PermissionDenied => -6,
            Error::BadMemory => -9,
            Error::NotSupported => -10,
            Error::AddressNotAvailable => -11,
            Error::InvalidArgument => -13,
        }
    }

    /// The HelenOS name of the errno value.
    pub const fn errno_name(self) -> &'static str {
        match self {
            Error::NotFound => "ENOENT",
            Error::NoMemory => "ENOMEM",
            Error::PermissionDenied => "EPERM",
            Error::BadMemory => "EBADMEM",
            Error::NotSupported => "ENOTSUP",
            Error::AddressNotAvailable => "EADDRNOTAVAIL",
            Error::InvalidArgument => "EINVAL",
        }
    }

    /// The error for a HelenOS errno value, if it is one of ours.
    pub const fn from_errno(errno: i32) -> Option<Error> {
        Some(match errno {
            -1 => Error::NotFound,
            -2 => Error::NoMemory,
            -6 => Error::PermissionDenied,
            -9 => Error::BadMemory,
            -10 => Error::NotSupported,
            -11 => Error::AddressNotAvailable,
            -13 => Error::InvalidArgument,
            _ => return None,
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            Error::NotFound => "no such area",
            Error::NoMemory => "out of memory",
            Error::PermissionDenied => "permission denied",
            Error::BadMemory => "bad user memory",
            Error::NotSupported => "not supported for this area",
            Error::AddressNotAvailable => "address range not available",
            Error::InvalidArgument => "invalid argument",
        };
        write!(f, "{what} ({})", self.errno_name())
    }
}

impl core::error::Error for Error {}

/// Result type of the subsystem.
pub type Result<T> = core::result::Result<T, Error>;
