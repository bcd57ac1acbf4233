//! Text search over service items: Chinese words (including two-character words such as 低保),
//! pinyin in full (`dibao`) and by initials (`db`), and English titles, best match first.
//!
//! Each item stores a search document ([`document`]) holding every form a query term can match,
//! in lowercase, so the store can narrow the candidates with `like '%term%'` before [`score`]
//! ranks them. The two must agree: whatever `score` matches is a substring of the document,
//! which a test below checks over every short piece of a few realistic items.
//!
//! There is no word segmentation: a Chinese term matches where it stands in the title, a
//! keyword or the summary. Abbreviations that are not substrings of the title (低保 for
//! 最低生活保障) come from the item's keywords. A character with several readings is read the
//! first (most common) way.

use pinyin::ToPinyin;

/// The searchable text of one item, computed when the item is written and stored in a column.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    /// The Chinese title.
    pub title: &'a str,
    /// The English title.
    pub title_en: &'a str,
    /// Further words the item is known by, such as common short names (低保).
    pub keywords: &'a [String],
    /// The summary.
    pub summary: &'a str,
}

/// How much one term's best match is worth. The order follows how surely a match means the
/// user wants this item: the title's own characters first, then keywords, then the same places
/// reached through pinyin, then initials (short and ambiguous), the English title, and last a
/// mention in the summary.
mod weight {
    pub const TITLE_EXACT: u32 = 1000;
    pub const TITLE_PREFIX: u32 = 900;
    pub const TITLE_CONTAINS: u32 = 800;
    pub const KEYWORD_EXACT: u32 = 750;
    pub const KEYWORD_PREFIX: u32 = 680;
    pub const KEYWORD_CONTAINS: u32 = 650;
    pub const PINYIN_TITLE_EXACT: u32 = 600;
    pub const PINYIN_TITLE_PREFIX: u32 = 560;
    pub const PINYIN_KEYWORD_EXACT: u32 = 540;
    pub const PINYIN_TITLE_SYLLABLE: u32 = 500;
    pub const PINYIN_KEYWORD_PREFIX: u32 = 480;
    pub const PINYIN_KEYWORD_SYLLABLE: u32 = 460;
    pub const INITIALS_TITLE_EXACT: u32 = 450;
    pub const INITIALS_KEYWORD_EXACT: u32 = 440;
    pub const INITIALS_TITLE_PREFIX: u32 = 420;
    pub const INITIALS_KEYWORD_PREFIX: u32 = 400;
    pub const ENGLISH_WORD: u32 = 380;
    pub const ENGLISH_WORD_PREFIX: u32 = 350;
    pub const INITIALS_CONTAINS: u32 = 300;
    pub const SUMMARY: u32 = 100;
}

/// Each term's points are multiplied by this, leaving room below for the tie-break on title
/// length, which therefore never outweighs a better match.
const SCALE: u32 = 64;

/// Titles at least this long (in characters) get no tie-break bonus; shorter ones get one point
/// per character they are shorter. Less than [`SCALE`].
const LONG_TITLE: u32 = SCALE - 1;

/// Summaries are long prose: a Latin term this short would match by accident.
const MIN_LATIN_IN_SUMMARY: usize = 3;

/// The document of an item, stored beside it: one lowercase string of lines. For the title and
/// then each keyword: the text, each pinyin spelling joined (`zuidishenghuobaozhang`) and
/// space-separated (`zui di sheng huo bao zhang`), and the initials (`zdshbz`); then the English
/// title and the summary. Blank and repeated lines are left out. The stored column holds this
/// string, so a change to its format means rewriting every item's document.
///
/// Every term that [`score`] can match is a substring of this document, so a `like '%term%'`
/// over it never drops a match (it may keep items that `score` then rejects).
pub fn document(fields: &Fields<'_>) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut add = |line: String| {
        if !line.is_empty() && !lines.contains(&line) {
            lines.push(line);
        }
    };
    for text in std::iter::once(fields.title).chain(fields.keywords.iter().map(String::as_str)) {
        let forms = Forms::of(text);
        add(forms.text);
        for spelling in &forms.spellings {
            add(spelling.spaced());
            add(spelling.joined.clone());
        }
        add(forms.initials);
    }
    add(normalize(fields.title_en));
    add(normalize(fields.summary));
    lines.join("\n")
}

