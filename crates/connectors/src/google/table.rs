//! What the BigQuery destinations share about tables: bizon's keys (`time_partitioning`,
//! `authentication`, `table_prefix`), bizon's column layout, table names and creating or
//! widening a table.

use bizon_core::config::yaml::{self, from_node, Node};
use bizon_core::config::{ColumnConfig, DestinationCommon, RecordSchemaConfig};
use bizon_core::record::RecordRef;
use bizon_core::{Error, Json, Rejected, Result};
use serde::Deserialize;
use serde_json::json;
use tracing::{info, warn};

use super::auth::Credentials;
use super::bigquery::{BigQuery, TableRef};

/// bizon's `time_partitioning`: `{type, field}` or a bare type (`DAY`); `field: null` =
/// ingestion-time partitioning.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum TimePartitioning {
    Type(PartitionType),
    Full {
        #[serde(rename = "type", default)]
        kind: PartitionType,
        #[serde(default = "loaded_at")]
        field: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum PartitionType {
    #[default]
    Day,
    Hour,
    Month,
    Year,
}

impl PartitionType {
    pub fn as_str(self) -> &'static str {
        match self {
            PartitionType::Day => "DAY",
            PartitionType::Hour => "HOUR",
            PartitionType::Month => "MONTH",
            PartitionType::Year => "YEAR",
        }
    }
}

fn loaded_at() -> Option<String> {
    Some("_bizon_loaded_at".into())
}

impl Default for TimePartitioning {
    fn default() -> Self {
        TimePartitioning::Full { kind: PartitionType::Day, field: loaded_at() }
    }
}

impl TimePartitioning {
    pub fn kind(&self) -> PartitionType {
        match self {
            TimePartitioning::Type(k) | TimePartitioning::Full { kind: k, .. } => *k,
        }
    }

    pub fn field(&self) -> Option<&str> {
        match self {
            TimePartitioning::Type(_) => Some("_bizon_loaded_at"),
            TimePartitioning::Full { field, .. } => field.as_deref(),
        }
    }

    /// The table resource's `timePartitioning`.
    pub fn resource(&self) -> Json {
        let mut j = json!({"type": self.kind().as_str()});
        if let Some(f) = self.field() {
            j["field"] = json!(f);
        }
        j
    }

    /// `PARTITION BY …` of a `CREATE TABLE … AS SELECT` over a TIMESTAMP field (or ingestion time).
    pub fn sql(&self, columns: &[Column]) -> String {
        let kind = self.kind().as_str();
        match self.field() {
            None => format!("PARTITION BY TIMESTAMP_TRUNC(_PARTITIONTIME, {kind})"),
            Some(f) => match columns.iter().find(|c| c.name == f).map(|c| c.kind.as_str()) {
                Some("DATE") if kind == "DAY" => format!("PARTITION BY `{f}`"),
                Some("DATE") => format!("PARTITION BY DATE_TRUNC(`{f}`, {kind})"),
                Some("DATETIME") => format!("PARTITION BY DATETIME_TRUNC(`{f}`, {kind})"),
                _ => format!("PARTITION BY TIMESTAMP_TRUNC(`{f}`, {kind})"),
            },
        }
    }
}

/// The partitioning a new table gets (bizon's rules): a field must be a TIMESTAMP, DATE or DATETIME
/// column; with `unnest` and no field written, partitioning is by ingestion time. A field the
/// columns lack is an error when the table is to be created, a warning (and no partitioning)
/// when it exists already.
pub fn effective_partitioning(
    configured: Option<&TimePartitioning>,
    field_written: bool,
    columns: &[Column],
    table_exists: bool,
    table: &TableRef,
) -> Result<Option<TimePartitioning>> {
    let Some(p) = configured else { return Ok(None) };
    let Some(field) = p.field() else { return Ok(Some(p.clone())) };
    let kind = columns.iter().find(|c| c.name == field && c.mode != "REPEATED").map(|c| c.kind.as_str());
    match kind {
        Some("TIMESTAMP" | "DATETIME") => return Ok(Some(p.clone())),
        Some("DATE") if p.kind() != PartitionType::Hour => return Ok(Some(p.clone())),
        _ => {}
    }
    if !field_written && !columns.iter().any(|c| c.name == "_bizon_loaded_at") {
        info!(table = %table, "typed columns without `_bizon_loaded_at`: partitioning by ingestion time (as bizon)");
        return Ok(Some(TimePartitioning::Full { kind: p.kind(), field: None }));
    }
    let why = match kind {
        Some("DATE") => format!("`{field}` is a DATE column: HOUR partitioning needs TIMESTAMP or DATETIME"),
        Some(k) => format!("`{field}` is a {k} column, not TIMESTAMP, DATE or DATETIME"),
        None => format!(
            "{table} has no column `{field}` (columns: {})",
            columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
        ),
    };
    if table_exists {
        warn!(table = %table, "time_partitioning: {why}; the existing table is left as it is");
        return Ok(None);
    }
    Err(Error::config(format!(
        "time_partitioning.field: {why}; name a TIMESTAMP, DATE or DATETIME column, or set `field: null` for \
         ingestion-time partitioning"
    )))
}

