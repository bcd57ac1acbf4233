//! Events: the transactional outbox, its relay, the buses and the idempotent consumer.
