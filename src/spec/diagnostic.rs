//! Problems in a configuration file as miette diagnostics: owns the mapping
//! from YAML paths and line/column pairs to byte spans in the source text.

use std::fmt;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceSpan};

use super::path::{Anchor, Segment, YamlPath};
use super::resolve::Rule;

/// The text of a configuration file, its name, and its YAML tree with marks.
#[derive(Debug)]
pub struct SourceFile {
    name: String,
    text: String,
    line_starts: Vec<usize>,
    tree: Option<marked_yaml::Node>,
}

impl SourceFile {
    pub fn new(name: &str, text: String) -> Self {
        let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(at, _)| at + 1)).collect();
        let tree = marked_yaml::parse_yaml(0, &text).ok();
        SourceFile { name: name.to_owned(), text, line_starts, tree }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn tree(&self) -> Option<&marked_yaml::Node> {
        self.tree.as_ref()
    }

    /// Byte offset of a 1-based line and 1-based column counted in
    /// characters, clamped to the text.
    fn offset(&self, line: usize, column: usize) -> usize {
        let Some(&line_start) = self.line_starts.get(line.saturating_sub(1)) else {
            return self.text.len();
        };
        let rest = &self.text[line_start..];
        let within = rest.char_indices().nth(column.saturating_sub(1)).map_or(rest.len(), |(at, _)| at);
        line_start + within
    }

    /// The token starting at a line and column: a quoted scalar to its
    /// closing quote, a plain one to the end of the line, a comment or a flow
    /// delimiter.
    pub fn token_at(&self, line: usize, column: usize) -> SourceSpan {
        let start = self.offset(line, column);
        let rest = &self.text[start..];
        let line_rest = rest.split('\n').next().unwrap_or("");
        let length = match line_rest.chars().next() {
            Some(quote @ ('"' | '\'')) => line_rest[1..].find(quote).map_or(line_rest.len(), |end| end + 2),
            Some(_) => {
                let end = line_rest
                    .find(" #")
                    .into_iter()
                    .chain(line_rest.find([',', '}', ']']))
                    .chain(line_rest.find(": "))
                    .min()
                    .unwrap_or(line_rest.len());
                let end = if line_rest[..end].ends_with(':') { end - 1 } else { end };
                line_rest[..end].trim_end().len().max(1)
            }
            None => 0,
        };
        SourceSpan::new(start.into(), length)
    }

    /// Span of the token a path names: a value, or the key it sits under.
    /// Compound values (mappings, sequences) are shown by their key, which
    /// reads better than a many-line span.
    pub fn span_of(&self, path: &YamlPath, anchor: Anchor) -> Option<SourceSpan> {
        let mut node = self.tree.as_ref()?;
        let mut key_marker = None;
        for segment in path.segments() {
            match segment {
                Segment::Key(wanted) => {
                    let mapping = node.as_mapping()?;
                    let (key, value) = mapping.iter().find(|(key, _)| key.as_str() == wanted)?;
                    key_marker = key.span().start().copied();
                    node = value;
                }
                Segment::Index(index) => {
                    let sequence = node.as_sequence()?;
                    node = sequence.get(*index)?;
                    key_marker = node.span().start().copied();
                }
            }
        }
        let value_is_scalar = node.as_scalar().is_some();
        let marker = match anchor {
            Anchor::Value if value_is_scalar => node.span().start().copied().or(key_marker),
            _ => key_marker.or_else(|| node.span().start().copied()),
        }?;
        Some(self.token_at(marker.line(), marker.column()))
    }
}

/// What is wrong, before it is placed in the file.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProblemKind {
    #[error("invalid YAML: {message}")]
    Syntax { message: String },
    #[error("unknown key `{key}`{}", in_path(parent))]
    UnknownKey { parent: YamlPath, key: String, suggestion: Option<String>, expected: Vec<String> },
    /// serde's message already names the path.
    #[error("{message}")]
    Invalid { path: YamlPath, message: String },
    #[error(transparent)]
    Rule(Rule),
}

fn in_path(path: &YamlPath) -> String {
    if path.segments().is_empty() { String::new() } else { format!(" in `{path}`") }
}

/// One problem with its place in the file.
#[derive(Debug, Clone)]
pub struct Problem {
    kind: ProblemKind,
    span: Option<SourceSpan>,
    label: String,
    related: Vec<(SourceSpan, String)>,
}

