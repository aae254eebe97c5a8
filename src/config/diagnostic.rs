//! Problems in a configuration file as miette diagnostics: owns the mapping
//! from YAML paths and line/column pairs to byte spans in the source text,
//! and what a diagnostic shows of the file.
//!
//! What is shown is bounded whatever the file holds: at most
//! `MAX_SHOWN_PROBLEMS` diagnostics, source lines cut to a window around
//! the token pointed at, and long words and control characters in
//! messages shortened or escaped. Without that, one 200 kB line of unknown
//! keys printed the line once per key (hundreds of MB, minutes) and a
//! token past column 65535 made miette panic.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents};

use super::path::{Anchor, Segment, YamlPath};
use super::resolve::Rule;

/// The text of a configuration file, its name, and its YAML tree with marks.
#[derive(Debug)]
pub struct SourceFile {
    name: String,
    text: Arc<String>,
    line_starts: Vec<usize>,
    tree: Result<marked_yaml::Node, marked_yaml::LoadError>,
}

impl SourceFile {
    pub fn new(name: &str, text: String) -> Self {
        // YAML, serde_yaml's locations and miette all count a lone `\r` as a
        // line break, as well as `\n` and `\r\n`.
        let bytes = text.as_bytes();
        let line_starts = std::iter::once(0)
            .chain(bytes.iter().enumerate().filter_map(|(at, byte)| match byte {
                b'\n' => Some(at + 1),
                b'\r' if bytes.get(at + 1) != Some(&b'\n') => Some(at + 1),
                _ => None,
            }))
            .collect();
        let tree = marked_yaml::parse_yaml(0, &text);
        SourceFile { name: name.to_owned(), text: Arc::new(text), line_starts, tree }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn tree(&self) -> Option<&marked_yaml::Node> {
        self.tree.as_ref().ok()
    }

    /// Why the YAML tree with marks could not be built, as a problem at the
    /// place it names. Without the tree no key can be checked or located,
    /// so a file it cannot read is refused even where serde_yaml (more
    /// lenient than the YAML spec about indentation in flow collections)
    /// would read it.
    pub fn tree_problem(&self) -> Option<Problem> {
        use marked_yaml::LoadError;
        let error = self.tree.as_ref().err()?;
        let (marker, message) = match error {
            LoadError::ScanError(marker, scan) => (Some(marker), scan.info().to_owned()),
            LoadError::UnexpectedAnchor(marker) => (
                Some(marker),
                "YAML anchors and aliases (`&name`, `*name`) are not supported in a pgfleet configuration".to_owned(),
            ),
            LoadError::UnexpectedTag(marker) => {
                (Some(marker), "YAML tags (`!!str`, `!name`) are not supported in a pgfleet configuration".to_owned())
            }
            LoadError::TopLevelMustBeMapping(marker) => (Some(marker), "the file must be a mapping of keys".to_owned()),
            LoadError::MappingKeyMustBeScalar(marker) => (Some(marker), "keys must be plain words".to_owned()),
            other => (None, other.to_string()),
        };
        let span = marker.map(|marker| self.token_at(marker.line(), marker.column()));
        Some(Problem::syntax(message, span))
    }

    /// 1-based line and column (in bytes, as miette counts them) of a byte
    /// offset.
    fn line_column(&self, offset: usize) -> (usize, usize) {
        let line = self.line_starts.partition_point(|&start| start <= offset).max(1);
        (line, offset - self.line_starts[line - 1] + 1)
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
        let line_rest = rest.split(['\n', '\r']).next().unwrap_or("");
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
    /// As `span_of`, or where the path is not in the file (a rule about a
    /// default: the replica's port it did not set), the closest enclosing
    /// key that is.
    pub fn span_near(&self, path: &YamlPath, anchor: Anchor) -> Option<SourceSpan> {
        if let Some(span) = self.span_of(path, anchor) {
            return Some(span);
        }
        let mut place = path.parent();
        while let Some(path) = place {
            if let Some(span) = self.span_of(&path, Anchor::Key) {
                return Some(span);
            }
            place = path.parent();
        }
        None
    }

    pub fn span_of(&self, path: &YamlPath, anchor: Anchor) -> Option<SourceSpan> {
        let mut node = self.tree()?;
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

/// A problem bound to its file, ready for miette. Its spans point into
/// `excerpt`, not into the file.
#[derive(Debug, Clone)]
pub struct SpecDiagnostic {
    problem: Problem,
    excerpt: Excerpt,
    /// 1-based line and column in the file of the token pointed at.
    location: Option<(usize, usize)>,
}

impl SpecDiagnostic {
    fn new(source: &SourceFile, mut problem: Problem) -> Self {
        let location = problem.span.map(|span| source.line_column(span.offset()));
        let spans: Vec<SourceSpan> =
            problem.span.iter().chain(problem.related.iter().map(|(span, _)| span)).copied().collect();
        let (excerpt, shown) = Excerpt::new(source, &spans);
        let mut shown = shown.into_iter();
        if problem.span.is_some() {
            problem.span = shown.next().flatten();
        }
        // A related place cut off with the rest of its long line is dropped:
        // the message and the primary label still say what is wrong.
        problem.related = std::mem::take(&mut problem.related)
            .into_iter()
            .zip(shown)
            .filter_map(|((_, label), span)| span.map(|span| (span, label)))
            .collect();
        SpecDiagnostic { problem, excerpt, location }
    }

    /// Where in the file the problem is: 1-based line and column (bytes).
    pub fn location(&self) -> Option<(usize, usize)> {
        self.location
    }

    pub fn kind(&self) -> &ProblemKind {
        &self.problem.kind
    }
}

impl fmt::Display for SpecDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&shown_text(&self.problem.kind.to_string()))
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
        Some(Box::new(shown_text(&help).into_owned()))
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.excerpt)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let label = |text: &str| Some(shown_text(text).into_owned());
        let primary =
            self.problem.span.map(|span| LabeledSpan::new_primary_with_span(label(&self.problem.label), span));
        let related =
            self.problem.related.iter().map(move |(span, text)| LabeledSpan::new_with_span(label(text), *span));
        Some(Box::new(primary.into_iter().chain(related)))
    }
}

