//! The rules of service items: their names, what valid content is, which fields an update may
//! touch, and the lifecycle draft → published → retired with the revisions it makes. Pure
//! functions and types, tested beside them; the store keeps [`Item`]s, the API shows them.

use civic_kit::error::{Error, Result, Violations};
use civic_kit::names::{Collection, Name};
use civic_proto::catalogue::ServiceItem;
use civic_proto::catalogue::material::Form;
use civic_proto::catalogue::service_item::{Category, HandlingMode};

/// The street's collection of service items.
#[derive(Debug)]
pub struct Items;

impl Collection for Items {
    const COLLECTION: &'static str = "items";
}

/// The name of a service item: `streets/{street}/items/{item}`.
pub type ItemName = Name<Items>;

/// A published revision of an item: `streets/{street}/items/{item}/revisions/{revision}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionName {
    /// The item.
    pub item: ItemName,
    /// The revision's number, from 1.
    pub revision: i64,
}

impl RevisionName {
    /// Parses a revision's name, reporting a malformed one on `field`.
    pub fn parse(field: &str, name: &str) -> Result<Self> {
        let invalid = || Error::invalid(field, "must be a revision name, streets/{street}/items/{item}/revisions/{n}");
        let (item, number) = name.rsplit_once("/revisions/").ok_or_else(invalid)?;
        let revision = number.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(invalid)?;
        Ok(Self { item: ItemName::parse(field, item).map_err(|_| invalid())?, revision })
    }
}

impl std::fmt::Display for RevisionName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/revisions/{}", self.item, self.revision)
    }
}

/// Where an item is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemState {
    /// Being written; seen by staff only.
    Draft,
    /// Shown to the public; every change makes a new revision.
    Published,
    /// No longer offered; kept on file with its revisions.
    Retired,
}

impl ItemState {
    /// The state's name, as stored and as the API's enum spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemState::Draft => "DRAFT",
            ItemState::Published => "PUBLISHED",
            ItemState::Retired => "RETIRED",
        }
    }

    /// The state named `name` (as [`ItemState::as_str`] writes it).
    pub fn parse(name: &str) -> Option<Self> {
        [ItemState::Draft, ItemState::Published, ItemState::Retired].into_iter().find(|s| s.as_str() == name)
    }
}

/// The fields a client writes; everything else is output only.
pub const WRITABLE: &[&str] = &[
    "title",
    "title_en",
    "category",
    "handling_mode",
    "summary",
    "eligibility",
    "materials",
    "steps",
    "promised_days",
    "legal_days",
    "fee_fen",
    "location",
    "department",
    "opening_hours",
    "visits_required",
    "keywords",
];

const MAX_TEXT: usize = 4000;

/// The content of an item — what staff write — validated and normalised. Only
/// [`Content::parse`] (and the store, reading what it wrote) makes one, so holding a `Content`
/// means holding valid content. Its fields follow the `ServiceItem` message, which is the
/// content's schema; the output-only fields are always empty.
#[derive(Debug, Clone, PartialEq)]
pub struct Content(ServiceItem);

