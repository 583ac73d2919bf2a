//! batchd: a batch-task server that speaks SuperOffice's Batch API.
//!
//! Layers, innermost first (dependencies point inward):
//! - [`domain`]: task types, state moves, rights, dates, the filter language. No I/O.
//! - [`store`]: the `Store` trait and its SQLite (and PostgreSQL) implementations.
//! - [`service`]: the Batch operations for a caller, over a store.
//! - [`identity`]: passwords, secrets and the credential rules, over a store (REST and the CLI).
//! - [`runner`]: runs the stored tasks (claims with leases, progress, stop, workers, upkeep).
//! - [`http`]: routing, negotiation, auth, the error path.
//! - [`server`]: wiring it together, start-up and shutdown. The binary adds the CLI.

pub mod config;
pub mod domain;
pub mod http;
pub mod i18n;
pub mod identity;
pub mod redact;
pub mod runner;
pub mod server;
pub mod service;
pub mod store;
pub mod tls;
