//! Grid boundaries and the lookup of the grid that holds a point.
//!
//! A grid's boundary is one polygon in WGS-84 degrees: x is the longitude, y the latitude, as
//! in GeoJSON. [`Boundary`] is a polygon that has passed every check the service relies on
//! (closed rings, finite coordinates in range, no ring touching itself or another ring, holes
//! inside the exterior, some area), so the rest of the service never meets a broken shape.
//! [`GridIndex`] answers "which of a street's grids contains this point" with an R-tree over
//! the boundaries followed by an exact, robust point-in-polygon test. [`tiling`] makes
//! irregular but exact tilings of a rectangle for demo data and tests, and [`BareIndex`] is
//! the plain R-tree lookup the benchmark measures [`GridIndex::locate`] against.
//!
//! Geometry here is planar: areas are in square degrees and are only ever compared with each
//! other (as in [`Boundary::overlap_ratio`]), never reported as land areas.

use std::fmt::{self, Write as _};
use std::ops::ControlFlow;

use geo::algorithm::coordinate_position::{CoordPos, coord_pos_relative_to_ring};
use geo::{
    Area, BooleanOps, Contains, Coord, CoordinatePosition, InteriorPoint, Intersects, Line, LineString, Point, Polygon,
};
use rstar::primitives::{CachedEnvelope, GeomWithData};
use rstar::{AABB, RTree, RTreeObject};
use serde_json::Value;

/// Most vertices a boundary may have, over all its rings.
///
/// Every position sent counts, including the last position of each ring that repeats its first.
pub const MAX_VERTICES: usize = 10_000;

/// Why a boundary is refused: a short reason that names no input value beyond what the user sent.
///
/// Rings are numbered from 0 in the order they were sent: ring 0 is the exterior, the others
/// are holes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundaryError {
    /// The text is not JSON at all.
    #[error("the boundary is not valid JSON")]
    NotJson,
    /// The JSON is not a GeoJSON object: it is not an object or has no "type" member.
    #[error("the boundary must be a GeoJSON object with a \"type\" member")]
    NotGeoJson,
    /// The GeoJSON is some other geometry, or a Feature whose geometry is not a Polygon.
    #[error("the boundary's type must be \"Polygon\", or \"Feature\" with a geometry of type \"Polygon\"")]
    NotPolygon,
    /// The polygon's coordinates are not an array of rings, each an array of positions.
    #[error("the polygon's \"coordinates\" must be an array of rings, each an array of positions")]
    BadCoordinates,
    /// A position is not an array of two numbers (a third number, the altitude, is allowed and ignored).
    #[error("ring {ring}, position {position} must be a pair of numbers: [longitude, latitude]")]
    BadPosition {
        /// The ring's index.
        ring: usize,
        /// The position's index within the ring.
        position: usize,
    },
    /// The polygon has no rings at all.
    #[error("the polygon has no rings: it needs at least an exterior ring")]
    NoRings,
    /// A ring has fewer than 3 distinct positions (plus the closing one).
    #[error(
        "ring {ring} has too few positions: it needs at least 3 distinct positions and a last position repeating the first"
    )]
    TooFewPositions {
        /// The ring's index.
        ring: usize,
    },
    /// A ring's last position is not its first.
    #[error("ring {ring} is not closed: its last position must repeat its first")]
    NotClosed {
        /// The ring's index.
        ring: usize,
    },
    /// A coordinate is NaN or infinite.
    #[error("ring {ring} has a coordinate that is not a finite number")]
    NotFinite {
        /// The ring's index.
        ring: usize,
    },
    /// A longitude is outside [-180, 180] or a latitude outside [-90, 90].
    #[error("ring {ring} has a position out of range: longitude must be within -180..180 and latitude within -90..90")]
    OutOfRange {
        /// The ring's index.
        ring: usize,
    },
    /// The boundary has more than [`MAX_VERTICES`] positions.
    #[error("the boundary has more than {max} positions over all its rings: simplify it", max = MAX_VERTICES)]
    TooManyVertices,
    /// Two edges of one ring cross, touch or overlap (other than consecutive edges meeting at their vertex).
    #[error(
        "ring {ring} intersects itself: its edges must not cross, touch or overlap except where consecutive edges meet"
    )]
    SelfIntersecting {
        /// The ring's index.
        ring: usize,
    },
    /// Two rings cross or touch each other.
    #[error(
        "rings {first} and {second} cross or touch: every hole must lie strictly inside the exterior and apart from the other holes"
    )]
    RingsCross {
        /// The smaller of the two rings' indexes.
        first: usize,
        /// The larger of the two rings' indexes.
        second: usize,
    },
    /// A hole lies outside the exterior ring.
    #[error("ring {ring} is a hole outside the exterior ring: every hole must lie inside ring 0")]
    HoleOutside {
        /// The hole's ring index.
        ring: usize,
    },
    /// A hole lies inside another hole.
    #[error("ring {ring} lies inside another hole: holes must not nest")]
    NestedHole {
        /// The inner hole's ring index.
        ring: usize,
    },
    /// The polygon encloses no area.
    #[error("the boundary encloses no area")]
    ZeroArea,
}

/// A validated grid boundary: one polygon (exterior ring and optional holes), every ring closed, at least 4 positions (3 distinct), finite, longitude in [-180, 180], latitude in [-90, 90], no ring self-intersecting, rings not crossing each other, holes inside the exterior, area > 0.
///
/// Repeated consecutive positions are dropped when a boundary is built (they add nothing and
/// are common in exported data); what remains must still have 3 distinct positions per ring.
/// Rings may run either way round: the orientation is kept as sent. Rings must not touch each
/// other at all, not even at a single point (stricter than the OGC rules, which let a hole
/// touch the exterior at one point). Holes must not lie inside other holes.
#[derive(Debug, Clone, PartialEq)]
pub struct Boundary {
    polygon: Polygon<f64>,
}

