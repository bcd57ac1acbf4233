//! The grid service's scenarios: `grid-locate` (LocateGrid over gRPC among a thousand grids),
//! `grid-index` (the service's R-tree look-up against a bare `rstar` + `geo::Contains` one over
//! the same polygons, in this process) and `grid-due` (ListDueVisits for a worker of some
//! hundreds of households of the demo street).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use civic_grid::geometry::{BareIndex, GridIndex, tiling};
use civic_kit::auth::Role;
use civic_proto::grid::grid_service_client::GridServiceClient;
use civic_proto::grid::roster_service_client::RosterServiceClient;
use civic_proto::grid::visit_service_client::VisitServiceClient;
use civic_proto::grid::{
    Assignment, Community, CreateCommunityRequest, CreateGridRequest, GetGridRequest, Grid, ImportRosterRequest,
    ListDueVisitsRequest, ListHouseholdsRequest, LocateGridRequest, Point, RosterRow, UpdateGridRequest,
};
use serde_json::{Value, json};

use super::load::{Call, Stats};
use super::{Target, bearer, mint};

/// The benchmark's own street of a thousand grids: 40 × 25 cells over this rectangle.
const STREET: &str = "bench";
const EXTENT: (f64, f64, f64, f64) = (103.0, 36.0, 0.4, 0.25);
const COLUMNS: usize = 40;
const ROWS: usize = 25;
const SEED: u64 = 7;

/// A deterministic stream of points inside the extent (splitmix64).
fn points(count: usize) -> Vec<(f64, f64)> {
    let mut state = 0x00C0_FFEE_u64;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let (west, south, width, height) = EXTENT;
    (0..count).map(|_| (west + next() * width, south + next() * height)).collect()
}

/// What the grid scenarios need on the server: the benchmark street's thousand grids, and a
/// worker of the demo street looking after a few hundred households.
pub struct Setup {
    locator: String,
    worker: String,
    /// How many households the worker looks after.
    households: usize,
    /// Some of them, by name: the `mixed` scenario's visits go to these.
    visited: Vec<String>,
}

