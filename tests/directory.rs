//! Services calling services through kit's directory, in both layouts: a call made while serving
//! a user carries the user's credentials, the caller's trace and what is left of the request's
//! deadline; a call a service makes on its own behalf carries the service's credential, and the
//! callee tells the two apart. In the all-in-one process the call stays in-process; in split
//! mode it crosses the network to the other service's process.

mod common;

use std::time::Duration;

use civic::{Options, Target};
use civic_kit::auth::Role;
use civic_kit::module::Module;
use common::probe::{self, Seen};
use common::{Store, spawn_on, token, with_token};

/// civic's services and the two probes.
static MODULES: &[&dyn Module] = &[&civic_catalogue::MODULE, &probe::A, &probe::B];

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";

fn relay(message: &str, token: &str, timeout: Duration) -> tonic::Request<String> {
    let mut request = with_token(message.to_owned(), token);
    let traceparent = format!("00-{TRACE_ID}-b7ad6b7169203331-01");
    request.metadata_mut().insert("traceparent", traceparent.parse().expect("header"));
    request.set_timeout(timeout);
    request
}

#[tokio::test]
async fn a_service_calls_another_for_its_user_or_for_itself_and_the_callee_tells_them_apart() {
    let store = Store::fresh().await;
    let app = spawn_on(&store, Target::All, Options { modules: MODULES, ..Default::default() }).await;
    let user = token("alice", &[Role::Resident], "zhongjie");

    // For the user: the user's identity, the caller's trace and the caller's deadline arrive.
    let answer =
        probe::call(app.channel.clone(), relay("user", &user, Duration::from_secs(5)), "/civic.probe_a.v1.Probe/Relay")
            .await
            .expect("relayed");
    let seen: Seen = serde_json::from_str(&answer).expect("what probe_b saw");
    assert_eq!(seen.caller, "users/alice");
    assert_eq!(seen.trace_id.as_deref(), Some(TRACE_ID), "the caller's trace continues in the callee");
    assert!(
        seen.deadline_ms > 0 && seen.deadline_ms <= 5000,
        "the caller's 5 s deadline, less what was used: {seen:?}"
    );
    assert_eq!(seen.network, common::split(), "in-process in one process, over the network in split mode");

    // On its own behalf: the service's credential, told apart from a user's.
    let answer = probe::call(
        app.channel.clone(),
        relay("service", &user, Duration::from_secs(5)),
        "/civic.probe_a.v1.Probe/Relay",
    )
    .await
    .expect("relayed");
    let seen: Seen = serde_json::from_str(&answer).expect("what probe_b saw");
    assert_eq!(seen.caller, "services/probe_a", "the calling service, not the user");
    assert_eq!(seen.trace_id.as_deref(), Some(TRACE_ID));
    assert!(seen.deadline_ms > 0 && seen.deadline_ms <= 3000, "the service's own 3 s bound: {seen:?}");

    // Without a token the relay carries none, and the callee sees an anonymous caller.
    let answer =
        probe::call(app.channel.clone(), relay("user", "", Duration::from_secs(5)), "/civic.probe_a.v1.Probe/Relay")
            .await
            .expect("relayed");
    let seen: Seen = serde_json::from_str(&answer).expect("what probe_b saw");
    assert_eq!(seen.caller, "anonymous");
    app.stop().await;
}

#[tokio::test]
async fn a_service_without_an_address_for_another_is_unavailable_with_the_setting_named() {
    let directory = civic_kit::directory::Directory::new(
        &Default::default(),
        &Default::default(),
        &["probe_a"],
        civic_kit::server::shutdown_pair().1,
        civic_kit::tasks::Tasks::new(),
    );
    let err = directory.connect("probe_b").expect_err("no address");
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(err.to_string().contains("directory.addresses.probe_b"), "{err}");
    let no_credential = directory.acting_as("probe_a").as_service(String::new(), Duration::from_secs(1)).await;
    assert_eq!(no_credential.expect_err("no credential configured").code(), tonic::Code::Unavailable);

    // A request whose deadline has passed is not passed on.
    let mut incoming = tonic::Request::new(String::new());
    incoming.extensions_mut().insert(civic_kit::server::Deadline(std::time::Instant::now()));
    let err = directory.for_user(&incoming, String::new()).expect_err("out of time");
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded);
}

#[tokio::test]
async fn a_replica_that_goes_away_is_no_longer_called_once_a_call_to_it_fails() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let (first, second) = (Store::fresh().await, Store::fresh().await);
    let staying = spawn_on(&first, Target::All, Options::default()).await;
    let leaving = spawn_on(&second, Target::All, Options::default()).await;
    // Addresses resolved again only once a minute: what leaves them out sooner is the check a
    // failed call asks for.
    let settings = civic_kit::config::DirectorySettings {
        addresses: [(
            "catalogue".to_owned(),
            vec![format!("http://{}", staying.grpc_addr), format!("http://{}", leaving.grpc_addr)],
        )]
        .into(),
        resolve_every_ms: 60_000,
        ..Default::default()
    };
    let (_stop, shutdown) = civic_kit::server::shutdown_pair();
    let directory = civic_kit::directory::Directory::new(
        &settings,
        &Default::default(),
        &[],
        shutdown,
        civic_kit::tasks::Tasks::new(),
    );
    let mut health = HealthClient::new(directory.connect("catalogue").expect("an address"));
    let check = || HealthCheckRequest { service: String::new() };
    for _ in 0..10 {
        health.check(check()).await.expect("both replicas answer");
    }
    // Checks come a quarter of a second apart at most: the first (when the directory first
    // called the service) is behind us before the replica leaves.
    tokio::time::sleep(Duration::from_millis(300)).await;
    leaving.stop().await;
    let mut failed = 0;
    for _ in 0..40 {
        if let Err(status) = health.check(check()).await {
            assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
            failed += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(failed <= 2, "{failed} of 40 calls went to the replica that left");
    staying.stop().await;
}
