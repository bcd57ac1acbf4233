//! Resource names (AIP-122): parsed into newtypes at the edge, never built by hand from strings.
//! [`Id`] is one id segment, [`StreetId`] the tenant, [`UserName`] a `users/{user}` reference,
//! and [`Name`] the name of a resource in a street's collection (`streets/{street}/items/{item}`),
//! typed by its collection so that an item's name cannot stand where a case's is expected.

use std::fmt;
use std::marker::PhantomData;

use crate::error::{Error, Result};

/// Whether `id` is a valid resource id: a lowercase letter, then up to 62 lowercase letters,
/// digits or hyphens, not ending in a hyphen (AIP-122, RFC 1034 labels).
pub fn is_valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1] != b'-'
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// One id segment of a resource name: a lowercase letter, then up to 62 lowercase letters,
/// digits or hyphens, not ending in a hyphen.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(String);

impl Id {
    /// Checks `id`, reporting an invalid one as INVALID_ARGUMENT on `field`.
    pub fn parse(field: &str, id: &str) -> Result<Self> {
        if is_valid_id(id) {
            Ok(Self(id.to_owned()))
        } else {
            Err(Error::invalid(field, "must be 1 to 63 lowercase letters, digits or hyphens, starting with a letter"))
        }
    }

    /// A new id: `prefix` and a whole UUIDv7, so ids sort by creation time. The whole of it:
    /// within one millisecond v7 ids differ only in their last bits, so a shortened one repeats.
    pub fn generate(prefix: char) -> Self {
        debug_assert!(prefix.is_ascii_lowercase());
        Self(format!("{prefix}{}", uuid::Uuid::now_v7().simple()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A street, the tenant of every resource: its id segment (`zhongjie`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreetId(Id);

impl StreetId {
    /// Parses a street's id segment (`zhongjie`), reporting a bad one on `field`.
    pub fn parse(field: &str, id: &str) -> Result<Self> {
        Id::parse(field, id).map(Self)
    }

    /// Parses a parent, `streets/{street}`, reporting a bad one on `field`.
    pub fn parse_parent(field: &str, parent: &str) -> Result<Self> {
        let ids = parse(field, parent, &["streets"])?;
        Ok(Self(Id(ids[0].to_owned())))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The street's own resource name, `streets/{street}`.
    pub fn parent(&self) -> String {
        format!("streets/{}", self.0)
    }
}

impl fmt::Display for StreetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reference to a user, `users/{user}`: the user's stable id (a token's subject) — 1 to 256
/// bytes, no `/`, whitespace or control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserName(String);

impl UserName {
    /// Parses `users/{user}`, reporting a malformed one on `field`.
    pub fn parse(field: &str, name: &str) -> Result<Self> {
        match name.strip_prefix("users/") {
            Some(id) if is_valid_subject(id) => Ok(Self(name.to_owned())),
            _ => Err(Error::invalid(field, "must be a user name of the form users/{user}")),
        }
    }

    /// The user whose stable id is `subject` (already checked, as a verified token's is).
    pub(crate) fn of_subject(subject: &str) -> Self {
        Self(format!("users/{subject}"))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `subject` can be a user's id: 1–256 bytes, no `/`, whitespace or control characters.
pub(crate) fn is_valid_subject(subject: &str) -> bool {
    !subject.is_empty()
        && subject.len() <= 256
        && !subject.chars().any(|c| c == '/' || c.is_whitespace() || c.is_control())
}

/// A collection of resources in a street, such as `items`.
pub trait Collection {
    /// The collection id in names (`items` in `streets/{street}/items/{item}`).
    const COLLECTION: &'static str;
}

/// The name of a resource of collection `C` in a street: `streets/{street}/{C}/{id}`.
pub struct Name<C> {
    street: StreetId,
    id: Id,
    collection: PhantomData<fn() -> C>,
}

impl<C: Collection> Name<C> {
    /// The resource `id` of `street`.
    pub fn new(street: StreetId, id: Id) -> Self {
        Self { street, id, collection: PhantomData }
    }

    /// Parses `streets/{street}/{C}/{id}`, reporting a malformed name on `field`.
    pub fn parse(field: &str, name: &str) -> Result<Self> {
        let ids = parse(field, name, &["streets", C::COLLECTION])?;
        Ok(Self::new(StreetId(Id(ids[0].to_owned())), Id(ids[1].to_owned())))
    }

    /// The street.
    pub fn street(&self) -> &StreetId {
        &self.street
    }

    /// The resource's id within the street's collection.
    pub fn id(&self) -> &Id {
        &self.id
    }
}

impl<C: Collection> fmt::Display for Name<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "streets/{}/{}/{}", self.street, C::COLLECTION, self.id)
    }
}

impl<C: Collection> fmt::Debug for Name<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<C> Clone for Name<C> {
    fn clone(&self) -> Self {
        Self { street: self.street.clone(), id: self.id.clone(), collection: PhantomData }
    }
}

impl<C> PartialEq for Name<C> {
    fn eq(&self, other: &Self) -> bool {
        self.street == other.street && self.id == other.id
    }
}

impl<C> Eq for Name<C> {}

impl<C> std::hash::Hash for Name<C> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.street.hash(state);
        self.id.hash(state);
    }
}

/// `streets/{street}/communities/{community}`.
pub struct Communities;
impl Collection for Communities {
    const COLLECTION: &'static str = "communities";
}
/// A community's name.
pub type CommunityName = Name<Communities>;

/// A grid's name, `streets/{street}/communities/{community}/grids/{grid}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GridName {
    street: StreetId,
    community: Id,
    grid: Id,
}

impl GridName {
    /// Parses a grid's name, reporting a malformed one on `field`.
    pub fn parse(field: &str, name: &str) -> Result<Self> {
        let ids = parse(field, name, &["streets", "communities", "grids"])?;
        Ok(Self {
            street: StreetId::parse(field, ids[0])?,
            community: Id::parse(field, ids[1])?,
            grid: Id::parse(field, ids[2])?,
        })
    }

