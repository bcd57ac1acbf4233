//! The year-end evaluation (年终考评): each worker's months of the year and the democratic reviews
//! of them combined by the scheme in force in December, ranked within each community, with award
//! eligibility (评先评优); as a message, a CSV file or a page to print.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use civic_kit::error::{Error, Result};
use civic_kit::export;
use civic_kit::names::StreetId;
use civic_proto::assessment::review::State;
use civic_proto::assessment::scheme::YearEnd;
use civic_proto::assessment::year_end_evaluation::{Entry, MonthScore};
use civic_proto::assessment::{Review, YearEndEvaluation};
use civic_proto::google::api::HttpBody;
use prost::Message;

use crate::score::{Month, Rules, round2};
use crate::store;

/// How a year is combined when the scheme says nothing: the months alone; an award from 90
/// points and 10 approved months.
const UNSET: YearEnd = YearEnd { months_weight: 100.0, award_score: 90.0, award_months: 10 };

/// The CSV file's header row.
const HEADER: [&str; 10] =
    ["网格员", "社区", "考核月数", "批准月数", "月均得分", "民主评议均分", "年度得分", "星级", "排名", "评先评优"];

/// One worker's year before ranking.
struct Year {
    worker: String,
    community: String,
    months: Vec<MonthScore>,
}

/// The year's evaluation of the reviews `reviews` (worker, month, community, review), sorted by
/// worker then month, with the democratic reviews' `(worker, rating sum, ratings)`.
pub(crate) fn evaluate(
    street: &StreetId,
    year: i32,
    scheme: &str,
    rules: &Rules,
    combine: &YearEnd,
    reviews: Vec<(String, String, Review)>,
    democratic: &BTreeMap<String, (i64, i64)>,
) -> YearEndEvaluation {
    let mut years: Vec<Year> = Vec::new();
    for (worker, community, review) in reviews {
        let month =
            MonthScore { month: review.month.clone(), score: review.score, stars: review.stars, state: review.state };
        match years.last_mut() {
            Some(y) if y.worker == worker => {
                y.community = community;
                y.months.push(month);
            }
            _ => years.push(Year { worker, community, months: vec![month] }),
        }
    }
    let mut entries: Vec<Entry> = years
        .into_iter()
        .map(|y| {
            let n = y.months.len().max(1) as f64;
            let months_mean = round2(y.months.iter().map(|m| m.score).sum::<f64>() / n);
            let approved = y.months.iter().filter(|m| m.state() == State::Approved).count();
            let (sum, count) = democratic.get(&y.worker).copied().unwrap_or((0, 0));
            let review_mean = if count > 0 { round2(sum as f64 / count as f64) } else { 0.0 };
            let mut text = format!("{} months, mean {months_mean}", y.months.len());
            let score = if count > 0 {
                let w = combine.months_weight;
                let reviews_points = round2(review_mean / 5.0 * 100.0);
                let score = round2(w / 100.0 * months_mean + (100.0 - w) / 100.0 * reviews_points);
                let _ = write!(
                    text,
                    "; democratic reviews {review_mean} of 5 ({count} ratings) = {reviews_points}; \
                     {w}% × {months_mean} + {}% × {reviews_points} = {score}",
                    100.0 - w
                );
                score
            } else {
                let _ = write!(text, "; no democratic review shown: the months alone, {months_mean}");
                months_mean
            };
            let award = score >= combine.award_score && approved as i32 >= combine.award_months;
            let _ = write!(
                text,
                "; award: {score} {} {} and {approved} approved months {} {}",
                if score >= combine.award_score { "≥" } else { "<" },
                combine.award_score,
                if approved as i32 >= combine.award_months { "≥" } else { "<" },
                combine.award_months
            );
            Entry {
                worker: format!("users/{}", y.worker),
                community: format!("streets/{street}/communities/{}", y.community),
                months: y.months,
                months_mean,
                approved_months: approved as i32,
                review_mean,
                review_ratings: i32::try_from(count).unwrap_or(i32::MAX),
                score,
                stars: rules.stars(score),
                rank: 0,
                award,
                explanation: text,
            }
        })
        .collect();
    entries
        .sort_by(|a, b| a.community.cmp(&b.community).then(b.score.total_cmp(&a.score)).then(a.worker.cmp(&b.worker)));
    let mut last: Option<(String, f64, i32)> = None;
    let mut position = 0;
    for e in &mut entries {
        position = match &last {
            Some((c, _, _)) if *c == e.community => position + 1,
            _ => 1,
        };
        e.rank = match &last {
            Some((c, score, rank)) if *c == e.community && *score == e.score => *rank,
            _ => position,
        };
        last = Some((e.community.clone(), e.score, e.rank));
    }
    YearEndEvaluation { parent: street.parent(), year, scheme: scheme.to_owned(), entries }
}

