//! Decode rule tests.
