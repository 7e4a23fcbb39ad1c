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
