//! The quarterly service report of in-service Party members (在职党员双报到) for their employers:
//! each member's tasks confirmed in the quarter, their minutes and the residents' ratings — as
//! a message, and as a CSV file.

use std::collections::HashMap;

use chrono::{NaiveDate, NaiveTime, TimeZone, Utc};
use civic_kit::auth::Caller;
use civic_kit::error::{Error, Result};
use civic_kit::names::{CommunityName, StreetId};
use civic_kit::time;
use civic_proto::google::api::HttpBody;
use civic_proto::volunteer::*;
use prost::Message;

use crate::Volunteers;
use crate::api::Staff;

/// The most members one report lists: past it, name a community or an employer.
const MAX_ROWS: i64 = 10_000;

/// The CSV file's header row.
const HEADER: [&str; 9] =
    ["志愿者", "姓名", "工作单位", "报到日期", "社区", "服务次数", "服务时长（小时）", "评价次数", "平均评价"];

impl Volunteers {
    pub(crate) async fn service_report(&self, caller: &Caller, req: GetServiceReportRequest) -> Result<ServiceReport> {
        let street = StreetId::parse_parent("parent", &req.parent)?;
        if !req.community.is_empty() && CommunityName::parse("community", &req.community)?.street() != &street {
            return Err(Error::permission_denied("not a community of this street"));
        }
        let community = match crate::api::staff(caller, &street)?.1 {
            Some(Staff::Street) if req.community.is_empty() => String::new(),
            Some(Staff::Street) => CommunityName::parse("community", &req.community)?.id().to_string(),
            Some(Staff::Community(mine)) => {
                if !req.community.is_empty() && CommunityName::parse("community", &req.community)?.id().as_str() != mine
                {
                    return Err(Error::permission_denied("cadres report on their own community's members"));
                }
                mine
            }
            None => return Err(Error::permission_denied("the street's staff read the service report")),
        };
        if !(2000..=2100).contains(&req.year) {
            return Err(Error::invalid("year", "must be 2000 to 2100"));
        }
        if !(1..=4).contains(&req.quarter) {
            return Err(Error::invalid("quarter", "must be 1 to 4"));
        }
        let first_month = u32::try_from(req.quarter * 3 - 2).unwrap_or(1);
        let start = NaiveDate::from_ymd_opt(req.year, first_month, 1).unwrap_or_default();
        let end = start.checked_add_months(chrono::Months::new(3)).unwrap_or(start);
        let at = |day: NaiveDate| {
            self.zone.from_local_datetime(&day.and_time(NaiveTime::MIN)).single().map(|t| t.with_timezone(&Utc))
        };
        let (Some(from), Some(to)) = (at(start), at(end)) else {
            return Err(Error::invalid("year", "is not a year of the calendar"));
        };

        let reader = self.writer.db().reader();
        let members: Vec<(String, Vec<u8>)> = sqlx::query_as(
            "select volunteer_id, body from volunteers
             where street = $1 and state = 'APPROVED' and kind = 'IN_SERVICE_PARTY_MEMBER' and ($2 = '' or community_id = $2)
             order by volunteer_id limit $3",
        )
        .bind(street.as_str())
        .bind(&community)
        .bind(MAX_ROWS + 1)
        .fetch_all(reader)
        .await?;
        if members.len() > usize::try_from(MAX_ROWS).unwrap_or(usize::MAX) {
            return Err(Error::failed_precondition(
                "TOO_LARGE",
                format!("more than {MAX_ROWS} members: name a community or an employer"),
            ));
        }
        let served: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
            "select volunteer, count(*), cast(coalesce(sum(minutes), 0) as bigint),
                 cast(coalesce(sum(case when rating > 0 then 1 else 0 end), 0) as bigint),
                 cast(coalesce(sum(rating), 0) as bigint)
             from claims
             where street = $1 and state = 'ACTIVE' and confirmed_at <> '' and confirmed_at >= $2 and confirmed_at < $3
             group by volunteer",
        )
        .bind(street.as_str())
        .bind(time::to_text(from))
        .bind(time::to_text(to))
        .fetch_all(reader)
        .await?;
        let served: HashMap<String, (i64, i64, i64, i64)> =
            served.into_iter().map(|(who, tasks, minutes, rated, sum)| (who, (tasks, minutes, rated, sum))).collect();
        let mut rows = Vec::with_capacity(members.len());
        for (id, body) in members {
            let v = Volunteer::decode(body.as_slice()).map_err(Error::internal)?;
            if !req.employer.is_empty() && v.employer != req.employer {
                continue;
            }
            let (tasks, minutes, rated, sum) = served.get(&format!("users/{id}")).copied().unwrap_or_default();
            rows.push(ServiceReportRow {
                volunteer: format!("{}/volunteers/{id}", street.parent()),
                display_name: v.display_name,
                employer: v.employer,
                registration_date: v.registration_date,
                community: v.community,
                tasks: i32::try_from(tasks).unwrap_or(i32::MAX),
                minutes,
                ratings: i32::try_from(rated).unwrap_or(i32::MAX),
                average_rating: if rated > 0 { (sum as f64 / rated as f64 * 10.0).round() / 10.0 } else { 0.0 },
            });
        }
        Ok(ServiceReport { year: req.year, quarter: req.quarter, rows })
    }

    pub(crate) async fn export_service_report(
        &self,
        caller: &Caller,
        req: ExportServiceReportRequest,
    ) -> Result<HttpBody> {
        let ExportServiceReportRequest { parent, year, quarter, community, employer } = req;
        let asked = GetServiceReportRequest { parent, year, quarter, community, employer };
        let report = self.service_report(caller, asked).await?;
        Ok(HttpBody {
            content_type: "text/csv; charset=utf-8".into(),
            data: csv(&report).into_bytes(),
            extensions: Vec::new(),
        })
    }
}

/// The report as CSV (RFC 4180, with a byte-order mark so spreadsheets read it as UTF-8).
pub fn csv(report: &ServiceReport) -> String {
    let rows = report.rows.iter().map(|r| {
        let average = if r.ratings > 0 { format!("{:.1}", r.average_rating) } else { String::new() };
        vec![
            r.volunteer.clone(),
            r.display_name.clone(),
            r.employer.clone(),
            r.registration_date.clone(),
            r.community.clone(),
            r.tasks.to_string(),
            format!("{:.1}", r.minutes as f64 / 60.0),
            r.ratings.to_string(),
            average,
        ]
    });
    civic_kit::export::csv(&HEADER, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_has_a_header_and_a_row_per_member() {
        let report = ServiceReport {
            year: 2026,
            quarter: 4,
            rows: vec![ServiceReportRow {
                volunteer: "streets/zhongjie/volunteers/v1".into(),
                display_name: "王建国".into(),
                employer: "平凉市税务局".into(),
                registration_date: "2026-03-01".into(),
                community: "streets/zhongjie/communities/dongyuan".into(),
                tasks: 3,
                minutes: 390,
                ratings: 2,
                average_rating: 4.5,
            }],
        };
        let text = csv(&report);
        let lines: Vec<&str> = text.trim_start_matches('\u{feff}').split("\r\n").collect();
        assert_eq!(lines[0], HEADER.join(","));
        assert_eq!(
            lines[1],
            "streets/zhongjie/volunteers/v1,王建国,平凉市税务局,2026-03-01,streets/zhongjie/communities/dongyuan,3,6.5,2,4.5"
        );
        assert_eq!(lines.len(), 3, "a line break after the last row");
    }
}
