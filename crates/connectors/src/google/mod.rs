//! Google Cloud: credentials and tokens ([`auth`]), the BigQuery REST client ([`bigquery`]) and
//! what the BigQuery destinations share about tables ([`table`]) and staged, exactly-once
//! publication ([`staging`]).

pub mod auth;
pub mod bigquery;
pub mod staging;
pub mod table;
#[cfg(test)]
pub mod testing;