impl Boundary {
    /// Parses a GeoJSON text: either a Geometry object of type "Polygon" or a Feature whose geometry is a Polygon.
    ///
    /// The caller bounds the text's size; the number of positions is checked against
    /// [`MAX_VERTICES`] before any ring is built. A position may carry a third number (the
    /// altitude), which is dropped. The checks are those of [`Boundary::from_rings`].
    pub fn from_geojson(text: &str) -> Result<Boundary, BoundaryError> {
        let value: Value = serde_json::from_str(text).map_err(|_| BoundaryError::NotJson)?;
        let object = value.as_object().ok_or(BoundaryError::NotGeoJson)?;
        let geometry = match object.get("type").and_then(Value::as_str) {
            Some("Polygon") => object,
            Some("Feature") => object.get("geometry").and_then(Value::as_object).ok_or(BoundaryError::NotPolygon)?,
            Some(_) => return Err(BoundaryError::NotPolygon),
            None => return Err(BoundaryError::NotGeoJson),
        };
        if geometry.get("type").and_then(Value::as_str) != Some("Polygon") {
            return Err(BoundaryError::NotPolygon);
        }
        let rings = geometry.get("coordinates").and_then(Value::as_array).ok_or(BoundaryError::BadCoordinates)?;

        let mut total = 0_usize;
        for ring in rings {
            total += ring.as_array().ok_or(BoundaryError::BadCoordinates)?.len();
        }
        if total > MAX_VERTICES {
            return Err(BoundaryError::TooManyVertices);
        }

        let mut parsed = Vec::with_capacity(rings.len());
        for (ring, positions) in rings.iter().enumerate() {
            let positions = positions.as_array().ok_or(BoundaryError::BadCoordinates)?;
            let mut coords = Vec::with_capacity(positions.len());
            for (position, value) in positions.iter().enumerate() {
                coords.push(parse_position(value).ok_or(BoundaryError::BadPosition { ring, position })?);
            }
            parsed.push(coords);
        }
        validate(parsed)
    }

    /// Builds from rings of (longitude, latitude) pairs (first ring the exterior); same checks. Used by the demo-data generator and tests.
    ///
    /// The checks run in this order, and the first failure is returned: there is a ring; at
    /// most [`MAX_VERTICES`] positions; per ring, finite coordinates in range, at least 4
    /// positions, closed, and after dropping repeated consecutive positions still 3 distinct
    /// ones; no ring touching itself or another ring; holes inside the exterior and not inside
    /// each other; some area.
    pub fn from_rings(rings: Vec<Vec<(f64, f64)>>) -> Result<Boundary, BoundaryError> {
        validate(rings.into_iter().map(|ring| ring.into_iter().map(|(x, y)| Coord { x, y }).collect()).collect())
    }