/// bizon's `authentication` of the BigQuery destinations.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BigQueryAuthentication {
    /// The key's JSON text, or the path of the key file; empty: Application Default Credentials.
    #[serde(default)]
    pub service_account_key: String,
}

/// A column of a BigQuery table.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    /// Standard type name (`INT64`, `STRING`, `JSON`, …).
    pub kind: String,
    /// `NULLABLE`, `REQUIRED` or `REPEATED`.
    pub mode: String,
    pub description: Option<String>,
    /// BigQuery fills the column with it when a row leaves it out.
    pub default_value_expression: Option<String>,
    /// A RECORD column's columns.
    pub fields: Vec<Column>,
}

impl Column {
    pub fn new(name: &str, kind: &str, mode: &str) -> Self {
        Column {
            name: name.into(),
            kind: kind.into(),
            mode: mode.into(),
            description: None,
            default_value_expression: None,
            fields: Vec::new(),
        }
    }

    pub fn resource(&self) -> Json {
        let mut j = json!({"name": self.name, "type": self.kind, "mode": self.mode});
        if let Some(d) = &self.description {
            j["description"] = json!(d);
        }
        if let Some(e) = &self.default_value_expression {
            j["defaultValueExpression"] = json!(e);
        }
        if !self.fields.is_empty() {
            j["fields"] = self.fields.iter().map(Column::resource).collect();
        }
        j
    }
}

/// A `record_schemas` type as BigQuery's standard name; unknown types are refused.
pub fn bq_type(kind: &str) -> std::result::Result<&'static str, String> {
    Ok(match kind.to_ascii_uppercase().as_str() {
        "STRING" => "STRING",
        "BYTES" => "BYTES",
        "INTEGER" | "INT64" => "INT64",
        "FLOAT" | "FLOAT64" => "FLOAT64",
        "NUMERIC" => "NUMERIC",
        "BIGNUMERIC" => "BIGNUMERIC",
        "BOOLEAN" | "BOOL" => "BOOL",
        "TIMESTAMP" => "TIMESTAMP",
        "DATE" => "DATE",
        "TIME" => "TIME",
        "DATETIME" => "DATETIME",
        "GEOGRAPHY" => "GEOGRAPHY",
        "JSON" => "JSON",
        "RECORD" | "STRUCT" => "RECORD",
        other => {
            return Err(format!(
                "`{other}` is not a BigQuery column type (STRING, BYTES, INTEGER, INT64, FLOAT, FLOAT64, NUMERIC, \
                 BIGNUMERIC, BOOLEAN, BOOL, TIMESTAMP, DATE, TIME, DATETIME, GEOGRAPHY, JSON, RECORD with `fields`)"
            ))
        }
    })
}

/// The typed columns of a `record_schemas` entry (RECORD columns with their `fields`).
pub fn typed_columns(schema: &[ColumnConfig]) -> Result<Vec<Column>> {
    schema
        .iter()
        .map(|c| {
            let kind =
                bq_type(&c.kind).map_err(|e| Error::config(format!("record_schemas column `{}`: {e}", c.name)))?;
            let mode = c.mode.as_deref().unwrap_or("NULLABLE").to_ascii_uppercase();
            if !["NULLABLE", "REQUIRED", "REPEATED"].contains(&mode.as_str()) {
                return Err(Error::config(format!(
                    "record_schemas column `{}`: mode `{mode}` is not NULLABLE, REQUIRED or REPEATED",
                    c.name
                )));
            }
            let fields = match (kind, c.fields.as_deref()) {
                ("RECORD", Some(f)) if !f.is_empty() => typed_columns(f)
                    .map_err(|e| Error::config(format!("record_schemas column `{}`: {}", c.name, e.message())))?,
                ("RECORD", _) => {
                    return Err(Error::config(format!(
                        "record_schemas column `{}`: a RECORD column lists its columns under `fields` (or use JSON \
                         for nested values)",
                        c.name
                    )))
                }
                (_, Some(_)) => {
                    return Err(Error::config(format!(
                        "record_schemas column `{}`: `fields` belong to RECORD columns, not {kind}",
                        c.name
                    )))
                }
                (_, None) => Vec::new(),
            };
            Ok(Column {
                name: c.name.clone(),
                kind: kind.into(),
                mode,
                description: c.description.clone(),
                default_value_expression: c.default_value_expression.clone(),
                fields,
            })
        })
        .collect()
}

