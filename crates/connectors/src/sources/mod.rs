//! Sources: one folder each.

pub mod dummy;
pub mod generator;

#[cfg(test)]
mod tests;
