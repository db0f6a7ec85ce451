//! Reading inputs: files, folders (recursively, in sorted order), JSON Lines and standard input,
//! turned into paragraphs with ids, sections and byte offsets.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::text::document;

/// One paragraph to embed or classify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paragraph {
    /// The document it came from, as named on the command line ("-" for standard input).
    pub doc: String,
    /// 1-based position among the document's paragraphs.
    pub index: usize,
    /// The JSON Lines row's `id`; else, for a JSON Lines row, `DOC#LINE` (its 1-based line number,
    /// as in error messages and as `eval` names gold rows), for a text paragraph `DOC#INDEX`.
    pub id: String,
    pub section: Option<String>,
    /// Byte range in the source (for JSON Lines: the line).
    pub start: usize,
    pub end: usize,
    pub text: String,
    /// A JSON Lines row's own `target`, if it has one.
    pub target: Option<String>,
    /// Whether this is a JSON Lines row, which `--shard` assigns on its own (by `id`), rather
    /// than a paragraph of a text document, which goes with its document.
    pub row: bool,
}

impl Paragraph {
    /// What `--shard` assigns: a row's id, or a text paragraph's document.
    pub fn shard_key(&self) -> &str {
        if self.row {
            &self.id
        } else {
            &self.doc
        }
    }
}

/// Where paragraphs come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Stdin,
}

impl Source {
    pub fn name(&self) -> String {
        match self {
            Source::File(path) => path.display().to_string(),
            Source::Stdin => "-".to_string(),
        }
    }
}

/// File name extensions read from folders.
const TEXT_EXTENSIONS: &[&str] = &["txt", "md", "markdown", "jsonl"];

/// Expands the command line's inputs: folders become their text files (recursively, sorted);
/// a path that does not exist is an error.
pub fn expand(inputs: &[String]) -> Result<Vec<Source>> {
    let mut sources = Vec::new();
    for input in inputs {
        if input == "-" {
            sources.push(Source::Stdin);
            continue;
        }
        let path = PathBuf::from(input);
        let metadata = std::fs::metadata(&path).map_err(|e| Error::read(&path, e))?;
        if metadata.is_dir() {
            walk(&path, &mut sources)?;
        } else {
            sources.push(Source::File(path));
        }
    }
    Ok(sources)
}

fn walk(folder: &Path, sources: &mut Vec<Source>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(folder)
        .map_err(|e| Error::read(folder, e))?
        .map(|entry| entry.map(|e| e.path()).map_err(|e| Error::read(folder, e)))
        .collect::<Result<_>>()?;
    entries.sort();
    for path in entries {
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            walk(&path, sources)?;
        } else if path
            .extension()
            .is_some_and(|e| TEXT_EXTENSIONS.contains(&e.to_string_lossy().to_lowercase().as_str()))
        {
            sources.push(Source::File(path));
        }
    }
    Ok(())
}

/// Reads a source's bytes and checks they are text: no NUL bytes, valid UTF-8.
pub fn read_text(source: &Source) -> Result<String> {
    let (bytes, path) = match source {
        Source::File(path) => (
            std::fs::read(path).map_err(|e| Error::read(path, e))?,
            path.clone(),
        ),
        Source::Stdin => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|e| Error::read("-", e))?;
            (bytes, PathBuf::from("-"))
        }
    };
    if bytes.contains(&0) {
        return Err(Error::Binary { path });
    }
    String::from_utf8(bytes).map_err(|e| Error::NotUtf8 {
        path,
        offset: e.utf8_error().valid_up_to(),
    })
}

/// Whether a source holds JSON Lines: by extension, or (for standard input) by its first character.
fn is_jsonl(source: &Source, text: &str) -> bool {
    match source {
        Source::File(path) => path.extension().is_some_and(|e| e == "jsonl"),
        Source::Stdin => text
            .trim_start_matches('\u{feff}')
            .trim_start()
            .starts_with('{'),
    }
}

/// Reads one source into paragraphs.
pub fn paragraphs(source: &Source) -> Result<Vec<Paragraph>> {
    let text = read_text(source)?;
    if is_jsonl(source, &text) {
        jsonl_paragraphs(source, &text)
    } else {
        Ok(document_paragraphs(&source.name(), &text))
    }
}

/// Splits a text document into paragraphs.
pub fn document_paragraphs(doc: &str, text: &str) -> Vec<Paragraph> {
    document::split(text)
        .into_iter()
        .enumerate()
        .map(|(i, block)| Paragraph {
            doc: doc.to_string(),
            index: i + 1,
            id: format!("{doc}#{}", i + 1),
            section: block.section,
            start: block.start,
            end: block.end,
            text: block.text,
            target: None,
            row: false,
        })
        .collect()
}

