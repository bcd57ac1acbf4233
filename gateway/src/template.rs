//! `google.api.http` path templates (`/v1/{name=streets/*/items/*}:publish`): parsing, and
//! matching a request path into the template's variables.

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// A literal segment.
    Literal(String),
    /// A variable binding a field path to one or more segments (`*` one, `**` the rest).
    Variable { field: String, pattern: Vec<String> },
}

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
    verb: Option<String>,
}

/// A template that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad path template {0:?}")]
pub struct BadTemplate(pub String);

impl Template {
    /// Whether the template ends in a custom verb (`:publish`).
    pub fn has_verb(&self) -> bool {
        self.verb.is_some()
    }

    /// Parses a template such as `/v1/{parent=streets/*}/items` or `/v1/{name=streets/*/items/*}:publish`.
    pub fn parse(template: &str) -> Result<Self, BadTemplate> {
        let bad = || BadTemplate(template.to_owned());
        let path = template.strip_prefix('/').ok_or_else(bad)?;
        // The verb follows the last ':' outside braces.
        let mut depth = 0;
        let mut verb_at = None;
        for (i, c) in path.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ':' if depth == 0 => verb_at = Some(i),
                _ => {}
            }
        }
        let (path, verb) = match verb_at {
            Some(i) => (&path[..i], Some(path[i + 1..].to_owned())),
            None => (path, None),
        };
        let mut segments = Vec::new();
        let mut rest = path;
        while !rest.is_empty() {
            if let Some(inner) = rest.strip_prefix('{') {
                let end = inner.find('}').ok_or_else(bad)?;
                let (field, pattern) = match inner[..end].split_once('=') {
                    Some((f, p)) => (f.to_owned(), p.split('/').map(str::to_owned).collect()),
                    None => (inner[..end].to_owned(), vec!["*".to_owned()]),
                };
                segments.push(Segment::Variable { field, pattern });
                rest = inner[end + 1..].strip_prefix('/').unwrap_or(&inner[end + 1..]);
            } else {
                let end = rest.find('/').unwrap_or(rest.len());
                segments.push(Segment::Literal(rest[..end].to_owned()));
                rest = rest[end..].strip_prefix('/').unwrap_or(&rest[end..]);
            }
        }
        Ok(Self { segments, verb })
    }

    /// The template as an OpenAPI path, where a parameter cannot span segments: each `*` of a
    /// variable becomes a parameter named after the collection before it (`streets/*` →
    /// `{street}`), the literals of its pattern stay in the path. Returns the path, its
    /// parameters in order, and each variable's field path with its resource pattern.
    pub(crate) fn openapi_path(&self) -> (String, Vec<String>, Vec<(String, String)>) {
        let mut path = String::new();
        let mut params: Vec<String> = Vec::new();
        let mut fields = Vec::new();
        let mut previous = String::new();
        let name_for = |collection: &str, field: &str, params: &mut Vec<String>| {
            let name = if collection.is_empty() { field.replace('.', "_") } else { singular(collection) };
            let (base, mut name) = (name.clone(), name);
            let mut n = 2;
            while params.contains(&name) {
                name = format!("{base}{n}");
                n += 1;
            }
            params.push(name.clone());
            name
        };
        for segment in &self.segments {
            match segment {
                Segment::Literal(l) => {
                    path.push('/');
                    path.push_str(l);
                }
                Segment::Variable { field, pattern } => {
                    // Only a collection inside the variable's own pattern names its ids.
                    previous.clear();
                    for piece in pattern {
                        path.push('/');
                        if piece == "*" || piece == "**" {
                            let name = name_for(&previous, field, &mut params);
                            path.push_str(&format!("{{{name}}}"));
                        } else {
                            path.push_str(piece);
                            previous = piece.clone();
                        }
                    }
                    fields.push((field.clone(), pattern.join("/")));
                }
            }
        }
        if let Some(verb) = &self.verb {
            path.push(':');
            path.push_str(verb);
        }
        (path, params, fields)
    }

    /// Matches a request path (percent-decoded segment by segment) and returns the variables'
    /// field paths and values, or `None` when the path is not of this template.
    pub fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        let path = path.strip_prefix('/')?;
        let (path, verb) = match (&self.verb, path.rsplit_once(':')) {
            (Some(v), Some((p, got))) if got == v && !p.ends_with('/') => (p, Some(got)),
            (Some(_), _) => return None,
            (None, _) => (path, None),
        };
        let _ = verb;
        let parts: Vec<&str> = path.split('/').collect();
        let mut at = 0;
        let mut vars = Vec::new();
        for segment in &self.segments {
            match segment {
                Segment::Literal(l) => {
                    if parts.get(at) != Some(&l.as_str()) {
                        return None;
                    }
                    at += 1;
                }
                Segment::Variable { field, pattern } => {
                    let start = at;
                    for p in pattern {
                        match p.as_str() {
                            "**" => at = parts.len(),
                            "*" => {
                                if parts.get(at).is_none_or(|s| s.is_empty()) {
                                    return None;
                                }
                                at += 1;
                            }
                            literal => {
                                if parts.get(at) != Some(&literal) {
                                    return None;
                                }
                                at += 1;
                            }
                        }
                    }
                    let value =
                        parts[start..at].iter().map(|s| percent_decode(s)).collect::<Option<Vec<_>>>()?.join("/");
                    vars.push((field.clone(), value));
                }
            }
        }
        (at == parts.len()).then_some(vars)
    }
}

