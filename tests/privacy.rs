//! A resident's words never reach the logs, spans or events: everything the process records —
//! every span's fields and every log line's, at every level — is captured while residents
//! search, file applications with notes and ask questions, and none of what they wrote is in it.

mod common;

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use civic_kit::auth::Role;
use civic_proto::catalogue::catalogue_service_client::CatalogueServiceClient;
use civic_proto::catalogue::desk_service_client::DeskServiceClient;
use civic_proto::catalogue::*;
use common::{token, with_token};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};

/// Everything recorded, as text.
#[expect(clippy::disallowed_types, reason = "appended to without .await inside")]
type Recorded = Arc<std::sync::Mutex<String>>;

struct Capture(Recorded);

struct Text<'a>(&'a mut String);

impl Visit for Text<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, " {}={value}", field.name());
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, _: &tracing::span::Id, _: Context<'_, S>) {
        let mut text = String::new();
        attrs.record(&mut Text(&mut text));
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push_str(&text);
    }
    fn on_record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>, _: Context<'_, S>) {
        let mut text = String::new();
        values.record(&mut Text(&mut text));
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push_str(&text);
    }
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut text = String::new();
        event.record(&mut Text(&mut text));
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push_str(&text);
    }
}

/// Installs the capture as this test process's subscriber, at every level (before any civic
/// starts, so the harness's own stays out).
fn recorded() -> Recorded {
    static RECORDED: OnceLock<Recorded> = OnceLock::new();
    RECORDED
        .get_or_init(|| {
            let recorded = Recorded::default();
            let subscriber = tracing_subscriber::registry()
                .with(Capture(recorded.clone()))
                .with(tracing_subscriber::filter::LevelFilter::TRACE);
            tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
            recorded
        })
        .clone()
}