    /// The boundary as a compact GeoJSON Polygon geometry text (`{"type":"Polygon","coordinates":[[[lng,lat],...]]}`), round-trippable through from_geojson.
    ///
    /// Numbers are written in their shortest form that reads back as the same value; rings
    /// keep the order and orientation they were built with.
    pub fn to_geojson(&self) -> String {
        let positions =
            self.polygon.exterior().0.len() + self.polygon.interiors().iter().map(|ring| ring.0.len()).sum::<usize>();
        let mut out = String::with_capacity(40 + positions * 40);
        out.push_str(r#"{"type":"Polygon","coordinates":["#);
        let rings = std::iter::once(self.polygon.exterior()).chain(self.polygon.interiors());
        for (index, ring) in rings.enumerate() {
            if index > 0 {
                out.push(',');
            }
            out.push('[');
            for (position, coord) in ring.0.iter().enumerate() {
                if position > 0 {
                    out.push(',');
                }
                // Writing to a String cannot fail.
                let _ = write!(out, "[{},{}]", Value::from(coord.x), Value::from(coord.y));
            }
            out.push(']');
        }
        out.push_str("]}");
        out
    }

    /// The polygon itself: x is the longitude and y the latitude, in degrees.
    pub fn polygon(&self) -> &Polygon<f64> {
        &self.polygon
    }

    /// The bounding box: west, south, east, north.
    pub fn bbox(&self) -> [f64; 4] {
        use geo::BoundingRect;
        self.polygon.bounding_rect().map(|r| [r.min().x, r.min().y, r.max().x, r.max().y]).unwrap_or_default()
    }

    /// Unsigned area in square degrees (planar; only used for ratios).
    pub fn area(&self) -> f64 {
        self.polygon.unsigned_area()
    }

    /// The share of the smaller of the two boundaries that the two have in common: area(a ∩ b) / min(area(a), area(b)), 0 when they only touch.
    ///
    /// The result is between 0 and 1: 1 when one boundary covers the other.
    pub fn overlap_ratio(&self, other: &Boundary) -> f64 {
        let smaller = self.area().min(other.area());
        let apart = !rstar::Envelope::intersects(&self.polygon.envelope(), &other.polygon.envelope());
        if apart || smaller.is_nan() || smaller <= 0.0 {
            return 0.0;
        }
        let common = self.polygon.intersection(&other.polygon).unsigned_area();
        (common / smaller).clamp(0.0, 1.0)
    }

    /// A point inside the polygon (geo's InteriorPoint), for tests and demo data, as (longitude, latitude).
    pub fn interior_point(&self) -> (f64, f64) {
        if let Some(point) = self.polygon.interior_point() {
            return (point.x(), point.y());
        }
        // Not reached for a valid boundary; the first vertex is at least on it.
        self.polygon.exterior().0.first().map_or((0.0, 0.0), |coord| (coord.x, coord.y))
    }
}

/// Reads one GeoJSON position: two numbers, or three with the altitude dropped.
fn parse_position(value: &Value) -> Option<Coord<f64>> {
    match value.as_array()?.as_slice() {
        [x, y] => Some(Coord { x: x.as_f64()?, y: y.as_f64()? }),
        [x, y, altitude] if altitude.is_number() => Some(Coord { x: x.as_f64()?, y: y.as_f64()? }),
        _ => None,
    }
}

/// Every check of a boundary, in the order [`Boundary::from_rings`] documents.
fn validate(rings: Vec<Vec<Coord<f64>>>) -> Result<Boundary, BoundaryError> {
    if rings.is_empty() {
        return Err(BoundaryError::NoRings);
    }
    if rings.iter().map(Vec::len).sum::<usize>() > MAX_VERTICES {
        return Err(BoundaryError::TooManyVertices);
    }

    let mut line_strings = Vec::with_capacity(rings.len());
    for (ring, mut coords) in rings.into_iter().enumerate() {
        for coord in &coords {
            let finite = coord.x.is_finite() && coord.y.is_finite();
            if !finite {
                return Err(BoundaryError::NotFinite { ring });
            }
            let in_range = (-180.0..=180.0).contains(&coord.x) && (-90.0..=90.0).contains(&coord.y);
            if !in_range {
                return Err(BoundaryError::OutOfRange { ring });
            }
        }
        if coords.len() < 4 {
            return Err(BoundaryError::TooFewPositions { ring });
        }
        if coords.first() != coords.last() {
            return Err(BoundaryError::NotClosed { ring });
        }
        coords.dedup();
        if coords.len() < 4 {
            return Err(BoundaryError::TooFewPositions { ring });
        }
        line_strings.push(LineString::new(coords));
    }

    check_edges(&line_strings)?;

    let mut rings = line_strings.into_iter();
    let Some(exterior) = rings.next() else {
        return Err(BoundaryError::NoRings);
    };
    let holes: Vec<LineString<f64>> = rings.collect();
    check_holes(&exterior, &holes)?;

    let polygon = Polygon::new(exterior, holes);
    if polygon.unsigned_area() > 0.0 { Ok(Boundary { polygon }) } else { Err(BoundaryError::ZeroArea) }
}

/// One edge of a ring, for the intersection checks.
#[derive(Debug, Clone, Copy)]
struct Edge {
    /// The edge itself.
    line: Line<f64>,
    /// The index of its ring.
    ring: usize,
    /// Its index within the ring: edge `i` runs from position `i` to position `i + 1`.
    index: usize,
    /// How many edges its ring has.
    count: usize,
}

/// Refuses rings that touch themselves or each other.
///
/// Every edge of every ring goes into an R-tree; each edge is then tested exactly (with
/// geo's robust predicates) against the later edges whose envelopes meet its own, so the work
/// is about n log n for ordinary shapes rather than n².
fn check_edges(rings: &[LineString<f64>]) -> Result<(), BoundaryError> {
    let mut edges = Vec::with_capacity(rings.iter().map(|ring| ring.0.len()).sum());
    for (ring, line_string) in rings.iter().enumerate() {
        let count = line_string.0.len().saturating_sub(1);
        edges.extend(line_string.lines().enumerate().map(|(index, line)| Edge { line, ring, index, count }));
    }
    let tree = RTree::bulk_load(edges.iter().enumerate().map(|(id, edge)| GeomWithData::new(edge.line, id)).collect());
    for (id, edge) in edges.iter().enumerate() {
        for candidate in tree.locate_in_envelope_intersecting(&edge.line.envelope()) {
            if candidate.data <= id {
                continue;
            }
            let Some(other) = edges.get(candidate.data) else {
                continue;
            };
            if let Some(error) = conflict(edge, other) {
                return Err(error);
            }
        }
    }
    Ok(())
}

/// Whether two edges, `a` before `b` in ring order, meet where they must not.
///
/// Consecutive edges of a ring (including the last and the first) share their common vertex
/// and must meet nowhere else: that happens only when the second folds back along the first.
/// Any other two edges of a ring must not meet at all, nor may edges of different rings.
fn conflict(a: &Edge, b: &Edge) -> Option<BoundaryError> {
    if a.ring != b.ring {
        return a.line.intersects(&b.line).then_some(BoundaryError::RingsCross { first: a.ring, second: b.ring });
    }
    let meeting = if b.index == a.index + 1 {
        Some((a.line.start, a.line.end, b.line.end))
    } else if a.index == 0 && b.index + 1 == a.count {
        Some((b.line.start, a.line.start, a.line.end))
    } else {
        None
    };
    let meets = match meeting {
        // Collinear and turning back: the farther end lies on the other edge.
        Some((before, shared, after)) => {
            Line::new(before, shared).intersects(&after) || Line::new(shared, after).intersects(&before)
        }
        None => a.line.intersects(&b.line),
    };
    meets.then_some(BoundaryError::SelfIntersecting { ring: a.ring })
}

/// Refuses holes outside the exterior or inside another hole.
///
/// Rings have already been found not to touch, so one vertex of a hole tells on which side
/// of any other ring the whole hole lies.
fn check_holes(exterior: &LineString<f64>, holes: &[LineString<f64>]) -> Result<(), BoundaryError> {
    let envelopes: Vec<AABB<Point<f64>>> = holes.iter().map(|hole| hole.envelope()).collect();
    for (offset, hole) in holes.iter().enumerate() {
        let ring = offset + 1;
        let Some(&first) = hole.0.first() else {
            continue;
        };
        if coord_pos_relative_to_ring(first, exterior) != CoordPos::Inside {
            return Err(BoundaryError::HoleOutside { ring });
        }
        let point = Point::from(first);
        for (other_offset, (other, envelope)) in holes.iter().zip(&envelopes).enumerate() {
            if other_offset != offset
                && rstar::Envelope::contains_point(envelope, &point)
                && coord_pos_relative_to_ring(first, other) == CoordPos::Inside
            {
                return Err(BoundaryError::NestedHole { ring });
            }
        }
    }
    Ok(())
}

/// One grid in an R-tree: its polygon with its envelope computed once, and its rank.
type Entry = CachedEnvelope<GeomWithData<Polygon<f64>, usize>>;

/// Where a point lies among a street's current grids: an R-tree over their boundaries.
/// `K` is the grid's key (the service uses its resource name, a String).
///
/// The grids are ranked by key when the index is built and the tree holds each polygon with
/// its rank, so the answer for a point does not depend on the order the grids were given in.
pub struct GridIndex<K> {
    tree: RTree<Entry>,
    /// The keys in ascending order; an entry's data is its position here.
    keys: Vec<K>,
}

impl<K: Clone + Ord> GridIndex<K> {
    /// Builds the tree over `grids` (bulk load).
    pub fn build(grids: impl IntoIterator<Item = (K, Boundary)>) -> Self {
        let mut grids: Vec<(K, Boundary)> = grids.into_iter().collect();
        grids.sort_by(|(left, _), (right, _)| left.cmp(right));
        let mut keys = Vec::with_capacity(grids.len());
        let mut entries = Vec::with_capacity(grids.len());
        for (rank, (key, boundary)) in grids.into_iter().enumerate() {
            keys.push(key);
            entries.push(CachedEnvelope::new(GeomWithData::new(boundary.polygon, rank)));
        }
        Self { tree: RTree::bulk_load(entries), keys }
    }

