//! Atoms: the `Structure` type, element data, units, periodic neighbour lists and
//! file formats (extended XYZ, POSCAR, CIF). Pure data and computation: nothing here touches files
//! except the explicit readers/writers that take text in and give text out.

pub mod cif;
pub mod elements;
pub mod extxyz;
pub mod frame;
pub mod lammps_data;
pub mod neighbors;
pub mod output;
pub mod poscar;
pub mod structure;
pub mod units;

pub use elements::Element;
pub use frame::{Frame, InfoValue};
pub use neighbors::{Neighbor, NeighborList};
pub use structure::{Structure, StructureError};
