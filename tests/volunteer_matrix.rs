//! The volunteer service's authorisation matrix: every RPC of `VolunteerService`, called by
//! every kind of caller on the resources of community `east` — a need of resident A in grid g1,
//! volunteer V's registration, tasks and account — gets exactly what the rules allow, including a
//! resident the need is not for, a volunteer waiting for approval, a worker of another grid, a
//! cadre of another community, staff of another street and another service. The table names
//! every RPC the service declares: a new one without a row fails the test.

mod common;

use std::collections::BTreeSet;

use civic::{Options, Target};
use civic_kit::auth::Role;
use civic_proto::volunteer::need::Kind as NeedKind;
use civic_proto::volunteer::organisation::Kind as OrgKind;
use civic_proto::volunteer::volunteer::Kind;
use civic_proto::volunteer::volunteer_service_client::VolunteerServiceClient;
use civic_proto::volunteer::*;
use common::{Store, grid_token, service_token, spawn_on, token, token_in, with_token};
use tonic::Code;
use tonic::transport::Channel;

const STREET: &str = "streets/zhongjie";
const EAST: &str = "streets/zhongjie/communities/east";
const G1: &str = "streets/zhongjie/communities/east/grids/g1";
const V: &str = "streets/zhongjie/volunteers/v-a";

/// The callers, in the order of every expectation row.
const CALLERS: [&str; 12] = [
    "anonymous",
    "resident A (the need's)",
    "resident B",
    "volunteer V (approved, east)",
    "volunteer P (waiting for approval)",
    "worker of g1",
    "worker of g2",
    "cadre of east",
    "cadre of west",
    "cadre of another street",
    "admin",
    "another service",
];

const OK: Code = Code::Ok;
const UNAUTH: Code = Code::Unauthenticated;
const NO: Code = Code::PermissionDenied;
const LATE: Code = Code::FailedPrecondition;

fn tokens() -> [String; 12] {
    [
        String::new(),
        token("res-a", &[Role::Resident], "zhongjie"),
        token("res-b", &[Role::Resident], "zhongjie"),
        token("v-a", &[Role::Resident], "zhongjie"),
        token("v-p", &[Role::Resident], "zhongjie"),
        grid_token("gw-1", "g1"),
        grid_token("gw-2", "g2"),
        token_in("cadre-e", &[Role::Cadre], "zhongjie", "east"),
        token_in("cadre-w", &[Role::Cadre], "zhongjie", "west"),
        token("zhao", &[Role::Cadre], "beijie"),
        token("boss", &[Role::Admin], "zhongjie"),
        service_token("issues"),
    ]
}

/// The calls of the matrix, by the RPC each makes (`RegisterSelf` and `RegisterOther` are both
/// CreateVolunteer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    RegisterSelf,
    RegisterOther,
    GetVolunteer,
    ListVolunteers,
    UpdateVolunteer,
    ApproveVolunteer,
    CreateOrganisation,
    GetOrganisation,
    ListOrganisations,
    UpdateOrganisation,
    GetServiceReport,
    ExportServiceReport,
    CreateNeed,
    GetNeed,
    ListNeeds,
    CancelNeed,
    ClaimNeed,
    ReleaseNeed,
    RecommendVolunteers,
    AssignNeeds,
    ConfirmAssignment,
    CheckIn,
    CheckOut,
    ConfirmTask,
    GetAccount,
    ListMovements,
    AdjustAccount,
    CreateReward,
    GetReward,
    ListRewards,
    WithdrawReward,
    RedeemReward,
}

