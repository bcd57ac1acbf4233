//! Demo data: the Zhongjie Street catalogue, published, for a laptop demo and for tests.

use civic_kit::error::{Error, Result};
use civic_kit::time;
use civic_proto::catalogue::ServiceItem;
use civic_proto::catalogue::service_item::State;

use crate::domain::{self, ItemName};
use crate::{Catalogue, store};

/// The demo catalogue of Zhongjie Street (中街街道), in the canonical proto3 JSON of
/// `ServiceItem`, each with an extra `id` used as the item id.
pub const ZHONGJIE: &str = include_str!("../seed/zhongjie.json");

/// The street the demo data belongs to.
pub const ZHONGJIE_STREET: &str = "zhongjie";

/// Parses seed JSON into (id, item) pairs, validated.
pub fn parse(json: &str) -> Result<Vec<(String, ServiceItem)>> {
    let values: Vec<serde_json::Value> =
        serde_json::from_str(json).map_err(|e| Error::invalid("seed", format!("not a JSON array of items: {e}")))?;
    values
        .into_iter()
        .enumerate()
        .map(|(i, mut value)| {
            let id = value
                .as_object_mut()
                .and_then(|o| o.remove("id"))
                .and_then(|id| id.as_str().map(str::to_owned))
                .ok_or_else(|| Error::invalid(format!("seed[{i}].id"), "is required"))?;
            let mut item: ServiceItem =
                serde_json::from_value(value).map_err(|e| Error::invalid(format!("seed[{i}]"), e.to_string()))?;
            domain::validate(&format!("seed[{i}]"), &mut item)?;
            Ok((id, item))
        })
        .collect()
}

impl Catalogue {
    /// Creates and publishes every item of `json` under `streets/{street}` that does not exist
    /// yet; returns how many were added. Running it twice adds nothing the second time.
    pub async fn seed(&self, street: &str, json: &str) -> Result<usize> {
        let mut added = 0;
        for (id, item) in parse(json)? {
            let name = ItemName { street: street.to_owned(), item: id };
            let mut tx = self.db.begin().await?;
            if store::get_in(&mut tx, &name).await?.is_some() {
                continue;
            }
            let mut stored = store::insert(&mut tx, &name, &item).await?;
            stored.state = State::Published;
            stored.revision = 1;
            stored.version += 1;
            stored.publish_time = Some(time::now_text());
            store::save(&mut tx, &stored).await?;
            store::insert_revision(&mut tx, &stored).await?;
            let out = stored.to_proto();
            civic_kit::events::enqueue(&mut tx, crate::TOPIC_PUBLISHED, &out.name, &out).await?;
            tx.commit().await?;
            added += 1;
        }
        self.relay.notify();
        tracing::info!(street, added, "seeded the catalogue");
        Ok(added)
    }
}
