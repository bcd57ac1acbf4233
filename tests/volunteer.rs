//! The volunteer service end to end (its register of volunteers so far): a resident registers
//! themselves and waits; the community's cadre approves; each caller sees what is theirs to see;
//! bad input names its field and changes nothing; retries answer as the first time; the demo
//! street has volunteers of every kind — over gRPC and HTTP/JSON, in the layout under test.

mod common;

use civic::{Options, Target};
use civic_kit::auth::Role;
use civic_proto::volunteer::volunteer::{Kind, State};
use civic_proto::volunteer::volunteer_service_client::VolunteerServiceClient;
use civic_proto::volunteer::*;
use common::{Store, http, spawn_on, token, token_in, with_token};
use tonic::Code;
use tonic::transport::Channel;

const STREET: &str = "streets/zhongjie";
const EAST: &str = "streets/zhongjie/communities/dongyuan";
const WEST: &str = "streets/zhongjie/communities/xiyuan";

fn resident(subject: &str) -> String {
    token(subject, &[Role::Resident], "zhongjie")
}

fn cadre_of(community: &str) -> String {
    token_in(&format!("cadre-{community}"), &[Role::Cadre], "zhongjie", community)
}

fn admin() -> String {
    token("admin", &[Role::Admin], "zhongjie")
}

fn draft(community: &str) -> Volunteer {
    Volunteer {
        display_name: "李秀英".into(),
        kind: Kind::Resident as i32,
        community: community.into(),
        skills: vec!["elder_care".into(), "cooking".into()],
        availability: vec![WeeklyRange { weekday: 6, start_time: "09:00".into(), end_time: "11:30".into() }],
        home: Some(Point { latitude: 35.54, longitude: 106.66 }),
        ..Default::default()
    }
}

fn create(volunteer: Volunteer, id: &str, request_id: &str) -> CreateVolunteerRequest {
    CreateVolunteerRequest {
        parent: STREET.into(),
        volunteer: Some(volunteer),
        volunteer_id: id.into(),
        request_id: request_id.into(),
    }
}

fn get(name: &str) -> GetVolunteerRequest {
    GetVolunteerRequest { name: name.into() }
}

fn code<T: std::fmt::Debug>(answer: Result<tonic::Response<T>, tonic::Status>) -> Code {
    answer.expect_err("refused").code()
}

