//! Every unit conversion the engines use, in one place, against reference values
//! written here with their source.
//!
//! Sources (CODATA recommended values of the fundamental physical constants, NIST,
//! https://physics.nist.gov/cuu/Constants/; the 2006, 2014 and 2018 adjustments):
//!
//! | quantity | CODATA 2018 | CODATA 2014 | CODATA 2006 |
//! |---|---|---|---|
//! | Bohr radius a0 (Å) | 0.529 177 210 903 | 0.529 177 210 67 | 0.529 177 208 59 |
//! | Hartree energy Eh (eV) | 27.211 386 245 988 | 27.211 386 02 | 27.211 383 86 |
//! | Hartree energy Eh (J) | 4.359 744 722 2071e-18 | 4.359 744 650e-18 | 4.359 743 94e-18 |
//! | Rydberg energy hcR∞ (eV) | 13.605 693 122 994 | 13.605 693 009 | 13.605 691 93 |
//! | elementary charge e (C) | 1.602 176 634e-19 (exact) | 1.602 176 6208e-19 | 1.602 176 487e-19 |
//!
//! Pressure: 1 eV/Å³ = e·(1 J/C)/(1e-30 m³) = e·1e30 Pa, so with the exact SI e
//! (CODATA 2018) 1 eV/Å³ = 160.217 6634 GPa, and exactly
//! 1 GPa = 1/160.2176634, 1 kbar = 1e8 Pa = 1/1602.176634 and
//! 1 bar = 1e5 Pa = 1/1602176.634 eV/Å³.
//!
//! Who uses which set:
//! * Quantum ESPRESSO 6.7 (`qe::QE_*`): CODATA 2018 (its `Modules/constants.f90`).
//! * CP2K 2023.1 (`cp2k::CP2K_*`): CODATA 2006 (its `common/physcon.F`).
//! * ORCA (`orca::*`): converted by us with CODATA 2018 (the project's default).
//! * VASP (`vasp::VASP_KBAR_TO_EV_PER_A3`): VASP prints eV and eV/Å itself; only its
//!   stress in kbar is converted, with the exact factor.
//! * EMT (`emt::ASE_BOHR_A`): ASE's Bohr, computed by ASE from CODATA 2014 constants.
//! * `autopipe_atoms::units`: CODATA 2018 (default) and 2014.

use autopipe_atoms::units;
use autopipe_engines::{cp2k, emt, orca, qe, vasp};

/// |a - b| <= rel·|b|.
#[track_caller]
fn rel(a: f64, b: f64, tol: f64) {
    assert!(
        (a - b).abs() <= tol * b.abs(),
        "{a:e} vs {b:e}: relative difference {:e} > {tol:e}",
        (a - b).abs() / b.abs()
    );
}

mod codata2018 {
    pub const BOHR_A: f64 = 0.529_177_210_903;
    pub const HARTREE_EV: f64 = 27.211_386_245_988;
    pub const HARTREE_J: f64 = 4.359_744_722_207_1e-18;
    pub const RYDBERG_EV: f64 = 13.605_693_122_994;
    pub const E_C: f64 = 1.602_176_634e-19;
    pub const BOLTZMANN_EV_PER_K: f64 = 8.617_333_262e-5;
    pub const AMU_KG: f64 = 1.660_539_066_60e-27;
}

mod codata2014 {
    pub const BOHR_A: f64 = 0.529_177_210_67;
    pub const HARTREE_EV: f64 = 27.211_386_02;
    pub const RYDBERG_EV: f64 = 13.605_693_009;
    pub const BOLTZMANN_EV_PER_K: f64 = 8.617_330_3e-5;
    // for ASE's Bohr radius
    pub const PLANCK_J_S: f64 = 6.626_070_040e-34;
    pub const ELECTRON_MASS_KG: f64 = 9.109_383_56e-31;
    pub const E_C: f64 = 1.602_176_620_8e-19;
}

mod codata2006 {
    pub const BOHR_A: f64 = 0.529_177_208_59;
    pub const HARTREE_EV: f64 = 27.211_383_86;
    pub const HARTREE_J: f64 = 4.359_743_94e-18;
    pub const E_C: f64 = 1.602_176_487e-19;
}

/// Exact pressure factors (1 eV/Å³ = e·1e30 Pa with the exact SI e).
const GPA_IN_EV_PER_A3: f64 = 1.0 / 160.217_663_4;
const KBAR_IN_EV_PER_A3: f64 = 1.0 / 1_602.176_634;
const BAR_IN_EV_PER_A3: f64 = 1.0 / 1_602_176.634;

