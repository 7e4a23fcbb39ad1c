//! Choosing which candidates to label: the most uncertain first, and mutually diverse.

/// Indices of at most `n` candidates: the pool is the `pool_factor * n` candidates of
/// highest `score` (extrapolation grade); from it, farthest-point sampling on `features`
/// (e.g. mean descriptors per structure) starting from the highest score, so that
/// near-duplicates (consecutive MD frames) are not all chosen.
pub fn select_diverse(scores: &[f64], features: &[Vec<f64>], n: usize, pool_factor: usize) -> Vec<usize> {
    assert_eq!(scores.len(), features.len());
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order.truncate((n * pool_factor.max(1)).min(order.len()));
    if order.is_empty() || n == 0 {
        return Vec::new();
    }
    let dist2 = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>();
    let mut chosen = vec![order[0]];
    let mut min_d: Vec<f64> = order.iter().map(|&i| dist2(&features[i], &features[order[0]])).collect();
    while chosen.len() < n.min(order.len()) {
        // The farthest from everything chosen; ties go to the higher score (earlier in `order`).
        let (k, _) = min_d
            .iter()
            .enumerate()
            .filter(|(k, _)| !chosen.contains(&order[*k]))
            .fold((usize::MAX, f64::NEG_INFINITY), |best, (k, &d)| if d > best.1 { (k, d) } else { best });
        if k == usize::MAX {
            break;
        }
        let pick = order[k];
        chosen.push(pick);
        for (j, &i) in order.iter().enumerate() {
            min_d[j] = min_d[j].min(dist2(&features[i], &features[pick]));
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_uncertain_first_then_diverse() {
        // Three clusters of near-duplicates; the most uncertain point is in cluster A.
        let features =
            vec![vec![0.0, 0.0], vec![0.01, 0.0], vec![0.0, 0.01], vec![5.0, 5.0], vec![5.01, 5.0], vec![-5.0, 5.0]];
        let scores = vec![9.0, 8.9, 8.8, 3.0, 2.9, 2.5];
        let picked = select_diverse(&scores, &features, 3, 3);
        assert_eq!(picked[0], 0);
        let mut rest = picked[1..].to_vec();
        rest.sort();
        // One from each other cluster (3 and 4 are duplicates), none from the first.
        assert!(rest == vec![3, 5] || rest == vec![4, 5], "{picked:?}");
        assert!(select_diverse(&scores, &features, 0, 3).is_empty());
        assert_eq!(select_diverse(&scores, &features, 10, 3).len(), 6);
    }

    #[test]
    fn the_pool_keeps_low_scores_out() {
        let features: Vec<Vec<f64>> = (0..10).map(|i| vec![i as f64]).collect();
        let scores: Vec<f64> = (0..10).map(|i| i as f64).collect();
        let picked = select_diverse(&scores, &features, 2, 2);
        assert!(picked.iter().all(|&i| i >= 6), "{picked:?}");
        assert_eq!(picked[0], 9);
    }
}
