//! Google Cloud: credentials and tokens ([`auth`]), the BigQuery REST client ([`bigquery`]) and
//! what the BigQuery destinations share about tables ([`table`]).

pub mod auth;
pub mod bigquery;
pub mod table;
#[cfg(test)]
pub mod testing;