/// The terms of a query: lowercase words, split at whitespace and punctuation and where Chinese
/// characters meet other letters or digits (`低保dibao` is two terms). A run of Chinese
/// characters stays one term. Full-width letters and digits count as their ASCII forms. A term
/// given twice counts once (found in a set: linear in the query's length). A blank query has no
/// terms.
pub fn terms(query: &str) -> Vec<String> {
    fn push(term: &mut String, out: &mut Vec<String>, seen: &mut std::collections::HashSet<String>) {
        let term = std::mem::take(term);
        if !term.is_empty() && seen.insert(term.clone()) {
            out.push(term);
        }
    }
    let mut out: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut current = String::new();
    for c in normalize(query).chars() {
        if !c.is_alphanumeric() {
            push(&mut current, &mut out, &mut seen);
            continue;
        }
        if current.chars().last().is_some_and(|last| is_han(last) != is_han(c)) {
            push(&mut current, &mut out, &mut seen);
        }
        current.push(c);
    }
    push(&mut current, &mut out, &mut seen);
    out
}

/// The most terms of a query that are searched for (every term is matched against every
/// candidate); those after them are left out.
pub const MAX_TERMS: usize = 16;

/// The relevance of an item for the query terms (as [`terms`] makes them), higher is better; or
/// `None` when some term matches nowhere (every term must match) or there are no terms.
///
/// Each term counts its best match (the `weight` table in this module); the sum decides, and among equal
/// sums a shorter title ranks higher, as the more specific item.
pub fn score(terms: &[String], fields: &Fields<'_>) -> Option<u32> {
    if terms.is_empty() {
        return None;
    }
    let item = Prepared::of(fields);
    let mut total: u32 = 0;
    for term in terms {
        total = total.saturating_add(best(term, &item)?);
    }
    let length = u32::try_from(fields.title.chars().count()).unwrap_or(u32::MAX).min(LONG_TITLE);
    Some(total.saturating_mul(SCALE).saturating_add(LONG_TITLE - length))
}

/// The fields of an item in the forms terms are matched against.
struct Prepared {
    title: Forms,
    keywords: Vec<Forms>,
    title_en: String,
    summary: String,
}

impl Prepared {
    fn of(fields: &Fields<'_>) -> Self {
        Self {
            title: Forms::of(fields.title),
            keywords: fields.keywords.iter().map(|k| Forms::of(k)).collect(),
            title_en: normalize(fields.title_en),
            summary: normalize(fields.summary),
        }
    }
}

