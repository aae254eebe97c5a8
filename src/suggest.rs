//! "Did you mean" suggestions for misspelt keys and names.

/// The candidate closest to `word`, when it is close enough to be a likely
/// typo: Jaro-Winkler similarity of at least 0.8, or (for short words, where
/// that score is harsh) one edit or swap away.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| {
            let close = strsim::damerau_levenshtein(word, candidate) <= 1;
            (if close { 1.0 } else { strsim::jaro_winkler(word, candidate) }, candidate)
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::did_you_mean;

    #[test]
    fn suggests_close_words_only() {
        let keys = ["replicas", "replication", "resources"];
        assert_eq!(did_you_mean("replicaz", keys), Some("replicas"));
        assert_eq!(did_you_mean("replicaton", keys), Some("replication"));
        assert_eq!(did_you_mean("zzz", keys), None);
        assert_eq!(did_you_mean("evn", ["env", "file", "generate"]), Some("env"));
    }
}
