//! The grid service end to end: the map and LocateGrid, invalid boundaries, re-drawing with
//! households placed again, residents' protected data (sealed at rest, masked, full reads
//! logged), visits synced from phones exactly once, the due list, covers in and out of their
//! dates, and who may do what (the authorisation matrix).

mod common;

use chrono::{Duration, Utc};
use civic_kit::auth::Role;
use civic_proto::grid::grid_service_client::GridServiceClient;
use civic_proto::grid::roster_service_client::RosterServiceClient;
use civic_proto::grid::sync_result::Outcome;
use civic_proto::grid::visit::Kind;
use civic_proto::grid::visit_service_client::VisitServiceClient;
use civic_proto::grid::*;
use common::{rect, spawn_app, token, token_in, with_token};
use tonic::Code;
use tonic::transport::Channel;

const STREET: &str = "streets/zhongjie";
const ID_NUMBER: &str = "11010519491231002X";
const PHONE: &str = "13812345678";

fn admin() -> String {
    token("admin", &[Role::Admin], "zhongjie")
}

fn point(longitude: f64, latitude: f64) -> Option<Point> {
    Some(Point { latitude, longitude })
}

fn visit_at(household: &str, minutes_ago: i64) -> Visit {
    let t = Utc::now() - Duration::minutes(minutes_ago);
    Visit {
        household: household.into(),
        kind: Kind::DoorToDoor as i32,
        visit_time: Some(pbjson_types::Timestamp { seconds: t.timestamp(), nanos: 0 }),
        duration_minutes: 20,
        notes: "老人说楼道灯坏了".into(),
        problems: vec![Problem {
            category: "environment".into(),
            description: "三单元楼道灯坏了两周".into(),
            location: None,
            issue: String::new(),
        }],
        ..Default::default()
    }
}

/// A street with one community (`east`) of two grids side by side — `g1` (west half, worker
/// gw-1) and `g2` (east half, worker gw-2) — and a second community (`west`) with `g3`
/// (worker gw-3); a household in each grid, the first with a resident.
struct Street {
    channel: Channel,
    g1: String,
    g2: String,
    h1: String,
    h2: String,
    h3: String,
    r1: String,
}