/// Parses JSON Lines rows `{"id", "text", "target"?}`: each row is one paragraph, never split.
pub fn jsonl_paragraphs(source: &Source, text: &str) -> Result<Vec<Paragraph>> {
    let mut rows = JsonlRows::new(source.name());
    let mut paragraphs = Vec::new();
    for raw in text.split_inclusive('\n') {
        if let Some(paragraph) = rows.parse_line(raw)? {
            paragraphs.push(paragraph);
        }
    }
    Ok(paragraphs)
}

/// The rows of a JSON Lines text, each with its 1-based line number: blank lines skipped, a
/// leading byte-order mark ignored, a line that is not JSON an error naming `path` and the line.
pub fn json_lines<'a>(
    text: &'a str,
    path: &'a Path,
) -> impl Iterator<Item = Result<(usize, serde_json::Value)>> + 'a {
    text.lines().enumerate().filter_map(move |(index, line)| {
        let line = line.trim_start_matches('\u{feff}').trim();
        if line.is_empty() {
            return None;
        }
        Some(
            serde_json::from_str(line)
                .map(|value| (index + 1, value))
                .map_err(|e| Error::Jsonl {
                    path: path.to_path_buf(),
                    line: index + 1,
                    message: format!("not valid JSON ({e})"),
                }),
        )
    })
}

/// Paragraphs of a source, one at a time: JSON Lines files are read line by line, so memory
/// stays flat however long they are; text documents and standard input are read whole.
pub fn stream(source: &Source) -> Result<Box<dyn Iterator<Item = Result<Paragraph>>>> {
    match source {
        Source::File(path) if path.extension().is_some_and(|e| e == "jsonl") => {
            let file = std::fs::File::open(path).map_err(|e| Error::read(path, e))?;
            Ok(Box::new(JsonlStream {
                reader: std::io::BufReader::with_capacity(1 << 16, file),
                rows: JsonlRows::new(source.name()),
                path: path.clone(),
                buffer: Vec::new(),
                done: false,
            }))
        }
        _ => Ok(Box::new(paragraphs(source)?.into_iter().map(Ok))),
    }
}

/// The state of reading JSON Lines rows: line numbers, byte offsets, paragraph count.
struct JsonlRows {
    doc: String,
    path: PathBuf,
    line: usize,
    offset: usize,
    count: usize,
}

impl JsonlRows {
    fn new(doc: String) -> Self {
        Self {
            path: PathBuf::from(&doc),
            doc,
            line: 0,
            offset: 0,
            count: 0,
        }
    }

    /// Parses one line (with its line end); blank lines give `None`.
    fn parse_line(&mut self, raw: &str) -> Result<Option<Paragraph>> {
        self.line += 1;
        let line_start = self.offset;
        self.offset += raw.len();
        let line = raw.trim_start_matches('\u{feff}').trim();
        if line.is_empty() {
            return Ok(None);
        }
        let fail = |message: String| Error::Jsonl {
            path: self.path.clone(),
            line: self.line,
            message,
        };
        let row: serde_json::Value =
            serde_json::from_str(line).map_err(|e| fail(format!("not valid JSON ({e})")))?;
        let object = row.as_object().ok_or_else(|| {
            fail("expected a JSON object like {\"id\": ..., \"text\": ...}".into())
        })?;
        let text = object
            .get("text")
            .and_then(|t| t.as_str())
            .ok_or_else(|| fail("no \"text\" string field".into()))?;
        let index = self.count + 1;
        let id = match object.get("id") {
            // The line, not the row's position, so that `classify` and `eval` (crate::eval::gold)
            // name the same row the same way and the id points at the line to open.
            None | Some(serde_json::Value::Null) => format!("{}#{}", self.doc, self.line),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            Some(_) => return Err(fail("\"id\" must be a string or a number".into())),
        };
        let target = match object.get("target") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(fail("\"target\" must be a string".into())),
        };
        self.count += 1;
        Ok(Some(Paragraph {
            doc: self.doc.clone(),
            index,
            id,
            section: None,
            start: line_start,
            end: line_start + raw.trim_end_matches(['\n', '\r']).len(),
            text: text.to_string(),
            target,
            row: true,
        }))
    }
}

struct JsonlStream {
    reader: std::io::BufReader<std::fs::File>,
    rows: JsonlRows,
    path: PathBuf,
    buffer: Vec<u8>,
    done: bool,
}

impl Iterator for JsonlStream {
    type Item = Result<Paragraph>;

