//! The gRPC API: authorise (before anything is read), validate, then schemes and reviews.

use chrono::Utc;
use civic_kit::auth::{Caller, Principal, Role};
use civic_kit::error::{Error, Result};
use civic_kit::idempotency::RequestKey;
use civic_kit::names::{CommunityName, Id, StreetId};
use civic_kit::{filter, page, time};
use civic_proto::assessment::assessment_service_server::AssessmentService;
use civic_proto::assessment::review::State;
use civic_proto::assessment::*;
use tonic::{Request, Response, Status};

use crate::Assessment;
use crate::reviews::{ReviewName, parse_month_name};
use crate::score::Rules;
use crate::store::{self, ReviewFilter, ReviewRecord, SchemeRecord};

/// What a caller reaches of a street's reviews.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reach {
    /// An admin, or a cadre whose token names no community: every review; reviews them.
    Street,
    /// A cadre of a community (its id): its workers' reviews; reviews them.
    Community(String),
    /// A grid worker: their own reviews (their user id), read only.
    Own(String),
}

fn denied() -> Error {
    Error::permission_denied("not a review you may see")
}

impl Reach {
    /// Whether the caller reviews (adjusts and approves).
    fn reviews(&self) -> bool {
        !matches!(self, Reach::Own(_))
    }

    /// PERMISSION_DENIED unless the caller may adjust and approve `r`.
    pub(crate) fn may_review(&self, r: &ReviewRecord) -> Result<()> {
        match self {
            Reach::Street => Ok(()),
            Reach::Community(c) if *c == r.community => Ok(()),
            _ => Err(denied()),
        }
    }

    /// PERMISSION_DENIED unless the caller may read `r`.
    fn may_read(&self, r: &ReviewRecord) -> Result<()> {
        match self {
            Reach::Own(w) if *w == r.worker => Ok(()),
            Reach::Own(_) => Err(denied()),
            _ => self.may_review(r),
        }
    }

    /// What a missing review is to the caller: NOT_FOUND to those who reach the whole street,
    /// PERMISSION_DENIED to others (which never says whether it exists).
    pub(crate) fn missing(&self, name: &str) -> Error {
        if *self == Reach::Street { Error::not_found(name) } else { denied() }
    }
}

/// The user calling in `street` and what they reach: UNAUTHENTICATED without a token,
/// PERMISSION_DENIED for another street's user, a service, or a role without reviews.
fn reach<'c>(caller: &'c Caller, street: &StreetId) -> Result<(&'c Principal, Reach)> {
    let (p, reviewer) = reviewer(caller, street)?;
    match reviewer {
        Some(reach) => Ok((p, reach)),
        None if p.has_role(Role::GridWorker) => Ok((p, Reach::Own(p.subject.clone()))),
        None => Err(Error::permission_denied("reviews are for the street's cadres and grid workers")),
    }
}

/// The user calling in `street` and what they reach as a reviewer (an admin the street, a
/// cadre their community or the street), `None` for anyone else of the street: UNAUTHENTICATED
/// without a token, PERMISSION_DENIED for another street's user or a service.
pub(crate) fn reviewer<'c>(caller: &'c Caller, street: &StreetId) -> Result<(&'c Principal, Option<Reach>)> {
    let p = caller.require()?;
    if !p.in_street(street.as_str()) {
        return Err(Error::permission_denied("not of this street"));
    }
    let reach = if p.has_role(Role::Admin) {
        Some(Reach::Street)
    } else if p.has_role(Role::Cadre) {
        Some(p.community.clone().map_or(Reach::Street, Reach::Community))
    } else {
        None
    };
    Ok((p, reach))
}

fn scheme_to_wire(street: &StreetId, r: &SchemeRecord) -> Scheme {
    Scheme { name: format!("streets/{street}/schemes/{}", r.id), ..r.scheme.clone() }
}

