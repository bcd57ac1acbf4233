//! Files people download: CSV as spreadsheets read it (RFC 4180, UTF-8 with a byte-order mark,
//! CRLF lines), with text a spreadsheet would take for a formula defused; and HTML text escaped
//! for the printable reports.

/// A CSV file of `header` and `rows`.
pub fn csv<I, R>(header: &[&str], rows: I) -> String
where
    I: IntoIterator<Item = R>,
    R: AsRef<[String]>,
{
    let mut out = String::from("\u{feff}");
    let mut line = |cells: &mut dyn Iterator<Item = String>| {
        out.push_str(&cells.collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    };
    line(&mut header.iter().map(|h| cell(h)));
    for row in rows {
        line(&mut row.as_ref().iter().map(|c| cell(c)));
    }
    out
}

/// One CSV cell: quoted when it holds a comma, quote or line break; text a spreadsheet would
/// take for a formula (`=`, `+`, `-`, `@`, a tab or a carriage return first) is prefixed with `'`.
pub fn cell(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_owned() };
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

/// `text` safe inside HTML elements and quoted attributes.
pub fn html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_and_formulas_defused() {
        assert_eq!(cell("平凉市税务局"), "平凉市税务局");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell("-1"), "'-1");
        assert_eq!(cell("@x"), "'@x");
    }

    #[test]
    fn a_file_has_its_mark_its_header_and_its_rows() {
        let text = csv(&["a", "b"], [vec!["1".to_owned(), "x,y".to_owned()]]);
        assert_eq!(text, "\u{feff}a,b\r\n1,\"x,y\"\r\n");
    }

    #[test]
    fn html_text_is_escaped() {
        assert_eq!(html("<b a=\"1\">&'"), "&lt;b a=&quot;1&quot;&gt;&amp;&#39;");
    }
}