/// bizon's defaults of the keys every BigQuery destination has (serde `default` functions).
pub fn default_location() -> Option<String> {
    Some("US".into())
}
pub fn default_partitioning() -> Option<TimePartitioning> {
    Some(TimePartitioning::default())
}
pub fn default_table_prefix() -> String {
    "_bizon_".into()
}

/// A secret that never shows in `Debug`.
#[derive(Clone, Default)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "(none)" } else { "***" })
    }
}

/// The keys every BigQuery destination reads besides its own: the service-account key, where rows
/// go, the typed columns with `unnest`.
#[derive(Debug, Clone)]
pub struct DestinationKeys {
    /// `authentication.service_account_key` (empty: Application Default Credentials).
    pub key: Secret,
    /// `destination_id` as written (a `project.dataset.table`, or a table of `dataset_id`).
    pub destination_id: Option<String>,
    pub record_schemas: Vec<RecordSchemaConfig>,
    pub unnest: bool,
    /// `time_partitioning.field` is written in the config (bizon: with `unnest`, an unwritten
    /// field means ingestion-time partitioning).
    pub partition_field_written: bool,
    /// `max_concurrent_threads`: the writers a destination may run at once.
    pub threads: u32,
}

impl DestinationKeys {
    /// Read from `destination.config` (at `path`); `own` are the destination's own keys.
    pub fn parse(node: &Node, path: &str, own: &'static [&'static str]) -> std::result::Result<Self, yaml::Error> {
        let common: DestinationCommon = from_node(node, path, own)?;
        let key = match node.get("authentication") {
            Some(n) => {
                from_node::<BigQueryAuthentication>(n, &format!("{path}.authentication"), &[])?.service_account_key
            }
            None => String::new(),
        };
        for s in common.record_schemas.iter().flatten() {
            typed_columns(&s.record_schema).map_err(|e| {
                yaml::Error::new(
                    e.message(),
                    node.get("record_schemas").unwrap_or(node).mark,
                    &format!("{path}.record_schemas"),
                )
            })?;
        }
        Ok(DestinationKeys {
            key: Secret(key),
            destination_id: common.destination_id,
            record_schemas: common.record_schemas.unwrap_or_default(),
            unnest: common.unnest,
            partition_field_written: node.get("time_partitioning").and_then(|p| p.get("field")).is_some(),
            threads: common.max_concurrent_threads.max(1),
        })
    }

    /// The typed columns (mode and description included) and clustering keys of
    /// `destination_id`'s record schema, with `unnest`.
    pub fn typed(&self, destination_id: &str) -> Option<(Vec<Column>, Option<Vec<String>>)> {
        if !self.unnest {
            return None;
        }
        let s = self.record_schemas.iter().find(|s| s.destination_id == destination_id)?;
        Some((typed_columns(&s.record_schema).ok()?, s.clustering_keys.clone()))
    }
}

/// bizon's six columns of the streaming destinations (`_source_data` is JSON).
pub fn bizon_columns() -> Vec<Column> {
    vec![
        Column::new("_source_record_id", "STRING", "REQUIRED"),
        Column::new("_source_timestamp", "TIMESTAMP", "REQUIRED"),
        Column::new("_source_data", "JSON", "NULLABLE"),
        Column::new("_bizon_extracted_at", "TIMESTAMP", "REQUIRED"),
        Column::new("_bizon_loaded_at", "TIMESTAMP", "REQUIRED"),
        Column::new("_bizon_id", "STRING", "REQUIRED"),
    ]
}

/// bizon's six columns of the batch destination: all NULLABLE, `_source_data` a STRING (it
/// round-trips through Parquet).
pub fn batch_columns() -> Vec<Column> {
    vec![
        Column::new("_source_record_id", "STRING", "NULLABLE"),
        Column::new("_source_timestamp", "TIMESTAMP", "NULLABLE"),
        Column::new("_source_data", "STRING", "NULLABLE"),
        Column::new("_bizon_extracted_at", "TIMESTAMP", "NULLABLE"),
        Column::new("_bizon_loaded_at", "TIMESTAMP", "NULLABLE"),
        Column::new("_bizon_id", "STRING", "NULLABLE"),
    ]
}

