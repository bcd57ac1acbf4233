//! A month's bulletin (rankings per community with the small-sample guard, the star
//! distribution, each grid's stars) from its reviews, and the rates a street office reports
//! upward from the facts.

use std::collections::BTreeMap;

use civic_kit::error::Result;
use civic_kit::names::StreetId;
use civic_kit::time;
use civic_proto::assessment::bulletin::{Entry, GridStars};
use civic_proto::assessment::{Bulletin, Rates};

use crate::score::{Month, Rules, round2};
use crate::store::{self, ReviewRecord};

/// Ranks within each community: by score, best first, equal scores sharing a rank (1, 1, 3);
/// reviews without enough data are listed after, unranked (rank 0), by worker.
pub(crate) fn rank(reviews: &[ReviewRecord]) -> Vec<Entry> {
    let mut by_community: BTreeMap<&str, Vec<&ReviewRecord>> = BTreeMap::new();
    for r in reviews {
        by_community.entry(r.review.community.as_str()).or_default().push(r);
    }
    let mut out = Vec::with_capacity(reviews.len());
    for (_, mut members) in by_community {
        members.sort_by(|a, b| {
            b.review
                .enough_data
                .cmp(&a.review.enough_data)
                .then(b.review.score.total_cmp(&a.review.score))
                .then(a.worker.cmp(&b.worker))
        });
        let mut last: Option<(f64, i32)> = None;
        for (n, r) in members.iter().enumerate() {
            let rank = if !r.review.enough_data {
                0
            } else {
                let rank = match last {
                    Some((score, rank)) if score == r.review.score => rank,
                    _ => i32::try_from(n + 1).unwrap_or(i32::MAX),
                };
                last = Some((r.review.score, rank));
                rank
            };
            out.push(Entry {
                review: r.review.name.clone(),
                worker: r.review.worker.clone(),
                community: r.review.community.clone(),
                score: r.review.score,
                stars: r.review.stars,
                rank,
                enough_data: r.review.enough_data,
                state: r.review.state,
            });
        }
    }
    out
}

/// The bulletin of `reviews` (already narrowed to what the caller reaches); the grids' stars by
/// `rules` when a scheme is in force.
pub(crate) fn bulletin(name: String, reviews: &[ReviewRecord], rules: Option<&Rules>) -> Bulletin {
    let mut star_counts = vec![0; 6];
    for r in reviews {
        if let Some(n) = usize::try_from(r.review.stars).ok().and_then(|s| star_counts.get_mut(s)) {
            *n += 1;
        }
    }
    let mut grids: BTreeMap<&str, (f64, u32)> = BTreeMap::new();
    for r in reviews {
        for g in &r.review.grids {
            let e = grids.entry(g.as_str()).or_default();
            e.0 += r.review.score;
            e.1 += 1;
        }
    }
    let grids = grids
        .into_iter()
        .map(|(grid, (sum, n))| {
            let score = round2(sum / f64::from(n.max(1)));
            GridStars { grid: grid.to_owned(), score, stars: rules.map_or(0, |r| r.stars(score)) }
        })
        .collect();
    Bulletin { name, entries: rank(reviews), star_counts, grids }
}

/// Whether an issue was answered on time, resolved within the window (`cutoff`), and resolved
/// by its deadline: `(answered on time, resolved, resolved on time)`. Times are stored text, empty
/// when not known.
pub(crate) fn issue_outcome(
    respond_by: &str,
    resolve_by: &str,
    answered: &str,
    resolved: &str,
    cutoff: &str,
) -> (bool, bool, bool) {
    let answered_on_time = !answered.is_empty() && (respond_by.is_empty() || answered <= respond_by);
    let in_window = !resolved.is_empty() && resolved < cutoff;
    (answered_on_time, in_window, in_window && (resolve_by.is_empty() || resolved <= resolve_by))
}

/// Counts gathered into rates.
#[derive(Debug, Clone, Default)]
struct Tally {
    issues: u32,
    answered_on_time: u32,
    resolved: u32,
    resolved_on_time: u32,
    ratings: u32,
    rating_sum: u32,
    satisfied: u32,
}

impl Tally {
    fn rates(&self, scope: String) -> Rates {
        let share = |part: u32, whole: u32| {
            if whole == 0 { 0.0 } else { (f64::from(part) / f64::from(whole) * 10_000.0).round() / 10_000.0 }
        };
        let count = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
        Rates {
            scope,
            issues: count(self.issues),
            answered_on_time: count(self.answered_on_time),
            resolved: count(self.resolved),
            resolved_on_time: count(self.resolved_on_time),
            response_rate: share(self.answered_on_time, self.issues),
            resolution_rate: share(self.resolved, self.issues),
            on_time_rate: share(self.resolved_on_time, self.resolved),
            ratings: count(self.ratings),
            mean_rating: if self.ratings == 0 {
                0.0
            } else {
                round2(f64::from(self.rating_sum) / f64::from(self.ratings))
            },
            satisfaction_rate: share(self.satisfied, self.ratings),
        }
    }
}