#[test]
fn reference_values_are_consistent() {
    // Eh = 2 Ry, Eh(eV) = Eh(J)/e, within the digits CODATA gives
    rel(codata2018::HARTREE_EV, 2.0 * codata2018::RYDBERG_EV, 1e-15);
    rel(codata2014::HARTREE_EV, 2.0 * codata2014::RYDBERG_EV, 1e-10);
    rel(codata2018::HARTREE_J / codata2018::E_C, codata2018::HARTREE_EV, 1e-12);
    rel(codata2006::HARTREE_J / codata2006::E_C, codata2006::HARTREE_EV, 1e-9);
    // the pressure factors from e
    rel(1e9 / (codata2018::E_C * 1e30), GPA_IN_EV_PER_A3, 1e-15);
    rel(KBAR_IN_EV_PER_A3, 0.1 * GPA_IN_EV_PER_A3, 1e-15);
    rel(BAR_IN_EV_PER_A3, 1e-4 * GPA_IN_EV_PER_A3, 1e-15);
}

#[test]
fn atoms_units_codata_2018_and_2014() {
    rel(units::BOHR_A, codata2018::BOHR_A, 1e-15);
    rel(units::HARTREE_EV, codata2018::HARTREE_EV, 1e-15);
    rel(units::RYDBERG_EV, codata2018::RYDBERG_EV, 1e-14);
    rel(units::BOLTZMANN_EV_PER_K, codata2018::BOLTZMANN_EV_PER_K, 1e-15);
    rel(units::codata2018::ELEMENTARY_CHARGE_C, codata2018::E_C, 0.0);
    rel(units::codata2018::AMU_KG, codata2018::AMU_KG, 1e-15);
    rel(units::codata2014::BOHR_A, codata2014::BOHR_A, 1e-15);
    rel(units::codata2014::HARTREE_EV, codata2014::HARTREE_EV, 1e-15);
    rel(units::codata2014::RYDBERG_EV, codata2014::RYDBERG_EV, 1e-10);
    rel(units::codata2014::BOLTZMANN_EV_PER_K, codata2014::BOLTZMANN_EV_PER_K, 1e-15);
    rel(units::GPA_IN_EV_PER_A3, GPA_IN_EV_PER_A3, 1e-15);
    rel(units::EV_PER_A3_IN_GPA, 160.217_663_4, 1e-15);
    rel(units::KBAR_IN_EV_PER_A3, KBAR_IN_EV_PER_A3, 1e-15);
}

#[test]
fn quantum_espresso_constants_are_codata_2018() {
    rel(qe::QE_BOHR_RADIUS_ANGS, codata2018::BOHR_A, 1e-15);
    rel(qe::QE_HARTREE_SI, codata2018::HARTREE_J, 1e-15);
    rel(qe::QE_ELECTRONVOLT_SI, codata2018::E_C, 0.0);
    rel(qe::QE_AUTOEV, codata2018::HARTREE_EV, 1e-14);
    rel(qe::QE_RYTOEV, codata2018::RYDBERG_EV, 1e-14);
    rel(qe::QE_RY_PER_BOHR_TO_EV_PER_A, codata2018::RYDBERG_EV / codata2018::BOHR_A, 1e-14);
    rel(qe::QE_RY_PER_BOHR3_TO_EV_PER_A3, codata2018::RYDBERG_EV / codata2018::BOHR_A.powi(3), 1e-14);
    // RY_KBAR: Ry/bohr³ in kbar = (Eh/2)/a0³ / 1e8 Pa; pw.x prints 147105.08
    let ry_kbar = codata2018::HARTREE_J / 2.0 / (codata2018::BOHR_A * 1e-10).powi(3) / 1e8;
    rel(qe::QE_RY_KBAR, ry_kbar, 1e-14);
    rel(qe::QE_RY_KBAR, 147_105.08, 1e-7);
    // the two stress columns of pw.x agree through the exact kbar factor
    rel(qe::QE_RY_PER_BOHR3_TO_EV_PER_A3 / qe::QE_RY_KBAR, KBAR_IN_EV_PER_A3, 1e-13);
}

