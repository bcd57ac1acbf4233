//! Monthly reviews: computed for every worker of a month from the facts, adjusted by reviewers,
//! approved. A recomputation replaces only what it changes: an approved review is final, an
//! adjusted one keeps its adjustments over the new computation, and an unchanged computation
//! leaves the review as it was (no event, no new version).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use civic_kit::error::{Error, Result};
use civic_kit::idempotency::{RequestKey, check_etag, etag};
use civic_kit::names::{StreetId, UserName};
use civic_kit::time;
use civic_kit::write::Change;
use civic_proto::assessment::review::State;
use civic_proto::assessment::*;
use prost::Message;
use sha2::{Digest, Sha256};
use tonic::Code;

use crate::Assessment;
use crate::score::{self, Month, Rules, round2};
use crate::store::{self, ReviewRecord, WorkerMonth};

/// A review's name, `streets/{street}/months/{month}/reviews/{worker}`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReviewName {
    pub(crate) street: StreetId,
    pub(crate) month: Month,
    /// The worker's user id.
    pub(crate) worker: String,
}

impl ReviewName {
    pub(crate) fn parse(field: &str, name: &str) -> Result<Self> {
        let bad = || Error::invalid(field, "must be a review name, streets/{street}/months/{YYYY-MM}/reviews/{worker}");
        let parts: Vec<&str> = name.split('/').collect();
        let ["streets", street, "months", month, "reviews", worker] = parts.as_slice() else { return Err(bad()) };
        let street = StreetId::parse(field, street).map_err(|_| bad())?;
        let month = Month::parse(field, month).map_err(|_| bad())?;
        UserName::parse(field, &format!("users/{worker}")).map_err(|_| bad())?;
        Ok(Self { street, month, worker: (*worker).to_owned() })
    }

    pub(crate) fn of(street: &StreetId, month: Month, worker: &str) -> String {
        format!("streets/{street}/months/{month}/reviews/{worker}")
    }
}

/// A month's name, `streets/{street}/months/{YYYY-MM}`, parsed.
pub(crate) fn parse_month_name(field: &str, name: &str) -> Result<(StreetId, Month)> {
    let bad = || Error::invalid(field, "must be a month of a street, streets/{street}/months/{YYYY-MM}");
    let parts: Vec<&str> = name.split('/').collect();
    let ["streets", street, "months", month] = parts.as_slice() else { return Err(bad()) };
    Ok((StreetId::parse(field, street).map_err(|_| bad())?, Month::parse(field, month).map_err(|_| bad())?))
}

/// The computed part of a worker's review, as the message it is stored and compared as.
fn computed_part(street: &StreetId, month: Month, scheme: &str, rules: &Rules, w: &WorkerMonth) -> Review {
    let c = score::compute(rules, &w.figures);
    let grid = |(community, grid): &(String, String)| format!("streets/{street}/communities/{community}/grids/{grid}");
    Review {
        worker: format!("users/{}", w.worker),
        month: month.to_string(),
        community: w.grids.first().map(|(c, _)| format!("streets/{street}/communities/{c}")).unwrap_or_default(),
        grids: w.grids.iter().map(grid).collect(),
        scheme: scheme.to_owned(),
        indicators: c.indicators,
        deductions: c.deductions,
        computed_score: c.score,
        stars: rules.stars(c.score),
        enough_data: c.enough_data,
        explanation: c.explanation,
        ..Default::default()
    }
}

/// The score after adjustments, within 0 and 100.
fn adjusted(computed: f64, adjustments: &[Adjustment]) -> f64 {
    round2((computed + adjustments.iter().map(|a| a.points).sum::<f64>()).clamp(0.0, 100.0))
}

/// The whole review: the computed part with the review's state, adjustments and approval.
fn whole(
    name: String,
    part: &Review,
    rules: &Rules,
    kept: Option<&Review>,
    version: i64,
    computed_at: DateTime<Utc>,
) -> Review {
    let adjustments = kept.map(|k| k.adjustments.clone()).unwrap_or_default();
    let score = adjusted(part.computed_score, &adjustments);
    let state = if adjustments.is_empty() { State::Computed } else { State::Adjusted };
    Review {
        name,
        state: state as i32,
        adjustments,
        score,
        stars: rules.stars(score),
        compute_time: Some(time::to_timestamp(computed_at)),
        etag: etag(version),
        ..part.clone()
    }
}

