//! Requests: everything about a submitted file that needs no I/O. A file's name ([`name`]), its JSON content
//! ([`parse`]) and the devices it names ([`device`]). What exists here has been validated; downstream code does
//! not check again.

pub mod device;
pub mod name;
pub mod parse;

pub use device::{Device, DeviceError, DeviceKind};
pub use name::{Due, FileName, Kind, NameError};
pub use parse::{FileError, Limits, Request, RequestFile};
