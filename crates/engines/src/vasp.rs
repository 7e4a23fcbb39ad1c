//! VASP (in progress)
