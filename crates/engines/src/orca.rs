//! ORCA (in progress)