#[tokio::test]
async fn residents_register_and_the_community_approves_them() {
    let store = Store::fresh().await;
    let app = spawn_on(&store, Target::All, Options { seed: true, ..Default::default() }).await;
    let mut client = VolunteerServiceClient::new(app.channel.clone());
    let me = resident("res-li");

    // A resident registers themselves, and waits.
    let mine =
        client.create_volunteer(with_token(create(draft(EAST), "", "r-1"), &me)).await.expect("register").into_inner();
    assert_eq!(mine.name, "streets/zhongjie/volunteers/res-li");
    assert_eq!((mine.person.as_str(), mine.state()), ("users/res-li", State::Pending));
    assert_eq!(mine.monthly_hours_cap, 20, "the street's default cap");
    // The same request again answers as the first time; a second registration is refused.
    let again = client.create_volunteer(with_token(create(draft(EAST), "", "r-1"), &me)).await.expect("retry");
    assert_eq!(again.into_inner(), mine);
    assert_eq!(
        code(client.create_volunteer(with_token(create(draft(EAST), "", "r-2"), &me)).await),
        Code::AlreadyExists
    );
    // Not for someone else, nor approving themselves.
    let for_other = client.create_volunteer(with_token(create(draft(EAST), "res-wang", "r-3"), &me)).await;
    assert_eq!(code(for_other), Code::PermissionDenied);
    let approve =
        |etag: &str| ApproveVolunteerRequest { name: mine.name.clone(), etag: etag.into(), request_id: String::new() };
    assert_eq!(code(client.approve_volunteer(with_token(approve(""), &me)).await), Code::PermissionDenied);

    // Who sees it: themselves, their community's cadre, the admin; not another resident, not
    // another community's cadre (which is not told whether it exists), not anonymously.
    assert_eq!(client.get_volunteer(with_token(get(&mine.name), &me)).await.expect("own").into_inner(), mine);
    assert_eq!(
        code(client.get_volunteer(with_token(get(&mine.name), &resident("res-wang"))).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(client.get_volunteer(with_token(get(&mine.name), &cadre_of("xiyuan"))).await),
        Code::PermissionDenied
    );
    let nobody = "streets/zhongjie/volunteers/nobody";
    assert_eq!(code(client.get_volunteer(with_token(get(nobody), &cadre_of("xiyuan"))).await), Code::PermissionDenied);
    assert_eq!(code(client.get_volunteer(with_token(get(nobody), &admin())).await), Code::NotFound);
    assert_eq!(code(client.get_volunteer(get(&mine.name)).await), Code::Unauthenticated);
    let elsewhere = token("admin", &[Role::Admin], "elsewhere");
    assert_eq!(code(client.get_volunteer(with_token(get(&mine.name), &elsewhere)).await), Code::PermissionDenied);

    // The cadre of the east lists the community's waiting registrations and approves this one.
    let east = cadre_of("dongyuan");
    let pending = ListVolunteersRequest {
        parent: STREET.into(),
        page_size: 200,
        filter: "state = PENDING".into(),
        ..Default::default()
    };
    let listed = client.list_volunteers(with_token(pending.clone(), &east)).await.expect("list").into_inner();
    assert!(listed.volunteers.iter().any(|v| v.name == mine.name));
    assert!(listed.volunteers.iter().all(|v| v.community == EAST && v.state() == State::Pending));
    assert_eq!(code(client.list_volunteers(with_token(pending.clone(), &me)).await), Code::PermissionDenied);
    let west_filter = ListVolunteersRequest { filter: format!("community = {WEST}"), ..pending.clone() };
    assert_eq!(code(client.list_volunteers(with_token(west_filter, &east)).await), Code::PermissionDenied);
    assert_eq!(
        code(client.approve_volunteer(with_token(approve(""), &cadre_of("xiyuan"))).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(client.approve_volunteer(with_token(approve("\"7\""), &east)).await),
        Code::Aborted,
        "a stale etag"
    );
    let approved =
        client.approve_volunteer(with_token(approve(&mine.etag), &east)).await.expect("approve").into_inner();
    assert_eq!((approved.state(), approved.approved_by.as_str()), (State::Approved, "users/cadre-dongyuan"));
    let twice = client.approve_volunteer(with_token(approve(""), &east)).await.expect_err("approved already");
    assert_eq!(twice.code(), Code::FailedPrecondition);

    // Staff register someone approved at once, in their own community only.
    let staffed =
        client.create_volunteer(with_token(create(draft(EAST), "res-zhao", "r-4"), &east)).await.expect("staff");
    assert_eq!(staffed.into_inner().state(), State::Approved);
    let other = client.create_volunteer(with_token(create(draft(WEST), "res-sun", "r-5"), &east)).await;
    assert_eq!(code(other), Code::PermissionDenied);

    // The demo street's volunteers: every kind, in-service Party members with their employer.
    let party = ListVolunteersRequest {
        parent: STREET.into(),
        page_size: 200,
        filter: "kind = IN_SERVICE_PARTY_MEMBER".into(),
        ..Default::default()
    };
    let members = client.list_volunteers(with_token(party, &admin())).await.expect("list").into_inner();
    assert!(!members.volunteers.is_empty());
    assert!(members.volunteers.iter().all(|v| v.kind() == Kind::InServicePartyMember && !v.employer.is_empty()));
    let cooks = ListVolunteersRequest {
        parent: STREET.into(),
        page_size: 200,
        filter: "skill = cooking".into(),
        ..Default::default()
    };
    let cooks = client.list_volunteers(with_token(cooks, &admin())).await.expect("cooks").into_inner();
    assert!(!cooks.volunteers.is_empty() && cooks.volunteers.iter().all(|v| v.skills.contains(&"cooking".into())));
    app.stop().await;
}

#[tokio::test]
async fn a_volunteer_edits_their_profile_and_bad_input_changes_nothing() {
    let store = Store::fresh().await;
    let app = spawn_on(&store, Target::All, Options::default()).await;
    let channel: Channel = app.channel.clone();
    let mut client = VolunteerServiceClient::new(channel);
    let me = resident("res-zhou");
    let mine =
        client.create_volunteer(with_token(create(draft(EAST), "", ""), &me)).await.expect("register").into_inner();
    let update = |v: Volunteer, paths: &[&str]| UpdateVolunteerRequest {
        volunteer: Some(v),
        update_mask: Some(pbjson_types::FieldMask { paths: paths.iter().map(|p| (*p).to_owned()).collect() }),
        request_id: String::new(),
    };
    let changed = Volunteer {
        skills: vec!["tutoring".into()],
        availability: vec![WeeklyRange { weekday: 3, start_time: "19:00".into(), end_time: "21:00".into() }],
        ..mine.clone()
    };
    let after = client
        .update_volunteer(with_token(update(changed.clone(), &["skills", "availability"]), &me))
        .await
        .expect("update")
        .into_inner();
    assert_eq!((after.skills.clone(), after.availability.len()), (vec!["tutoring".to_owned()], 1));
    assert_ne!(after.etag, mine.etag);

    // Bad input names its field, and nothing changes.
    let cases: [(Volunteer, &[&str], &str); 5] = [
        (Volunteer { skills: vec!["juggling".into()], ..after.clone() }, &["skills"], "volunteer.skills"),
        (
            Volunteer {
                availability: vec![WeeklyRange { weekday: 3, start_time: "21:00".into(), end_time: "19:00".into() }],
                ..after.clone()
            },
            &["availability"],
            "volunteer.availability[0]",
        ),
        (Volunteer { display_name: " ".into(), ..after.clone() }, &["display_name"], "volunteer.display_name"),
        (
            Volunteer { registration_date: "2026-13-01".into(), ..after.clone() },
            &["registration_date"],
            "volunteer.registration_date",
        ),
        (after.clone(), &["state"], "update_mask"),
    ];
    for (sent, paths, field) in cases {
        let refused = client.update_volunteer(with_token(update(sent, paths), &me)).await.expect_err(field);
        assert_eq!(refused.code(), Code::InvalidArgument, "{field}");
        assert!(
            refused.message().contains(field) || format!("{:?}", refused.details()).contains(field),
            "{field}: {refused:?}"
        );
    }
    // A volunteer does not move themselves to another community; a stale etag is ABORTED.
    let moved = client
        .update_volunteer(with_token(
            update(Volunteer { community: WEST.into(), ..after.clone() }, &["community"]),
            &me,
        ))
        .await;
    assert_eq!(code(moved), Code::PermissionDenied);
    let stale = client
        .update_volunteer(with_token(update(Volunteer { etag: mine.etag.clone(), ..after.clone() }, &["skills"]), &me))
        .await;
    assert_eq!(code(stale), Code::Aborted);
    let now = client.get_volunteer(with_token(get(&mine.name), &me)).await.expect("get").into_inner();
    assert_eq!(now, after, "nothing changed");

    // The same over HTTP/JSON: registering, reading, and a field named in a 400.
    let wang = resident("res-wang");
    let body = r#"{"displayName":"王德明","kind":"SENIOR_PARTY_MEMBER","community":"streets/zhongjie/communities/dongyuan","skills":["mediation"]}"#;
    let (status, text) = http(app.http_addr, "POST", "/v1/streets/zhongjie/volunteers", &wang, Some(body)).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(r#""state":"PENDING""#) && text.contains("users/res-wang"), "{text}");
    let (status, text) = http(app.http_addr, "GET", "/v1/streets/zhongjie/volunteers/res-wang", &wang, None).await;
    assert_eq!(status, 200, "{text}");
    let bad = r#"{"displayName":"王","kind":"RESIDENT","community":"streets/elsewhere/communities/x"}"#;
    let (status, text) =
        http(app.http_addr, "POST", "/v1/streets/zhongjie/volunteers", &resident("res-ma"), Some(bad)).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("volunteer.community"), "{text}");
    let (status, _) = http(app.http_addr, "GET", "/v1/streets/zhongjie/volunteers/res-ma", &admin(), None).await;
    assert_eq!(status, 404, "nothing was written");
    app.stop().await;
}

fn stamp(t: chrono::DateTime<chrono::Utc>) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp { seconds: t.timestamp(), nanos: 0 }
}

/// An activity of `places` places in the east, from `hours` hours from now for two hours.
fn activity(places: i32, hours: i64) -> Need {
    let start = chrono::Utc::now() + chrono::Duration::hours(hours);
    Need {
        kind: civic_proto::volunteer::need::Kind::Activity as i32,
        title: "清理楼道杂物".into(),
        description: "3号楼楼道堆了很多纸箱".into(),
        community: EAST.into(),
        required_skills: vec!["cleaning".into()],
        start_time: Some(stamp(start)),
        end_time: Some(stamp(start + chrono::Duration::hours(2))),
        places,
        ..Default::default()
    }
}

fn place(need: Need) -> CreateNeedRequest {
    CreateNeedRequest { parent: STREET.into(), need: Some(need), request_id: String::new() }
}

fn claim(need: &str) -> ClaimNeedRequest {
    ClaimNeedRequest { name: need.into(), request_id: String::new() }
}

#[tokio::test]
async fn volunteers_take_the_places_of_needs_and_never_more_than_there_are() {
    use civic_proto::volunteer::need::State as NeedState;
    let store = Store::fresh().await;
    let app = spawn_on(&store, Target::All, Options::default()).await;
    let mut client = VolunteerServiceClient::new(app.channel.clone());
    let east = cadre_of("dongyuan");
    for n in 0..50 {
        let request = create(draft(EAST), &format!("v{n:02}"), "");
        client.create_volunteer(with_token(request, &east)).await.expect("a volunteer");
    }
    let short = Volunteer { monthly_hours_cap: 1, ..draft(EAST) };
    client.create_volunteer(with_token(create(short, "v-short", ""), &east)).await.expect("a volunteer of one hour");
    client.create_volunteer(with_token(create(draft(EAST), "", ""), &resident("res-pending"))).await.expect("pending");
    let volunteer = |n: usize| token(&format!("v{n:02}"), &[Role::Resident], "zhongjie");

    // A resident places an activity of three places.
    let li = resident("res-li");
    let need = client.create_need(with_token(place(activity(3, 24)), &li)).await.expect("placed").into_inner();
    assert_eq!((need.state(), need.claimed, need.places), (NeedState::Open, 0, 3));
    assert_eq!((need.resident.as_str(), need.placed_by.as_str()), ("users/res-li", "users/res-li"));

    // Fifty claims at once take exactly three places.
    let attempts: Vec<_> = (0..50)
        .map(|n| {
            let (mut client, token, name) = (client.clone(), volunteer(n), need.name.clone());
            tokio::spawn(async move { client.claim_need(with_token(claim(&name), &token)).await.map(|_| n) })
        })
        .collect();
    let (mut won, mut lost) = (Vec::new(), Vec::new());
    for attempt in attempts {
        match attempt.await.expect("join") {
            Ok(n) => won.push(n),
            Err(status) => {
                assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                lost.push(status);
            }
        }
    }
    assert_eq!(won.len(), 3, "{lost:?}");
    let seen = client.get_need(with_token(GetNeedRequest { name: need.name.clone() }, &li)).await.expect("get");
    assert_eq!((seen.get_ref().state(), seen.get_ref().claimed), (NeedState::Claimed, 3));

    // A pending registration, or none, takes nothing.
    assert_eq!(
        code(client.claim_need(with_token(claim(&need.name), &resident("res-pending"))).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(client.claim_need(with_token(claim(&need.name), &resident("res-none"))).await),
        Code::PermissionDenied
    );

    // A place given back is open again, and taken again.
    let first = volunteer(won[0]);
    let released = ReleaseNeedRequest { name: need.name.clone(), request_id: String::new() };
    assert!(!client.release_need(with_token(released.clone(), &first)).await.expect("release").into_inner().active);
    assert_eq!(code(client.release_need(with_token(released.clone(), &first)).await), Code::FailedPrecondition);
    let again = client.get_need(with_token(GetNeedRequest { name: need.name.clone() }, &li)).await.expect("get");
    assert_eq!((again.get_ref().state(), again.get_ref().claimed), (NeedState::Open, 2));
    let late = (0..50).find(|n| !won.contains(n)).expect("one who lost");
    client.claim_need(with_token(claim(&need.name), &volunteer(late))).await.expect("the place given back");

    // Who sees the need: the resident, staff of its community, an admin, volunteers holding a
    // place; not another resident, not another community's cadre.
    let get = |token: &str| with_token(GetNeedRequest { name: need.name.clone() }, token);
    client.get_need(get(&east)).await.expect("the community's cadre");
    client.get_need(get(&admin())).await.expect("an admin");
    client.get_need(get(&volunteer(late))).await.expect("a volunteer holding a place");
    assert_eq!(code(client.get_need(get(&resident("res-wang"))).await), Code::PermissionDenied);
    assert_eq!(code(client.get_need(get(&cadre_of("xiyuan"))).await), Code::PermissionDenied);
    // An approved volunteer lists the street's open needs; another resident sees none of them.
    let second = client.create_need(with_token(place(activity(1, 72)), &li)).await.expect("another").into_inner();
    let list = |token: &str| {
        with_token(ListNeedsRequest { parent: STREET.into(), page_size: 50, ..Default::default() }, token)
    };
    let open = client.list_needs(list(&volunteer(won[0]))).await.expect("open needs").into_inner();
    assert!(open.needs.iter().any(|n| n.name == second.name), "{open:?}");
    let wang = client.list_needs(list(&resident("res-wang"))).await.expect("list").into_inner();
    assert!(wang.needs.is_empty(), "{wang:?}");
    let mine = client.list_needs(list(&li)).await.expect("own").into_inner();
    assert_eq!(mine.needs.len(), 2);

    // Within the monthly cap, and never twice at once.
    let over =
        client.claim_need(with_token(claim(&second.name), &token("v-short", &[Role::Resident], "zhongjie"))).await;
    let over = over.expect_err("two hours past a cap of one");
    assert_eq!(over.code(), Code::FailedPrecondition);
    assert!(over.message().contains("cap"), "{over:?}");
    let overlapping =
        client.create_need(with_token(place(activity(2, 25)), &li)).await.expect("overlapping").into_inner();
    let twice = client.claim_need(with_token(claim(&overlapping.name), &volunteer(late))).await;
    let twice = twice.expect_err("booked at that time");
    assert_eq!(twice.code(), Code::FailedPrecondition);

    // Bad input names its field and places nothing.
    let backwards =
        Need { end_time: activity(1, 24).start_time, start_time: activity(1, 26).start_time, ..activity(1, 24) };
    let unknown = Need { required_skills: vec!["juggling".into()], ..activity(1, 24) };
    let elsewhere = Need { community: "streets/elsewhere/communities/x".into(), ..activity(1, 24) };
    for (need, field) in
        [(backwards, "need.end_time"), (unknown, "need.required_skills"), (elsewhere, "need.community")]
    {
        let refused = client.create_need(with_token(place(need), &li)).await.expect_err(field);
        assert_eq!(refused.code(), Code::InvalidArgument, "{field}");
        assert!(format!("{:?}", refused.details()).contains(field) || refused.message().contains(field), "{field}");
    }
    assert_eq!(client.list_needs(list(&li)).await.expect("own").into_inner().needs.len(), 3, "nothing more placed");

    // Over HTTP/JSON: a volunteer takes the second need's place; the need is then full (400).
    let path = format!("/v1/{}:claim", second.name);
    let (status, text) = http(app.http_addr, "POST", &path, &volunteer(won[1]), Some("{}")).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(r#""active":true"#), "{text}");
    let (status, text) = http(app.http_addr, "POST", &path, &volunteer(late), Some("{}")).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("NEED_FULL"), "{text}");
    app.stop().await;
}

#[tokio::test]
async fn a_task_done_and_confirmed_by_both_sides_earns_points_once() {
    let store = Store::fresh().await;
    let app = spawn_on(&store, Target::All, Options::default()).await;
    let mut client = VolunteerServiceClient::new(app.channel.clone());
    let east = cadre_of("dongyuan");
    client.create_volunteer(with_token(create(draft(EAST), "v-zhang", ""), &east)).await.expect("a volunteer");
    let zhang = token("v-zhang", &[Role::Resident], "zhongjie");
    let li = resident("res-li");
    // A need that starts now, and one tomorrow.
    let soon = client.create_need(with_token(place(activity(1, 0)), &li)).await.expect("soon").into_inner();
    let later = client.create_need(with_token(place(activity(1, 24)), &li)).await.expect("later").into_inner();
    for need in [&soon, &later] {
        client.claim_need(with_token(claim(&need.name), &zhang)).await.expect("a place");
    }
    let check_in = |need: &str| CheckInRequest { name: need.into(), request_id: String::new() };
    let early = client.check_in(with_token(check_in(&later.name), &zhang)).await.expect_err("a day early");
    assert_eq!((early.code(), early.message().contains("hour before")), (Code::FailedPrecondition, true));
    let stranger = client.check_in(with_token(check_in(&soon.name), &resident("res-wang"))).await;
    assert_eq!(code(stranger), Code::FailedPrecondition, "no place of theirs");

    let task = client.check_in(with_token(check_in(&soon.name), &zhang)).await.expect("in").into_inner();
    assert!(task.check_in_time.is_some() && task.check_out_time.is_none());
    let confirm = |volunteer: &str| ConfirmTaskRequest {
        name: soon.name.clone(),
        volunteer: volunteer.into(),
        request_id: String::new(),
        rating: 0,
    };
    let state = async |client: &mut VolunteerServiceClient<Channel>| {
        let get = GetNeedRequest { name: soon.name.clone() };
        client.get_need(with_token(get, &admin())).await.expect("the need").into_inner().state()
    };
    use civic_proto::volunteer::need::State as NeedState;
    assert_eq!(state(&mut client).await, NeedState::InProgress);
    let too_soon = client.confirm_task(with_token(confirm(""), &zhang)).await;
    assert_eq!(code(too_soon), Code::FailedPrecondition, "not checked out yet");
    let out = CheckOutRequest { name: soon.name.clone(), request_id: String::new() };
    let done = client.check_out(with_token(out, &zhang)).await.expect("out").into_inner();
    assert_eq!(done.minutes, 1, "a minute at least");
    assert_eq!(state(&mut client).await, NeedState::Done);

    // The volunteer confirms; another resident may not confirm for the resident.
    let own_rating = client.confirm_task(with_token(ConfirmTaskRequest { rating: 5, ..confirm("") }, &zhang)).await;
    assert_eq!(code(own_rating), Code::InvalidArgument, "a volunteer does not rate their own task");
    let mine = client.confirm_task(with_token(confirm(""), &zhang)).await.expect("volunteer").into_inner();
    assert!(mine.volunteer_confirmed && mine.confirm_time.is_none() && mine.points == 0);
    let volunteer = "streets/zhongjie/volunteers/v-zhang";
    assert_eq!(
        code(client.confirm_task(with_token(confirm(volunteer), &resident("res-wang"))).await),
        Code::PermissionDenied
    );
    // The resident confirms: the minute counts and the points are earned (8 an hour for an
    // activity: one minute rounds up to one point), once.
    let rated = ConfirmTaskRequest { rating: 6, ..confirm(volunteer) };
    assert_eq!(code(client.confirm_task(with_token(rated, &li)).await), Code::InvalidArgument, "1 to 5");
    let rated = ConfirmTaskRequest { rating: 4, ..confirm(volunteer) };
    let both = client.confirm_task(with_token(rated, &li)).await.expect("resident").into_inner();
    assert_eq!((both.resident_confirmed_by.as_str(), both.points, both.rating), ("users/res-li", 1, 4));
    assert_eq!(state(&mut client).await, NeedState::Confirmed);
    // The event says so once, with the minutes and the rating (the assessment's satisfaction).
    let url = common::test_config(&store).database_url_for("volunteer");
    let db = civic_kit::db::Db::connect(&url, "volunteer", 1).await.expect("db");
    let payloads: Vec<Vec<u8>> = sqlx::query_scalar("select payload from civic_outbox where topic = $1")
        .bind(<NeedConfirmed as civic_proto::Event>::TOPIC)
        .fetch_all(db.reader())
        .await
        .expect("outbox");
    let events: Vec<NeedConfirmed> =
        payloads.iter().map(|p| prost::Message::decode(p.as_slice()).expect("an event")).collect();
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].minutes, events[0].rating, events[0].need.as_str()), (1, 4, soon.name.as_str()));
    db.close().await;
    assert!(both.confirm_time.is_some());
    let again = client.confirm_task(with_token(confirm(volunteer), &east)).await.expect("again").into_inner();
    assert_eq!((again.points, again.resident_confirmed_by.as_str()), (1, "users/res-li"), "nothing more");

    // The moral bank: the volunteer's balance and statement; an admin's correction with a
    // reason, never below zero; who may read the account.
    let account = "streets/zhongjie/accounts/v-zhang";
    let balance = |token: &str| with_token(GetAccountRequest { name: account.into() }, token);
    assert_eq!(client.get_account(balance(&zhang)).await.expect("own").into_inner().balance, 1);
    let adjust = |points: i64, reason: &str| AdjustAccountRequest {
        name: account.into(),
        points,
        reason: reason.into(),
        request_id: String::new(),
    };
    let added = client.adjust_account(with_token(adjust(5, "补记三月清扫活动"), &admin())).await.expect("adjust");
    assert_eq!(added.into_inner().points, 5);
    assert_eq!(client.get_account(balance(&east)).await.expect("the community's cadre").into_inner().balance, 6);
    let below = client.adjust_account(with_token(adjust(-10, "多记"), &admin())).await.expect_err("below zero");
    assert_eq!(below.code(), Code::FailedPrecondition);
    let reasonless = client.adjust_account(with_token(adjust(1, ""), &admin())).await.expect_err("no reason");
    assert_eq!(reasonless.code(), Code::InvalidArgument);
    assert_eq!(code(client.adjust_account(with_token(adjust(1, "自己加"), &zhang)).await), Code::PermissionDenied);
    assert_eq!(code(client.get_account(balance(&resident("res-wang"))).await), Code::PermissionDenied);
    assert_eq!(code(client.get_account(balance(&cadre_of("xiyuan"))).await), Code::PermissionDenied);
    let local = chrono::Utc::now() + chrono::Duration::hours(8);
    let (year, month) = (chrono::Datelike::year(&local), chrono::Datelike::month(&local) as i32);
    let statement = |year: i32, month: i32| ListMovementsRequest {
        parent: account.into(),
        year,
        month,
        page_size: 1,
        ..Default::default()
    };
    let first =
        client.list_movements(with_token(statement(year, month), &zhang)).await.expect("statement").into_inner();
    assert_eq!(first.movements.len(), 1);
    assert_eq!(first.movements[0].kind(), civic_proto::volunteer::movement::Kind::Adjust, "newest first");
    let next = ListMovementsRequest { page_token: first.next_page_token.clone(), ..statement(year, month) };
    let second = client.list_movements(with_token(next, &zhang)).await.expect("page 2").into_inner();
    assert_eq!(second.movements[0].kind(), civic_proto::volunteer::movement::Kind::Earn);
    assert!(second.movements[0].source.ends_with("/claims/users/v-zhang"), "{:?}", second.movements[0]);
    let old = client.list_movements(with_token(statement(2020, 1), &zhang)).await.expect("old").into_inner();
    assert!(old.movements.is_empty());
    let all = client.list_movements(with_token(statement(0, 0), &zhang)).await.expect("all").into_inner();
    assert_eq!(all.movements.len(), 1, "a page of one");
    let outside = client.list_movements(with_token(statement(year, 13), &zhang)).await;
    assert_eq!(code(outside), Code::InvalidArgument, "month 13 is past the declared bound");

    // The reward catalogue: an admin offers, anyone of the street reads, a person redeems for
    // their own points (6 now), a cadre at the counter for their community's volunteer.
    let offer = |name: &str, points: i64, stock: i64| CreateRewardRequest {
        parent: STREET.into(),
        reward: Some(Reward {
            display_name: name.into(),
            offered_by: "惠民超市".into(),
            points,
            stock,
            ..Default::default()
        }),
        request_id: String::new(),
    };
    assert_eq!(code(client.create_reward(with_token(offer("食用油", 4, 1), &east)).await), Code::PermissionDenied);
    let bad = client.create_reward(with_token(offer(" ", 0, 1), &admin())).await.expect_err("bad");
    assert_eq!(bad.code(), Code::InvalidArgument);
    let oil = client.create_reward(with_token(offer("食用油", 4, 1), &admin())).await.expect("offered").into_inner();
    let soap = client.create_reward(with_token(offer("洗衣液", 2, 5), &admin())).await.expect("offered").into_inner();
    let rice = client.create_reward(with_token(offer("大米", 50, 5), &admin())).await.expect("offered").into_inner();
    let list =
        |show_withdrawn: bool| ListRewardsRequest { parent: STREET.into(), show_withdrawn, ..Default::default() };
    let seen = client.list_rewards(with_token(list(false), &resident("res-wang"))).await.expect("list").into_inner();
    assert_eq!(seen.rewards.len(), 3);
    let redeem = |reward: &str, person: &str| RedeemRewardRequest {
        name: reward.into(),
        person: person.into(),
        request_id: String::new(),
    };
    let paid = client.redeem_reward(with_token(redeem(&oil.name, ""), &zhang)).await.expect("redeemed").into_inner();
    assert_eq!((paid.points, paid.balance, paid.person.as_str()), (4, 2, "users/v-zhang"));
    let gone = client.redeem_reward(with_token(redeem(&oil.name, ""), &zhang)).await.expect_err("out of stock");
    assert_eq!(gone.code(), Code::FailedPrecondition);
    let dear = client.redeem_reward(with_token(redeem(&rice.name, ""), &zhang)).await.expect_err("too dear");
    assert_eq!(dear.code(), Code::FailedPrecondition);
    let stock = |reward: &str| with_token(GetRewardRequest { name: reward.into() }, &zhang);
    assert_eq!(client.get_reward(stock(&rice.name)).await.expect("rice").into_inner().stock, 5, "nothing taken");
    let west = client.redeem_reward(with_token(redeem(&soap.name, "users/v-zhang"), &cadre_of("xiyuan"))).await;
    assert_eq!(code(west), Code::PermissionDenied, "another community's cadre");
    let other = client.redeem_reward(with_token(redeem(&soap.name, "users/v-zhang"), &resident("res-wang"))).await;
    assert_eq!(code(other), Code::PermissionDenied, "another resident");
    let counter =
        client.redeem_reward(with_token(redeem(&soap.name, "users/v-zhang"), &east)).await.expect("at the counter");
    assert_eq!(counter.into_inner().balance, 0);
    assert_eq!(client.get_account(balance(&zhang)).await.expect("own").into_inner().balance, 0);
    // Withdrawn: no longer redeemed, listed for staff only.
    let withdraw = WithdrawRewardRequest { name: soap.name.clone(), request_id: String::new() };
    assert_eq!(code(client.withdraw_reward(with_token(withdraw.clone(), &east)).await), Code::PermissionDenied);
    let withdrawn = client.withdraw_reward(with_token(withdraw, &admin())).await.expect("withdrawn").into_inner();
    assert!(!withdrawn.offered);
    let after = client.redeem_reward(with_token(redeem(&soap.name, ""), &zhang)).await.expect_err("withdrawn");
    assert_eq!(after.code(), Code::FailedPrecondition);
    let seen = client.list_rewards(with_token(list(false), &zhang)).await.expect("list").into_inner();
    assert_eq!(seen.rewards.len(), 2);
    assert_eq!(code(client.list_rewards(with_token(list(true), &zhang)).await), Code::PermissionDenied);
    assert_eq!(client.list_rewards(with_token(list(true), &admin())).await.expect("all").into_inner().rewards.len(), 3);
    let missing = GetRewardRequest { name: format!("{STREET}/rewards/r-none") };
    assert_eq!(code(client.get_reward(with_token(missing, &zhang)).await), Code::NotFound);
    app.stop().await;
}

