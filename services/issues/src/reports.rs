//! Issues as reports: the street's categories, and the outward view of its issues — the public
//! board for anyone, and the full report for those who may see an issue. The Open311 interface
//! of the gateway is built on these two calls.
//!
//! The public board shows only issues of the categories configured public (problems of shared
//! spaces), their place rounded to three decimals of a degree (about 100 metres), their status
//! in the street's fixed words for the latest public step, and none of the residents' words:
//! no title, description, address, reporter or note.

use chrono::{DateTime, Utc};
use civic_kit::auth::Caller;
use civic_kit::error::{Result, Violations};
use civic_kit::names::StreetId;
use civic_kit::{page, time};
use civic_proto::issues::issue::State;
use civic_proto::issues::list_issue_reports_request::Openness;
use civic_proto::issues::*;

use crate::Issues;
use crate::api::Access;
use crate::domain::{Case, IssueName, is_category};
use crate::store::{self, IssueFilter, OPEN_STATES, Scope};

/// The street's words for a public step, as the public board shows them.
fn public_words(action: &str, state: State) -> &'static str {
    match action {
        "created" | "located" => "已收到反映",
        "acknowledged" => "已受理",
        "triaged" => "已列入问题处置清单",
        "assigned" => "已派专人办理",
        "referred" => "已转交相关部门",
        "referral_accepted" | "referral_started" => "相关部门办理中",
        "referral_completed" => "相关部门已办结",
        "resolved" => "已办结，等待反映人评价",
        "explained" => "暂时无法解决，已向反映人说明情况，到期复查",
        "reopened" => "重新办理中",
        "merged" => "与相同问题合并办理",
        "duplicate_merged" => "多位居民反映，合并办理",
        "feedback" | "closed" => "已办结",
        "escalated" => "已督办",
        _ => match state {
            State::New | State::Unspecified => "已收到反映",
            State::Acknowledged => "已受理",
            State::InProgress | State::Reopened => "办理中",
            State::Referred => "已转交相关部门",
            State::Resolved => "已办结，等待反映人评价",
            State::Explained => "暂时无法解决，已向反映人说明情况，到期复查",
            State::Closed => "已办结",
            State::Merged => "与相同问题合并办理",
        },
    }
}

/// A point to three decimals of a degree.
fn coarse(point: Point) -> Point {
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    Point { latitude: round(point.latitude), longitude: round(point.longitude) }
}

/// A request's time, checked.
fn instant(field: &str, t: Option<&pbjson_types::Timestamp>, v: &mut Violations) -> Option<DateTime<Utc>> {
    let t = t?;
    let at = u32::try_from(t.nanos).ok().and_then(|n| DateTime::from_timestamp(t.seconds, n));
    if at.is_none() {
        v.add(field, "is not a valid time");
    }
    at
}

impl Issues {
    pub(crate) fn issue_categories(&self, req: &ListIssueCategoriesRequest) -> Result<ListIssueCategoriesResponse> {
        StreetId::parse_parent("parent", &req.parent)?;
        let issue_categories = self
            .rules
            .categories
            .iter()
            .map(|(id, c)| IssueCategory {
                category: id.clone(),
                display_name: c.display_name.clone(),
                description: c.description.clone(),
                public: c.public,
                keywords: c.keywords.clone(),
            })
            .collect();
        Ok(ListIssueCategoriesResponse { issue_categories })
    }