/// A scheme's name parsed: its street and id.
fn scheme_name(field: &str, name: &str) -> Result<(StreetId, String)> {
    let ids = civic_kit::names::parse(field, name, &["streets", "schemes"])?;
    Ok((StreetId::parse(field, ids[0])?, ids[1].to_owned()))
}

impl Assessment {
    fn caller<T>(&self, request: &Request<T>) -> Result<Caller> {
        self.auth.caller(request.metadata())
    }

    async fn create_scheme(&self, caller: &Caller, req: CreateSchemeRequest) -> Result<Scheme> {
        let street = StreetId::parse_parent("parent", &req.parent)?;
        let p = caller.require()?;
        if !(p.in_street(street.as_str()) && p.has_role(Role::Admin)) {
            return Err(Error::permission_denied("the street's admins edit schemes"));
        }
        let id = if req.scheme_id.is_empty() { Id::generate('s') } else { Id::parse("scheme_id", &req.scheme_id)? };
        let sent = req.scheme.clone().unwrap_or_default();
        let rules = Rules::check(&sent)?;
        let now = Utc::now();
        let scheme = Scheme {
            name: format!("streets/{street}/schemes/{id}"),
            display_name: sent.display_name.trim().to_owned(),
            effective_month: sent.effective_month.clone(),
            weights: sent
                .weights
                .iter()
                .zip(&rules.weights)
                .map(|(w, r)| scheme::Weight { target: r.2, ..*w })
                .collect(),
            deductions: sent.deductions.clone(),
            floor: rules.floor,
            cap: rules.cap,
            star_thresholds: rules.thresholds.to_vec(),
            min_households: sent.min_households,
            min_issues: sent.min_issues,
            year_end: sent.year_end,
            created_by: p.resource_name(),
            create_time: Some(time::to_timestamp(now)),
        };
        let record = SchemeRecord { id: id.to_string(), scheme };
        let key = RequestKey::new(caller.key(), "CreateScheme", &req.request_id, &req)?;
        let street = &street;
        self.writer
            .write(&key, async |c| {
                store::insert_scheme(c.tx(), street, &record, &time::to_text(now)).await?;
                Ok(scheme_to_wire(street, &record))
            })
            .await
    }

    async fn get_scheme(&self, caller: &Caller, req: GetSchemeRequest) -> Result<Scheme> {
        let (street, id) = scheme_name("name", &req.name)?;
        staff_of(caller, &street)?;
        let found = store::get_scheme(self.writer.db().reader(), &street, &id).await?;
        found.map(|r| scheme_to_wire(&street, &r)).ok_or_else(|| Error::not_found(req.name.clone()))
    }

    async fn list_schemes(&self, caller: &Caller, req: ListSchemesRequest) -> Result<ListSchemesResponse> {
        let street = StreetId::parse_parent("parent", &req.parent)?;
        staff_of(caller, &street)?;
        let size = page::page_size(req.page_size, 20, 100)?;
        let query = format!("ListSchemes|{street}");
        let after = self.pages.decode_position(&req.page_token, &query, 2)?.map(|p| (p[0].clone(), p[1].clone()));
        let mut records = store::list_schemes(self.writer.db().reader(), &street, after, size + 1).await?;
        let next_page_token =
            self.pages.next_page(&query, &mut records, size, |r| vec![r.scheme.effective_month.clone(), r.id.clone()]);
        Ok(ListSchemesResponse {
            schemes: records.iter().map(|r| scheme_to_wire(&street, r)).collect(),
            next_page_token,
        })
    }

    async fn recompute_month(&self, caller: &Caller, req: RecomputeMonthRequest) -> Result<RecomputeMonthResponse> {
        let (street, month) = parse_month_name("name", &req.name)?;
        let (_, reach) = reach(caller, &street)?;
        if reach != Reach::Street {
            return Err(Error::permission_denied("the street's admins and cadres recompute a month"));
        }
        let key = RequestKey::new(caller.key(), "RecomputeMonth", &req.request_id, &req)?;
        self.recompute(&key, &street, month).await
    }