async fn street(channel: Channel) -> Street {
    let mut grids = GridServiceClient::new(channel.clone());
    let mut roster = RosterServiceClient::new(channel.clone());
    for (id, name) in [("east", "东苑社区"), ("west", "西苑社区")] {
        grids
            .create_community(with_token(
                CreateCommunityRequest {
                    parent: STREET.into(),
                    community: Some(Community { display_name: name.into(), ..Default::default() }),
                    community_id: id.into(),
                    request_id: String::new(),
                },
                &admin(),
            ))
            .await
            .expect("create community");
    }
    let mut names = Vec::new();
    for (community, id, bounds, worker) in [
        ("east", "g1", (106.0, 35.0, 106.1, 35.1), "gw-1"),
        ("east", "g2", (106.1, 35.0, 106.2, 35.1), "gw-2"),
        ("west", "g3", (105.9, 35.0, 106.0, 35.1), "gw-3"),
    ] {
        let grid = grids
            .create_grid(with_token(
                CreateGridRequest {
                    parent: format!("{STREET}/communities/{community}"),
                    grid: Some(Grid {
                        display_name: format!("网格 {id}"),
                        boundary: rect(bounds.0, bounds.1, bounds.2, bounds.3),
                        workers: vec![Assignment {
                            worker: format!("users/{worker}"),
                            duties: "走访".into(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                    grid_id: id.into(),
                    request_id: String::new(),
                },
                &admin(),
            ))
            .await
            .expect("create grid")
            .into_inner();
        names.push(grid.name);
    }
    let mut households = Vec::new();
    for (longitude, address) in [(106.05, "1单元 101"), (106.15, "2单元 202"), (105.95, "3单元 303")] {
        let h = roster
            .create_household(with_token(
                CreateHouseholdRequest {
                    parent: STREET.into(),
                    household: Some(Household {
                        building: "东苑小区 3号楼".into(),
                        address: address.into(),
                        location: point(longitude, 35.05),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                &admin(),
            ))
            .await
            .expect("create household")
            .into_inner();
        households.push(h.name);
    }
    let resident = roster
        .create_resident(with_token(
            CreateResidentRequest {
                parent: households[0].clone(),
                resident: Some(Resident {
                    display_name: "王秀英".into(),
                    id_number: ID_NUMBER.into(),
                    phone: PHONE.into(),
                    tags: vec!["elderly_alone".into()],
                    user: "users/resident-1".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &admin(),
        ))
        .await
        .expect("create resident")
        .into_inner();
    Street {
        channel,
        g1: names[0].clone(),
        g2: names[1].clone(),
        h1: households[0].clone(),
        h2: households[1].clone(),
        h3: households[2].clone(),
        r1: resident.name,
    }
}

#[tokio::test]
async fn the_map_locates_points_refuses_bad_boundaries_and_places_households_again() {
    let (app, _store) = spawn_app().await;
    let s = street(app.channel.clone()).await;
    let mut grids = GridServiceClient::new(s.channel.clone());
    let mut roster = RosterServiceClient::new(s.channel.clone());
    let worker = token("gw-1", &[Role::GridWorker], "zhongjie");
    let locate =
        |longitude: f64, latitude: f64| LocateGridRequest { parent: STREET.into(), point: point(longitude, latitude) };

    let found = grids.locate_grid(with_token(locate(106.05, 35.05), &worker)).await.expect("inside g1").into_inner();
    assert_eq!((found.grid.as_str(), found.boundary_revision), (s.g1.as_str(), 1));
    assert_eq!(found.community, format!("{STREET}/communities/east"));
    // A point on the edge g1 and g2 share goes to one of them, always the same.
    let edge = grids.locate_grid(with_token(locate(106.1, 35.05), &worker)).await.expect("on the edge").into_inner();
    for _ in 0..5 {
        let again = grids.locate_grid(with_token(locate(106.1, 35.05), &worker)).await.expect("again").into_inner();
        assert_eq!(again.grid, edge.grid);
    }
    assert!(edge.grid == s.g1 || edge.grid == s.g2);
    let outside = grids.locate_grid(with_token(locate(110.0, 35.05), &worker)).await.expect_err("outside");
    assert_eq!(outside.code(), Code::NotFound);
    assert!(outside.message().contains("outside every grid"), "{}", outside.message());
    let bad_point = grids.locate_grid(with_token(locate(200.0, 35.0), &worker)).await.expect_err("out of range");
    assert_eq!(bad_point.code(), Code::InvalidArgument);
    assert!(bad_point.message().contains("point.longitude"), "{}", bad_point.message());
    let nan = grids.locate_grid(with_token(locate(106.05, f64::NAN), &worker)).await.expect_err("NaN");
    assert_eq!(nan.code(), Code::InvalidArgument);
    assert!(nan.message().contains("point.latitude"), "{}", nan.message());

    // Households were placed by their location.
    let h1 = roster.get_household(with_token(GetHouseholdRequest { name: s.h1.clone() }, &admin())).await.expect("h1");
    assert_eq!(h1.into_inner().grid, s.g1);

    // Invalid boundaries: INVALID_ARGUMENT naming grid.boundary, nothing written.
    let bad = [
        r#"{"type":"Polygon","coordinates":[[[106.3,35.0],[106.4,35.0],[106.4,35.1],[106.3,35.1]]]}"#.to_owned(),
        r#"{"type":"Polygon","coordinates":[[[106.3,35.0],[106.4,35.1],[106.4,35.0],[106.3,35.1],[106.3,35.0]]]}"#
            .to_owned(),
        rect(179.5, 35.0, 181.0, 35.1),
        rect(106.05, 35.0, 106.15, 35.1),
        r#"{"type":"Point","coordinates":[106.3,35.0]}"#.to_owned(),
        "not json".to_owned(),
    ];
    for (i, boundary) in bad.iter().enumerate() {
        let err = grids
            .create_grid(with_token(
                CreateGridRequest {
                    parent: format!("{STREET}/communities/east"),
                    grid: Some(Grid {
                        display_name: "坏网格".into(),
                        boundary: boundary.clone(),
                        ..Default::default()
                    }),
                    grid_id: format!("bad{i}"),
                    request_id: String::new(),
                },
                &admin(),
            ))
            .await
            .expect_err("a bad boundary");
        assert_eq!(err.code(), Code::InvalidArgument, "{i}: {}", err.message());
        assert!(err.message().contains("grid.boundary"), "{i}: {}", err.message());
    }
    let all = grids
        .list_grids(with_token(
            ListGridsRequest { parent: format!("{STREET}/communities/-"), ..Default::default() },
            &admin(),
        ))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(all.grids.len(), 3, "no bad grid was written");

    // Re-drawing g1 to take the east half too is refused (it overlaps g2); shrinking it to its
    // western half moves h1 (at 106.05) out of every grid, and the old boundary is kept.
    let g1 =
        grids.get_grid(with_token(GetGridRequest { name: s.g1.clone() }, &admin())).await.expect("g1").into_inner();
    let redraw = |boundary: String, etag: &str| UpdateGridRequest {
        grid: Some(Grid { name: s.g1.clone(), boundary, etag: etag.into(), ..Default::default() }),
        update_mask: Some(pbjson_types::FieldMask { paths: vec!["boundary".into()] }),
        request_id: String::new(),
    };
    let overlap = grids.update_grid(with_token(redraw(rect(106.0, 35.0, 106.2, 35.1), &g1.etag), &admin())).await;
    assert_eq!(overlap.expect_err("overlaps g2").code(), Code::InvalidArgument);
    let redrawn = grids
        .update_grid(with_token(redraw(rect(106.0, 35.0, 106.04, 35.1), &g1.etag), &admin()))
        .await
        .expect("redraw")
        .into_inner();
    assert_eq!(redrawn.boundary_revision, 2);
    let stale = grids.update_grid(with_token(redraw(rect(106.0, 35.0, 106.03, 35.1), &g1.etag), &admin())).await;
    assert_eq!(stale.expect_err("an old etag").code(), Code::Aborted);
    let h1 = roster.get_household(with_token(GetHouseholdRequest { name: s.h1.clone() }, &admin())).await.expect("h1");
    assert_eq!(h1.into_inner().grid, "", "h1 now lies outside every grid");
    let moved = grids.locate_grid(with_token(locate(106.05, 35.05), &worker)).await;
    assert_eq!(moved.expect_err("the map was rebuilt").code(), Code::NotFound);
    let revisions = grids
        .list_grid_revisions(with_token(
            ListGridRevisionsRequest { name: s.g1.clone(), ..Default::default() },
            &admin(),
        ))
        .await
        .expect("revisions")
        .into_inner();
    assert_eq!(revisions.revisions.iter().map(|r| r.revision).collect::<Vec<_>>(), [2, 1]);
    assert_eq!(revisions.revisions[1].boundary, g1.boundary);
    app.stop().await;
}

#[tokio::test]
async fn residents_are_sealed_at_rest_masked_in_answers_and_every_full_read_is_logged() {
    let (app, store) = spawn_app().await;
    let s = street(app.channel.clone()).await;
    let mut roster = RosterServiceClient::new(s.channel.clone());
    let get = || GetResidentRequest { name: s.r1.clone() };
    let reveal = |reason: &str| RevealResidentRequest { name: s.r1.clone(), reason: reason.into() };

    let masked = roster.get_resident(with_token(get(), &admin())).await.expect("get").into_inner();
    assert_eq!((masked.id_number.as_str(), masked.phone.as_str()), ("110***********002X", "138****5678"));
    assert_eq!(masked.birth_date, "1949-12-31", "taken from the ID number");
    assert!(!masked.full_view);

    // Bad input names the field and writes nothing.
    for (resident, field) in [
        (
            Resident { display_name: "李四".into(), id_number: "110105194912310021".into(), ..Default::default() },
            "resident.id_number",
        ),
        (Resident { display_name: "李四".into(), phone: "12812345678".into(), ..Default::default() }, "resident.phone"),
        (Resident { display_name: "李四".into(), tags: vec!["vip".into()], ..Default::default() }, "resident.tags[0]"),
        (Resident { display_name: " ".into(), ..Default::default() }, "resident.display_name"),
    ] {
        let err = roster
            .create_resident(with_token(
                CreateResidentRequest { parent: s.h2.clone(), resident: Some(resident), request_id: String::new() },
                &admin(),
            ))
            .await
            .expect_err(field);
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains(field), "{field}: {}", err.message());
        assert!(!err.message().contains("110105194912310021") && !err.message().contains("12812345678"));
    }
    let h2 = roster
        .list_residents(with_token(ListResidentsRequest { parent: s.h2.clone(), ..Default::default() }, &admin()))
        .await
        .expect("list")
        .into_inner();
    assert!(h2.residents.is_empty(), "nothing was written");

    // The full view needs a reason, is for staff only, and is logged.
    let no_reason = roster.reveal_resident(with_token(reveal(""), &admin())).await;
    assert_eq!(no_reason.expect_err("a reason is required").code(), Code::InvalidArgument);
    let worker = token("gw-1", &[Role::GridWorker], "zhongjie");
    let full =
        roster.reveal_resident(with_token(reveal("上门核实低保申请"), &worker)).await.expect("full view").into_inner();
    assert_eq!((full.id_number.as_str(), full.phone.as_str(), full.full_view), (ID_NUMBER, PHONE, true));
    let own = token("resident-1", &[Role::Resident], "zhongjie");
    let mine = roster.get_resident(with_token(get(), &own)).await.expect("own, masked");
    assert_eq!(mine.into_inner().phone, "138****5678");
    let denied = roster.reveal_resident(with_token(reveal("想看看"), &own)).await;
    assert_eq!(denied.expect_err("residents get no full view").code(), Code::PermissionDenied);
    let log = roster
        .list_access_records(with_token(
            ListAccessRecordsRequest { parent: STREET.into(), ..Default::default() },
            &admin(),
        ))
        .await
        .expect("access log")
        .into_inner();
    assert_eq!(log.access_records.len(), 1);
    let record = &log.access_records[0];
    assert_eq!(
        (record.reader.as_str(), record.role.as_str(), record.resident.as_str(), record.reason.as_str()),
        ("users/gw-1", "grid_worker", s.r1.as_str(), "上门核实低保申请")
    );
    let not_admin = roster
        .list_access_records(with_token(
            ListAccessRecordsRequest { parent: STREET.into(), ..Default::default() },
            &worker,
        ))
        .await;
    assert_eq!(not_admin.expect_err("admins only").code(), Code::PermissionDenied);

    // Found by the whole number through its keyed hash; answers masked.
    let found = roster
        .find_residents(with_token(
            FindResidentsRequest { parent: STREET.into(), id_number: ID_NUMBER.to_lowercase(), phone: String::new() },
            &admin(),
        ))
        .await
        .expect("find")
        .into_inner();
    assert_eq!(found.residents.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), [s.r1.as_str()]);
    assert_eq!(found.residents[0].id_number, "110***********002X");
    let other_grid = token("gw-3", &[Role::GridWorker], "zhongjie");
    let unseen = roster
        .find_residents(with_token(
            FindResidentsRequest { parent: STREET.into(), id_number: String::new(), phone: PHONE.into() },
            &other_grid,
        ))
        .await
        .expect("find")
        .into_inner();
    assert!(unseen.residents.is_empty(), "another grid's worker finds nobody here");

    // At rest: no file of the embedded store holds the number or the phone in the clear.
    if !store.is_postgres() {
        let mut files = vec![store.data_dir().to_path_buf()];
        let mut scanned = 0;
        while let Some(path) = files.pop() {
            if path.is_dir() {
                files.extend(std::fs::read_dir(&path).expect("dir").map(|e| e.expect("entry").path()));
            } else {
                let bytes = std::fs::read(&path).expect("read");
                for needle in [ID_NUMBER.as_bytes(), PHONE.as_bytes()] {
                    assert!(
                        !bytes.windows(needle.len()).any(|w| w == needle),
                        "{} holds personal data",
                        path.display()
                    );
                }
                scanned += 1;
            }
        }
        assert!(scanned > 0);
    }
    app.stop().await;
}

#[tokio::test]
async fn visits_sync_exactly_once_and_the_due_list_follows_policy_and_covers() {
    let (app, _store) = spawn_app().await;
    let s = street(app.channel.clone()).await;
    let mut visits = VisitServiceClient::new(s.channel.clone());
    let mut grids = GridServiceClient::new(s.channel.clone());
    let worker = token("gw-1", &[Role::GridWorker], "zhongjie");
    let due = |window_days: i32| ListDueVisitsRequest { parent: STREET.into(), window_days, ..Default::default() };

    // h1's resident lives alone: due within 7 days of joining the roster.
    let list = visits.list_due_visits(with_token(due(8), &worker)).await.expect("due").into_inner();
    assert_eq!(list.due_visits.iter().map(|d| d.household.as_str()).collect::<Vec<_>>(), [s.h1.as_str()]);
    assert_eq!(list.due_visits[0].interval_days, 7);
    assert!(list.due_visits[0].reason.contains("elderly_alone"), "{}", list.due_visits[0].reason);
    assert!(!list.due_visits[0].overdue);

    let batch = SyncVisitsRequest {
        parent: STREET.into(),
        visits: vec![
            SyncedVisit { visit_id: "phone-a-1".into(), visit: Some(visit_at(&s.h1, 30)) },
            SyncedVisit { visit_id: "phone-a-2".into(), visit: Some(Visit { kind: 0, ..visit_at(&s.h1, 20) }) },
            SyncedVisit { visit_id: "phone-a-3".into(), visit: Some(visit_at(&s.h2, 10)) },
        ],
    };
    let first = visits.sync_visits(with_token(batch.clone(), &worker)).await.expect("sync").into_inner();
    let outcomes: Vec<_> = first.results.iter().map(|r| r.outcome()).collect();
    assert_eq!(outcomes, [Outcome::Accepted, Outcome::Rejected, Outcome::Rejected]);
    assert!(first.results[1].reason.contains("visits[1].visit.kind"), "{}", first.results[1].reason);
    assert!(first.results[2].reason.contains("household"), "{}", first.results[2].reason);
    let again = visits.sync_visits(with_token(batch, &worker)).await.expect("sync again").into_inner();
    assert_eq!(again.results[0].outcome(), Outcome::Duplicate);
    // The stored visit comes back; its problem may meanwhile link to the issue the issues
    // service opened for it (from the visit's event), which is all that may differ.
    let unlinked = |visit: &Option<Visit>| {
        let mut visit = visit.clone();
        visit.iter_mut().flat_map(|v| v.problems.iter_mut()).for_each(|p| p.issue.clear());
        visit
    };
    assert_eq!(unlinked(&again.results[0].visit), unlinked(&first.results[0].visit));
    let listed = visits
        .list_visits(with_token(
            ListVisitsRequest { parent: STREET.into(), filter: format!("household = {}", s.h1), ..Default::default() },
            &worker,
        ))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.visits.len(), 1, "applied exactly once");
    let visit = &listed.visits[0];
    assert_eq!((visit.grid.as_str(), visit.grid_revision), (s.g1.as_str(), 1));
    assert_eq!(visit.worker, "users/gw-1");

    // Visited half an hour ago: next due in a week, so not within three days.
    let list = visits.list_due_visits(with_token(due(3), &worker)).await.expect("due").into_inner();
    assert!(list.due_visits.is_empty(), "{:?}", list.due_visits);

    // A cover sees g2 within its dates only.
    let cover = token("gw-9", &[Role::GridWorker], "zhongjie");
    let g2 =
        grids.get_grid(with_token(GetGridRequest { name: s.g2.clone() }, &admin())).await.expect("g2").into_inner();
    let today = (Utc::now() + Duration::hours(8)).date_naive();
    let set_cover = |start: chrono::NaiveDate, end: chrono::NaiveDate, etag: String| UpdateGridRequest {
        grid: Some(Grid {
            name: s.g2.clone(),
            covers: vec![Cover {
                worker: "users/gw-9".into(),
                start_date: start.to_string(),
                end_date: end.to_string(),
                covers_for: "users/gw-2".into(),
            }],
            etag,
            ..Default::default()
        }),
        update_mask: Some(pbjson_types::FieldMask { paths: vec!["covers".into()] }),
        request_id: String::new(),
    };
    let g2 = grids
        .update_grid(with_token(
            set_cover(today - chrono::Days::new(1), today + chrono::Days::new(1), g2.etag),
            &admin(),
        ))
        .await
        .expect("cover now")
        .into_inner();
    let seen = grids.get_grid(with_token(GetGridRequest { name: s.g2.clone() }, &cover)).await;
    assert!(seen.is_ok(), "the cover sees the grid within its dates");
    let recorded = visits
        .create_visit(with_token(
            CreateVisitRequest {
                parent: STREET.into(),
                visit: Some(visit_at(&s.h2, 5)),
                visit_id: "cover-1".into(),
                request_id: String::new(),
            },
            &cover,
        ))
        .await
        .expect("the cover records a visit")
        .into_inner();
    assert_eq!(recorded.worker, "users/gw-9");
    grids
        .update_grid(with_token(
            set_cover(today - chrono::Days::new(10), today - chrono::Days::new(1), g2.etag),
            &admin(),
        ))
        .await
        .expect("cover ended");
    let handed_back = grids.get_grid(with_token(GetGridRequest { name: s.g2.clone() }, &cover)).await;
    assert_eq!(handed_back.expect_err("after the cover").code(), Code::PermissionDenied);
    let late = visits
        .create_visit(with_token(
            CreateVisitRequest {
                parent: STREET.into(),
                visit: Some(visit_at(&s.h2, 1)),
                visit_id: "cover-2".into(),
                request_id: String::new(),
            },
            &cover,
        ))
        .await;
    assert_eq!(late.expect_err("no longer covering").code(), Code::PermissionDenied);
    let _ = s.h3;
    app.stop().await;
}

/// A call's outcome without its answer.
fn ok<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Result<(), tonic::Status> {
    result.map(|_| ())
}

/// Who may do what: each RPC × each kind of caller, PERMISSION_DENIED (or UNAUTHENTICATED for
/// no token) for everyone else, whether or not the resource exists.
#[tokio::test]
async fn the_authorisation_matrix_holds_for_every_rpc_and_role() {
    let (app, _store) = spawn_app().await;
    let s = street(app.channel.clone()).await;
    let mut grids = GridServiceClient::new(s.channel.clone());
    let mut roster = RosterServiceClient::new(s.channel.clone());
    let mut visits = VisitServiceClient::new(s.channel.clone());
    // A cover of g1 for gw-8 in the window, and one for gw-7 that ended.
    let g1 =
        grids.get_grid(with_token(GetGridRequest { name: s.g1.clone() }, &admin())).await.expect("g1").into_inner();
    let today = (Utc::now() + Duration::hours(8)).date_naive();
    let cover = |worker: &str, start: chrono::NaiveDate, end: chrono::NaiveDate| Cover {
        worker: format!("users/{worker}"),
        start_date: start.to_string(),
        end_date: end.to_string(),
        covers_for: "users/gw-1".into(),
    };
    grids
        .update_grid(with_token(
            UpdateGridRequest {
                grid: Some(Grid {
                    name: s.g1.clone(),
                    covers: vec![
                        cover("gw-8", today, today + chrono::Days::new(3)),
                        cover("gw-7", today - chrono::Days::new(9), today - chrono::Days::new(2)),
                    ],
                    etag: g1.etag,
                    ..Default::default()
                }),
                update_mask: Some(pbjson_types::FieldMask { paths: vec!["covers".into()] }),
                request_id: String::new(),
            },
            &admin(),
        ))
        .await
        .expect("covers");

    // What the loop below reads, changes and removes: a desk, a visit of gw-1's to h1, and a
    // resident of h1 for each caller to try to remove.
    grids
        .create_station(with_token(
            CreateStationRequest {
                parent: format!("{STREET}/communities/east"),
                station: Some(Station {
                    display_name: "办公桌".into(), place: "1号楼下".into(), ..Default::default()
                }),
                station_id: "desk-m".into(),
                request_id: String::new(),
            },
            &admin(),
        ))
        .await
        .expect("a desk");
    visits
        .create_visit(with_token(
            CreateVisitRequest {
                parent: STREET.into(),
                visit: Some(visit_at(&s.h1, 30)),
                visit_id: "mx-1".into(),
                request_id: String::new(),
            },
            &token("gw-1", &[Role::GridWorker], "zhongjie"),
        ))
        .await
        .expect("gw-1's visit");
    let mut removable = Vec::new();
    for i in 0..12 {
        let r = roster
            .create_resident(with_token(
                CreateResidentRequest {
                    parent: s.h1.clone(),
                    resident: Some(Resident { display_name: format!("暂住{i}"), ..Default::default() }),
                    request_id: String::new(),
                },
                &admin(),
            ))
            .await
            .expect("a resident")
            .into_inner();
        removable.push(r.name);
    }
    let callers: [(&str, String); 12] = [
        ("anonymous", String::new()),
        ("own resident", token("resident-1", &[Role::Resident], "zhongjie")),
        ("other resident", token("resident-2", &[Role::Resident], "zhongjie")),
        ("grid worker", token("gw-1", &[Role::GridWorker], "zhongjie")),
        ("other grid's worker", token("gw-2", &[Role::GridWorker], "zhongjie")),
        ("cover in window", token("gw-8", &[Role::GridWorker], "zhongjie")),
        ("cover out of window", token("gw-7", &[Role::GridWorker], "zhongjie")),
        ("community cadre", token_in("cadre-e", &[Role::Cadre], "zhongjie", "east")),
        ("other community's cadre", token_in("cadre-w", &[Role::Cadre], "zhongjie", "west")),
        ("street admin", admin()),
        ("other street's admin", token("admin-x", &[Role::Admin], "xijie")),
        ("department officer", token("officer", &[Role::DepartmentOfficer], "zhongjie")),
    ];
    // Which callers (by index above) may make each call.
    let staff_of_g1 = [3, 5, 7, 9];
    let sees_h1 = [1, 3, 5, 7, 9];
    let street_members = [1, 2, 3, 4, 5, 6, 7, 8, 9, 11];
    let drafters = [7, 9];
    let admins = [9];
    let staff = [3, 4, 5, 6, 7, 8, 9];

    for (i, (who, token)) in callers.iter().enumerate() {
        let check = |rpc: &str, allowed: &[usize], result: Result<(), tonic::Status>| match result {
            Ok(()) => assert!(allowed.contains(&i), "{who} must not {rpc}"),
            Err(e) => {
                assert!(!allowed.contains(&i), "{who} may {rpc}: {e:?}");
                let expected = if token.is_empty() { Code::Unauthenticated } else { Code::PermissionDenied };
                assert_eq!(e.code(), expected, "{who} {rpc}: {}", e.message());
            }
        };
        check(
            "get g1",
            &staff_of_g1,
            ok(grids.get_grid(with_token(GetGridRequest { name: s.g1.clone() }, token)).await),
        );
        let missing = format!("{STREET}/communities/east/grids/nowhere");
        let r = grids.get_grid(with_token(GetGridRequest { name: missing }, token)).await.map(|_| ());
        match r {
            Err(e) if [9, 7].contains(&i) => assert_eq!(e.code(), Code::NotFound, "{who}"),
            other => check("get a missing grid", &[], other),
        }
        check(
            "redraw g1",
            &drafters,
            ok(grids
                .update_grid(with_token(
                    UpdateGridRequest {
                        grid: Some(Grid {
                            name: s.g1.clone(),
                            display_name: format!("网格一 {i}"),
                            ..Default::default()
                        }),
                        update_mask: Some(pbjson_types::FieldMask { paths: vec!["display_name".into()] }),
                        request_id: String::new(),
                    },
                    token,
                ))
                .await),
        );
        check(
            "create a community",
            &admins,
            ok(grids
                .create_community(with_token(
                    CreateCommunityRequest {
                        parent: STREET.into(),
                        community: Some(Community { display_name: "新社区".into(), ..Default::default() }),
                        community_id: format!("new-{i}"),
                        request_id: String::new(),
                    },
                    token,
                ))
                .await),
        );
        check(
            "locate a point",
            &street_members,
            ok(grids
                .locate_grid(with_token(
                    LocateGridRequest { parent: STREET.into(), point: point(106.05, 35.05) },
                    token,
                ))
                .await),
        );
        check(
            "get h1",
            &sees_h1,
            ok(roster.get_household(with_token(GetHouseholdRequest { name: s.h1.clone() }, token)).await),
        );
        check(
            "list h1's residents",
            &sees_h1,
            ok(roster
                .list_residents(with_token(ListResidentsRequest { parent: s.h1.clone(), ..Default::default() }, token))
                .await),
        );
        check(
            "read r1 in full",
            &staff_of_g1,
            ok(roster
                .reveal_resident(with_token(
                    RevealResidentRequest { name: s.r1.clone(), reason: "核对身份信息".into() },
                    token,
                ))
                .await),
        );
        check(
            "add a resident to h1",
            &staff_of_g1,
            ok(roster
                .create_resident(with_token(
                    CreateResidentRequest {
                        parent: s.h1.clone(),
                        resident: Some(Resident { display_name: format!("住户{i}"), ..Default::default() }),
                        request_id: String::new(),
                    },
                    token,
                ))
                .await),
        );
        check(
            "list the access log",
            &admins,
            ok(roster
                .list_access_records(with_token(
                    ListAccessRecordsRequest { parent: STREET.into(), ..Default::default() },
                    token,
                ))
                .await),
        );
        check(
            "record a visit to h1",
            &staff_of_g1,
            ok(visits
                .create_visit(with_token(
                    CreateVisitRequest {
                        parent: STREET.into(),
                        visit: Some(visit_at(&s.h1, 5)),
                        visit_id: format!("m-{i}"),
                        request_id: String::new(),
                    },
                    token,
                ))
                .await),
        );
        check(
            "list their own due visits",
            &staff,
            ok(visits
                .list_due_visits(with_token(
                    ListDueVisitsRequest { parent: STREET.into(), ..Default::default() },
                    token,
                ))
                .await),
        );
        check(
            "list gw-1's due visits",
            &[3, 5, 7, 9],
            ok(visits
                .list_due_visits(with_token(
                    ListDueVisitsRequest { parent: STREET.into(), worker: "users/gw-1".into(), ..Default::default() },
                    token,
                ))
                .await),
        );
        let east = format!("{STREET}/communities/east");
        let sees_east = [3, 4, 5, 7, 9]; // a worker of one of its grids sees the community
        check(
            "get the east community",
            &sees_east,
            ok(grids.get_community(with_token(GetCommunityRequest { name: east.clone() }, token)).await),
        );
        check(
            "list the communities",
            &staff,
            ok(grids
                .list_communities(with_token(
                    ListCommunitiesRequest { parent: STREET.into(), ..Default::default() },
                    token,
                ))
                .await),
        );
        check(
            "list east's grids",
            &sees_east,
            ok(grids
                .list_grids(with_token(ListGridsRequest { parent: east.clone(), ..Default::default() }, token))
                .await),
        );
        check(
            "list g1's revisions",
            &staff_of_g1,
            ok(grids
                .list_grid_revisions(with_token(
                    ListGridRevisionsRequest { name: s.g1.clone(), ..Default::default() },
                    token,
                ))
                .await),
        );
        check(
            "change east's office",
            &drafters,
            ok(grids
                .update_community(with_token(
                    UpdateCommunityRequest {
                        community: Some(Community {
                            name: east.clone(),
                            office: format!("办公室 {i}"),
                            ..Default::default()
                        }),
                        update_mask: Some(pbjson_types::FieldMask { paths: vec!["office".into()] }),
                        request_id: String::new(),
                    },
                    token,
                ))
                .await),
        );
        check(
            "set up a desk in east",
            &drafters,
            ok(grids
                .create_station(with_token(
                    CreateStationRequest {
                        parent: east.clone(),
                        station: Some(Station {
                            display_name: "办公桌".into(),
                            place: "3号楼下".into(),
                            ..Default::default()
                        }),
                        station_id: format!("desk-{i}"),
                        request_id: String::new(),
                    },
                    token,
                ))
                .await),
        );
        check(
            "list east's desks",
            &street_members,
            ok(grids
                .list_stations(with_token(ListStationsRequest { parent: east.clone(), ..Default::default() }, token))
                .await),
        );
        check(
            "add a household in g1",
            &staff_of_g1,
            ok(roster
                .create_household(with_token(
                    CreateHouseholdRequest {
                        parent: STREET.into(),
                        household: Some(Household {
                            address: format!("{i}号"),
                            location: point(106.02, 35.02),
                            ..Default::default()
                        }),
                        request_id: String::new(),
                    },
                    token,
                ))
                .await),
        );
        check(
            "list households",
            &[1, 3, 4, 5, 6, 7, 8, 9],
            ok(roster
                .list_households(with_token(
                    ListHouseholdsRequest { parent: STREET.into(), ..Default::default() },
                    token,
                ))
                .await),
        );
        check(
            "move h1's building",
            &staff_of_g1,
            ok(roster
                .update_household(with_token(
                    UpdateHouseholdRequest {
                        household: Some(Household {
                            name: s.h1.clone(),
                            building: format!("{i}号楼"),
                            ..Default::default()
                        }),
                        update_mask: Some(pbjson_types::FieldMask { paths: vec!["building".into()] }),
                        request_id: String::new(),
                    },
                    token,
                ))
                .await),
        );
        check(
            "get r1 masked",
            &sees_h1,
            ok(roster.get_resident(with_token(GetResidentRequest { name: s.r1.clone() }, token)).await),
        );
        check(
            "change r1's consent note",
            &staff_of_g1,
            ok(roster
                .update_resident(with_token(
                    UpdateResidentRequest {
                        resident: Some(Resident {
                            name: s.r1.clone(),
                            consent_note: format!("同意 {i}"),
                            ..Default::default()
                        }),
                        update_mask: Some(pbjson_types::FieldMask { paths: vec!["consent_note".into()] }),
                        request_id: String::new(),
                    },
                    token,
                ))
                .await),
        );
        check(
            "find residents by phone",
            &staff,
            ok(roster
                .find_residents(with_token(
                    FindResidentsRequest { parent: STREET.into(), phone: PHONE.into(), id_number: String::new() },
                    token,
                ))
                .await),
        );
        check(
            "read h1's contact card",
            &sees_h1,
            ok(roster.get_contact_card(with_token(GetContactCardRequest { household: s.h1.clone() }, token)).await),
        );
        check(
            "sync a visit to h1",
            &staff,
            ok(visits
                .sync_visits(with_token(
                    SyncVisitsRequest {
                        parent: STREET.into(),
                        visits: vec![SyncedVisit { visit_id: format!("s-{i}"), visit: Some(visit_at(&s.h1, 3)) }],
                    },
                    token,
                ))
                .await),
        );
        check(
            "list visits",
            &staff,
            ok(visits
                .list_visits(with_token(ListVisitsRequest { parent: STREET.into(), ..Default::default() }, token))
                .await),
        );
        let local = Utc::now() + Duration::hours(8);
        let (year, month) = (chrono::Datelike::year(&local), chrono::Datelike::month(&local) as i32);
        check(
            "read g1's month",
            &staff_of_g1,
            ok(visits
                .get_monthly_summary(with_token(
                    GetMonthlySummaryRequest {
                        parent: STREET.into(),
                        year,
                        month,
                        grid: s.g1.clone(),
                        ..Default::default()
                    },
                    token,
                ))
                .await),
        );
        check(
            "edit their own month",
            &staff,
            ok(visits
                .update_monthly_summary(with_token(
                    UpdateMonthlySummaryRequest {
                        parent: STREET.into(),
                        year,
                        month,
                        notes: "本月".into(),
                        etag: String::new(),
                    },
                    token,
                ))
                .await),
        );
        check(
            "submit their own month",
            &staff,
            ok(visits
                .submit_monthly_summary(with_token(
                    SubmitMonthlySummaryRequest {
                        parent: STREET.into(),
                        year,
                        month,
                        etag: String::new(),
                        request_id: String::new(),
                    },
                    token,
                ))
                .await),
        );
        check(
            "draw a grid in east",
            &drafters,
            ok(grids
                .create_grid(with_token(
                    CreateGridRequest {
                        parent: format!("{STREET}/communities/east"),
                        grid: Some(Grid {
                            display_name: format!("新网格{i}"),
                            boundary: rect(110.0 + i as f64 * 0.1, 35.0, 110.05 + i as f64 * 0.1, 35.05),
                            ..Default::default()
                        }),
                        grid_id: format!("new-{i}"),
                        request_id: String::new(),
                    },
                    token,
                ))
                .await),
        );
        check(
            "change east's desk",
            &drafters,
            ok(grids
                .update_station(with_token(
                    UpdateStationRequest {
                        station: Some(Station {
                            name: format!("{STREET}/communities/east/stations/desk-m"),
                            display_name: format!("办公桌 {i}"),
                            ..Default::default()
                        }),
                        update_mask: Some(pbjson_types::FieldMask { paths: vec!["display_name".into()] }),
                        request_id: String::new(),
                    },
                    token,
                ))
                .await),
        );
        check(
            "read gw-1's visit to h1",
            &staff_of_g1,
            ok(visits.get_visit(with_token(GetVisitRequest { name: format!("{STREET}/visits/mx-1") }, token)).await),
        );
        check(
            "remove a resident of h1",
            &staff_of_g1,
            ok(roster
                .delete_resident(with_token(
                    DeleteResidentRequest {
                        name: removable[i].clone(),
                        etag: String::new(),
                        request_id: String::new(),
                    },
                    token,
                ))
                .await),
        );
        let _ = &s.h3;
    }
    // A household removed by g1's worker; another grid's worker may not remove h1's residents.
    let gw2 = &callers[4].1;
    let removal =
        |name: &str| DeleteResidentRequest { name: name.into(), etag: String::new(), request_id: String::new() };
    let refused = roster.delete_resident(with_token(removal(&s.r1), gw2)).await;
    assert_eq!(refused.expect_err("another grid").code(), Code::PermissionDenied);
    roster.delete_resident(with_token(removal(&s.r1), &callers[3].1)).await.expect("g1's worker removes r1");
    let gone = roster.get_resident(with_token(GetResidentRequest { name: s.r1.clone() }, &admin())).await;
    assert_eq!(gone.expect_err("removed").code(), Code::NotFound);
    // The cover recorded a visit of its own, visible to g1's worker; the visit another worker
    // made is not visible to gw-2.
    let seen = visits.get_visit(with_token(GetVisitRequest { name: format!("{STREET}/visits/m-5") }, gw2)).await;
    assert_eq!(seen.expect_err("another grid's visit").code(), Code::PermissionDenied);
    let gw1 = &callers[3].1;
    let seen = visits.get_visit(with_token(GetVisitRequest { name: format!("{STREET}/visits/m-5") }, gw1)).await;
    assert_eq!(seen.expect("g1's worker sees the cover's visit").into_inner().worker, "users/gw-8");
    app.stop().await;
}

#[tokio::test]
async fn http_json_locates_points_and_names_bad_fields() {
    let (app, _store) = spawn_app().await;
    let s = street(app.channel.clone()).await;
    let worker = token("gw-1", &[Role::GridWorker], "zhongjie");
    let path = format!("/v1/{STREET}:locateGrid?point.latitude=35.05&point.longitude=106.05");
    let (status, body) = common::http(app.http_addr, "GET", &path, &worker, None).await;
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(json["grid"], s.g1.as_str());
    assert_eq!(json["boundaryRevision"], "1", "int64 is a string in proto3 JSON");

    let body = format!(r#"{{"displayName":"张三","idNumber":"110105194912310021","phone":"{PHONE}"}}"#);
    let (status, answer) =
        common::http(app.http_addr, "POST", &format!("/v1/{}/residents", s.h1), &admin(), Some(&body)).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("resident.id_number"), "{answer}");
    assert!(!answer.contains("110105194912310021") && !answer.contains(PHONE), "{answer}");
    let (status, answer) =
        common::http(app.http_addr, "GET", &format!("/v1/{STREET}/dueVisits?windowDays=10"), &worker, None).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains(&s.h1), "{answer}");
    let _ = (&s.h2, &s.h3, &s.g2);
    app.stop().await;
}

#[tokio::test]
async fn contact_cards_stations_and_monthly_summaries() {
    let (app, _store) = spawn_app().await;
    let s = street(app.channel.clone()).await;
    let mut grids = GridServiceClient::new(s.channel.clone());
    let mut roster = RosterServiceClient::new(s.channel.clone());
    let mut visits = VisitServiceClient::new(s.channel.clone());
    let cadre = token_in("cadre-e", &[Role::Cadre], "zhongjie", "east");
    let east = format!("{STREET}/communities/east");

    // The community's contacts and the grid worker's work phone, as the card prints them.
    let contact = |role: &str, name: &str, phone: &str| StaffContact {
        role: role.into(),
        display_name: name.into(),
        phone: phone.into(),
        user: String::new(),
    };
    let community = grids
        .update_community(with_token(
            UpdateCommunityRequest {
                community: Some(Community {
                    name: east.clone(),
                    office: "东苑社区党群服务中心".into(),
                    contacts: vec![contact("社区书记", "马书记", "0933 8212345")],
                    ..Default::default()
                }),
                update_mask: Some(pbjson_types::FieldMask { paths: vec!["office".into(), "contacts".into()] }),
                request_id: String::new(),
            },
            &cadre,
        ))
        .await
        .expect("contacts")
        .into_inner();
    assert_eq!(community.contacts[0].phone, "0933-8212345", "normalised");
    let bad_phone = grids
        .update_community(with_token(
            UpdateCommunityRequest {
                community: Some(Community {
                    name: east.clone(),
                    contacts: vec![contact("书记", "马", "12")],
                    ..Default::default()
                }),
                update_mask: Some(pbjson_types::FieldMask { paths: vec!["contacts".into()] }),
                request_id: String::new(),
            },
            &cadre,
        ))
        .await
        .expect_err("a bad phone");
    assert!(bad_phone.message().contains("community.contacts[0].phone"), "{}", bad_phone.message());
    let g1 = grids.get_grid(with_token(GetGridRequest { name: s.g1.clone() }, &cadre)).await.expect("g1").into_inner();
    grids
        .update_grid(with_token(
            UpdateGridRequest {
                grid: Some(Grid {
                    name: s.g1.clone(),
                    workers: vec![Assignment {
                        worker: "users/gw-1".into(),
                        duties: "走访".into(),
                        display_name: "李网格".into(),
                        phone: "13912345678".into(),
                    }],
                    etag: g1.etag,
                    ..Default::default()
                }),
                update_mask: Some(pbjson_types::FieldMask { paths: vec!["workers".into()] }),
                request_id: String::new(),
            },
            &cadre,
        ))
        .await
        .expect("worker's phone");

    // A desk with its rota; a rota naming someone not at the desk is refused.
    let members = vec![contact("老党员", "王大爷", "13512345678"), contact("老党员", "张阿姨", "")];
    let slot = |weekday: i32, member: &str, end: &str| DutySlot {
        weekday,
        start_time: "09:00".into(),
        end_time: end.into(),
        member: member.into(),
    };
    let station = |rota: Vec<DutySlot>| Station {
        display_name: "东苑小区老党员办公桌".into(),
        place: "东苑小区 3号楼下".into(),
        location: point(106.05, 35.05),
        members: members.clone(),
        rota,
        ..Default::default()
    };
    for (rota, field) in [
        (vec![slot(1, "李四", "11:30")], "station.rota[0].member"),
        (vec![slot(2, "王大爷", "08:00")], "station.rota[0].end_time"),
    ] {
        let err = grids
            .create_station(with_token(
                CreateStationRequest {
                    parent: east.clone(),
                    station: Some(station(rota)),
                    station_id: "desk-x".into(),
                    request_id: String::new(),
                },
                &cadre,
            ))
            .await
            .expect_err(field);
        assert!(err.message().contains(field), "{field}: {}", err.message());
    }
    let out_of_week = grids
        .create_station(with_token(
            CreateStationRequest {
                parent: east.clone(),
                station: Some(station(vec![slot(8, "王大爷", "11:30")])),
                station_id: "desk-x".into(),
                request_id: String::new(),
            },
            &cadre,
        ))
        .await
        .expect_err("weekday 8");
    assert!(out_of_week.message().contains("weekday"), "{}", out_of_week.message());
    grids
        .create_station(with_token(
            CreateStationRequest {
                parent: east.clone(),
                station: Some(station(vec![slot(1, "王大爷", "11:30"), slot(3, "张阿姨", "11:30")])),
                station_id: "desk-1".into(),
                request_id: String::new(),
            },
            &cadre,
        ))
        .await
        .expect("station");

    // The household's card: its worker and community staff in full, its desks.
    let own = token("resident-1", &[Role::Resident], "zhongjie");
    let card = roster
        .get_contact_card(with_token(GetContactCardRequest { household: s.h1.clone() }, &own))
        .await
        .expect("own card")
        .into_inner();
    assert_eq!(card.grid, s.g1);
    assert_eq!(
        (card.grid_workers[0].display_name.as_str(), card.grid_workers[0].phone.as_str()),
        ("李网格", "13912345678")
    );
    assert_eq!(card.community_contacts[0].display_name, "马书记");
    assert_eq!(card.community_office, "东苑社区党群服务中心");
    assert_eq!(card.stations.len(), 1);
    assert_eq!(card.stations[0].rota.len(), 2);
    let other = token("resident-2", &[Role::Resident], "zhongjie");
    let denied = roster.get_contact_card(with_token(GetContactCardRequest { household: s.h1.clone() }, &other)).await;
    assert_eq!(denied.expect_err("another household's card").code(), Code::PermissionDenied);
    let stations = grids
        .list_stations(with_token(ListStationsRequest { parent: east.clone(), ..Default::default() }, &other))
        .await
        .expect("the street's residents see the desks")
        .into_inner();
    assert_eq!(stations.stations.len(), 1);

    // The month: two visits to h1 (g1's only household, a key one) with three problems.
    let worker = token("gw-1", &[Role::GridWorker], "zhongjie");
    for (id, minutes) in [("m-1", 30), ("m-2", 20)] {
        let mut visit = visit_at(&s.h1, minutes);
        if id == "m-2" {
            visit.problems.push(Problem {
                category: "safety".into(),
                description: "路灯不亮".into(),
                ..Default::default()
            });
        }
        visits
            .create_visit(with_token(
                CreateVisitRequest {
                    parent: STREET.into(),
                    visit: Some(visit),
                    visit_id: id.into(),
                    request_id: String::new(),
                },
                &worker,
            ))
            .await
            .expect("visit");
    }
    let local = Utc::now() + Duration::hours(8);
    let (year, month) = (chrono::Datelike::year(&local), chrono::Datelike::month(&local) as i32);
    let get = |worker: &str, grid: &str, community: &str| GetMonthlySummaryRequest {
        parent: STREET.into(),
        year,
        month,
        worker: worker.into(),
        grid: grid.into(),
        community: community.into(),
    };
    let draft = visits.get_monthly_summary(with_token(get("", "", ""), &worker)).await.expect("draft").into_inner();
    assert_eq!(draft.scope, "users/gw-1");
    assert_eq!(
        (draft.visits, draft.households, draft.households_covered, draft.key_households, draft.problems_raised),
        (2, 1, 1, 1, 3)
    );
    assert_eq!((draft.coverage_percent, draft.days_with_records), (100.0, 1));
    assert_eq!(draft.state(), civic_proto::grid::monthly_summary::State::Draft);
    let edited = visits
        .update_monthly_summary(with_token(
            UpdateMonthlySummaryRequest {
                parent: STREET.into(),
                year,
                month,
                notes: "本月重点关注独居老人".into(),
                etag: draft.etag.clone(),
            },
            &worker,
        ))
        .await
        .expect("notes")
        .into_inner();
    assert_eq!(edited.notes, "本月重点关注独居老人");
    let submit = || SubmitMonthlySummaryRequest {
        parent: STREET.into(),
        year,
        month,
        etag: String::new(),
        request_id: String::new(),
    };
    let submitted = visits.submit_monthly_summary(with_token(submit(), &worker)).await.expect("submit").into_inner();
    assert_eq!(submitted.state(), civic_proto::grid::monthly_summary::State::Submitted);
    assert!(submitted.submitted_on_time && submitted.submit_time.is_some());
    assert_eq!(submitted.notes, "本月重点关注独居老人");
    let twice = visits.submit_monthly_summary(with_token(submit(), &worker)).await;
    assert_eq!(twice.expect_err("submitted already").code(), Code::FailedPrecondition);
    visits
        .create_visit(with_token(
            CreateVisitRequest {
                parent: STREET.into(),
                visit: Some(visit_at(&s.h1, 10)),
                visit_id: "m-3".into(),
                request_id: String::new(),
            },
            &worker,
        ))
        .await
        .expect("a later visit");
    // The diary of the day: the worker's visits of today, by the street's calendar.
    let today = (Utc::now() + Duration::hours(8)).format("%Y-%m-%d").to_string();
    let diary = visits
        .list_visits(with_token(
            ListVisitsRequest {
                parent: STREET.into(),
                filter: format!("worker = users/gw-1 AND day = {today}"),
                ..Default::default()
            },
            &worker,
        ))
        .await
        .expect("the diary")
        .into_inner();
    assert_eq!(diary.visits.len(), 3);
    let yesterday = (Utc::now() + Duration::hours(8) - Duration::days(1)).format("%Y-%m-%d").to_string();
    let before = visits
        .list_visits(with_token(
            ListVisitsRequest {
                parent: STREET.into(),
                filter: format!("worker = users/gw-1 AND day = {yesterday}"),
                ..Default::default()
            },
            &worker,
        ))
        .await
        .expect("yesterday's diary")
        .into_inner();
    assert!(before.visits.iter().all(|v| !v.name.ends_with("/m-1")), "visits keep to their day");
    let frozen = visits.get_monthly_summary(with_token(get("", "", ""), &worker)).await.expect("frozen").into_inner();
    assert_eq!(frozen.visits, 2, "a submitted month keeps its figures");
    let by_grid = visits.get_monthly_summary(with_token(get("", &s.g1, ""), &cadre)).await.expect("grid").into_inner();
    assert_eq!(by_grid.visits, 3);
    let by_community = visits.get_monthly_summary(with_token(get("", "", &east), &cadre)).await.expect("community");
    assert_eq!(by_community.into_inner().households, 2, "h1 and h2 are east's");
    let other_worker = token("gw-2", &[Role::GridWorker], "zhongjie");
    let not_theirs = visits.get_monthly_summary(with_token(get("", &s.g1, ""), &other_worker)).await;
    assert_eq!(not_theirs.expect_err("another grid").code(), Code::PermissionDenied);
    // A month to come has nothing in it; it cannot be submitted; a month 13 is no month.
    let later = local + Duration::days(40);
    let (later_year, later_month) = (chrono::Datelike::year(&later), chrono::Datelike::month(&later) as i32);
    let ahead = visits
        .get_monthly_summary(with_token(
            GetMonthlySummaryRequest { year: later_year, month: later_month, ..get("", "", "") },
            &worker,
        ))
        .await
        .expect("a month to come")
        .into_inner();
    assert_eq!((ahead.visits, ahead.days_with_records, ahead.days_without_record), (0, 0, 0));
    let early = visits
        .submit_monthly_summary(with_token(
            SubmitMonthlySummaryRequest { year: later_year, month: later_month, ..submit() },
            &worker,
        ))
        .await;
    assert_eq!(early.expect_err("not begun").code(), Code::InvalidArgument);
    let thirteen = visits
        .get_monthly_summary(with_token(GetMonthlySummaryRequest { month: 13, ..get("", "", "") }, &worker))
        .await;
    let thirteen = thirteen.expect_err("month 13");
    assert_eq!(thirteen.code(), Code::InvalidArgument);
    assert!(thirteen.message().contains("month"), "{}", thirteen.message());
    app.stop().await;
}

#[tokio::test]
async fn the_demo_street_is_seeded_with_its_map_roster_visits_and_desks() {
    let store = common::Store::fresh().await;
    let app = common::spawn_on(&store, civic::Target::All, civic::Options { seed: true, ..Default::default() }).await;
    let mut grids = GridServiceClient::new(app.channel.clone());
    let mut visits = VisitServiceClient::new(app.channel.clone());
    let mut roster = RosterServiceClient::new(app.channel.clone());
    let communities = grids
        .list_communities(with_token(ListCommunitiesRequest { parent: STREET.into(), ..Default::default() }, &admin()))
        .await
        .expect("communities")
        .into_inner();
    assert_eq!(communities.communities.len(), 6);
    let all = grids
        .list_grids(with_token(
            ListGridsRequest { parent: format!("{STREET}/communities/-"), page_size: 200, ..Default::default() },
            &admin(),
        ))
        .await
        .expect("grids")
        .into_inner();
    assert_eq!(all.grids.len(), 48);
    let mut desks = 0;
    for c in &communities.communities {
        let listed = grids
            .list_stations(with_token(ListStationsRequest { parent: c.name.clone(), ..Default::default() }, &admin()))
            .await
            .expect("stations")
            .into_inner();
        desks += listed.stations.len();
    }
    assert_eq!(desks, 15);
    // Every demo grid's centre lies in that grid.
    let g = &all.grids[0];
    let first = civic_grid::geometry::Boundary::from_geojson(&g.boundary).expect("a valid boundary");
    let (longitude, latitude) = first.interior_point();
    let found = grids
        .locate_grid(with_token(
            LocateGridRequest { parent: STREET.into(), point: point(longitude, latitude) },
            &admin(),
        ))
        .await
        .expect("located")
        .into_inner();
    assert_eq!(found.grid, g.name);
    // The roster: every household in a grid, residents masked, a month of visits behind it.
    let households = roster
        .list_households(with_token(
            ListHouseholdsRequest { parent: STREET.into(), page_size: 500, ..Default::default() },
            &admin(),
        ))
        .await
        .expect("households")
        .into_inner();
    assert_eq!(households.households.len(), 150);
    assert!(households.households.iter().all(|h| !h.grid.is_empty()));
    let residents = roster
        .list_residents(with_token(
            ListResidentsRequest { parent: households.households[0].name.clone(), ..Default::default() },
            &admin(),
        ))
        .await
        .expect("residents")
        .into_inner();
    assert!(residents.residents.iter().all(|r| r.id_number.contains("***********") && r.phone.contains("****")));
    let seen = visits
        .list_visits(with_token(
            ListVisitsRequest { parent: STREET.into(), page_size: 200, ..Default::default() },
            &admin(),
        ))
        .await
        .expect("visits")
        .into_inner();
    assert!(seen.visits.len() > 30, "a month of visits: {}", seen.visits.len());
    app.stop().await;
}

/// `civic import roster` against a running civic: the sample file imports once (again, it
/// changes nothing); a file with bad rows imports nothing and says which rows and why, beside
/// the file; with --skip-bad-rows the good rows go in.
// The command runs as a process of its own while this test's runtime serves it: on threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_roster_imports_from_csv_all_or_nothing_and_once() {
    let store = common::Store::fresh().await;
    let app = common::spawn_on(&store, civic::Target::All, civic::Options { seed: true, ..Default::default() }).await;
    let dir = tempfile::tempdir().expect("dir");
    let sample = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/services/grid/seed/roster-sample.csv"))
        .expect("the sample");
    let good = dir.path().join("roster.csv");
    std::fs::write(&good, &sample).expect("write");
    let grpc = format!("http://{}", app.grpc_addr);
    let run = move |file: std::path::PathBuf, extra: Vec<&'static str>, token: String| {
        let grpc = grpc.clone();
        async move {
            let output = tokio::task::spawn_blocking(move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_civic"))
                    .args(["import", "roster"])
                    .arg(file)
                    .args(["--street", "zhongjie", "--community", "dongyuan", "--grpc-addr", &grpc])
                    .args(extra)
                    .env("CIVIC_TOKEN", token)
                    .output()
            })
            .await
            .expect("the thread")
            .expect("civic runs");
            let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
            (output.status.success(), text)
        }
    };
    let import =
        |file: &std::path::Path, extra: &[&'static str]| run.clone()(file.to_path_buf(), extra.to_vec(), admin());
    let (ok, out) = import(&good, &[]).await;
    assert!(ok, "{out}");
    assert!(out.contains("6 households and 8 residents added, 0 residents already"), "{out}");
    let (ok, out) = import(&good, &[]).await;
    assert!(ok, "{out}");
    assert!(out.contains("0 households and 0 residents added, 8 residents already"), "{out}");

    let mut roster = RosterServiceClient::new(app.channel.clone());
    let find = |id_number: &str| FindResidentsRequest {
        parent: STREET.into(),
        id_number: id_number.into(),
        phone: String::new(),
    };
    let found =
        roster.find_residents(with_token(find("620802194203151029"), &admin())).await.expect("find").into_inner();
    assert_eq!(found.residents.len(), 1);
    assert_eq!(found.residents[0].tags, ["elderly_alone", "senior_party_member"]);
    let household = found.residents[0].name.rsplit_once("/residents/").map(|(h, _)| h.to_owned()).expect("a household");
    let household = roster
        .get_household(with_token(GetHouseholdRequest { name: household }, &admin()))
        .await
        .expect("household")
        .into_inner();
    assert_eq!(
        (household.resident_count, household.tags.clone()),
        (2, vec!["elderly_alone".to_owned(), "senior_party_member".to_owned()])
    );
    assert!(!household.grid.is_empty());

    // Row 10 is new and good; row 11 has a wrong check digit; row 12 lies outside the community.
    let bad = dir.path().join("bad.csv");
    let mut text = sample.clone();
    text.push_str("东苑小区 7号楼,1单元 101,35.5315,106.6440,孙新,620802199001011231,,,,\n");
    text.push_str("东苑小区 7号楼,1单元 102,35.5315,106.6440,周错,620802199001011237,,,,\n");
    text.push_str("柳湖花园 1号楼,1单元 101,35.5590,106.6850,吴远,,,,,\n");
    std::fs::write(&bad, text).expect("write");
    let (ok, out) = import(&bad, &[]).await;
    assert!(!ok, "{out}");
    assert!(out.contains("2 of 11 rows are bad") && out.contains("nothing was imported"), "{out}");
    let report = std::fs::read_to_string(dir.path().join("bad.errors.csv")).expect("the error report");
    assert!(report.contains("11,id_number,has a wrong check digit"), "{report}");
    assert!(report.contains("12,location,lies outside every grid of the community"), "{report}");
    assert!(!report.contains("620802199001011237"), "the report holds no ID number");
    let none =
        roster.find_residents(with_token(find("620802199001011231"), &admin())).await.expect("find").into_inner();
    assert!(none.residents.is_empty(), "nothing of a refused file was written");
    let (ok, out) = import(&bad, &["--skip-bad-rows"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("1 households and 1 residents added, 8 residents already"), "{out}");
    let one = roster.find_residents(with_token(find("620802199001011231"), &admin())).await.expect("find").into_inner();
    assert_eq!(one.residents.len(), 1);

    // A grid worker may not import.
    let (ok, out) = run(good.clone(), Vec::new(), token("gw-01", &[Role::GridWorker], "zhongjie")).await;
    assert!(!ok);
    assert!(out.contains("PermissionDenied"), "{out}");
    app.stop().await;
}

/// Over HTTP/JSON a roster import is one message of rows: checked and written as over gRPC.
#[tokio::test]
async fn a_roster_import_over_http_is_one_message_of_rows() {
    let store = common::Store::fresh().await;
    let app = common::spawn_on(&store, civic::Target::All, civic::Options { seed: true, ..Default::default() }).await;
    let body = serde_json::json!({
        "community": format!("{STREET}/communities/dongyuan"),
        "rows": [
            {"rowNumber": "2", "building": "东苑小区 9号楼", "address": "1单元 101",
             "location": {"latitude": 35.5315, "longitude": 106.6440}, "displayName": "郑华",
             "idNumber": "620802199001011231", "tags": ["veteran"]},
            {"rowNumber": "3", "building": "东苑小区 9号楼", "address": "1单元 102",
             "location": {"latitude": 35.5315, "longitude": 106.6440}, "displayName": "郑错",
             "idNumber": "620802199001011237"}
        ]
    });
    let path = format!("/v1/{STREET}/households:import");
    let (status, answer) = common::http(app.http_addr, "POST", &path, &admin(), Some(&body.to_string())).await;
    assert_eq!(status, 200, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("json");
    assert!(!answer["imported"].as_bool().unwrap_or(false), "nothing imported (false is left out): {answer}");
    assert_eq!(answer["errors"][0]["rowNumber"], "3");
    assert_eq!(answer["errors"][0]["field"], "id_number");
    let mut skipping = body.clone();
    skipping["skipBadRows"] = serde_json::Value::Bool(true);
    let (status, answer) = common::http(app.http_addr, "POST", &path, &admin(), Some(&skipping.to_string())).await;
    assert_eq!(status, 200, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("json");
    assert_eq!(
        (answer["imported"].clone(), answer["residentsCreated"].clone()),
        (serde_json::Value::Bool(true), serde_json::json!("1"))
    );
    let worker = token("gw-01", &[Role::GridWorker], "zhongjie");
    let (status, _) = common::http(app.http_addr, "POST", &path, &worker, Some(&body.to_string())).await;
    assert_eq!(status, 403);
    app.stop().await;
}
