//! What civic refuses, as an attacker would probe it: each test here is one finding of a review
//! of the code as an attacker reads it (docs/security.md), shown closed.

mod common;

use civic::{Application, Options, Target};
use civic_kit::auth::{AuthSettings, Principal, Role};
use civic_proto::catalogue::ListServiceItemsRequest;
use civic_proto::catalogue::catalogue_service_client::CatalogueServiceClient;
use common::{Store, with_token};

fn admin() -> Principal {
    Principal {
        subject: "mallory".into(),
        roles: vec![Role::Admin],
        street: Some("zhongjie".into()),
        community: None,
        grids: Vec::new(),
    }
}

/// A target that runs on PostgreSQL or NATS never signs its own tokens unless told to: without
/// a JWKS source it refuses to start, naming `auth.dev_mode`.
#[tokio::test]
async fn a_service_on_postgres_or_nats_without_production_keys_refuses_to_start() {
    let store = Store::fresh().await;
    for (target, database_url, nats_url) in [
        (common::service("catalogue"), "postgres://127.0.0.1:1/unused", ""),
        (Target::Gateway, "", "nats://127.0.0.1:1"),
        (Target::All, "postgres://127.0.0.1:1/unused", ""),
    ] {
        let mut config = common::test_config(&store);
        config.auth = AuthSettings::default();
        config.database_url = database_url.into();
        config.nats_url = nats_url.into();
        config.directory.address_template = "http://civic-{service}:50051".into();
        let refused = Application::build(config, target, Options::default()).await.err().expect("refused");
        let message = format!("{refused:#}");
        assert!(message.contains("auth.dev_mode"), "{}: {message}", target.name());
    }
}

/// Development signing uses a key of its own: a token signed with the page-token secret —
/// which every replica shares and a split deployment keeps in a Secret — is refused. In one
/// process on the embedded store (the laptop default) development signing needs no setting.
#[tokio::test]
async fn the_page_token_secret_never_signs_tokens() {
    let store = Store::fresh().await;
    let mut config = common::test_config(&store);
    config.database_url = String::new();
    config.nats_url = String::new();
    // The laptop default turns development signing on by itself; split processes are told to.
    let dev_mode = if common::split() { Some(true) } else { None };
    config.auth = AuthSettings { dev_mode, ..AuthSettings::default() };
    let dev_key = config.dev_key().expect("the development key");
    let secret = String::from_utf8(config.secret().expect("the secret")).expect("hex");
    let app = common::spawn_with(config, Target::All, Options::default()).await;
    let mut client = CatalogueServiceClient::new(app.channel.clone());
    let list = || ListServiceItemsRequest {
        parent: "streets/zhongjie".into(),
        filter: "state = DRAFT".into(),
        ..Default::default()
    };
    let mint = |key: &str| {
        let settings = AuthSettings { dev_key: Some(key.to_owned()), ..AuthSettings::default() };
        civic_kit::auth::mint_dev_token(&settings, &admin(), std::time::Duration::from_secs(600)).expect("minted")
    };
    let forged = client.list_service_items(with_token(list(), &mint(&secret))).await.expect_err("refused");
    assert_eq!(forged.code(), tonic::Code::Unauthenticated);
    client.list_service_items(with_token(list(), &mint(&dev_key))).await.expect("the development key's token");
    app.stop().await;
}

/// `civic token` mints nothing where tokens come from the identity provider.
#[test]
fn civic_token_refuses_beside_production_keys() {
    let dir = tempfile::tempdir().expect("dir");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_civic"))
        .args(["token", "--role", "admin", "--data-dir"])
        .arg(dir.path())
        .env("CIVIC_AUTH__JWKS_URL", "https://idp.example/jwks.json")
        .output()
        .expect("run civic");
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "no token printed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("development tokens only"), "{stderr}");
}
