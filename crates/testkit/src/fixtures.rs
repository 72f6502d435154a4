//! Fixtures: unique scratch directories, record batches, readers of bizon's NDJSON rows.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use bizon_core::RecordBatch;

/// A directory unique to this test (`bizon-test-<label>-` and a random suffix, in the system's
/// temp dir), removed on drop: `tempfile` picks the name and creates it atomically, so parallel
/// tests and processes never share one.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    pub fn new(label: &str) -> Self {
        let dir = tempfile::Builder::new().prefix(&format!("bizon-test-{label}-")).tempdir().expect("create temp dir");
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        self.0.path()
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.path().join(p)
    }
}

/// A batch of `n` records with ids `start..start+n` and a small JSON payload.
pub fn batch(start: u64, n: u64) -> RecordBatch {
    let mut b = RecordBatch::default();
    for i in start..start + n {
        b.push(&i.to_string(), 1_700_000_000_000_000 + i as i64, format!("{{\"id\":{i},\"v\":\"r{i}\"}}").as_bytes());
    }
    b
}

/// Every line of an NDJSON file, parsed. Panics (failing the test) on a malformed line: a
/// partial row is exactly what the file destination must never leave behind.
pub fn read_rows(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{}:{}: bad row {e}: {l:.200}", path.display(), i + 1))
        })
        .collect()
}

/// The `source_record_id` of every row, as numbers.
pub fn read_ids(path: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            let key = "\"source_record_id\":\"";
            let at =
                l.find(key).unwrap_or_else(|| panic!("{}:{}: no source_record_id: {l:.200}", path.display(), i + 1));
            let rest = &l[at + key.len()..];
            let end = rest.find('"').unwrap_or_else(|| panic!("{}:{}: truncated row", path.display(), i + 1));
            assert!(l.ends_with("\"}"), "{}:{}: partial row: {l:.200}", path.display(), i + 1);
            rest[..end].parse().unwrap_or_else(|_| panic!("{}:{}: id not a number", path.display(), i + 1))
        })
        .collect()
}

/// (missing, duplicates) of `ids` against `0..expected`.
pub fn missing_and_duplicates(ids: &[u64], expected: u64) -> (u64, u64) {
    let mut seen = HashSet::with_capacity(ids.len());
    let mut dups = 0;
    for id in ids {
        if !seen.insert(*id) {
            dups += 1;
        }
    }
    let missing = (0..expected).filter(|i| !seen.contains(i)).count() as u64;
    (missing, dups)
}

#[cfg(test)]
mod tests {
    use super::TempDir;

    #[test]
    fn temp_dirs_are_unique_and_removed_on_drop() {
        let (a, b) = (TempDir::new("same"), TempDir::new("same"));
        assert_ne!(a.path(), b.path());
        assert!(a.path().is_dir());
        let name = a.path().file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        assert!(name.starts_with("bizon-test-same-"), "{name}");
        std::fs::write(a.join("f.json"), b"{}").unwrap();
        let path = a.path().to_owned();
        drop(a);
        assert!(!path.exists());
    }
}
