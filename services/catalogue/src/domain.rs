//! The rules of service items: what a valid item is, which fields an update may touch, and the
//! lifecycle draft → published → retired. Pure functions, tested beside them.

use civic_kit::error::{Result, Violations};
use civic_kit::names;
use civic_proto::catalogue::ServiceItem;
use civic_proto::catalogue::material::Form;
use civic_proto::catalogue::service_item::{Category, HandlingMode, State};

/// The name of a service item, parsed: `streets/{street}/items/{item}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemName {
    /// The street id.
    pub street: String,
    /// The item id within the street.
    pub item: String,
}

impl ItemName {
    /// Parses `name`, reporting a malformed one as INVALID_ARGUMENT on `field`.
    pub fn parse(field: &str, name: &str) -> Result<Self> {
        let ids = names::parse(field, name, &["streets", "items"])?;
        Ok(Self { street: ids[0].to_owned(), item: ids[1].to_owned() })
    }

    /// The street's resource name, `streets/{street}`.
    pub fn parent(&self) -> String {
        format!("streets/{}", self.street)
    }
}

impl std::fmt::Display for ItemName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "streets/{}/items/{}", self.street, self.item)
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

/// Checks the writable content of an item (the request field is `prefix`, such as
/// `service_item`), normalising what has an obvious meaning (0 copies means 1). Every violation
/// is reported at once.
pub fn validate(prefix: &str, item: &mut ServiceItem) -> Result<()> {
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
    match Category::try_from(item.category) {
        Ok(Category::Unspecified) | Err(_) => v.add(f("category"), "must be one of the six categories"),
        Ok(_) => {}
    }
    match HandlingMode::try_from(item.handling_mode) {
        Ok(HandlingMode::Unspecified) | Err(_) => {
            v.add(f("handling_mode"), "must be HANDLED_HERE, ON_BEHALF or GUIDED")
        }
        Ok(_) => {}
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
    v.finish()
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

/// What a lifecycle method does to an item in `state`: the new state, or why it cannot.
pub fn transition(state: State, to: State) -> Result<State> {
    use civic_kit::Error;
    match (state, to) {
        (State::Draft | State::Retired, State::Published) => Ok(State::Published),
        (State::Published, State::Retired) => Ok(State::Retired),
        (from, to) => Err(Error::failed_precondition(
            "ILLEGAL_TRANSITION",
            format!("an item in state {} cannot become {}", from.as_str_name(), to.as_str_name()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use civic_proto::catalogue::Material;

    fn item() -> ServiceItem {
        ServiceItem {
            title: " 居住证办理 ".into(),
            category: Category::GovernmentAffairs as i32,
            handling_mode: HandlingMode::OnBehalf as i32,
            materials: vec![Material { name: "身份证".into(), form: Form::Original as i32, ..Default::default() }],
            ..Default::default()
        }
    }

    #[test]
    fn a_valid_item_is_normalised() {
        let mut it = item();
        validate("service_item", &mut it).expect("valid");
        assert_eq!(it.title, "居住证办理");
        assert_eq!(it.materials[0].copies, 1);
    }

    #[test]
    fn every_violation_is_named() {
        let mut it = ServiceItem { category: 42, ..item() };
        it.title = "  ".into();
        it.materials[0].copies = -2;
        it.promised_days = 10;
        it.legal_days = 5;
        let err = validate("service_item", &mut it).expect_err("invalid");
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
        let mut stored = item();
        let patch = ServiceItem { title: "新标题".into(), summary: "x".into(), ..Default::default() };
        apply_mask(&mut stored, &patch, &["title".into()]).expect("valid mask");
        assert_eq!(stored.title, "新标题");
        assert_eq!(stored.summary, "");
        let err = apply_mask(&mut stored, &patch, &["state".into()]).expect_err("output only");
        assert_eq!(err.violations()[0].field, "update_mask");
    }

    #[test]
    fn the_lifecycle_allows_only_its_transitions() {
        assert_eq!(transition(State::Draft, State::Published).expect("publish"), State::Published);
        assert_eq!(transition(State::Retired, State::Published).expect("republish"), State::Published);
        assert_eq!(transition(State::Published, State::Retired).expect("retire"), State::Retired);
        for (from, to) in
            [(State::Draft, State::Retired), (State::Retired, State::Retired), (State::Published, State::Published)]
        {
            assert_eq!(transition(from, to).expect_err("illegal").code(), tonic::Code::FailedPrecondition);
        }
    }
}
