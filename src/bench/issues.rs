//! The issues service's scenarios: `issue-create` (residents filing issues from the app through
//! the gateway's HTTP/JSON, each placed by the grid service's LocateGrid and checked for
//! duplicates) against raw sqlx inserts of the same rows, and `issue-list` (a grid worker's
//! list of their grid's issues over gRPC).

use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use civic_kit::auth::{AuthSettings, Principal, Role};
use civic_proto::issues::issue::Source;
use civic_proto::issues::issue_service_client::IssueServiceClient;
use civic_proto::issues::{Issue, ListIssuesRequest, Point};

use super::load::{self, Call, Shape, Stats};
use super::{RawEvent, Target, bearer, http_call, http_client, raw_database, raw_event_and_answer};

/// The demo street's extent (as its map): the issues fall in its grids.
const EXTENT: (f64, f64, f64, f64) = (106.640, 35.530, 0.048, 0.030);
const CATEGORIES: [&str; 8] =
    ["environment", "facilities", "safety", "welfare", "neighbour_dispute", "elderly_care", "parking", "noise"];

/// The `n`-th issue the benchmark files: a category and a point spread over the street.
fn issue(n: u64) -> Issue {
    let mut z = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    let (a, b) = ((z & 0xFFFF) as f64 / 65536.0, ((z >> 16) & 0xFFFF) as f64 / 65536.0);
    let (west, south, width, height) = EXTENT;
    Issue {
        source: Source::App as i32,
        category: CATEGORIES[(n % CATEGORIES.len() as u64) as usize].into(),
        title: "压测问题".into(),
        description: "小区东侧路灯不亮两周了，晚上出行不便".into(),
        location: Some(Point { latitude: south + b * height, longitude: west + a * width }),
        ..Default::default()
    }
}

fn resident_token(target: &Target, n: u64) -> anyhow::Result<String> {
    super::mint(target, &format!("bench-resident-{n}"), Role::Resident, civic_issues::ZHONGJIE_STREET)
}

/// Residents file issues through the gateway: POST /v1/streets/zhongjie/issues, a fresh
/// request id each.
pub fn create(target: &Target) -> anyhow::Result<Call> {
    let client = http_client();
    let url = format!("http://{}/v1/streets/{}/issues", target.http, civic_issues::ZHONGJIE_STREET);
    let tokens: Arc<Vec<String>> = Arc::new((0..64).map(|n| resident_token(target, n)).collect::<Result<_, _>>()?);
    let bodies: Arc<Vec<Bytes>> =
        Arc::new((0..256).map(|n| Bytes::from(serde_json::to_vec(&issue(n)).unwrap_or_default())).collect());
    Ok(Arc::new(move |n| {
        let client = client.clone();
        let url = format!("{url}?requestId={}", uuid::Uuid::new_v4());
        let body = bodies[n as usize % bodies.len()].clone();
        let token = tokens[n as usize % tokens.len()].clone();
        Box::pin(async move { http_call(&client, http::Method::POST, &url, &token, body).await })
    }))
}

/// A grid worker of g01's token.
fn worker_token(target: &Target) -> anyhow::Result<String> {
    let settings = AuthSettings { dev_key: Some(target.dev_key.clone()), ..Default::default() };
    let principal = Principal {
        subject: "gw-01".into(),
        roles: vec![Role::GridWorker],
        street: Some(civic_issues::ZHONGJIE_STREET.into()),
        community: None,
        grids: vec!["g01".into()],
    };
    civic_kit::auth::mint_dev_token(&settings, &principal, std::time::Duration::from_secs(3600))
        .context("minting the worker's token")
}

/// A grid worker of g01 lists their grid's issues, fifty a page, over gRPC.
pub fn list(target: &Target) -> anyhow::Result<Call> {
    let token = worker_token(target)?;
    let channels = target.grpc.clone();
    Ok(Arc::new(move |n| {
        let mut client = IssueServiceClient::new(channels[n as usize % channels.len()].clone());
        let request = ListIssuesRequest {
            parent: format!("streets/{}", civic_issues::ZHONGJIE_STREET),
            page_size: 50,
            ..Default::default()
        };
        let request = bearer(request, &token);
        Box::pin(async move { client.list_issues(request).await.map(|_| ()).map_err(|s| s.to_string()) })
    }))
}