    async fn get_review(&self, caller: &Caller, req: GetReviewRequest) -> Result<Review> {
        let name = ReviewName::parse("name", &req.name)?;
        let (_, reach) = reach(caller, &name.street)?;
        if let Reach::Own(w) = &reach
            && *w != name.worker
        {
            return Err(denied());
        }
        let found = store::get_review(self.writer.db().reader(), &name.street, name.month, &name.worker).await?;
        let shown = ReviewName::of(&name.street, name.month, &name.worker);
        let r = found.ok_or_else(|| reach.missing(&shown))?;
        reach.may_read(&r)?;
        Ok(r.review)
    }

    async fn list_reviews(&self, caller: &Caller, req: ListReviewsRequest) -> Result<ListReviewsResponse> {
        let (street, month) = parse_month_name("parent", &req.parent)?;
        let (_, reach) = reach(caller, &street)?;
        let size = page::page_size(req.page_size, 50, 200)?;
        let mut f = ReviewFilter::default();
        for term in filter::parse(&req.filter, &["community", "state"])? {
            match term.field.as_str() {
                "community" => {
                    let c = CommunityName::parse("filter", &term.value)?;
                    if c.street() != &street {
                        return Err(Error::invalid("filter", "the community must be of the month's street"));
                    }
                    f.community = c.id().to_string();
                }
                _ => {
                    let state = State::from_str_name(&term.value)
                        .filter(|s| *s != State::Unspecified)
                        .ok_or_else(|| Error::invalid("filter", "state must be COMPUTED, ADJUSTED or APPROVED"))?;
                    f.state = state.as_str_name().to_owned();
                }
            }
        }
        match &reach {
            Reach::Street => {}
            Reach::Community(c) => {
                if !f.community.is_empty() && f.community != *c {
                    return Err(denied());
                }
                f.community = c.clone();
            }
            Reach::Own(w) => f.worker = w.clone(),
        }
        let query = format!("ListReviews|{street}|{month}|{}|{}|{}", f.worker, f.community, f.state);
        let after = self.pages.decode_position(&req.page_token, &query, 1)?.map(|p| p[0].clone()).unwrap_or_default();
        let mut records = store::list_reviews(self.writer.db().reader(), &street, month, &f, &after, size + 1).await?;
        let next_page_token = self.pages.next_page(&query, &mut records, size, |r| vec![r.worker.clone()]);
        Ok(ListReviewsResponse { reviews: records.into_iter().map(|r| r.review).collect(), next_page_token })
    }

    async fn get_bulletin(&self, caller: &Caller, req: GetBulletinRequest) -> Result<Bulletin> {
        let (street, month) = parse_month_name("name", &req.name)?;
        let (_, reach) = reach(caller, &street)?;
        let asked = if req.community.is_empty() {
            None
        } else {
            let c = CommunityName::parse("community", &req.community)?;
            if c.street() != &street {
                // Another street's community is not one the caller reaches here.
                return Err(denied());
            }
            Some(c.id().to_string())
        };
        let pool = self.writer.db().reader();
        // A grid worker reads the bulletin of their own review's community.
        let reached = match &reach {
            Reach::Street => asked,
            Reach::Community(c) => Some(c.clone()),
            Reach::Own(w) => match store::get_review(pool, &street, month, w).await? {
                Some(own) => Some(own.community),
                None => return Err(denied()),
            },
        };
        if let (Some(a), Some(r)) = (req.community.rsplit('/').next().filter(|_| !req.community.is_empty()), &reached)
            && a != r
        {
            return Err(denied());
        }
        let reviews: Vec<ReviewRecord> = store::month_reviews(pool, &street, month)
            .await?
            .into_iter()
            .filter(|r| reached.as_ref().is_none_or(|c| *c == r.community))
            .collect();
        let rules = match store::scheme_in_force(pool, &street, month).await? {
            Some(s) => Rules::check(&s.scheme).ok(),
            None => None,
        };
        Ok(crate::bulletin::bulletin(req.name.clone(), &reviews, rules.as_ref()))
    }

