//! The one-window reception desk: applications for service items, owned from first receipt to
//! the end by the staff member who received them first, and the inquiries that led to none.

mod api;
pub mod domain;
mod record;
mod store;