impl Setup {
    /// Draws the benchmark street (once per server) and assigns the due-list worker.
    pub async fn load(target: &Target) -> anyhow::Result<Self> {
        let admin = mint(target, "bench-admin", Role::Admin, STREET)?;
        let mut grids = GridServiceClient::new(target.grpc[0].clone());
        let parent = format!("streets/{STREET}");
        let created = grids
            .create_community(bearer(
                CreateCommunityRequest {
                    parent: parent.clone(),
                    community: Some(Community { display_name: "压测社区".into(), ..Default::default() }),
                    community_id: "c".into(),
                    request_id: "bench-community".into(),
                },
                &admin,
            ))
            .await;
        if let Err(status) = created {
            bail!("drawing the benchmark street: {}", status.message());
        }
        let (west, south, width, height) = EXTENT;
        let cells = tiling(west, south, width, height, COLUMNS, ROWS, SEED);
        if cells.len() != COLUMNS * ROWS {
            bail!("the benchmark tiling has {} cells", cells.len());
        }
        for (n, cell) in cells.iter().enumerate() {
            let request = CreateGridRequest {
                parent: format!("{parent}/communities/c"),
                grid: Some(Grid {
                    display_name: format!("格 {n}"), boundary: cell.to_geojson(), ..Default::default()
                }),
                grid_id: format!("g{n:04}"),
                request_id: format!("bench-grid-{n}"),
            };
            grids.create_grid(bearer(request, &admin)).await.with_context(|| format!("drawing grid {n}"))?;
        }
        // The due list: worker bench-due looks after the first two grids of the demo street.
        let zhongjie_admin = mint(target, "bench-admin", Role::Admin, civic_grid::ZHONGJIE_STREET)?;
        let mut households = 0;
        let mut visited = Vec::new();
        let mut roster = RosterServiceClient::new(target.grpc[0].clone());
        for grid in ["g01", "g02"] {
            let name = format!("streets/{}/communities/dongyuan/grids/{grid}", civic_grid::ZHONGJIE_STREET);
            let current = grids
                .get_grid(bearer(GetGridRequest { name: name.clone() }, &zhongjie_admin))
                .await
                .with_context(|| format!("reading {name}: seed the demo street"))?
                .into_inner();
            let mut workers = current.workers.clone();
            workers
                .push(Assignment { worker: "users/bench-due".into(), duties: "压测".into(), ..Default::default() });
            let update = UpdateGridRequest {
                grid: Some(Grid { name: name.clone(), workers, etag: current.etag, ..Default::default() }),
                update_mask: Some(pbjson_types::FieldMask { paths: vec!["workers".into()] }),
                request_id: String::new(),
            };
            grids.update_grid(bearer(update, &zhongjie_admin)).await.with_context(|| format!("assigning {name}"))?;
            let mut page_token = String::new();
            loop {
                let page = roster
                    .list_households(bearer(
                        ListHouseholdsRequest {
                            parent: format!("streets/{}", civic_grid::ZHONGJIE_STREET),
                            page_size: 500,
                            page_token: page_token.clone(),
                            filter: format!("grid = {name}"),
                        },
                        &zhongjie_admin,
                    ))
                    .await?
                    .into_inner();
                households += page.households.len();
                visited
                    .extend(page.households.iter().take(64usize.saturating_sub(visited.len())).map(|h| h.name.clone()));
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
        }
        Ok(Self {
            locator: mint(target, "bench-locator", Role::GridWorker, STREET)?,
            worker: mint(target, "bench-due", Role::GridWorker, civic_grid::ZHONGJIE_STREET)?,
            households,
            visited,
        })
    }

    /// The extra figures of `grid-due`.
    pub fn due_extra(&self) -> Value {
        json!({ "households": self.households })
    }
}

/// LocateGrid over gRPC at random points of the benchmark street.
pub fn locate(target: &Target, setup: &Setup) -> Call {
    let channels = target.grpc.clone();
    let points = Arc::new(points(4096));
    let token = setup.locator.clone();
    Arc::new(move |n| {
        let mut client = GridServiceClient::new(channels[n as usize % channels.len()].clone());
        let (longitude, latitude) = points[n as usize % points.len()];
        let request = bearer(
            LocateGridRequest { parent: format!("streets/{STREET}"), point: Some(Point { latitude, longitude }) },
            &token,
        );
        Box::pin(async move { client.locate_grid(request).await.map(|_| ()).map_err(|s| s.to_string()) })
    })
}

/// ListDueVisits for the worker of the demo street's first two grids.
pub fn due(target: &Target, setup: &Setup) -> Call {
    let channels = target.grpc.clone();
    let token = setup.worker.clone();
    Arc::new(move |n| {
        let mut client = VisitServiceClient::new(channels[n as usize % channels.len()].clone());
        let request = bearer(
            ListDueVisitsRequest {
                parent: format!("streets/{}", civic_grid::ZHONGJIE_STREET),
                window_days: 7,
                page_size: 100,
                ..Default::default()
            },
            &token,
        );
        Box::pin(async move { client.list_due_visits(request).await.map(|_| ()).map_err(|s| s.to_string()) })
    })
}

/// The due-list worker records a door-to-door visit through the gateway (`POST
/// /v1/streets/zhongjie/visits`), at one of their households, a fresh request id each.
pub fn visit_http(target: &Target, setup: &Setup) -> anyhow::Result<Call> {
    if setup.visited.is_empty() {
        bail!("the due-list worker has no households to visit: seed the demo street");
    }
    let client = super::http_client();
    let url = format!("http://{}/v1/streets/{}/visits", target.http, civic_grid::ZHONGJIE_STREET);
    let token = setup.worker.clone();
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        setup
            .visited
            .iter()
            .map(|household| {
                let visit_time = (chrono::Utc::now() - chrono::Duration::hours(1))
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                let body = json!({
                    "household": household,
                    "kind": "DOOR_TO_DOOR",
                    "visitTime": visit_time,
                    "durationMinutes": 20,
                    "notes": "压测走访",
                });
                Bytes::from(body.to_string())
            })
            .collect(),
    );
    Ok(Arc::new(move |n| {
        let (client, token) = (client.clone(), token.clone());
        let url = format!("{url}?requestId={}", uuid::Uuid::new_v4());
        let body = bodies[n as usize % bodies.len()].clone();
        Box::pin(async move { super::http_call(&client, http::Method::POST, &url, &token, body).await })
    }))
}

