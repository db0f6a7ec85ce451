//! Batch planning: a pure function over sequence lengths.
//!
//! Sequences are sorted by length (longest first, ties by position, so the plan is deterministic)
//! and a batch is filled until `rows x longest` would pass the token budget. Sorting keeps padding
//! small; the original indices travel with the plan so results can be put back in input order.

/// Plans batches for sequences of the given lengths. Every index appears in exactly one batch.
/// A sequence longer than the budget gets a batch of its own.
pub fn plan(lengths: &[usize], token_budget: usize, max_rows: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]).then(a.cmp(&b)));
    let max_rows = max_rows.max(1);
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut longest = 0;
    for index in order {
        let length = lengths[index];
        let would_be = (current.len() + 1) * longest.max(length);
        if !current.is_empty() && (would_be > token_budget || current.len() >= max_rows) {
            batches.push(std::mem::take(&mut current));
            longest = 0;
        }
        longest = longest.max(length);
        current.push(index);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// Padded size of a plan (rows x longest, summed), for padding reports.
pub fn padded_tokens(lengths: &[usize], batches: &[Vec<usize>]) -> usize {
    batches
        .iter()
        .map(|b| b.len() * b.iter().map(|&i| lengths[i]).max().unwrap_or(0))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_index_once_and_budget_respected() {
        let lengths = [5, 300, 12, 12, 80, 3, 512, 40, 40, 41];
        let batches = plan(&lengths, 256, 64);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
        for batch in &batches {
            let longest = batch.iter().map(|&i| lengths[i]).max().unwrap();
            assert!(
                batch.len() == 1 || batch.len() * longest <= 256,
                "{batch:?}"
            );
        }
    }

    #[test]
    fn longest_first_and_ties_in_input_order() {
        let batches = plan(&[10, 20, 10, 20], 1000, 2);
        assert_eq!(batches, vec![vec![1, 3], vec![0, 2]]);
    }

    #[test]
    fn max_rows_caps_batches() {
        let batches = plan(&[1; 10], 1000, 4);
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
    }

    #[test]
    fn empty_input_gives_no_batches() {
        assert!(plan(&[], 100, 8).is_empty());
    }
}
