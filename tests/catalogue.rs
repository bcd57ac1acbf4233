//! The catalogue end to end, over real gRPC: the standard and custom methods, revisions,
//! search, pagination, invalid input, the watch stream (across replicas too) and who may do what.

mod common;

use std::time::Duration;

use civic::{Options, Target};
use civic_kit::auth::Role;
use civic_proto::catalogue::catalogue_service_client::CatalogueServiceClient;
use civic_proto::catalogue::service_item::{Category, HandlingMode, State};
use civic_proto::catalogue::watch_service_items_response::ChangeType;
use civic_proto::catalogue::*;
use common::{Store, spawn_app, spawn_on, token, with_token};
use tonic::Code;
use tonic::transport::Channel;

type Client = CatalogueServiceClient<Channel>;

const STREET: &str = "streets/zhongjie";

fn item(title: &str) -> ServiceItem {
    ServiceItem {
        title: title.into(),
        title_en: String::new(),
        category: Category::GovernmentAffairs as i32,
        handling_mode: HandlingMode::OnBehalf as i32,
        materials: vec![common::id_card()],
        steps: vec![Step {
            title: "受理".into(),
            actor: "社区受理窗口".into(),
            time_limit_days: 1,
            description: String::new(),
        }],
        promised_days: 5,
        legal_days: 10,
        ..Default::default()
    }
}

async fn create(client: &mut Client, admin: &str, id: &str, it: ServiceItem) -> ServiceItem {
    let request = CreateServiceItemRequest {
        parent: STREET.into(),
        service_item: Some(it),
        service_item_id: id.into(),
        request_id: String::new(),
    };
    client.create_service_item(with_token(request, admin)).await.expect("create").into_inner()
}

async fn publish(client: &mut Client, admin: &str, name: &str) -> ServiceItem {
    let request = PublishServiceItemRequest { name: name.into(), ..Default::default() };
    client.publish_service_item(with_token(request, admin)).await.expect("publish").into_inner()
}

#[tokio::test]
async fn an_item_goes_from_draft_to_published_to_retired_keeping_its_revisions() {
    let (app, _store) = spawn_app().await;
    let mut client = Client::new(app.channel.clone());
    let admin = token("a", &[Role::Admin], "zhongjie");

    let draft = create(&mut client, &admin, "residence-permit", item("居住证办理")).await;
    assert_eq!(draft.name, "streets/zhongjie/items/residence-permit");
    assert_eq!(draft.state, State::Draft as i32);
    assert_eq!(draft.revision, 0);
    assert!(!draft.etag.is_empty() && draft.create_time.is_some());

    // The public cannot see a draft; it is as if it did not exist.
    let err =
        client.get_service_item(GetServiceItemRequest { name: draft.name.clone() }).await.expect_err("draft hidden");
    assert_eq!(err.code(), Code::NotFound);

    let published = publish(&mut client, &admin, &draft.name).await;
    assert_eq!((published.state, published.revision), (State::Published as i32, 1));
    let public = client.get_service_item(GetServiceItemRequest { name: draft.name.clone() }).await.expect("public");
    assert_eq!(public.into_inner().title, "居住证办理");

    // A change with a stale etag is refused; with the current one it makes revision 2.
    let mut patch = ServiceItem {
        name: draft.name.clone(),
        title: "居住证办理（新）".into(),
        etag: draft.etag.clone(),
        ..Default::default()
    };
    let update = |patch: &ServiceItem| UpdateServiceItemRequest {
        service_item: Some(patch.clone()),
        update_mask: Some(pbjson_types::FieldMask { paths: vec!["title".into()] }),
        request_id: String::new(),
    };
    let err = client.update_service_item(with_token(update(&patch), &admin)).await.expect_err("stale etag");
    assert_eq!(err.code(), Code::Aborted);
    patch.etag = published.etag.clone();
    let changed = client.update_service_item(with_token(update(&patch), &admin)).await.expect("update").into_inner();
    assert_eq!(
        (changed.title.as_str(), changed.revision, changed.state),
        ("居住证办理（新）", 2, State::Published as i32)
    );
    assert_eq!(changed.materials.len(), 1, "fields outside the mask are kept");

    // State is output only: Update cannot change it.
    let sneaky = UpdateServiceItemRequest {
        service_item: Some(ServiceItem {
            name: draft.name.clone(),
            state: State::Retired as i32,
            ..Default::default()
        }),
        update_mask: Some(pbjson_types::FieldMask { paths: vec!["state".into()] }),
        request_id: String::new(),
    };
    let err = client.update_service_item(with_token(sneaky, &admin)).await.expect_err("state via update");
    assert_eq!(err.code(), Code::InvalidArgument);

    let retired = client
        .retire_service_item(with_token(
            RetireServiceItemRequest { name: draft.name.clone(), ..Default::default() },
            &admin,
        ))
        .await
        .expect("retire")
        .into_inner();
    assert_eq!((retired.state, retired.revision), (State::Retired as i32, 2));
    let err = client
        .retire_service_item(with_token(
            RetireServiceItemRequest { name: draft.name.clone(), ..Default::default() },
            &admin,
        ))
        .await
        .expect_err("retire twice");
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = client
        .delete_service_item(with_token(
            DeleteServiceItemRequest { name: draft.name.clone(), ..Default::default() },
            &admin,
        ))
        .await
        .expect_err("published items are kept");
    assert_eq!(err.code(), Code::FailedPrecondition);

    let revisions = client
        .list_service_item_revisions(with_token(
            ListServiceItemRevisionsRequest { name: draft.name.clone(), page_size: 1, page_token: String::new() },
            &admin,
        ))
        .await
        .expect("revisions")
        .into_inner();
    assert_eq!(revisions.revisions[0].name, format!("{}/revisions/2", draft.name));
    let older = client
        .list_service_item_revisions(with_token(
            ListServiceItemRevisionsRequest {
                name: draft.name.clone(),
                page_size: 1,
                page_token: revisions.next_page_token,
            },
            &admin,
        ))
        .await
        .expect("older revisions")
        .into_inner();
    let first = older.revisions[0].service_item.as_ref().expect("item");
    assert_eq!((first.revision, first.title.as_str()), (1, "居住证办理"), "revision 1 keeps the old title");
    assert!(older.next_page_token.is_empty());

    // A draft can be deleted.
    let doomed = create(&mut client, &admin, "doomed", item("临时事项")).await;
    client
        .delete_service_item(with_token(
            DeleteServiceItemRequest { name: doomed.name.clone(), ..Default::default() },
            &admin,
        ))
        .await
        .expect("delete draft");
    let err = client
        .get_service_item(with_token(GetServiceItemRequest { name: doomed.name }, &admin))
        .await
        .expect_err("deleted");
    assert_eq!(err.code(), Code::NotFound);
    app.stop().await;
}

