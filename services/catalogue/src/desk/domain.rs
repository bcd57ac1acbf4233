//! The rules of a case at the desk: names, the case and its lifecycle (who owns it, what each
//! action does, the timeline), and the materials check. The case's state and its timeline
//! entries and checked materials are the contract's own value types.

use chrono::{DateTime, Utc};
use civic_kit::error::{Error, Result};
use civic_kit::names::{Collection, Name, UserName};
use civic_kit::time;
use civic_proto::catalogue::application::State;
use civic_proto::catalogue::{CheckedMaterial, Material, TimelineEntry};

use crate::domain::RevisionName;

/// The street's cases at the desk.
#[derive(Debug)]
pub struct Applications;

impl Collection for Applications {
    const COLLECTION: &'static str = "applications";
}

/// The name of a case: `streets/{street}/applications/{application}`.
pub type ApplicationName = Name<Applications>;

/// The street's recorded inquiries.
#[derive(Debug)]
pub struct Inquiries;

impl Collection for Inquiries {
    const COLLECTION: &'static str = "inquiries";
}

/// The name of an inquiry: `streets/{street}/inquiries/{inquiry}`.
pub type InquiryName = Name<Inquiries>;

/// A question answered at the desk that led to no application (who asked, what, who answered).
#[derive(Debug, Clone, PartialEq)]
pub struct Inquiry {
    /// Its name.
    pub name: InquiryName,
    /// The resident who asked, when known.
    pub asker: Option<UserName>,
    /// The item asked about, when there was one.
    pub service_item: Option<crate::domain::ItemName>,
    /// The question.
    pub question: String,
    /// The answer given.
    pub answer: String,
    /// The staff member who answered.
    pub answered_by: UserName,
    /// When it was recorded.
    pub created: DateTime<Utc>,
}

/// A case at the desk.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// Its name.
    pub name: ApplicationName,
    /// The change counter behind the etag.
    pub version: i64,
    /// The resident who applies.
    pub applicant: UserName,
    /// The revision of the item it was filed under, kept for good.
    pub revision: RevisionName,
    /// The staff member who received it first (首问负责), once one has.
    pub first_owner: Option<UserName>,
    /// The staff member working on it now.
    pub handler: Option<UserName>,
    /// The item's materials and whether each was provided.
    pub materials: Vec<CheckedMaterial>,
    /// Where it stands.
    pub state: State,
    /// The office a forwarded case went to.
    pub forwarded_to: String,
    /// Why it was rejected.
    pub rejection_reason: String,
    /// When it is due.
    pub due_time: DateTime<Utc>,
    /// Every step, oldest first.
    pub timeline: Vec<TimelineEntry>,
    /// The applicant's or the desk's note.
    pub note: String,
    /// When it was received.
    pub created: DateTime<Utc>,
    /// When it last changed.
    pub updated: DateTime<Utc>,
}

/// A new case: what [`Case::receive`] needs.
#[derive(Debug)]
pub struct Filing {
    /// Its name.
    pub name: ApplicationName,
    /// The resident who applies.
    pub applicant: UserName,
    /// The item's revision in force.
    pub revision: RevisionName,
    /// The staff member filing it at the desk (who owns it from then on), or none when the
    /// resident filed it from the app.
    pub received_by: Option<UserName>,
    /// Who filed it: the staff member, or the resident.
    pub filed_by: UserName,
    /// The note.
    pub note: String,
    /// When it is due.
    pub due_time: DateTime<Utc>,
}

impl Case {
    /// A case just received, at `now`.
    pub fn receive(filing: Filing, now: DateTime<Utc>) -> Self {
        let Filing { name, applicant, revision, received_by, filed_by, note, due_time } = filing;
        Self {
            name,
            version: 1,
            applicant,
            revision,
            first_owner: received_by.clone(),
            handler: received_by,
            materials: Vec::new(),
            state: State::Received,
            forwarded_to: String::new(),
            rejection_reason: String::new(),
            due_time,
            timeline: vec![entry(&filed_by, "receive", State::Received, "", now)],
            note,
            created: now,
            updated: now,
        }
    }

