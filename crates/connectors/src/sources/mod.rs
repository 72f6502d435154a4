//! Sources: one folder each.

pub mod command;
#[cfg(feature = "http")]
pub mod cycle;
pub mod dummy;
#[cfg(feature = "http")]
pub mod gbif;
pub mod generator;
#[cfg(feature = "bigquery")]
pub mod gsheets;
#[cfg(feature = "http")]
mod http_keys;
#[cfg(feature = "http")]
pub mod hubspot;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "http")]
pub mod notion;
#[cfg(feature = "http")]
pub mod periscope;
#[cfg(feature = "http")]
pub mod pokeapi;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod python;
#[cfg(feature = "http")]
pub mod rest;
#[cfg(feature = "http")]
pub mod sana_ai;
