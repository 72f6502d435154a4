//! Google Cloud: credentials and tokens ([`auth`]), the BigQuery REST client ([`bigquery`]),
//! what the BigQuery destinations share about tables ([`table`]) and staged, exactly-once
//! publication ([`staging`]), Cloud Storage uploads ([`storage`], [`upload`]), `gsm://` secrets
//! ([`secrets`]).

pub mod auth;
pub mod bigquery;
pub mod secrets;
pub mod staging;
pub mod storage;
pub mod table;
#[cfg(test)]
pub mod testing;
pub mod upload;