    /// Applies `step`: the transition (FAILED_PRECONDITION when the case cannot take it;
    /// `on_behalf` says whether its item is handled on the resident's behalf), what the action
    /// sets (`set`: the handler handed to, the office, the reason, the materials checked), the
    /// owner (the first staff member to act on a case filed from the app), the timeline entry,
    /// and a new version.
    pub fn act(&mut self, step: Step<'_>, on_behalf: bool, set: impl FnOnce(&mut Case)) -> Result<()> {
        let Step { actor, action, note, at: now } = step;
        let next = transition(self.state, action, on_behalf)?;
        set(self);
        if self.first_owner.is_none() && action != Action::Withdraw {
            self.first_owner = Some(actor.clone());
            if self.handler.is_none() {
                self.handler = Some(actor.clone());
            }
        }
        self.state = next;
        self.timeline.push(entry(actor, action.as_str(), next, note, now));
        self.updated = now;
        self.version += 1;
        Ok(())
    }
}

/// Who does what to a case, when, and the note for its timeline.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    /// Who acts.
    pub actor: &'a UserName,
    /// What they do.
    pub action: Action,
    /// The timeline's note: the reason, the office, the staff member handed to.
    pub note: &'a str,
    /// When.
    pub at: DateTime<Utc>,
}

fn entry(actor: &UserName, action: &str, state: State, note: &str, at: DateTime<Utc>) -> TimelineEntry {
    TimelineEntry {
        time: Some(time::to_timestamp(at)),
        actor: actor.to_string(),
        action: action.to_owned(),
        state: state as i32,
        note: note.to_owned(),
    }
}

/// What can be done to a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Filed and received (only [`Case::receive`] does it).
    Receive,
    /// Materials checked, case accepted.
    Accept,
    /// Work begins.
    Start,
    /// Carried to the deciding office (on-behalf items only).
    Forward,
    /// Another staff member takes the work over.
    HandOver,
    /// Done.
    Complete,
    /// Refused, with a reason.
    Reject,
    /// Withdrawn by the applicant.
    Withdraw,
}

impl Action {
    /// The action's name in the timeline and in event topics.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Receive => "receive",
            Action::Accept => "accept",
            Action::Start => "start",
            Action::Forward => "forward",
            Action::HandOver => "hand_over",
            Action::Complete => "complete",
            Action::Reject => "reject",
            Action::Withdraw => "withdraw",
        }
    }
}

/// Whether a case in `state` is still open.
pub fn is_open(state: State) -> bool {
    matches!(state, State::Received | State::Accepted | State::InProgress | State::Forwarded)
}

/// The state after `action` on a case in `state`, or FAILED_PRECONDITION. `on_behalf` says
/// whether the item is handled on the resident's behalf (only those are forwarded).
pub fn transition(state: State, action: Action, on_behalf: bool) -> Result<State> {
    use State::*;
    let next = match (action, state) {
        (Action::Accept, Received) => Some(Accepted),
        (Action::Start, Accepted) => Some(InProgress),
        (Action::Forward, Accepted | InProgress) if on_behalf => Some(Forwarded),
        (Action::Forward, Accepted | InProgress) => {
            return Err(Error::failed_precondition(
                "NOT_ON_BEHALF",
                "only items handled on the resident's behalf are forwarded",
            ));
        }
        (Action::HandOver, s) if is_open(s) => Some(s),
        (Action::Complete, Accepted | InProgress | Forwarded) => Some(Completed),
        (Action::Reject | Action::Withdraw, s) if is_open(s) => {
            Some(if action == Action::Reject { Rejected } else { Withdrawn })
        }
        _ => None,
    };
    next.ok_or_else(|| {
        Error::failed_precondition(
            "ILLEGAL_TRANSITION",
            format!("a case in state {} cannot {}", state.as_str_name(), action.as_str().replace('_', " ")),
        )
    })
}