/// One term's best match in an item, in points, or `None`.
fn best(term: &str, item: &Prepared) -> Option<u32> {
    if term.is_empty() {
        return None;
    }
    let chinese = term.chars().any(is_han);
    let length = term.chars().count();
    // A single letter or digit is a user starting to type initials or an English word; inside
    // full pinyin or a title it would match almost anything.
    let single = !chinese && length == 1;
    let mut points = 0;
    let mut take = |p: Option<u32>| points = points.max(p.unwrap_or(0));

    if !single {
        take(
            place(&item.title.text, term)
                .map(|p| p.pick(weight::TITLE_EXACT, weight::TITLE_PREFIX, weight::TITLE_CONTAINS)),
        );
        for keyword in &item.keywords {
            take(
                place(&keyword.text, term)
                    .map(|p| p.pick(weight::KEYWORD_EXACT, weight::KEYWORD_PREFIX, weight::KEYWORD_CONTAINS)),
            );
        }
    }
    if !chinese {
        if !single {
            for spelling in &item.title.spellings {
                take(spelling.place(term).map(|p| {
                    p.pick(weight::PINYIN_TITLE_EXACT, weight::PINYIN_TITLE_PREFIX, weight::PINYIN_TITLE_SYLLABLE)
                }));
            }
            for spelling in item.keywords.iter().flat_map(|k| &k.spellings) {
                take(spelling.place(term).map(|p| {
                    p.pick(weight::PINYIN_KEYWORD_EXACT, weight::PINYIN_KEYWORD_PREFIX, weight::PINYIN_KEYWORD_SYLLABLE)
                }));
            }
        }
        // Every initial starts a syllable, so any place in the initials is a syllable boundary;
        // a single letter still only counts at the start.
        let initials = |forms: &Forms, exact: u32, prefix: u32| {
            place(&forms.initials, term).and_then(|p| match p {
                Place::Whole => Some(exact),
                Place::Start => Some(prefix),
                Place::Inside => (!single).then_some(weight::INITIALS_CONTAINS),
            })
        };
        take(initials(&item.title, weight::INITIALS_TITLE_EXACT, weight::INITIALS_TITLE_PREFIX));
        for keyword in &item.keywords {
            take(initials(keyword, weight::INITIALS_KEYWORD_EXACT, weight::INITIALS_KEYWORD_PREFIX));
        }
        for word in item.title_en.split(|c: char| !c.is_alphanumeric()) {
            if word == term {
                take(Some(weight::ENGLISH_WORD));
            } else if word.starts_with(term) {
                take(Some(weight::ENGLISH_WORD_PREFIX));
            }
        }
    }
    if (chinese || length >= MIN_LATIN_IN_SUMMARY) && item.summary.contains(term) {
        take(Some(weight::SUMMARY));
    }
    (points > 0).then_some(points)
}

/// Where a term was found in a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// The term is the whole text.
    Whole,
    /// The text starts with the term.
    Start,
    /// The term is further inside.
    Inside,
}

impl Place {
    fn pick(self, whole: u32, start: u32, inside: u32) -> u32 {
        match self {
            Place::Whole => whole,
            Place::Start => start,
            Place::Inside => inside,
        }
    }
}

fn place(text: &str, term: &str) -> Option<Place> {
    if text == term {
        Some(Place::Whole)
    } else if text.starts_with(term) {
        Some(Place::Start)
    } else if text.contains(term) {
        Some(Place::Inside)
    } else {
        None
    }
}

/// A text in the forms a term can match: the text itself, its pinyin and its initials, all
/// lowercase. Letters and digits that have no pinyin pass into the pinyin and the initials
/// unchanged, each run of them as one piece (`12345热线`: `12345rexian`, `12345rx`).
struct Forms {
    text: String,
    /// The pinyin, once with ü written `v` (as typed with a pinyin keyboard: 律师 `lvshi`), and
    /// once more with it written `u` (`lushi`) when the text has a ü at all.
    spellings: Vec<Spelling>,
    initials: String,
}

impl Forms {
    fn of(s: &str) -> Self {
        let text = normalize(s);
        let mut with_v = Spelling::default();
        let mut with_u = Spelling::default();
        let mut has_u_umlaut = false;
        let mut initials = String::new();
        let mut run = String::new();
        let end_run = |run: &mut String, with_v: &mut Spelling, with_u: &mut Spelling, initials: &mut String| {
            if !run.is_empty() {
                initials.push_str(run);
                with_v.push(run);
                with_u.push(run);
                run.clear();
            }
        };
        for c in text.chars() {
            if let Some(reading) = c.to_pinyin() {
                end_run(&mut run, &mut with_v, &mut with_u, &mut initials);
                let plain = reading.plain();
                has_u_umlaut |= plain.contains('ü');
                with_v.push(&plain.replace('ü', "v"));
                with_u.push(&plain.replace('ü', "u"));
                initials.push_str(reading.first_letter());
            } else if c.is_alphanumeric() {
                run.push(c);
            } else {
                end_run(&mut run, &mut with_v, &mut with_u, &mut initials);
            }
        }
        end_run(&mut run, &mut with_v, &mut with_u, &mut initials);
        let mut spellings = vec![with_v];
        if has_u_umlaut {
            spellings.push(with_u);
        }
        Self { text, spellings, initials }
    }
}