impl Content {
    /// Validates the writable fields of `item` (the request field is `prefix`, such as
    /// `service_item`), normalising what has an obvious meaning (0 copies means 1). Every
    /// violation is reported at once.
    pub fn parse(prefix: &str, item: &ServiceItem) -> Result<Self> {
        let mut item = ServiceItem {
            name: String::new(),
            state: 0,
            revision: 0,
            etag: String::new(),
            create_time: None,
            update_time: None,
            publish_time: None,
            ..item.clone()
        };
        let mut v = Violations::new();
        let f = |name: &str| format!("{prefix}.{name}");
        let title = item.title.trim();
        if title.is_empty() {
            v.add(f("title"), "must not be empty");
        } else if title.chars().count() > 200 {
            v.add(f("title"), "must be at most 200 characters");
        }
        item.title = title.to_owned();
        item.title_en = item.title_en.trim().to_owned();
        if item.title_en.chars().count() > 200 {
            v.add(f("title_en"), "must be at most 200 characters");
        }
        if matches!(Category::try_from(item.category), Ok(Category::Unspecified) | Err(_)) {
            v.add(f("category"), "must be one of the six categories");
        }
        if matches!(HandlingMode::try_from(item.handling_mode), Ok(HandlingMode::Unspecified) | Err(_)) {
            v.add(f("handling_mode"), "must be HANDLED_HERE, ON_BEHALF or GUIDED");
        }
        for (name, text) in [
            ("summary", &item.summary),
            ("eligibility", &item.eligibility),
            ("location", &item.location),
            ("department", &item.department),
            ("opening_hours", &item.opening_hours),
        ] {
            if text.chars().count() > MAX_TEXT {
                v.add(f(name), format!("must be at most {MAX_TEXT} characters"));
            }
        }
        for (i, m) in item.materials.iter_mut().enumerate() {
            let at = |field: &str| format!("{prefix}.materials[{i}].{field}");
            if m.name.trim().is_empty() {
                v.add(at("name"), "must not be empty");
            }
            if !matches!(Form::try_from(m.form), Ok(Form::Original | Form::Copy | Form::Electronic)) {
                v.add(at("form"), "must be ORIGINAL, COPY or ELECTRONIC");
            }
            if m.copies < 0 {
                v.add(at("copies"), "must not be negative");
            } else if m.copies == 0 {
                m.copies = 1;
            }
        }
        for (i, s) in item.steps.iter().enumerate() {
            if s.title.trim().is_empty() {
                v.add(format!("{prefix}.steps[{i}].title"), "must not be empty");
            }
            if s.time_limit_days < 0 {
                v.add(format!("{prefix}.steps[{i}].time_limit_days"), "must not be negative");
            }
        }
        for (name, days) in [
            ("promised_days", item.promised_days),
            ("legal_days", item.legal_days),
            ("visits_required", item.visits_required),
        ] {
            if days < 0 {
                v.add(f(name), "must not be negative");
            }
        }
        if item.legal_days > 0 && item.promised_days > item.legal_days {
            v.add(f("promised_days"), "must not exceed legal_days");
        }
        if item.fee_fen < 0 {
            v.add(f("fee_fen"), "must not be negative");
        }
        item.keywords.retain(|k| !k.trim().is_empty());
        if item.keywords.len() > 50 {
            v.add(f("keywords"), "at most 50 keywords");
        }
        v.finish()?;
        Ok(Self(item))
    }

    /// This content with the fields named by `paths` taken from `patch` (`*`: every writable
    /// field), validated again. An unknown or output-only path is INVALID_ARGUMENT on
    /// `update_mask`.
    pub fn patched(&self, patch: &ServiceItem, paths: &[String], prefix: &str) -> Result<Self> {
        let mut next = self.0.clone();
        apply_mask(&mut next, patch, paths)?;
        Self::parse(prefix, &next)
    }

    /// Content the store wrote (from [`Content::message`]), trusted as valid.
    pub fn from_stored(item: ServiceItem) -> Self {
        Self(item)
    }

    /// The content's fields, in the `ServiceItem` message that is their schema.
    pub fn message(&self) -> &ServiceItem {
        &self.0
    }

    /// The Chinese title.
    pub fn title(&self) -> &str {
        &self.0.title
    }

    /// The category.
    pub fn category(&self) -> Category {
        Category::try_from(self.0.category).unwrap_or(Category::Unspecified)
    }

    /// How the hall handles a case.
    pub fn handling_mode(&self) -> HandlingMode {
        HandlingMode::try_from(self.0.handling_mode).unwrap_or(HandlingMode::Unspecified)
    }

    /// The time the street promises, in working days.
    pub fn promised_days(&self) -> u32 {
        self.0.promised_days.max(0) as u32
    }

    /// What search reads of the item.
    pub fn search_fields(&self) -> crate::search::Fields<'_> {
        crate::search::Fields {
            title: &self.0.title,
            title_en: &self.0.title_en,
            keywords: &self.0.keywords,
            summary: &self.0.summary,
        }
    }
}