    /// The grid that contains the point (longitude, latitude).
    ///
    /// A point in a grid's interior belongs to that grid (when grids overlap, which the
    /// service does not allow, to one of them, the same one every time for the same grids). A
    /// point on the boundary of one or more grids and inside none (on a shared edge or vertex)
    /// goes to the smallest key among the grids whose boundary it lies on. A point in a hole is
    /// not in that grid; a point on a hole's edge is on that grid's boundary. None when outside
    /// every grid, or when a coordinate is not a number. The test is exact (robust
    /// predicates) and the lookup allocates nothing.
    pub fn locate(&self, longitude: f64, latitude: f64) -> Option<&K> {
        let coord = Coord { x: longitude, y: latitude };
        let envelope = AABB::from_point(Point(coord));
        let mut on_boundary: Option<usize> = None;
        let flow = self.tree.locate_in_envelope_intersecting_int(&envelope, |entry| {
            match entry.geom().coordinate_position(&coord) {
                CoordPos::Inside => ControlFlow::Break(entry.data),
                CoordPos::OnBoundary => {
                    on_boundary = Some(on_boundary.map_or(entry.data, |rank| rank.min(entry.data)));
                    ControlFlow::Continue(())
                }
                CoordPos::Outside => ControlFlow::Continue(()),
            }
        });
        let rank = match flow {
            ControlFlow::Break(rank) => rank,
            ControlFlow::Continue(()) => on_boundary?,
        };
        self.keys.get(rank)
    }

    /// Number of grids in the index.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the index holds no grid.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl<K> Default for GridIndex<K> {
    /// An index with no grids, in which every point is outside.
    fn default() -> Self {
        Self { tree: RTree::new(), keys: Vec::new() }
    }
}

impl<K: fmt::Debug> fmt::Debug for GridIndex<K> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("GridIndex").field("keys", &self.keys).finish_non_exhaustive()
    }
}

/// The bare baseline the benchmark compares `GridIndex::locate` against: an rstar tree of polygons and geo's `Contains`, nothing else.
///
/// Like [`GridIndex`] it caches each polygon's envelope (as rstar recommends for polygons), so
/// the two trees are alike and the comparison measures only what `locate` adds. It finds the
/// first polygon whose interior holds the point: a point on an edge is in none.
pub struct BareIndex {
    tree: RTree<Entry>,
}

impl BareIndex {
    /// Builds the tree over `polygons` (bulk load); a polygon is known by its position in the vector.
    pub fn build(polygons: Vec<Polygon<f64>>) -> Self {
        let entries: Vec<Entry> = polygons
            .into_iter()
            .enumerate()
            .map(|(index, polygon)| CachedEnvelope::new(GeomWithData::new(polygon, index)))
            .collect();
        Self { tree: RTree::bulk_load(entries) }
    }

    /// The position of a polygon whose interior contains the point (longitude, latitude), if any.
    pub fn locate(&self, longitude: f64, latitude: f64) -> Option<usize> {
        let point = Point::new(longitude, latitude);
        self.tree
            .locate_in_envelope_intersecting(&AABB::from_point(point))
            .find(|entry| entry.geom().contains(&point))
            .map(|entry| entry.data)
    }
}

impl fmt::Debug for BareIndex {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("BareIndex").field("polygons", &self.tree.size()).finish()
    }
}

/// How far an interior vertex of a [`tiling`] may move, as a share of a cell's width (in x) and
/// height (in y). Below a quarter, every cell stays convex and the cells never overlap.
const JITTER: f64 = 0.24;