/// At most this many problems of one file are rendered; the count says how
/// many there were.
pub const MAX_SHOWN_PROBLEMS: usize = 20;
/// Source lines longer than this many bytes are shown cut to a window.
const MAX_SHOWN_LINE: usize = 160;
/// How much of a cut line is shown before the token pointed at.
const SHOWN_BEFORE_TOKEN: usize = 40;
/// Words (runs without blanks) in messages longer than this many
/// characters are shortened: a value quoted back in a message may be the
/// whole long line.
const MAX_SHOWN_WORD: usize = 80;
/// How many characters of a cut word's end are kept.
const KEPT_WORD_END: usize = 8;
const CUT_MARK: &str = "…";

/// Text for a message or label: control characters escaped (a newline in a
/// quoted value would otherwise break the message apart) and very long
/// words cut in the middle, keeping their ends (a closing quote, a comma).
fn shown_text(text: &str) -> Cow<'_, str> {
    let has_long_word = text.split(char::is_whitespace).any(|word| word.len() > MAX_SHOWN_WORD);
    if !has_long_word && !text.contains(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len().min(4 * MAX_SHOWN_WORD));
    let push = |shown: &mut String, part: &str| {
        for character in part.chars() {
            if character.is_control() {
                shown.extend(character.escape_default());
            } else {
                shown.push(character);
            }
        }
    };
    // Split on blanks only: a control character is part of the word it
    // sits in, and is escaped rather than kept.
    let blank = |c: char| c.is_whitespace() && !c.is_control();
    let mut rest = text;
    while !rest.is_empty() {
        let word_end = rest.find(blank).unwrap_or(rest.len());
        let (word, after) = rest.split_at(word_end);
        let characters = word.chars().count();
        if characters > MAX_SHOWN_WORD {
            let head = word.char_indices().nth(MAX_SHOWN_WORD - KEPT_WORD_END).map_or(word.len(), |(at, _)| at);
            let tail = word.char_indices().nth(characters - KEPT_WORD_END).map_or(word.len(), |(at, _)| at);
            push(&mut shown, &word[..head]);
            shown.push_str(CUT_MARK);
            push(&mut shown, &word[tail..]);
        } else {
            push(&mut shown, word);
        }
        let blanks_end = after.find(|c: char| !blank(c)).unwrap_or(after.len());
        shown.push_str(&after[..blanks_end]);
        rest = &after[blanks_end..];
    }
    Cow::Owned(shown)
}

/// The file as one diagnostic shows it: every line longer than
/// `MAX_SHOWN_LINE` is cut to a window, around the diagnostic's first token
/// on that line when it has one, with `…` where text was left out. Reports
/// lines and columns of the file itself, so the header still says where
/// the token is.
#[derive(Debug, Clone)]
struct Excerpt {
    name: String,
    text: Arc<String>,
    cuts: Vec<Cut>,
}

