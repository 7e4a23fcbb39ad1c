//! A structure with its labels and metadata: one frame of an extended XYZ file.

use crate::structure::{Structure, Vec3};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A value of an extended XYZ info (per-frame) key that is not one of the known labels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum InfoValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    IntArray(Vec<i64>),
    FloatArray(Vec<f64>),
    BoolArray(Vec<bool>),
    /// Anything else ASE stores as `_JSON ...` (2-D arrays, dicts, lists of strings,
    /// null). Numbers keep full precision; non-finite floats become `null`.
    Json(serde_json::Value),
}

/// A per-atom array that is not one of the known columns (species, pos, forces).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ArrayValue {
    /// `n_atoms x n_columns` real numbers.
    Real {
        columns: usize,
        values: Vec<f64>,
    },
    Int {
        columns: usize,
        values: Vec<i64>,
    },
    Bool {
        columns: usize,
        values: Vec<bool>,
    },
    Str {
        columns: usize,
        values: Vec<String>,
    },
}

/// A structure with optional labels, in the units and sign conventions of ASE:
/// energies in eV, forces in eV/Å, stress in eV/Å³ as Voigt `[xx, yy, zz, yz, xz, xy]`
/// with ASE's sign (positive = tensile; `stress = (1/V) dE/dε`).
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Frame {
    pub structure: Structure,
    pub energy_ev: Option<f64>,
    pub free_energy_ev: Option<f64>,
    pub forces_ev_per_a: Option<Vec<Vec3>>,
    pub stress_ev_per_a3: Option<[f64; 6]>,
    /// Other per-frame keys, in file order of appearance kept by name.
    pub info: BTreeMap<String, InfoValue>,
    /// Other per-atom columns.
    pub arrays: BTreeMap<String, ArrayValue>,
}

impl Default for Structure {
    fn default() -> Self {
        Structure { cell_a: [[0.0; 3]; 3], positions_a: vec![], species: vec![], pbc: [false; 3] }
    }
}

impl Frame {
    pub fn from_structure(structure: Structure) -> Frame {
        Frame { structure, ..Default::default() }
    }

    /// Number of atoms.
    pub fn len(&self) -> usize {
        self.structure.len()
    }

    pub fn is_empty(&self) -> bool {
        self.structure.is_empty()
    }

    /// The stress label, taken from the `stress` key or else from the `virial` info key
    /// (9 numbers, eV), in ASE's conventions: `virial = -stress * volume`, so
    /// `stress_ev_per_a3 = -virial_ev / volume_a3`. Data sets written for GAP, MACE and
    /// ACE often carry only `virial`; readers of labels call this (extended XYZ reading
    /// itself keeps `virial` in `info`, as ASE does). A frame with both keys must have
    /// them agree (1e-6 relative); a `virial` without a cell (zero volume) is an error.
    pub fn stress_or_virial_ev_per_a3(&self) -> Result<Option<[f64; 6]>, String> {
        let Some(virial) = self.info.get("virial") else { return Ok(self.stress_ev_per_a3) };
        let numbers: Vec<f64> = match virial {
            InfoValue::FloatArray(v) => v.clone(),
            InfoValue::IntArray(v) => v.iter().map(|&x| x as f64).collect(),
            other => return Err(format!("virial must be 9 numbers (eV), got {other:?}")),
        };
        if numbers.len() != 9 || numbers.iter().any(|x| !x.is_finite()) {
            return Err(format!("virial must be 9 finite numbers (eV), got {} values", numbers.len()));
        }
        let volume_a3 = self.structure.volume_a3();
        if volume_a3.abs() < 1e-12 {
            return Err(
                "virial given for a frame without a cell (volume 0): stress = -virial/volume is undefined".into()
            );
        }
        // 3x3 in Fortran order (as ASE reads it); Voigt [xx, yy, zz, yz, xz, xy].
        let v = &numbers;
        let from_virial = [v[0], v[4], v[8], v[7], v[6], v[3]].map(|x| -x / volume_a3);
        if let Some(stress) = self.stress_ev_per_a3 {
            let scale = stress.iter().chain(&from_virial).fold(0.0f64, |m, x| m.max(x.abs()));
            if stress.iter().zip(&from_virial).any(|(a, b)| (a - b).abs() > 1e-6 * scale.max(1e-12)) {
                return Err(format!(
                    "stress {stress:?} eV/Å³ and virial (-virial/volume = {from_virial:?} eV/Å³) disagree"
                ));
            }
            return Ok(Some(stress));
        }
        Ok(Some(from_virial))
    }

