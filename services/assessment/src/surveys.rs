//! Surveys: satisfaction surveys of a community's residents (满意度测评) and democratic reviews of
//! a grid worker (民主评议) — opened by the community's cadres, answered once by each eligible
//! person, closed, and read as results per question only from a minimum number of answers. Who
//! answered is kept apart from what they answered (see the migration).
//!
//! Eligibility: a democratic review's named reviewers; a satisfaction survey's residents of its
//! grids, as the grid service tells them — their own households, asked with their own token.

use std::time::Duration;

use chrono::{DateTime, Utc};
use civic_kit::auth::{Caller, Role};
use civic_kit::error::{Error, Result, Violations};
use civic_kit::idempotency::{RequestKey, check_etag, etag};
use civic_kit::names::{CommunityName, GridName, Id, StreetId, UserName};
use civic_kit::write::Change;
use civic_kit::{filter, page, time};
use civic_proto::assessment::survey::{Kind, State};
use civic_proto::assessment::survey_results::QuestionResult;
use civic_proto::assessment::*;
use prost::Message;
use sha2::{Digest, Sha256};
use tonic::Code;

use crate::Assessment;
use crate::api::Reach;
use crate::score::{Month, round2};

/// How long an answer waits for the grid service to say where the resident lives.
const GRID_TIMEOUT: Duration = Duration::from_secs(2);

/// A survey as stored.
#[derive(Debug, Clone, PartialEq)]
struct Record {
    street: StreetId,
    id: String,
    survey: Survey,
    rating_sum: i64,
    rating_count: i64,
    version: i64,
}

impl Record {
    fn name(&self) -> String {
        format!("streets/{}/surveys/{}", self.street, self.id)
    }

    fn community_id(&self) -> &str {
        self.survey.community.rsplit('/').next().unwrap_or_default()
    }

    fn to_wire(&self) -> Survey {
        Survey { name: self.name(), etag: etag(self.version), ..self.survey.clone() }
    }
}

fn survey_name(field: &str, name: &str) -> Result<(StreetId, String)> {
    let ids = civic_kit::names::parse(field, name, &["streets", "surveys"])?;
    Ok((StreetId::parse(field, ids[0])?, ids[1].to_owned()))
}

fn denied() -> Error {
    Error::permission_denied("not a survey you may reach")
}

/// Checks a new survey; the grids' `(community, grid)` ids.
fn check(s: &Survey, street: &StreetId, floor: u32) -> Result<Vec<(String, String)>> {
    let mut v = Violations::new();
    if s.display_name.trim().is_empty() {
        v.add("survey.display_name", "is required");
    }
    if Month::parse("survey.month", &s.month).is_err() {
        v.add("survey.month", "must be a month, YYYY-MM");
    }
    let community = v.check(CommunityName::parse("survey.community", &s.community));
    if community.as_ref().is_some_and(|c| c.street() != street) {
        v.add("survey.community", "must be a community of the street");
    }
    if s.questions.is_empty() || s.questions.iter().any(|q| q.trim().is_empty()) {
        v.add("survey.questions", "give one to twenty questions, none empty");
    }
    if !(0..=10_000).contains(&s.min_answers) || (s.min_answers != 0 && (s.min_answers as u32) < floor) {
        v.add("survey.min_answers", format!("must be {floor} to 10000 (the street's floor; {floor} when unset)"));
    }
    let mut grids = Vec::new();
    match s.kind() {
        Kind::Unspecified => v.add("survey.kind", "is required: SATISFACTION or DEMOCRATIC_REVIEW"),
        Kind::Satisfaction => {
            if s.grids.is_empty() {
                v.add("survey.grids", "name the grids whose residents answer");
            }
            if !s.reviewers.is_empty() {
                v.add("survey.reviewers", "a satisfaction survey is answered by the grids' residents");
            }
            for (i, g) in s.grids.iter().enumerate() {
                match GridName::parse(&format!("survey.grids[{i}]"), g) {
                    Ok(grid) if community.as_ref().is_some_and(|c| grid.community() == *c) => {
                        grids.push((grid.community_id().to_string(), grid.id().to_string()));
                    }
                    Ok(_) => v.add(format!("survey.grids[{i}]"), "must be a grid of the survey's community"),
                    Err(_) => v.add(format!("survey.grids[{i}]"), "must be a grid's name"),
                }
            }
        }
        Kind::DemocraticReview => {
            if UserName::parse("survey.subject", &s.subject).is_err() {
                v.add("survey.subject", "name the worker reviewed, users/{user}");
            }
            if s.reviewers.is_empty() {
                v.add("survey.reviewers", "name the reviewers");
            }
            if !s.grids.is_empty() {
                v.add("survey.grids", "a democratic review is answered by its named reviewers");
            }
            for (i, r) in s.reviewers.iter().enumerate() {
                if UserName::parse("r", r).is_err() {
                    v.add(format!("survey.reviewers[{i}]"), "must be users/{user}");
                }
            }
        }
    }
    if !s.subject.is_empty() && UserName::parse("survey.subject", &s.subject).is_err() {
        v.add("survey.subject", "must be users/{user}, or empty");
    }
    v.finish()?;
    grids.sort();
    grids.dedup();
    Ok(grids)
}