#[tokio::test]
async fn residents_words_never_reach_logs_spans_or_events() {
    let recorded = recorded();
    let store = common::Store::fresh().await;
    let app = common::spawn_on(&store, civic::Target::All, civic::Options { seed: true, ..Default::default() }).await;
    let resident = token("resident-7", &[Role::Resident], "zhongjie");
    let staff = token("desk-1", &[Role::Cadre], "zhongjie");
    let secrets =
        ["我家老人行动不便住在三楼", "13800138000", "110101195003071234", "身份证丢了怎么补办呢", "11010519491231002X"];

    let mut catalogue = CatalogueServiceClient::new(app.channel.clone());
    catalogue
        .search_service_items(SearchServiceItemsRequest {
            parent: "streets/zhongjie".into(),
            query: secrets[0].into(),
            ..Default::default()
        })
        .await
        .expect("search");
    let mut desk = DeskServiceClient::new(app.channel.clone());
    let application = Application {
        service_item: "streets/zhongjie/items/minimum-living-allowance".into(),
        note: format!("{} 电话 {} 身份证 {}", secrets[0], secrets[1], secrets[2]),
        ..Default::default()
    };
    let filed = desk
        .create_application(with_token(
            CreateApplicationRequest {
                parent: "streets/zhongjie".into(),
                application: Some(application),
                ..Default::default()
            },
            &resident,
        ))
        .await
        .expect("filed")
        .into_inner();
    desk.withdraw_application(with_token(
        WithdrawApplicationRequest { name: filed.name.clone(), note: secrets[1].into(), ..Default::default() },
        &resident,
    ))
    .await
    .expect("withdrawn");
    let inquiry =
        Inquiry { question: secrets[3].into(), answer: format!("请带 {}", secrets[2]), ..Default::default() };
    desk.create_inquiry(with_token(
        CreateInquiryRequest { parent: "streets/zhongjie".into(), inquiry: Some(inquiry), ..Default::default() },
        &staff,
    ))
    .await
    .expect("inquiry");
    // A bad request naming the fields, too.
    let _ = desk
        .create_application(with_token(
            CreateApplicationRequest {
                parent: "streets/zhongjie".into(),
                application: Some(Application {
                    note: format!("{}{}", secrets[1], "x".repeat(3000)),
                    ..Default::default()
                }),
                ..Default::default()
            },
            &resident,
        ))
        .await
        .expect_err("too long");
    grid_work(&app, &secrets).await;
    issues_work(&app, &secrets).await;
    volunteer_work(&app, &secrets).await;
    app.stop().await;

    let text = recorded.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    assert!(text.contains(&filed.name), "the capture works: the case's name is recorded");
    for secret in secrets {
        assert!(!text.contains(secret), "{secret} was recorded");
    }
    // Nor in any file of the grid service's store (its outbox of events included), where the
    // ID number and phone are sealed. (The desk keeps what residents write in their notes.)
    let mut files = vec![store.data_dir().to_path_buf()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).expect("dir").map(|e| e.expect("entry").path()));
        } else if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("grid") && !n.ends_with(".key"))
        {
            let bytes = std::fs::read(&path).expect("read");
            for secret in [secrets[4], secrets[1]] {
                let needle = secret.as_bytes();
                assert!(!bytes.windows(needle.len()).any(|w| w == needle), "{} holds {secret}", path.display());
            }
        }
    }
    // The events hold no free text either.
    let db = civic_kit::db::Db::connect(&common::test_config(&store).database_url_for("catalogue"), "catalogue", 1)
        .await
        .expect("db");
    let payloads: Vec<Vec<u8>> =
        sqlx::query_scalar("select payload from civic_outbox where topic not like 'catalogue.item.%'")
            .fetch_all(db.reader())
            .await
            .expect("outbox");
    db.close().await;
    assert!(payloads.len() >= 3, "the case's two events and the inquiry's");
    // The issues service's events: an issue filed with the resident's words and steps with
    // staff's notes.
    let db = civic_kit::db::Db::connect(&common::test_config(&store).database_url_for("issues"), "issues", 1)
        .await
        .expect("db");
    let issue_payloads: Vec<Vec<u8>> =
        sqlx::query_scalar("select payload from civic_outbox where topic like 'issues.issue.%'")
            .fetch_all(db.reader())
            .await
            .expect("outbox");
    db.close().await;
    assert!(issue_payloads.len() >= 4, "the issue's creation, acknowledgement, triage and resolution");
    // The volunteer service's events: a need placed with the resident's words, taken, served,
    // confirmed, paid.
    let db = civic_kit::db::Db::connect(&common::test_config(&store).database_url_for("volunteer"), "volunteer", 1)
        .await
        .expect("db");
    let volunteer_payloads: Vec<Vec<u8>> = sqlx::query_scalar(
        "select payload from civic_outbox where topic like 'volunteer.%' and event_key like '%/needs/n%'",
    )
    .fetch_all(db.reader())
    .await
    .expect("outbox");
    db.close().await;
    assert!(volunteer_payloads.len() >= 4, "the need's placing, claim, completion and confirmation");
    for payload in payloads.into_iter().chain(issue_payloads).chain(volunteer_payloads) {
        let payload = String::from_utf8_lossy(&payload);
        for secret in secrets {
            assert!(!payload.contains(secret), "{secret} in an event");
        }
    }
}

