//! "Did you mean …?" for config keys, connector names and enum values: every config error that
//! names an unknown word offers the closest valid one.

/// The candidate closest to `word` (Levenshtein distance, ignoring ASCII case), if it is close
/// enough to be a plausible typo: at most a third of the longer word's length, or 2 edits for
/// short words.
pub fn closest<'a, I: IntoIterator<Item = &'a str>>(word: &str, candidates: I) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The hint after "unknown key `…`" and its kin: ``"; did you mean `x`?"`` naming the
/// [`closest`] candidate, or an empty string when none is close.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(word, candidates).map(|s| format!("; did you mean `{s}`?")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_finds_typos_only() {
        let keys = ["name", "stream", "sync_mode", "cursor_field"];
        assert_eq!(closest("sync_mod", keys), Some("sync_mode"));
        assert_eq!(closest("strem", keys), Some("stream"));
        assert_eq!(closest("STREAM", keys), Some("stream"));
        assert_eq!(closest("completely_else", keys), None);
        assert_eq!(closest("x", []), None);
    }

    #[test]
    fn closest_prefers_the_first_of_equal_distances() {
        assert_eq!(closest("bat", ["cat", "hat"]), Some("cat"));
    }

    #[test]
    fn did_you_mean_is_a_hint_or_nothing() {
        let keys = ["buffer_size", "buffer_flush_timeout"];
        assert_eq!(did_you_mean("buffer_sise", keys), "; did you mean `buffer_size`?");
        assert_eq!(did_you_mean("zzz", keys), "");
    }
}