/// The year's reviews of `street`, `(worker, month, community, review)` by worker and month, and
/// the democratic reviews of each worker shown that year, `worker → (rating sum, ratings)`.
pub(crate) async fn gather(
    pool: &sqlx::AnyPool,
    street: &StreetId,
    year: i32,
) -> Result<(Vec<(String, String, Review)>, BTreeMap<String, (i64, i64)>)> {
    let (first, last) = (format!("{year:04}-01"), format!("{year:04}-12"));
    let rows: Vec<(String, String, Vec<u8>)> = sqlx::query_as(
        "select worker_id, community_id, body from reviews where street = $1 and month >= $2 and month <= $3
         order by worker_id, month",
    )
    .bind(street.as_str())
    .bind(&first)
    .bind(&last)
    .fetch_all(pool)
    .await?;
    let reviews = rows
        .into_iter()
        .map(|(worker, community, body)| {
            Ok((worker, community, Review::decode(body.as_slice()).map_err(Error::internal)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let democratic: Vec<(String, i64, i64)> = sqlx::query_as(
        "select subject, cast(sum(rating_sum) as bigint), cast(sum(rating_count) as bigint) from surveys
         where street = $1 and month >= $2 and month <= $3 and kind = 'DEMOCRATIC_REVIEW' and state = 'CLOSED'
             and answer_count >= min_answers
         group by subject",
    )
    .bind(street.as_str())
    .bind(&first)
    .bind(&last)
    .fetch_all(pool)
    .await?;
    Ok((reviews, democratic.into_iter().map(|(w, sum, n)| (w, (sum, n))).collect()))
}

/// The scheme in force in December of `year`, its rules and how it combines a year.
pub(crate) async fn scheme_of(pool: &sqlx::AnyPool, street: &StreetId, year: i32) -> Result<(String, Rules, YearEnd)> {
    let december = Month::parse("year", &format!("{year:04}-12"))?;
    let scheme = store::scheme_in_force(pool, street, december).await?.ok_or_else(|| {
        Error::failed_precondition("NO_SCHEME", format!("no scheme is in force in December {year}: create one first"))
    })?;
    let rules = Rules::check(&scheme.scheme)
        .map_err(|_| Error::failed_precondition("SCHEME_INVALID", "the scheme in force cannot score"))?;
    let combine = scheme.scheme.year_end.unwrap_or(UNSET);
    Ok((scheme.scheme.name.clone(), rules, combine))
}

/// The evaluation as CSV.
pub(crate) fn csv(e: &YearEndEvaluation) -> HttpBody {
    let rows = e.entries.iter().map(|x| {
        vec![
            x.worker.clone(),
            x.community.clone(),
            x.months.len().to_string(),
            x.approved_months.to_string(),
            format!("{:.2}", x.months_mean),
            if x.review_ratings > 0 { format!("{:.2}", x.review_mean) } else { String::new() },
            format!("{:.2}", x.score),
            x.stars.to_string(),
            x.rank.to_string(),
            if x.award { "是" } else { "否" }.to_owned(),
        ]
    });
    HttpBody {
        content_type: "text/csv; charset=utf-8".into(),
        data: export::csv(&HEADER, rows).into_bytes(),
        extensions: Vec::new(),
    }
}

/// The evaluation as a page to print: one table, every text escaped, nothing fetched.
pub(crate) fn html(e: &YearEndEvaluation) -> HttpBody {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>{year} 年度网格员考评</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;width:100%}}\
         th,td{{border:1px solid #444;padding:4px 6px;text-align:left}}th{{background:#eee}}\
         @media print{{body{{margin:0}}th{{background:none}}}}</style></head><body>\
         <h1>{year} 年度网格员考评</h1><p>{street} · 考评办法 {scheme}</p><table><thead><tr>",
        year = e.year,
        street = export::html(&e.parent),
        scheme = export::html(&e.scheme),
    );
    for h in HEADER {
        let _ = write!(page, "<th>{h}</th>");
    }
    page.push_str("</tr></thead><tbody>");
    for x in &e.entries {
        let review = if x.review_ratings > 0 { format!("{:.2}", x.review_mean) } else { "—".into() };
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{review}</td><td>{:.2}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            export::html(&x.worker),
            export::html(&x.community),
            x.months.len(),
            x.approved_months,
            x.months_mean,
            x.score,
            "★".repeat(usize::try_from(x.stars).unwrap_or(0)),
            x.rank,
            if x.award { "是" } else { "否" },
        );
    }
    page.push_str("</tbody></table></body></html>");
    HttpBody { content_type: "text/html; charset=utf-8".into(), data: page.into_bytes(), extensions: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(month: &str, score: f64, approved: bool) -> Review {
        Review {
            month: month.into(),
            score,
            stars: 0,
            state: if approved { State::Approved as i32 } else { State::Computed as i32 },
            ..Default::default()
        }
    }

    #[test]
    fn a_year_combines_its_months_and_reviews_ranks_and_awards() {
        let street = StreetId::parse("s", "zhongjie").expect("street");
        let scheme = crate::seed::demo_scheme(Month::parse("m", "2026-01").expect("month"));
        let rules = Rules::check(&scheme).expect("rules");
        let combine = YearEnd { months_weight: 80.0, award_score: 90.0, award_months: 2 };
        let reviews = vec![
            ("a".to_owned(), "east".to_owned(), review("2026-01", 90.0, true)),
            ("a".to_owned(), "east".to_owned(), review("2026-02", 96.0, true)),
            ("b".to_owned(), "east".to_owned(), review("2026-01", 99.0, true)),
            ("c".to_owned(), "east".to_owned(), review("2026-02", 93.0, false)),
            ("d".to_owned(), "west".to_owned(), review("2026-03", 70.0, true)),
        ];
        let democratic = BTreeMap::from([("a".to_owned(), (45, 10))]);
        let e = evaluate(&street, 2026, "s", &rules, &combine, reviews, &democratic);
        let lines: Vec<(&str, f64, i32, bool)> =
            e.entries.iter().map(|x| (x.worker.as_str(), x.score, x.rank, x.award)).collect();
        // a: 80% × 93 + 20% × (4.5 ÷ 5 × 100 = 90) = 92.4; b: 99 with one approved month (no
        // award); c: 93, not approved.
        assert_eq!(
            lines,
            vec![
                ("users/b", 99.0, 1, false),
                ("users/c", 93.0, 2, false),
                ("users/a", 92.4, 3, true),
                ("users/d", 70.0, 1, false)
            ]
        );
        assert!(e.entries[2].explanation.contains("80% × 93 + 20% × 90 = 92.4"), "{}", e.entries[2].explanation);
        let text = String::from_utf8(csv(&e).data).expect("text");
        assert!(text.contains("users/a,streets/zhongjie/communities/east,2,2,93.00,4.50,92.40,4,3,是\r\n"), "{text}");
        let page = String::from_utf8(html(&e).data).expect("text");
        assert!(page.contains("<td>users/a</td>") && page.contains("2026 年度网格员考评"));
    }
}
