//! Paths into the YAML document (`environments[0].replicas[1].name`).
//!
//! Every validation error carries one; `load` turns it into the line and
//! column of the token it names.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// Which part of a mapping entry an error points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Anchor {
    /// The value (the default): `port: 5432` points at `5432`.
    #[default]
    Value,
    /// The key: an unknown or duplicated key points at the key itself.
    Key,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct YamlPath {
    segments: Vec<Segment>,
}

impl YamlPath {
    pub fn root() -> Self {
        YamlPath::default()
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    #[must_use]
    pub fn key(&self, key: impl Into<String>) -> Self {
        let mut path = self.clone();
        path.segments.push(Segment::Key(key.into()));
        path
    }

    /// The path one step up, or `None` at the root.
    #[must_use]
    pub fn parent(&self) -> Option<Self> {
        let (_, rest) = self.segments.split_last()?;
        Some(YamlPath { segments: rest.to_vec() })
    }

    #[must_use]
    pub fn index(&self, index: usize) -> Self {
        let mut path = self.clone();
        path.segments.push(Segment::Index(index));
        path
    }
}

impl fmt::Display for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return f.write_str("(document)");
        }
        for (position, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Key(key) if position == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_like_the_yaml_reads() {
        let path = YamlPath::root().key("environments").index(0).key("replicas").index(1).key("name");
        assert_eq!(path.to_string(), "environments[0].replicas[1].name");
    }
}
