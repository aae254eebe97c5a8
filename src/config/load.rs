//! Reads a configuration file into a `Spec`, reporting problems with the
//! exact line and column of the token they concern.
//!
//! Three passes, each reporting everything it finds before giving up:
//! YAML syntax (serde_yaml), unknown keys anywhere in the document (checked
//! against the JSON Schema, so every misspelt key is reported with a "did you
//! mean"), then types (serde, which stops at the first). `Document::resolve`
//! adds the rules of SPEC.md. Nothing here touches the network.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::diagnostic::{MAX_SHOWN_PROBLEMS, Problem, SourceFile, SpecErrors};
use super::path::{Anchor, YamlPath};
use super::resolve::{self, Violation};
use crate::spec::Spec;
use crate::suggest::did_you_mean;
use crate::topology::Topology;

/// A configuration file that parsed, with its source kept for later errors.
#[derive(Debug, Clone)]
pub struct Document {
    pub source: Arc<SourceFile>,
    pub spec: Spec,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LoadError {
    #[error("cannot read configuration file {path}")]
    #[diagnostic(
        code(pgfleet::read),
        help("pass the file with `-f FILE` (default: pgfleet.yaml in the current directory)")
    )]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Invalid(#[from] SpecErrors),
}

/// Reads and parses `path`.
pub fn load(path: &Path) -> Result<Document, LoadError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| LoadError::Read { path: path.display().to_string(), source })?;
    Ok(parse(&path.display().to_string(), text)?)
}

/// Parses configuration text; `name` is how errors refer to it.
pub fn parse(name: &str, text: String) -> Result<Document, SpecErrors> {
    let source = Arc::new(SourceFile::new(name, text));
    let fail = |problems: Vec<Problem>| SpecErrors::new(source.clone(), problems);

    if let Err(error) = serde_yaml::from_str::<serde_yaml::Value>(source.text()) {
        return Err(fail(vec![syntax_problem(&source, &error)]));
    }

    if let Some(problem) = source.tree_problem() {
        return Err(fail(vec![problem]));
    }
    if let Some(tree) = source.tree() {
        let schema = serde_json::to_value(schemars::schema_for!(Spec)).unwrap_or(Value::Null);
        let mut problems = Vec::new();
        let mut unknown =
            UnknownKeys { source: &source, definitions: &schema["$defs"], problems: &mut problems, unshown: 0 };
        unknown.check(tree, &schema, &YamlPath::root());
        let unshown = unknown.unshown;
        if !problems.is_empty() {
            return Err(fail(problems).with_unshown(unshown));
        }
    }

    let deserializer = serde_yaml::Deserializer::from_str(source.text());
    match serde_path_to_error::deserialize::<_, Spec>(deserializer) {
        Ok(spec) => Ok(Document { source, spec }),
        Err(error) => {
            let path = path_of(error.path());
            let inner = error.into_inner();
            Err(fail(vec![type_problem(&source, path, &inner)]))
        }
    }
}

impl Document {
    /// Validates the spec against every rule of SPEC.md.
    /// Validates the spec against every rule of SPEC.md; relative paths are
    /// relative to the current directory.
    pub fn resolve(&self) -> Result<Topology, SpecErrors> {
        let working_dir = std::env::current_dir().unwrap_or_else(|_| std::path::PathBuf::from("/"));
        self.resolve_in(&working_dir)
    }

    /// As `resolve`, with relative paths taken from `working_dir`.
    pub fn resolve_in(&self, working_dir: &Path) -> Result<Topology, SpecErrors> {
        resolve::resolve(&self.spec, working_dir).map_err(|violations| {
            let unshown = violations.len().saturating_sub(MAX_SHOWN_PROBLEMS);
            let problems = violations
                .into_iter()
                .take(MAX_SHOWN_PROBLEMS)
                .map(|violation| rule_problem(&self.source, violation))
                .collect();
            SpecErrors::new(self.source.clone(), problems).with_unshown(unshown)
        })
    }
}

fn syntax_problem(source: &SourceFile, error: &serde_yaml::Error) -> Problem {
    if error.location().is_none()
        && let Some(problem) = second_document(source)
    {
        return problem;
    }
    let span = error.location().map(|location| source.token_at(location.line(), location.column()));
    Problem::syntax(strip_location(&error.to_string()), span)
}

