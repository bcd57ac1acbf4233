//! `civic.grid.v1.VisitService`: visits, recorded one by one or synced in batches from phones
//! that were offline, and the households due for one.

use chrono::{DateTime, Duration, Utc};
use civic_kit::auth::{Caller, Principal, Role};
use civic_kit::error::{Error, Result, Violations};
use civic_kit::idempotency::RequestKey;
use civic_kit::names::{Id, StreetId, UserName};
use civic_kit::write::Change;
use civic_kit::{filter, page, time};
use civic_proto::grid::monthly_summary::State;
use civic_proto::grid::sync_result::Outcome;
use civic_proto::grid::visit::Kind;
use civic_proto::grid::visit_service_server::VisitService;
use civic_proto::grid::*;
use tonic::{Request, Response, Status};

use super::{check_point, denied};
use crate::Grids;
use crate::domain::{
    CommunityName, Figures, GridName, HouseholdName, Month, Place, Reach, VisitName, local_date, local_midnight,
    parse_date, percent, summarise,
};
use crate::store::{self, VisitFilter, VisitRecord};

/// How far back a visit may be recorded, in days.
const MAX_AGE_DAYS: i64 = 92;
/// How far ahead of the server's clock a phone's clock may run.
const CLOCK_SKEW_MINUTES: i64 = 10;
/// The services that read visits on their own behalf (the issues service opens an issue per
/// problem raised).
const READERS: &[&str] = &["issues", "assessment"];

/// What became of one visit sent.
enum Recorded {
    /// Recorded now.
    New(Visit),
    /// Recorded before, by the same worker: the stored visit.
    Existing(Visit),
}

/// A visit as sent, checked.
struct Checked {
    name: VisitName,
    household: HouseholdName,
    worker: UserName,
    visit: Visit,
    visit_time: DateTime<Utc>,
}

/// Checks a visit sent by `principal` (`field` is the message's field), naming each fault.
fn check_visit(
    principal: &Principal,
    street: &StreetId,
    id: &str,
    id_field: &str,
    sent: &Visit,
    field: &str,
) -> Result<Checked> {
    let at = |name: &str| format!("{field}.{name}");
    let mut v = Violations::new();
    let id = if id.is_empty() { Some(Id::generate('v')) } else { v.check(Id::parse(id_field, id)) };
    let household = v.check(HouseholdName::parse(&at("household"), &sent.household));
    if household.as_ref().is_some_and(|h| h.street() != street) {
        v.add(at("household"), "must be a household of the same street");
    }
    let worker = if sent.worker.is_empty() {
        Some(principal.user_name())
    } else {
        v.check(UserName::parse(&at("worker"), &sent.worker))
    };
    if sent.kind() == Kind::Unspecified {
        v.add(at("kind"), "is required: DOOR_TO_DOOR, THEMED or URGENT_APPOINTMENT");
    }
    let now = Utc::now();
    let visit_time = match sent.visit_time.as_ref() {
        None => {
            v.add(at("visit_time"), "is required");
            None
        }
        Some(t) => match DateTime::from_timestamp(t.seconds, t.nanos.clamp(0, 999_999_999) as u32) {
            Some(t) if t > now + Duration::minutes(CLOCK_SKEW_MINUTES) => {
                v.add(at("visit_time"), "is in the future");
                None
            }
            Some(t) if t < now - Duration::days(MAX_AGE_DAYS) => {
                v.add(at("visit_time"), "is more than 92 days ago");
                None
            }
            None => {
                v.add(at("visit_time"), "is not a valid time");
                None
            }
            some => some,
        },
    };
    if !(0..=600).contains(&sent.duration_minutes) {
        v.add(at("duration_minutes"), "must be 0 to 600");
    }
    for (i, p) in sent.problems.iter().enumerate() {
        let pf = |name: &str| format!("{field}.problems[{i}].{name}");
        let category_ok = !p.category.is_empty()
            && p.category.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !category_ok {
            v.add(pf("category"), "is required: lowercase letters, digits and _");
        }
        if p.description.trim().is_empty() {
            v.add(pf("description"), "is required");
        }
        if p.location.is_some() {
            v.check(check_point(&pf("location"), p.location.as_ref()));
        }
    }
    if !sent.follow_up_date.is_empty() {
        v.check(parse_date(&at("follow_up_date"), &sent.follow_up_date));
    }
    v.finish()?;
    let (Some(id), Some(household), Some(worker), Some(visit_time)) = (id, household, worker, visit_time) else {
        return Err(Error::invalid(field, "is incomplete"));
    };
    let name = VisitName::new(street.clone(), id);
    let visit = Visit {
        name: name.to_string(),
        household: household.to_string(),
        worker: worker.to_string(),
        grid: String::new(),
        grid_revision: 0,
        kind: sent.kind,
        key_visit: sent.key_visit,
        visit_time: Some(time::to_timestamp(visit_time)),
        duration_minutes: sent.duration_minutes,
        notes: sent.notes.trim().to_owned(),
        mood: sent.mood,
        problems: sent
            .problems
            .iter()
            .map(|p| Problem {
                category: p.category.clone(),
                description: p.description.trim().to_owned(),
                location: p.location,
                issue: String::new(),
            })
            .collect(),
        follow_up_date: sent.follow_up_date.clone(),
        create_time: None,
        update_time: None,
    };
    Ok(Checked { name, household, worker, visit, visit_time })
}