/// A cut line: where it is in the excerpt, and how far its columns are
/// from the file's.
#[derive(Debug, Clone, Copy)]
struct Cut {
    start: usize,
    end: usize,
    column_shift: usize,
    mark: usize,
}

impl Excerpt {
    /// The excerpt, and each of `spans` moved into it (`None` when it falls
    /// in a part that was cut out).
    fn new(source: &SourceFile, spans: &[SourceSpan]) -> (Excerpt, Vec<Option<SourceSpan>>) {
        let text = source.text();
        let name = source.name().to_owned();
        let line_end = |index: usize| source.line_starts.get(index + 1).copied().unwrap_or(text.len());
        let long_lines: Vec<usize> = (0..source.line_starts.len())
            .filter(|&index| line_end(index) - source.line_starts[index] > MAX_SHOWN_LINE + 1)
            .collect();
        if long_lines.is_empty() {
            let excerpt = Excerpt { name, text: source.text.clone(), cuts: Vec::new() };
            return (excerpt, spans.iter().copied().map(Some).collect());
        }

        let mut shown = String::with_capacity(text.len().min(long_lines.len() * 2 * MAX_SHOWN_LINE + text.len() / 2));
        let mut cuts = Vec::new();
        let mut moved: Vec<Option<SourceSpan>> = vec![None; spans.len()];
        let mut copied_to = 0;
        let move_spans = |from: usize, to: usize, shift: isize, moved: &mut Vec<Option<SourceSpan>>| {
            for (index, span) in spans.iter().enumerate() {
                let offset = span.offset();
                if (from..to).contains(&offset) || (offset == to && to == text.len()) {
                    let start = offset.checked_add_signed(shift).unwrap_or(offset);
                    moved[index] = Some(SourceSpan::new(start.into(), span.len()));
                }
            }
        };
        for index in long_lines {
            let start = source.line_starts[index];
            let end = line_end(index);
            let content_end = text[..end].trim_end_matches(['\n', '\r']).len().max(start);
            // Unchanged text before this line.
            move_spans(copied_to, start, shown.len() as isize - copied_to as isize, &mut moved);
            shown.push_str(&text[copied_to..start]);
            copied_to = end;

            let anchor = spans.iter().map(|span| span.offset()).find(|offset| (start..=content_end).contains(offset));
            let window_start =
                floor_boundary(text, anchor.map_or(start, |at| at.saturating_sub(SHOWN_BEFORE_TOKEN).max(start)));
            let window_end = floor_boundary(text, (window_start + MAX_SHOWN_LINE).min(content_end));
            let shown_start = shown.len();
            let mark = if window_start > start { CUT_MARK } else { "" };
            shown.push_str(mark);
            let window_at = shown.len();
            shown.push_str(&text[window_start..window_end]);
            if window_end < content_end {
                shown.push_str(CUT_MARK);
            }
            for (span_index, span) in spans.iter().enumerate() {
                let offset = span.offset();
                if (window_start..=window_end).contains(&offset) && (start..=content_end).contains(&offset) {
                    let length = span.len().min(window_end - offset);
                    moved[span_index] = Some(SourceSpan::new((window_at + offset - window_start).into(), length));
                }
            }
            cuts.push(Cut {
                start: shown_start,
                end: shown.len(),
                column_shift: window_start - start,
                mark: mark.len(),
            });
            shown.push_str(&text[content_end..end]);
        }
        move_spans(copied_to, text.len(), shown.len() as isize - copied_to as isize, &mut moved);
        shown.push_str(&text[copied_to..]);
        (Excerpt { name, text: Arc::new(shown), cuts }, moved)
    }
}

fn floor_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

impl SourceCode for Excerpt {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let contents = self.text.as_str().read_span(span, context_lines_before, context_lines_after)?;
        let mut column = contents.column();
        // Only a read without lines before it reports the span's own
        // column (miette's header); move it back to the file's.
        if context_lines_before == 0
            && let Some(cut) = self.cuts.iter().find(|cut| (cut.start..=cut.end).contains(&span.offset()))
        {
            column = column.saturating_sub(cut.mark) + cut.column_shift;
        }
        let contents = MietteSpanContents::new_named(
            self.name.clone(),
            contents.data(),
            *contents.span(),
            contents.line(),
            column,
            contents.line_count(),
        )
        .with_language("yaml");
        Ok(Box::new(contents))
    }
}

/// Every problem found in one file (the first `MAX_SHOWN_PROBLEMS` of them
/// as diagnostics).
#[derive(Debug, Clone)]
pub struct SpecErrors {
    file: String,
    diagnostics: Vec<SpecDiagnostic>,
    total: usize,
}