impl Call {
    /// The RPC it makes.
    fn rpc(self) -> &'static str {
        match self {
            Call::RegisterSelf | Call::RegisterOther => "CreateVolunteer",
            Call::GetVolunteer => "GetVolunteer",
            Call::ListVolunteers => "ListVolunteers",
            Call::UpdateVolunteer => "UpdateVolunteer",
            Call::ApproveVolunteer => "ApproveVolunteer",
            Call::CreateOrganisation => "CreateOrganisation",
            Call::GetOrganisation => "GetOrganisation",
            Call::ListOrganisations => "ListOrganisations",
            Call::UpdateOrganisation => "UpdateOrganisation",
            Call::GetServiceReport => "GetServiceReport",
            Call::ExportServiceReport => "ExportServiceReport",
            Call::CreateNeed => "CreateNeed",
            Call::GetNeed => "GetNeed",
            Call::ListNeeds => "ListNeeds",
            Call::CancelNeed => "CancelNeed",
            Call::ClaimNeed => "ClaimNeed",
            Call::ReleaseNeed => "ReleaseNeed",
            Call::RecommendVolunteers => "RecommendVolunteers",
            Call::AssignNeeds => "AssignNeeds",
            Call::ConfirmAssignment => "ConfirmAssignment",
            Call::CheckIn => "CheckIn",
            Call::CheckOut => "CheckOut",
            Call::ConfirmTask => "ConfirmTask",
            Call::GetAccount => "GetAccount",
            Call::ListMovements => "ListMovements",
            Call::AdjustAccount => "AdjustAccount",
            Call::CreateReward => "CreateReward",
            Call::GetReward => "GetReward",
            Call::ListRewards => "ListRewards",
            Call::WithdrawReward => "WithdrawReward",
            Call::RedeemReward => "RedeemReward",
        }
    }
}

fn volunteer(community: &str) -> Volunteer {
    Volunteer {
        display_name: "李秀英".into(),
        kind: Kind::Resident as i32,
        community: community.into(),
        skills: vec!["cleaning".into()],
        monthly_hours_cap: 200,
        ..Default::default()
    }
}

struct World {
    client: VolunteerServiceClient<Channel>,
    tokens: [String; 12],
    /// Counts what each call makes, so names and times never meet.
    n: i64,
    /// Counts the needs starting within the hour: each has a minute of its own.
    soon: i64,
    organisation: String,
    reward: String,
}

impl World {
    fn admin(&self) -> String {
        self.tokens[10].clone()
    }

    fn next(&mut self) -> i64 {
        self.n += 1;
        self.n
    }

    /// A need of resident A in g1, open: from `start` for `minutes`.
    async fn need_at(&mut self, start: chrono::DateTime<chrono::Utc>, minutes: i64) -> String {
        let stamp = |t: chrono::DateTime<chrono::Utc>| pbjson_types::Timestamp { seconds: t.timestamp(), nanos: 0 };
        let need = Need {
            kind: NeedKind::Activity as i32,
            title: "楼道清洁".into(),
            resident: "users/res-a".into(),
            community: EAST.into(),
            grid: G1.into(),
            start_time: Some(stamp(start)),
            end_time: Some(stamp(start + chrono::Duration::minutes(minutes))),
            places: 2,
            ..Default::default()
        };
        let request = CreateNeedRequest { parent: STREET.into(), need: Some(need), request_id: String::new() };
        let admin = self.admin();
        self.client.create_need(with_token(request, &admin)).await.expect("a need").into_inner().name
    }

    /// A need a day or more ahead, an hour long, at a time of its own.
    async fn need(&mut self) -> String {
        let n = self.next();
        self.need_at(chrono::Utc::now() + chrono::Duration::hours(24 + 2 * n), 60).await
    }

    /// A need of a minute starting within the hour (check-in is open), at a minute of its own.
    async fn need_now(&mut self) -> String {
        self.soon += 1;
        assert!(self.soon <= 40, "at most forty needs within the hour, a minute and twenty seconds apart");
        let start = chrono::Utc::now() + chrono::Duration::seconds(30 + self.soon * 80);
        self.need_at(start, 1).await
    }

    async fn claim_as_v(&mut self, need: &str) {
        let v = self.tokens[3].clone();
        let request = ClaimNeedRequest { name: need.into(), request_id: String::new() };
        self.client.claim_need(with_token(request, &v)).await.expect("V takes a place");
    }

    async fn check_in_as_v(&mut self, need: &str) {
        let v = self.tokens[3].clone();
        let request = CheckInRequest { name: need.into(), request_id: String::new() };
        self.client.check_in(with_token(request, &v)).await.expect("V checks in");
    }

    async fn check_out_as_v(&mut self, need: &str) {
        let v = self.tokens[3].clone();
        let request = CheckOutRequest { name: need.into(), request_id: String::new() };
        self.client.check_out(with_token(request, &v)).await.expect("V checks out");
    }

    /// A fresh self-registration waiting for approval, in east.
    async fn pending(&mut self) -> String {
        let id = format!("w-{}", self.next());
        let request = CreateVolunteerRequest {
            parent: STREET.into(),
            volunteer: Some(volunteer(EAST)),
            volunteer_id: String::new(),
            request_id: String::new(),
        };
        let me = token(&id, &[Role::Resident], "zhongjie");
        self.client.create_volunteer(with_token(request, &me)).await.expect("a registration").into_inner().name
    }