/// The month's rates: the street's and each community's (`only`: one community's id).
pub(crate) async fn rates(
    pool: &sqlx::AnyPool,
    street: &StreetId,
    month: Month,
    zone: chrono::FixedOffset,
    grace: chrono::Duration,
    only: Option<&str>,
) -> Result<(Rates, Vec<Rates>)> {
    let (start, end) = (month.start(zone), month.end(zone));
    let (from, to, cutoff) = (time::to_text(start), time::to_text(end), time::to_text(end + grace));
    let (issues, ratings) = store::month_issues_and_ratings(pool, street, &from, &to).await?;
    let mut whole = Tally::default();
    let mut communities: BTreeMap<String, Tally> = BTreeMap::new();
    let wanted = |c: &str| only.is_none_or(|o| o == c);
    for (community, respond_by, resolve_by, answered, resolved) in &issues {
        let (a, r, t) = issue_outcome(respond_by, resolve_by, answered, resolved, &cutoff);
        for tally in [Some(&mut whole), wanted(community).then(|| communities.entry(community.clone()).or_default())]
            .into_iter()
            .flatten()
        {
            tally.issues += 1;
            tally.answered_on_time += u32::from(a);
            tally.resolved += u32::from(r);
            tally.resolved_on_time += u32::from(t);
        }
    }
    for (community, rating) in &ratings {
        let rating = u32::try_from(*rating).unwrap_or(0);
        for tally in [Some(&mut whole), wanted(community).then(|| communities.entry(community.clone()).or_default())]
            .into_iter()
            .flatten()
        {
            tally.ratings += 1;
            tally.rating_sum += rating;
            tally.satisfied += u32::from(rating >= 4);
        }
    }
    let street_rates = if only.is_some() { Rates::default() } else { whole.rates(street.parent()) };
    let communities = communities
        .into_iter()
        .filter(|(c, _)| !c.is_empty())
        .map(|(c, t)| t.rates(format!("{}/communities/{c}", street.parent())))
        .collect();
    Ok((street_rates, communities))
}

#[cfg(test)]
mod tests {
    use civic_proto::assessment::Review;

    use super::*;

    fn review(worker: &str, community: &str, score: f64, enough: bool) -> ReviewRecord {
        ReviewRecord {
            worker: worker.into(),
            community: community.into(),
            review: Review {
                name: format!("r/{worker}"),
                worker: format!("users/{worker}"),
                community: format!("streets/s/communities/{community}"),
                grids: vec![format!("streets/s/communities/{community}/grids/g-{worker}")],
                score,
                stars: if score >= 90.0 { 4 } else { 2 },
                enough_data: enough,
                ..Default::default()
            },
            computation: Vec::new(),
            version: 1,
        }
    }

    #[test]
    fn equal_scores_share_a_rank_and_small_samples_are_not_ranked() {
        let reviews = [
            review("a", "east", 80.0, true),
            review("b", "east", 92.0, true),
            review("c", "east", 80.0, true),
            review("d", "east", 99.0, false),
            review("e", "east", 70.0, true),
            review("f", "west", 60.0, true),
        ];
        let ranked: Vec<(String, i32)> = rank(&reviews).into_iter().map(|e| (e.worker, e.rank)).collect();
        let expect = [("b", 1), ("a", 2), ("c", 2), ("e", 4), ("d", 0), ("f", 1)];
        assert_eq!(ranked, expect.map(|(w, r)| (format!("users/{w}"), r)).to_vec());
        let b = bulletin("m".into(), &reviews, None);
        assert_eq!(b.star_counts, vec![0, 0, 4, 0, 2, 0]);
        assert_eq!(b.grids.len(), 6);
    }

    #[test]
    fn an_issue_counts_as_resolved_only_within_the_window() {
        let cutoff = "2026-11-05T16:00:00.000000Z";
        assert_eq!(issue_outcome("2026-10-02", "2026-10-08", "2026-10-01", "2026-10-07", cutoff), (true, true, true));
        assert_eq!(issue_outcome("2026-10-02", "2026-10-08", "2026-10-03", "2026-10-09", cutoff), (false, true, false));
        assert_eq!(issue_outcome("2026-10-02", "2026-10-08", "", "2026-11-06", cutoff), (false, false, false));
    }
}
