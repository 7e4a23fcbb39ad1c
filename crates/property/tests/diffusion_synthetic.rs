//! Diffusion analysis on synthetic data with a known answer: Brownian trajectories with
//! a known D per species, written as wrapped positions in periodic (cubic and
//! triclinic) cells; Arrhenius data with known D0 and Ea.

use autopipe_atoms::structure::{inverse3, vec_mat};
use autopipe_atoms::{Element, Structure};
use autopipe_property::diffusion::{fit_arrhenius, fit_diffusion, msd, unwrap_frames, FitWindow};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn gauss(rng: &mut ChaCha8Rng) -> f64 {
    // Box-Muller.
    let u: f64 = rng.gen_range(f64::EPSILON..1.0);
    let v: f64 = rng.gen();
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// Brownian motion of every atom (D in Å²/fs per species), `frames` samples `dt_fs`
/// apart, positions wrapped into `cell`.
fn brownian(
    cell: [[f64; 3]; 3],
    species: &[Element],
    d_a2_per_fs: &[f64],
    frames: usize,
    dt_fs: f64,
    seed: u64,
) -> Vec<Structure> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let inv = inverse3(&cell).unwrap();
    let order: Vec<Element> = {
        let mut o: Vec<Element> = Vec::new();
        species.iter().for_each(|e| {
            if !o.contains(e) {
                o.push(*e)
            }
        });
        o
    };
    let mut r: Vec<[f64; 3]> =
        species.iter().map(|_| vec_mat(&[rng.gen::<f64>(), rng.gen::<f64>(), rng.gen::<f64>()], &cell)).collect();
    let mut out = Vec::with_capacity(frames);
    for _ in 0..frames {
        let wrapped = r
            .iter()
            .map(|x| {
                let f = vec_mat(x, &inv).map(|v| v - v.floor());
                vec_mat(&f, &cell)
            })
            .collect();
        out.push(Structure { cell_a: cell, positions_a: wrapped, species: species.to_vec(), pbc: [true; 3] });
        for (x, e) in r.iter_mut().zip(species) {
            let d = d_a2_per_fs[order.iter().position(|o| o == e).unwrap()];
            let sigma = (2.0 * d * dt_fs).sqrt();
            for k in 0..3 {
                x[k] += sigma * gauss(&mut rng);
            }
        }
    }
    out
}

/// D (cm²/s) of each species from wrapped frames; checks it within 3% of the truth,
/// and the reported standard error against the actual deviation.
fn check(cell: [[f64; 3]; 3], n_per_species: usize, frames: usize, seed: u64) {
    let cu = Element::from_symbol("Cu").unwrap();
    let au = Element::from_symbol("Au").unwrap();
    let species: Vec<Element> = (0..2 * n_per_species).map(|i| if i % 2 == 0 { cu } else { au }).collect();
    // 1e-4 and 3e-5 cm²/s in Å²/fs (1 Å²/fs = 0.1 cm²/s).
    let d_true = [1e-3, 3e-4];
    let dt_fs = 20.0;
    let trajectory = brownian(cell, &species, &d_true, frames, dt_fs, seed);
    let unwrapped = unwrap_frames(&trajectory).unwrap();
    let result = fit_diffusion(&unwrapped, &species, dt_fs, &FitWindow::default()).unwrap();
    assert_eq!(result.len(), 2);
    for (r, d) in result.iter().zip(d_true) {
        let d_cm2 = d * 0.1;
        let rel = (r.diffusion_cm2_per_s - d_cm2) / d_cm2;
        let se = r.stderr_cm2_per_s.unwrap();
        eprintln!(
            "{}: D = {:.4e} cm²/s (true {d_cm2:.1e}, {:+.2}%), stderr {:.2e} ({:.2}%)",
            r.element,
            r.diffusion_cm2_per_s,
            100.0 * rel,
            se,
            100.0 * se / d_cm2
        );
        assert!(rel.abs() < 0.03, "{}: D off by {:.2}%", r.element, 100.0 * rel);
        assert!(se > 0.0 && se < 0.05 * d_cm2, "stderr {se}");
        assert!((r.diffusion_cm2_per_s - d_cm2).abs() < 4.0 * se, "the truth is outside 4 standard errors");
    }
    // The analysis of the wrapped positions as they are is far off (the check can fail).
    let raw: Vec<Vec<[f64; 3]>> = trajectory.iter().map(|s| s.positions_a.clone()).collect();
    let wrong = fit_diffusion(&raw, &species, dt_fs, &FitWindow::default()).unwrap();
    let off = (wrong[0].diffusion_cm2_per_s / (d_true[0] * 0.1) - 1.0).abs();
    assert!(off > 0.2, "the wrapped positions gave D within {:.0}%", 100.0 * off);
}

#[test]
fn brownian_d_in_a_cubic_cell() {
    check([[14.0, 0.0, 0.0], [0.0, 14.0, 0.0], [0.0, 0.0, 14.0]], 500, 1500, 1);
}