    fn next(&mut self) -> Option<Result<Paragraph>> {
        use std::io::BufRead;
        while !self.done {
            self.buffer.clear();
            let read = match self.reader.read_until(b'\n', &mut self.buffer) {
                Ok(n) => n,
                Err(e) => {
                    self.done = true;
                    return Some(Err(Error::read(&self.path, e)));
                }
            };
            if read == 0 {
                self.done = true;
                break;
            }
            let fail = |error: Error| Some(Err(error));
            if self.buffer.contains(&0) {
                self.done = true;
                return fail(Error::Binary {
                    path: self.path.clone(),
                });
            }
            let line = match std::str::from_utf8(&self.buffer) {
                Ok(line) => line,
                Err(e) => {
                    self.done = true;
                    return fail(Error::NotUtf8 {
                        path: self.path.clone(),
                        offset: self.rows.offset + e.valid_up_to(),
                    });
                }
            };
            match self.rows.parse_line(line) {
                Ok(Some(paragraph)) => return Some(Ok(paragraph)),
                Ok(None) => continue,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 11: a JSON Lines row without an id was `DOC#N` (N counting rows) in `classify` and
    /// `PATH#LINE` in `eval`; both now use the 1-based line number.
    #[test]
    fn issue_11_rows_without_ids_are_named_by_their_line_everywhere() {
        let text = concat!(
            "{\"id\": \"kept\", \"text\": \"A.\", \"theme\": \"other\"}\n",
            "\n",
            "{\"text\": \"B.\", \"theme\": \"other\"}\n",
            "{\"id\": null, \"text\": \"C.\", \"theme\": \"other\"}\n",
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.jsonl");
        std::fs::write(&path, text).unwrap();
        let source = Source::File(path.clone());
        let name = source.name();
        let expected = ["kept".to_string(), format!("{name}#3"), format!("{name}#4")];

        let classify: Vec<String> = jsonl_paragraphs(&source, text)
            .unwrap()
            .into_iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(classify, expected);
        let streamed: Vec<String> = stream(&source).unwrap().map(|p| p.unwrap().id).collect();
        assert_eq!(streamed, expected);
        let eval: Vec<String> =
            crate::eval::gold::parse(text, &path, &crate::label::schema::Schema::default_schema())
                .unwrap()
                .into_iter()
                .map(|r| r.id)
                .collect();
        assert_eq!(eval, expected);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// A JSON Lines file of rows (with or without an id), blank lines, CRLF and broken
        /// lines.
        fn jsonl() -> impl Strategy<Value = String> {
            let line = prop_oneof![
                4 => (any::<String>(), prop::option::of("[a-z0-9]{1,8}")).prop_map(|(text, id)| {
                    let mut row = serde_json::json!({ "text": text });
                    if let Some(id) = id {
                        row["id"] = id.into();
                    }
                    row.to_string()
                }),
                1 => Just(String::new()),
                1 => Just("  \t".to_string()),
                1 => any::<String>(),
                1 => Just("{\"text\": 3}".to_string()),
            ];
            (
                prop::collection::vec((line, any::<bool>()), 0..12),
                any::<bool>(),
            )
                .prop_map(|(lines, bom)| {
                    let body: String = lines
                        .into_iter()
                        .map(|(line, crlf)| format!("{line}{}", if crlf { "\r\n" } else { "\n" }))
                        .collect();
                    if bom {
                        format!("\u{feff}{body}")
                    } else {
                        body
                    }
                })
        }

        fn check(source: &Source, text: &str) {
            let Ok(paragraphs) = jsonl_paragraphs(source, text) else {
                return;
            };
            for paragraph in paragraphs {
                // The range is the row's line, without its line end.
                let line = &text[paragraph.start..paragraph.end];
                assert!(!line.contains('\n'));
                let row: serde_json::Value =
                    serde_json::from_str(line.trim_start_matches('\u{feff}').trim()).unwrap();
                assert_eq!(row["text"].as_str(), Some(paragraph.text.as_str()));
                let number = text[..paragraph.start].matches('\n').count() + 1;
                let expected = match &row["id"] {
                    serde_json::Value::String(id) => id.clone(),
                    serde_json::Value::Number(id) => id.to_string(),
                    _ => format!("{}#{number}", source.name()),
                };
                assert_eq!(paragraph.id, expected);
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(96))]

            /// Issue 11: the JSON Lines reader never panics, each row's byte range is its
            /// line, and a row without an id is named by that line.
            #[test]
            fn issue_11_jsonl_rows_keep_their_lines(text in jsonl()) {
                check(&Source::File("rows.jsonl".into()), &text);
            }

            /// Issue 11: arbitrary bytes (NUL, invalid UTF-8) read from a file, whole or
            /// streamed, give paragraphs or an error, never a panic.
            #[test]
            fn issue_11_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
                let dir = tempfile::tempdir().unwrap();
                for name in ["rows.jsonl", "doc.txt"] {
                    let path = dir.path().join(name);
                    std::fs::write(&path, &bytes).unwrap();
                    let source = Source::File(path);
                    let whole = paragraphs(&source);
                    let streamed: Result<Vec<Paragraph>> =
                        stream(&source).and_then(|rows| rows.collect());
                    prop_assert_eq!(whole.is_ok(), streamed.is_ok());
                    if let (Ok(whole), Ok(streamed)) = (whole, streamed) {
                        prop_assert_eq!(whole, streamed);
                    }
                    if let Ok(text) = std::str::from_utf8(&bytes) {
                        check(&Source::File(name.into()), text);
                    }
                }
            }
        }
    }
}