/// The event of a recorded visit: names, kinds, times and categories, never its words.
pub(crate) fn recorded(visit: &Visit) -> VisitRecorded {
    VisitRecorded {
        visit: visit.name.clone(),
        household: visit.household.clone(),
        grid: visit.grid.clone(),
        worker: visit.worker.clone(),
        kind: visit.kind().as_str_name().to_owned(),
        key_visit: visit.key_visit,
        visit_time: visit.visit_time,
        problems: visit
            .problems
            .iter()
            .enumerate()
            .map(|(i, p)| RaisedProblem { index: i as i32, category: p.category.clone() })
            .collect(),
    }
}

/// Whose month a summary is.
enum Scope {
    Worker(UserName),
    Grid(GridName),
    Community(CommunityName),
}

fn to_summary(scope: &str, month: &Month, f: &Figures) -> MonthlySummary {
    MonthlySummary {
        scope: scope.to_owned(),
        month: month.text.clone(),
        visits: f.visits as i32,
        households: f.households as i32,
        households_covered: f.covered as i32,
        coverage_percent: percent(f.covered, f.households),
        key_households: f.key_households as i32,
        key_households_on_time: f.key_on_time as i32,
        key_on_time_percent: percent(f.key_on_time, f.key_households),
        problems_raised: f.problems as i32,
        days_with_records: f.days_with_records as i32,
        days_without_record: f.days_without_record as i32,
        ..Default::default()
    }
}

impl Grids {
    /// The figures of `month` for `scope`, from the roster and the visits.
    async fn figures(&self, street: &StreetId, scope: &Scope, month: &Month) -> Result<Figures> {
        let pool = self.writer.db().reader();
        let mut filter = VisitFilter::default();
        let grids = match scope {
            Scope::Worker(worker) => {
                filter.worker = worker.to_string();
                Some(store::grids_of_worker(pool, street, worker.as_str(), local_date(Utc::now())).await?)
            }
            Scope::Grid(grid) => {
                filter.community = grid.community_id().to_string();
                filter.grid = grid.id().to_string();
                Some(vec![(filter.community.clone(), filter.grid.clone())])
            }
            Scope::Community(community) => {
                filter.community = community.id().to_string();
                None
            }
        };
        let households: Vec<(String, Vec<String>)> = match grids {
            Some(grids) => store::households_of_grids(pool, street, &grids)
                .await?
                .into_iter()
                .map(|h| (h.name.id().to_string(), h.tags))
                .collect(),
            None => store::households_of_community(pool, street, &filter.community).await?,
        };
        let visits =
            store::visits_between(pool, street, &filter, &time::to_text(month.start), &time::to_text(month.until))
                .await?
                .into_iter()
                .filter_map(|(h, t, problems)| Some((h, time::from_text(&t)?, problems as u32)))
                .collect::<Vec<_>>();
        // Counting is plain arithmetic over a bounded month: a community's few thousand
        // households and their visits.
        Ok(summarise(month, &households, &visits, &self.policy))
    }