#[tokio::test]
async fn needs_are_called_off_with_a_notice_and_places_not_checked_in_are_given_back() {
    use civic_proto::volunteer::need::State as NeedState;
    let store = Store::fresh().await;
    let app = spawn_on(&store, Target::All, Options::default()).await;
    let mut client = VolunteerServiceClient::new(app.channel.clone());
    let east = cadre_of("dongyuan");
    for id in ["v-a", "v-b"] {
        client.create_volunteer(with_token(create(draft(EAST), id, ""), &east)).await.expect("a volunteer");
    }
    let (a, b) = (token("v-a", &[Role::Resident], "zhongjie"), token("v-b", &[Role::Resident], "zhongjie"));
    let li = resident("res-li");

    // Called off: by the resident it is for, with every place released and each volunteer told.
    let need = client.create_need(with_token(place(activity(2, 24)), &li)).await.expect("placed").into_inner();
    for volunteer in [&a, &b] {
        client.claim_need(with_token(claim(&need.name), volunteer)).await.expect("a place");
    }
    let cancel =
        |etag: &str| CancelNeedRequest { name: need.name.clone(), etag: etag.into(), request_id: String::new() };
    assert_eq!(code(client.cancel_need(with_token(cancel(""), &resident("res-wang"))).await), Code::PermissionDenied);
    assert_eq!(code(client.cancel_need(with_token(cancel(""), &a)).await), Code::PermissionDenied, "not a volunteer's");
    let stale = client.cancel_need(with_token(cancel(&need.etag), &li)).await.expect_err("changed since");
    assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
    let cancelled = client.cancel_need(with_token(cancel(""), &li)).await.expect("called off").into_inner();
    assert_eq!((cancelled.state(), cancelled.claimed), (NeedState::Cancelled, 0));
    let again = client.cancel_need(with_token(cancel(""), &east)).await.expect_err("once");
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert_eq!(code(client.claim_need(with_token(claim(&need.name), &a)).await), Code::FailedPrecondition);
    let missing = CancelNeedRequest { name: format!("{STREET}/needs/n-none"), ..cancel("") };
    assert_eq!(code(client.cancel_need(with_token(missing.clone(), &admin())).await), Code::NotFound);
    assert_eq!(code(client.cancel_need(with_token(missing, &li)).await), Code::PermissionDenied, "not told");

    // Given back: a need that started 40 minutes ago, with 30 minutes to check in; the sweep
    // (every second here) releases the place, and the need is open again.
    let mut late = activity(1, 0);
    let start = chrono::Utc::now() - chrono::Duration::minutes(40);
    late.start_time = Some(stamp(start));
    late.end_time = Some(stamp(start + chrono::Duration::hours(2)));
    let late = client.create_need(with_token(place(late), &li)).await.expect("placed").into_inner();
    let taken = client.claim_need(with_token(claim(&late.name), &b)).await.expect("a place").into_inner();
    assert!(taken.check_in_by.expect("a time").seconds < chrono::Utc::now().timestamp(), "already late");
    let get = || with_token(GetNeedRequest { name: late.name.clone() }, &admin());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let now = client.get_need(get()).await.expect("the need").into_inner();
        if now.claimed == 0 {
            assert_eq!(now.state(), NeedState::Open);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the stale place is given back within 20 s");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // The notices: each release and the closing are events, with no one's words in them.
    let url = common::test_config(&store).database_url_for("volunteer");
    let db = civic_kit::db::Db::connect(&url, "volunteer", 1).await.expect("db");
    let rows: Vec<(String, String, Vec<u8>)> =
        sqlx::query_as("select event_key, topic, payload from civic_outbox where topic in ($1, $2) order by id")
            .bind(<NeedReleased as civic_proto::Event>::TOPIC)
            .bind(<NeedClosed as civic_proto::Event>::TOPIC)
            .fetch_all(db.reader())
            .await
            .expect("outbox");
    let mut released = Vec::new();
    for (key, topic, payload) in &rows {
        if topic == <NeedReleased as civic_proto::Event>::TOPIC {
            let event = <NeedReleased as prost::Message>::decode(payload.as_slice()).expect("an event");
            released.push((key.clone(), event.volunteer, event.because));
        } else {
            let event = <NeedClosed as prost::Message>::decode(payload.as_slice()).expect("an event");
            assert_eq!((event.need.as_str(), event.state.as_str()), (need.name.as_str(), "CANCELLED"));
            assert_eq!(event.closed_by, "users/res-li");
        }
    }
    let (a_name, b_name) = ("streets/zhongjie/volunteers/v-a", "streets/zhongjie/volunteers/v-b");
    assert_eq!(
        released,
        vec![
            (need.name.clone(), a_name.to_owned(), "cancelled".to_owned()),
            (need.name.clone(), b_name.to_owned(), "cancelled".to_owned()),
            (late.name.clone(), b_name.to_owned(), "stale".to_owned()),
        ]
    );

    // Under way with a place free: still offered to volunteers, who see it and take it.
    let now = client.create_need(with_token(place(activity(2, 0)), &li)).await.expect("placed").into_inner();
    client.claim_need(with_token(claim(&now.name), &a)).await.expect("a place");
    let check_in = CheckInRequest { name: now.name.clone(), request_id: String::new() };
    client.check_in(with_token(check_in, &a)).await.expect("in");
    let listed = ListNeedsRequest { parent: STREET.into(), page_size: 200, ..Default::default() };
    let seen = client.list_needs(with_token(listed, &b)).await.expect("list").into_inner();
    let under_way = seen.needs.iter().find(|n| n.name == now.name).expect("offered while a place is free");
    assert_eq!((under_way.state(), under_way.claimed), (NeedState::InProgress, 1));
    client.claim_need(with_token(claim(&now.name), &b)).await.expect("the free place");
    app.stop().await;
}

#[tokio::test]
async fn staff_see_who_fits_a_need_and_assign_a_community_s_open_places_at_once() {
    use civic_proto::volunteer::need::State as NeedState;
    use civic_proto::volunteer::reason::Factor;
    let store = Store::fresh().await;
    let app = spawn_on(&store, Target::All, Options::default()).await;
    let mut client = VolunteerServiceClient::new(app.channel.clone());
    let east = cadre_of("dongyuan");
    // Four in the east: a cleaner near by, a cleaner far away, a cook, and a cleaner whose cap is
    // one hour (the needs take two); a cleaner in the west; a cleaner waiting for approval.
    let near = Point { latitude: 35.540, longitude: 106.660 };
    let far = Point { latitude: 35.560, longitude: 106.700 };
    let cleaner = |home: Point, cap: i32| Volunteer {
        skills: vec!["cleaning".into()],
        home: Some(home),
        monthly_hours_cap: cap,
        ..draft(EAST)
    };
    let registered = [
        ("v-near", cleaner(near, 20)),
        ("v-far", cleaner(far, 20)),
        ("v-cook", Volunteer { skills: vec!["cooking".into()], ..draft(EAST) }),
        ("v-capped", cleaner(near, 1)),
    ];
    for (id, v) in registered {
        client.create_volunteer(with_token(create(v, id, ""), &east)).await.expect("a volunteer");
    }
    let west = Volunteer { community: WEST.into(), ..cleaner(near, 20) };
    client.create_volunteer(with_token(create(west, "v-west", ""), &cadre_of("xiyuan"))).await.expect("west");
    let waiting = cleaner(near, 20);
    client.create_volunteer(with_token(create(waiting, "", ""), &resident("v-waiting"))).await.expect("pending");

    let li = resident("res-li");
    let mut first = activity(1, 48);
    first.place = Some(near);
    let first = client.create_need(with_token(place(first), &li)).await.expect("placed").into_inner();
    let recommend = |name: &str, size: i32| RecommendVolunteersRequest { name: name.into(), page_size: size };
    let answer =
        client.recommend_volunteers(with_token(recommend(&first.name, 0), &east)).await.expect("ranked").into_inner();
    let ranked: Vec<&str> = answer.recommendations.iter().map(|r| r.volunteer.as_str()).collect();
    assert_eq!(
        ranked,
        [
            "streets/zhongjie/volunteers/v-near",
            "streets/zhongjie/volunteers/v-far",
            "streets/zhongjie/volunteers/v-cook"
        ],
        "the community's approved volunteers within their cap, best first"
    );
    assert_eq!(answer.considered, 4);
    let best = &answer.recommendations[0];
    let factors: Vec<Factor> = best.reasons.iter().map(|r| r.factor()).collect();
    assert_eq!(factors, [Factor::Skills, Factor::Availability, Factor::Distance, Factor::Load, Factor::Continuity]);
    assert_eq!(best.reasons[0].detail, "1 of 1 skills");
    assert!(
        best.score > answer.recommendations[1].score
            && answer.recommendations[1].score > answer.recommendations[2].score
    );
    let top = client.recommend_volunteers(with_token(recommend(&first.name, 1), &admin())).await.expect("admin");
    assert_eq!(top.into_inner().recommendations.len(), 1);
    for refused in [cadre_of("xiyuan"), li.clone(), token("v-near", &[Role::Resident], "zhongjie")] {
        let answer = client.recommend_volunteers(with_token(recommend(&first.name, 0), &refused)).await;
        assert_eq!(code(answer), Code::PermissionDenied);
    }
    let negative = client.recommend_volunteers(with_token(recommend(&first.name, -1), &east)).await;
    assert_eq!(code(negative), Code::InvalidArgument);
    let missing = recommend(&format!("{STREET}/needs/n-none"), 0);
    assert_eq!(code(client.recommend_volunteers(with_token(missing, &admin())).await), Code::NotFound);

    // A second need of two places at the same time, and a third the day after: one batch.
    let second = client.create_need(with_token(place(activity(2, 48)), &li)).await.expect("placed").into_inner();
    let third = client.create_need(with_token(place(activity(1, 72)), &li)).await.expect("placed").into_inner();
    let assign = AssignNeedsRequest { community: EAST.into(), deadline_ms: 0 };
    assert_eq!(
        code(client.assign_needs(with_token(assign.clone(), &cadre_of("xiyuan"))).await),
        Code::PermissionDenied
    );
    let proposal = client.assign_needs(with_token(assign.clone(), &east)).await.expect("a proposal").into_inner();
    assert_eq!((proposal.needs, proposal.places, proposal.volunteers), (3, 4, 3), "{proposal:?}");
    // Three volunteers for the three places at the same time, and one of them again the day
    // after: every place filled, no one twice at once.
    assert_eq!(proposal.filled, 4, "{proposal:?}");
    assert!(proposal.optimal);
    assert!(proposal.total_cost <= proposal.greedy_cost || proposal.filled > proposal.greedy_filled);
    let at_once: Vec<&str> = proposal
        .assignments
        .iter()
        .filter(|a| a.need == first.name || a.need == second.name)
        .map(|a| a.volunteer.as_str())
        .collect();
    let unique: std::collections::HashSet<&&str> = at_once.iter().collect();
    assert_eq!(unique.len(), at_once.len(), "no one in two places at once: {proposal:?}");
    let total: i64 = proposal.assignments.iter().map(|a| a.cost).sum();
    assert_eq!(total, proposal.total_cost);

    // Meanwhile the far cleaner takes the third need's place: confirming takes nothing and
    // names what was taken.
    let far_token = token("v-far", &[Role::Resident], "zhongjie");
    client.claim_need(with_token(claim(&third.name), &far_token)).await.expect("taken meanwhile");
    let confirm = |assignments: Vec<Assignment>| ConfirmAssignmentRequest {
        community: EAST.into(),
        assignments,
        request_id: String::new(),
    };
    let clash =
        Assignment { need: third.name.clone(), volunteer: "streets/zhongjie/volunteers/v-cook".into(), cost: 0 };
    let mut with_clash = proposal.assignments.clone();
    with_clash.retain(|a| a.need != third.name);
    with_clash.push(clash);
    let refused = client.confirm_assignment(with_token(confirm(with_clash), &east)).await.expect_err("taken");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains(&third.name), "{}", refused.message());
    let get = |name: &str| with_token(GetNeedRequest { name: name.into() }, &admin());
    assert_eq!(client.get_need(get(&first.name)).await.expect("need").into_inner().claimed, 0, "nothing taken");

    // Proposed again and confirmed: every place of the proposal is taken.
    let proposal = client.assign_needs(with_token(assign, &admin())).await.expect("a proposal").into_inner();
    assert!(proposal.assignments.iter().all(|a| a.need != third.name), "the third need is full");
    let confirmed = client
        .confirm_assignment(with_token(confirm(proposal.assignments.clone()), &east))
        .await
        .expect("confirmed")
        .into_inner();
    assert_eq!(confirmed.claims.len(), proposal.assignments.len());
    assert_eq!(client.get_need(get(&first.name)).await.expect("need").into_inner().state(), NeedState::Claimed);
    // A cadre assigns only their own community's volunteers, and bad input changes nothing.
    let outsider =
        Assignment { need: second.name.clone(), volunteer: "streets/zhongjie/volunteers/v-west".into(), cost: 0 };
    assert_eq!(
        code(client.confirm_assignment(with_token(confirm(vec![outsider]), &east)).await),
        Code::PermissionDenied
    );
    assert_eq!(code(client.confirm_assignment(with_token(confirm(vec![]), &east)).await), Code::InvalidArgument);
    let twice =
        Assignment { need: second.name.clone(), volunteer: "streets/zhongjie/volunteers/v-far".into(), cost: 0 };
    let answer = client.confirm_assignment(with_token(confirm(vec![twice.clone(), twice]), &east)).await;
    assert_eq!(code(answer), Code::InvalidArgument);
    app.stop().await;
}

