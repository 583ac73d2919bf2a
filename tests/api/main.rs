//! One integration-test binary (linking is the slow part): every module drives the real server.

mod agents;
mod auth;
mod cli;
mod compat;
mod conn;
mod errors;
mod faults;
mod formats;
mod headers;
mod helpers;
mod limits;
mod metrics;
mod odata;
mod openapi;
mod patch;
mod pg;
mod process;
mod props;
mod rest;
mod rights;
mod runner;
mod runner_model;
mod runner_process;
mod runner_trust;
mod runner_workers;
mod store_contract;
