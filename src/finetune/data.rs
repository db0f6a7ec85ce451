//! Training data for stance fine-tuning: (text, target, stance) rows from JSON Lines files, split
//! by text into train, validation and test parts, and the order in which an epoch visits them
//! (balanced across data sets and classes, grouped by length into batches).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::eval::bootstrap::SplitMix64;
use crate::label::stance::Stance;

/// One labelled pair.
#[derive(Debug, Clone, PartialEq)]
pub struct PairRow {
    pub id: String,
    pub text: String,
    pub target: String,
    pub stance: Stance,
    /// Index of the file it came from.
    pub source: usize,
}

/// A training file and what was read from it.
#[derive(Debug, Clone)]
pub struct DataFile {
    pub path: PathBuf,
    pub sha256: String,
    pub rows: usize,
    /// Rows per class: favor, against, none.
    pub classes: [usize; 3],
}

/// Reads `{"id", "text", "target", "stance"}` rows. A row without a text or a target, or with
/// a label that is not favor, against or none, is an error naming the file and line.
pub fn read_pairs(path: &Path, source: usize) -> Result<(DataFile, Vec<PairRow>)> {
    let text =
        crate::text::input::read_text(&crate::text::input::Source::File(path.to_path_buf()))?;
    let mut rows = Vec::new();
    let mut classes = [0usize; 3];
    for row in crate::text::input::json_lines(&text, path) {
        let (number, value) = row?;
        let fail = |message: String| Error::Jsonl {
            path: path.to_path_buf(),
            line: number,
            message,
        };
        let field = |name: &str| value.get(name).and_then(|v| v.as_str());
        let text = field("text")
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| fail("the row has no \"text\"".into()))?;
        let target = field("target")
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| {
                fail(
                    "the row has no \"target\"; stance fine-tuning needs {\"text\", \"target\", \
                 \"stance\"} rows"
                        .into(),
                )
            })?;
        let label = field("stance")
            .ok_or_else(|| fail("the row has no \"stance\" (favor, against or none)".into()))?;
        let stance: Stance = label.parse().map_err(|e| fail(format!("{e}")))?;
        classes[stance.index()] += 1;
        let id = match value.get("id") {
            Some(serde_json::Value::String(id)) => id.clone(),
            Some(serde_json::Value::Number(id)) => id.to_string(),
            _ => format!("{}#{}", path.display(), number),
        };
        rows.push(PairRow {
            id,
            text: text.to_string(),
            target: target.to_string(),
            stance,
            source,
        });
    }
    if rows.is_empty() {
        return Err(Error::Jsonl {
            path: path.to_path_buf(),
            line: 0,
            message:
                "no rows: the file is empty; pass JSON Lines of {\"text\", \"target\", \"stance\"}"
                    .into(),
        });
    }
    let file = DataFile {
        path: path.to_path_buf(),
        // The text is the file's bytes (checked UTF-8), so this is the file's sha256.
        sha256: crate::encode::model::fetch::sha256_bytes(text.as_bytes()),
        rows: rows.len(),
        classes,
    };
    Ok((file, rows))
}

/// The text as the split compares it: lower case, whitespace collapsed, so a retweet or a
/// re-posted comment with other spacing lands in the same part.
pub fn normalised(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Which part of the data a row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    Train,
    Validation,
    Test,
}

/// The part of a text, decided by the sha256 of its normalised form alone: every row with the
/// same text lands in the same part, whatever its target, file or position, and the split is the
/// same for every seed and every mix of files. `validation` and `test` are per mille.
pub fn part_of(text: &str, validation: u32, test: u32) -> Part {
    let digest = Sha256::digest(normalised(text).as_bytes());
    let value = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"));
    let bucket = (value % 1000) as u32;
    if bucket < test {
        Part::Test
    } else if bucket < test + validation {
        Part::Validation
    } else {
        Part::Train
    }
}

/// How an epoch draws its rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// Balance classes within each file and cap each file's share (else every row once).
    pub balance: bool,
    /// At most this many rows from one file per epoch (0: no cap).
    pub per_file_cap: usize,
    /// A cap per file, in the order of the files, instead of `per_file_cap` (empty: that one).
    pub file_caps: Vec<usize>,
    /// Extra `none` pairs per epoch, as a fraction of the epoch: a text paired with a target
    /// drawn from another row, which it does not address.
    pub unrelated: f64,
    /// Draw an unrelated pair's target from a row of the text's own file: a harder `none`, in
    /// the same style and domain as the file's real pairs, instead of one from any file.
    pub unrelated_within_file: bool,
}

/// One training example as the loop sees it: the text and target to pair, and the label.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub id: String,
    pub text_row: usize,
    pub target_row: usize,
    pub stance: Stance,
}

