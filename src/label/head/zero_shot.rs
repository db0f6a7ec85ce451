//! Zero-shot heads: labels from similarities to prototypes built out of the schema's own words.
//!
//! Theme: each theme's prototype is the normalised mean of the embeddings of its description,
//! its examples and its id read as words, minus the mean of all prototypes (the direction every
//! theme of a domain shares). A paragraph's cosine similarities to the prototypes (after the same
//! centring)
//! become a distribution through a softmax with temperature T. T is fitted per schema by
//! leave-one-out on the schema's own examples: each example is scored against the prototypes
//! built without it, and T is the value (on a log grid) that maximises the likelihood of the
//! example's own theme. That gives scores that mean something (calibrated on what the schema
//! author said each theme looks like) without touching any evaluation data. Examples are cleaner
//! than real paragraphs, so the scores lean overconfident; the evaluation report shows by how much.
//!
//! Stance: a sentence encoder knows topics well and negation poorly, so the head decides in two
//! steps. Whether the paragraph takes a position at all comes from its similarity to the target
//! (relevance r). Which side comes from comparing it with a favor prototype (the claim, stated
//! plainly, plus the schema's `favor` statements) and an against prototype (the claim negated,
//! plus `against` statements): d = cos(p, favor) - cos(p, against). Then
//! P(position) = sigmoid(a (r - t)), P(favor | position) = sigmoid(b d), and
//! [favor, against, none] = [P(pos) P(f), P(pos) (1 - P(f)), 1 - P(pos)].

use super::{dot, sigmoid, softmax, PreparedTarget, StanceHead, ThemeHead};
use crate::encode::embed::{normalize, Embedder};
use crate::error::Result;
use crate::label::schema::{Schema, Target};

/// Temperature used when a schema has too few examples to fit one.
pub const DEFAULT_TEMPERATURE: f32 = 0.05;

pub struct ZeroShotTheme {
    labels: Vec<String>,
    prototypes: Vec<Vec<f32>>,
    center: Vec<f32>,
    temperature: f32,
    fitted: bool,
}

impl ZeroShotTheme {
    /// Embeds the schema's themes and fits the temperature.
    pub fn build(embedder: &Embedder, schema: &Schema) -> Result<Self> {
        let mut texts_per_theme: Vec<Vec<String>> = Vec::new();
        for theme in &schema.themes {
            let mut texts = vec![theme.description.clone()];
            texts.extend(theme.examples.iter().cloned());
            texts.push(theme.id.replace(['-', '_'], " "));
            texts_per_theme.push(texts);
        }
        let flat: Vec<&str> = texts_per_theme
            .iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let mut vectors = embedder.embed_queries(&flat)?.into_iter().map(|e| e.vector);
        let per_theme: Vec<Vec<Vec<f32>>> = texts_per_theme
            .iter()
            .map(|texts| vectors.by_ref().take(texts.len()).collect())
            .collect();
        let raw: Vec<Vec<f32>> = per_theme.iter().map(|v| mean_normalized(v)).collect();
        // Every theme of a domain shares the domain's direction (here: China, Russia, geopolitics);
        // removing the prototypes' mean compares paragraphs on what tells the themes apart.
        let center = mean(&raw);
        let prototypes: Vec<Vec<f32>> = raw.iter().map(|p| centered(p, &center)).collect();
        let (temperature, fitted) = match fit_temperature(schema, &per_theme, &prototypes, &center)
        {
            Some(t) => (t, true),
            None => (DEFAULT_TEMPERATURE, false),
        };
        Ok(Self {
            labels: schema.theme_ids(),
            prototypes,
            center,
            temperature,
            fitted,
        })
    }

    pub fn temperature(&self) -> f32 {
        self.temperature
    }
}

impl ThemeHead for ZeroShotTheme {
    fn labels(&self) -> &[String] {
        &self.labels
    }

    fn predict(&self, paragraphs: &[&[f32]]) -> Result<Vec<Vec<f32>>> {
        Ok(paragraphs
            .iter()
            .map(|p| {
                let p = centered(p, &self.center);
                let logits: Vec<f32> = self
                    .prototypes
                    .iter()
                    .map(|proto| dot(&p, proto) / self.temperature)
                    .collect();
                softmax(&logits)
            })
            .collect())
    }

    fn describe(&self) -> String {
        let how = if self.fitted {
            "fitted on the schema's examples"
        } else {
            "default"
        };
        format!("zero-shot (temperature {:.4}, {how})", self.temperature)
    }
}

/// The plain mean of vectors.
fn mean(vectors: &[Vec<f32>]) -> Vec<f32> {
    let mut mean = vec![0.0f32; vectors.first().map_or(0, Vec::len)];
    for v in vectors {
        for (m, x) in mean.iter_mut().zip(v) {
            *m += x / vectors.len() as f32;
        }
    }
    mean
}