    /// Makes `call` as `caller` and returns the code.
    async fn code(&mut self, call: Call, caller: usize) -> Code {
        let token = self.tokens[caller].clone();
        let result: Result<(), tonic::Status> = match call {
            Call::RegisterSelf => {
                let request = CreateVolunteerRequest {
                    parent: STREET.into(),
                    volunteer: Some(volunteer(EAST)),
                    volunteer_id: String::new(),
                    request_id: String::new(),
                };
                self.client.create_volunteer(with_token(request, &token)).await.map(drop)
            }
            Call::RegisterOther => {
                let request = CreateVolunteerRequest {
                    parent: STREET.into(),
                    volunteer: Some(volunteer(EAST)),
                    volunteer_id: format!("o-{}", self.next()),
                    request_id: String::new(),
                };
                self.client.create_volunteer(with_token(request, &token)).await.map(drop)
            }
            Call::GetVolunteer => {
                self.client.get_volunteer(with_token(GetVolunteerRequest { name: V.into() }, &token)).await.map(drop)
            }
            Call::ListVolunteers => {
                let request = ListVolunteersRequest { parent: STREET.into(), ..Default::default() };
                self.client.list_volunteers(with_token(request, &token)).await.map(drop)
            }
            Call::UpdateVolunteer => {
                let request = UpdateVolunteerRequest {
                    volunteer: Some(Volunteer {
                        name: V.into(), display_name: "李秀英".into(), ..Default::default()
                    }),
                    update_mask: Some(pbjson_types::FieldMask { paths: vec!["display_name".into()] }),
                    request_id: String::new(),
                };
                self.client.update_volunteer(with_token(request, &token)).await.map(drop)
            }
            Call::ApproveVolunteer => {
                let name = self.pending().await;
                let request = ApproveVolunteerRequest { name, ..Default::default() };
                self.client.approve_volunteer(with_token(request, &token)).await.map(drop)
            }
            Call::CreateOrganisation => {
                let o = Organisation {
                    display_name: "邻里互助社".into(),
                    kind: OrgKind::CommunityService as i32,
                    community: EAST.into(),
                    ..Default::default()
                };
                let request = CreateOrganisationRequest {
                    parent: STREET.into(),
                    organisation: Some(o),
                    request_id: String::new(),
                };
                self.client.create_organisation(with_token(request, &token)).await.map(drop)
            }
            Call::GetOrganisation => {
                let request = GetOrganisationRequest { name: self.organisation.clone() };
                self.client.get_organisation(with_token(request, &token)).await.map(drop)
            }
            Call::ListOrganisations => {
                let request = ListOrganisationsRequest { parent: STREET.into(), ..Default::default() };
                self.client.list_organisations(with_token(request, &token)).await.map(drop)
            }
            Call::UpdateOrganisation => {
                let request = UpdateOrganisationRequest {
                    organisation: Some(Organisation {
                        name: self.organisation.clone(),
                        description: "助餐".into(),
                        ..Default::default()
                    }),
                    update_mask: Some(pbjson_types::FieldMask { paths: vec!["description".into()] }),
                    request_id: String::new(),
                };
                self.client.update_organisation(with_token(request, &token)).await.map(drop)
            }
            Call::GetServiceReport => {
                let request =
                    GetServiceReportRequest { parent: STREET.into(), year: 2026, quarter: 4, ..Default::default() };
                self.client.get_service_report(with_token(request, &token)).await.map(drop)
            }
            Call::ExportServiceReport => {
                let request =
                    ExportServiceReportRequest { parent: STREET.into(), year: 2026, quarter: 4, ..Default::default() };
                self.client.export_service_report(with_token(request, &token)).await.map(drop)
            }
            Call::CreateNeed => {
                let start = chrono::Utc::now() + chrono::Duration::days(3);
                let stamp =
                    |t: chrono::DateTime<chrono::Utc>| pbjson_types::Timestamp { seconds: t.timestamp(), nanos: 0 };
                let need = Need {
                    kind: NeedKind::MicroWish as i32,
                    title: "想要一台收音机".into(),
                    resident: "users/res-a".into(),
                    community: EAST.into(),
                    grid: G1.into(),
                    start_time: Some(stamp(start)),
                    end_time: Some(stamp(start + chrono::Duration::hours(1))),
                    ..Default::default()
                };
                let request = CreateNeedRequest { parent: STREET.into(), need: Some(need), request_id: String::new() };
                self.client.create_need(with_token(request, &token)).await.map(drop)
            }
            Call::GetNeed => {
                let name = self.need().await;
                self.client.get_need(with_token(GetNeedRequest { name }, &token)).await.map(drop)
            }
            Call::ListNeeds => {
                let request = ListNeedsRequest { parent: STREET.into(), ..Default::default() };
                self.client.list_needs(with_token(request, &token)).await.map(drop)
            }
            Call::CancelNeed => {
                let name = self.need().await;
                let request = CancelNeedRequest { name, ..Default::default() };
                self.client.cancel_need(with_token(request, &token)).await.map(drop)
            }
            Call::ClaimNeed => {
                let name = self.need().await;
                self.client
                    .claim_need(with_token(ClaimNeedRequest { name, ..Default::default() }, &token))
                    .await
                    .map(drop)
            }
            Call::ReleaseNeed => {
                let name = self.need().await;
                self.claim_as_v(&name).await;
                let request = ReleaseNeedRequest { name, ..Default::default() };
                self.client.release_need(with_token(request, &token)).await.map(drop)
            }
            Call::RecommendVolunteers => {
                let name = self.need().await;
                let request = RecommendVolunteersRequest { name, page_size: 5 };
                self.client.recommend_volunteers(with_token(request, &token)).await.map(drop)
            }
            Call::AssignNeeds => {
                let request = AssignNeedsRequest { community: EAST.into(), deadline_ms: 1000 };
                self.client.assign_needs(with_token(request, &token)).await.map(drop)
            }
            Call::ConfirmAssignment => {
                let need = self.need().await;
                let request = ConfirmAssignmentRequest {
                    community: EAST.into(),
                    assignments: vec![Assignment { need, volunteer: V.into(), cost: 0 }],
                    request_id: String::new(),
                };
                self.client.confirm_assignment(with_token(request, &token)).await.map(drop)
            }
            Call::CheckIn => {
                let name = self.need_now().await;
                self.claim_as_v(&name).await;
                self.client.check_in(with_token(CheckInRequest { name, ..Default::default() }, &token)).await.map(drop)
            }
            Call::CheckOut => {
                let name = self.need_now().await;
                self.claim_as_v(&name).await;
                self.check_in_as_v(&name).await;
                self.client
                    .check_out(with_token(CheckOutRequest { name, ..Default::default() }, &token))
                    .await
                    .map(drop)
            }
            Call::ConfirmTask => {
                let name = self.need_now().await;
                self.claim_as_v(&name).await;
                self.check_in_as_v(&name).await;
                self.check_out_as_v(&name).await;
                let request = ConfirmTaskRequest { name, volunteer: V.into(), ..Default::default() };
                self.client.confirm_task(with_token(request, &token)).await.map(drop)
            }
            Call::GetAccount => {
                let request = GetAccountRequest { name: format!("{STREET}/accounts/v-a") };
                self.client.get_account(with_token(request, &token)).await.map(drop)
            }
            Call::ListMovements => {
                let request = ListMovementsRequest { parent: format!("{STREET}/accounts/v-a"), ..Default::default() };
                self.client.list_movements(with_token(request, &token)).await.map(drop)
            }
            Call::AdjustAccount => {
                let request = AdjustAccountRequest {
                    name: format!("{STREET}/accounts/v-a"),
                    points: 1,
                    reason: "补记".into(),
                    request_id: String::new(),
                };
                self.client.adjust_account(with_token(request, &token)).await.map(drop)
            }
            Call::CreateReward => {
                let request =
                    CreateRewardRequest { parent: STREET.into(), reward: Some(reward()), request_id: String::new() };
                self.client.create_reward(with_token(request, &token)).await.map(drop)
            }
            Call::GetReward => {
                let request = GetRewardRequest { name: self.reward.clone() };
                self.client.get_reward(with_token(request, &token)).await.map(drop)
            }
            Call::ListRewards => {
                let request = ListRewardsRequest { parent: STREET.into(), ..Default::default() };
                self.client.list_rewards(with_token(request, &token)).await.map(drop)
            }
            Call::WithdrawReward => {
                let admin = self.admin();
                let request =
                    CreateRewardRequest { parent: STREET.into(), reward: Some(reward()), request_id: String::new() };
                let name =
                    self.client.create_reward(with_token(request, &admin)).await.expect("reward").into_inner().name;
                let request = WithdrawRewardRequest { name, request_id: String::new() };
                self.client.withdraw_reward(with_token(request, &token)).await.map(drop)
            }
            Call::RedeemReward => {
                let request = RedeemRewardRequest {
                    name: self.reward.clone(),
                    person: "users/v-a".into(),
                    request_id: String::new(),
                };
                self.client.redeem_reward(with_token(request, &token)).await.map(drop)
            }
        };
        match result {
            Ok(()) => Code::Ok,
            Err(status) => status.code(),
        }
    }
}