impl Problem {
    pub fn syntax(message: String, span: Option<SourceSpan>) -> Self {
        Problem { kind: ProblemKind::Syntax { message }, span, label: "here".into(), related: Vec::new() }
    }

    pub fn unknown_key(
        parent: YamlPath,
        key: String,
        suggestion: Option<String>,
        expected: Vec<String>,
        span: Option<SourceSpan>,
    ) -> Self {
        Problem {
            kind: ProblemKind::UnknownKey { parent, key, suggestion, expected },
            span,
            label: "unknown key".into(),
            related: Vec::new(),
        }
    }

    pub fn invalid(path: YamlPath, message: String, span: Option<SourceSpan>) -> Self {
        Problem { kind: ProblemKind::Invalid { path, message }, span, label: "here".into(), related: Vec::new() }
    }

    pub fn rule(
        rule: Rule,
        path: YamlPath,
        span: Option<SourceSpan>,
        label: String,
        related: Vec<(SourceSpan, String)>,
    ) -> Self {
        // Without a span the path is the only pointer left: keep it in the
        // label so the user still knows where to look.
        let label = if span.is_none() { format!("{label} ({path})") } else { label };
        Problem { kind: ProblemKind::Rule(rule), span, label, related }
    }

    pub fn kind(&self) -> &ProblemKind {
        &self.kind
    }
}

/// A problem bound to its file, ready for miette.
#[derive(Debug, Clone)]
pub struct SpecDiagnostic {
    problem: Problem,
    source: NamedSource<Arc<String>>,
}

impl fmt::Display for SpecDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.problem.kind.fmt(f)
    }
}

impl std::error::Error for SpecDiagnostic {}

impl Diagnostic for SpecDiagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        let code = match &self.problem.kind {
            ProblemKind::Syntax { .. } => "pgfleet::yaml",
            ProblemKind::UnknownKey { .. } => "pgfleet::unknown_key",
            ProblemKind::Invalid { .. } => "pgfleet::type",
            ProblemKind::Rule(rule) => rule.code(),
        };
        Some(Box::new(code))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        let help = match &self.problem.kind {
            ProblemKind::UnknownKey { suggestion: Some(suggestion), .. } => format!("did you mean `{suggestion}`?"),
            ProblemKind::UnknownKey { expected, .. } => format!("expected one of: {}", expected.join(", ")),
            ProblemKind::Rule(rule) => rule.help()?,
            ProblemKind::Syntax { .. } | ProblemKind::Invalid { .. } => return None,
        };
        Some(Box::new(help))
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let primary =
            self.problem.span.map(|span| LabeledSpan::new_primary_with_span(Some(self.problem.label.clone()), span));
        let related =
            self.problem.related.iter().map(|(span, label)| LabeledSpan::new_with_span(Some(label.clone()), *span));
        Some(Box::new(primary.into_iter().chain(related)))
    }
}

/// Every problem found in one file.
#[derive(Debug, Clone)]
pub struct SpecErrors {
    file: String,
    diagnostics: Vec<SpecDiagnostic>,
}

impl SpecErrors {
    pub fn new(source: Arc<SourceFile>, problems: Vec<Problem>) -> Self {
        let named = NamedSource::new(source.name(), Arc::new(source.text().to_owned())).with_language("yaml");
        let diagnostics =
            problems.into_iter().map(|problem| SpecDiagnostic { problem, source: named.clone() }).collect();
        SpecErrors { file: source.name().to_owned(), diagnostics }
    }

    pub fn diagnostics(&self) -> &[SpecDiagnostic] {
        &self.diagnostics
    }

    pub fn problems(&self) -> impl Iterator<Item = &ProblemKind> {
        self.diagnostics.iter().map(|diagnostic| &diagnostic.problem.kind)
    }
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.diagnostics.len() {
            1 => write!(f, "{} is not valid: 1 problem", self.file),
            count => write!(f, "{} is not valid: {count} problems", self.file),
        }
    }
}

impl std::error::Error for SpecErrors {}

impl Diagnostic for SpecErrors {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new("pgfleet::invalid"))
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        Some(Box::new(self.diagnostics.iter().map(|diagnostic| diagnostic as &dyn Diagnostic)))
    }
}