/// A street-shaped tiling for demo data and tests: `columns × rows` quadrilateral cells over the rectangle with south-west corner (west, south) and size (width, height) in degrees, with interior vertices jittered deterministically by `seed` (a simple xorshift/splitmix on u64 — no rand crate) by at most a quarter cell so cells are irregular but never overlap and still tile the rectangle exactly (shared vertices). Returned row-major.
///
/// Row-major means the southern row first, each row from west to east: cell (column c, row r)
/// is at index `r * columns + c`. Each cell runs counter-clockwise from its south-west corner.
/// Vertices on the rectangle's sides stay where they are, so the cells' union is exactly the
/// rectangle. The result is empty when `columns` or `rows` is 0, or when the rectangle does not
/// make valid boundaries (not finite, not positive in size, or outside the longitude and
/// latitude ranges).
pub fn tiling(west: f64, south: f64, width: f64, height: f64, columns: usize, rows: usize, seed: u64) -> Vec<Boundary> {
    let sized = width > 0.0 && height > 0.0;
    let vertex_count = columns.checked_add(1).zip(rows.checked_add(1)).and_then(|(across, up)| across.checked_mul(up));
    let Some(vertex_count) = vertex_count else {
        return Vec::new();
    };
    if columns == 0 || rows == 0 || !sized {
        return Vec::new();
    }
    let cell_width = width / columns as f64;
    let cell_height = height / rows as f64;
    let mut random = SplitMix64(seed);
    let mut vertices = Vec::with_capacity(vertex_count);
    for row in 0..=rows {
        for column in 0..=columns {
            let mut x = west + width * (column as f64 / columns as f64);
            let mut y = south + height * (row as f64 / rows as f64);
            if (1..columns).contains(&column) && (1..rows).contains(&row) {
                x += cell_width * JITTER * (2.0 * random.next_f64() - 1.0);
                y += cell_height * JITTER * (2.0 * random.next_f64() - 1.0);
            }
            vertices.push((x, y));
        }
    }
    let vertex = |column: usize, row: usize| vertices.get(row * (columns + 1) + column).copied();
    let mut cells = Vec::with_capacity(columns * rows);
    for row in 0..rows {
        for column in 0..columns {
            let corners = [
                vertex(column, row),
                vertex(column + 1, row),
                vertex(column + 1, row + 1),
                vertex(column, row + 1),
                vertex(column, row),
            ];
            let Some(ring) = corners.into_iter().collect::<Option<Vec<(f64, f64)>>>() else {
                return Vec::new();
            };
            match Boundary::from_rings(vec![ring]) {
                Ok(cell) => cells.push(cell),
                Err(_) => return Vec::new(),
            }
        }
    }
    cells
}

/// SplitMix64: a tiny, fast, deterministic generator of well-spread u64 values.
struct SplitMix64(u64);

impl SplitMix64 {
    /// The next 64 random bits.
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in [0, 1), uniform over multiples of 2⁻⁵³.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An axis-aligned square with its south-west corner at (x, y), counter-clockwise.
    fn square_ring(x: f64, y: f64, size: f64) -> Vec<(f64, f64)> {
        vec![(x, y), (x + size, y), (x + size, y + size), (x, y + size), (x, y)]
    }

    fn square(x: f64, y: f64, size: f64) -> Boundary {
        Boundary::from_rings(vec![square_ring(x, y, size)]).expect("a square is a valid boundary")
    }

    const SQUARE: &str =
        r#"{"type":"Polygon","coordinates":[[[116.3,39.9],[116.4,39.9],[116.4,40.0],[116.3,40.0],[116.3,39.9]]]}"#;

