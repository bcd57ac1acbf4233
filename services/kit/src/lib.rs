//! The shared runtime of every civic binary: configuration, telemetry, the store layer, the
//! gRPC server stack, errors, authentication, pagination, idempotency and events. No business
//! logic lives here.
#![forbid(unsafe_code)]

pub mod auth;
pub mod calendar;
pub mod client;
pub mod config;
pub mod db;
pub mod demo;
pub mod directory;
pub mod error;
pub mod events;
pub mod export;
pub mod fetch;
pub mod filter;
pub mod idempotency;
pub mod module;
pub mod names;
pub mod page;
pub mod server;
pub mod tasks;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;
pub mod watch;
pub mod write;

pub use error::{Error, Result};