    async fn get_month_rates(&self, caller: &Caller, req: GetMonthRatesRequest) -> Result<MonthRates> {
        let (street, month) = parse_month_name("name", &req.name)?;
        let only = match reach(caller, &street)? {
            (_, Reach::Street) => None,
            (_, Reach::Community(c)) => Some(c),
            (_, Reach::Own(_)) => return Err(Error::permission_denied("the street's cadres read its rates")),
        };
        let (whole, communities) = crate::bulletin::rates(
            self.writer.db().reader(),
            &street,
            month,
            self.calendar.offset(),
            self.settings.review_window,
            only.as_deref(),
        )
        .await?;
        Ok(MonthRates { name: req.name.clone(), street: only.is_none().then_some(whole), communities })
    }

    async fn year_end(&self, caller: &Caller, parent: &str, year: i32, community: &str) -> Result<YearEndEvaluation> {
        let street = StreetId::parse_parent("parent", parent)?;
        let (_, reach) = reach(caller, &street)?;
        if !(2000..=2999).contains(&year) {
            return Err(Error::invalid("year", "must be 2000 to 2999"));
        }
        let asked = if community.is_empty() {
            None
        } else {
            let c = CommunityName::parse("community", community)?;
            if c.street() != &street {
                return Err(denied());
            }
            Some(c.id().to_string())
        };
        if let (Reach::Community(c), Some(a)) = (&reach, &asked)
            && a != c
        {
            return Err(denied());
        }
        let pool = self.writer.db().reader();
        let (scheme, rules, combine) = crate::yearend::scheme_of(pool, &street, year).await?;
        let (reviews, democratic) = crate::yearend::gather(pool, &street, year).await?;
        let mut evaluation = crate::yearend::evaluate(&street, year, &scheme, &rules, &combine, reviews, &democratic);
        let community_of =
            |e: &year_end_evaluation::Entry| e.community.rsplit('/').next().unwrap_or_default().to_owned();
        evaluation.entries.retain(|e| match &reach {
            Reach::Street => asked.as_ref().is_none_or(|a| *a == community_of(e)),
            Reach::Community(c) => *c == community_of(e),
            Reach::Own(w) => e.worker.strip_prefix("users/") == Some(w.as_str()),
        });
        Ok(evaluation)
    }

    async fn adjust_review(&self, caller: &Caller, req: AdjustReviewRequest) -> Result<Review> {
        let name = ReviewName::parse("name", &req.name)?;
        let (p, reach) = reach(caller, &name.street)?;
        if !reach.reviews() {
            return Err(denied());
        }
        let mut v = civic_kit::error::Violations::new();
        if !(req.points.is_finite() && req.points != 0.0 && (-100.0..=100.0).contains(&req.points)) {
            v.add("points", "must be -100 to 100, not 0");
        }
        let reason = req.reason.trim();
        if reason.is_empty() {
            v.add("reason", "is required: say why");
        }
        v.finish()?;
        let adjustment = Adjustment {
            points: crate::score::round2(req.points),
            reason: reason.to_owned(),
            adjusted_by: p.resource_name(),
            adjust_time: Some(time::to_timestamp(Utc::now())),
        };
        let key = RequestKey::new(caller.key(), "AdjustReview", &req.request_id, &req)?;
        self.adjust(&key, &name, &req.etag, adjustment, &reach).await
    }

    async fn approve_review(&self, caller: &Caller, req: ApproveReviewRequest) -> Result<Review> {
        let name = ReviewName::parse("name", &req.name)?;
        let (p, reach) = reach(caller, &name.street)?;
        if !reach.reviews() {
            return Err(denied());
        }
        let key = RequestKey::new(caller.key(), "ApproveReview", &req.request_id, &req)?;
        self.approve(&key, &name, &req.etag, &p.resource_name(), &reach).await
    }
}