/// Copies the fields named by `paths` from `patch` into `stored`. `*` copies every writable
/// field. An unknown or output-only path is INVALID_ARGUMENT on `update_mask`.
pub fn apply_mask(stored: &mut ServiceItem, patch: &ServiceItem, paths: &[String]) -> Result<()> {
    let mut v = Violations::new();
    if paths.is_empty() {
        v.add("update_mask", "must name the fields to change (or `*`)");
    }
    let all = paths.iter().any(|p| p == "*");
    let chosen: Vec<&str> = if all { WRITABLE.to_vec() } else { paths.iter().map(String::as_str).collect() };
    for path in chosen {
        match path {
            "title" => stored.title = patch.title.clone(),
            "title_en" => stored.title_en = patch.title_en.clone(),
            "category" => stored.category = patch.category,
            "handling_mode" => stored.handling_mode = patch.handling_mode,
            "summary" => stored.summary = patch.summary.clone(),
            "eligibility" => stored.eligibility = patch.eligibility.clone(),
            "materials" => stored.materials = patch.materials.clone(),
            "steps" => stored.steps = patch.steps.clone(),
            "promised_days" => stored.promised_days = patch.promised_days,
            "legal_days" => stored.legal_days = patch.legal_days,
            "fee_fen" => stored.fee_fen = patch.fee_fen,
            "location" => stored.location = patch.location.clone(),
            "department" => stored.department = patch.department.clone(),
            "opening_hours" => stored.opening_hours = patch.opening_hours.clone(),
            "visits_required" => stored.visits_required = patch.visits_required,
            "keywords" => stored.keywords = patch.keywords.clone(),
            other => v.add("update_mask", format!("`{other}` is not a field an update may change")),
        }
    }
    v.finish()
}

/// A service item as the catalogue keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Its name.
    pub name: ItemName,
    /// Its lifecycle state.
    pub state: ItemState,
    /// The latest published revision (0: never published).
    pub revision: i64,
    /// The change counter behind the etag.
    pub version: i64,
    /// What staff wrote.
    pub content: Content,
    /// When it was created (stored time text).
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
    /// When its latest revision was published.
    pub publish_time: Option<String>,
}

/// What a change did that others must hear of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Happened {
    /// The item was published (first, or again after retiring): a new revision.
    Published,
    /// A published item's content changed: a new revision.
    Changed,
    /// The item was retired.
    Retired,
}

impl Happened {
    /// Whether the change made a new revision.
    pub fn makes_revision(self) -> bool {
        matches!(self, Happened::Published | Happened::Changed)
    }
}

impl Item {
    /// A new draft, at `now`.
    pub fn draft(name: ItemName, content: Content, now: &str) -> Self {
        Self {
            name,
            state: ItemState::Draft,
            revision: 0,
            version: 1,
            content,
            created_at: now.to_owned(),
            updated_at: now.to_owned(),
            publish_time: None,
        }
    }

    /// Publishes the item (a draft, or a retired item again): its next revision.
    pub fn publish(&mut self, now: &str) -> Result<Happened> {
        self.move_to(ItemState::Published, now)?;
        self.new_revision(now);
        Ok(Happened::Published)
    }

    /// Retires a published item.
    pub fn retire(&mut self, now: &str) -> Result<Happened> {
        self.move_to(ItemState::Retired, now)?;
        Ok(Happened::Retired)
    }

    /// Replaces the content; a published item gets a new revision, which the public hears of.
    pub fn change(&mut self, content: Content, now: &str) -> Option<Happened> {
        self.content = content;
        self.touch(now);
        (self.state == ItemState::Published).then(|| {
            self.new_revision(now);
            Happened::Changed
        })
    }

    /// Whether a draft (only drafts may be deleted; a published item is retired instead).
    pub fn check_deletable(&self) -> Result<()> {
        if self.state == ItemState::Draft {
            Ok(())
        } else {
            Err(Error::failed_precondition(
                "NOT_A_DRAFT",
                "only drafts can be deleted; retire a published item instead",
            ))
        }
    }

    fn move_to(&mut self, to: ItemState, now: &str) -> Result<()> {
        self.state = transition(self.state, to)?;
        self.touch(now);
        Ok(())
    }

    fn touch(&mut self, now: &str) {
        self.version += 1;
        self.updated_at = now.to_owned();
    }

    fn new_revision(&mut self, now: &str) {
        self.revision += 1;
        self.publish_time = Some(now.to_owned());
    }
}