/// `vector - center`, normalised.
fn centered(vector: &[f32], center: &[f32]) -> Vec<f32> {
    let mut out: Vec<f32> = vector.iter().zip(center).map(|(v, c)| v - c).collect();
    normalize(&mut out);
    out
}

/// The normalised mean of normalised vectors.
fn mean_normalized(vectors: &[Vec<f32>]) -> Vec<f32> {
    let mut mean = vec![0.0f32; vectors.first().map_or(0, Vec::len)];
    for v in vectors {
        for (m, x) in mean.iter_mut().zip(v) {
            *m += x;
        }
    }
    normalize(&mut mean);
    mean
}

/// Leave-one-out maximum likelihood of the temperature over the schema's examples. `per_theme`
/// holds each theme's vectors: description first, examples, id last.
fn fit_temperature(
    schema: &Schema,
    per_theme: &[Vec<Vec<f32>>],
    prototypes: &[Vec<f32>],
    center: &[f32],
) -> Option<f32> {
    // Similarities of each held-out example to every prototype (its own rebuilt without it).
    let mut cases: Vec<(usize, Vec<f32>)> = Vec::new();
    for (k, theme) in schema.themes.iter().enumerate() {
        for e in 0..theme.examples.len() {
            let held_out = &centered(&per_theme[k][1 + e], center);
            let rest: Vec<Vec<f32>> = per_theme[k]
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != 1 + e)
                .map(|(_, v)| v.clone())
                .collect();
            let own = centered(&mean_normalized(&rest), center);
            let similarities = prototypes
                .iter()
                .enumerate()
                .map(|(j, proto)| {
                    if j == k {
                        dot(held_out, &own)
                    } else {
                        dot(held_out, proto)
                    }
                })
                .collect();
            cases.push((k, similarities));
        }
    }
    if cases.len() < 4 {
        return None;
    }
    let nll = |t: f32| -> f64 {
        cases
            .iter()
            .map(|(k, s)| {
                let logits: Vec<f32> = s.iter().map(|x| x / t).collect();
                -f64::from(softmax(&logits)[*k].max(1e-12)).ln()
            })
            .sum()
    };
    // A log grid from 0.005 to 1.0.
    (0..=230)
        .map(|i| 0.005f32 * 10f32.powf(i as f32 / 100.0))
        .map(|t| (t, nll(t)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(t, _)| t)
}

/// Parameters of the zero-shot stance head (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StanceParameters {
    /// Slope of P(position) in the relevance r.
    pub relevance_slope: f64,
    /// Relevance at which P(position) = 0.5.
    pub relevance_threshold: f64,
    /// Slope of P(favor | position) in d.
    pub polarity_slope: f64,
    /// Value of d at which favor and against are equally likely: the favor prototype (the claim
    /// as stated) sits closer to any on-topic text than its negation, so d is biased upward.
    pub polarity_offset: f64,
}

/// Fitted by maximum likelihood on the SemEval-2016 training split (2,620 tweets, 5 targets)
/// with all-MiniLM-L6-v2: `cargo run --release --example fit_zero_shot_stance --
/// ../shared/data/semeval2016-train.jsonl` (mean log loss 0.901, against 1.923 before fitting
/// and 1.099 for a uniform guess). The small polarity slope is the measurement that a sentence
/// encoder barely separates a claim from its negation.
impl Default for StanceParameters {
    fn default() -> Self {
        Self {
            relevance_slope: 12.35,
            relevance_threshold: 0.1317,
            polarity_slope: 9.047,
            polarity_offset: 0.08826,
        }
    }
}

pub struct ZeroShotStance {
    parameters: StanceParameters,
}

impl ZeroShotStance {
    pub fn new(parameters: StanceParameters) -> Self {
        Self { parameters }
    }

    /// The two numbers the decision rests on: relevance r and polarity d.
    pub fn features(paragraph: &[f32], target: &PreparedTarget) -> (f64, f64) {
        let relevance = f64::from(dot(paragraph, &target.vectors[0]));
        let polarity = f64::from(dot(paragraph, &target.vectors[1]))
            - f64::from(dot(paragraph, &target.vectors[2]));
        (relevance, polarity)
    }

    /// [favor, against, none] from the two features.
    pub fn probabilities(parameters: &StanceParameters, relevance: f64, polarity: f64) -> [f32; 3] {
        let p = parameters;
        let position = sigmoid(p.relevance_slope * (relevance - p.relevance_threshold));
        let favor = sigmoid(p.polarity_slope * (polarity - p.polarity_offset));
        [
            (position * favor) as f32,
            (position * (1.0 - favor)) as f32,
            (1.0 - position) as f32,
        ]
    }
}