    /// The caller's own draft, and the figures as of now.
    async fn own_month(&self, caller: &Caller, parent: &str, month: &str) -> Result<(StreetId, UserName, Month)> {
        let street = StreetId::parse_parent("parent", parent)?;
        let (principal, reach) = self.reach(caller, &street).await?;
        if !reach.is_staff() {
            return Err(denied());
        }
        let month = Month::parse("month", month, Utc::now())?;
        Ok((street, principal.user_name(), month))
    }

    /// Records a checked visit, or finds it recorded before. The worker must look after the
    /// household's grid on the day of the visit (assigned, or covering that day); the street's
    /// admins and the community's cadres may record a visit for any worker.
    async fn record(
        &self,
        principal: &Principal,
        reach: &Reach,
        key: &RequestKey,
        checked: Checked,
    ) -> Result<Recorded> {
        let Checked { name, household, worker, mut visit, visit_time } = checked;
        let street = name.street().clone();
        let me = principal.user_name();
        let cadre = principal.has_role(Role::Admin) || principal.has_role(Role::Cadre);
        if worker != me && !cadre {
            return Err(denied());
        }
        let worker_grids = if principal.has_role(Role::GridWorker) && worker == me {
            store::grids_of_worker(self.writer.db().reader(), &street, me.as_str(), local_date(visit_time)).await?
        } else {
            Vec::new()
        };
        let mut existed = false;
        let answer = self
            .writer
            .write(key, async |c: &mut Change| {
                if let Some(before) = store::get_visit(&mut **c.tx(), &name).await? {
                    if before.worker != worker.as_str() {
                        return Err(Error::already_exists(name.to_string()));
                    }
                    existed = true;
                    return Ok(before.visit);
                }
                let h = store::get_household(&mut **c.tx(), &household).await?;
                let Some(h) = h else {
                    return Err(if reach.street { Error::not_found(household.to_string()) } else { denied() });
                };
                let by_worker = worker_grids.iter().any(|(c, g)| *c == h.place.community && *g == h.place.grid);
                let by_cadre = cadre && (reach.street || reach.communities.contains(&h.place.community));
                if !(by_worker || by_cadre) {
                    return Err(denied());
                }
                if !h.place.grid.is_empty() {
                    let grid_name = GridName::parse(
                        "grid",
                        &format!("streets/{street}/communities/{}/grids/{}", h.place.community, h.place.grid),
                    )?;
                    visit.grid = grid_name.to_string();
                    visit.grid_revision =
                        store::get_grid_in(c.tx(), &grid_name).await?.map(|g| g.revision).unwrap_or(0);
                }
                let now = Utc::now();
                visit.create_time = Some(time::to_timestamp(now));
                visit.update_time = visit.create_time;
                let record = VisitRecord {
                    name: name.clone(),
                    household: household.id().to_string(),
                    worker: worker.to_string(),
                    place: h.place.clone(),
                    visit: visit.clone(),
                };
                let at = time::to_text(visit_time);
                store::insert_visit(c.tx(), &record, &at, &time::to_text(now)).await?;
                store::note_visit(c.tx(), &household, &at).await?;
                c.emit(&name.to_string(), &recorded(&visit)).await?;
                Ok(visit.clone())
            })
            .await?;
        Ok(if existed { Recorded::Existing(answer) } else { Recorded::New(answer) })
    }

    /// Whether the caller may read `visit`: its worker, staff reaching its grid as it was, or a
    /// service that reads visits.
    fn sees_visit(caller: &Caller, reach: &Reach, visit: &VisitRecord) -> bool {
        if caller.service().is_some_and(|s| READERS.contains(&s.service.as_str())) {
            return true;
        }
        let me = caller.principal().map(Principal::resource_name).unwrap_or_default();
        visit.worker == me || reach.staff_reaches(&visit.place)
    }
}

