//! Integration tests: the real `gdprd` binary, real folders, a real SQLite demo store, driven the way a customer
//! and an operator would. One test binary; [`harness`] lays out demo installations in temporary folders.

mod harness;

mod callbacks;
mod cli;
mod cluster;
mod deadlines;
mod durability;
mod export;
mod forget;
mod http;
mod http_limits;
mod intake;
mod leftovers;
mod metrics;
mod packaging;
mod preview;
mod reload;
mod retry;
mod seeds;
mod sftp;
mod sftp_limits;
mod sftp_remote;
mod status;
mod store_depth;
mod stores_sql;
mod systemd;
mod workers;
