//! Farthest-point selection (FPS) on per-structure descriptor vectors.
//!
//! Each pick is the candidate whose Euclidean distance to the nearest already chosen
//! point (earlier picks and the `labelled` set) is largest; ties go to the smallest
//! index. Without a labelled set the first pick is the candidate farthest from the
//! centroid. The distance to the nearest chosen point is cached per candidate and
//! updated with each new pick only, so `k` picks from `n` candidates cost
//! O(n·(k + m)·dim) for `m` labelled points, split over threads. Deterministic: the
//! result does not depend on the number of threads.
//!
//! A candidate at distance zero from a chosen point (a duplicate of a pick or of a
//! labelled structure) is never picked: the selection stops early instead.

/// Why a selection is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectError(pub String);

#[inline]
fn dist2(a: &[f32], b: &[f32]) -> f32 {
    // Eight accumulators so that the compiler can vectorise.
    let mut s = [0.0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        for l in 0..8 {
            let d = a[c * 8 + l] - b[c * 8 + l];
            s[l] += d * d;
        }
    }
    let mut total: f32 = s.iter().sum();
    for k in chunks * 8..a.len() {
        let d = a[k] - b[k];
        total += d * d;
    }
    total
}

/// Select up to `k` rows of `candidates` (`n x dim`, row-major) by farthest-point
/// selection, seeded with the rows of `labelled` (`m x dim`). Returns the picked row
/// indices in pick order.
pub fn select_fps(
    candidates: &[f32],
    dim: usize,
    k: usize,
    labelled: &[f32],
    threads: usize,
) -> Result<Vec<usize>, SelectError> {
    if dim == 0 || candidates.len() % dim != 0 || labelled.len() % dim != 0 {
        return Err(SelectError(format!(
            "descriptor arrays of {} and {} values are not rows of {dim}",
            candidates.len(),
            labelled.len()
        )));
    }
    if candidates.iter().chain(labelled).any(|x| !x.is_finite()) {
        return Err(SelectError("a descriptor is not finite".into()));
    }
    let n = candidates.len() / dim;
    let k = k.min(n);
    if k == 0 {
        return Ok(Vec::new());
    }
    let threads = threads.clamp(1, 64).min(n.div_ceil(1024).max(1));
    let chunk = n.div_ceil(threads);
    let row = |i: usize| &candidates[i * dim..(i + 1) * dim];
    let mut min_d2 = vec![f32::INFINITY; n];
    // Update the cached distances with `point` over all chunks; return the argmax
    // (largest distance, smallest index) as (index, distance).
    let update = |min_d2: &mut [f32], point: &[f32]| -> (usize, f32) {
        let best = std::thread::scope(|scope| {
            let handles: Vec<_> = min_d2
                .chunks_mut(chunk)
                .enumerate()
                .map(|(c, part)| {
                    scope.spawn(move || {
                        let mut best = (usize::MAX, -1.0f32);
                        for (o, m) in part.iter_mut().enumerate() {
                            let i = c * chunk + o;
                            let d = dist2(&candidates[i * dim..(i + 1) * dim], point);
                            if d < *m {
                                *m = d;
                            }
                            if *m > best.1 {
                                best = (i, *m);
                            }
                        }
                        best
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("an FPS worker panicked")).collect::<Vec<_>>()
        });
        // Chunks are in index order, so the first strict maximum is the smallest index.
        best.into_iter().fold((usize::MAX, -1.0f32), |acc, b| if b.1 > acc.1 { b } else { acc })
    };
    let mut picks = Vec::with_capacity(k);
    let mut next = if labelled.is_empty() {
        // The candidate farthest from the centroid.
        let mut centroid = vec![0.0f64; dim];
        for i in 0..n {
            for (c, x) in centroid.iter_mut().zip(row(i)) {
                *c += *x as f64;
            }
        }
        let centroid: Vec<f32> = centroid.iter().map(|c| (c / n as f64) as f32).collect();
        let mut scratch = vec![f32::INFINITY; n];
        update(&mut scratch, &centroid)
    } else {
        let mut best = (usize::MAX, -1.0);
        for l in labelled.chunks(dim) {
            best = update(&mut min_d2, l);
        }
        best
    };
    while picks.len() < k {
        let (i, d) = next;
        if i == usize::MAX || (!picks.is_empty() || !labelled.is_empty()) && d <= 0.0 {
            break;
        }
        picks.push(i);
        next = update(&mut min_d2, row(i));
    }
    Ok(picks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn random(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::rng_from_seed(seed);
        (0..n * dim).map(|_| rng.gen::<f32>()).collect()
    }

    /// The definition, recomputed from scratch at every step in f64.
    fn brute(c: &[f32], dim: usize, k: usize, labelled: &[f32]) -> Vec<usize> {
        let n = c.len() / dim;
        let d = |a: &[f32], b: &[f32]| -> f64 { a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum() };
        let mut chosen: Vec<Vec<f32>> = labelled.chunks(dim).map(|r| r.to_vec()).collect();
        let mut picks = Vec::new();
        if chosen.is_empty() {
            let centroid: Vec<f32> =
                (0..dim).map(|j| ((0..n).map(|i| c[i * dim + j] as f64).sum::<f64>() / n as f64) as f32).collect();
            chosen.push(centroid);
            let first = (0..n)
                .max_by(|&a, &b| {
                    d(&c[a * dim..][..dim], &chosen[0]).total_cmp(&d(&c[b * dim..][..dim], &chosen[0])).then(b.cmp(&a))
                })
                .unwrap();
            picks.push(first);
            chosen = vec![c[first * dim..][..dim].to_vec()];
        }
        while picks.len() < k {
            let score = |i: usize| chosen.iter().map(|q| d(&c[i * dim..][..dim], q)).fold(f64::INFINITY, f64::min);
            let best = (0..n).max_by(|&a, &b| score(a).total_cmp(&score(b)).then(b.cmp(&a))).unwrap();
            if score(best) == 0.0 {
                break;
            }
            picks.push(best);
            chosen.push(c[best * dim..][..dim].to_vec());
        }
        picks
    }

    #[test]
    fn equals_brute_force_never_repeats_and_is_deterministic() {
        for (n, dim, k, m) in [(200, 5, 30, 0), (300, 56, 40, 7), (50, 3, 50, 0)] {
            let c = random(n, dim, n as u64);
            let labelled = random(m, dim, 99);
            let ours = select_fps(&c, dim, k, &labelled, 1).unwrap();
            assert_eq!(ours, brute(&c, dim, k, &labelled), "n={n} dim={dim}");
            assert_eq!(ours, select_fps(&c, dim, k, &labelled, 3).unwrap(), "threads do not change the result");
            let mut sorted = ours.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), ours.len(), "no repeats");
        }
    }

    #[test]
    fn duplicates_of_labelled_structures_are_never_picked() {
        let dim = 4;
        let labelled = random(5, dim, 1);
        // Candidates: the labelled ones again, plus 3 new ones.
        let mut c = labelled.clone();
        c.extend(random(3, dim, 2));
        let picks = select_fps(&c, dim, 8, &labelled, 2).unwrap();
        assert_eq!(picks.len(), 3);
        assert!(picks.iter().all(|&i| i >= 5), "{picks:?}");
    }
}
