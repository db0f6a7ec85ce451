//! Fits the zero-shot stance head's four parameters by maximum likelihood on a labelled stance
//! set (the SemEval-2016 *training* split), and prints them. The defaults in
//! `src/head/zero_shot.rs` were produced by:
//!
//! ```sh
//! cargo run --release --example fit_zero_shot_stance -- ../shared/data/semeval2016-train.jsonl
//! ```
//!
//! Only the relevance threshold and slope and the polarity offset and slope are learned; the
//! prototypes still come from the target text alone, so the head stays zero-shot for new targets.

use candle_core::{DType, Device};
use stancer::encode::embed::Embedder;
use stancer::encode::model::fetch::ModelSpec;
use stancer::label::head::zero_shot::{StanceParameters, ZeroShotStance};
use stancer::label::head::StanceHead;
use stancer::label::schema::Target;
use stancer::label::stance::Stance;

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .expect("usage: fit_zero_shot_stance STANCE.jsonl");
    let rows: Vec<(String, String, Stance)> = std::fs::read_to_string(&path)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            (
                v["text"].as_str().unwrap().to_string(),
                v["target"].as_str().unwrap().to_string(),
                v["stance"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    let resolved = ModelSpec::parse(None)?.resolve(&mut |l| eprintln!("{l}"))?;
    let embedder = Embedder::load(&resolved, &Device::Cpu, DType::F32)?;
    let head = ZeroShotStance::default();
    let texts: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let vectors = embedder.embed_passages(&texts)?;
    let mut targets = std::collections::HashMap::new();
    let mut features = Vec::new();
    for ((_, target, stance), v) in rows.iter().zip(&vectors) {
        if !targets.contains_key(target) {
            targets.insert(
                target.clone(),
                head.prepare(&embedder, &Target::free(target))?,
            );
        }
        let (r, d) = ZeroShotStance::features(&v.vector, &targets[target]);
        features.push((r, d, *stance));
    }
    let loss = |p: &StanceParameters| -> f64 {
        features
            .iter()
            .map(|(r, d, s)| {
                let probabilities = ZeroShotStance::probabilities(p, *r, *d);
                -f64::from(probabilities[s.index()].max(1e-9)).ln()
            })
            .sum::<f64>()
            / features.len() as f64
    };
    // Coordinate search on a shrinking step: four parameters, smooth loss, no dependency needed.
    let mut best = StanceParameters::default();
    let mut steps = [10.0, 0.2, 40.0, 0.1];
    for _ in 0..120 {
        for (k, step) in steps.iter().enumerate() {
            for sign in [-1.0, 1.0] {
                let mut candidate = best;
                let field = match k {
                    0 => &mut candidate.relevance_slope,
                    1 => &mut candidate.relevance_threshold,
                    2 => &mut candidate.polarity_slope,
                    _ => &mut candidate.polarity_offset,
                };
                *field += sign * step;
                if loss(&candidate) < loss(&best) {
                    best = candidate;
                }
            }
        }
        steps.iter_mut().for_each(|s| *s *= 0.9);
    }
    println!("rows: {}", features.len());
    println!(
        "loss at defaults: {:.4}",
        loss(&StanceParameters::default())
    );
    println!("loss fitted: {:.4}", loss(&best));
    println!("{best:#?}");
    Ok(())
}
