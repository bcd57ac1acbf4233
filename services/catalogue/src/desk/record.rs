//! A case as an `Application` message, without its etag, and an inquiry as an `Inquiry`: how the
//! store keeps them (the messages' encoding, versioned by their field numbers) and how the API
//! shows them (a case with its etag added). The one mapping between the desk's domain and the
//! contract.

use civic_kit::error::{Error, Result};
use civic_kit::names::UserName;
use civic_kit::time;
use civic_proto::catalogue::application::State;

use super::domain::{ApplicationName, Case, Inquiry, InquiryName};
use crate::domain::{ItemName, RevisionName};

/// The case as a message (its etag left empty).
pub fn to_message(case: &Case) -> civic_proto::catalogue::Application {
    let name_of = |user: &Option<UserName>| user.as_ref().map(ToString::to_string).unwrap_or_default();
    civic_proto::catalogue::Application {
        name: case.name.to_string(),
        applicant: case.applicant.to_string(),
        service_item: case.revision.item.to_string(),
        service_item_revision: case.revision.to_string(),
        first_owner: name_of(&case.first_owner),
        handler: name_of(&case.handler),
        materials: case.materials.clone(),
        state: case.state as i32,
        forwarded_to: case.forwarded_to.clone(),
        rejection_reason: case.rejection_reason.clone(),
        due_time: Some(time::to_timestamp(case.due_time)),
        timeline: case.timeline.clone(),
        note: case.note.clone(),
        etag: String::new(),
        create_time: Some(time::to_timestamp(case.created)),
        update_time: Some(time::to_timestamp(case.updated)),
    }
}

fn bad(what: &'static str) -> Error {
    Error::internal(BadRecord(what))
}

fn user(field: &'static str, text: &str) -> Result<UserName> {
    UserName::parse(field, text).map_err(|_| bad(field))
}

fn optional_user(field: &'static str, text: &str) -> Result<Option<UserName>> {
    match text {
        "" => Ok(None),
        text => user(field, text).map(Some),
    }
}

fn at(field: &'static str, t: Option<pbjson_types::Timestamp>) -> Result<chrono::DateTime<chrono::Utc>> {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)).ok_or_else(|| bad(field))
}

/// The case a stored message holds, at `version`.
pub fn from_message(message: civic_proto::catalogue::Application, version: i64) -> Result<Case> {
    Ok(Case {
        name: ApplicationName::parse("name", &message.name).map_err(|_| bad("name"))?,
        version,
        applicant: user("applicant", &message.applicant)?,
        revision: RevisionName::parse("revision", &message.service_item_revision).map_err(|_| bad("revision"))?,
        first_owner: optional_user("first_owner", &message.first_owner)?,
        handler: optional_user("handler", &message.handler)?,
        state: State::try_from(message.state).map_err(|_| bad("state"))?,
        due_time: at("due_time", message.due_time)?,
        created: at("create_time", message.create_time)?,
        updated: at("update_time", message.update_time)?,
        materials: message.materials,
        forwarded_to: message.forwarded_to,
        rejection_reason: message.rejection_reason,
        timeline: message.timeline,
        note: message.note,
    })
}

/// The inquiry as a message.
pub fn inquiry_to_message(inquiry: &Inquiry) -> civic_proto::catalogue::Inquiry {
    civic_proto::catalogue::Inquiry {
        name: inquiry.name.to_string(),
        asker: inquiry.asker.as_ref().map(ToString::to_string).unwrap_or_default(),
        service_item: inquiry.service_item.as_ref().map(ToString::to_string).unwrap_or_default(),
        question: inquiry.question.clone(),
        answer: inquiry.answer.clone(),
        answered_by: inquiry.answered_by.to_string(),
        create_time: Some(time::to_timestamp(inquiry.created)),
    }
}

/// The inquiry a stored message holds.
pub fn inquiry_from_message(message: civic_proto::catalogue::Inquiry) -> Result<Inquiry> {
    Ok(Inquiry {
        name: InquiryName::parse("name", &message.name).map_err(|_| bad("name"))?,
        asker: optional_user("asker", &message.asker)?,
        service_item: match message.service_item.as_str() {
            "" => None,
            item => Some(ItemName::parse("service_item", item).map_err(|_| bad("service_item"))?),
        },
        answered_by: user("answered_by", &message.answered_by)?,
        created: at("create_time", message.create_time)?,
        question: message.question,
        answer: message.answer,
    })
}

#[derive(Debug, thiserror::Error)]
#[error("a stored desk record has an unreadable {0}")]
struct BadRecord(&'static str);