/// The issues service's part: a resident's issue whose description holds their words, phone
/// and ID number, staff's steps with notes that repeat them, and refused input carrying them.
async fn issues_work(app: &common::TestApp, secrets: &[&str; 5]) {
    use civic_proto::issues::issue::{Source, Triage};
    use civic_proto::issues::issue_service_client::IssueServiceClient;
    use civic_proto::issues::*;
    let resident = token("resident-7", &[Role::Resident], "zhongjie");
    let admin = token("admin-7", &[Role::Admin], "zhongjie");
    let mut issues = IssueServiceClient::new(app.channel.clone());
    let words = format!("{} 电话 {} 身份证 {}", secrets[0], secrets[1], secrets[4]);
    let filed = issues
        .create_issue(with_token(
            CreateIssueRequest {
                parent: "streets/zhongjie".into(),
                issue: Some(Issue {
                    source: Source::App as i32,
                    category: "welfare".into(),
                    title: secrets[3].into(),
                    description: words.clone(),
                    address: secrets[0].into(),
                    location: Some(Point { latitude: 30.05, longitude: 100.05 }),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &resident,
        ))
        .await
        .expect("filed")
        .into_inner();
    let name = filed.name;
    issues
        .acknowledge_issue(with_token(
            AcknowledgeIssueRequest { name: name.clone(), note: words.clone(), ..Default::default() },
            &admin,
        ))
        .await
        .expect("acknowledged");
    issues
        .triage_issue(with_token(
            TriageIssueRequest { name: name.clone(), triage: Triage::FixAtOnce as i32, ..Default::default() },
            &admin,
        ))
        .await
        .expect("triaged");
    issues
        .resolve_issue(with_token(
            ResolveIssueRequest { name: name.clone(), resolution: words.clone(), ..Default::default() },
            &admin,
        ))
        .await
        .expect("resolved");
    let _ = issues
        .create_issue(with_token(
            CreateIssueRequest {
                parent: "streets/zhongjie".into(),
                issue: Some(Issue {
                    source: Source::App as i32,
                    category: secrets[1].into(),
                    description: format!("{words}{}", "x".repeat(5000)),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &resident,
        ))
        .await
        .expect_err("too long, and not a category");
}

/// The grid service's part: a resident with an ID number and phone, a full read with its
/// reason, a search by phone, a visit whose notes and problem hold the household's words, and
/// refused input carrying a bad ID number and phone.
async fn grid_work(app: &common::TestApp, secrets: &[&str; 5]) {
    use civic_proto::grid::grid_service_client::GridServiceClient;
    use civic_proto::grid::roster_service_client::RosterServiceClient;
    use civic_proto::grid::visit_service_client::VisitServiceClient;
    use civic_proto::grid::*;
    let admin = token("admin-7", &[Role::Admin], "zhongjie");
    let worker = token("gw-77", &[Role::GridWorker], "zhongjie");
    let street = "streets/zhongjie".to_owned();
    let mut grids = GridServiceClient::new(app.channel.clone());
    let mut roster = RosterServiceClient::new(app.channel.clone());
    let mut visits = VisitServiceClient::new(app.channel.clone());
    grids
        .create_community(with_token(
            CreateCommunityRequest {
                parent: street.clone(),
                community: Some(Community { display_name: "远郊社区".into(), ..Default::default() }),
                community_id: "far".into(),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .expect("community");
    grids
        .create_grid(with_token(
            CreateGridRequest {
                parent: format!("{street}/communities/far"),
                grid: Some(Grid {
                    display_name: "远郊一格".into(),
                    boundary:
                        r#"{"type":"Polygon","coordinates":[[[100,30],[100.1,30],[100.1,30.1],[100,30.1],[100,30]]]}"#
                            .into(),
                    workers: vec![Assignment { worker: "users/gw-77".into(), ..Default::default() }],
                    ..Default::default()
                }),
                grid_id: "far-1".into(),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .expect("grid");
    let household = roster
        .create_household(with_token(
            CreateHouseholdRequest {
                parent: street.clone(),
                household: Some(Household {
                    address: "1单元 101".into(),
                    location: Some(Point { latitude: 30.05, longitude: 100.05 }),
                    ..Default::default()
                }),
                request_id: "h-privacy".into(),
            },
            &admin,
        ))
        .await
        .expect("household")
        .into_inner();
    let resident = roster
        .create_resident(with_token(
            CreateResidentRequest {
                parent: household.name.clone(),
                resident: Some(Resident {
                    display_name: "赵桂兰".into(),
                    id_number: secrets[4].into(),
                    phone: secrets[1].into(),
                    consent_note: secrets[0].into(),
                    ..Default::default()
                }),
                request_id: "r-privacy".into(),
            },
            &worker,
        ))
        .await
        .expect("resident")
        .into_inner();
    let full = roster
        .reveal_resident(with_token(
            RevealResidentRequest { name: resident.name.clone(), reason: "核实身份".into() },
            &worker,
        ))
        .await
        .expect("reveal")
        .into_inner();
    assert_eq!(full.id_number, secrets[4]);
    roster
        .find_residents(with_token(
            FindResidentsRequest { parent: street.clone(), phone: secrets[1].into(), id_number: String::new() },
            &worker,
        ))
        .await
        .expect("find");
    let refused = roster
        .create_resident(with_token(
            CreateResidentRequest {
                parent: household.name.clone(),
                resident: Some(Resident {
                    display_name: "钱".into(),
                    id_number: secrets[2].into(),
                    phone: format!("{}9", secrets[1]),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
            &worker,
        ))
        .await
        .expect_err("bad ID number and phone");
    for secret in secrets {
        assert!(!refused.message().contains(secret), "the error holds {secret}");
    }
    let now = chrono::Utc::now();
    visits
        .sync_visits(with_token(
            SyncVisitsRequest {
                parent: street.clone(),
                visits: vec![SyncedVisit {
                    visit_id: "privacy-1".into(),
                    visit: Some(civic_proto::grid::Visit {
                        household: household.name.clone(),
                        kind: civic_proto::grid::visit::Kind::DoorToDoor as i32,
                        visit_time: Some(pbjson_types::Timestamp { seconds: now.timestamp() - 60, nanos: 0 }),
                        notes: secrets[0].into(),
                        problems: vec![Problem {
                            category: "welfare".into(),
                            description: secrets[3].into(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                }],
            },
            &worker,
        ))
        .await
        .expect("sync");
}

/// The volunteer service's part: a resident's need whose title and description hold their
/// words, phone and ID number, taken, served and confirmed; a registration and a refused need
/// carrying them too.
async fn volunteer_work(app: &common::TestApp, secrets: &[&str; 5]) {
    use civic_proto::volunteer::volunteer_service_client::VolunteerServiceClient;
    use civic_proto::volunteer::*;
    let resident = token("resident-7", &[Role::Resident], "zhongjie");
    let cadre = common::token_in("cadre-7", &[Role::Cadre], "zhongjie", "dongyuan");
    let mut client = VolunteerServiceClient::new(app.channel.clone());
    let volunteer = Volunteer {
        display_name: "王志强".into(),
        kind: civic_proto::volunteer::volunteer::Kind::InServicePartyMember as i32,
        employer: format!("电话 {}", secrets[1]),
        community: "streets/zhongjie/communities/dongyuan".into(),
        ..Default::default()
    };
    let register = CreateVolunteerRequest {
        parent: "streets/zhongjie".into(),
        volunteer: Some(volunteer),
        volunteer_id: "vol-7".into(),
        request_id: String::new(),
    };
    client.create_volunteer(with_token(register, &cadre)).await.expect("a volunteer");
    let v = token("vol-7", &[Role::Resident], "zhongjie");
    let now = chrono::Utc::now();
    let stamp = |t: chrono::DateTime<chrono::Utc>| pbjson_types::Timestamp { seconds: t.timestamp(), nanos: 0 };
    let need = Need {
        kind: civic_proto::volunteer::need::Kind::MicroWish as i32,
        title: secrets[3].into(),
        description: format!("{} 电话 {} 身份证 {}", secrets[0], secrets[1], secrets[2]),
        community: "streets/zhongjie/communities/dongyuan".into(),
        start_time: Some(stamp(now)),
        end_time: Some(stamp(now + chrono::Duration::hours(1))),
        ..Default::default()
    };
    let request =
        CreateNeedRequest { parent: "streets/zhongjie".into(), need: Some(need.clone()), request_id: String::new() };
    let placed = client.create_need(with_token(request, &resident)).await.expect("placed").into_inner();
    let name = placed.name.clone();
    client
        .claim_need(with_token(ClaimNeedRequest { name: name.clone(), request_id: String::new() }, &v))
        .await
        .expect("claim");
    client
        .check_in(with_token(CheckInRequest { name: name.clone(), request_id: String::new() }, &v))
        .await
        .expect("in");
    client
        .check_out(with_token(CheckOutRequest { name: name.clone(), request_id: String::new() }, &v))
        .await
        .expect("out");
    let confirm = |volunteer: &str, rating: i32| ConfirmTaskRequest {
        name: name.clone(),
        volunteer: volunteer.into(),
        request_id: String::new(),
        rating,
    };
    client.confirm_task(with_token(confirm("", 0), &v)).await.expect("volunteer");
    client
        .confirm_task(with_token(confirm("streets/zhongjie/volunteers/vol-7", 5), &resident))
        .await
        .expect("resident");
    // Refused: a need without a kind, its words in it.
    let bad = Need { kind: 0, ..need };
    let request = CreateNeedRequest { parent: "streets/zhongjie".into(), need: Some(bad), request_id: String::new() };
    client.create_need(with_token(request, &resident)).await.expect_err("no kind");
}