impl Default for ZeroShotStance {
    fn default() -> Self {
        Self::new(StanceParameters::default())
    }
}

/// Auxiliary verbs after which "not" negates a statement.
const AUXILIARIES: &[&str] = &[
    "is", "are", "was", "were", "can", "will", "should", "must", "would", "could", "may", "might",
    "has", "have", "had", "does", "do", "did",
];

/// Statements for and against a target. A claim ("X is Y") is negated by its first auxiliary;
/// a topic ("Legalization of abortion") gets support and opposition phrasings.
pub fn stance_statements(target: &Target) -> (Vec<String>, Vec<String>) {
    let text = target.text.trim().trim_end_matches('.').to_string();
    let words: Vec<&str> = text.split_whitespace().collect();
    let auxiliary = words
        .iter()
        .position(|w| AUXILIARIES.contains(&w.to_lowercase().as_str()));
    let (mut favor, mut against) = match auxiliary {
        Some(i) => {
            let negated_word = match words[i].to_lowercase().as_str() {
                "can" => "cannot".to_string(),
                "will" => "will not".to_string(),
                w => format!("{w} not"),
            };
            let mut negated: Vec<String> = words.iter().map(|w| w.to_string()).collect();
            negated[i] = negated_word;
            let lowered = lower_first(&text);
            (
                vec![format!("{text}."), format!("It is true that {lowered}.")],
                vec![
                    format!("{}.", negated.join(" ")),
                    format!("It is false that {lowered}."),
                ],
            )
        }
        None => (
            vec![
                format!("I support {text}."),
                format!("{text} is good and right."),
            ],
            vec![
                format!("I oppose {text}."),
                format!("{text} is bad and wrong."),
            ],
        ),
    };
    favor.extend(target.favor.iter().cloned());
    against.extend(target.against.iter().cloned());
    (favor, against)
}

fn lower_first(text: &str) -> String {
    // Keep acronyms and names ("NATO", "China") as they are.
    let first = text.split_whitespace().next().unwrap_or("");
    let is_name = first.chars().skip(1).any(char::is_uppercase)
        || ["China", "Russia", "Beijing", "Moscow"].contains(&first)
        || first.contains('-');
    if is_name {
        return text.to_string();
    }
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

impl StanceHead for ZeroShotStance {
    fn prepare(&self, embedder: &Embedder, target: &Target) -> Result<PreparedTarget> {
        let (favor, against) = stance_statements(target);
        let mut texts: Vec<&str> = vec![target.text.as_str()];
        texts.extend(favor.iter().map(String::as_str));
        texts.extend(against.iter().map(String::as_str));
        let vectors: Vec<Vec<f32>> = embedder
            .embed_queries(&texts)?
            .into_iter()
            .map(|e| e.vector)
            .collect();
        let favor_proto = mean_normalized(&vectors[1..1 + favor.len()]);
        let against_proto = mean_normalized(&vectors[1 + favor.len()..]);
        Ok(PreparedTarget {
            id: target.id.clone(),
            text: target.text.clone(),
            vectors: vec![vectors[0].clone(), favor_proto, against_proto],
            ..PreparedTarget::default()
        })
    }

    fn predict(&self, paragraphs: &[&[f32]], target: &PreparedTarget) -> Result<Vec<[f32; 3]>> {
        Ok(paragraphs
            .iter()
            .map(|v| {
                let (relevance, polarity) = Self::features(v, target);
                Self::probabilities(&self.parameters, relevance, polarity)
            })
            .collect())
    }

    fn describe(&self) -> String {
        let p = self.parameters;
        format!(
            "zero-shot (relevance threshold {}, slope {}; polarity offset {}, slope {})",
            p.relevance_threshold, p.relevance_slope, p.polarity_offset, p.polarity_slope
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_negated_at_their_auxiliary() {
        let (favor, against) = stance_statements(&Target::free(
            "China can be leveraged to broker peace in Ukraine",
        ));
        assert_eq!(
            favor[0],
            "China can be leveraged to broker peace in Ukraine."
        );
        assert_eq!(
            against[0],
            "China cannot be leveraged to broker peace in Ukraine."
        );
        assert_eq!(
            against[1],
            "It is false that China can be leveraged to broker peace in Ukraine."
        );
        let (_, against) = stance_statements(&Target::free(
            "The Sino-Russian alignment is strong and durable",
        ));
        assert_eq!(
            against[0],
            "The Sino-Russian alignment is not strong and durable."
        );
    }

    #[test]
    fn topics_get_support_and_opposition() {
        let (favor, against) = stance_statements(&Target::free("Legalization of Abortion"));
        assert_eq!(favor[0], "I support Legalization of Abortion.");
        assert_eq!(against[0], "I oppose Legalization of Abortion.");
    }
}
