//! A small part of AIP-160 filtering: a conjunction of equalities, `field = value AND …`, on the
//! fields a List method allows. Values are bare words or double-quoted strings.

use crate::error::{Error, Result};

/// One `field = value` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// The field, as the caller wrote it.
    pub field: String,
    /// The value, unquoted.
    pub value: String,
}

/// Parses `filter`, allowing only the fields in `allowed`; at most one term per field.
pub fn parse(filter: &str, allowed: &[&str]) -> Result<Vec<Term>> {
    let bad = |why: String| Error::invalid("filter", why);
    let mut terms: Vec<Term> = Vec::new();
    let mut rest = filter.trim();
    while !rest.is_empty() {
        let (field, after) =
            rest.split_once('=').ok_or_else(|| bad(format!("expected `field = value` at `{rest}`")))?;
        let field = field.trim();
        if !allowed.contains(&field) {
            return Err(bad(format!("cannot filter on `{field}`; allowed: {}", allowed.join(", "))));
        }
        let after = after.trim_start();
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').ok_or_else(|| bad("unterminated string".into()))?;
            (quoted[..end].to_owned(), &quoted[end + 1..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (after[..end].to_owned(), &after[end..])
        };
        if value.is_empty() {
            return Err(bad(format!("`{field}` needs a value")));
        }
        if terms.iter().any(|t| t.field == field) {
            return Err(bad(format!("`{field}` appears twice")));
        }
        terms.push(Term { field: field.to_owned(), value });
        rest = tail.trim_start();
        if rest.is_empty() {
            break;
        }
        rest = rest.strip_prefix("AND").map(str::trim_start).ok_or_else(|| bad(format!("expected AND at `{rest}`")))?;
        if rest.is_empty() {
            return Err(bad("a term must follow AND".into()));
        }
    }
    Ok(terms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conjunctions_parse() {
        let terms = parse(r#"category = LEGAL AND state="PUBLISHED""#, &["category", "state"]).expect("valid");
        assert_eq!(terms.len(), 2);
        assert_eq!(terms[1], Term { field: "state".into(), value: "PUBLISHED".into() });
        assert!(parse("  ", &["state"]).expect("empty").is_empty());
    }

    #[test]
    fn bad_filters_name_the_field() {
        for bad in [
            "owner = x",
            "state",
            "state = ",
            "state = A AND",
            "state = A OR state = B",
            "state = A AND state = B",
            "state = \"A",
        ] {
            let err = parse(bad, &["state", "category"]).expect_err(bad);
            assert_eq!(err.violations()[0].field, "filter");
        }
    }
}
