//! The guard loop.