fn computed_event(r: &Review, now: DateTime<Utc>) -> ReviewComputed {
    ReviewComputed {
        review: r.name.clone(),
        worker: r.worker.clone(),
        month: r.month.clone(),
        scheme: r.scheme.clone(),
        score: r.score,
        stars: r.stars,
        event_time: Some(time::to_timestamp(now)),
    }
}

fn concurrent() -> Error {
    Error::new(Code::Aborted, "CONCURRENT_CHANGE", "the review changed meanwhile; try again")
}

impl Assessment {
    /// The rules of a stored scheme (checked when it was created).
    async fn rules_of(&self, street: &StreetId, scheme: &str) -> Result<Rules> {
        let id = scheme.rsplit('/').next().unwrap_or_default();
        let found = store::get_scheme(self.writer.db().reader(), street, id).await?;
        let scheme =
            found.ok_or_else(|| Error::failed_precondition("SCHEME_MISSING", "the review's scheme is gone"))?;
        Rules::check(&scheme.scheme)
            .map_err(|_| Error::failed_precondition("SCHEME_INVALID", "the scheme cannot score"))
    }

    /// Computes every worker's review of `month` again (see RecomputeMonth).
    pub(crate) async fn recompute(
        &self,
        key: &RequestKey,
        street: &StreetId,
        month: Month,
    ) -> Result<RecomputeMonthResponse> {
        let pool = self.writer.db().reader();
        let scheme = store::scheme_in_force(pool, street, month).await?.ok_or_else(|| {
            Error::failed_precondition("NO_SCHEME", format!("no scheme is in force in {month}: create one first"))
        })?;
        let rules = Rules::check(&scheme.scheme)
            .map_err(|_| Error::failed_precondition("SCHEME_INVALID", "the scheme in force cannot score"))?;
        let scheme_name = scheme.scheme.name.clone();
        let workers =
            store::month_figures(pool, street, month, self.calendar.offset(), self.settings.review_window).await?;
        let parts: Vec<(String, Review, Vec<u8>)> = workers
            .iter()
            .map(|w| {
                let part = computed_part(street, month, &scheme_name, &rules, w);
                let bytes = part.encode_to_vec();
                (w.worker.clone(), part, bytes)
            })
            .collect();
        let now = Utc::now();
        let now_text = time::to_text(now);
        let (rules, parts) = (&rules, &parts);
        self.writer
            .write(key, async |c: &mut Change| {
                let existing: BTreeMap<String, ReviewRecord> = store::month_reviews(&mut **c.tx(), street, month)
                    .await?
                    .into_iter()
                    .map(|r| (r.worker.clone(), r))
                    .collect();
                let (mut computed, mut approved) = (0, 0);
                let mut digests: BTreeMap<String, Vec<u8>> = BTreeMap::new();
                for (worker, part, bytes) in parts {
                    let kept = existing.get(worker);
                    match kept {
                        Some(k) if k.review.state() == State::Approved => {
                            approved += 1;
                            digests.insert(worker.clone(), k.computation.clone());
                            continue;
                        }
                        Some(k) if &k.computation == bytes => {
                            digests.insert(worker.clone(), k.computation.clone());
                            continue;
                        }
                        _ => {}
                    }
                    let version = kept.map_or(1, |k| k.version + 1);
                    let name = ReviewName::of(street, month, worker);
                    let review = whole(name, part, rules, kept.map(|k| &k.review), version, now);
                    let record = ReviewRecord {
                        worker: worker.clone(),
                        community: part.community.rsplit('/').next().unwrap_or_default().to_owned(),
                        review,
                        computation: bytes.clone(),
                        version,
                    };
                    if !store::save_review(c.tx(), street, month, &record, kept.map(|k| k.version), &now_text).await? {
                        return Err(concurrent());
                    }
                    c.emit(&record.review.name, &computed_event(&record.review, now)).await?;
                    digests.insert(worker.clone(), bytes.clone());
                    computed += 1;
                }
                for (worker, k) in &existing {
                    if digests.contains_key(worker) {
                        continue;
                    }
                    if k.review.state() == State::Approved {
                        approved += 1;
                        digests.insert(worker.clone(), k.computation.clone());
                    } else {
                        store::remove_review(c.tx(), street, month, worker).await?;
                    }
                }
                let mut hash = Sha256::new();
                for (worker, bytes) in &digests {
                    hash.update((worker.len() as u64).to_be_bytes());
                    hash.update(worker.as_bytes());
                    hash.update((bytes.len() as u64).to_be_bytes());
                    hash.update(bytes);
                }
                Ok(RecomputeMonthResponse {
                    name: format!("streets/{street}/months/{month}"),
                    scheme: scheme_name.clone(),
                    computed,
                    approved,
                    digest: hash.finalize().iter().map(|b| format!("{b:02x}")).collect(),
                })
            })
            .await
    }

