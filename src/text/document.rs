//! Splitting a document into paragraphs, with byte offsets back into the source.
//!
//! Handles blank-line-separated paragraphs, one-paragraph-per-line documents, hard-wrapped text,
//! Markdown headings and list items, and short title-like lines (section headings, author blocks),
//! which are not paragraphs but become the `section` of the paragraphs that follow. CRLF line
//! ends, a byte-order mark and stray whitespace are tolerated; offsets always point into the
//! original bytes.

/// A piece of a document: a paragraph to classify, with the heading it falls under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The paragraph's text (lines of a hard-wrapped paragraph joined by one space).
    pub text: String,
    /// Byte range of the paragraph in the source.
    pub start: usize,
    pub end: usize,
    /// The heading lines above it, joined by " / ", if any.
    pub section: Option<String>,
}

/// A line's trimmed content and its byte range.
#[derive(Debug, Clone, Copy)]
struct Line<'a> {
    text: &'a str,
    start: usize,
    end: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Paragraph,
    /// A `#` heading: always a heading.
    Markdown,
    /// A short line without final punctuation: a heading if a paragraph follows it.
    TitleLike,
}

#[derive(Debug, Clone)]
struct Unit {
    kind: Kind,
    text: String,
    start: usize,
    end: usize,
}

/// Longest line (in characters) that can be part of a hard-wrapped paragraph.
const WRAP_WIDTH: usize = 100;
/// A line at least this long that does not end a sentence is taken as hard-wrapped.
const MIN_WRAPPED_LINE: usize = 50;
/// Most words a title-like line may have.
const TITLE_WORDS: usize = 12;

/// Splits a document into paragraphs.
pub fn split(source: &str) -> Vec<Block> {
    let units = units(&lines(source));
    let last_paragraph = units.iter().rposition(|u| u.kind == Kind::Paragraph);
    let mut blocks = Vec::new();
    let mut section: Vec<String> = Vec::new();
    let mut after_paragraph = true;
    for (i, unit) in units.into_iter().enumerate() {
        let heading = match unit.kind {
            Kind::Markdown => true,
            Kind::TitleLike => last_paragraph.is_some_and(|last| i < last),
            Kind::Paragraph => false,
        };
        if heading {
            if after_paragraph {
                section.clear();
            }
            section.push(unit.text.trim_start_matches('#').trim().to_string());
            after_paragraph = false;
        } else {
            blocks.push(Block {
                text: unit.text,
                start: unit.start,
                end: unit.end,
                section: (!section.is_empty()).then(|| section.join(" / ")),
            });
            after_paragraph = true;
        }
    }
    blocks
}

fn lines(source: &str) -> Vec<Line<'_>> {
    let bom = if source.starts_with('\u{feff}') { 3 } else { 0 };
    let mut lines = Vec::new();
    let mut offset = bom;
    for raw in source[bom..].split_inclusive('\n') {
        let content = raw.trim_end_matches(['\n', '\r']);
        let leading = content.len() - content.trim_start().len();
        let text = content.trim();
        lines.push(Line {
            text,
            start: offset + leading,
            end: offset + leading + text.len(),
        });
        offset += raw.len();
    }
    lines
}

