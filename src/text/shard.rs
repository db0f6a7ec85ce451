//! `--shard K/N`: which inputs one of N cooperating runs takes.
//!
//! The rule is stable: a key's shard is the first eight bytes of its SHA-256, read as a
//! little-endian integer, modulo N. It depends on nothing but the key, so it is the same on every
//! machine, in every run and whatever the other inputs are. A text document (.txt, .md) is one
//! key, its name as given on the command line, and goes to one shard whole; each JSON Lines row is
//! its own key, its `id` (or `FILE#LINE` when it has none). So N runs given the same inputs, with
//! K = 0 .. N-1, classify every paragraph exactly once between them.

use std::str::FromStr;

use sha2::{Digest, Sha256};

/// One shard of N, numbered from 0 (as `$SLURM_ARRAY_TASK_ID` with `--array=0-N-1` and
/// Kubernetes' `$JOB_COMPLETION_INDEX` count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// Whether this shard takes the input named `key`.
    pub fn owns(&self, key: &str) -> bool {
        self.count == 1 || shard_of(key, self.count) == self.index
    }
}

/// The shard, of `count`, that takes `key`.
pub fn shard_of(key: &str, count: u64) -> u64 {
    let digest = Sha256::digest(key.as_bytes());
    let first = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"));
    first % count
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let usage = || {
            format!(
                "'{text}' is not a shard: write K/N with 0 <= K < N, e.g. 0/4 (shards are numbered \
                 from 0, like $SLURM_ARRAY_TASK_ID with --array=0-3 and $JOB_COMPLETION_INDEX)"
            )
        };
        let (index, count) = text.split_once('/').ok_or_else(usage)?;
        let index: u64 = index.trim().parse().map_err(|_| usage())?;
        let count: u64 = count.trim().parse().map_err(|_| usage())?;
        if count == 0 || index >= count {
            return Err(usage());
        }
        Ok(Self { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_shards_are_refused() {
        for bad in ["3/2", "0/0", "2/2", "1", "a/3", "-1/3", "1/-3", "", "1/3/4"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        assert_eq!(
            "2/5".parse::<Shard>().unwrap(),
            Shard { index: 2, count: 5 }
        );
    }

    #[test]
    fn every_key_goes_to_exactly_one_shard_and_the_rule_is_fixed() {
        let count = 3;
        for i in 0..500 {
            let key = format!("row-{i}");
            let owners = (0..count)
                .filter(|&k| Shard { index: k, count }.owns(&key))
                .count();
            assert_eq!(owners, 1, "{key}");
        }
        // The rule is part of the contract: these values must never change.
        let fixed: Vec<u64> = ["a", "b", "report.txt", "tweets.jsonl#1"]
            .iter()
            .map(|k| shard_of(k, 7))
            .collect();
        // Python: [int.from_bytes(hashlib.sha256(k.encode()).digest()[:8], "little") % 7 ...]
        assert_eq!(fixed, [1, 4, 2, 2]);
    }
}