    pub(crate) async fn issue_reports(
        &self,
        caller: &Caller,
        req: &ListIssueReportsRequest,
    ) -> Result<ListIssueReportsResponse> {
        let street = StreetId::parse_parent("parent", &req.parent)?;
        // Who the caller is decides what is listed, before anything is read.
        let access = match caller {
            Caller::Anonymous => None,
            _ => Some(self.access(caller, &street)?),
        };
        let size = page::page_size(req.page_size, 50, 100)?;
        let mut v = Violations::new();
        let mut f = IssueFilter::default();
        for category in &req.categories {
            if is_category(category) {
                f.categories.push(category.clone());
            } else {
                v.add("categories", "are 1 to 40 lowercase letters, digits and _");
            }
        }
        for name in &req.issues {
            match v.check(IssueName::parse("issues", name)) {
                Some(n) if n.street() == &street => f.ids.push(n.id().to_string()),
                Some(_) => v.add("issues", "must be issues of the same street"),
                None => {}
            }
        }
        f.open = match req.openness() {
            Openness::Unspecified => None,
            Openness::Open => Some(true),
            Openness::Closed => Some(false),
        };
        let from = instant("start_time", req.start_time.as_ref(), &mut v);
        let to = instant("end_time", req.end_time.as_ref(), &mut v);
        if let (Some(a), Some(b)) = (from, to)
            && a >= b
        {
            v.add("end_time", "must be after start_time");
        }
        v.finish()?;
        f.created_from = from.map(time::to_text).unwrap_or_default();
        f.created_before = to.map(time::to_text).unwrap_or_default();
        f.scope = match &access {
            None => Scope::Public(
                self.rules.categories.iter().filter(|(_, c)| c.public).map(|(id, _)| id.clone()).collect(),
            ),
            Some(Access::Street) => Scope::Street,
            Some(Access::Community(c)) => Scope::Community(c.clone()),
            Some(Access::Grids(g)) => Scope::Grids(g.clone()),
            Some(Access::Officer(d)) => Scope::Department(d.clone()),
            Some(Access::Resident(me)) => Scope::Reporter(me.clone()),
            Some(Access::Platform(me)) => Scope::CreatedBy(me.clone()),
        };
        let query = format!(
            "ListIssueReports|{street}|{:?}|{:?}|{:?}|{}|{}|{}|{:?}",
            f.categories,
            f.ids,
            f.open,
            f.created_from,
            f.created_before,
            caller.key(),
            f.scope
        );
        let after = self.pages.decode_position(&req.page_token, &query, 2)?.map(|p| (p[0].clone(), p[1].clone()));
        let reader = self.writer.db().reader();
        let mut rows = store::list(reader, &street, &f, after, size + 1).await?;
        let next_page_token = self.pages.next_page(&query, &mut rows, size, |(_, c, i)| vec![c.clone(), i.clone()]);
        let ids: Vec<String> = rows.iter().map(|(_, _, id)| id.clone()).collect();
        let full = access.is_some();
        let latest = store::latest_public(reader, &street, &ids, full).await?;
        let issue_reports = rows
            .iter()
            // An issue about a household is never on the public board, whatever its category.
            .filter(|(case, _, _)| full || case.issue.household.is_empty())
            .map(|(case, _, id)| {
                let (action, at, words) =
                    latest.get(id).map_or(("", "", ""), |(a, t, w)| (a.as_str(), t.as_str(), w.as_str()));
                self.report(case, full, action, at, words)
            })
            .collect();
        Ok(ListIssueReportsResponse { issue_reports, next_page_token })
    }

    /// `case` as a report: in full, or as the public board shows it — where the latest public
    /// step (`action`, at `at`) is all that tells it has changed.
    fn report(&self, case: &Case, full: bool, action: &str, at: &str, words: &str) -> IssueReport {
        let issue = &case.issue;
        let open = OPEN_STATES.contains(&case.state().as_str_name());
        // Which department works on it (the police, the health centre) is the reporter's to know.
        let department = case.referred_to().unwrap_or(&issue.assignee_department);
        let agency = match self.rules.departments.get(department) {
            Some(d) if full => d.display_name.clone(),
            _ => String::new(),
        };
        let status_notes = if full && !words.trim().is_empty() {
            words.to_owned()
        } else {
            public_words(action, case.state()).to_owned()
        };
        let mut report = IssueReport {
            issue: case.name.to_string(),
            category: issue.category.clone(),
            state: issue.state,
            open,
            status_notes,
            location: issue.location.map(|p| if full { p } else { coarse(p) }),
            community: issue.community.clone(),
            agency,
            full,
            create_time: issue.create_time,
            // Staff's internal notes move the issue's own update time: the board shows the last
            // public step's.
            update_time: if full { issue.update_time } else { time::text_to_timestamp(at).or(issue.create_time) },
            due_time: if open { issue.clock.and_then(|c| c.resolution_due_time) } else { None },
            merged_into: issue.merged_into.clone(),
            ..Default::default()
        };
        if full {
            report.title = issue.title.clone();
            report.description = issue.description.clone();
            report.address = issue.address.clone();
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_board_rounds_places_to_about_a_hundred_metres() {
        let p = coarse(Point { latitude: 35.546_789, longitude: 106.661_234 });
        assert_eq!((p.latitude, p.longitude), (35.547, 106.661));
    }

    #[test]
    fn every_state_has_public_words() {
        for state in [State::New, State::Closed, State::Explained, State::Merged, State::Referred] {
            assert!(!public_words("note", state).is_empty());
        }
        assert_eq!(public_words("referred", State::Referred), "已转交相关部门");
        assert_eq!(public_words("attached", State::Resolved), "已办结，等待反映人评价");
    }
}
