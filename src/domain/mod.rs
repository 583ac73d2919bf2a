//! Domain types and rules. No I/O here: no database, no HTTP, no clock reads except where a
//! caller passes `now` in.

pub mod access;
pub mod associate;
pub mod cron;
pub mod definition;
pub mod dependency;
pub mod duration;
pub mod error;
pub mod filter;
pub mod forwarded;
pub mod idempotency;
pub mod lockout;
pub mod node;
pub mod query;
pub mod rights;
pub mod run;
pub mod state;
pub mod task;
pub mod time;
pub mod unique;
pub mod zones;

pub use associate::{Associate, Caller, Role};
pub use error::{DomainError, Expected, Field};
pub use task::{BatchTaskState, CancellationBehaviour, NewTask, Parameters, Patch, Task, TaskUpdate};