/// Pinyin syllables (and runs of other letters and digits) joined without spaces, with where
/// each one starts.
#[derive(Debug, Default)]
struct Spelling {
    joined: String,
    /// Byte offsets into `joined`, one per syllable, ascending; the first is 0.
    starts: Vec<usize>,
}

impl Spelling {
    fn push(&mut self, syllable: &str) {
        self.starts.push(self.joined.len());
        self.joined.push_str(syllable);
    }

    /// The syllables separated by single spaces.
    fn spaced(&self) -> String {
        let mut out = String::with_capacity(self.joined.len() + self.starts.len());
        for (i, piece) in self.pieces().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(piece);
        }
        out
    }

    fn pieces(&self) -> impl Iterator<Item = &str> {
        self.starts.iter().enumerate().map(|(i, &start)| {
            let end = self.starts.get(i + 1).copied().unwrap_or(self.joined.len());
            &self.joined[start..end]
        })
    }

    /// Where the term is, counting only places where a syllable starts: `ju` and `zhuzheng` are
    /// in `juzhuzhengbanli`, `anli` (the end of `ban` and `li`) is not. The term may end inside a
    /// syllable, as it does while the user is still typing.
    fn place(&self, term: &str) -> Option<Place> {
        if self.joined == term {
            Some(Place::Whole)
        } else if self.joined.starts_with(term) {
            Some(Place::Start)
        } else if self.starts.iter().skip(1).any(|&start| self.joined[start..].starts_with(term)) {
            Some(Place::Inside)
        } else {
            None
        }
    }
}

