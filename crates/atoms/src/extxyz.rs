//! Extended XYZ, compatible with ASE in both directions. (Implementation in progress.)
