//! Demo data: the Zhongjie Street catalogue, published through the same domain path as the API
//! (draft, then publish: a revision and its event), for a laptop demo and for tests.

use civic_kit::error::{Error, Result};
use civic_kit::idempotency::RequestKey;
use civic_kit::names::{Id, StreetId};
use civic_kit::time;
use civic_kit::write::Change;
use civic_proto::catalogue::ServiceItem;

use crate::domain::{Content, Item, ItemName};
use crate::{Catalogue, api, store};

/// The demo catalogue of Zhongjie Street (中街街道), in the canonical proto3 JSON of
/// `ServiceItem`, each with an extra `id` used as the item id.
pub const ZHONGJIE: &str = include_str!("../seed/zhongjie.json");

/// The street the demo data belongs to.
pub const ZHONGJIE_STREET: &str = "zhongjie";

/// Parses seed JSON into (id, content) pairs, validated.
pub fn parse(json: &str) -> Result<Vec<(Id, Content)>> {
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
            let id = Id::parse(&format!("seed[{i}].id"), &id)?;
            let item: ServiceItem =
                serde_json::from_value(value).map_err(|e| Error::invalid(format!("seed[{i}]"), e.to_string()))?;
            Ok((id, Content::parse(&format!("seed[{i}]"), &item)?))
        })
        .collect()
}

impl Catalogue {
    /// Drafts and publishes every item of `json` under `street` that does not exist yet;
    /// returns how many were added. Running it twice adds nothing the second time.
    pub async fn seed(&self, street: &StreetId, json: &str) -> Result<usize> {
        let mut added = 0;
        for (id, content) in parse(json)? {
            let name = ItemName::new(street.clone(), id);
            let new = self
                .writer
                .write(&RequestKey::unkeyed("seed"), async |c: &mut Change| {
                    if store::get_in(c.tx(), &name).await?.is_some() {
                        return Ok(false);
                    }
                    let now = time::now_text();
                    let mut item = Item::draft(name.clone(), content, &now);
                    store::insert(c.tx(), &item).await?;
                    let happened = item.publish(&now)?;
                    store::insert_revision(c.tx(), &item).await?;
                    store::save(c.tx(), &item).await?;
                    api::emit(c, happened, &api::to_wire(&item)).await?;
                    Ok(true)
                })
                .await?;
            added += usize::from(new);
        }
        tracing::info!(street = %street, added, "seeded the catalogue");
        Ok(added)
    }
}