#[tonic::async_trait]
impl VisitService for Grids {
    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn create_visit(&self, request: Request<CreateVisitRequest>) -> Result<Response<Visit>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let street = StreetId::parse_parent("parent", &req.parent)?;
        let (principal, reach) = self.reach(&caller, &street).await?;
        if !reach.is_staff() {
            return Err(denied().into());
        }
        let sent = req.visit.clone().unwrap_or_default();
        let checked = check_visit(principal, &street, &req.visit_id, "visit_id", &sent, "visit")?;
        let key = RequestKey::new(caller.key(), "CreateVisit", &req.request_id, &req)?;
        match self.record(principal, &reach, &key, checked).await? {
            Recorded::New(visit) => Ok(Response::new(visit)),
            Recorded::Existing(visit) => Ok(Response::new(visit)),
        }
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn get_visit(&self, request: Request<GetVisitRequest>) -> Result<Response<Visit>, Status> {
        let caller = self.caller(&request)?;
        let name = VisitName::parse("name", &request.get_ref().name)?;
        let reach = match caller.service() {
            Some(s) if READERS.contains(&s.service.as_str()) => Reach::default(),
            Some(_) => return Err(denied().into()),
            None => {
                let (_, reach) = self.reach(&caller, name.street()).await?;
                if !reach.is_staff() {
                    return Err(denied().into());
                }
                reach
            }
        };
        let found = store::get_visit(self.writer.db().reader(), &name).await?;
        match found {
            Some(v) if Self::sees_visit(&caller, &reach, &v) => Ok(Response::new(v.visit)),
            None if reach.street || caller.service().is_some() => Err(Error::not_found(name.to_string()).into()),
            _ => Err(denied().into()),
        }
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn list_visits(&self, request: Request<ListVisitsRequest>) -> Result<Response<ListVisitsResponse>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let street = StreetId::parse_parent("parent", &req.parent)?;
        let size = page::page_size(req.page_size, 50, 200)?;
        let (principal, reach) = self.reach(&caller, &street).await?;
        if !reach.is_staff() {
            return Err(denied().into());
        }
        let mut f = VisitFilter::default();
        for term in filter::parse(&req.filter, &["worker", "household", "grid", "day"])? {
            match term.field.as_str() {
                "day" => {
                    // A day of the diary (民情日记): the street's local day.
                    let day = parse_date("filter", &term.value)?;
                    let Some(start) = local_midnight(day) else {
                        return Err(Error::invalid("filter", "is not a day").into());
                    };
                    f.from = time::to_text(start);
                    f.to = time::to_text(start + Duration::days(1));
                }
                "worker" => f.worker = UserName::parse("filter", &term.value)?.to_string(),
                "household" => {
                    let h = HouseholdName::parse("filter", &term.value)?;
                    if h.street() != &street {
                        return Err(Error::invalid("filter", "names a household of another street").into());
                    }
                    f.household = h.id().to_string();
                }
                _ => {
                    let g = GridName::parse("filter", &term.value)?;
                    if g.street() != &street {
                        return Err(Error::invalid("filter", "names a grid of another street").into());
                    }
                    f.community = g.community_id().to_string();
                    f.grid = g.id().to_string();
                }
            }
        }
        // Who may list what: the street's staff anything; others their own visits, their
        // community's (cadres) or a grid they reach.
        let me = principal.resource_name();
        if !reach.street {
            let own = f.worker == me;
            let grid_ok = !f.grid.is_empty()
                && reach.staff_reaches(&Place { community: f.community.clone(), grid: f.grid.clone() });
            let household_ok = if f.household.is_empty() {
                false
            } else {
                let h = HouseholdName::new(street.clone(), Id::parse("filter", &f.household)?);
                store::get_household(self.writer.db().reader(), &h)
                    .await?
                    .is_some_and(|h| reach.staff_reaches(&h.place))
            };
            if !(own || grid_ok || household_ok) {
                match (reach.communities.first(), f.worker.is_empty() && f.grid.is_empty() && f.household.is_empty()) {
                    (Some(community), true) => f.community = community.clone(),
                    (None, true) => f.worker = me.clone(),
                    _ => return Err(denied().into()),
                }
            }
        }
        let query = format!(
            "ListVisits|{street}|{}|{}|{}|{}|{}|{}",
            f.worker,
            f.household,
            f.community,
            f.grid,
            f.from,
            caller.key()
        );
        let after = self.pages.decode_position(&req.page_token, &query, 2)?.map(|p| (p[0].clone(), p[1].clone()));
        let mut rows = store::list_visits(self.writer.db().reader(), &street, &f, after, size + 1).await?;
        let next_page_token =
            self.pages.next_page(&query, &mut rows, size, |(v, t)| vec![t.clone(), v.name.id().to_string()]);
        Ok(Response::new(ListVisitsResponse {
            visits: rows.into_iter().map(|(v, _)| v.visit).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent, visits = request.get_ref().visits.len()))]
    async fn sync_visits(&self, request: Request<SyncVisitsRequest>) -> Result<Response<SyncVisitsResponse>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let street = StreetId::parse_parent("parent", &req.parent)?;
        let (principal, reach) = self.reach(&caller, &street).await?;
        if !reach.is_staff() {
            return Err(denied().into());
        }
        if req.visits.is_empty() {
            return Err(Error::invalid("visits", "send at least one visit").into());
        }
        let mut results = Vec::with_capacity(req.visits.len());
        for (i, synced) in req.visits.iter().enumerate() {
            let field = format!("visits[{i}]");
            let sent = synced.visit.clone().unwrap_or_default();
            let rejected = |reason: String| SyncResult {
                visit_id: synced.visit_id.clone(),
                outcome: Outcome::Rejected as i32,
                reason,
                visit: None,
            };
            if synced.visit_id.is_empty() {
                results.push(rejected(format!("{field}.visit_id: is required")));
                continue;
            }
            let outcome = match check_visit(
                principal,
                &street,
                &synced.visit_id,
                &format!("{field}.visit_id"),
                &sent,
                &format!("{field}.visit"),
            ) {
                Ok(checked) => self.record(principal, &reach, &RequestKey::unkeyed("SyncVisits"), checked).await,
                Err(e) => Err(e),
            };
            results.push(match outcome {
                Ok(Recorded::New(visit)) => SyncResult {
                    visit_id: synced.visit_id.clone(),
                    outcome: Outcome::Accepted as i32,
                    reason: String::new(),
                    visit: Some(visit),
                },
                Ok(Recorded::Existing(visit)) => SyncResult {
                    visit_id: synced.visit_id.clone(),
                    outcome: Outcome::Duplicate as i32,
                    reason: String::new(),
                    visit: Some(visit),
                },
                Err(e) => match e.code() {
                    tonic::Code::InvalidArgument => rejected(
                        e.violations()
                            .iter()
                            .map(|fv| format!("{}: {}", fv.field, fv.description))
                            .collect::<Vec<_>>()
                            .join("; "),
                    ),
                    tonic::Code::PermissionDenied | tonic::Code::NotFound => rejected(format!(
                        "{field}.visit.household: you do not look after this household on the visit's day"
                    )),
                    tonic::Code::AlreadyExists => {
                        rejected(format!("{field}.visit_id: is taken by another worker's visit"))
                    }
                    // Anything else (the store unavailable) fails the batch: the phone sends it
                    // again, and what was recorded comes back as DUPLICATE.
                    _ => return Err(e.into()),
                },
            });
        }
        Ok(Response::new(SyncVisitsResponse { results }))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent, year = request.get_ref().year, month = request.get_ref().month))]
    async fn get_monthly_summary(
        &self,
        request: Request<GetMonthlySummaryRequest>,
    ) -> Result<Response<MonthlySummary>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let street = StreetId::parse_parent("parent", &req.parent)?;
        let (principal, reach) = self.reach(&caller, &street).await?;
        if !reach.is_staff() {
            return Err(denied().into());
        }
        let month = Month::any("month", &month_text(req.year, req.month), Utc::now())?;
        let scope = if !req.grid.is_empty() {
            let grid = GridName::parse("grid", &req.grid)?;
            if grid.street() != &street
                || !reach
                    .staff_reaches(&Place { community: grid.community_id().to_string(), grid: grid.id().to_string() })
            {
                return Err(denied().into());
            }
            Scope::Grid(grid)
        } else if !req.community.is_empty() {
            let community = CommunityName::parse("community", &req.community)?;
            if community.street() != &street
                || !(reach.street || reach.communities.contains(&community.id().to_string()))
            {
                return Err(denied().into());
            }
            Scope::Community(community)
        } else {
            let worker =
                if req.worker.is_empty() { principal.user_name() } else { UserName::parse("worker", &req.worker)? };
            if worker != principal.user_name() {
                let grids =
                    store::grids_of_worker(self.writer.db().reader(), &street, worker.as_str(), local_date(Utc::now()))
                        .await?;
                let over =
                    grids.iter().any(|(c, g)| reach.staff_reaches(&Place { community: c.clone(), grid: g.clone() }));
                if !(reach.street || (over && !reach.communities.is_empty())) {
                    return Err(denied().into());
                }
            }
            Scope::Worker(worker)
        };
        let name = match &scope {
            Scope::Worker(w) => w.to_string(),
            Scope::Grid(g) => g.to_string(),
            Scope::Community(c) => c.to_string(),
        };
        if let Scope::Worker(worker) = &scope {
            let stored = store::get_summary(self.writer.db().reader(), &street, worker.as_str(), &month.text).await?;
            if let Some(stored) = &stored
                && let Some(frozen) = &stored.figures
            {
                return Ok(Response::new(frozen.clone()));
            }
            let figures = self.figures(&street, &scope, &month).await?;
            let mut summary = to_summary(&name, &month, &figures);
            summary.state = State::Draft as i32;
            summary.notes = stored.as_ref().map(|s| s.notes.clone()).unwrap_or_default();
            summary.etag = civic_kit::idempotency::etag(stored.map(|s| s.version).unwrap_or(0));
            return Ok(Response::new(summary));
        }
        let figures = self.figures(&street, &scope, &month).await?;
        Ok(Response::new(to_summary(&name, &month, &figures)))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent, year = request.get_ref().year, month = request.get_ref().month))]
    async fn update_monthly_summary(
        &self,
        request: Request<UpdateMonthlySummaryRequest>,
    ) -> Result<Response<MonthlySummary>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let (street, worker, month) = self.own_month(&caller, &req.parent, &month_text(req.year, req.month)).await?;
        let now = Utc::now();
        let notes = req.notes.trim().to_owned();
        let figures = self.figures(&street, &Scope::Worker(worker.clone()), &month).await?;
        let out = self
            .writer
            .write(&RequestKey::unkeyed("UpdateMonthlySummary"), async |c: &mut Change| {
                let stored = store::get_summary(&mut **c.tx(), &street, worker.as_str(), &month.text).await?;
                let version = stored.as_ref().map(|s| s.version).unwrap_or(0);
                check_etag_of(&req.etag, version, &month.text)?;
                if stored.as_ref().is_some_and(|s| s.figures.is_some()) {
                    return Err(Error::failed_precondition(
                        "SUMMARY_SUBMITTED",
                        format!("the summary of {} was submitted", month.text),
                    ));
                }
                let record = store::SummaryRecord {
                    state: "DRAFT".into(),
                    notes: notes.clone(),
                    figures: None,
                    submitted_at: String::new(),
                    version: version + 1,
                };
                store::put_summary(c.tx(), &street, worker.as_str(), &month.text, &record, &time::to_text(now)).await?;
                let mut summary = to_summary(worker.as_str(), &month, &figures);
                summary.state = State::Draft as i32;
                summary.notes = notes.clone();
                summary.etag = civic_kit::idempotency::etag(version + 1);
                Ok(summary)
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent, year = request.get_ref().year, month = request.get_ref().month))]
    async fn submit_monthly_summary(
        &self,
        request: Request<SubmitMonthlySummaryRequest>,
    ) -> Result<Response<MonthlySummary>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let (street, worker, month) = self.own_month(&caller, &req.parent, &month_text(req.year, req.month)).await?;
        let key = RequestKey::new(caller.key(), "SubmitMonthlySummary", &req.request_id, &req)?;
        let now = Utc::now();
        let figures = self.figures(&street, &Scope::Worker(worker.clone()), &month).await?;
        let out = self
            .writer
            .write(&key, async |c: &mut Change| {
                let stored = store::get_summary(&mut **c.tx(), &street, worker.as_str(), &month.text).await?;
                let version = stored.as_ref().map(|s| s.version).unwrap_or(0);
                check_etag_of(&req.etag, version, &month.text)?;
                if stored.as_ref().is_some_and(|s| s.figures.is_some()) {
                    return Err(Error::failed_precondition(
                        "SUMMARY_SUBMITTED",
                        format!("the summary of {} was submitted", month.text),
                    ));
                }
                let on_time = local_date(now) <= month.due_day;
                let mut summary = to_summary(worker.as_str(), &month, &figures);
                summary.state = State::Submitted as i32;
                summary.notes = stored.as_ref().map(|s| s.notes.clone()).unwrap_or_default();
                summary.submit_time = Some(time::to_timestamp(now));
                summary.submitted_on_time = on_time;
                summary.etag = civic_kit::idempotency::etag(version + 1);
                let record = store::SummaryRecord {
                    state: "SUBMITTED".into(),
                    notes: summary.notes.clone(),
                    figures: Some(summary.clone()),
                    submitted_at: time::to_text(now),
                    version: version + 1,
                };
                store::put_summary(c.tx(), &street, worker.as_str(), &month.text, &record, &time::to_text(now)).await?;
                let event = DiarySubmitted {
                    worker: worker.to_string(),
                    street: street.parent(),
                    month: month.text.clone(),
                    visits: summary.visits,
                    households: summary.households,
                    households_covered: summary.households_covered,
                    key_households: summary.key_households,
                    key_households_on_time: summary.key_households_on_time,
                    problems_raised: summary.problems_raised,
                    days_without_record: summary.days_without_record,
                    on_time,
                    submit_time: summary.submit_time,
                };
                c.emit(&format!("{worker}/{}", month.text), &event).await?;
                Ok(summary)
            })
            .await?;
        Ok(Response::new(out))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn list_due_visits(
        &self,
        request: Request<ListDueVisitsRequest>,
    ) -> Result<Response<ListDueVisitsResponse>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let street = StreetId::parse_parent("parent", &req.parent)?;
        let size = page::page_size(req.page_size, 100, 500)?;
        if !(0..=31).contains(&req.window_days) {
            return Err(Error::invalid("window_days", "must be 0 to 31").into());
        }
        let window = if req.window_days == 0 { 7 } else { i64::from(req.window_days) };
        let (principal, reach) = self.reach(&caller, &street).await?;
        if !reach.is_staff() {
            return Err(denied().into());
        }
        let worker =
            if req.worker.is_empty() { principal.user_name() } else { UserName::parse("worker", &req.worker)? };
        let now = Utc::now();
        let grids =
            store::grids_of_worker(self.writer.db().reader(), &street, worker.as_str(), local_date(now)).await?;
        let grids: Vec<_> = if worker == principal.user_name() {
            grids
        } else {
            // Another worker's list: for the staff over those grids only.
            grids
                .into_iter()
                .filter(|(c, g)| reach.staff_reaches(&Place { community: c.clone(), grid: g.clone() }))
                .collect()
        };
        if worker != principal.user_name() && grids.is_empty() && !reach.street {
            return Err(denied().into());
        }
        let households = store::households_of_grids(self.writer.db().reader(), &street, &grids).await?;
        let horizon = now + Duration::days(window);
        let mut due: Vec<DueVisit> = households
            .iter()
            .filter_map(|h| {
                let d = self.policy.due(&h.tags, h.last_visit, h.created);
                (d.due_time <= horizon).then(|| DueVisit {
                    household: h.name.to_string(),
                    grid: format!("streets/{street}/communities/{}/grids/{}", h.place.community, h.place.grid),
                    address: [h.building.as_str(), h.address.as_str()]
                        .iter()
                        .filter(|s| !s.is_empty())
                        .copied()
                        .collect::<Vec<_>>()
                        .join(" "),
                    last_visit_time: h.last_visit.map(time::to_timestamp),
                    due_time: Some(time::to_timestamp(d.due_time)),
                    overdue: d.due_time < now,
                    interval_days: d.interval_days as i32,
                    reason: d.reason,
                })
            })
            .collect();
        // Overdue first, the longest overdue first; then by due time. Both are due-time order.
        due.sort_by(|a, b| {
            let key = |d: &DueVisit| d.due_time.map(|t| (t.seconds, t.nanos)).unwrap_or_default();
            key(a).cmp(&key(b)).then_with(|| a.household.cmp(&b.household))
        });
        let total_due = due.len() as i32;
        due.truncate(size);
        Ok(Response::new(ListDueVisitsResponse { due_visits: due, total_due }))
    }
}

/// Checks an etag against a draft's version (0: no draft yet).
fn check_etag_of(sent: &str, version: i64, month: &str) -> Result<()> {
    civic_kit::idempotency::check_etag(sent, version, &format!("the summary of {month}"))
}

/// `YYYY-MM` of a year and month as requests carry them (their ranges checked on decoding).
fn month_text(year: i32, month: i32) -> String {
    format!("{year:04}-{month:02}")
}