/// The same list through the gateway: GET /v1/streets/zhongjie/issues?pageSize=20.
pub fn list_http(target: &Target) -> anyhow::Result<Call> {
    let token = worker_token(target)?;
    let client = http_client();
    let url = format!("http://{}/v1/streets/{}/issues?pageSize=20", target.http, civic_issues::ZHONGJIE_STREET);
    Ok(Arc::new(move |_| {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        Box::pin(async move { http_call(&client, http::Method::GET, &url, &token, Bytes::new()).await })
    }))
}

/// The rows CreateIssue writes — the issue, its reporter, its first timeline entry, its event
/// in the outbox, the saved answer — inserted straight through sqlx in one transaction each, on
/// a fresh database of the same kind and schema, from the same number of callers.
pub async fn raw_inserts(target: &Target, shape: Shape) -> anyhow::Result<Stats> {
    use prost::Message;
    let (_dir, db) = raw_database(target, "bench_raw_issues", civic_issues::MIGRATIONS).await?;
    let body = issue(0).encode_to_vec();
    let pool = db.clone();
    let call: Call = Arc::new(move |n| {
        let db = pool.clone();
        let body = body.clone();
        Box::pin(async move {
            let now = civic_kit::time::now_text();
            let id = uuid::Uuid::now_v7().to_string();
            let issue_id = format!("i{n}-{id}");
            let reporter = format!("users/bench-resident-{}", n % 64);
            let run = async {
                let mut tx = db.begin().await.map_err(|e| e.to_string())?;
                sqlx::query(
                    "insert into issues (street, issue_id, state, triage, source, category, community_id, grid_id, assignee,
                         department, referred_to, reporter, created_by, pending, escalation, response_due, resolution_due,
                         paused, revisit_date, resolve_time, latitude, longitude, source_key, reporter_count, version, body,
                         created_at, updated_at, located)
                     values ($1, $2, 'NEW', 'TRIAGE_UNSPECIFIED', 'app', 'environment', 'dongyuan', 'g01', '', '', '', $3, $3,
                         '', 0, $4, $4, 0, '', '', 35.54, 106.65, $5, 1, 1, $6, $4, $4, 1)",
                )
                .bind("zhongjie")
                .bind(&issue_id)
                .bind(&reporter)
                .bind(&now)
                .bind(format!("self|{issue_id}"))
                .bind(body.clone())
                .execute(&mut *tx)
                .await
                .map_err(|e| e.to_string())?;
                sqlx::query(
                    "insert into issue_reporters (street, issue_id, reporter, created_at, updated_at) values ($1, $2, $3, $4, $4)",
                )
                .bind("zhongjie")
                .bind(&issue_id)
                .bind(&reporter)
                .bind(&now)
                .execute(&mut *tx)
                .await
                .map_err(|e| e.to_string())?;
                sqlx::query(
                    "insert into issue_updates (street, issue_id, seq, visibility, action, author, state, body, created_at, updated_at)
                     values ($1, $2, 1, 'PUBLIC', 'created', $3, 'NEW', '', $4, $4)",
                )
                .bind("zhongjie")
                .bind(&issue_id)
                .bind(&reporter)
                .bind(&now)
                .execute(&mut *tx)
                .await
                .map_err(|e| e.to_string())?;
                let event = RawEvent {
                    id: &id,
                    topic: <civic_proto::issues::IssueCreated as civic_proto::Event>::TOPIC,
                    key: format!("streets/zhongjie/issues/{issue_id}"),
                    caller: reporter.clone(),
                    method: "CreateIssue",
                };
                raw_event_and_answer(&mut tx, event, body, &now).await?;
                tx.commit().await.map_err(|e| e.to_string())
            };
            run.await
        })
    });
    let stats = load::closed_loop(shape, call).await;
    db.close().await;
    Ok(stats)
}
