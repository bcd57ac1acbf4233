//! Each replica's map of the streets it has been asked about: an R-tree over every current grid
//! boundary of a street, built from the store on first use and dropped when a boundary changes
//! (on this replica at once, on the others when the change's event arrives), to be built again
//! on the next look-up.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use civic_kit::error::{Error, Result};
use civic_kit::names::StreetId;
use sqlx::AnyPool;

use crate::domain::{GridName, Place};
use crate::geometry::{Boundary, GridIndex};
use crate::store;

/// One street's grids: the index, and each grid's names (as answers carry them) and revision.
pub struct StreetMap {
    index: GridIndex<usize>,
    grids: Vec<Located>,
}

/// A grid as LocateGrid answers it, its names written once when the map is built.
pub struct Located {
    /// The grid.
    pub name: GridName,
    /// `name` as text.
    pub grid: String,
    /// Its community's name as text.
    pub community: String,
    /// Its boundary's revision.
    pub revision: i64,
}

impl StreetMap {
    /// The map of `grids`: `(grid, revision, GeoJSON boundary)`. A stored boundary that no
    /// longer parses is left out and logged (it was valid when written).
    pub fn build(mut grids: Vec<(GridName, i64, String)>) -> Self {
        // Keys in name order, so that a point on a shared edge goes to the grid whose name
        // sorts first (the index picks the smallest key).
        grids.sort_by(|a, b| a.0.cmp(&b.0));
        let mut located = Vec::with_capacity(grids.len());
        let mut boundaries = Vec::with_capacity(grids.len());
        for (name, revision, text) in grids {
            match Boundary::from_geojson(&text) {
                Ok(boundary) => {
                    boundaries.push((located.len(), boundary));
                    located.push(Located {
                        grid: name.to_string(),
                        community: name.community().to_string(),
                        name,
                        revision,
                    });
                }
                Err(error) => tracing::error!(grid = %name, %error, "stored grid boundary does not parse"),
            }
        }
        Self { index: GridIndex::build(boundaries), grids: located }
    }

    /// The grid containing the point.
    pub fn locate(&self, longitude: f64, latitude: f64) -> Option<&Located> {
        self.index.locate(longitude, latitude).and_then(|i| self.grids.get(*i))
    }

    /// The place of a point: its grid's community and id, or nothing.
    pub fn place(&self, longitude: f64, latitude: f64) -> Place {
        self.locate(longitude, latitude)
            .map(|g| Place { community: g.name.community_id().to_string(), grid: g.name.id().to_string() })
            .unwrap_or_default()
    }
}

/// The maps of the streets asked about so far.
#[derive(Default)]
pub struct Maps {
    #[expect(clippy::disallowed_types, reason = "held only to clone or swap an Arc, never across .await")]
    streets: std::sync::RwLock<HashMap<StreetId, Arc<StreetMap>>>,
    /// Counts every [`Maps::forget`]: a map built from a read made before one is not kept.
    changes: AtomicU64,
}

impl Maps {
    /// The map of `street`, built from `pool` when not held.
    pub async fn of(&self, pool: &AnyPool, street: &StreetId) -> Result<Arc<StreetMap>> {
        if let Some(map) = self.held(street) {
            return Ok(map);
        }
        let changes = self.changes.load(Ordering::Acquire);
        let grids = store::boundaries(pool, street).await?;
        // Building parses every boundary and loads the tree: off the runtime's workers.
        let map = tokio::task::spawn_blocking(move || StreetMap::build(grids)).await.map_err(Error::internal)?;
        let map = Arc::new(map);
        if let Ok(mut streets) = self.streets.write()
            && self.changes.load(Ordering::Acquire) == changes
        {
            streets.insert(street.clone(), map.clone());
        }
        Ok(map)
    }

    fn held(&self, street: &StreetId) -> Option<Arc<StreetMap>> {
        self.streets.read().ok().and_then(|streets| streets.get(street).cloned())
    }

    /// Drops the map of `street`: a boundary changed.
    pub fn forget(&self, street: &StreetId) {
        if let Ok(mut streets) = self.streets.write() {
            self.changes.fetch_add(1, Ordering::AcqRel);
            streets.remove(street);
        }
    }

    /// Drops every map: changes may have been missed.
    pub fn forget_all(&self) {
        if let Ok(mut streets) = self.streets.write() {
            self.changes.fetch_add(1, Ordering::AcqRel);
            streets.clear();
        }
    }
}