impl SpecErrors {
    /// `problems` beyond `MAX_SHOWN_PROBLEMS` are counted, not shown.
    pub fn new(source: Arc<SourceFile>, problems: Vec<Problem>) -> Self {
        let total = problems.len();
        let diagnostics = problems
            .into_iter()
            .take(MAX_SHOWN_PROBLEMS)
            .map(|problem| SpecDiagnostic::new(&source, problem))
            .collect();
        SpecErrors { file: source.name().to_owned(), diagnostics, total }
    }

    /// Adds problems that were found but never built, to the count.
    #[must_use]
    pub fn with_unshown(mut self, count: usize) -> Self {
        self.total += count;
        self
    }

    /// How many problems the file has, shown or not.
    pub fn total(&self) -> usize {
        self.total
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
        match self.total {
            1 => write!(f, "{} is not valid: 1 problem", self.file)?,
            count => write!(f, "{} is not valid: {count} problems", self.file)?,
        }
        if self.diagnostics.len() < self.total {
            write!(f, " (the first {} are shown)", self.diagnostics.len())?;
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use crate::config::load;
    use crate::printer::render;

    fn rendered(yaml: String) -> String {
        let errors = load::parse("long.yaml", yaml).expect_err("rejected");
        errors.diagnostics().iter().map(|diagnostic| render(diagnostic, false, 100)).collect()
    }

    #[test]
    fn a_long_line_is_shown_cut_around_the_token_with_the_file_column() {
        let padding = "x".repeat(200_000);
        let text = rendered(format!("version: 1\nhosts: {{}}\nenvironments: []\nx: [\"{padding}\"]\n"));
        assert!(text.len() < 2_000, "{} bytes:\n{text}", text.len());
        assert!(text.contains("[long.yaml:4:1]"), "{text}");
        // The line is shown from the token on, with the cut marked.
        assert!(text.contains("│ x: [\"xxxx") && text.contains("xxxx…\n"), "{text}");

        let text = rendered(format!(
            "version: 1\nhosts: {{}}\nenvironments: []\norganization: {{ name: a, {padding}x: 1 }}\n"
        ));
        assert!(text.contains("[long.yaml:4:"), "{text}");
        assert!(text.len() < 2_000, "{} bytes:\n{text}", text.len());
    }

    #[test]
    fn an_unknown_key_far_along_a_long_line_is_located_exactly() {
        let padding = "1, ".repeat(30_000);
        let yaml = format!("version: 1\nhosts: {{}}\nenvironments: []\nstate: {{ path: [{padding}], pathh: 1 }}\n");
        let column = yaml.lines().nth(3).and_then(|line| line.find("pathh")).map(|at| at + 1);
        let errors = load::parse("long.yaml", yaml).expect_err("rejected");
        let diagnostic = &errors.diagnostics()[0];
        assert_eq!(diagnostic.location(), column.map(|column| (4, column)));
        let text = render(diagnostic, false, 100);
        assert!(text.contains(&format!("[long.yaml:4:{}]", column.unwrap_or(0))), "{text}");
        assert!(text.contains("pathh: 1 }"), "{text}");
        assert!(text.len() < 2_000, "{} bytes:\n{text}", text.len());
    }

    #[test]
    fn only_the_first_problems_are_shown_and_all_are_counted() {
        let keys: String = (0..1_000).map(|index| format!("k{index}: 1, ")).collect();
        let yaml = format!("version: 1\nhosts: {{}}\nenvironments: []\nstate: {{ {keys}}}\n");
        let errors = load::parse("many.yaml", yaml).expect_err("rejected");
        assert_eq!(errors.diagnostics().len(), super::MAX_SHOWN_PROBLEMS);
        assert_eq!(errors.total(), 1_000);
        assert_eq!(errors.to_string(), "many.yaml is not valid: 1000 problems (the first 20 are shown)");
    }

    #[test]
    fn messages_escape_control_characters_and_cut_long_words() {
        assert_eq!(super::shown_text("id `a\nb`"), "id `a\\nb`");
        let long = format!("value \"{}\", expected", "y".repeat(500));
        let shown = super::shown_text(&long);
        assert!(shown.starts_with("value \"yyy") && shown.ends_with("yyyyyy\", expected"), "{shown}");
        assert!(shown.chars().count() < 100, "{shown}");
        assert!(matches!(super::shown_text("short words stay"), std::borrow::Cow::Borrowed(_)));
    }
}
