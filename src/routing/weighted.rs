//! Weighted choice among a route's backends: smooth weighted round-robin (nginx's algorithm).
//!
//! Why this and not power of two choices: it is deterministic, so every window of `sum of
//! weights` picks gives each backend exactly its share (an operator can check the split with a
//! counter, and a test can pin it), and it interleaves picks (3:1 gives a a b a, not a a a b)
//! so a heavy backend never receives a burst. It does not look at in-flight counts; passive
//! health (`health`) and failover deal with a backend that is slow or failing. Only
//! backends admitted at the moment take part, as nginx skips its down peers.

use std::sync::Mutex;

/// The smooth weighted round-robin state of one route.
#[derive(Debug)]
pub struct SmoothWeighted {
    weights: Vec<i64>,
    current: Mutex<Vec<i64>>,
}

impl SmoothWeighted {
    /// A chooser over backends with these weights (each at least 1).
    pub fn new(weights: impl IntoIterator<Item = u32>) -> Self {
        let weights: Vec<i64> = weights.into_iter().map(i64::from).collect();
        let current = Mutex::new(vec![0; weights.len()]);
        SmoothWeighted { weights, current }
    }

    /// Picks one index among those `eligible` says yes to, or `None` when none is.
    ///
    /// Each eligible entry gains its weight; the largest wins and loses the eligible total.
    pub fn pick(&self, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        if self.weights.len() == 1 {
            // The one-backend route: nothing to balance, no lock to take.
            return eligible(0).then_some(0);
        }
        // A poisoned lock only means a panic elsewhere mid-update: the numbers are still usable.
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut total = 0;
        let mut best: Option<usize> = None;
        for (i, weight) in self.weights.iter().enumerate() {
            if !eligible(i) {
                continue;
            }
            current[i] += weight;
            total += weight;
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        if let Some(b) = best {
            current[b] -= total;
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cycle_gives_each_backend_exactly_its_share_interleaved() {
        let w = SmoothWeighted::new([3, 1, 1]);
        let picks: Vec<usize> = (0..10).map(|_| w.pick(|_| true).unwrap()).collect();
        // nginx's documented sequence for 5:1:1 generalises: the heavy one never runs 3 in a row.
        assert_eq!(picks, [0, 1, 0, 2, 0, 0, 1, 0, 2, 0]);
        let mut counts = [0; 3];
        for _ in 0..5000 {
            counts[w.pick(|_| true).unwrap()] += 1;
        }
        assert_eq!(counts, [3000, 1000, 1000]);
    }

    #[test]
    fn ineligible_backends_are_skipped_and_the_others_keep_their_ratio() {
        let w = SmoothWeighted::new([3, 1, 2]);
        let mut counts = [0; 3];
        for _ in 0..400 {
            counts[w.pick(|i| i != 2).unwrap()] += 1;
        }
        assert_eq!(counts, [300, 100, 0]);
        assert_eq!(w.pick(|_| false), None);
    }
}
