//! The uncertainty guard: a force field wrapper that records the extrapolation grade of
//! every evaluation and keeps the structures above `gamma_select`.
//!
//! A property calculation takes any `ForceField`; wrapping it in [`Watched`] costs one
//! comparison per evaluation and tells the caller afterwards whether the number it got
//! rests on extrapolation ([`Watched::max_gamma`]) and which structures to label
//! ([`Watched::take_uncertain`]).

use autopipe_atoms::Structure;
use autopipe_md::forcefield::{Evaluation, ForceField};

/// A structure the model was unsure of, with its largest per-atom grade.
#[derive(Clone, Debug)]
pub struct Uncertain {
    pub structure: Structure,
    pub max_gamma: f64,
}

/// A force field whose extrapolation grade is watched.
pub struct Watched<F> {
    inner: F,
    gamma_select: f64,
    max_kept: usize,
    kept: Vec<Uncertain>,
    max_gamma: Option<f64>,
    evaluations: u64,
    n_uncertain: u64,
}

impl<F: ForceField> Watched<F> {
    /// Keep at most `max_kept` structures with a grade of `gamma_select` or more (the
    /// first ones met; the largest grade is tracked over all of them).
    pub fn new(inner: F, gamma_select: f64, max_kept: usize) -> Self {
        Watched { inner, gamma_select, max_kept, kept: Vec::new(), max_gamma: None, evaluations: 0, n_uncertain: 0 }
    }

    /// The largest per-atom grade over every evaluation so far (None: the model has no
    /// grade, e.g. EMT).
    pub fn max_gamma(&self) -> Option<f64> {
        self.max_gamma
    }

    /// Number of evaluations so far.
    pub fn evaluations(&self) -> u64 {
        self.evaluations
    }

    /// Number of evaluations with a grade of `gamma_select` or more (kept or not).
    pub fn n_uncertain(&self) -> u64 {
        self.n_uncertain
    }

    /// The structures kept so far (grade at or above `gamma_select`).
    pub fn uncertain(&self) -> &[Uncertain] {
        &self.kept
    }

    /// Hands over the kept structures and forgets them.
    pub fn take_uncertain(&mut self) -> Vec<Uncertain> {
        std::mem::take(&mut self.kept)
    }

    /// Forgets the statistics (before recomputing a property with a refitted model).
    pub fn reset(&mut self) {
        self.kept.clear();
        self.max_gamma = None;
        self.evaluations = 0;
        self.n_uncertain = 0;
    }

    pub fn inner_mut(&mut self) -> &mut F {
        &mut self.inner
    }

    pub fn into_inner(self) -> F {
        self.inner
    }
}

impl<F: ForceField> ForceField for Watched<F> {
    fn evaluate(&mut self, s: &Structure) -> Result<Evaluation, String> {
        let e = self.inner.evaluate(s)?;
        self.evaluations += 1;
        if let Some(g) = e.max_gamma() {
            self.max_gamma = Some(self.max_gamma.map_or(g, |m| m.max(g)));
            if g >= self.gamma_select {
                self.n_uncertain += 1;
                if self.kept.len() < self.max_kept {
                    self.kept.push(Uncertain { structure: s.clone(), max_gamma: g });
                }
            }
        }
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autopipe_atoms::Element;

    /// A force field whose grade is the x coordinate of the first atom (None below 0).
    struct Graded;
    impl ForceField for Graded {
        fn evaluate(&mut self, s: &Structure) -> Result<Evaluation, String> {
            let x = s.positions_a[0][0];
            Ok(Evaluation {
                energy_ev: 0.0,
                forces_ev_per_a: vec![[0.0; 3]],
                stress_ev_per_a3: None,
                gamma: (x >= 0.0).then(|| vec![x, 0.5 * x]),
            })
        }
    }

    fn at(x: f64) -> Structure {
        let cu = Element::from_symbol("Cu").unwrap();
        Structure::new([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0]], vec![[x, 0.0, 0.0]], vec![cu], [true; 3])
            .unwrap()
    }

    #[test]
    fn records_the_largest_grade_and_keeps_the_uncertain_up_to_the_limit() {
        let mut w = Watched::new(Graded, 2.0, 2);
        for x in [1.0, 2.5, 0.5, 3.0, 4.0] {
            w.evaluate(&at(x)).unwrap();
        }
        assert_eq!(w.max_gamma(), Some(4.0));
        assert_eq!(w.evaluations(), 5);
        assert_eq!(w.n_uncertain(), 3, "every evaluation at or above gamma_select counts");
        let kept: Vec<f64> = w.uncertain().iter().map(|u| u.max_gamma).collect();
        assert_eq!(kept, vec![2.5, 3.0], "the first ones, at most max_kept");
        assert_eq!(w.take_uncertain().len(), 2);
        assert!(w.uncertain().is_empty());
        w.reset();
        assert_eq!((w.max_gamma(), w.evaluations(), w.n_uncertain()), (None, 0, 0));
        // No grade (EMT): nothing is known, nothing kept.
        w.evaluate(&at(-1.0)).unwrap();
        assert_eq!((w.max_gamma(), w.n_uncertain()), (None, 0));
    }
}
