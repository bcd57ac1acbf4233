//! Text search over service items: Chinese words (including two-character words such as 低保),
//! pinyin in full (`dibao`) and by initials (`db`), and English titles, best match first.
//!
//! Each item stores a search document ([`document`]): every form a query term can match, in
//! lowercase, so the store can narrow candidates with `like '%term%'` before [`score`] ranks
//! them.

use pinyin::ToPinyin;

/// The searchable text of one item.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    /// The Chinese title.
    pub title: &'a str,
    /// The English title.
    pub title_en: &'a str,
    /// Further words, such as common short names (低保).
    pub keywords: &'a [String],
    /// The summary.
    pub summary: &'a str,
}

/// A text in the forms search matches: lowercased, pinyin in full, and pinyin initials. Latin
/// letters and digits pass into the pinyin forms unchanged.
struct Forms {
    text: String,
    full: String,
    initials: String,
}

fn forms(s: &str) -> Forms {
    let text = s.to_lowercase();
    let mut full = String::new();
    let mut initials = String::new();
    for c in text.chars() {
        if let Some(p) = c.to_pinyin() {
            full.push_str(p.plain());
            initials.push_str(p.first_letter());
        } else if c.is_ascii_alphanumeric() {
            full.push(c);
            initials.push(c);
        }
    }
    Forms { text, full, initials }
}

/// The search document of an item, stored beside it.
pub fn document(fields: &Fields<'_>) -> String {
    let mut parts = Vec::new();
    for text in std::iter::once(fields.title).chain(fields.keywords.iter().map(String::as_str)) {
        let f = forms(text);
        parts.extend([f.text, f.full, f.initials]);
    }
    parts.push(fields.title_en.to_lowercase());
    parts.push(fields.summary.to_lowercase());
    parts.join("\n")
}

fn is_cjk(c: char) -> bool {
    !c.is_ascii()
}

/// The terms of a query: lowercase words, split at spaces and punctuation and where Chinese
/// meets Latin script (`低保dibao` is two terms).
pub fn terms(query: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in query.to_lowercase().chars() {
        if !c.is_alphanumeric() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            continue;
        }
        if current.chars().last().is_some_and(|last| is_cjk(last) != is_cjk(c)) {
            out.push(std::mem::take(&mut current));
        }
        current.push(c);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// How well one term matches, or `None`.
fn best(term: &str, title: &Forms, keywords: &[Forms], title_en: &str, summary: &str) -> Option<u32> {
    let mut score = 0;
    let mut take = |s: u32, hit: bool| {
        if hit && s > score {
            score = s;
        }
    };
    take(1000, title.text == term);
    take(800, title.text.starts_with(term));
    take(600, title.text.contains(term));
    for k in keywords {
        take(700, k.text == term);
        take(500, k.text.contains(term));
    }
    if term.is_ascii() {
        let long = term.len() >= 3;
        take(650, title.full == term);
        take(550, title.full.starts_with(term) && term.len() >= 2);
        take(400, long && title.full.contains(term));
        take(500, title.initials == term);
        take(350, title.initials.starts_with(term) && term.len() >= 2);
        for k in keywords {
            take(600, k.full == term);
            take(450, k.full.starts_with(term) && term.len() >= 2);
            take(550, k.initials == term && term.len() >= 2);
        }
        take(450, title_en.split(|c: char| !c.is_alphanumeric()).any(|w| w.starts_with(term)));
        take(300, long && title_en.contains(term));
        take(100, long && summary.contains(term));
    } else {
        take(100, summary.contains(term));
    }
    (score > 0).then_some(score)
}

/// The relevance of an item for the query terms: every term must match somewhere (AND), each
/// counting its best match; among equals a shorter title ranks higher. `None`: no match.
pub fn score(terms: &[String], fields: &Fields<'_>) -> Option<u32> {
    if terms.is_empty() {
        return None;
    }
    let title = forms(fields.title);
    let keywords: Vec<Forms> = fields.keywords.iter().map(|k| forms(k)).collect();
    let title_en = fields.title_en.to_lowercase();
    let summary = fields.summary.to_lowercase();
    let mut total = 0;
    for term in terms {
        total += best(term, &title, &keywords, &title_en, &summary)?;
    }
    let length = fields.title.chars().count().min(50) as u32;
    Some(total * 64 + (50 - length))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Item {
        title: &'static str,
        title_en: &'static str,
        keywords: Vec<String>,
        summary: &'static str,
    }

    impl Item {
        fn fields(&self) -> Fields<'_> {
            Fields { title: self.title, title_en: self.title_en, keywords: &self.keywords, summary: self.summary }
        }
    }

    fn catalogue() -> Vec<Item> {
        vec![
            Item {
                title: "最低生活保障申请",
                title_en: "Minimum living allowance application",
                keywords: vec!["低保".into()],
                summary: "为家庭收入低于当地标准的居民提供基本生活保障",
            },
            Item {
                title: "临时救助申请",
                title_en: "Temporary assistance",
                keywords: vec![],
                summary: "低保家庭和其他困难群众遇到急难时可申请",
            },
            Item { title: "居住证办理", title_en: "Residence permit application", keywords: vec![], summary: "" },
            Item { title: "居住证", title_en: "Residence permit", keywords: vec![], summary: "" },
        ]
    }

    fn search(query: &str) -> Vec<&'static str> {
        let items = catalogue();
        let terms = terms(query);
        let mut hits: Vec<(u32, &'static str)> =
            items.iter().filter_map(|i| score(&terms, &i.fields()).map(|s| (s, i.title))).collect();
        hits.sort_by_key(|h| std::cmp::Reverse(h.0));
        hits.into_iter().map(|(_, t)| t).collect()
    }

    #[test]
    fn a_keyword_outranks_a_mention_in_the_summary() {
        assert_eq!(search("低保"), ["最低生活保障申请", "临时救助申请"]);
    }

    #[test]
    fn two_character_words_pinyin_and_initials_find_items() {
        assert_eq!(search("居住").first(), Some(&"居住证"));
        assert_eq!(search("dibao").first(), Some(&"最低生活保障申请"));
        assert_eq!(search("db").first(), Some(&"最低生活保障申请"));
        assert!(search("juzhu").contains(&"居住证办理"));
        assert!(search("jzz").contains(&"居住证办理"));
    }

    #[test]
    fn english_titles_and_every_term_count() {
        assert_eq!(search("residence permit").first(), Some(&"居住证"));
        assert!(search("residence temporary").is_empty(), "every term must match");
        assert!(search("量子").is_empty());
        assert!(search("").is_empty());
    }

    #[test]
    fn an_exact_title_ranks_first() {
        assert_eq!(search("居住证"), ["居住证", "居住证办理"]);
    }

    #[test]
    fn terms_split_at_spaces_punctuation_and_scripts() {
        assert_eq!(terms(" 低保dibao, Residence  permit！"), ["低保", "dibao", "residence", "permit"]);
        assert!(terms("  ，。 ").is_empty());
    }

    #[test]
    fn the_document_holds_every_form_a_term_can_match() {
        for item in catalogue() {
            let document = document(&item.fields());
            for query in ["低保", "居住", "dibao", "db", "juzhu", "jzz", "residence", "permit", "最低生活", "救助"]
            {
                let t = terms(query);
                if score(&t, &item.fields()).is_some() {
                    assert!(document.contains(&t[0]), "{query} matches {} but its document lacks it", item.title);
                }
            }
        }
    }
}