/// The one of a collection id (`streets` → `street`, `inquiries` → `inquiry`).
fn singular(collection: &str) -> String {
    if let Some(stem) = collection.strip_suffix("ies") {
        format!("{stem}y")
    } else if let Some(stem) = collection.strip_suffix('s') {
        stem.to_owned()
    } else {
        collection.to_owned()
    }
}

/// Percent-decodes text (a path segment, a query key or value); `None` for invalid escapes
/// or UTF-8.
pub(crate) fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_and_verbs_match() {
        let t = Template::parse("/v1/{name=streets/*/items/*}:publish").expect("parse");
        assert_eq!(
            t.matches("/v1/streets/zhongjie/items/di-bao:publish"),
            Some(vec![("name".into(), "streets/zhongjie/items/di-bao".into())])
        );
        assert_eq!(t.matches("/v1/streets/zhongjie/items/di-bao"), None);
        assert_eq!(t.matches("/v1/streets/zhongjie/items/di-bao:retire"), None);
        let list = Template::parse("/v1/{parent=streets/*}/items").expect("parse");
        assert_eq!(
            list.matches("/v1/streets/zhongjie/items"),
            Some(vec![("parent".into(), "streets/zhongjie".into())])
        );
        assert_eq!(list.matches("/v1/streets/zhongjie/items/x"), None);
        assert_eq!(list.matches("/v1/streets//items"), None);
        let nested = Template::parse("/v1/{service_item.name=streets/*/items/*}").expect("parse");
        assert_eq!(nested.matches("/v1/streets/a/items/b").expect("match")[0].0, "service_item.name");
        let search = Template::parse("/v1/{parent=streets/*}/items:search").expect("parse");
        assert!(search.matches("/v1/streets/a/items:search").is_some());
        assert!(list.matches("/v1/streets/a/items:search").is_none());
    }

    #[test]
    fn templates_become_openapi_paths() {
        let t = Template::parse("/v1/{name=streets/*/inquiries/*}:publish").expect("parse");
        let (path, params, fields) = t.openapi_path();
        assert_eq!(path, "/v1/streets/{street}/inquiries/{inquiry}:publish");
        assert_eq!(params, ["street", "inquiry"]);
        assert_eq!(fields, [("name".to_owned(), "streets/*/inquiries/*".to_owned())]);
        let bare = Template::parse("/v1/{id}/x").expect("parse");
        assert_eq!(bare.openapi_path().0, "/v1/{id}/x");
    }

    #[test]
    fn segments_are_percent_decoded() {
        let t = Template::parse("/v1/{name=streets/*}").expect("parse");
        assert_eq!(t.matches("/v1/streets/a%2Db").expect("match")[0].1, "streets/a-b");
        assert_eq!(t.matches("/v1/streets/a%zz"), None);
    }
}