#[tokio::test]
async fn invalid_input_names_the_field_and_writes_nothing() {
    let (app, _store) = spawn_app().await;
    let mut client = Client::new(app.channel.clone());
    let admin = token("a", &[Role::Admin], "zhongjie");
    let mut negative = item("x");
    negative.materials[0].copies = -1;
    let cases: Vec<(&str, CreateServiceItemRequest)> = vec![
        (
            "service_item.title",
            CreateServiceItemRequest { parent: STREET.into(), service_item: Some(item("")), ..Default::default() },
        ),
        (
            "service_item.category",
            CreateServiceItemRequest {
                parent: STREET.into(),
                service_item: Some(ServiceItem { category: 99, ..item("x") }),
                ..Default::default()
            },
        ),
        (
            "service_item.materials[0].copies",
            CreateServiceItemRequest { parent: STREET.into(), service_item: Some(negative), ..Default::default() },
        ),
        (
            "parent",
            CreateServiceItemRequest {
                parent: "streets/Zhong Jie".into(),
                service_item: Some(item("x")),
                ..Default::default()
            },
        ),
        (
            "service_item_id",
            CreateServiceItemRequest {
                parent: STREET.into(),
                service_item: Some(item("x")),
                service_item_id: "Bad_Id".into(),
                ..Default::default()
            },
        ),
    ];
    for (field, request) in cases {
        let err = client.create_service_item(with_token(request, &admin)).await.expect_err(field);
        assert_eq!(err.code(), Code::InvalidArgument, "{field}");
        let details = tonic_types::StatusExt::get_error_details(&err);
        let violations = details.bad_request().expect("field violations").field_violations.clone();
        assert!(violations.iter().any(|v| v.field == field), "{field} not in {violations:?}");
        assert_eq!(details.error_info().expect("error info").reason, "INVALID_ARGUMENT");
    }
    let err = client
        .list_service_items(ListServiceItemsRequest { parent: STREET.into(), page_size: -1, ..Default::default() })
        .await
        .expect_err("negative page size");
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = client
        .get_service_item(GetServiceItemRequest { name: "streets/zhongjie/items".into() })
        .await
        .expect_err("malformed name");
    assert_eq!(err.code(), Code::InvalidArgument);
    let all = client
        .list_service_items(with_token(
            ListServiceItemsRequest { parent: STREET.into(), filter: "state = DRAFT".into(), ..Default::default() },
            &admin,
        ))
        .await
        .expect("list")
        .into_inner();
    assert!(all.service_items.is_empty(), "nothing was written");
    app.stop().await;
}

