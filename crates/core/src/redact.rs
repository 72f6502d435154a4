//! Secret values resolved from references (`gsm://`), kept out of every line bizon prints: the
//! resolver registers each value, and the log writer and the error printer replace them.

use std::borrow::Cow;
use std::sync::RwLock;

static VALUES: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// What a secret value is replaced with.
pub const MASK: &str = "***";

/// Keep `value` out of printed lines from now on (values shorter than 4 characters are too
/// common in ordinary text to be replaced everywhere).
pub fn register(value: &str) {
    let value = value.trim();
    if value.chars().count() < 4 {
        return;
    }
    let mut values = VALUES.write().unwrap_or_else(|e| e.into_inner());
    if !values.iter().any(|v| v == value) {
        values.push(value.to_owned());
        // Longest first: a value containing another is replaced whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }
}

/// `text` with every registered value replaced by [`MASK`].
pub fn redact(text: &str) -> Cow<'_, str> {
    let values = VALUES.read().unwrap_or_else(|e| e.into_inner());
    if !values.iter().any(|v| text.contains(v.as_str())) {
        return Cow::Borrowed(text);
    }
    let mut out = text.to_owned();
    for v in values.iter() {
        out = out.replace(v.as_str(), MASK);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn registered_values_are_masked_longest_first() {
        super::register("hunter2-long-secret");
        super::register("hunter2");
        super::register("abc");
        assert_eq!(super::redact("pw=hunter2-long-secret; other=hunter2; abc"), "pw=***; other=***; abc");
        assert!(matches!(super::redact("nothing here"), std::borrow::Cow::Borrowed(_)));
    }
}
