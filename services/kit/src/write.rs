//! The one way a service writes: [`Writer::write`] runs a change under the request's
//! idempotency key — begin; replay the saved answer of a retried request, or make the change,
//! write its events and save the answer, all in one transaction; commit; wake the relay. So every
//! mutation is idempotent (AIP-155), its events exist exactly when it does (the transactional
//! outbox), and no handler repeats these steps.

use civic_proto::Event;
use prost::Message;

use crate::db::{Db, Tx};
use crate::error::Result;
use crate::events::{self, Relay};
use crate::idempotency::{self, RequestKey};

/// Writes a service's changes to its database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Writer {
    db: Db,
    relay: Relay,
}

/// A change being made: its transaction, and the events it writes.
#[derive(Debug)]
pub struct Change {
    tx: Tx,
    events: usize,
}

impl Change {
    /// The transaction, for the change's statements.
    pub fn tx(&mut self) -> &mut Tx {
        &mut self.tx
    }

    /// Writes `event` about the resource `key` into the outbox, in the change's transaction:
    /// delivered once the change commits, never if it does not.
    pub async fn emit<E: Event>(&mut self, key: &str, event: &E) -> Result<()> {
        events::enqueue(&mut self.tx, E::TOPIC, key, event).await?;
        self.events += 1;
        Ok(())
    }
}

impl Writer {
    /// A writer to `db`, whose outbox `relay` delivers.
    pub fn new(db: Db, relay: Relay) -> Self {
        Self { db, relay }
    }

    /// The database, for reads.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Runs `change` under `key`: a request made before gets its first answer back and changes
    /// nothing; otherwise `change` makes the change in one transaction and returns the answer,
    /// which is saved with it. An error from `change` rolls everything back.
    pub async fn write<M, F>(&self, key: &RequestKey, change: F) -> Result<M>
    where
        M: Message + Default,
        F: AsyncFnOnce(&mut Change) -> Result<M>,
    {
        let mut tx = self.db.begin().await?;
        if let Some(saved) = idempotency::replay::<M>(&mut tx, key).await? {
            return Ok(saved);
        }
        let mut made = Change { tx, events: 0 };
        let answer = change(&mut made).await?;
        idempotency::save(&mut made.tx, key, &answer).await?;
        made.tx.commit().await?;
        if made.events > 0 {
            self.relay.notify();
        }
        Ok(answer)
    }
}