/// serde_yaml refuses a stream of several documents without saying where
/// the second one starts. It is either a syntax error that ended the first
/// document early (reported where the second one fails), or a real second
/// document (reported at its `---`).
fn second_document(source: &SourceFile) -> Option<Problem> {
    let mut documents = serde_yaml::Deserializer::from_str(source.text()).skip(1);
    let second = documents.next()?;
    if let Err(error) = <serde_yaml::Value as serde::Deserialize>::deserialize(second)
        && let Some(location) = error.location()
    {
        let span = source.token_at(location.line(), location.column());
        return Some(Problem::syntax(strip_location(&error.to_string()), Some(span)));
    }
    let mut content_seen = false;
    let mut offset = 0;
    for line in source.text().split_inclusive('\n') {
        let marker = ["---", "..."].iter().any(|marker| {
            line.strip_prefix(marker).is_some_and(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace))
        });
        if marker && content_seen {
            let span = miette::SourceSpan::new(offset.into(), 3);
            let message = "a configuration file holds one YAML document, and a second one starts here".to_owned();
            return Some(Problem::syntax(message, Some(span)));
        }
        let trimmed = line.trim();
        content_seen |= marker || !(trimmed.is_empty() || trimmed.starts_with('#'));
        offset += line.len();
    }
    None
}

fn type_problem(source: &SourceFile, path: YamlPath, error: &serde_yaml::Error) -> Problem {
    let message = strip_location(&error.to_string());
    // A missing field is reported on the mapping that lacks it: point at its
    // key. Anything else is about a value: point at the whole token.
    let anchor = if message.starts_with("missing field") { Anchor::Key } else { Anchor::Value };
    let span = source
        .span_of(&path, anchor)
        .or_else(|| error.location().map(|location| source.token_at(location.line(), location.column())));
    Problem::invalid(path, message, span)
}

fn rule_problem(source: &SourceFile, violation: Violation) -> Problem {
    let span = source.span_near(&violation.path, violation.anchor);
    let related = violation
        .related
        .iter()
        .filter_map(|place| source.span_of(&place.path, place.anchor).map(|span| (span, place.label.clone())))
        .collect();
    Problem::rule(violation.rule, violation.path, span, violation.label, related)
}

/// serde_yaml writes " at line L column C" into its messages; the
/// diagnostic shows the place itself. Rust type names mean nothing to a
/// YAML author, so they become words.
fn strip_location(message: &str) -> String {
    let mut text = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(" at line ") {
        text.push_str(&rest[..at]);
        let after = &rest[at + " at line ".len()..];
        let digits = |text: &str| text.len() - text.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let line_digits = digits(after);
        let tail = &after[line_digits..];
        rest = match tail.strip_prefix(" column ") {
            Some(column) if line_digits > 0 => &column[digits(column)..],
            _ => {
                text.push_str(" at line ");
                after
            }
        };
    }
    text.push_str(rest);
    [
        ("expected u16", "expected a port number (1 to 65535)"),
        ("expected u32", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected f64", "expected a number"),
    ]
    .iter()
    .fold(text, |text, (from, to)| text.replace(from, to))
}

fn path_of(path: &serde_path_to_error::Path) -> YamlPath {
    use serde_path_to_error::Segment;
    path.iter().fold(YamlPath::root(), |path, segment| match segment {
        Segment::Seq { index } => path.index(*index),
        Segment::Map { key } => path.key(key.as_str()),
        Segment::Enum { .. } | Segment::Unknown => path,
    })
}

/// Walks the YAML tree beside the JSON Schema and reports every key the
/// schema does not allow.
struct UnknownKeys<'a> {
    source: &'a SourceFile,
    definitions: &'a Value,
    problems: &'a mut Vec<Problem>,
    /// Unknown keys past `MAX_SHOWN_PROBLEMS`: counted, never located or
    /// matched against the known ones, which costs time on a long line.
    unshown: usize,
}

impl<'a> UnknownKeys<'a> {
    fn dereference(&self, mut schema: &'a Value) -> &'a Value {
        while let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            match reference.strip_prefix("#/$defs/").and_then(|name| self.definitions.get(name)) {
                Some(target) => schema = target,
                None => break,
            }
        }
        schema
    }