    /// Sets [`Frame::stress_ev_per_a3`] from [`Frame::stress_or_virial_ev_per_a3`].
    pub fn take_virial_as_stress(&mut self) -> Result<(), String> {
        self.stress_ev_per_a3 = self.stress_or_virial_ev_per_a3()?;
        Ok(())
    }
}

impl ArrayValue {
    /// Number of columns per atom.
    pub fn columns(&self) -> usize {
        match self {
            ArrayValue::Real { columns, .. }
            | ArrayValue::Int { columns, .. }
            | ArrayValue::Bool { columns, .. }
            | ArrayValue::Str { columns, .. } => *columns,
        }
    }

    /// Total number of stored values (`n_atoms * columns` when consistent).
    pub fn n_values(&self) -> usize {
        match self {
            ArrayValue::Real { values, .. } => values.len(),
            ArrayValue::Int { values, .. } => values.len(),
            ArrayValue::Bool { values, .. } => values.len(),
            ArrayValue::Str { values, .. } => values.len(),
        }
    }

    /// The extended XYZ type letter: R, I, L or S.
    pub fn type_letter(&self) -> char {
        match self {
            ArrayValue::Real { .. } => 'R',
            ArrayValue::Int { .. } => 'I',
            ArrayValue::Bool { .. } => 'L',
            ArrayValue::Str { .. } => 'S',
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elements::Element;

    fn cubic(a: f64) -> Frame {
        let cu = Element::from_symbol("Cu").unwrap();
        Frame::from_structure(Structure {
            cell_a: [[a, 0.0, 0.0], [0.0, a, 0.0], [0.0, 0.0, a]],
            positions_a: vec![[0.0; 3]],
            species: vec![cu],
            pbc: [true; 3],
        })
    }

    #[test]
    fn virial_becomes_minus_stress_times_volume() {
        let mut f = cubic(2.0);
        // xx=8, yy=16, zz=24, yz=zy=0.8, xz=zx=1.6, xy=yx=2.4 (eV); V = 8 Å³.
        let v = vec![8.0, 2.4, 1.6, 2.4, 16.0, 0.8, 1.6, 0.8, 24.0];
        f.info.insert("virial".into(), InfoValue::FloatArray(v));
        assert_eq!(f.stress_or_virial_ev_per_a3().unwrap(), Some([-1.0, -2.0, -3.0, -0.1, -0.2, -0.3]));
        // Both keys agreeing: fine; disagreeing: an error naming both.
        f.stress_ev_per_a3 = Some([-1.0, -2.0, -3.0, -0.1, -0.2, -0.3]);
        f.take_virial_as_stress().unwrap();
        f.stress_ev_per_a3 = Some([1.0, -2.0, -3.0, -0.1, -0.2, -0.3]);
        let e = f.stress_or_virial_ev_per_a3().unwrap_err();
        assert!(e.contains("disagree"), "{e}");
        // No cell: refused.
        let mut m = cubic(0.0);
        m.info.insert("virial".into(), InfoValue::FloatArray(vec![1.0; 9]));
        assert!(m.stress_or_virial_ev_per_a3().unwrap_err().contains("volume 0"));
        // Without virial the stress key is returned as is.
        assert_eq!(cubic(3.0).stress_or_virial_ev_per_a3().unwrap(), None);
    }
}