#[tokio::test]
async fn pagination_walks_500_items_without_gaps_or_repeats() {
    let (app, _store) = spawn_app().await;
    let mut client = Client::new(app.channel.clone());
    let admin = token("a", &[Role::Admin], "zhongjie");
    let mut expected = Vec::new();
    for i in 0..500 {
        let id = format!("item-{i:03}");
        create(&mut client, &admin, &id, item(&format!("事项 {i}"))).await;
        expected.push(format!("{STREET}/items/{id}"));
    }
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_service_items(with_token(
                ListServiceItemsRequest {
                    parent: STREET.into(),
                    page_size: 37,
                    page_token,
                    filter: "state = DRAFT".into(),
                },
                &admin,
            ))
            .await
            .expect("page")
            .into_inner();
        assert!(page.service_items.len() <= 37);
        seen.extend(page.service_items.into_iter().map(|i| i.name));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen, expected);
    app.stop().await;
}

#[tokio::test]
async fn search_finds_chinese_words_pinyin_initials_and_english_best_first() {
    let store = Store::fresh().await;
    let app = spawn_on(&store, Target::All, Options { seed: true, ..Default::default() }).await;
    let mut client = Client::new(app.channel.clone());
    let search =
        |query: &str| SearchServiceItemsRequest { parent: STREET.into(), query: query.into(), ..Default::default() };
    for (query, expected_title_part) in [
        ("低保", "最低生活保障"),
        ("居住", "居住证"),
        ("dibao", "最低生活保障"),
        ("db", "最低生活保障"),
        ("juzhu", "居住证"),
    ] {
        let found = client.search_service_items(search(query)).await.expect("search").into_inner();
        let first = found.service_items.first().unwrap_or_else(|| panic!("{query}: nothing found"));
        assert!(first.title.contains(expected_title_part), "{query}: best match was {}", first.title);
    }
    let english = client.search_service_items(search("residence permit")).await.expect("search").into_inner();
    assert!(
        english.service_items.first().is_some_and(|i| i.title.contains("居住证")),
        "{:?}",
        english.service_items.first().map(|i| &i.title)
    );
    let legal_only = client
        .search_service_items(SearchServiceItemsRequest { category: Category::Legal as i32, ..search("申请") })
        .await
        .expect("search")
        .into_inner();
    assert!(legal_only.service_items.iter().all(|i| i.category == Category::Legal as i32));
    let nothing = client.search_service_items(search("量子计算机")).await.expect("search").into_inner();
    assert!(nothing.service_items.is_empty());
    let err = client.search_service_items(search("  ")).await.expect_err("empty query");
    assert_eq!(err.code(), Code::InvalidArgument);
    app.stop().await;
}

async fn next_change(stream: &mut tonic::Streaming<WatchServiceItemsResponse>) -> WatchServiceItemsResponse {
    tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("a change arrives within 20 s")
        .expect("stream ok")
        .expect("stream open")
}

async fn watch_sees_changes_made_on(watch_on: Channel, change_on: Channel) {
    let mut watcher = Client::new(watch_on);
    let mut editor = Client::new(change_on);
    let admin = token("a", &[Role::Admin], "zhongjie");
    let existing = create(&mut editor, &admin, "existing", item("老年人优待证")).await;
    publish(&mut editor, &admin, &existing.name).await;

    let mut stream = watcher
        .watch_service_items(WatchServiceItemsRequest { parent: STREET.into() })
        .await
        .expect("watch")
        .into_inner();
    let first = next_change(&mut stream).await;
    assert_eq!(first.change_type, ChangeType::Existing as i32);
    assert_eq!(first.service_item.expect("item").name, existing.name);
    assert_eq!(next_change(&mut stream).await.change_type, ChangeType::Current as i32);

    let fresh = create(&mut editor, &admin, "fresh", item("高龄津贴申领")).await;
    publish(&mut editor, &admin, &fresh.name).await;
    let published = next_change(&mut stream).await;
    assert_eq!(published.change_type, ChangeType::Published as i32);
    assert_eq!(published.service_item.expect("item").name, fresh.name);

    client_retire(&mut editor, &admin, &existing.name).await;
    let retired = next_change(&mut stream).await;
    assert_eq!(retired.change_type, ChangeType::Retired as i32);
    assert_eq!(retired.service_item.expect("item").name, existing.name);
}

