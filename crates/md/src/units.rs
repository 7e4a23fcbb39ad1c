//! MD units: Å, fs, eV, amu, K.

use autopipe_atoms::units::codata2018::{AMU_KG, ELEMENTARY_CHARGE_C};
pub use autopipe_atoms::units::{BOLTZMANN_EV_PER_K, EV_PER_A3_IN_GPA, GPA_IN_EV_PER_A3};

/// 1 amu·Å²/fs² in eV: m_u · (1e-10 m)² / (1e-15 s)² = m_u · 1e10 J, divided by e
/// (J per eV). With CODATA 2018: 1.660 539 066 60e-27 · 1e10 / 1.602 176 634e-19
/// = 103.642 69 eV.
pub const AMU_A2_PER_FS2_IN_EV: f64 = AMU_KG * 1e10 / ELEMENTARY_CHARGE_C;

/// 1 eV in amu·Å²/fs²: an acceleration is `F [eV/Å] / m [amu] * EV_IN_AMU_A2_PER_FS2` Å/fs².
pub const EV_IN_AMU_A2_PER_FS2: f64 = 1.0 / AMU_A2_PER_FS2_IN_EV;

/// 1 Å²/fs in cm²/s (1 Å² = 1e-16 cm², 1 fs = 1e-15 s).
pub const A2_PER_FS_IN_CM2_PER_S: f64 = 0.1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mvv_conversion_matches_codata() {
        assert!((AMU_A2_PER_FS2_IN_EV - 103.642_691).abs() < 1e-5, "{AMU_A2_PER_FS2_IN_EV}");
    }
}