type Row = (String, String, Vec<u8>, i64, i64, i64);
/// A row with its creation time, as lists page by.
type ListedRow = (String, String, Vec<u8>, i64, i64, i64, String);

fn from_row((street, id, body, rating_sum, rating_count, version): Row) -> Result<Record> {
    Ok(Record {
        street: StreetId::parse("street", &street)?,
        id,
        survey: Survey::decode(body.as_slice()).map_err(Error::internal)?,
        rating_sum,
        rating_count,
        version,
    })
}

async fn get<'e, E>(executor: E, street: &StreetId, id: &str) -> Result<Option<Record>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row: Option<Row> = sqlx::query_as(
        "select street, survey_id, body, rating_sum, rating_count, version from surveys
         where street = $1 and survey_id = $2",
    )
    .bind(street.as_str())
    .bind(id)
    .fetch_optional(executor)
    .await?;
    row.map(from_row).transpose()
}

async fn save(tx: &mut civic_kit::db::Tx, r: &Record, now: &str) -> Result<()> {
    let s = &r.survey;
    sqlx::query(
        "update surveys set state = $3, answer_count = $4, rating_sum = $5, rating_count = $6, body = $7,
             version = $8, updated_at = $9
         where street = $1 and survey_id = $2",
    )
    .bind(r.street.as_str())
    .bind(&r.id)
    .bind(s.state().as_str_name())
    .bind(i64::from(s.answer_count))
    .bind(r.rating_sum)
    .bind(r.rating_count)
    .bind(s.encode_to_vec())
    .bind(r.version)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A day's start as stored text: answers and voters keep only the day.
fn day_of(now: DateTime<Utc>) -> String {
    time::to_text(now.date_naive().and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
}

impl Assessment {
    /// What the caller reaches of surveys in `street`: as a reviewer (street or community), or
    /// `None` for anyone else of the street (who may still answer).
    fn survey_reach(caller: &Caller, street: &StreetId) -> Result<Option<Reach>> {
        Ok(crate::api::reviewer(caller, street)?.1)
    }

    fn manages(reach: Option<&Reach>, community: &str) -> bool {
        match reach {
            Some(Reach::Street) => true,
            Some(Reach::Community(c)) => c == community,
            _ => false,
        }
    }

    pub(crate) async fn create_survey(&self, caller: &Caller, req: CreateSurveyRequest) -> Result<Survey> {
        let street = StreetId::parse_parent("parent", &req.parent)?;
        let reach = Self::survey_reach(caller, &street)?;
        if reach.is_none() {
            return Err(Error::permission_denied("a community's cadres open its surveys"));
        }
        let sent = req.survey.clone().unwrap_or_default();
        let grids = check(&sent, &street, self.settings.min_survey_answers)?;
        let community = sent.community.rsplit('/').next().unwrap_or_default().to_owned();
        if !Self::manages(reach.as_ref(), &community) {
            return Err(Error::permission_denied("a cadre opens surveys of their own community"));
        }
        let id = if req.survey_id.is_empty() { Id::generate('q') } else { Id::parse("survey_id", &req.survey_id)? };
        let now = Utc::now();
        let p = caller.require()?;
        let min_answers = if sent.min_answers == 0 {
            i32::try_from(self.settings.min_survey_answers).unwrap_or(5)
        } else {
            sent.min_answers
        };
        let mut reviewers = sent.reviewers.clone();
        reviewers.sort();
        reviewers.dedup();
        let survey = Survey {
            name: String::new(),
            display_name: sent.display_name.trim().to_owned(),
            questions: sent.questions.iter().map(|q| q.trim().to_owned()).collect(),
            reviewers,
            min_answers,
            state: State::Open as i32,
            answer_count: 0,
            created_by: p.resource_name(),
            create_time: Some(time::to_timestamp(now)),
            close_time: None,
            etag: String::new(),
            ..sent
        };
        let record =
            Record { street: street.clone(), id: id.to_string(), survey, rating_sum: 0, rating_count: 0, version: 1 };
        let key = RequestKey::new(caller.key(), "CreateSurvey", &req.request_id, &req)?;
        let (record, grids) = (&record, &grids);
        self.writer
            .write(&key, async |c: &mut Change| {
                let now_text = time::to_text(now);
                let s = &record.survey;
                sqlx::query(
                    "insert into surveys (street, survey_id, community_id, month, kind, subject, state, min_answers,
                         answer_count, rating_sum, rating_count, body, version, created_at, updated_at)
                     values ($1, $2, $3, $4, $5, $6, $7, $8, 0, 0, 0, $9, 1, $10, $10)",
                )
                .bind(record.street.as_str())
                .bind(&record.id)
                .bind(record.community_id())
                .bind(&s.month)
                .bind(s.kind().as_str_name())
                .bind(s.subject.strip_prefix("users/").unwrap_or_default())
                .bind(s.state().as_str_name())
                .bind(i64::from(s.min_answers))
                .bind(s.encode_to_vec())
                .bind(&now_text)
                .execute(&mut **c.tx())
                .await
                .map_err(|e| civic_kit::db::exists_on(e, "surveys_pkey", &record.name()))?;
                for (community, grid) in grids {
                    sqlx::query(
                        "insert into survey_grids (street, survey_id, community_id, grid_id, created_at, updated_at)
                         values ($1, $2, $3, $4, $5, $5)",
                    )
                    .bind(record.street.as_str())
                    .bind(&record.id)
                    .bind(community)
                    .bind(grid)
                    .bind(&now_text)
                    .execute(&mut **c.tx())
                    .await?;
                }
                Ok(record.to_wire())
            })
            .await
    }

    /// Whether the caller may answer `r`: a named reviewer, or a resident of one of its grids
    /// (asked of the grid service with the caller's own token).
    async fn may_answer<T>(&self, request: &tonic::Request<T>, caller: &Caller, r: &Record) -> Result<bool> {
        let p = caller.require()?;
        match r.survey.kind() {
            Kind::DemocraticReview => Ok(r.survey.reviewers.binary_search(&p.resource_name()).is_ok()),
            Kind::Satisfaction if p.has_role(Role::Resident) => {
                let message = civic_proto::grid::ListHouseholdsRequest {
                    parent: r.street.parent(),
                    page_size: 50,
                    ..Default::default()
                };
                let call = async {
                    let outgoing = self.directory.for_user(request, message)?;
                    let channel = self.directory.connect("grid")?;
                    let mut client = civic_proto::grid::roster_service_client::RosterServiceClient::new(channel);
                    Ok::<_, Error>(client.list_households(outgoing).await)
                };
                let households = match tokio::time::timeout(GRID_TIMEOUT, call).await {
                    Ok(Ok(Ok(found))) => found.into_inner().households,
                    Ok(Ok(Err(status))) if status.code() == Code::PermissionDenied => return Ok(false),
                    _ => {
                        return Err(Error::new(
                            Code::Unavailable,
                            "GRID_UNAVAILABLE",
                            "where you live could not be checked; try again",
                        ));
                    }
                };
                Ok(households.iter().any(|h| r.survey.grids.contains(&h.grid)))
            }
            _ => Ok(false),
        }
    }

    pub(crate) async fn get_survey(
        &self,
        request: &tonic::Request<GetSurveyRequest>,
        caller: &Caller,
    ) -> Result<Survey> {
        let (street, id) = survey_name("name", &request.get_ref().name)?;
        let reach = Self::survey_reach(caller, &street)?;
        let found = get(self.writer.db().reader(), &street, &id).await?;
        let Some(r) = found else {
            return Err(if reach == Some(Reach::Street) {
                Error::not_found(request.get_ref().name.clone())
            } else {
                denied()
            });
        };
        if Self::manages(reach.as_ref(), r.community_id()) {
            return Ok(r.to_wire());
        }
        if self.may_answer(request, caller, &r).await? {
            // Those who answer read the questions, not who else answers.
            return Ok(Survey { reviewers: Vec::new(), answer_count: 0, ..r.to_wire() });
        }
        Err(denied())
    }

    pub(crate) async fn list_surveys(&self, caller: &Caller, req: ListSurveysRequest) -> Result<ListSurveysResponse> {
        let street = StreetId::parse_parent("parent", &req.parent)?;
        let reach = Self::survey_reach(caller, &street)?.ok_or_else(denied)?;
        let size = page::page_size(req.page_size, 20, 100)?;
        let (mut month, mut community, mut kind, mut state) =
            (String::new(), String::new(), String::new(), String::new());
        for term in filter::parse(&req.filter, &["month", "community", "kind", "state"])? {
            let value = term.value.as_str();
            match term.field.as_str() {
                "month" => month = Month::parse("filter", value)?.to_string(),
                "community" => community = CommunityName::parse("filter", value)?.id().to_string(),
                "kind" => {
                    kind = Kind::from_str_name(value)
                        .filter(|k| *k != Kind::Unspecified)
                        .ok_or_else(|| Error::invalid("filter", "kind must be SATISFACTION or DEMOCRATIC_REVIEW"))?
                        .as_str_name()
                        .into()
                }
                _ => {
                    state = State::from_str_name(value)
                        .filter(|s| *s != State::Unspecified)
                        .ok_or_else(|| Error::invalid("filter", "state must be OPEN or CLOSED"))?
                        .as_str_name()
                        .into()
                }
            }
        }
        if let Reach::Community(c) = &reach {
            if !community.is_empty() && community != *c {
                return Ok(ListSurveysResponse::default());
            }
            community = c.clone();
        }
        let query = format!("ListSurveys|{street}|{month}|{community}|{kind}|{state}");
        // Newest first: by creation time, then id, both descending.
        let (after_time, after_id) = match self.pages.decode_position(&req.page_token, &query, 2)? {
            Some(p) => (p[0].clone(), p[1].clone()),
            None => ("9999".to_owned(), String::new()),
        };
        let rows: Vec<ListedRow> = sqlx::query_as(
            "select street, survey_id, body, rating_sum, rating_count, version, created_at from surveys
             where street = $1 and (created_at < $2 or (created_at = $2 and survey_id < $8))
                 and ($3 = '' or month = $3) and ($4 = '' or community_id = $4) and ($5 = '' or kind = $5)
                 and ($6 = '' or state = $6)
             order by created_at desc, survey_id desc limit $7",
        )
        .bind(street.as_str())
        .bind(&after_time)
        .bind(&month)
        .bind(&community)
        .bind(&kind)
        .bind(&state)
        .bind(i64::try_from(size + 1).unwrap_or(i64::MAX))
        .bind(&after_id)
        .fetch_all(self.writer.db().reader())
        .await?;
        let mut records = rows
            .into_iter()
            .map(|(street, id, body, sum, count, version, created)| {
                Ok((from_row((street, id, body, sum, count, version))?, created))
            })
            .collect::<Result<Vec<_>>>()?;
        let next_page_token =
            self.pages.next_page(&query, &mut records, size, |(r, created)| vec![created.clone(), r.id.clone()]);
        Ok(ListSurveysResponse { surveys: records.iter().map(|(r, _)| r.to_wire()).collect(), next_page_token })
    }

    pub(crate) async fn answer_survey(
        &self,
        request: &tonic::Request<AnswerSurveyRequest>,
        caller: &Caller,
    ) -> Result<AnswerSurveyResponse> {
        let req = request.get_ref();
        let (street, id) = survey_name("name", &req.name)?;
        Self::survey_reach(caller, &street)?;
        let found = get(self.writer.db().reader(), &street, &id).await?;
        let Some(r) = found else { return Err(denied()) };
        if !self.may_answer(request, caller, &r).await? {
            return Err(denied());
        }
        if req.ratings.len() != r.survey.questions.len() || req.ratings.iter().any(|x| !(1..=5).contains(x)) {
            return Err(Error::invalid(
                "ratings",
                format!("give a rating of 1 to 5 for each of the {} questions", r.survey.questions.len()),
            ));
        }
        let p = caller.require()?;
        let voter: String = Sha256::digest(format!("{}\n{}", r.name(), p.resource_name()).as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let ratings: Vec<String> = req.ratings.iter().map(i32::to_string).collect();
        let sum: i64 = req.ratings.iter().map(|x| i64::from(*x)).sum();
        let count = i64::try_from(req.ratings.len()).unwrap_or(0);
        let key = RequestKey::new(caller.key(), "AnswerSurvey", &req.request_id, req)?;
        let now = Utc::now();
        let (street, id, voter, ratings) = (&street, &id, &voter, &ratings.join(","));
        self.writer
            .write(&key, async |c: &mut Change| {
                let Some(mut r) = get(&mut **c.tx(), street, id).await? else { return Err(denied()) };
                if r.survey.state() != State::Open {
                    return Err(Error::failed_precondition("SURVEY_CLOSED", "the survey is closed"));
                }
                let day = day_of(now);
                let added = sqlx::query(
                    "insert into survey_voters (street, survey_id, voter, created_at, updated_at)
                     values ($1, $2, $3, $4, $4) on conflict (street, survey_id, voter) do nothing",
                )
                .bind(street.as_str())
                .bind(id)
                .bind(voter)
                .bind(&day)
                .execute(&mut **c.tx())
                .await?;
                if added.rows_affected() == 0 {
                    return Err(Error::already_exists("your answer to this survey"));
                }
                sqlx::query(
                    "insert into survey_answers (street, survey_id, answer_id, ratings, created_at, updated_at)
                     values ($1, $2, $3, $4, $5, $5)",
                )
                .bind(street.as_str())
                .bind(id)
                .bind(uuid::Uuid::new_v4().simple().to_string())
                .bind(ratings)
                .bind(&day)
                .execute(&mut **c.tx())
                .await?;
                r.survey.answer_count += 1;
                r.rating_sum += sum;
                r.rating_count += count;
                r.version += 1;
                save(c.tx(), &r, &time::to_text(now)).await?;
                Ok(AnswerSurveyResponse { survey: r.name() })
            })
            .await
    }

    pub(crate) async fn close_survey(&self, caller: &Caller, req: CloseSurveyRequest) -> Result<Survey> {
        let (street, id) = survey_name("name", &req.name)?;
        let reach = Self::survey_reach(caller, &street)?.ok_or_else(denied)?;
        let key = RequestKey::new(caller.key(), "CloseSurvey", &req.request_id, &req)?;
        let now = Utc::now();
        let (street, id, reach) = (&street, &id, &reach);
        self.writer
            .write(&key, async |c: &mut Change| {
                let mut r = match get(&mut **c.tx(), street, id).await? {
                    Some(r) if Self::manages(Some(reach), r.community_id()) => r,
                    None if *reach == Reach::Street => return Err(Error::not_found(req.name.clone())),
                    _ => return Err(denied()),
                };
                check_etag(&req.etag, r.version, &r.name())?;
                if r.survey.state() != State::Open {
                    return Err(Error::failed_precondition("SURVEY_CLOSED", "the survey is already closed"));
                }
                r.survey.state = State::Closed as i32;
                r.survey.close_time = Some(time::to_timestamp(now));
                r.version += 1;
                save(c.tx(), &r, &time::to_text(now)).await?;
                let shown = r.survey.answer_count >= r.survey.min_answers;
                let event = SurveyClosed {
                    survey: r.name(),
                    kind: r.survey.kind().as_str_name().into(),
                    community: r.survey.community.clone(),
                    subject: r.survey.subject.clone(),
                    month: r.survey.month.clone(),
                    answer_count: r.survey.answer_count,
                    shown,
                    mean: if shown { mean(r.rating_sum, r.rating_count) } else { 0.0 },
                    event_time: Some(time::to_timestamp(now)),
                };
                c.emit(&r.name(), &event).await?;
                Ok(r.to_wire())
            })
            .await
    }

    pub(crate) async fn survey_results(&self, caller: &Caller, req: GetSurveyResultsRequest) -> Result<SurveyResults> {
        let (street, id) = survey_name("name", &req.name)?;
        let reach = Self::survey_reach(caller, &street)?.ok_or_else(denied)?;
        let pool = self.writer.db().reader();
        let r = match get(pool, &street, &id).await? {
            Some(r) if Self::manages(Some(&reach), r.community_id()) => r,
            None if reach == Reach::Street => return Err(Error::not_found(req.name.clone())),
            _ => return Err(denied()),
        };
        let shown = r.survey.answer_count >= r.survey.min_answers;
        let mut results =
            SurveyResults { survey: r.name(), answer_count: r.survey.answer_count, shown, ..Default::default() };
        if !shown {
            return Ok(results);
        }
        let answers: Vec<(String,)> =
            sqlx::query_as("select ratings from survey_answers where street = $1 and survey_id = $2")
                .bind(street.as_str())
                .bind(&id)
                .fetch_all(pool)
                .await?;
        let mut counts = vec![[0i32; 5]; r.survey.questions.len()];
        for (ratings,) in &answers {
            for (q, x) in ratings.split(',').enumerate() {
                if let (Some(row), Ok(x @ 1..=5)) = (counts.get_mut(q), x.parse::<usize>()) {
                    row[x - 1] += 1;
                }
            }
        }
        results.questions = r
            .survey
            .questions
            .iter()
            .zip(&counts)
            .map(|(question, row)| {
                let n: i64 = row.iter().map(|c| i64::from(*c)).sum();
                let sum: i64 = row.iter().enumerate().map(|(i, c)| (i as i64 + 1) * i64::from(*c)).sum();
                QuestionResult { question: question.clone(), mean: mean(sum, n), counts: row.to_vec() }
            })
            .collect();
        results.mean = mean(r.rating_sum, r.rating_count);
        Ok(results)
    }
}

fn mean(sum: i64, count: i64) -> f64 {
    if count == 0 { 0.0 } else { round2(sum as f64 / count as f64) }
}