/// The due-list worker's list through the gateway: `GET /v1/streets/zhongjie/dueVisits`.
pub fn due_http(target: &Target, setup: &Setup) -> Call {
    let client = super::http_client();
    let url = format!(
        "http://{}/v1/streets/{}/dueVisits?windowDays=7&pageSize=100",
        target.http,
        civic_grid::ZHONGJIE_STREET
    );
    let token = setup.worker.clone();
    Arc::new(move |_| {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        Box::pin(async move { super::http_call(&client, http::Method::GET, &url, &token, Bytes::new()).await })
    })
}

/// The service's index against the bare look-up over the same thousand polygons, one thread
/// each, the same points for both: look-ups per second and the ratio.
pub fn index(seconds: f64) -> (Stats, Value) {
    let (west, south, width, height) = EXTENT;
    let cells = tiling(west, south, width, height, COLUMNS, ROWS, SEED);
    let bare = BareIndex::build(cells.iter().map(|c| c.polygon().clone()).collect());
    let index = GridIndex::build(cells.into_iter().enumerate().map(|(n, c)| (format!("g{n:04}"), c)));
    let points = points(1 << 16);
    let budget = Duration::from_secs_f64((seconds / 2.0).max(0.1));
    let run = |f: &dyn Fn(f64, f64) -> bool| {
        let start = Instant::now();
        let (mut done, mut found) = (0_u64, 0_u64);
        while start.elapsed() < budget {
            for &(x, y) in &points {
                found += u64::from(f(x, y));
            }
            done += points.len() as u64;
        }
        (done as f64 / start.elapsed().as_secs_f64(), found == done)
    };
    let (bare_rps, bare_all) = run(&|x, y| bare.locate(x, y).is_some());
    let (index_rps, index_all) = run(&|x, y| index.locate(x, y).is_some());
    let stats = Stats::counted((index_rps * budget.as_secs_f64()) as u64, budget);
    let extra = json!({
        "bare_rps": bare_rps.round(),
        "index_rps": index_rps.round(),
        "ratio": ((index_rps / bare_rps.max(1e-9)) * 1000.0).round() / 1000.0,
        "every_point_found": bare_all && index_all,
        "grids": COLUMNS * ROWS,
    });
    (stats, extra)
}

/// Residents the import scenario imports, about two and a half per household.
const IMPORT_RESIDENTS: usize = 100_000;

/// The rows of a generated roster of the benchmark street: households at random points, one to
/// four residents each with a valid ID number, a phone and now and then a tag.
fn roster_rows() -> Vec<RosterRow> {
    let spots = points(IMPORT_RESIDENTS);
    let mut rows = Vec::with_capacity(IMPORT_RESIDENTS);
    let mut household = 0;
    let birth = chrono::NaiveDate::from_ymd_opt(1960, 1, 1).unwrap_or_default();
    while rows.len() < IMPORT_RESIDENTS {
        household += 1;
        let (longitude, latitude) = spots[household % spots.len()];
        for _ in 0..(1 + household % 4).min(IMPORT_RESIDENTS - rows.len()) {
            let n = rows.len();
            let id = civic_grid::protect::IdNumber::generate(
                "620802",
                birth + chrono::Duration::days((n / 1000) as i64),
                (n % 1000) as u16,
            );
            rows.push(RosterRow {
                row_number: n as i64 + 2,
                building: format!("{}号楼", household / 40),
                address: format!("门牌 {household}"),
                location: Some(Point { latitude, longitude }),
                display_name: format!("居民{n}"),
                id_number: id.as_str().to_owned(),
                phone: format!("139{:08}", n),
                birth_date: String::new(),
                tags: if n % 10 == 0 { vec!["elderly_alone".into()] } else { Vec::new() },
                consent_note: String::new(),
            });
        }
    }
    rows
}