/// A value for a typed column: JSON columns take the JSON text, the rest the value as is.
pub fn typed_value(value: &Json, column: &Column) -> Json {
    match (column.kind.as_str(), value) {
        ("JSON", Json::String(_)) | (_, Json::Null) => value.clone(),
        ("JSON", v) => Json::String(v.to_string()),
        _ => value.clone(),
    }
}

/// A record a BigQuery destination refuses (`why`: what its column could not hold): into the
/// dead letters when `dead` is on, else the run fails naming the record and the table.
pub fn refuse_record(
    dead: Option<&mut Vec<Rejected>>,
    what: &str,
    table: &TableRef,
    r: &RecordRef,
    why: String,
) -> Result<()> {
    match dead {
        Some(dead) => {
            dead.push(Rejected { id: r.id.to_owned(), timestamp: r.timestamp, data: r.data.to_vec(), error: why });
            Ok(())
        }
        None => Err(Error::permanent(format!(
            "{what}: record `{}` into {table}: {why} (on_error: dead_letter diverts such records and loads the rest)",
            r.id
        ))),
    }
}

/// bizon's default table name: `{table_prefix}{source}_{stream}`, or the unprefixed legacy name
/// when a table of that name already exists.
pub fn default_table(bq: &BigQuery, project: &str, dataset: &str, prefix: &str, base: &str) -> Result<TableRef> {
    let legacy = TableRef::new(project, dataset, base);
    if prefix.is_empty() {
        return Ok(legacy);
    }
    if bq.get_table(&legacy)?.is_some() {
        info!(table = %legacy, "a table with bizon's legacy (unprefixed) name exists: writing to it");
        return Ok(legacy);
    }
    Ok(TableRef::new(project, dataset, &format!("{prefix}{base}")))
}

/// The schema resource of `columns`.
pub fn schema_resource(columns: &[Column]) -> Json {
    json!({"fields": columns.iter().map(Column::resource).collect::<Vec<_>>()})
}