/// Checks the materials presented against the item's list: every required material must be
/// provided, and every name must be on the list. Returns the checked list in the item's order.
pub fn check_materials(required: &[Material], presented: &[CheckedMaterial]) -> Result<Vec<CheckedMaterial>> {
    for (i, m) in presented.iter().enumerate() {
        if !required.iter().any(|r| r.name == m.name) {
            return Err(Error::invalid(format!("materials[{i}].name"), "is not on the item's list of materials"));
        }
    }
    let missing: Vec<&str> = required
        .iter()
        .filter(|r| r.required && !presented.iter().any(|m| m.name == r.name && m.provided))
        .map(|r| r.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(Error::failed_precondition(
            "MATERIALS_MISSING",
            format!("required materials are missing: {}", missing.join("、")),
        )
        .with_metadata("missing", missing.join(",")));
    }
    Ok(required
        .iter()
        .map(|r| {
            presented.iter().find(|m| m.name == r.name).cloned().unwrap_or(CheckedMaterial {
                name: r.name.clone(),
                provided: false,
                note: String::new(),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use civic_proto::catalogue::material::Form;

    #[test]
    fn the_lifecycle_allows_only_its_transitions() {
        use State::*;
        assert_eq!(transition(Received, Action::Accept, false).expect("accept"), Accepted);
        assert_eq!(transition(Accepted, Action::Start, false).expect("start"), InProgress);
        assert_eq!(transition(InProgress, Action::Forward, true).expect("forward"), Forwarded);
        assert_eq!(transition(Forwarded, Action::Complete, true).expect("complete"), Completed);
        assert_eq!(transition(Received, Action::Withdraw, false).expect("withdraw"), Withdrawn);
        assert_eq!(transition(InProgress, Action::HandOver, false).expect("hand over"), InProgress);
        for (state, action) in [
            (Received, Action::Complete),
            (Received, Action::Start),
            (Completed, Action::Reject),
            (Rejected, Action::Accept),
            (Withdrawn, Action::HandOver),
            (Accepted, Action::Accept),
        ] {
            let err = transition(state, action, true).expect_err("illegal");
            assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{state:?} {action:?}");
        }
        assert_eq!(transition(Accepted, Action::Forward, false).expect_err("not on behalf").reason(), "NOT_ON_BEHALF");
    }

    #[test]
    fn the_first_staff_member_to_act_owns_a_case_filed_from_the_app() {
        let user = |u: &str| UserName::parse("u", u).expect("user");
        let name = ApplicationName::parse("n", "streets/zhongjie/applications/a1").expect("name");
        let revision = RevisionName::parse("r", "streets/zhongjie/items/x/revisions/1").expect("revision");
        let now = Utc::now();
        let filing = Filing {
            name,
            applicant: user("users/li"),
            revision,
            received_by: None,
            filed_by: user("users/li"),
            note: String::new(),
            due_time: now,
        };
        let mut case = Case::receive(filing, now);
        assert_eq!((case.first_owner.as_ref(), case.version), (None, 1));
        let (wang, zhao) = (user("users/wang"), user("users/zhao"));
        let step = |actor, action| Step { actor, action, note: "", at: now };
        case.act(step(&wang, Action::Accept), false, |_| {}).expect("accept");
        case.act(step(&wang, Action::HandOver), false, |c| c.handler = Some(zhao.clone())).expect("hand over");
        assert_eq!(case.first_owner, Some(wang.clone()), "the first to act owns it for good");
        assert_eq!((case.handler.clone(), case.version), (Some(zhao.clone()), 3));
        let actions: Vec<&str> = case.timeline.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["receive", "accept", "hand_over"]);
        assert!(case.act(step(&wang, Action::Accept), false, |c| c.note = "x".into()).is_err());
        assert_eq!((case.version, case.note.as_str()), (3, ""), "a refused action changes nothing");
    }

    #[test]
    fn required_materials_must_be_provided() {
        let material = |name: &str, required: bool| Material {
            name: name.into(),
            form: Form::Original as i32,
            copies: 1,
            required,
            ..Default::default()
        };
        let list = vec![material("身份证", true), material("照片", false)];
        let id = CheckedMaterial { name: "身份证".into(), provided: true, note: String::new() };
        let checked = check_materials(&list, std::slice::from_ref(&id)).expect("enough");
        assert_eq!(checked.len(), 2);
        assert!(!checked[1].provided);
        assert_eq!(check_materials(&list, &[]).expect_err("missing").reason(), "MATERIALS_MISSING");
        let unknown = CheckedMaterial { name: "户口簿".into(), provided: true, note: String::new() };
        assert_eq!(check_materials(&list, &[id, unknown]).expect_err("unknown").code(), tonic::Code::InvalidArgument);
    }
}
