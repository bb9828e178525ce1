//! stack pool (helper fills this in)