    #[test]
    fn a_square_round_trips_through_geojson() {
        let boundary = Boundary::from_geojson(SQUARE).expect("valid square");
        let text = boundary.to_geojson();
        assert!(text.starts_with(r#"{"type":"Polygon","coordinates":[[[116.3,39.9],"#), "{text}");
        assert!(text.ends_with("]]]}"), "{text}");
        let again = Boundary::from_geojson(&text).expect("own output parses");
        assert_eq!(again, boundary);
        assert_eq!(again.to_geojson(), text);
        assert!((boundary.area() - 0.01).abs() < 1e-9);
    }

    #[test]
    fn a_polygon_with_a_hole_round_trips() {
        let boundary = Boundary::from_rings(vec![square_ring(0.0, 0.0, 4.0), square_ring(1.0, 1.0, 2.0)])
            .expect("a square with a hole is valid");
        assert!((boundary.area() - 12.0).abs() < 1e-12);
        let again = Boundary::from_geojson(&boundary.to_geojson()).expect("own output parses");
        assert_eq!(again, boundary);
    }

    #[test]
    fn a_feature_is_accepted() {
        let feature = format!(r#"{{"type":"Feature","properties":{{"name":"x"}},"geometry":{SQUARE}}}"#);
        let from_feature = Boundary::from_geojson(&feature).expect("a Feature with a Polygon");
        let plain = Boundary::from_geojson(SQUARE).expect("valid square");
        assert_eq!(from_feature, plain);
    }

    #[test]
    fn an_altitude_is_accepted_and_dropped() {
        let text = r#"{"type":"Polygon","coordinates":[[[0,0,5],[1,0,5],[1,1,5],[0,1,5],[0,0,5]]]}"#;
        let boundary = Boundary::from_geojson(text).expect("positions with altitude");
        assert_eq!(boundary, square(0.0, 0.0, 1.0));
    }

    #[test]
    fn malformed_geojson_is_refused() {
        assert_eq!(Boundary::from_geojson("{not json"), Err(BoundaryError::NotJson));
        assert_eq!(Boundary::from_geojson("[1, 2]"), Err(BoundaryError::NotGeoJson));
        assert_eq!(Boundary::from_geojson(r#"{"coordinates":[]}"#), Err(BoundaryError::NotGeoJson));
        assert_eq!(
            Boundary::from_geojson(r#"{"type":"Point","coordinates":[116.3,39.9]}"#),
            Err(BoundaryError::NotPolygon)
        );
        assert_eq!(
            Boundary::from_geojson(r#"{"type":"Feature","properties":{},"geometry":null}"#),
            Err(BoundaryError::NotPolygon)
        );
        assert_eq!(
            Boundary::from_geojson(r#"{"type":"Feature","geometry":{"type":"Point","coordinates":[0,0]}}"#),
            Err(BoundaryError::NotPolygon)
        );
        assert_eq!(Boundary::from_geojson(r#"{"type":"Polygon"}"#), Err(BoundaryError::BadCoordinates));
        assert_eq!(
            Boundary::from_geojson(r#"{"type":"Polygon","coordinates":[1]}"#),
            Err(BoundaryError::BadCoordinates)
        );
        assert_eq!(
            Boundary::from_geojson(r#"{"type":"Polygon","coordinates":[[[0,0],[1],[1,1],[0,0]]]}"#),
            Err(BoundaryError::BadPosition { ring: 0, position: 1 })
        );
        assert_eq!(
            Boundary::from_geojson(r#"{"type":"Polygon","coordinates":[[[0,0],[1,"0"],[1,1],[0,0]]]}"#),
            Err(BoundaryError::BadPosition { ring: 0, position: 1 })
        );
        assert_eq!(Boundary::from_geojson(r#"{"type":"Polygon","coordinates":[]}"#), Err(BoundaryError::NoRings));
    }

    #[test]
    fn an_unclosed_ring_is_refused() {
        let text = r#"{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,1]]]}"#;
        assert_eq!(Boundary::from_geojson(text), Err(BoundaryError::NotClosed { ring: 0 }));
        let message = BoundaryError::NotClosed { ring: 0 }.to_string();
        assert_eq!(message, "ring 0 is not closed: its last position must repeat its first");
    }

    #[test]
    fn a_non_finite_coordinate_is_refused() {
        let rings = vec![vec![(0.0, 0.0), (f64::NAN, 0.0), (1.0, 1.0), (0.0, 0.0)]];
        assert_eq!(Boundary::from_rings(rings), Err(BoundaryError::NotFinite { ring: 0 }));
        let rings = vec![square_ring(0.0, 0.0, 4.0), vec![(1.0, 1.0), (2.0, f64::INFINITY), (2.0, 2.0), (1.0, 1.0)]];
        assert_eq!(Boundary::from_rings(rings), Err(BoundaryError::NotFinite { ring: 1 }));
    }

    #[test]
    fn an_out_of_range_position_is_refused() {
        let text = r#"{"type":"Polygon","coordinates":[[[170,0],[200,0],[200,1],[170,1],[170,0]]]}"#;
        assert_eq!(Boundary::from_geojson(text), Err(BoundaryError::OutOfRange { ring: 0 }));
        assert_eq!(Boundary::from_rings(vec![square_ring(0.0, 89.5, 1.0)]), Err(BoundaryError::OutOfRange { ring: 0 }));
        // The extremes themselves are allowed.
        assert!(Boundary::from_rings(vec![square_ring(179.0, 89.0, 1.0)]).is_ok());
        assert!(Boundary::from_rings(vec![square_ring(-180.0, -90.0, 1.0)]).is_ok());
    }

    #[test]
    fn too_few_positions_are_refused() {
        let rings = vec![vec![(0.0, 0.0), (1.0, 0.0), (0.0, 0.0)]];
        assert_eq!(Boundary::from_rings(rings), Err(BoundaryError::TooFewPositions { ring: 0 }));
        // Four positions, but only two distinct once repeats are dropped.
        let rings = vec![vec![(0.0, 0.0), (1.0, 0.0), (1.0, 0.0), (0.0, 0.0)]];
        assert_eq!(Boundary::from_rings(rings), Err(BoundaryError::TooFewPositions { ring: 0 }));
        let text = r#"{"type":"Polygon","coordinates":[[[0,0],[1,0],[0,0]]]}"#;
        assert_eq!(Boundary::from_geojson(text), Err(BoundaryError::TooFewPositions { ring: 0 }));
    }

    #[test]
    fn repeated_positions_are_dropped() {
        let rings = vec![vec![(0.0, 0.0), (0.0, 0.0), (1.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0), (0.0, 0.0)]];
        let boundary = Boundary::from_rings(rings).expect("repeats are harmless");
        assert_eq!(boundary, square(0.0, 0.0, 1.0));
        assert_eq!(boundary.polygon().exterior().0.len(), 5);
    }

    #[test]
    fn a_bow_tie_is_refused() {
        let rings = vec![vec![(0.0, 0.0), (1.0, 1.0), (1.0, 0.0), (0.0, 1.0), (0.0, 0.0)]];
        assert_eq!(Boundary::from_rings(rings), Err(BoundaryError::SelfIntersecting { ring: 0 }));
    }

    #[test]
    fn touching_and_overlapping_edges_are_refused() {
        // A spike: the second edge folds back along the first.
        let spike = vec![(0.0, 0.0), (2.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 0.0)];
        assert_eq!(Boundary::from_rings(vec![spike]), Err(BoundaryError::SelfIntersecting { ring: 0 }));
        // Three collinear positions: no area, and the closing edge overlaps the others.
        let flat = vec![(0.0, 0.0), (1.0, 0.0), (2.0, 0.0), (0.0, 0.0)];
        assert_eq!(Boundary::from_rings(vec![flat]), Err(BoundaryError::SelfIntersecting { ring: 0 }));
        // A figure eight touching itself at a vertex.
        let eight = vec![(0.0, 0.0), (1.0, 1.0), (2.0, 0.0), (2.0, 2.0), (1.0, 1.0), (0.0, 2.0), (0.0, 0.0)];
        assert_eq!(Boundary::from_rings(vec![eight]), Err(BoundaryError::SelfIntersecting { ring: 0 }));
        // A vertex touching a non-adjacent edge.
        let touch = vec![(0.0, 0.0), (4.0, 0.0), (4.0, 4.0), (2.0, 0.0), (0.0, 4.0), (0.0, 0.0)];
        assert_eq!(Boundary::from_rings(vec![touch]), Err(BoundaryError::SelfIntersecting { ring: 0 }));
    }

    #[test]
    fn a_hole_outside_is_refused() {
        let rings = vec![square_ring(0.0, 0.0, 1.0), square_ring(2.0, 2.0, 1.0)];
        assert_eq!(Boundary::from_rings(rings), Err(BoundaryError::HoleOutside { ring: 1 }));
        // A hole around the exterior.
        let rings = vec![square_ring(1.0, 1.0, 1.0), square_ring(0.0, 0.0, 4.0)];
        assert_eq!(Boundary::from_rings(rings), Err(BoundaryError::HoleOutside { ring: 1 }));
    }

    #[test]
    fn crossing_touching_and_nested_rings_are_refused() {
        let crossing = vec![square_ring(0.0, 0.0, 4.0), square_ring(3.0, 1.0, 2.0)];
        assert_eq!(Boundary::from_rings(crossing), Err(BoundaryError::RingsCross { first: 0, second: 1 }));
        let touching = vec![square_ring(0.0, 0.0, 4.0), square_ring(0.0, 1.0, 1.0)];
        assert_eq!(Boundary::from_rings(touching), Err(BoundaryError::RingsCross { first: 0, second: 1 }));
        let holes_cross = vec![square_ring(0.0, 0.0, 10.0), square_ring(1.0, 1.0, 3.0), square_ring(2.0, 2.0, 3.0)];
        assert_eq!(Boundary::from_rings(holes_cross), Err(BoundaryError::RingsCross { first: 1, second: 2 }));
        let nested = vec![square_ring(0.0, 0.0, 10.0), square_ring(1.0, 1.0, 8.0), square_ring(2.0, 2.0, 1.0)];
        assert_eq!(Boundary::from_rings(nested), Err(BoundaryError::NestedHole { ring: 2 }));
    }

    #[test]
    fn too_many_vertices_are_refused() {
        let mut ring: Vec<(f64, f64)> = (0..MAX_VERTICES)
            .map(|i| {
                let angle = i as f64 / MAX_VERTICES as f64 * std::f64::consts::TAU;
                (angle.cos(), angle.sin())
            })
            .collect();
        ring.push(ring[0]);
        assert_eq!(Boundary::from_rings(vec![ring.clone()]), Err(BoundaryError::TooManyVertices));

        let positions: Vec<String> = ring.iter().map(|(x, y)| format!("[{x},{y}]")).collect();
        let text = format!(r#"{{"type":"Polygon","coordinates":[[{}]]}}"#, positions.join(","));
        assert_eq!(Boundary::from_geojson(&text), Err(BoundaryError::TooManyVertices));
    }

    #[test]
    fn a_large_ring_validates() {
        // Exactly the limit, the closing position included.
        let count = MAX_VERTICES - 1;
        let mut ring: Vec<(f64, f64)> = (0..count)
            .map(|i| {
                let angle = i as f64 / count as f64 * std::f64::consts::TAU;
                (10.0 * angle.cos(), 10.0 * angle.sin())
            })
            .collect();
        ring.push(ring[0]);
        let boundary = Boundary::from_rings(vec![ring]).expect("a fine circle is valid");
        assert!((boundary.area() - std::f64::consts::PI * 100.0).abs() < 0.01);
    }

    #[test]
    fn overlap_ratios() {
        let a = square(0.0, 0.0, 2.0);
        assert!((a.overlap_ratio(&a) - 1.0).abs() < 1e-9);
        let adjacent = square(2.0, 0.0, 2.0);
        assert!(a.overlap_ratio(&adjacent).abs() < 1e-12);
        let corner = square(2.0, 2.0, 2.0);
        assert!(a.overlap_ratio(&corner).abs() < 1e-12);
        let far = square(10.0, 10.0, 1.0);
        assert_eq!(a.overlap_ratio(&far), 0.0);
        let half = Boundary::from_rings(vec![vec![(1.0, 0.0), (3.0, 0.0), (3.0, 2.0), (1.0, 2.0), (1.0, 0.0)]])
            .expect("valid rectangle");
        assert!((a.overlap_ratio(&half) - 0.5).abs() < 1e-9);
        assert!((half.overlap_ratio(&a) - 0.5).abs() < 1e-9);
        // A small square inside a large one is wholly shared.
        let inner = square(0.5, 0.5, 1.0);
        assert!((a.overlap_ratio(&inner) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn interior_points_are_inside() {
        let with_hole = Boundary::from_rings(vec![square_ring(0.0, 0.0, 4.0), square_ring(1.0, 1.0, 2.0)])
            .expect("valid polygon with a hole");
        for boundary in [square(116.3, 39.9, 0.1), with_hole] {
            let (x, y) = boundary.interior_point();
            assert!(boundary.polygon().contains(&Point::new(x, y)));
        }
    }

    /// The test street: 8 × 6 cells near Beijing.
    fn street() -> Vec<Boundary> {
        tiling(116.30, 39.90, 0.08, 0.06, 8, 6, 42)
    }

    #[test]
    fn a_tiling_tiles_its_rectangle() {
        let tiles = street();
        assert_eq!(tiles.len(), 48);
        for (i, a) in tiles.iter().enumerate() {
            for b in &tiles[i + 1..] {
                assert!(a.overlap_ratio(b) < 1e-9, "cells overlap");
            }
        }
        let total: f64 = tiles.iter().map(Boundary::area).sum();
        let rectangle = 0.08 * 0.06;
        assert!((total - rectangle).abs() < 1e-9 * rectangle, "{total} != {rectangle}");
        // Deterministic, irregular, and different for another seed.
        assert_eq!(tiles, street());
        assert_ne!(tiles, tiling(116.30, 39.90, 0.08, 0.06, 8, 6, 43));
        assert_ne!(tiles[9], square(116.31, 39.91, 0.01));
    }

    #[test]
    fn a_tiling_of_nothing_is_empty() {
        assert!(tiling(0.0, 0.0, 1.0, 1.0, 0, 3, 1).is_empty());
        assert!(tiling(0.0, 0.0, 1.0, 1.0, 3, 0, 1).is_empty());
        assert!(tiling(179.5, 0.0, 1.0, 1.0, 2, 2, 1).is_empty());
        assert!(tiling(0.0, 0.0, f64::NAN, 1.0, 2, 2, 1).is_empty());
        assert!(tiling(1.0, 0.0, -1.0, 1.0, 2, 2, 1).is_empty());
        assert_eq!(tiling(0.0, 0.0, 1.0, 1.0, 1, 1, 1), vec![square(0.0, 0.0, 1.0)]);
    }

    /// Four unit squares around (1, 1), keyed a (south-west), b (south-east), c (north-west), d (north-east).
    fn four_squares() -> Vec<(&'static str, Boundary)> {
        vec![
            ("a", square(0.0, 0.0, 1.0)),
            ("b", square(1.0, 0.0, 1.0)),
            ("c", square(0.0, 1.0, 1.0)),
            ("d", square(1.0, 1.0, 1.0)),
        ]
    }

    #[test]
    fn a_point_in_an_interior_is_found() {
        let index = GridIndex::build(four_squares());
        assert_eq!(index.len(), 4);
        assert!(!index.is_empty());
        assert_eq!(index.locate(0.5, 0.5), Some(&"a"));
        assert_eq!(index.locate(1.5, 0.5), Some(&"b"));
        assert_eq!(index.locate(0.5, 1.5), Some(&"c"));
        assert_eq!(index.locate(1.5, 1.5), Some(&"d"));
    }

    #[test]
    fn a_point_on_a_shared_edge_goes_to_the_smaller_key() {
        let forward = GridIndex::build(four_squares());
        let backward = GridIndex::build(four_squares().into_iter().rev());
        for index in [&forward, &backward] {
            assert_eq!(index.locate(1.0, 0.5), Some(&"a"));
            assert_eq!(index.locate(0.5, 1.0), Some(&"a"));
            assert_eq!(index.locate(1.5, 1.0), Some(&"b"));
            assert_eq!(index.locate(1.0, 1.5), Some(&"c"));
        }
        // Only the larger key's grid: the edge is its own.
        let alone = GridIndex::build(vec![("b", square(1.0, 0.0, 1.0))]);
        assert_eq!(alone.locate(1.0, 0.5), Some(&"b"));
    }

    #[test]
    fn a_point_on_a_shared_vertex_is_deterministic() {
        let orders: [[usize; 4]; 4] = [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1], [1, 3, 0, 2]];
        for order in orders {
            let squares = four_squares();
            let grids: Vec<(&'static str, Boundary)> = order.iter().map(|&i| squares[i].clone()).collect();
            let index = GridIndex::build(grids);
            assert_eq!(index.locate(1.0, 1.0), Some(&"a"));
            assert_eq!(index.locate(2.0, 2.0), Some(&"d"));
        }
        let without_a = GridIndex::build(four_squares().into_iter().skip(1));
        assert_eq!(without_a.locate(1.0, 1.0), Some(&"b"));
    }

    #[test]
    fn a_point_in_a_hole_is_not_in_the_grid() {
        let ring = Boundary::from_rings(vec![square_ring(0.0, 0.0, 4.0), square_ring(1.0, 1.0, 2.0)])
            .expect("valid polygon with a hole");
        let index = GridIndex::build(vec![("ring".to_owned(), ring.clone())]);
        assert_eq!(index.locate(2.0, 2.0), None);
        assert_eq!(index.locate(0.5, 2.0), Some(&"ring".to_owned()));
        assert_eq!(index.locate(1.0, 2.0), Some(&"ring".to_owned()));

        // A second grid filling the hole takes the hole's interior; the hole's edge is shared.
        let filled = GridIndex::build(vec![("ring".to_owned(), ring), ("core".to_owned(), square(1.0, 1.0, 2.0))]);
        assert_eq!(filled.locate(2.0, 2.0), Some(&"core".to_owned()));
        assert_eq!(filled.locate(1.0, 2.0), Some(&"core".to_owned()));
        assert_eq!(filled.locate(0.5, 2.0), Some(&"ring".to_owned()));
    }

    #[test]
    fn a_point_outside_is_none() {
        let index = GridIndex::build(four_squares());
        assert_eq!(index.locate(-0.5, 0.5), None);
        assert_eq!(index.locate(2.5, 2.5), None);
        assert_eq!(index.locate(f64::NAN, 0.5), None);
        let empty = GridIndex::<String>::default();
        assert!(empty.is_empty());
        assert_eq!(empty.len(), 0);
        assert_eq!(empty.locate(0.5, 0.5), None);
    }

    #[test]
    fn every_tile_holds_its_interior_point() {
        let tiles = street();
        let index = GridIndex::build(tiles.iter().cloned().enumerate());
        for (i, tile) in tiles.iter().enumerate() {
            let (x, y) = tile.interior_point();
            assert_eq!(index.locate(x, y), Some(&i));
        }
    }

    #[test]
    fn locate_agrees_with_the_bare_index() {
        let tiles = street();
        let index = GridIndex::build(tiles.iter().cloned().enumerate());
        let bare = BareIndex::build(tiles.iter().map(|tile| tile.polygon().clone()).collect());
        let mut random = SplitMix64(7);
        let mut on_edges = 0;
        for _ in 0..10_000 {
            let x = 116.30 + 0.08 * random.next_f64();
            let y = 39.90 + 0.06 * random.next_f64();
            let found = index.locate(x, y);
            assert!(found.is_some(), "({x}, {y}) is in the rectangle");
            match bare.locate(x, y) {
                Some(expected) => assert_eq!(found, Some(&expected), "({x}, {y})"),
                // Exactly on an edge: in no interior.
                None => on_edges += 1,
            }
        }
        assert!(on_edges < 10, "{on_edges} points on edges");
        assert_eq!(bare.locate(0.0, 0.0), None);
    }
}