async fn client_retire(client: &mut Client, admin: &str, name: &str) {
    client
        .retire_service_item(with_token(RetireServiceItemRequest { name: name.into(), ..Default::default() }, admin))
        .await
        .expect("retire");
}

#[tokio::test]
async fn the_watch_stream_sends_the_catalogue_then_every_change() {
    let (app, _store) = spawn_app().await;
    watch_sees_changes_made_on(app.channel.clone(), app.channel.clone()).await;
    app.stop().await;
}

#[tokio::test]
async fn the_watch_stream_sees_changes_made_on_another_replica() {
    if std::env::var("CIVIC_TEST_NATS_URL").is_err() {
        eprintln!("skipped: replicas share events over NATS; set CIVIC_TEST_NATS_URL to run this test");
        return;
    }
    let store = Store::fresh().await;
    let a = spawn_on(&store, common::service("catalogue"), Options::default()).await;
    let b = spawn_on(&store, common::service("catalogue"), Options::default()).await;
    watch_sees_changes_made_on(a.channel.clone(), b.channel.clone()).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn the_seeded_catalogue_has_every_category() {
    let store = Store::fresh().await;
    let app = spawn_on(&store, Target::All, Options { seed: true, ..Default::default() }).await;
    let mut client = Client::new(app.channel.clone());
    for category in ["PARTY_MASS", "GOVERNMENT_AFFAIRS", "DAILY_LIFE", "VOLUNTEER", "CULTURE", "LEGAL"] {
        let page = client
            .list_service_items(ListServiceItemsRequest {
                parent: STREET.into(),
                filter: format!("category = {category}"),
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        assert!(page.service_items.len() >= 4, "{category}: {}", page.service_items.len());
        assert!(page.service_items.iter().all(|i| i.state == State::Published as i32 && !i.title_en.is_empty()));
    }
    app.stop().await;
}

#[tokio::test]
async fn a_replica_serves_its_own_changes_at_once_and_another_replicas_within_seconds() {
    let store = Store::fresh().await;
    let a = spawn_on(&store, common::service("catalogue"), Options::default()).await;
    let b = spawn_on(&store, common::service("catalogue"), Options::default()).await;
    let admin = token("admin", &[Role::Admin], "zhongjie");
    let (mut on_a, mut on_b) = (Client::new(a.channel.clone()), Client::new(b.channel.clone()));
    let created = create(&mut on_a, &admin, "cached", item("社区理发")).await;
    publish(&mut on_a, &admin, &created.name).await;
    let get = |name: &str| GetServiceItemRequest { name: name.into() };
    let version = |i: &ServiceItem| i.etag.trim_matches('"').parse::<i64>().expect("etag");
    // Both replicas have read (and keep) the published item.
    let first = on_a.get_service_item(get(&created.name)).await.expect("get on a").into_inner();
    on_b.get_service_item(get(&created.name)).await.expect("get on b");

    // A change on b is what b answers at once.
    let patch = UpdateServiceItemRequest {
        service_item: Some(ServiceItem {
            name: created.name.clone(),
            summary: "每周二上午".into(),
            ..Default::default()
        }),
        update_mask: Some(pbjson_types::FieldMask { paths: vec!["summary".into()] }),
        request_id: String::new(),
    };
    let changed = on_b.update_service_item(with_token(patch, &admin)).await.expect("update on b").into_inner();
    let read = on_b.get_service_item(get(&created.name)).await.expect("get on b").into_inner();
    assert_eq!(read, changed, "the replica that made the change serves it at once");

    // a catches up within its cache's lifetime, and never goes back to an older version.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut last = version(&first);
    loop {
        let read = on_a.get_service_item(get(&created.name)).await.expect("get on a").into_inner();
        assert!(version(&read) >= last, "versions never go back: {} after {last}", version(&read));
        last = version(&read);
        if read == changed {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "a still serves version {last} after 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.stop().await;
    b.stop().await;
}
