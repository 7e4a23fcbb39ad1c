//! Effective-medium theory (Jacobsen, Stoltze, Nørskov), as ASE's `EMT` implements it.
//! (Implementation in progress.)
