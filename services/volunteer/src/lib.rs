//! The volunteer service (群众点单、社区接单): residents place needs, volunteers take them, the
//! community assigns a batch of open needs at once, and confirmed service earns moral-bank
//! points.
//!
//! Built so far: the matching at its core, as plain domain code with no I/O —
//! [`matching`] (who may take a need, and a score from skills, availability, distance, fair load
//! and continuity, each factor with its reason; the top k of a street's volunteers), [`assign`]
//! (places given to slots at the minimum total cost, with greedy's answer beside it and a
//! deadline) and [`batch`] (a community's open needs planned at once, settled so that no
//! volunteer is booked twice or past their cap) — and
//! in the service's own schema ([`MIGRATIONS`]) the moral bank's [`ledger`] and its
//! [`rewards`], the places
//! volunteers take in needs ([`claims`]) and the [`tasks`] done in them (check-out, the two
//! confirmations, the points). The API and the rest come next; the crate is not registered as a
//! service until they do.

use civic_kit::db::Migration;

pub mod assign;
pub mod batch;
pub mod claims;
pub mod ledger;
pub mod matching;
pub mod rewards;
pub mod tasks;

/// The volunteer service's schema, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "the moral bank's ledger", sql: include_str!("../migrations/0001_ledger.sql") },
    Migration { version: 2, name: "needs and their claims", sql: include_str!("../migrations/0002_needs.sql") },
    Migration { version: 3, name: "the reward catalogue", sql: include_str!("../migrations/0003_rewards.sql") },
];