/// What a lifecycle method does to an item in `state`: the new state, or why it cannot.
pub fn transition(state: ItemState, to: ItemState) -> Result<ItemState> {
    match (state, to) {
        (ItemState::Draft | ItemState::Retired, ItemState::Published) => Ok(ItemState::Published),
        (ItemState::Published, ItemState::Retired) => Ok(ItemState::Retired),
        (from, to) => Err(Error::failed_precondition(
            "ILLEGAL_TRANSITION",
            format!("an item in state {} cannot become {}", from.as_str(), to.as_str()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use civic_proto::catalogue::Material;

    fn wire() -> ServiceItem {
        ServiceItem {
            title: " 居住证办理 ".into(),
            category: Category::GovernmentAffairs as i32,
            handling_mode: HandlingMode::OnBehalf as i32,
            materials: vec![Material { name: "身份证".into(), form: Form::Original as i32, ..Default::default() }],
            ..Default::default()
        }
    }

    fn name() -> ItemName {
        ItemName::parse("name", "streets/zhongjie/items/residence-permit").expect("name")
    }

    #[test]
    fn valid_content_is_normalised_and_keeps_no_output_fields() {
        let content =
            Content::parse("service_item", &ServiceItem { etag: "\"9\"".into(), state: 2, ..wire() }).expect("valid");
        assert_eq!(content.title(), "居住证办理");
        assert_eq!(content.message().materials[0].copies, 1);
        assert_eq!((content.message().etag.as_str(), content.message().state), ("", 0));
    }

    #[test]
    fn every_violation_is_named() {
        let mut it = ServiceItem { category: 42, ..wire() };
        it.title = "  ".into();
        it.materials[0].copies = -2;
        it.promised_days = 10;
        it.legal_days = 5;
        let err = Content::parse("service_item", &it).expect_err("invalid");
        let fields: Vec<&str> = err.violations().iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "service_item.title",
                "service_item.category",
                "service_item.materials[0].copies",
                "service_item.promised_days"
            ]
        );
    }

    #[test]
    fn masks_touch_only_writable_fields() {
        let content = Content::parse("service_item", &wire()).expect("valid");
        let patch = ServiceItem { title: "新标题".into(), summary: "x".into(), ..Default::default() };
        let patched = content.patched(&patch, &["title".into()], "service_item").expect("valid mask");
        assert_eq!(patched.title(), "新标题");
        assert_eq!(patched.message().summary, "");
        let err = content.patched(&patch, &["state".into()], "service_item").expect_err("output only");
        assert_eq!(err.violations()[0].field, "update_mask");
        let err = content.patched(&ServiceItem::default(), &["title".into()], "service_item").expect_err("emptied");
        assert_eq!(err.violations()[0].field, "service_item.title");
    }

    #[test]
    fn the_lifecycle_allows_only_its_transitions() {
        use ItemState::*;
        assert_eq!(transition(Draft, Published).expect("publish"), Published);
        assert_eq!(transition(Retired, Published).expect("republish"), Published);
        assert_eq!(transition(Published, Retired).expect("retire"), Retired);
        for (from, to) in [(Draft, Retired), (Retired, Retired), (Published, Published)] {
            assert_eq!(transition(from, to).expect_err("illegal").code(), tonic::Code::FailedPrecondition);
        }
    }

    #[test]
    fn publishing_and_changing_make_revisions_retiring_does_not() {
        let mut item = Item::draft(name(), Content::parse("s", &wire()).expect("valid"), "t0");
        let draft_change = item.change(Content::parse("s", &wire()).expect("valid"), "t1");
        assert_eq!((draft_change, item.revision, item.version), (None, 0, 2), "a draft's change is private");
        assert_eq!(item.publish("t2").expect("publish"), Happened::Published);
        assert_eq!((item.revision, item.version, item.publish_time.as_deref()), (1, 3, Some("t2")));
        assert_eq!(item.change(Content::parse("s", &wire()).expect("valid"), "t3"), Some(Happened::Changed));
        assert_eq!(item.revision, 2);
        assert_eq!(item.retire("t4").expect("retire"), Happened::Retired);
        assert_eq!((item.revision, item.version, item.state), (2, 5, ItemState::Retired));
        assert_eq!(item.retire("t5").expect_err("twice").code(), tonic::Code::FailedPrecondition);
        assert_eq!(item.check_deletable().expect_err("not a draft").reason(), "NOT_A_DRAFT");
    }

    #[test]
    fn revision_names_parse() {
        let name = RevisionName::parse("r", "streets/zhongjie/items/x/revisions/3").expect("valid");
        assert_eq!((name.item.id().as_str(), name.revision), ("x", 3));
        assert_eq!(name.to_string(), "streets/zhongjie/items/x/revisions/3");
        for bad in ["streets/zhongjie/items/x", "streets/zhongjie/items/x/revisions/0", "x/revisions/1"] {
            assert!(RevisionName::parse("r", bad).is_err(), "{bad}");
        }
    }
}
