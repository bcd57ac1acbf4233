//! The one way a service writes: [`Writer::write`] runs a change under the request's
//! idempotency key — begin; make the change, write its events and save the answer, all in one
//! transaction, or, for a retried request, roll back and replay the saved answer; commit; wake
//! the relay. So every
//! mutation is idempotent (AIP-155), its events exist exactly when it does (the transactional
//! outbox), and no handler repeats these steps.

use civic_proto::Event;
use prost::Message;

use crate::db::{Batch, Db, Tx};
use crate::error::{Error, Result};
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
    staged: Batch,
}

impl Change {
    /// The transaction, for the change's statements.
    pub fn tx(&mut self) -> &mut Tx {
        &mut self.tx
    }

    /// Writes `event` about the resource `key` into the outbox, in the change's transaction:
    /// delivered once the change commits, never if it does not. The row is written with the
    /// saved answer at the end of the change, in one round trip (nothing in a change reads the
    /// outbox).
    pub async fn emit<E: Event>(&mut self, key: &str, event: &E) -> Result<()> {
        events::stage(&mut self.staged, E::TOPIC, key, event)?;
        self.events += 1;
        Ok(())
    }

    /// Adds `batch` to what is written at the end of the change, after every statement the
    /// change runs itself: for rows nothing later in the change reads or builds on.
    pub fn stage(&mut self, batch: Batch) {
        self.staged.append(batch);
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
    ///
    /// Most requests are new, so the change is made first and the answer saved at the end, in
    /// one statement that also finds an earlier answer: then the change is rolled back and the
    /// earlier answer returned. A change that fails is rolled back and the key looked up too,
    /// since a retry of a request that succeeded may fail now that its step is taken (a second
    /// acknowledgement is out of order): its first answer stands.
    pub async fn write<M, F>(&self, key: &RequestKey, change: F) -> Result<M>
    where
        M: Message + Default,
        F: AsyncFnOnce(&mut Change) -> Result<M>,
    {
        let tx = self.db.begin().await?;
        let mut made = Change { tx, events: 0, staged: Batch::new() };
        let answer = match change(&mut made).await {
            Ok(answer) => answer,
            Err(error) => {
                drop(made); // rolled back
                return match idempotency::replay::<M, _>(self.db.reader(), key).await {
                    Ok(Some(saved)) => Ok(saved),
                    Err(reused) if reused.code() == tonic::Code::InvalidArgument => Err(reused),
                    _ => Err(error),
                };
            }
        };
        let mut staged = std::mem::take(&mut made.staged);
        idempotency::stage(&mut staged, key, &answer);
        match staged.run(&mut made.tx).await {
            Ok(()) => {}
            Err(e) if idempotency::is_taken(&e) => {
                made.tx.rollback().await?;
                return idempotency::replay::<M, _>(self.db.reader(), key).await?.ok_or_else(|| {
                    // Saved and gone between the two statements: only a purge of old keys does that.
                    Error::new(tonic::Code::Aborted, "REQUEST_IN_PROGRESS", "the same request is being handled; retry")
                });
            }
            Err(e) => return Err(e.into()),
        }
        made.tx.commit().await?;
        if made.events > 0 {
            self.relay.notify();
        }
        Ok(answer)
    }
}
