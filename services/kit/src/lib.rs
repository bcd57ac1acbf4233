//! The shared runtime of every civic binary: configuration, telemetry, the store layer, the
//! gRPC server stack, errors, authentication, pagination, idempotency and events. No business
//! logic lives here.
#![forbid(unsafe_code)]

pub mod db;
pub mod error;
pub mod time;

pub use error::{Error, Result};
