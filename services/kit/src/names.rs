//! Resource names (AIP-122): parsing `streets/{street}/items/{item}` into its ids at the edge,
//! and the rule every id segment follows.

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

/// Parses a street parent, `streets/{street}`, returning the street id.
pub fn parse_street<'a>(field: &str, parent: &'a str) -> Result<&'a str> {
    Ok(parse(field, parent, &["streets"])?[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_into_ids() {
        assert_eq!(
            parse("name", "streets/zhongjie/items/di-bao", &["streets", "items"]).expect("valid"),
            ["zhongjie", "di-bao"]
        );
        assert_eq!(parse_street("parent", "streets/zhongjie").expect("valid"), "zhongjie");
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