#[tokio::test]
async fn the_alliance_s_organisations_are_registered_and_named_by_their_volunteers() {
    use civic_proto::volunteer::organisation::{Kind as OrgKind, Stage};
    let store = Store::fresh().await;
    let app = spawn_on(&store, Target::All, Options::default()).await;
    let mut client = VolunteerServiceClient::new(app.channel.clone());
    let charity = Organisation {
        display_name: "绿益童心公益联盟".into(),
        kind: OrgKind::Charity as i32,
        community: EAST.into(),
        projects: vec![Project { title: "绿益童心".into(), skills: vec!["tutoring".into()], ..Default::default() }],
        stations: vec![Station {
            display_name: "七彩志愿者服务站".into(),
            community: EAST.into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let create = |o: Organisation| CreateOrganisationRequest {
        parent: STREET.into(),
        organisation: Some(o),
        request_id: String::new(),
    };
    let refused = client.create_organisation(with_token(create(charity.clone()), &cadre_of("xiyuan"))).await;
    assert_eq!(code(refused), Code::PermissionDenied, "another community's cadre");
    let resident_try = client.create_organisation(with_token(create(charity.clone()), &resident("res-li"))).await;
    assert_eq!(code(resident_try), Code::PermissionDenied);
    let bad = Organisation {
        kind: 0,
        projects: vec![Project { title: " ".into(), skills: vec!["juggling".into()], ..Default::default() }],
        ..charity.clone()
    };
    let bad = client.create_organisation(with_token(create(bad), &admin())).await.expect_err("bad");
    assert_eq!(bad.code(), Code::InvalidArgument);
    let details = tonic_types::StatusExt::get_error_details(&bad);
    let violations = details.bad_request().expect("field violations").field_violations.clone();
    for field in ["organisation.kind", "organisation.projects[0].title", "organisation.projects[0].skills"] {
        assert!(violations.iter().any(|v| v.field == field), "{field} not in {violations:?}");
    }
    let made = client
        .create_organisation(with_token(create(charity), &cadre_of("dongyuan")))
        .await
        .expect("made")
        .into_inner();
    assert_eq!(made.stage(), Stage::Incubating, "incubating until said otherwise");
    let mediation =
        Organisation {
            display_name: "和事佬调解工作室".into(), kind: OrgKind::Mediation as i32, ..Default::default()
        };
    client.create_organisation(with_token(create(mediation), &admin())).await.expect("the street's own");

    // Anyone of the street reads them; a filter by kind.
    let list =
        |filter: &str| ListOrganisationsRequest { parent: STREET.into(), filter: filter.into(), ..Default::default() };
    let all = client.list_organisations(with_token(list(""), &resident("res-li"))).await.expect("list").into_inner();
    assert_eq!(all.organisations.len(), 2);
    let charities =
        client.list_organisations(with_token(list("kind = CHARITY"), &resident("res-li"))).await.expect("list");
    assert_eq!(charities.into_inner().organisations, vec![made.clone()]);
    let other_street = token("someone", &[Role::Resident], "xijie");
    let get = GetOrganisationRequest { name: made.name.clone() };
    assert_eq!(code(client.get_organisation(with_token(get, &other_street)).await), Code::PermissionDenied);

    // Incubated: its community's cadre says so.
    let update = |stage: Stage, etag: &str| UpdateOrganisationRequest {
        organisation: Some(Organisation {
            name: made.name.clone(),
            stage: stage as i32,
            etag: etag.into(),
            ..Default::default()
        }),
        update_mask: Some(pbjson_types::FieldMask { paths: vec!["stage".into()] }),
        request_id: String::new(),
    };
    assert_eq!(
        code(client.update_organisation(with_token(update(Stage::Incubated, ""), &cadre_of("xiyuan"))).await),
        Code::PermissionDenied
    );
    let done = client
        .update_organisation(with_token(update(Stage::Incubated, &made.etag), &cadre_of("dongyuan")))
        .await
        .expect("incubated")
        .into_inner();
    assert_eq!(done.stage(), Stage::Incubated);
    let stale = client.update_organisation(with_token(update(Stage::Incubating, &made.etag), &admin())).await;
    assert_eq!(code(stale), Code::Aborted);

    // A volunteer names an organisation of the street, never one that is not there.
    let member = Volunteer { kind: Kind::OrganisationMember as i32, organisation: made.name.clone(), ..draft(EAST) };
    let registered =
        client.create_volunteer(with_token(create_volunteer(member.clone(), "v-member"), &cadre_of("dongyuan"))).await;
    assert_eq!(registered.expect("a member").into_inner().organisation, made.name);
    let nowhere = Volunteer { organisation: format!("{STREET}/organisations/o-none"), ..member.clone() };
    let answer =
        client.create_volunteer(with_token(create_volunteer(nowhere, "v-nowhere"), &cadre_of("dongyuan"))).await;
    assert_eq!(code(answer), Code::InvalidArgument);
    let malformed = Volunteer { organisation: "柳湖慈善协会".into(), ..member };
    let answer =
        client.create_volunteer(with_token(create_volunteer(malformed, "v-malformed"), &cadre_of("dongyuan"))).await;
    assert_eq!(code(answer), Code::InvalidArgument);
    app.stop().await;
}

fn create_volunteer(volunteer: Volunteer, id: &str) -> CreateVolunteerRequest {
    create(volunteer, id, "")
}

#[tokio::test]
async fn the_demo_street_has_organisations_rewards_needs_in_every_state_and_a_ledger_history() {
    use civic_proto::volunteer::need::State as NeedState;
    let store = Store::fresh().await;
    let app = spawn_on(&store, Target::All, Options { seed: true, ..Default::default() }).await;
    let mut client = VolunteerServiceClient::new(app.channel.clone());
    let list = ListOrganisationsRequest { parent: STREET.into(), ..Default::default() };
    let organisations = client.list_organisations(with_token(list, &admin())).await.expect("list").into_inner();
    assert_eq!(organisations.organisations.len(), 4);
    let rewards = ListRewardsRequest { parent: STREET.into(), page_size: 50, ..Default::default() };
    assert_eq!(client.list_rewards(with_token(rewards, &admin())).await.expect("list").into_inner().rewards.len(), 6);
    let mut states = std::collections::BTreeMap::new();
    let mut page_token = String::new();
    let mut households = 0;
    loop {
        let request = ListNeedsRequest { parent: STREET.into(), page_size: 200, page_token, ..Default::default() };
        let page = client.list_needs(with_token(request, &admin())).await.expect("needs").into_inner();
        for need in &page.needs {
            *states.entry(need.state().as_str_name()).or_insert(0) += 1;
            // For the grid service's demo households.
            if !need.household.is_empty() {
                assert!(need.household.starts_with("streets/zhongjie/households/h000"), "{need:?}");
                households += 1;
            }
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    for state in [
        NeedState::Open,
        NeedState::Claimed,
        NeedState::Done,
        NeedState::Confirmed,
        NeedState::Cancelled,
        NeedState::Expired,
    ] {
        assert!(states.contains_key(state.as_str_name()), "a need {}: {states:?}", state.as_str_name());
    }
    assert_eq!(states.values().sum::<i32>(), 60);
    assert!(households > 0, "needs of households");
    // Somebody earned points and spent some.
    let mut earned_and_spent = false;
    for n in 0..60 {
        let account = format!("{STREET}/accounts/vol-{n:04}");
        let request = ListMovementsRequest { parent: account, page_size: 50, ..Default::default() };
        let kinds: Vec<_> = client
            .list_movements(with_token(request, &admin()))
            .await
            .expect("statement")
            .into_inner()
            .movements
            .iter()
            .map(|m| m.kind())
            .collect();
        if kinds.contains(&civic_proto::volunteer::movement::Kind::Earn)
            && kinds.contains(&civic_proto::volunteer::movement::Kind::Redeem)
        {
            earned_and_spent = true;
            break;
        }
    }
    assert!(earned_and_spent, "a demo volunteer with earnings and a redemption");
    app.stop().await;

    // Seeding again adds nothing.
    let again = spawn_on(&store, Target::All, Options { seed: true, ..Default::default() }).await;
    let mut client = VolunteerServiceClient::new(again.channel.clone());
    let request = ListNeedsRequest { parent: STREET.into(), page_size: 200, ..Default::default() };
    assert_eq!(client.list_needs(with_token(request, &admin())).await.expect("needs").into_inner().needs.len(), 60);
    again.stop().await;
}

#[tokio::test]
async fn the_quarterly_report_tells_an_employer_what_its_party_members_did_also_as_csv() {
    let store = Store::fresh().await;
    let app = spawn_on(&store, Target::All, Options::default()).await;
    let mut client = VolunteerServiceClient::new(app.channel.clone());
    let east = cadre_of("dongyuan");
    let member = |employer: &str| Volunteer {
        kind: Kind::InServicePartyMember as i32,
        employer: employer.into(),
        registration_date: "2026-03-01".into(),
        ..draft(EAST)
    };
    client.create_volunteer(with_token(create(member("平凉市税务局"), "pm-wang", ""), &east)).await.expect("wang");
    client
        .create_volunteer(with_token(create(member("=cmd|' /C calc'!A0"), "pm-zhao", ""), &east))
        .await
        .expect("zhao");
    client.create_volunteer(with_token(create(draft(EAST), "v-resident", ""), &east)).await.expect("a resident");
    let wang = token("pm-wang", &[Role::Resident], "zhongjie");
    let li = resident("res-li");
    let need = client.create_need(with_token(place(activity(1, 0)), &li)).await.expect("placed").into_inner();
    client.claim_need(with_token(claim(&need.name), &wang)).await.expect("a place");
    client
        .check_in(with_token(CheckInRequest { name: need.name.clone(), request_id: String::new() }, &wang))
        .await
        .expect("in");
    client
        .check_out(with_token(CheckOutRequest { name: need.name.clone(), request_id: String::new() }, &wang))
        .await
        .expect("out");
    let confirm = |volunteer: &str, rating: i32| ConfirmTaskRequest {
        name: need.name.clone(),
        volunteer: volunteer.into(),
        request_id: String::new(),
        rating,
    };
    client.confirm_task(with_token(confirm("", 0), &wang)).await.expect("volunteer");
    client.confirm_task(with_token(confirm("streets/zhongjie/volunteers/pm-wang", 5), &li)).await.expect("resident");

    let local = chrono::Utc::now() + chrono::Duration::hours(8);
    let (year, quarter) = (chrono::Datelike::year(&local), (chrono::Datelike::month(&local) as i32 - 1) / 3 + 1);
    let ask = |community: &str, employer: &str| GetServiceReportRequest {
        parent: STREET.into(),
        year,
        quarter,
        community: community.into(),
        employer: employer.into(),
    };
    let report = client.get_service_report(with_token(ask("", ""), &east)).await.expect("report").into_inner();
    let rows: Vec<(&str, i32, i64, i32, f64)> =
        report.rows.iter().map(|r| (r.volunteer.as_str(), r.tasks, r.minutes, r.ratings, r.average_rating)).collect();
    assert_eq!(
        rows,
        [("streets/zhongjie/volunteers/pm-wang", 1, 1, 1, 5.0), ("streets/zhongjie/volunteers/pm-zhao", 0, 0, 0, 0.0),],
        "in-service Party members only, those who served nothing too"
    );
    let by_employer = client.get_service_report(with_token(ask("", "平凉市税务局"), &admin())).await.expect("report");
    assert_eq!(by_employer.into_inner().rows.len(), 1);
    let earlier = GetServiceReportRequest { year: 2025, ..ask("", "") };
    let empty = client.get_service_report(with_token(earlier, &east)).await.expect("report").into_inner();
    assert!(empty.rows.iter().all(|r| r.tasks == 0), "nothing served in 2025");
    assert_eq!(
        code(client.get_service_report(with_token(ask(EAST, ""), &cadre_of("xiyuan"))).await),
        Code::PermissionDenied
    );
    assert_eq!(code(client.get_service_report(with_token(ask("", ""), &wang)).await), Code::PermissionDenied);
    let bad = GetServiceReportRequest { quarter: 5, ..ask("", "") };
    assert_eq!(code(client.get_service_report(with_token(bad, &east)).await), Code::InvalidArgument);

    // The CSV file through the gateway: its media type, a header, a row each, a formula defused.
    let path = format!("/v1/streets/zhongjie/serviceReport:export?year={year}&quarter={quarter}");
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {east}\r\nConnection: close\r\n\r\n",
        addr = app.http_addr
    );
    let answer = common::exchange(app.http_addr, &head).await;
    let (headers, body) = answer.split_once("\r\n\r\n").expect("an answer");
    assert!(headers.starts_with("HTTP/1.1 200"), "{headers}");
    assert!(headers.to_ascii_lowercase().contains("content-type: text/csv; charset=utf-8"), "{headers}");
    assert!(body.contains("\u{feff}志愿者,姓名,工作单位"), "{body}");
    assert!(body.contains("streets/zhongjie/volunteers/pm-wang,李秀英,平凉市税务局,2026-03-01,"), "{body}");
    assert!(body.contains(",'=cmd|' /C calc'!A0,"), "a formula is text: {body}");
    let (status, _) = http(app.http_addr, "GET", &path, &wang, None).await;
    assert_eq!(status, 403);
    app.stop().await;
}

#[tokio::test]
async fn a_need_with_a_place_goes_in_the_grid_that_holds_it_and_its_worker_sees_it() {
    use civic_proto::grid::grid_service_client::GridServiceClient;
    let store = Store::fresh().await;
    let app = spawn_on(&store, Target::All, Options::default()).await;
    let mut grids = GridServiceClient::new(app.channel.clone());
    let community = civic_proto::grid::CreateCommunityRequest {
        parent: STREET.into(),
        community: Some(civic_proto::grid::Community { display_name: "定位社区".into(), ..Default::default() }),
        community_id: "lp".into(),
        request_id: String::new(),
    };
    grids.create_community(with_token(community, &admin())).await.expect("community");
    let grid = civic_proto::grid::CreateGridRequest {
        parent: format!("{STREET}/communities/lp"),
        grid: Some(civic_proto::grid::Grid {
            display_name: "定位网格".into(),
            boundary: r#"{"type":"Polygon","coordinates":[[[104,30],[104.1,30],[104.1,30.1],[104,30.1],[104,30]]]}"#
                .into(),
            ..Default::default()
        }),
        grid_id: "lp1".into(),
        request_id: String::new(),
    };
    grids.create_grid(with_token(grid, &admin())).await.expect("grid");
    let mut client = VolunteerServiceClient::new(app.channel.clone());
    let li = resident("res-li");
    let at = |latitude: f64, longitude: f64| Need {
        community: format!("{STREET}/communities/lp"),
        place: Some(Point { latitude, longitude }),
        ..activity(1, 24)
    };
    let inside = client.create_need(with_token(place(at(30.05, 104.05)), &li)).await.expect("placed").into_inner();
    assert_eq!(inside.grid, format!("{STREET}/communities/lp/grids/lp1"));
    let outside = client.create_need(with_token(place(at(31.0, 105.0)), &li)).await.expect("placed").into_inner();
    assert_eq!(outside.grid, "", "outside every grid: no grid");
    // The grid's worker sees the need placed in their grid.
    let worker = common::grid_token("gw-lp", "lp1");
    let seen = client.get_need(with_token(GetNeedRequest { name: inside.name.clone() }, &worker)).await;
    assert_eq!(seen.expect("the worker's need").into_inner().name, inside.name);
    assert_eq!(
        code(client.get_need(with_token(GetNeedRequest { name: outside.name }, &worker)).await),
        Code::PermissionDenied
    );
    app.stop().await;
}
