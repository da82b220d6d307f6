//! Results: what gdprd writes for customers into `GDPR_Result`, always atomically ([`atomic`]): execution logs
//! and rejection notices ([`log`]) and export archives ([`archive`]).

pub mod archive;
pub mod atomic;
pub mod log;
