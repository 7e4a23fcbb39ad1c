//! Physical constants and unit conversions, all in one place.
//!
//! Internal units everywhere in MLIP-AutoPipe: length Å, energy eV, force eV/Å,
//! stress eV/Å³ (ASE's sign convention), mass amu, time fs, temperature K.
//! CODATA 2018 is the default set; CODATA 2014 (ASE's default) is kept where a
//! comparison with ASE needs it bit-for-bit.

/// CODATA 2018 values.
pub mod codata2018 {
    /// Bohr radius in Å.
    pub const BOHR_A: f64 = 0.529_177_210_903;
    /// Hartree energy in eV.
    pub const HARTREE_EV: f64 = 27.211_386_245_988;
    /// Rydberg energy in eV (half a Hartree).
    pub const RYDBERG_EV: f64 = HARTREE_EV / 2.0;
    /// Boltzmann constant in eV/K.
    pub const BOLTZMANN_EV_PER_K: f64 = 8.617_333_262e-5;
    /// Elementary charge in C (exact).
    pub const ELEMENTARY_CHARGE_C: f64 = 1.602_176_634e-19;
    /// Atomic mass constant in kg.
    pub const AMU_KG: f64 = 1.660_539_066_60e-27;
}

/// CODATA 2014 values (ASE's `ase.units` default).
pub mod codata2014 {
    /// Bohr radius in Å.
    pub const BOHR_A: f64 = 0.529_177_210_67;
    /// Hartree energy in eV.
    pub const HARTREE_EV: f64 = 27.211_386_02;
    /// Rydberg energy in eV.
    pub const RYDBERG_EV: f64 = HARTREE_EV / 2.0;
    /// Boltzmann constant in eV/K.
    pub const BOLTZMANN_EV_PER_K: f64 = 8.617_330_3e-5;
}

pub use codata2018::{BOHR_A, BOLTZMANN_EV_PER_K, HARTREE_EV, RYDBERG_EV};

/// 1 eV/Å³ in GPa (exact from the elementary charge: 1 eV/Å³ = e·1e30 Pa).
pub const EV_PER_A3_IN_GPA: f64 = codata2018::ELEMENTARY_CHARGE_C * 1e30 / 1e9;
/// 1 GPa in eV/Å³.
pub const GPA_IN_EV_PER_A3: f64 = 1.0 / EV_PER_A3_IN_GPA;
/// 1 kbar in eV/Å³ (1 kbar = 0.1 GPa).
pub const KBAR_IN_EV_PER_A3: f64 = 0.1 * GPA_IN_EV_PER_A3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_conversions_match_codata() {
        // 1 eV/Å³ = 160.21766208 GPa (CODATA 2018 elementary charge is exact).
        assert!((EV_PER_A3_IN_GPA - 160.217_663_4).abs() < 1e-6);
        assert!((KBAR_IN_EV_PER_A3 * 1602.176_634 - 1.0).abs() < 1e-12);
        assert!((RYDBERG_EV - 13.605_693_122_994).abs() < 1e-11);
    }
}