    fn check(&mut self, node: &marked_yaml::Node, schema: &'a Value, path: &YamlPath) {
        let schema = self.dereference(schema);
        let branches = schema.get("oneOf").or_else(|| schema.get("anyOf")).and_then(Value::as_array);
        if let Some(branches) = branches {
            self.check_branches(node, branches, path);
            return;
        }
        match node {
            marked_yaml::Node::Mapping(mapping) => {
                if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                    let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
                    for (key, value) in mapping.iter() {
                        match properties.get(key.as_str()) {
                            Some(property) => self.check(value, property, &path.key(key.as_str())),
                            None if closed => self.report(key, properties.keys().map(String::as_str), path),
                            None => {}
                        }
                    }
                } else if let Some(values) = schema.get("additionalProperties").filter(|value| value.is_object()) {
                    for (key, value) in mapping.iter() {
                        self.check(value, values, &path.key(key.as_str()));
                    }
                }
            }
            marked_yaml::Node::Sequence(sequence) => {
                if let Some(items) = schema.get("items") {
                    for (index, item) in sequence.iter().enumerate() {
                        self.check(item, items, &path.index(index));
                    }
                }
            }
            marked_yaml::Node::Scalar(_) => {}
        }
    }

    /// A value that may take several shapes (an optional section, a storage
    /// `kind`, a secret reference): follow the branch its discriminating key
    /// selects, else allow the keys of every object-shaped branch.
    fn check_branches(&mut self, node: &marked_yaml::Node, branches: &'a [Value], path: &YamlPath) {
        let marked_yaml::Node::Mapping(mapping) = node else {
            // Type mismatches are serde's to report.
            return;
        };
        let objects: Vec<&Value> = branches
            .iter()
            .map(|branch| self.dereference(branch))
            .filter(|branch| branch.get("properties").is_some() || branch.get("oneOf").is_some())
            .collect();
        if let [single] = objects.as_slice() {
            return self.check(node, single, path);
        }
        let selected = objects.iter().find(|branch| {
            branch["properties"].as_object().is_some_and(|properties| {
                properties.iter().any(|(key, property)| {
                    property
                        .get("const")
                        .and_then(Value::as_str)
                        .is_some_and(|wanted| mapping.get_scalar(key).is_some_and(|given| given.as_str() == wanted))
                })
            })
        });
        if let Some(branch) = selected {
            return self.check(node, branch, path);
        }
        let allowed: Vec<&str> = objects
            .iter()
            .filter_map(|branch| branch["properties"].as_object())
            .flat_map(|properties| properties.keys().map(String::as_str))
            .collect();
        if allowed.is_empty() {
            return;
        }
        for (key, _) in mapping.iter() {
            if !allowed.contains(&key.as_str()) {
                self.report(key, allowed.iter().copied(), path);
            }
        }
    }

    fn report<'k>(
        &mut self,
        key: &marked_yaml::types::MarkedScalarNode,
        expected: impl Iterator<Item = &'k str> + Clone,
        parent: &YamlPath,
    ) {
        if self.problems.len() >= MAX_SHOWN_PROBLEMS {
            self.unshown += 1;
            return;
        }
        let mut expected: Vec<String> = expected.map(str::to_owned).collect();
        expected.sort();
        expected.dedup();
        let suggestion = did_you_mean(key.as_str(), expected.iter().map(String::as_str)).map(str::to_owned);
        let span = key.span().start().map(|marker| self.source.token_at(marker.line(), marker.column()));
        self.problems.push(Problem::unknown_key(parent.clone(), key.as_str().to_owned(), suggestion, expected, span));
    }
}

#[cfg(test)]
mod tests {
    use super::strip_location;

    /// The first diagnostic's line and column, for input that is refused.
    fn located(text: &str) -> Option<(usize, usize)> {
        let errors = match super::parse("t.yaml", text.to_owned()) {
            Ok(document) => document.resolve_in(std::path::Path::new("/w")).expect_err("refused"),
            Err(errors) => errors,
        };
        errors.diagnostics()[0].location()
    }

    #[test]
    fn problems_the_property_test_found_are_located() {
        // A second document, and a syntax error serde_yaml reads as one.
        assert_eq!(located("version: 1\n---\nversion: 2\n"), Some((2, 1)));
        assert_eq!(located("\n yaml-language-server: x\nversion: 1\n"), Some((3, 1)));
        // A flow mapping continued without indentation: serde_yaml reads it,
        // the YAML spec and the locator do not.
        assert_eq!(located("version: 1\nhosts: { a:\nb }\nenvironments: []\n"), Some((3, 1)));
        assert_eq!(located("a: &x 1\n"), Some((1, 7)));
        // A lone CR ends a line for YAML and miette alike.
        assert_eq!(located("version: 1\rhosts: {}\renvironments: []\rnope: 1\n"), Some((4, 1)));
        // A rule about a default points at the closest key the file has.
        let collision = "version: 1\nhosts:\n  h: { transport: local }\nenvironments:\n  - id: e\n    primary: { host: h, data_dir: /d }\n    replicas:\n      - { name: a, host: h, address: 127.0.0.2, data_dir: /a }\n      - { name: b, host: h, address: 127.0.0.2, data_dir: /b }\n";
        assert_eq!(located(collision), Some((9, 9)));
    }

    #[test]
    fn locations_and_type_names_leave_messages() {
        assert_eq!(
            strip_location(
                "did not find expected ',' at line 4 column 13, while parsing a flow mapping at line 3 column 9"
            ),
            "did not find expected ',', while parsing a flow mapping"
        );
        assert_eq!(
            strip_location("a: invalid type: string, expected u16"),
            "a: invalid type: string, expected a port number (1 to 65535)"
        );
        assert_eq!(strip_location("stays at line x"), "stays at line x");
    }
}