/// Lowercase, with full-width ASCII (what a Chinese keyboard types in full-width mode) and the
/// ideographic space as their ASCII forms, so that `ＤＩＢＡＯ` is `dibao`.
fn normalize(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{3000}' => ' ',
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// A Chinese character: the CJK unified ideographs and their extensions, the compatibility
/// ideographs, and 〇.
fn is_han(c: char) -> bool {
    matches!(c,
        '\u{3007}'
        | '\u{3400}'..='\u{4DBF}'
        | '\u{4E00}'..='\u{9FFF}'
        | '\u{F900}'..='\u{FAFF}'
        | '\u{20000}'..='\u{3134F}')
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
        fn new(title: &'static str, title_en: &'static str, keywords: &[&str], summary: &'static str) -> Self {
            Self { title, title_en, keywords: keywords.iter().map(|k| (*k).to_owned()).collect(), summary }
        }

        fn fields(&self) -> Fields<'_> {
            Fields { title: self.title, title_en: self.title_en, keywords: &self.keywords, summary: self.summary }
        }
    }

    /// A few items shaped like the demo catalogue's.
    fn catalogue() -> Vec<Item> {
        vec![
            Item::new(
                "最低生活保障申请",
                "Minimum living allowance application",
                &["低保", "生活困难"],
                "为家庭人均收入低于最低生活保障标准的居民家庭提供基本生活保障",
            ),
            Item::new(
                "临时救助申请",
                "Temporary assistance application",
                &["救助", "急难"],
                "低保家庭和其他困难群众遇到急难时可申请临时救助",
            ),
            Item::new("居住证办理", "Residence permit application", &["暂住证", "流动人口"], "在本市居住满半年可申领"),
            Item::new("居住证", "Residence permit", &[], ""),
            Item::new("法律咨询", "Legal consultation", &["律师", "法律顾问"], "社区法律顾问免费解答法律问题"),
            Item::new("在职党员到社区报到（双报到）", "In-service Party member registration", &["双报到"], ""),
            Item::new("12345热线转办", "Hotline 12345 referrals", &["ETC"], "市民热线工单"),
        ]
    }

    /// The titles that match `query`, best first (equal scores in catalogue order, as the
    /// service sorts them by a stable id).
    fn search(query: &str) -> Vec<&'static str> {
        let terms = terms(query);
        let mut hits: Vec<(u32, &'static str)> =
            catalogue().iter().filter_map(|i| score(&terms, &i.fields()).map(|s| (s, i.title))).collect();
        hits.sort_by_key(|h| std::cmp::Reverse(h.0));
        hits.into_iter().map(|(_, t)| t).collect()
    }

    #[test]
    fn a_keyword_outranks_a_mention_in_the_summary() {
        assert_eq!(search("低保"), ["最低生活保障申请", "临时救助申请"]);
    }

    #[test]
    fn two_character_words_find_the_items_that_hold_them() {
        assert_eq!(search("居住"), ["居住证", "居住证办理"], "the shorter title first");
        assert_eq!(search("报到"), ["在职党员到社区报到（双报到）"]);
    }

    #[test]
    fn pinyin_in_full_and_by_initials_finds_items() {
        assert_eq!(search("dibao"), ["最低生活保障申请"]);
        assert_eq!(search("db"), ["最低生活保障申请"]);
        assert_eq!(search("zuidi"), ["最低生活保障申请"]);
        assert_eq!(search("zdshbz"), ["最低生活保障申请"]);
        assert_eq!(search("juzhu"), ["居住证", "居住证办理"]);
        assert_eq!(search("jzz"), ["居住证", "居住证办理"]);
        assert_eq!(search("juzhuzhengbanli"), ["居住证办理"]);
        assert_eq!(search("zhengbanli"), ["居住证办理"], "from a syllable inside the title");
    }

    #[test]
    fn pinyin_matches_start_at_syllables() {
        assert_eq!(search("ju").first(), Some(&"居住证"));
        assert!(search("anli").is_empty(), "anli is the end of ban and li, not a syllable");
        assert!(search("huzhe").is_empty(), "huzhe would start inside ju|zhu|zheng");
    }

    #[test]
    fn a_single_letter_matches_only_initials_and_english_words() {
        assert!(search("j").contains(&"居住证办理"), "initial of 居");
        assert!(search("p").contains(&"居住证办理"), "English 'permit'");
        // `h` is inside the pinyin of 居住证 (ju-zhu-zheng) but starts neither its initials nor
        // one of its English words.
        assert!(!search("h").contains(&"居住证"));
        assert!(!search("i").contains(&"最低生活保障申请"), "inside di, not an initial");
    }

    #[test]
    fn u_umlaut_is_typed_as_v_or_u() {
        assert_eq!(search("lvshi"), ["法律咨询"]);
        assert_eq!(search("lushi"), ["法律咨询"]);
        assert_eq!(search("falv"), ["法律咨询"]);
    }

    #[test]
    fn english_titles_match_by_word_and_word_start() {
        assert_eq!(search("residence permit"), ["居住证", "居住证办理"]);
        assert_eq!(search("Resid"), ["居住证", "居住证办理"]);
        assert!(search("idence").is_empty(), "not the start of a word");
    }

    #[test]
    fn latin_letters_and_digits_in_titles_pass_through() {
        assert_eq!(search("12345"), ["12345热线转办"]);
        assert_eq!(search("12345rx"), ["12345热线转办"]);
        assert_eq!(search("12345rexian"), ["12345热线转办"]);
        assert_eq!(search("etc"), ["12345热线转办"], "a Latin keyword");
    }

    #[test]
    fn every_term_must_match() {
        // 临时救助申请 mentions 低保 only in its summary: it matches both terms, but lower.
        assert_eq!(search("低保 申请"), ["最低生活保障申请", "临时救助申请"]);
        assert_eq!(search("低保 zuidi"), ["最低生活保障申请"]);
        assert_eq!(search("residence application"), ["居住证办理"]);
        assert!(search("residence temporary").is_empty());
        assert!(search("低保 居住").is_empty());
    }

    #[test]
    fn nothing_matches_an_unknown_term_or_no_terms() {
        let item = &catalogue()[0];
        assert_eq!(score(&terms("量子"), &item.fields()), None);
        assert_eq!(score(&terms("xyz"), &item.fields()), None);
        assert_eq!(score(&[], &item.fields()), None);
        assert_eq!(score(&[String::new()], &item.fields()), None);
        assert!(search("量子计算机").is_empty());
    }

    #[test]
    fn an_exact_title_ranks_first() {
        assert_eq!(search("居住证"), ["居住证", "居住证办理"]);
        assert_eq!(search("居住证办理"), ["居住证办理"]);
        assert_eq!(search("juzhuzheng"), ["居住证", "居住证办理"]);
        // Both match 申请 inside the title; 救助 is one item's keyword and the other's title.
        assert_eq!(search("申请 救助"), ["临时救助申请"]);
    }

    #[test]
    fn a_better_match_beats_a_shorter_title() {
        let short = Item::new("低保", "", &[], "");
        let long = Item::new("最低生活保障申请", "", &["低保"], "");
        let terms = terms("低保");
        let short_score = score(&terms, &short.fields());
        let long_score = score(&terms, &long.fields());
        assert!(short_score > long_score, "{short_score:?} {long_score:?}");
        // And a one-term summary match never beats a keyword, however long the title.
        let summary_only = Item::new("证", "", &[], "低保");
        assert!(score(&terms, &summary_only.fields()) < long_score);
    }

    #[test]
    fn terms_split_at_spaces_punctuation_and_scripts() {
        assert_eq!(terms(" 低保dibao, Residence  permit！"), ["低保", "dibao", "residence", "permit"]);
        assert_eq!(terms("最低生活保障"), ["最低生活保障"]);
        assert_eq!(terms("ＤＩＢＡＯ　居住"), ["dibao", "居住"], "full-width letters and space");
        assert_eq!(terms("db db DB"), ["db"]);
        assert!(terms("").is_empty());
        assert!(terms("  ，。 ").is_empty());
    }

    #[test]
    fn the_document_holds_the_pinyin_forms() {
        let item = &catalogue()[0];
        let doc = document(&item.fields());
        for form in ["最低生活保障申请", "zuidishenghuobaozhangshenqing", "zui di sheng huo bao zhang shen qing"]
        {
            assert!(doc.contains(form), "{form} missing from {doc}");
        }
        for form in ["zdshbzsq", "低保", "dibao", "di bao", "db", "minimum living allowance application"] {
            assert!(doc.lines().any(|l| l == form), "{form} missing from {doc}");
        }
        let lawyer = document(&catalogue()[4].fields());
        assert!(lawyer.contains("lvshi") && lawyer.contains("lushi"), "{lawyer}");
        assert_eq!(document(&Fields { title: "", title_en: "", keywords: &[], summary: "" }), "");
    }

    /// Every piece of up to `longest` characters of `s`, as query terms.
    fn pieces(s: &str, longest: usize, out: &mut Vec<String>) {
        let chars: Vec<char> = s.chars().collect();
        for start in 0..chars.len() {
            for end in start + 1..=(start + longest).min(chars.len()) {
                let piece: String = chars[start..end].iter().collect();
                out.extend(terms(&piece));
            }
        }
    }

    #[test]
    fn the_document_holds_every_term_that_matches() {
        let items = catalogue();
        // Candidate terms: every short piece of every form score matches against (taken from
        // those forms, not from the document under test), so each kind of match is tried; plus
        // some that match nothing.
        let mut candidates: Vec<String> = ["量子", "xyz", "Ｐｅｒｍｉｔ", "LÜ"].map(String::from).to_vec();
        for item in &items {
            let prepared = Prepared::of(&item.fields());
            for forms in std::iter::once(&prepared.title).chain(&prepared.keywords) {
                pieces(&forms.text, 8, &mut candidates);
                pieces(&forms.initials, 8, &mut candidates);
                for spelling in &forms.spellings {
                    pieces(&spelling.joined, 24, &mut candidates);
                }
            }
            pieces(&prepared.title_en, 12, &mut candidates);
            pieces(&prepared.summary, 4, &mut candidates);
        }
        candidates.sort();
        candidates.dedup();
        let mut matched = 0;
        for item in &items {
            let doc = document(&item.fields());
            for term in &candidates {
                if score(std::slice::from_ref(term), &item.fields()).is_some() {
                    matched += 1;
                    assert!(doc.contains(term.as_str()), "{term:?} matches {} but {doc:?} lacks it", item.title);
                }
            }
        }
        // Enough matches that the check above means something.
        assert!(matched > 1000, "only {matched} matches among {} candidates", candidates.len());
    }
}