#[test]
fn brownian_d_in_a_triclinic_cell() {
    check([[13.0, 0.0, 0.0], [5.0, 12.0, 0.0], [-3.0, 4.0, 11.0]], 500, 1500, 2);
}

/// The FFT MSD equals the direct double sum over origins.
#[test]
fn fft_msd_equals_the_direct_sum() {
    let cu = Element::from_symbol("Cu").unwrap();
    let ni = Element::from_symbol("Ni").unwrap();
    let species = vec![cu, ni, cu];
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let n = 37;
    let mut x = vec![[0.0; 3]; 3];
    let positions: Vec<Vec<[f64; 3]>> = (0..n)
        .map(|_| {
            for p in x.iter_mut() {
                for v in p.iter_mut() {
                    *v += gauss(&mut rng);
                }
            }
            x.clone()
        })
        .collect();
    let curves = msd(&positions, &species);
    // Direct sum, with the centre of mass removed the same way.
    let masses: Vec<f64> = species.iter().map(|e| e.mass_amu()).collect();
    let m_tot: f64 = masses.iter().sum();
    let com: Vec<[f64; 3]> = positions
        .iter()
        .map(|f| {
            let mut c = [0.0; 3];
            for (p, m) in f.iter().zip(&masses) {
                (0..3).for_each(|k| c[k] += m * p[k] / m_tot);
            }
            c
        })
        .collect();
    for (s, e) in curves.species.iter().enumerate() {
        for lag in 0..n {
            let mut sum = 0.0;
            let mut count = 0;
            for (i, sp) in species.iter().enumerate().filter(|(_, sp)| *sp == e) {
                let _ = sp;
                for t in 0..n - lag {
                    sum += (0..3)
                        .map(|k| {
                            let a = positions[t + lag][i][k] - com[t + lag][k];
                            let b = positions[t][i][k] - com[t][k];
                            (a - b).powi(2)
                        })
                        .sum::<f64>();
                    count += 1;
                }
            }
            let direct = sum / count as f64;
            assert!(
                (curves.msd_a2[s][lag] - direct).abs() < 1e-9 * direct.max(1.0),
                "{e} lag {lag}: {} vs {direct}",
                curves.msd_a2[s][lag]
            );
        }
    }
}

/// Exact Arrhenius data give D0 and Ea back; noisy data with known errors give them
/// within their reported standard errors, and those errors match the scatter over
/// many repetitions.
#[test]
fn arrhenius_recovers_d0_and_ea() {
    let k_b = autopipe_md::units::BOLTZMANN_EV_PER_K;
    let (d0, ea) = (2.5e-3, 0.62);
    let temps = [900.0, 1000.0, 1100.0, 1250.0, 1400.0, 1600.0];
    let exact: Vec<(f64, f64, Option<f64>)> = temps.iter().map(|&t| (t, d0 * (-ea / (k_b * t)).exp(), None)).collect();
    let fit = fit_arrhenius(&exact).unwrap();
    assert!((fit.ea_ev - ea).abs() < 1e-10, "{fit:?}");
    assert!((fit.d0_cm2_per_s / d0 - 1.0).abs() < 1e-9, "{fit:?}");

    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let rel_sigma = 0.05;
    let mut eas = Vec::new();
    let mut reported = Vec::new();
    let mut within = 0;
    let reps = 2000;
    for _ in 0..reps {
        let pts: Vec<(f64, f64, Option<f64>)> = temps
            .iter()
            .map(|&t| {
                let d = d0 * (-ea / (k_b * t)).exp();
                (t, d * (rel_sigma * gauss(&mut rng)).exp(), Some(rel_sigma * d))
            })
            .collect();
        let f = fit_arrhenius(&pts).unwrap();
        if (f.ea_ev - ea).abs() < 2.0 * f.ea_stderr_ev {
            within += 1;
        }
        eas.push(f.ea_ev);
        reported.push(f.ea_stderr_ev);
    }
    let mean = eas.iter().sum::<f64>() / reps as f64;
    let sd = (eas.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (reps - 1) as f64).sqrt();
    let mean_reported = reported.iter().sum::<f64>() / reps as f64;
    eprintln!("Ea: mean {mean:.4} eV, scatter {sd:.4} eV, mean reported stderr {mean_reported:.4} eV, {within}/{reps} within 2σ");
    assert!((mean - ea).abs() < 3.0 * sd / (reps as f64).sqrt(), "biased: {mean}");
    assert!(mean_reported > 0.9 * sd && mean_reported < 1.4 * sd, "reported {mean_reported} vs scatter {sd}");
    assert!(within as f64 / reps as f64 > 0.93, "{within}/{reps} within 2σ");
    // Too few temperatures, or no diffusion at one: clear errors.
    assert!(fit_arrhenius(&exact[..1]).unwrap_err().to_string().contains("two temperatures"));
    let zero = vec![(900.0, 0.0, None), (1000.0, 1e-6, None)];
    assert!(fit_arrhenius(&zero).unwrap_err().to_string().contains("no diffusion"));
}