    /// The grid `grid` of `community`.
    pub fn new(community: &CommunityName, grid: Id) -> Self {
        Self { street: community.street().clone(), community: community.id().clone(), grid }
    }

    /// The street.
    pub fn street(&self) -> &StreetId {
        &self.street
    }

    /// The community's id.
    pub fn community_id(&self) -> &Id {
        &self.community
    }

    /// The community's name.
    pub fn community(&self) -> CommunityName {
        CommunityName::new(self.street.clone(), self.community.clone())
    }

    /// The grid's own id.
    pub fn id(&self) -> &Id {
        &self.grid
    }
}

impl fmt::Display for GridName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "streets/{}/communities/{}/grids/{}", self.street, self.community, self.grid)
    }
}

impl fmt::Debug for GridName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Parses `name` against collection ids, such as `["streets", "items"]` for
/// `streets/{street}/items/{item}`, returning the ids in order. A name of another shape, or
/// with an invalid id, is INVALID_ARGUMENT naming `field`.
pub fn parse<'a>(field: &str, name: &'a str, collections: &[&str]) -> Result<Vec<&'a str>> {
    let pattern = collections.iter().map(|c| format!("{c}/{{id}}")).collect::<Vec<_>>().join("/");
    let invalid = || Error::invalid(field, format!("must be a resource name of the form {pattern}"));
    let parts: Vec<&str> = name.split('/').collect();
    if parts.len() != collections.len() * 2 {
        return Err(invalid());
    }
    let mut ids = Vec::with_capacity(collections.len());
    for (pair, collection) in parts.chunks(2).zip(collections) {
        if pair[0] != *collection || !is_valid_id(pair[1]) {
            return Err(invalid());
        }
        ids.push(pair[1]);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Things;
    impl Collection for Things {
        const COLLECTION: &'static str = "things";
    }

    #[test]
    fn typed_names_round_trip_and_refuse_other_collections() {
        let name = Name::<Things>::parse("name", "streets/zhongjie/things/t-1").expect("valid");
        assert_eq!((name.street().as_str(), name.id().as_str()), ("zhongjie", "t-1"));
        assert_eq!(name.to_string(), "streets/zhongjie/things/t-1");
        let err = Name::<Things>::parse("thing", "streets/zhongjie/items/t-1").expect_err("another collection");
        assert_eq!(err.violations()[0].field, "thing");
        let new = Name::<Things>::new(name.street().clone(), Id::generate('t'));
        assert!(is_valid_id(new.id().as_str()) && new.id().as_str().len() == 33);
        assert_ne!(Id::generate('t'), Id::generate('t'));
    }

    #[test]
    fn user_names_are_checked() {
        assert_eq!(UserName::parse("applicant", "users/wang").expect("valid").as_str(), "users/wang");
        for bad in ["wang", "users/", "users/a/b", "users/a b", "groups/x"] {
            assert_eq!(UserName::parse("applicant", bad).expect_err(bad).violations()[0].field, "applicant");
        }
    }

    #[test]
    fn names_parse_into_ids() {
        assert_eq!(
            parse("name", "streets/zhongjie/items/di-bao", &["streets", "items"]).expect("valid"),
            ["zhongjie", "di-bao"]
        );
        assert_eq!(StreetId::parse_parent("parent", "streets/zhongjie").expect("valid").as_str(), "zhongjie");
    }

    #[test]
    fn malformed_names_name_the_field() {
        for bad in [
            "",
            "streets",
            "streets/",
            "streets/Zhongjie/items/x",
            "streets/a/things/x",
            "streets/a/items/x/y",
            "streets/a/items/-x",
            "streets/a/items/x-",
        ] {
            let err = parse("name", bad, &["streets", "items"]).expect_err(bad);
            assert_eq!(err.violations()[0].field, "name", "{bad}");
        }
    }
}
