//! Farthest-point selection (FPS) on per-structure descriptor vectors.
//!
//! Each pick is the candidate whose Euclidean distance to the nearest already chosen
//! point (earlier picks and the `labelled` set) is largest; ties go to the smallest
//! index. Without a labelled set the first pick is the candidate farthest from the
//! centroid. Deterministic.
//!
//! The distance of every candidate to its nearest chosen point is cached, with that
//! point (its cluster); each pick scans the candidates in index order over threads. A new pick `p` can only come closer to the members of a cluster
//! with centre `c` and radius `r` (largest cached distance in it) if `|c p| < 2 r`
//! (triangle inequality), so only those clusters are scanned: the work per pick falls as
//! the clusters shrink, instead of O(n·dim) for every pick. The result is exactly the
//! plain algorithm's (the bound is applied with a margin for rounding). Within a scanned
//! cluster, a candidate whose norm differs from the new point's by more than its cached
//! distance (|x p| >= ||x| - |p||) is passed over without reading its row.
//!
//! A candidate at distance zero from a chosen point (a duplicate of a pick or of a
//! labelled structure) is never picked: the selection stops early instead.

/// Why a selection is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectError(pub String);

#[inline]
fn dist2(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent accumulators over exact chunks, so that the loop vectorises.
    let mut acc = [0.0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            let d = x[l] - y[l];
            acc[l] += d * d;
        }
    }
    let mut total = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        let d = x - y;
        total += d * d;
    }
    total
}

/// The chosen points (cluster centres) and, per cluster, the largest cached squared
/// distance of its members and that member (smallest index among equals).
struct Clusters {
    centres: Vec<Vec<f32>>,
    radius2: Vec<f32>,
    farthest: Vec<u32>,
}

/// Select up to `k` rows of `candidates` (`n x dim`, row-major) by farthest-point
/// selection, seeded with the rows of `labelled` (`m x dim`). Returns the picked row
/// indices in pick order. The scans run on `threads` threads; the result does not
/// depend on their number.
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
    if n > u32::MAX as usize {
        return Err(SelectError(format!("{n} candidates are too many")));
    }
    let k = k.min(n);
    if k == 0 {
        return Ok(Vec::new());
    }
    let threads = threads.clamp(1, 64);
    let chunk = n.div_ceil(threads).max(1);
    let row = |i: usize| &candidates[i * dim..(i + 1) * dim];
    let mut min_d2 = vec![f32::INFINITY; n];
    let mut owner = vec![u32::MAX; n];
    let mut cl = Clusters { centres: Vec::new(), radius2: Vec::new(), farthest: Vec::new() };
    // Make `point` a chosen point (cluster `new`): scan the members of the clusters it
    // may be nearer to (all candidates for the first), in index order over threads.
    // Norms, for the bound |x p| >= ||x| - |p||: a candidate the bound shows the new
    // point cannot come closer to is passed over without reading its row.
    let norms: Vec<f32> = (0..n).map(|i| row(i).iter().map(|x| x * x).sum::<f32>().sqrt()).collect();
    let norms = &norms;
    let add_centre = |point: &[f32], cl: &mut Clusters, min_d2: &mut [f32], owner: &mut [u32]| {
        let new = cl.centres.len() as u32;
        let np = point.iter().map(|x| x * x).sum::<f32>().sqrt();
        // Which clusters to scan: |c p| < 2 r (squared, with a margin for rounding).
        let scan: Vec<bool> = (0..cl.centres.len())
            .map(|c| cl.radius2[c] >= 0.0 && dist2(&cl.centres[c], point) <= 4.0 * cl.radius2[c] * (1.0 + 1e-4) + 1e-30)
            .collect();
        cl.centres.push(point.to_vec());
        cl.radius2.push(-1.0);
        cl.farthest.push(u32::MAX);
        let nc = cl.centres.len();
        let scan = &scan;
        // Per thread: the farthest (distance, index) of every scanned or new cluster.
        let parts: Vec<Vec<(f32, u32)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = min_d2
                .chunks_mut(chunk)
                .zip(owner.chunks_mut(chunk))
                .enumerate()
                .map(|(t, (md, ow))| {
                    scope.spawn(move || {
                        let mut best = vec![(-1.0f32, u32::MAX); nc];
                        for (o, (m, w)) in md.iter_mut().zip(ow.iter_mut()).enumerate() {
                            if *w != u32::MAX && !scan[*w as usize] {
                                continue;
                            }
                            let i = t * chunk + o;
                            // (with margins for the rounding of the norms and distances)
                            let gap = (norms[i] - np).abs();
                            if gap <= m.sqrt() * (1.0 + 1e-4) + 1e-5 * (norms[i] + np) {
                                let d = dist2(&candidates[i * dim..(i + 1) * dim], point);
                                if d < *m {
                                    *m = d;
                                    *w = new;
                                }
                            }
                            let b = &mut best[*w as usize];
                            if *m > b.0 {
                                *b = (*m, i as u32);
                            }
                        }
                        best
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("an FPS worker panicked")).collect()
        });
        for c in 0..nc {
            if c as u32 != new && !scan[c] {
                continue;
            }
            // Threads cover increasing index ranges: the first strict maximum wins ties.
            let mut b = (-1.0f32, u32::MAX);
            for part in &parts {
                if part[c].0 > b.0 {
                    b = part[c];
                }
            }
            cl.radius2[c] = b.0;
            cl.farthest[c] = b.1;
        }
    };
    for l in labelled.chunks(dim) {
        add_centre(l, &mut cl, &mut min_d2, &mut owner);
    }
    let mut picks = Vec::with_capacity(k);
    if labelled.is_empty() {
        // The first pick: the candidate farthest from the centroid.
        let mut centroid = vec![0.0f64; dim];
        for i in 0..n {
            for (c, x) in centroid.iter_mut().zip(row(i)) {
                *c += *x as f64;
            }
        }
        let centroid: Vec<f32> = centroid.iter().map(|c| (c / n as f64) as f32).collect();
        let mut first = (0, -1.0f32);
        for i in 0..n {
            let d = dist2(row(i), &centroid);
            if d > first.1 {
                first = (i, d);
            }
        }
        picks.push(first.0);
        add_centre(row(first.0), &mut cl, &mut min_d2, &mut owner);
    }
    while picks.len() < k {
        let mut best = (-1.0f32, u32::MAX);
        for (r, f) in cl.radius2.iter().zip(&cl.farthest) {
            if *r > best.0 || (*r == best.0 && *f < best.1) {
                best = (*r, *f);
            }
        }
        if best.1 == u32::MAX || best.0 <= 0.0 {
            break;
        }
        let i = best.1 as usize;
        picks.push(i);
        add_centre(row(i), &mut cl, &mut min_d2, &mut owner);
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
        for (n, dim, k, m) in [(200, 5, 30, 0), (300, 56, 40, 7), (50, 3, 50, 0), (2000, 2, 300, 3)] {
            let c = random(n, dim, n as u64);
            let labelled = random(m, dim, 99);
            let ours = select_fps(&c, dim, k, &labelled, 1).unwrap();
            assert_eq!(ours, brute(&c, dim, k, &labelled), "n={n} dim={dim}");
            assert_eq!(ours, select_fps(&c, dim, k, &labelled, 3).unwrap(), "threads change nothing");
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
