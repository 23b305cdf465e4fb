//! The routing information bases: the decision process, and (next) Adj-RIB-In per peer, Loc-RIB
//! and Adj-RIB-Out per update group with interned attribute sets.

pub mod decision;
pub mod table;
