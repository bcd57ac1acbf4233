//! The rules of a case at the desk: its lifecycle, the materials check, and names.

use civic_kit::error::{Error, Result};
use civic_kit::names;
use civic_proto::catalogue::application::State;
use civic_proto::catalogue::{CheckedMaterial, Material};

/// What can be done to a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
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

/// The name of an application, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationName {
    /// The street id.
    pub street: String,
    /// The application id.
    pub id: String,
}

impl ApplicationName {
    /// Parses `streets/{street}/applications/{application}`.
    pub fn parse(field: &str, name: &str) -> Result<Self> {
        let ids = names::parse(field, name, &["streets", "applications"])?;
        Ok(Self { street: ids[0].to_owned(), id: ids[1].to_owned() })
    }
}

impl std::fmt::Display for ApplicationName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "streets/{}/applications/{}", self.street, self.id)
    }
}

/// Checks a `users/{user}` reference.
pub fn parse_user(field: &str, user: &str) -> Result<String> {
    match user.strip_prefix("users/") {
        Some(id) if !id.is_empty() && id.len() <= 256 && !id.contains('/') && !id.chars().any(char::is_whitespace) => {
            Ok(user.to_owned())
        }
        _ => Err(Error::invalid(field, "must be a user name of the form users/{user}")),
    }
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