fn reward() -> Reward {
    Reward {
        display_name: "洗衣液".into(), offered_by: "便民店".into(), points: 1, stock: 1000, ..Default::default()
    }
}

#[tokio::test]
async fn every_volunteer_rpc_answers_each_caller_as_the_rules_say() {
    let store = Store::fresh().await;
    let app = spawn_on(&store, Target::All, Options::default()).await;
    let tokens = tokens();
    let admin = tokens[10].clone();
    let mut client = VolunteerServiceClient::new(app.channel.clone());
    // V approved in east (with points to spend), P waiting, an organisation and a reward.
    let register = |id: &str| CreateVolunteerRequest {
        parent: STREET.into(),
        volunteer: Some(volunteer(EAST)),
        volunteer_id: id.into(),
        request_id: String::new(),
    };
    client.create_volunteer(with_token(register("v-a"), &admin)).await.expect("V");
    client.create_volunteer(with_token(register(""), &tokens[4])).await.expect("P");
    let adjust = AdjustAccountRequest {
        name: format!("{STREET}/accounts/v-a"),
        points: 1000,
        reason: "开户".into(),
        request_id: String::new(),
    };
    client.adjust_account(with_token(adjust, &admin)).await.expect("points");
    let o = Organisation {
        display_name: "互助社".into(),
        kind: OrgKind::Charity as i32,
        community: EAST.into(),
        ..Default::default()
    };
    let request = CreateOrganisationRequest { parent: STREET.into(), organisation: Some(o), request_id: String::new() };
    let organisation = client.create_organisation(with_token(request, &admin)).await.expect("org").into_inner().name;
    let request = CreateRewardRequest { parent: STREET.into(), reward: Some(reward()), request_id: String::new() };
    let reward = client.create_reward(with_token(request, &admin)).await.expect("reward").into_inner().name;
    let mut world = World { client, tokens, n: 0, soon: 0, organisation, reward };

    // anon, res A, res B, V, P, gw-1, gw-2, cadre e, cadre w, other street, admin, service
    let street = [UNAUTH, OK, OK, OK, OK, OK, OK, OK, OK, NO, OK, NO];
    let staff = [UNAUTH, NO, NO, NO, NO, NO, NO, OK, NO, NO, OK, NO];
    let any_staff = [UNAUTH, NO, NO, NO, NO, NO, NO, OK, OK, NO, OK, NO];
    let admins = [UNAUTH, NO, NO, NO, NO, NO, NO, NO, NO, NO, OK, NO];
    let v_and_staff = [UNAUTH, NO, NO, OK, NO, NO, NO, OK, NO, NO, OK, NO];
    let v_alone = [UNAUTH, NO, NO, OK, NO, NO, NO, NO, NO, NO, NO, NO];
    // Only V holds a place: anyone else of the street is told they hold none.
    let v_holds = [UNAUTH, LATE, LATE, OK, LATE, LATE, LATE, LATE, LATE, NO, LATE, NO];
    let need_readers = [UNAUTH, OK, NO, OK, NO, OK, NO, OK, NO, NO, OK, NO];
    let need_placers = [UNAUTH, OK, NO, NO, NO, OK, NO, OK, NO, NO, OK, NO];
    let task_confirmers = [UNAUTH, OK, NO, OK, NO, OK, NO, OK, NO, NO, OK, NO];
    // Self-registration: V and P are registered already; staff register others by id.
    let register_self = [
        UNAUTH,
        OK,
        OK,
        Code::AlreadyExists,
        Code::AlreadyExists,
        OK,
        OK,
        Code::InvalidArgument,
        Code::InvalidArgument,
        NO,
        Code::InvalidArgument,
        NO,
    ];
    let table: [(Call, [Code; 12]); 32] = [
        (Call::RegisterOther, staff),
        (Call::GetVolunteer, v_and_staff),
        (Call::ListVolunteers, any_staff),
        (Call::UpdateVolunteer, v_and_staff),
        (Call::ApproveVolunteer, staff),
        (Call::CreateOrganisation, staff),
        (Call::GetOrganisation, street),
        (Call::ListOrganisations, street),
        (Call::UpdateOrganisation, staff),
        (Call::GetServiceReport, any_staff),
        (Call::ExportServiceReport, any_staff),
        (Call::CreateNeed, need_placers),
        (Call::GetNeed, need_readers),
        (Call::ListNeeds, street),
        (Call::CancelNeed, need_placers),
        (Call::ClaimNeed, v_alone),
        (Call::ReleaseNeed, v_holds),
        (Call::RecommendVolunteers, staff),
        (Call::AssignNeeds, staff),
        (Call::ConfirmAssignment, staff),
        (Call::CheckIn, v_holds),
        (Call::CheckOut, v_holds),
        (Call::ConfirmTask, task_confirmers),
        (Call::GetAccount, v_and_staff),
        (Call::ListMovements, v_and_staff),
        (Call::AdjustAccount, admins),
        (Call::CreateReward, admins),
        (Call::GetReward, street),
        (Call::ListRewards, street),
        (Call::WithdrawReward, admins),
        (Call::RedeemReward, v_and_staff),
        (Call::RegisterSelf, register_self),
    ];

    // Every RPC the service declares has a row.
    let pool = prost_reflect::DescriptorPool::decode(civic_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
    let service = pool.get_service_by_name("civic.volunteer.v1.VolunteerService").expect("the service");
    let declared: BTreeSet<String> = service.methods().map(|m| m.name().to_owned()).collect();
    let covered: BTreeSet<String> = table.iter().map(|(call, _)| call.rpc().to_owned()).collect();
    assert_eq!(declared, covered, "every RPC of VolunteerService in the matrix");

    for (call, expected) in table {
        for (caller, want) in expected.iter().enumerate() {
            let got = world.code(call, caller).await;
            assert_eq!(got, *want, "{call:?} by {}", CALLERS[caller]);
        }
    }

    // A need that does not exist is refused alike to whoever may not reach it; the street's
    // admin learns it is missing.
    let missing = format!("{STREET}/needs/n-none");
    for (caller, want) in [(1, NO), (2, NO), (3, NO), (5, NO), (7, NO), (9, NO), (11, NO), (10, Code::NotFound)] {
        let token = world.tokens[caller].clone();
        let got = world.client.get_need(with_token(GetNeedRequest { name: missing.clone() }, &token)).await;
        assert_eq!(
            got.map(drop).map_err(|s| s.code()).err().unwrap_or(OK),
            want,
            "a missing need, {}",
            CALLERS[caller]
        );
        let cancel = CancelNeedRequest { name: missing.clone(), ..Default::default() };
        let got = world.client.cancel_need(with_token(cancel, &token)).await;
        assert_eq!(got.map(drop).map_err(|s| s.code()).err().unwrap_or(OK), want, "cancelling it, {}", CALLERS[caller]);
    }

    // Lists are scoped: each caller sees only what they reach.
    let need = world.need().await;
    for (caller, sees) in
        [(1, true), (2, false), (3, true), (4, false), (5, true), (6, false), (7, true), (8, false), (10, true)]
    {
        let token = world.tokens[caller].clone();
        let request = ListNeedsRequest { parent: STREET.into(), page_size: 200, ..Default::default() };
        let listed = world.client.list_needs(with_token(request, &token)).await.expect("list").into_inner().needs;
        assert_eq!(listed.iter().any(|n| n.name == need), sees, "ListNeeds by {}", CALLERS[caller]);
    }
    let west = world.tokens[8].clone();
    let request = ListVolunteersRequest { parent: STREET.into(), page_size: 200, ..Default::default() };
    let listed = world.client.list_volunteers(with_token(request, &west)).await.expect("list").into_inner();
    assert!(listed.volunteers.iter().all(|v| v.community != EAST), "a cadre of west sees no one of east");
    app.stop().await;
}
