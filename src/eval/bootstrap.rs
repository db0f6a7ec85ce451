//! Confidence intervals by bootstrap: resample the evaluated paragraphs with replacement, recompute
//! each score, and take the percentiles of the resampled scores.
//!
//! What is resampled is a *cluster* of rows: every row of one paragraph goes in or out together.
//! For themes a paragraph is one row; for stances it is one row per target, and those rows are not
//! independent (the same text, read once by the model), so resampling them one by one would make
//! the intervals too narrow. Within one target each paragraph is again a single row.
//!
//! The generator is SplitMix64, written out here, so an interval depends only on the rows and the
//! seed: the same on every platform and in every build.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// The seed used when none is given: reports are repeatable by default.
pub const DEFAULT_SEED: u64 = 2016;

/// The number of resamples used when none is given.
pub const DEFAULT_RESAMPLES: usize = 1000;

/// How confidence intervals are computed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bootstrap {
    /// The number of resamples; 0 turns intervals off (they are reported as `null`).
    pub resamples: usize,
    pub seed: u64,
    /// The coverage of the interval, 0.95 for a 95% interval.
    pub confidence: f64,
}

impl Default for Bootstrap {
    fn default() -> Self {
        Bootstrap {
            resamples: DEFAULT_RESAMPLES,
            seed: DEFAULT_SEED,
            confidence: 0.95,
        }
    }
}

impl Bootstrap {
    #[must_use]
    pub fn resamples(mut self, resamples: usize) -> Self {
        self.resamples = resamples;
        self
    }

    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

/// A confidence interval, written in JSON as `[low, high]`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "[f64; 2]", into = "[f64; 2]")]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

impl Interval {
    pub fn contains(&self, value: f64) -> bool {
        self.low <= value && value <= self.high
    }
}

impl From<[f64; 2]> for Interval {
    fn from([low, high]: [f64; 2]) -> Self {
        Interval { low, high }
    }
}

impl From<Interval> for [f64; 2] {
    fn from(interval: Interval) -> Self {
        [interval.low, interval.high]
    }
}

/// SplitMix64 (Steele, Lea and Flood 2014): a tiny, well-mixed generator, enough to pick
/// resamples. Not for anything secret.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` by multiply-and-shift (Lemire); its bias, below `bound / 2^64`, is
    /// far under anything a bootstrap could notice.
    ///
    /// # Panics
    /// If `bound` is 0: there is nothing to pick, so that is a bug.
    pub fn below(&mut self, bound: usize) -> usize {
        assert!(bound > 0, "cannot pick from nothing; this is a bug");
        ((u128::from(self.next_u64()) * bound as u128) >> 64) as usize
    }

    /// Shuffles `items` in place (Fisher-Yates, last position first).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// Groups row indices by paragraph id, in first-seen order: each group is one resampling unit.
pub(crate) fn clusters_by_id<'a>(ids: impl IntoIterator<Item = &'a str>) -> Vec<Vec<usize>> {
    let mut position: HashMap<&str, usize> = HashMap::new();
    let mut clusters: Vec<Vec<usize>> = Vec::new();
    for (row, id) in ids.into_iter().enumerate() {
        let next = clusters.len();
        let cluster = *position.entry(id).or_insert(next);
        if cluster == clusters.len() {
            clusters.push(Vec::new());
        }
        clusters[cluster].push(row);
    }
    clusters
}

/// Draws `config.resamples` resamples of the clusters and evaluates `statistics` on the rows of
/// each; returns, for each of the `K` statistics, the values it took (resamples where it was
/// undefined are skipped). The same config always draws the same resamples, so statistics
/// computed in one call, or in two calls with the same config, see the same resamples.
pub(crate) fn resample<const K: usize>(
    clusters: &[Vec<usize>],
    config: &Bootstrap,
    mut statistics: impl FnMut(&[usize]) -> [Option<f64>; K],
) -> [Vec<f64>; K] {
    let mut values: [Vec<f64>; K] = std::array::from_fn(|_| Vec::with_capacity(config.resamples));
    if clusters.is_empty() {
        return values;
    }
    let mut random = SplitMix64::new(config.seed);
    let mut rows = Vec::new();
    for _ in 0..config.resamples {
        rows.clear();
        for _ in 0..clusters.len() {
            rows.extend_from_slice(&clusters[random.below(clusters.len())]);
        }
        for (k, value) in statistics(&rows).into_iter().enumerate() {
            if let Some(value) = value {
                values[k].push(value);
            }
        }
    }
    values
}

/// The percentile interval of resampled values at the given confidence; `None` without values.
/// Quantiles interpolate linearly between order statistics (numpy's default, Hyndman-Fan type 7).
pub fn percentile_interval(values: &[f64], confidence: f64) -> Option<Interval> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    Some(Interval {
        low: quantile(&sorted, tail),
        high: quantile(&sorted, 1.0 - tail),
    })
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let position = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    let fraction = position - below as f64;
    sorted[below] + fraction * (sorted[above] - sorted[below])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // The first outputs for seed 1234567 from the reference C implementation.
        let mut random = SplitMix64::new(1_234_567);
        assert_eq!(random.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(random.next_u64(), 3_203_168_211_198_807_973);
        assert_eq!(random.next_u64(), 9_817_491_932_198_370_423);
    }

    #[test]
    fn below_stays_in_range_and_reaches_every_value() {
        let mut random = SplitMix64::new(7);
        let mut seen = [0usize; 5];
        for _ in 0..1000 {
            seen[random.below(5)] += 1;
        }
        assert!(seen.iter().all(|&count| count > 150), "{seen:?}");
    }

    #[test]
    fn clusters_group_rows_of_one_paragraph_in_first_seen_order() {
        let clusters = clusters_by_id(["p2", "p1", "p2", "p3", "p1"]);
        assert_eq!(clusters, vec![vec![0, 2], vec![1, 4], vec![3]]);
    }

    #[test]
    fn percentile_interval_interpolates() {
        let values: Vec<f64> = (0..=100).map(f64::from).collect();
        let interval = percentile_interval(&values, 0.95).unwrap();
        assert!((interval.low - 2.5).abs() < 1e-12);
        assert!((interval.high - 97.5).abs() < 1e-12);
        assert_eq!(percentile_interval(&[], 0.95), None);
        assert_eq!(
            percentile_interval(&[0.4], 0.95),
            Some(Interval {
                low: 0.4,
                high: 0.4
            })
        );
    }

    #[test]
    fn resampling_is_repeatable_and_skips_undefined_values() {
        let clusters: Vec<Vec<usize>> = (0..20).map(|i| vec![i]).collect();
        let config = Bootstrap::default().resamples(50);
        let mean = |rows: &[usize]| {
            let mean = rows.iter().sum::<usize>() as f64 / rows.len() as f64;
            [Some(mean), (mean > 9.5).then_some(mean)]
        };
        let first = resample(&clusters, &config, mean);
        let second = resample(&clusters, &config, mean);
        assert_eq!(first, second);
        assert_eq!(first[0].len(), 50);
        assert!(first[1].len() < 50 && first[1].iter().all(|&m| m > 9.5));
        let other = resample(&clusters, &config.seed(1), mean);
        assert_ne!(first[0], other[0]);
    }

    #[test]
    fn intervals_serialise_as_pairs() {
        let interval = Interval {
            low: 0.25,
            high: 0.75,
        };
        assert_eq!(serde_json::to_string(&interval).unwrap(), "[0.25,0.75]");
        let parsed: Interval = serde_json::from_str("[0.25,0.75]").unwrap();
        assert_eq!(parsed, interval);
    }
}