/// The examples of epoch `epoch`, in order, from the training rows.
pub fn epoch_examples(
    rows: &[PairRow],
    sampling: &Sampling,
    seed: u64,
    epoch: usize,
) -> Vec<Example> {
    let mut random = SplitMix64::new(seed ^ (0x5EED_0000 + epoch as u64).wrapping_mul(0x9E37));
    let own = |i: usize| Example {
        id: rows[i].id.clone(),
        text_row: i,
        target_row: i,
        stance: rows[i].stance,
    };
    let mut examples: Vec<Example> = Vec::new();
    if !sampling.balance {
        examples.extend((0..rows.len()).map(own));
    } else {
        // (file, class) -> rows, in file order; BTreeMap for a fixed visiting order.
        let mut groups: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
        for (i, row) in rows.iter().enumerate() {
            groups
                .entry((row.source, row.stance.index()))
                .or_default()
                .push(i);
        }
        let mut per_file: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
        for (&(file, _), members) in &groups {
            let entry = per_file.entry(file).or_insert((0, 0));
            entry.0 += members.len();
            entry.1 += 1;
        }
        for (&(file, _), members) in &groups {
            let (size, classes) = per_file[&file];
            let cap = sampling
                .file_caps
                .get(file)
                .copied()
                .unwrap_or(sampling.per_file_cap);
            let share = if cap > 0 { size.min(cap) } else { size };
            let quota = share / classes;
            let mut pool = members.clone();
            random.shuffle(&mut pool);
            // Cycle through the shuffled class: fewer rows than the quota are repeated, more
            // are subsampled.
            examples.extend((0..quota).map(|k| own(pool[k % pool.len()])));
        }
    }
    let unrelated = (examples.len() as f64 * sampling.unrelated).round() as usize;
    let mut of_file: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    if sampling.unrelated_within_file {
        for (i, row) in rows.iter().enumerate() {
            of_file.entry(row.source).or_default().push(i);
        }
    }
    let mut added = 0;
    let mut attempts = 0;
    while added < unrelated && attempts < unrelated * 20 {
        attempts += 1;
        let text_row = random.below(rows.len());
        let target_row = match of_file.get(&rows[text_row].source) {
            Some(same) => same[random.below(same.len())],
            None => random.below(rows.len()),
        };
        let (a, b) = (&rows[text_row], &rows[target_row]);
        if normalised(&a.target) == normalised(&b.target)
            || normalised(&a.text) == normalised(&b.text)
        {
            continue;
        }
        examples.push(Example {
            id: format!("unrelated:{}:{}", a.id, b.id),
            text_row,
            target_row,
            stance: Stance::None,
        });
        added += 1;
    }
    random.shuffle(&mut examples);
    examples
}