    /// Adds a reviewer's adjustment (the caller is checked by the API).
    pub(crate) async fn adjust(
        &self,
        key: &RequestKey,
        name: &ReviewName,
        sent_etag: &str,
        adjustment: Adjustment,
        reach: &crate::api::Reach,
    ) -> Result<Review> {
        let shown = ReviewName::of(&name.street, name.month, &name.worker);
        let found = store::get_review(self.writer.db().reader(), &name.street, name.month, &name.worker).await?;
        let Some(found) = found else { return Err(reach.missing(&shown)) };
        let rules = self.rules_of(&name.street, &found.review.scheme).await?;
        self.change_review(key, name, sent_etag, reach, |review, now| {
            if review.adjustments.len() >= 20 {
                return Err(Error::failed_precondition(
                    "TOO_MANY_ADJUSTMENTS",
                    "a review takes at most 20 adjustments",
                ));
            }
            review.adjustments.push(adjustment.clone());
            review.score = adjusted(review.computed_score, &review.adjustments);
            review.stars = rules.stars(review.score);
            review.state = State::Adjusted as i32;
            Ok(ReviewAdjusted {
                review: shown.clone(),
                points: adjustment.points,
                score: review.score,
                stars: review.stars,
                adjusted_by: adjustment.adjusted_by.clone(),
                event_time: Some(time::to_timestamp(now)),
            })
        })
        .await
    }

    /// Approves a review (the caller is checked by the API).
    pub(crate) async fn approve(
        &self,
        key: &RequestKey,
        name: &ReviewName,
        sent_etag: &str,
        approver: &str,
        reach: &crate::api::Reach,
    ) -> Result<Review> {
        let shown = ReviewName::of(&name.street, name.month, &name.worker);
        self.change_review(key, name, sent_etag, reach, |review, now| {
            review.state = State::Approved as i32;
            review.approved_by = approver.to_owned();
            review.approve_time = Some(time::to_timestamp(now));
            Ok(ReviewApproved {
                review: shown.clone(),
                worker: review.worker.clone(),
                month: review.month.clone(),
                score: review.score,
                stars: review.stars,
                approved_by: approver.to_owned(),
                event_time: Some(time::to_timestamp(now)),
            })
        })
        .await
    }

    /// A reviewer's step on a review not yet approved, in one change: the review read, the
    /// caller's reach and the etag checked, `step` applied, the review saved over the version read
    /// (ABORTED if another change came first) with the event `step` returns.
    async fn change_review<E: civic_proto::Event>(
        &self,
        key: &RequestKey,
        name: &ReviewName,
        sent_etag: &str,
        reach: &crate::api::Reach,
        step: impl Fn(&mut Review, DateTime<Utc>) -> Result<E> + Send + Sync,
    ) -> Result<Review> {
        let now = Utc::now();
        let shown = ReviewName::of(&name.street, name.month, &name.worker);
        let step = &step;
        self.writer
            .write(key, async |c: &mut Change| {
                let Some(mut r) = store::get_review(&mut **c.tx(), &name.street, name.month, &name.worker).await?
                else {
                    return Err(reach.missing(&shown));
                };
                reach.may_review(&r)?;
                check_etag(sent_etag, r.version, &shown)?;
                if r.review.state() == State::Approved {
                    return Err(Error::failed_precondition("REVIEW_APPROVED", "the review is approved: it is final"));
                }
                let event = step(&mut r.review, now)?;
                let old = r.version;
                r.version += 1;
                r.review.etag = etag(r.version);
                if !store::save_review(c.tx(), &name.street, name.month, &r, Some(old), &time::to_text(now)).await? {
                    return Err(concurrent());
                }
                c.emit(&shown, &event).await?;
                Ok(r.review)
            })
            .await
    }
}
