//! One integration-test binary (linking is the slow part): every module drives the real server.

mod agents;
mod compat;
mod errors;
mod helpers;
mod process;
mod props;
mod rest;
mod runner;
mod runner_model;
mod runner_process;
mod runner_workers;