/// Cuts an epoch's examples into batches of `batch` rows of similar length: within windows of
/// 50 batches the examples are sorted by length, cut, and the batches shuffled, so padding stays
/// small while the order stays random.
pub fn batches(
    examples: Vec<Example>,
    lengths: &[usize],
    batch: usize,
    seed: u64,
) -> Vec<Vec<Example>> {
    let batch = batch.max(1);
    let mut random = SplitMix64::new(seed ^ 0x0BA7_C4E5);
    let mut out: Vec<Vec<Example>> = Vec::new();
    for window in examples.chunks(batch * 50) {
        let mut sorted: Vec<(usize, Example)> = window
            .iter()
            .map(|e| (lengths[e.text_row].max(1), e.clone()))
            .collect();
        sorted.sort_by_key(|a| std::cmp::Reverse(a.0));
        out.extend(
            sorted
                .chunks(batch)
                .map(|c| c.iter().map(|(_, e)| e.clone()).collect()),
        );
    }
    random.shuffle(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, text: &str, target: &str, stance: Stance, source: usize) -> PairRow {
        PairRow {
            id: id.into(),
            text: text.into(),
            target: target.into(),
            stance,
            source,
        }
    }

    #[test]
    fn the_same_text_always_lands_in_the_same_part() {
        let a = part_of("Guns  should be BANNED.", 100, 100);
        let b = part_of("guns should be banned.", 100, 100);
        assert_eq!(a, b);
        // Roughly the asked-for shares over many texts.
        let parts: Vec<Part> = (0..10_000)
            .map(|i| part_of(&format!("text {i}"), 100, 50))
            .collect();
        let test = parts.iter().filter(|p| **p == Part::Test).count();
        let validation = parts.iter().filter(|p| **p == Part::Validation).count();
        assert!((400..600).contains(&test), "{test}");
        assert!((850..1150).contains(&validation), "{validation}");
    }

    #[test]
    fn balanced_epochs_give_each_class_of_a_file_the_same_share() {
        let mut rows = Vec::new();
        for i in 0..90 {
            rows.push(row(
                &format!("f{i}"),
                &format!("t{i}"),
                "x",
                Stance::Favor,
                0,
            ));
        }
        for i in 0..10 {
            rows.push(row(
                &format!("n{i}"),
                &format!("u{i}"),
                "x",
                Stance::None,
                0,
            ));
        }
        for i in 0..40 {
            rows.push(row(
                &format!("a{i}"),
                &format!("v{i}"),
                "y",
                Stance::Against,
                1,
            ));
        }
        let sampling = Sampling {
            balance: true,
            per_file_cap: 0,
            file_caps: Vec::new(),
            unrelated: 0.0,
            unrelated_within_file: false,
        };
        let examples = epoch_examples(&rows, &sampling, 7, 0);
        let count = |source: usize, stance: Stance| {
            examples
                .iter()
                .filter(|e| rows[e.text_row].source == source && e.stance == stance)
                .count()
        };
        assert_eq!(count(0, Stance::Favor), 50);
        assert_eq!(count(0, Stance::None), 50);
        assert_eq!(count(1, Stance::Against), 40);
        // Deterministic per seed and epoch; another epoch is another order.
        assert_eq!(examples, epoch_examples(&rows, &sampling, 7, 0));
        assert_ne!(examples, epoch_examples(&rows, &sampling, 7, 1));
        // Caps per file: the first file capped at 20 rows (10 per class), the second uncapped;
        // a single cap applies to every file.
        let capped = Sampling {
            file_caps: vec![20, 0],
            ..sampling.clone()
        };
        let examples = epoch_examples(&rows, &capped, 7, 0);
        let count = |source: usize, stance: Stance| {
            examples
                .iter()
                .filter(|e| rows[e.text_row].source == source && e.stance == stance)
                .count()
        };
        assert_eq!(count(0, Stance::Favor), 10);
        assert_eq!(count(0, Stance::None), 10);
        assert_eq!(count(1, Stance::Against), 40);
        let one_cap = Sampling {
            per_file_cap: 20,
            ..sampling
        };
        let examples = epoch_examples(&rows, &one_cap, 7, 0);
        assert_eq!(
            examples
                .iter()
                .filter(|e| rows[e.text_row].source == 1)
                .count(),
            20
        );
    }

    #[test]
    fn unrelated_pairs_never_pair_a_text_with_its_own_target() {
        let rows: Vec<PairRow> = (0..50)
            .map(|i| {
                row(
                    &i.to_string(),
                    &format!("text {i}"),
                    &format!("target {}", i % 5),
                    Stance::Favor,
                    0,
                )
            })
            .collect();
        let sampling = Sampling {
            balance: false,
            per_file_cap: 0,
            file_caps: Vec::new(),
            unrelated: 0.5,
            unrelated_within_file: false,
        };
        let examples = epoch_examples(&rows, &sampling, 1, 0);
        let unrelated: Vec<&Example> = examples
            .iter()
            .filter(|e| e.text_row != e.target_row)
            .collect();
        assert_eq!(unrelated.len(), 25);
        for e in unrelated {
            assert_eq!(e.stance, Stance::None);
            assert_ne!(rows[e.text_row].target, rows[e.target_row].target);
        }
    }

    #[test]
    fn unrelated_pairs_within_a_file_take_the_target_from_that_file() {
        // Two files of 40 rows each, with targets of their own.
        let rows: Vec<PairRow> = (0..80)
            .map(|i| {
                row(
                    &i.to_string(),
                    &format!("text {i}"),
                    &format!("target {} of file {}", i % 4, i / 40),
                    Stance::Favor,
                    i / 40,
                )
            })
            .collect();
        let sampling = Sampling {
            balance: false,
            per_file_cap: 0,
            file_caps: Vec::new(),
            unrelated: 0.5,
            unrelated_within_file: true,
        };
        let unrelated = |sampling: &Sampling| -> Vec<Example> {
            epoch_examples(&rows, sampling, 1, 0)
                .into_iter()
                .filter(|e| e.text_row != e.target_row)
                .collect()
        };
        let within = unrelated(&sampling);
        assert_eq!(within.len(), 40);
        for e in &within {
            assert_eq!(e.stance, Stance::None);
            assert_eq!(rows[e.text_row].source, rows[e.target_row].source);
            assert_ne!(rows[e.text_row].target, rows[e.target_row].target);
        }
        // From any file, about half cross files.
        let any = unrelated(&Sampling {
            unrelated_within_file: false,
            ..sampling
        });
        let crossing = any
            .iter()
            .filter(|e| rows[e.text_row].source != rows[e.target_row].source)
            .count();
        assert!(crossing > 10, "{crossing} of {} cross files", any.len());
    }

    #[test]
    fn batches_keep_every_example_once() {
        let examples: Vec<Example> = (0..103)
            .map(|i| Example {
                id: i.to_string(),
                text_row: i,
                target_row: i,
                stance: Stance::None,
            })
            .collect();
        let lengths: Vec<usize> = (0..103).map(|i| (i * 37) % 101).collect();
        let plan = batches(examples, &lengths, 16, 3);
        let mut seen: Vec<usize> = plan.iter().flatten().map(|e| e.text_row).collect();
        seen.sort();
        assert_eq!(seen, (0..103).collect::<Vec<_>>());
        assert!(plan.iter().all(|b| b.len() <= 16));
    }
}