/// Create `t` with `columns` (and partitioning, clustering) or, when it exists, add the columns
/// it lacks (BigQuery only widens schemas). Partitioning of an existing table is left as it is,
/// with a warning when it differs.
pub fn ensure_table(
    bq: &BigQuery,
    t: &TableRef,
    columns: &[Column],
    partitioning: Option<&TimePartitioning>,
    clustering: Option<&[String]>,
) -> Result<()> {
    let mut resource = json!({"schema": schema_resource(columns)});
    if let Some(p) = partitioning {
        resource["timePartitioning"] = p.resource();
    }
    if let Some(c) = clustering.filter(|c| !c.is_empty()) {
        resource["clustering"] = json!({"fields": c});
    }
    if bq.create_table(t, resource)? {
        info!(table = %t, "table created");
        return Ok(());
    }
    let existing = bq.get_table(t)?.ok_or_else(|| Error::transient(format!("table {t} vanished while opening it")))?;
    if let (Some(p), Some(have)) = (partitioning, existing.get("timePartitioning")) {
        if have.get("field").and_then(Json::as_str) != p.field()
            || have.get("type").and_then(Json::as_str) != Some(p.kind().as_str())
        {
            warn!(table = %t, existing = %have, configured = %p.resource(), "the table's partitioning differs from the configured one: left as it is");
        }
    }
    let fields = existing.pointer("/schema/fields").and_then(Json::as_array).cloned().unwrap_or_default();
    let missing: Vec<&Column> = columns
        .iter()
        .filter(|c| {
            !fields
                .iter()
                .any(|f| f.get("name").and_then(Json::as_str).is_some_and(|n| n.eq_ignore_ascii_case(&c.name)))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    // New columns must be NULLABLE (or REPEATED): BigQuery refuses to add REQUIRED ones.
    let mut all = fields;
    for c in &missing {
        let mut c = (*c).clone();
        if c.mode == "REQUIRED" {
            c.mode = "NULLABLE".into();
        }
        let ddl = format!("ALTER TABLE {} ADD COLUMN IF NOT EXISTS `{}` {}", t.sql(), c.name, ddl_type(&c));
        bq.query(&ddl)?;
        all.push(c.resource());
    }
    bq.patch_table(t, json!({"schema": {"fields": all}}))?;
    info!(table = %t, added = ?missing.iter().map(|c| &c.name).collect::<Vec<_>>(), "columns added");
    Ok(())
}

/// A column's type in DDL (`ARRAY<STRING>` for REPEATED).
fn ddl_type(c: &Column) -> String {
    if c.mode == "REPEATED" {
        format!("ARRAY<{}>", c.kind)
    } else {
        c.kind.clone()
    }
}

/// `bizon check` of a BigQuery destination: a token for the credentials, then the dataset
/// looked up (read only). `creates`: the run creates a missing dataset.
pub fn check_dataset(key: &str, api_url: Option<&str>, project: &str, dataset: &str, creates: bool) -> Result<String> {
    let credentials = Credentials::from_config(Some(key))?;
    let who = credentials.describe();
    let bq = BigQuery::new(credentials, api_url, project);
    let exists = bq.dataset_exists(project, dataset).map_err(|e| e.context(format!("as {who}")))?;
    match (exists, creates) {
        (true, _) => Ok(format!("dataset {project}.{dataset} found, as {who}")),
        (false, true) => Ok(format!("dataset {project}.{dataset} is missing and is created by the run, as {who}")),
        (false, false) => Err(Error::config(format!(
            "dataset {project}.{dataset} does not exist (as {who}): create it or set create_dataset: true"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_partitioning_takes_bizons_forms() {
        let p: TimePartitioning = serde_json::from_value(json!("HOUR")).unwrap();
        assert_eq!((p.kind(), p.field()), (PartitionType::Hour, Some("_bizon_loaded_at")));
        let p: TimePartitioning = serde_json::from_value(json!({"type": "MONTH"})).unwrap();
        assert_eq!((p.kind(), p.field()), (PartitionType::Month, Some("_bizon_loaded_at")));
        let p: TimePartitioning = serde_json::from_value(json!({"type": "DAY", "field": null})).unwrap();
        assert_eq!(p.field(), None);
        assert_eq!(p.resource(), json!({"type": "DAY"}));
        let cols = vec![Column::new("d", "DATE", "NULLABLE")];
        let p: TimePartitioning = serde_json::from_value(json!({"field": "d"})).unwrap();
        assert_eq!(p.sql(&cols), "PARTITION BY `d`");
        assert_eq!(
            TimePartitioning::default().sql(&bizon_columns()),
            "PARTITION BY TIMESTAMP_TRUNC(`_bizon_loaded_at`, DAY)"
        );
        assert!(serde_json::from_value::<TimePartitioning>(json!("WEEK")).is_err());
    }

    #[test]
    fn partitioning_follows_bizons_rules() {
        let t = TableRef::new("p", "d", "t");
        let typed = vec![Column::new("id", "INT64", "REQUIRED"), Column::new("day", "DATE", "NULLABLE")];
        let default = TimePartitioning::default();
        // bizon's layout: `_bizon_loaded_at` is there
        assert_eq!(
            effective_partitioning(Some(&default), false, &bizon_columns(), false, &t).unwrap(),
            Some(default.clone())
        );
        // typed, no field written: ingestion time
        let p = effective_partitioning(Some(&default), false, &typed, false, &t).unwrap().unwrap();
        assert_eq!((p.kind(), p.field()), (PartitionType::Day, None));
        // a written field must be a time column of the table
        let on = |f: &str, kind: PartitionType| TimePartitioning::Full { kind, field: Some(f.into()) };
        assert_eq!(
            effective_partitioning(Some(&on("day", PartitionType::Month)), true, &typed, false, &t).unwrap(),
            Some(on("day", PartitionType::Month))
        );
        let e = effective_partitioning(Some(&on("id", PartitionType::Day)), true, &typed, false, &t).unwrap_err();
        assert!(e.message().contains("`id` is a INT64 column") && e.message().contains("field: null"), "{e}");
        let e = effective_partitioning(Some(&on("day", PartitionType::Hour)), true, &typed, false, &t).unwrap_err();
        assert!(e.message().contains("HOUR"), "{e}");
        let e = effective_partitioning(Some(&on("nope", PartitionType::Day)), true, &typed, false, &t).unwrap_err();
        assert!(e.message().contains("no column `nope`") && e.message().contains("id, day"), "{e}");
        // an existing table is left as it is
        assert_eq!(
            effective_partitioning(Some(&on("nope", PartitionType::Day)), true, &typed, true, &t).unwrap(),
            None
        );
        assert_eq!(effective_partitioning(None, false, &typed, false, &t).unwrap(), None);
    }

    #[test]
    fn record_schema_types_are_bigquerys() {
        assert_eq!(bq_type("integer").unwrap(), "INT64");
        assert_eq!(bq_type("STRUCT").unwrap(), "RECORD");
        assert!(bq_type("VARCHAR").unwrap_err().contains("VARCHAR"));
    }
}