/// Imports the generated roster over gRPC, once, timing the whole stream: rows per second.
pub async fn import(target: &Target) -> anyhow::Result<(Stats, Value)> {
    let admin = mint(target, "bench-admin", Role::Admin, STREET)?;
    let rows = roster_rows();
    let count = rows.len();
    let messages: Vec<ImportRosterRequest> = rows
        .chunks(500)
        .map(|chunk| ImportRosterRequest {
            parent: format!("streets/{STREET}"),
            community: format!("streets/{STREET}/communities/c"),
            skip_bad_rows: false,
            rows: chunk.to_vec(),
        })
        .collect();
    let mut client = RosterServiceClient::new(target.grpc[0].clone());
    let started = Instant::now();
    let answer = client
        .import_roster(bearer(tokio_stream::iter(messages), &admin))
        .await
        .context("importing the generated roster")?
        .into_inner();
    let elapsed = started.elapsed();
    if !answer.imported || answer.residents_created as usize != count {
        bail!("the import took {} of {count} residents ({} bad rows)", answer.residents_created, answer.bad_rows);
    }
    let raw = raw_roster(target, &roster_rows()).await?;
    let rps = count as f64 / elapsed.as_secs_f64();
    let extra = json!({
        "residents": count,
        "households": answer.households_created,
        "import_seconds": (elapsed.as_secs_f64() * 100.0).round() / 100.0,
        "raw_rps": raw.round(),
        "ratio": ((rps / raw.max(1e-9)) * 1000.0).round() / 1000.0,
    });
    Ok((Stats::counted(count as u64, elapsed), extra))
}

/// The same rows inserted straight through sqlx into the grid service's tables (households
/// and residents, the values as they come, one transaction) on a fresh database of the same
/// kind: rows per second.
async fn raw_roster(target: &Target, rows: &[RosterRow]) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let mut config = civic_kit::config::Config::default();
    config.data_dir = dir.path().to_path_buf();
    config.database_url = target.database_url.clone();
    let db = civic_kit::db::Db::connect(&config.database_url_for("bench_raw_roster"), "bench_raw_roster", 4)
        .await
        .context("opening the raw roster database")?;
    db.migrate(civic_grid::MIGRATIONS).await.context("migrating the raw roster database")?;
    let now = civic_kit::time::now_text();
    let started = Instant::now();
    let mut tx = db.begin().await?;
    let mut last_household = String::new();
    for (n, row) in rows.iter().enumerate() {
        let household = format!("{}|{}", row.building, row.address);
        let location = row.location.unwrap_or_default();
        if household != last_household {
            sqlx::query(
                "insert into households (street, household_id, building, address, latitude, longitude, community_id,
                     grid_id, tags, resident_count, last_visit_time, version, created_at, updated_at)
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)",
            )
            .bind(STREET)
            .bind(format!("h{n}"))
            .bind(&row.building)
            .bind(&row.address)
            .bind(location.latitude)
            .bind(location.longitude)
            .bind("c")
            .bind("g0000")
            .bind("")
            .bind(1_i64)
            .bind("")
            .bind(1_i64)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
            last_household = household;
        }
        sqlx::query(
            "insert into residents (street, household_id, resident_id, display_name, id_number_sealed, id_number_hash,
                 phone_sealed, phone_hash, birth_date, tags, consent_note, user_name, removed_at, version, created_at,
                 updated_at)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, '', '', 1, $12, $12)",
        )
        .bind(STREET)
        .bind(format!("h{n}"))
        .bind(format!("r{n}"))
        .bind(&row.display_name)
        .bind(&row.id_number)
        .bind(&row.id_number)
        .bind(&row.phone)
        .bind(&row.phone)
        .bind("")
        .bind(row.tags.join(","))
        .bind(&row.consent_note)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    let rps = rows.len() as f64 / started.elapsed().as_secs_f64();
    db.close().await;
    Ok(rps)
}