fn units(lines: &[Line<'_>]) -> Vec<Unit> {
    let mut units = Vec::new();
    // Runs of plain lines inside a blank-line-separated block.
    let mut run: Vec<Line<'_>> = Vec::new();
    for line in lines {
        if line.text.is_empty() {
            flush(&mut run, &mut units);
        } else if is_markdown_heading(line.text) {
            flush(&mut run, &mut units);
            units.push(unit(Kind::Markdown, line));
        } else if is_list_item(line.text) {
            flush(&mut run, &mut units);
            run.push(*line);
        } else {
            run.push(*line);
        }
    }
    flush(&mut run, &mut units);
    units
}

/// Turns a run of consecutive lines into units. In a run of short lines (hard-wrapped text), a
/// line joins the next when it does not end a sentence and the next line continues it (starts in
/// lower case) or the line is too long to be a heading; otherwise every line is its own unit.
fn flush(run: &mut Vec<Line<'_>>, units: &mut Vec<Unit>) {
    if run.is_empty() {
        return;
    }
    let short_lines = run.iter().all(|l| l.text.chars().count() <= WRAP_WIDTH);
    let mut group: Vec<Line<'_>> = Vec::new();
    for (i, line) in run.iter().enumerate() {
        group.push(*line);
        let continues = short_lines
            && run.get(i + 1).is_some_and(|next| {
                !ends_sentence(line.text)
                    && !is_list_item(next.text)
                    && (next.text.chars().next().is_some_and(char::is_lowercase)
                        || line.text.chars().count() >= MIN_WRAPPED_LINE)
            });
        if !continues {
            units.push(group_unit(&group));
            group.clear();
        }
    }
    run.clear();
}

fn group_unit(group: &[Line<'_>]) -> Unit {
    if let [line] = group {
        let kind = if is_title_like(line.text) {
            Kind::TitleLike
        } else {
            Kind::Paragraph
        };
        return unit(kind, line);
    }
    Unit {
        kind: Kind::Paragraph,
        text: group.iter().map(|l| l.text).collect::<Vec<_>>().join(" "),
        start: group[0].start,
        end: group[group.len() - 1].end,
    }
}

fn unit(kind: Kind, line: &Line<'_>) -> Unit {
    Unit {
        kind,
        text: line.text.to_string(),
        start: line.start,
        end: line.end,
    }
}

fn is_markdown_heading(text: &str) -> bool {
    let hashes = text.chars().take_while(|&c| c == '#').count();
    (1..=6).contains(&hashes) && text[hashes..].starts_with(' ')
}

fn is_list_item(text: &str) -> bool {
    if let Some(rest) = text.strip_prefix(['-', '*', '+', '•']) {
        return rest.starts_with(' ');
    }
    let digits = text.chars().take_while(char::is_ascii_digit).count();
    digits > 0
        && digits <= 3
        && (text[digits..].starts_with(". ") || text[digits..].starts_with(") "))
}

/// Whether a line ends like a sentence (after closing quotes and brackets), in Latin, Cyrillic
/// or CJK punctuation (Chinese and Japanese end sentences with full-width marks).
fn ends_sentence(text: &str) -> bool {
    let stripped = text.trim_end_matches([
        '"', '\'', '”', '’', '»', ')', ']', '*', '_', '」', '』', '》', '）', '】', '〉',
    ]);
    stripped.ends_with([
        '.', '!', '?', ';', ':', '…', ',', '。', '！', '？', '；', '：', '，', '．',
    ])
}

/// A short line without final punctuation that does not start in lower case: a heading, a
/// byline or an author's name.
fn is_title_like(text: &str) -> bool {
    let words = text.split_whitespace().count();
    words <= TITLE_WORDS
        && text.chars().count() <= WRAP_WIDTH
        && !ends_sentence(text)
        && !text.chars().next().is_some_and(char::is_lowercase)
        && !is_list_item(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(blocks: &[Block]) -> Vec<&str> {
        blocks.iter().map(|b| b.text.as_str()).collect()
    }

    #[test]
    fn one_paragraph_per_line_with_headings_and_author_block() {
        let doc = "First paragraph is long enough and ends with a period.\nSecond one also ends properly.\nShared Threat Perceptions\nThird paragraph under a heading.\nWritten by\nJane Doe\nJane Doe is a researcher at an institute.";
        let blocks = split(doc);
        assert_eq!(
            texts(&blocks),
            vec![
                "First paragraph is long enough and ends with a period.",
                "Second one also ends properly.",
                "Third paragraph under a heading.",
                "Jane Doe is a researcher at an institute."
            ]
        );
        assert_eq!(blocks[0].section, None);
        assert_eq!(
            blocks[2].section.as_deref(),
            Some("Shared Threat Perceptions")
        );
        assert_eq!(blocks[3].section.as_deref(), Some("Written by / Jane Doe"));
    }

    #[test]
    fn offsets_point_into_the_source_with_bom_and_crlf() {
        let doc = "\u{feff}  Alpha beta gamma.  \r\n\r\nDelta epsilon zeta.\r\n";
        let blocks = split(doc);
        assert_eq!(
            texts(&blocks),
            vec!["Alpha beta gamma.", "Delta epsilon zeta."]
        );
        for b in &blocks {
            assert_eq!(&doc[b.start..b.end], b.text);
        }
    }

    #[test]
    fn hard_wrapped_paragraphs_are_joined() {
        let doc = "This paragraph was wrapped at a narrow width by an editor\nso its lines end in the middle of sentences and\nmust be joined.\n\nA second paragraph.\n";
        let blocks = split(doc);
        assert_eq!(blocks.len(), 2);
        assert_eq!(
            blocks[0].text,
            "This paragraph was wrapped at a narrow width by an editor so its lines end in the middle of sentences and must be joined."
        );
        assert_eq!(&doc[blocks[0].start..blocks[0].end].lines().count(), &3);
    }

    #[test]
    fn markdown_headings_become_sections() {
        let doc = "# Title\n\n## Part one\n\nBody text here.\n\n## Part two\n\nMore body text.\n";
        let blocks = split(doc);
        assert_eq!(texts(&blocks), vec!["Body text here.", "More body text."]);
        assert_eq!(blocks[0].section.as_deref(), Some("Title / Part one"));
        assert_eq!(blocks[1].section.as_deref(), Some("Part two"));
    }

    #[test]
    fn a_lone_short_line_is_a_paragraph_not_a_heading() {
        let blocks = split("China will broker peace\n");
        assert_eq!(texts(&blocks), vec!["China will broker peace"]);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Text built from the pieces the splitter looks at: words, sentence ends, headings, list
        /// markers, blank lines, CRLF, tabs, a BOM, and some characters of two to four bytes.
        fn document() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                "[a-zA-Z]{1,12}",
                Just(" ".to_string()),
                Just(". ".to_string()),
                Just("\n".to_string()),
                Just("\n\n".to_string()),
                Just("\r\n".to_string()),
                Just("\t".to_string()),
                Just("# ".to_string()),
                Just("- ".to_string()),
                Just("12. ".to_string()),
                Just("\u{feff}".to_string()),
                "[é€😀”’\u{85}\u{2028}\u{a0}]",
            ];
            prop::collection::vec(piece, 0..80).prop_map(|pieces| pieces.concat())
        }

        fn check(source: &str) {
            let blocks = split(source);
            let mut previous_end = 0;
            for block in &blocks {
                // In order, not overlapping, non-empty, on character boundaries (slicing
                // panics otherwise).
                assert!(previous_end <= block.start && block.start < block.end);
                previous_end = block.end;
                let range = &source[block.start..block.end];
                // The documented relation: the range's lines, trimmed, joined by one space.
                let joined = range.lines().map(str::trim).collect::<Vec<_>>().join(" ");
                assert_eq!(joined, block.text, "range {range:?}");
                assert_eq!(block.text.trim(), block.text);
            }
            assert!(previous_end <= source.len());
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(128))]

            /// Issue 11: any text splits without panicking, and every paragraph's byte range
            /// slices the source to its text (lines of a hard-wrapped paragraph joined by one
            /// space).
            #[test]
            fn issue_11_ranges_slice_the_source_to_the_text(source in document()) {
                check(&source);
            }

            #[test]
            fn issue_11_arbitrary_strings_split_without_panicking(source in any::<String>()) {
                check(&source);
            }
        }
    }

    #[test]
    fn empty_and_blank_documents_have_no_paragraphs() {
        assert!(split("").is_empty());
        assert!(split(" \n\r\n\t\n").is_empty());
        assert!(split("\u{feff}").is_empty());
    }

    #[test]
    fn chinese_paragraphs_ending_in_full_width_marks_are_paragraphs_not_titles() {
        let source = "中俄关系\n中国的立场很明确。\n俄罗斯会同意吗？\n他说：“这是最后的机会。”\n";
        let blocks = split(source);
        assert_eq!(
            texts(&blocks),
            [
                "中国的立场很明确。",
                "俄罗斯会同意吗？",
                "他说：“这是最后的机会。”"
            ]
        );
        assert_eq!(blocks[0].section.as_deref(), Some("中俄关系"));
    }
}
