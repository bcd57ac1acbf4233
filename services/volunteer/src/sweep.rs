//! The sweep: every `volunteer.sweep_every_seconds`, places not checked in by their time are
//! given back — the release event is the notice to the volunteer — and open needs past their
//! end with no place taken expire. Each in a change of its own, a bounded number per pass, on
//! whichever replica runs it: a claim checked in or released meanwhile is left as it is.

use std::time::Duration;

use chrono::Utc;
use civic_kit::error::Result;
use civic_kit::idempotency::RequestKey;
use civic_kit::server::Shutdown;
use civic_kit::time;
use civic_proto::volunteer::need::State;
use civic_proto::volunteer::{Need, NeedClosed, NeedReleased};
use prost::Message;

use crate::Volunteers;
use crate::claims;

/// The most claims released, and needs expired, in one pass.
const BATCH: i64 = 500;

/// Runs the sweep until shutdown.
pub(crate) async fn run(volunteers: Volunteers, every: Duration, shutdown: Shutdown) {
    loop {
        let stop = shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait() => return,
        }
        if let Err(error) = volunteers.sweep_once().await {
            tracing::warn!(%error, "sweeping needs failed; trying again at the next sweep");
        }
    }
}

impl Volunteers {
    /// One pass: stale claims released, then needs expired.
    pub(crate) async fn sweep_once(&self) -> Result<()> {
        let now = Utc::now();
        let key = RequestKey::unkeyed("VolunteerSweep");
        for (street, need, user) in claims::stale(self.writer.db().reader(), now, BATCH).await? {
            let name = format!("streets/{street}/needs/{need}");
            self.writer
                .write(&key, async |c| {
                    if claims::release_stale(c.tx(), (&street, &need, &user), now).await? {
                        let event = NeedReleased {
                            need: name.clone(),
                            volunteer: crate::register::volunteer_of(&street, &user),
                            because: "stale".into(),
                            release_time: Some(time::to_timestamp(now)),
                        };
                        c.emit(&name, &event).await?;
                    }
                    Ok(())
                })
                .await?;
        }
        for (street, need) in claims::expiring(self.writer.db().reader(), now, BATCH).await? {
            let name = format!("streets/{street}/needs/{need}");
            self.writer
                .write(&key, async |c| {
                    if !claims::expire(c.tx(), &street, &need, now).await? {
                        return Ok(());
                    }
                    let stored = claims::get_need(&mut **c.tx(), &street, &need).await?;
                    let placed = stored
                        .map(|s| Need::decode(s.body.as_slice()))
                        .transpose()
                        .map_err(civic_kit::Error::internal)?
                        .unwrap_or_default();
                    let event = NeedClosed {
                        need: name.clone(),
                        state: State::Expired.as_str_name().into(),
                        community: placed.community,
                        grid: placed.grid,
                        closed_by: String::new(),
                        close_time: Some(time::to_timestamp(now)),
                    };
                    c.emit(&name, &event).await?;
                    Ok(())
                })
                .await?;
        }
        Ok(())
    }
}
