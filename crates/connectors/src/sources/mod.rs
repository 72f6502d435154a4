//! Sources: one folder each.

pub mod dummy;
pub mod generator;
pub mod kafka;
pub mod postgres;

#[cfg(test)]
mod tests;