#[test]
fn cp2k_constants_are_codata_2006() {
    // CP2K derives its values from CODATA 2006 base constants; they agree with the
    // published (rounded) 2006 values to their last digit
    rel(cp2k::CP2K_BOHR_A, codata2006::BOHR_A, 1e-15);
    rel(cp2k::CP2K_HARTREE_EV, codata2006::HARTREE_EV, 2e-10);
    rel(cp2k::CP2K_AU_PA, codata2006::HARTREE_J / (codata2006::BOHR_A * 1e-10).powi(3), 1e-9);
    rel(cp2k::CP2K_HA_PER_BOHR_TO_EV_PER_A, codata2006::HARTREE_EV / codata2006::BOHR_A, 2e-10);
    rel(cp2k::CP2K_HA_PER_BOHR3_TO_EV_PER_A3, codata2006::HARTREE_EV / codata2006::BOHR_A.powi(3), 2e-10);
    // GPa through CP2K's a.u. of pressure: 1e9 Pa / (e_2006 · 1e30), which differs from
    // the exact 2018 factor by the change of e (9e-8 relative)
    rel(cp2k::CP2K_GPA_TO_EV_PER_A3, 1e9 / (codata2006::E_C * 1e30), 1e-9);
    rel(cp2k::CP2K_GPA_TO_EV_PER_A3, GPA_IN_EV_PER_A3, 1e-7);
    // CP2K's bar factor (1e-4 × the GPa factor) lives in a private function of cp2k.rs;
    // the relation it uses is checked here
    rel(1e-4 * cp2k::CP2K_GPA_TO_EV_PER_A3, BAR_IN_EV_PER_A3, 1e-7);
    // CODATA 2006 vs 2018: 4e-9 relative in the Bohr radius, 9e-8 in the Hartree (eV)
    rel(cp2k::CP2K_BOHR_A, codata2018::BOHR_A, 5e-9);
    rel(cp2k::CP2K_HARTREE_EV, codata2018::HARTREE_EV, 1e-7);
}

#[test]
fn orca_conversions_are_codata_2018() {
    rel(orca::ORCA_HARTREE_TO_EV, codata2018::HARTREE_EV, 1e-15);
    rel(orca::ORCA_BOHR_TO_A, codata2018::BOHR_A, 1e-15);
    rel(orca::HARTREE_PER_BOHR_TO_EV_PER_A, codata2018::HARTREE_EV / codata2018::BOHR_A, 1e-15);
    rel(orca::HARTREE_PER_BOHR_TO_EV_PER_A, 51.422_067_476_325_886, 1e-14);
    // the parser applies them: 1 Eh and a gradient of 1 Eh/bohr (force -1) in a .engrad
    let g = orca::parse_engrad("1\n1.0\n1.0 0.0 0.0\n1 1.0 0.0 0.0\n").unwrap();
    rel(g.energy_ev, codata2018::HARTREE_EV, 1e-15);
    rel(-g.forces_ev_per_a[0][0], codata2018::HARTREE_EV / codata2018::BOHR_A, 1e-15);
    rel(g.positions_a[0][0], codata2018::BOHR_A, 1e-15);
}

#[test]
fn vasp_kbar_is_exact() {
    rel(vasp::VASP_KBAR_TO_EV_PER_A3, KBAR_IN_EV_PER_A3, 1e-15);
    // OUTCAR `in kB` of +1602.176634 kbar (compression) is -1 eV/Å³ in ASE's sign
    let outcar = "vasp.6.3.0\n NIONS = 1\n POSITION                                       TOTAL-FORCE (eV/Angst)\n -----\n 0.0 0.0 0.0 0.0 0.0 0.0\n -----\n  in kB  1602.176634 1602.176634 1602.176634 0.0 0.0 0.0\n  free  energy   TOTEN  =        -1.00000000 eV\n General timing and accounting informations for this job:\n";
    let p = vasp::parse_outcar(outcar, "units").unwrap();
    let s = p.stress_ev_per_a3.unwrap();
    rel(s[0], -1.0, 1e-15);
}

#[test]
fn emt_bohr_is_ases_codata_2014_bohr() {
    // ase.units: Bohr = 4e10 π ε0 ħ² / (m_e e²), ε0 = 1/(μ0 c²), μ0 = 4π·1e-7, ħ = h/2π
    let pi = std::f64::consts::PI;
    let mu0 = 4e-7 * pi;
    let c = 299_792_458.0;
    let eps0 = 1.0 / mu0 / (c * c);
    let hbar = codata2014::PLANCK_J_S / (2.0 * pi);
    let bohr = 4e10 * pi * eps0 * hbar * hbar / codata2014::ELECTRON_MASS_KG / (codata2014::E_C * codata2014::E_C);
    rel(emt::ASE_BOHR_A, bohr, 1e-15);
    // 2e-10 relative from the rounded CODATA 2014 value
    rel(emt::ASE_BOHR_A, codata2014::BOHR_A, 3e-10);
}