/// PERMISSION_DENIED unless the caller is of the street's staff (schemes are read by all of it).
fn staff_of(caller: &Caller, street: &StreetId) -> Result<()> {
    let p = caller.require()?;
    if p.is_staff_of(street.as_str()) {
        Ok(())
    } else {
        Err(Error::permission_denied("the street's staff read schemes"))
    }
}

#[tonic::async_trait]
impl AssessmentService for Assessment {
    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn create_scheme(&self, request: Request<CreateSchemeRequest>) -> Result<Response<Scheme>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Assessment::create_scheme(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn get_scheme(&self, request: Request<GetSchemeRequest>) -> Result<Response<Scheme>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Assessment::get_scheme(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn list_schemes(
        &self,
        request: Request<ListSchemesRequest>,
    ) -> Result<Response<ListSchemesResponse>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Assessment::list_schemes(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn recompute_month(
        &self,
        request: Request<RecomputeMonthRequest>,
    ) -> Result<Response<RecomputeMonthResponse>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Assessment::recompute_month(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn get_review(&self, request: Request<GetReviewRequest>) -> Result<Response<Review>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Assessment::get_review(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn list_reviews(
        &self,
        request: Request<ListReviewsRequest>,
    ) -> Result<Response<ListReviewsResponse>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Assessment::list_reviews(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn get_bulletin(&self, request: Request<GetBulletinRequest>) -> Result<Response<Bulletin>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Assessment::get_bulletin(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn get_month_rates(&self, request: Request<GetMonthRatesRequest>) -> Result<Response<MonthRates>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Assessment::get_month_rates(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn create_survey(&self, request: Request<CreateSurveyRequest>) -> Result<Response<Survey>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Assessment::create_survey(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn get_survey(&self, request: Request<GetSurveyRequest>) -> Result<Response<Survey>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Assessment::get_survey(self, &request, &caller).await?))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent))]
    async fn list_surveys(
        &self,
        request: Request<ListSurveysRequest>,
    ) -> Result<Response<ListSurveysResponse>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Assessment::list_surveys(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn answer_survey(
        &self,
        request: Request<AnswerSurveyRequest>,
    ) -> Result<Response<AnswerSurveyResponse>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Assessment::answer_survey(self, &request, &caller).await?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn close_survey(&self, request: Request<CloseSurveyRequest>) -> Result<Response<Survey>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Assessment::close_survey(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn get_survey_results(
        &self,
        request: Request<GetSurveyResultsRequest>,
    ) -> Result<Response<SurveyResults>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Assessment::survey_results(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent, year = request.get_ref().year))]
    async fn get_year_end(&self, request: Request<GetYearEndRequest>) -> Result<Response<YearEndEvaluation>, Status> {
        let caller = self.caller(&request)?;
        let req = request.get_ref();
        Ok(Response::new(self.year_end(&caller, &req.parent, req.year, &req.community).await?))
    }

    #[tracing::instrument(skip_all, fields(parent = %request.get_ref().parent, year = request.get_ref().year))]
    async fn export_year_end(
        &self,
        request: Request<ExportYearEndRequest>,
    ) -> Result<Response<civic_proto::google::api::HttpBody>, Status> {
        let caller = self.caller(&request)?;
        let req = request.get_ref();
        let evaluation = self.year_end(&caller, &req.parent, req.year, &req.community).await?;
        Ok(Response::new(match req.format() {
            export_year_end_request::Format::Html => crate::yearend::html(&evaluation),
            _ => crate::yearend::csv(&evaluation),
        }))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn adjust_review(&self, request: Request<AdjustReviewRequest>) -> Result<Response<Review>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Assessment::adjust_review(self, &caller, request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn approve_review(&self, request: Request<ApproveReviewRequest>) -> Result<Response<Review>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(Assessment::approve_review(self, &caller, request.into_inner()).await?))
    }
}
