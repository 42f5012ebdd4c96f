//! Just enough YAML structure for byte-preserving edits: a walk over the parser's events that
//! tells, for every node, its path from the document root and its byte range in the source.

use std::fmt;

pub use granit_parser::ScalarStyle;
use granit_parser::{Event, Parser, StructureStyle};

/// One step of a path: a mapping key or a sequence index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

impl fmt::Display for Seg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Key(key) => f.write_str(&key.replace('.', "\\.")),
            Self::Index(index) => write!(f, "[{index}]"),
        }
    }
}

/// Renders a path the way users write it: `image.tag`, `containers[0].image`.
pub fn path_string(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        if matches!(seg, Seg::Key(_)) && !out.is_empty() {
            out.push('.');
        }
        out.push_str(&seg.to_string());
    }
    out
}

/// Parses `image.tag`, `a\.b.c` (a key with a dot), `containers[0].image`.
pub fn parse_path(text: &str) -> Result<Vec<Seg>, String> {
    let bad = || format!("{text:?} is not a key path like image.tag or containers[0].image");
    let mut path = Vec::new();
    let mut key = String::new();
    let mut chars = text.chars().peekable();
    let mut after_index = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'.') => key.push(chars.next().unwrap_or('.')),
            '.' => {
                if key.is_empty() && !after_index {
                    return Err(bad());
                }
                if !key.is_empty() {
                    path.push(Seg::Key(std::mem::take(&mut key)));
                }
                after_index = false;
            }
            '[' => {
                if !key.is_empty() {
                    path.push(Seg::Key(std::mem::take(&mut key)));
                }
                let digits: String = chars.by_ref().take_while(|c| *c != ']').collect();
                path.push(Seg::Index(digits.parse().map_err(|_| bad())?));
                after_index = true;
            }
            _ => {
                if after_index {
                    return Err(bad());
                }
                key.push(c);
            }
        }
    }
    if !key.is_empty() {
        path.push(Seg::Key(key));
    } else if !after_index {
        return Err(bad());
    }
    Ok(path)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// A mapping key (a scalar in key position).
    Key,
    Scalar(ScalarStyle),
    Alias,
    MappingStart {
        flow: bool,
    },
    SequenceStart {
        flow: bool,
    },
    MappingEnd,
    SequenceEnd,
}

/// A node as the walk reports it.
pub struct Node<'a, 'v> {
    /// Index of the document in the stream, from 0.
    pub document: usize,
    /// Path of the node (for `Key`, the path of the key's value).
    pub path: &'a [Seg],
    pub kind: NodeKind,
    /// The scalar's text after escapes (for `Scalar` and `Key`).
    pub value: &'v str,
    /// Whether the node carries an `&anchor`.
    pub anchored: bool,
    /// Byte range in the source: for scalars the scalar including its quotes or block body.
    pub start: usize,
    pub end: usize,
    /// Column of the node's first character, from 0.
    pub column: usize,
    /// How many flow collections enclose the node.
    pub flow_depth: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}, column {column}: {message}")]
pub struct SyntaxError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

enum Frame {
    Map { key: Option<Seg>, flow: bool },
    Seq { next: usize, flow: bool },
}

/// Walks every node of every document; `visit` returns `false` to stop early.
pub fn walk(text: &str, mut visit: impl FnMut(&Node<'_, '_>) -> bool) -> Result<(), SyntaxError> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut path: Vec<Seg> = Vec::new();
    let mut document = 0usize;
    let mut started = false;
    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(|e| SyntaxError {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: e.info().to_string(),
        })?;
        let start = span.start.byte_offset().unwrap_or(0);
        let end = span.end.byte_offset().unwrap_or(start);
        let column = span.start.col();
        let flow_depth =
            stack.iter().filter(|f| matches!(f, Frame::Map { flow: true, .. } | Frame::Seq { flow: true, .. })).count();

        // Is this event a key of the enclosing mapping?
        let is_key = matches!(stack.last(), Some(Frame::Map { key: None, .. }))
            && !matches!(event, Event::MappingEnd | Event::SequenceEnd);
        let mut node = |kind: NodeKind, value: &str, anchored: bool, path: &[Seg]| {
            visit(&Node { document, path, kind, value, anchored, start, end, column, flow_depth })
        };

        match event {
            Event::DocumentStart(..) => {
                if started {
                    document += 1;
                }
                started = true;
            }
            Event::Scalar(value, _, anchor, _) if is_key => {
                let seg = Seg::Key(value.to_string());
                path.push(seg.clone());
                let go_on = node(NodeKind::Key, &value, anchor != 0, &path);
                path.pop();
                if let Some(Frame::Map { key, .. }) = stack.last_mut() {
                    *key = Some(seg);
                }
                if !go_on {
                    return Ok(());
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) | Event::Alias(..) if is_key => {
                return Err(SyntaxError {
                    line: span.start.line(),
                    column: column + 1,
                    message: "a mapping, list or alias used as a key is not supported here".into(),
                });
            }
            Event::Scalar(value, style, anchor, _) => {
                value_path(&mut stack, &mut path);
                let go_on = node(NodeKind::Scalar(style), &value, anchor != 0, &path);
                leave_value(&mut stack, &mut path);
                if !go_on {
                    return Ok(());
                }
            }
            Event::Alias(_) => {
                value_path(&mut stack, &mut path);
                let go_on = node(NodeKind::Alias, "", false, &path);
                leave_value(&mut stack, &mut path);
                if !go_on {
                    return Ok(());
                }
            }
            Event::MappingStart(style, anchor, _) | Event::SequenceStart(style, anchor, _) => {
                let flow = style == StructureStyle::Flow;
                let is_map = matches!(event, Event::MappingStart(..));
                value_path(&mut stack, &mut path);
                let kind = if is_map { NodeKind::MappingStart { flow } } else { NodeKind::SequenceStart { flow } };
                if !node(kind, "", anchor != 0, &path) {
                    return Ok(());
                }
                stack.push(if is_map { Frame::Map { key: None, flow } } else { Frame::Seq { next: 0, flow } });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let kind =
                    if matches!(event, Event::MappingEnd) { NodeKind::MappingEnd } else { NodeKind::SequenceEnd };
                if !node(kind, "", false, &path) {
                    return Ok(());
                }
                stack.pop();
                leave_value(&mut stack, &mut path);
            }
            _ => {}
        }
    }
    Ok(())
}

/// Pushes the path segment of the value about to start.
fn value_path(stack: &mut [Frame], path: &mut Vec<Seg>) {
    match stack.last_mut() {
        Some(Frame::Map { key: Some(key), .. }) => path.push(key.clone()),
        Some(Frame::Seq { next, .. }) => {
            path.push(Seg::Index(*next));
            *next += 1;
        }
        _ => {}
    }
}

/// Pops the segment of a value that ended, and readies its mapping for the next key.
fn leave_value(stack: &mut [Frame], path: &mut Vec<Seg>) {
    match stack.last_mut() {
        Some(Frame::Map { key, .. }) if key.is_some() => {
            *key = None;
            path.pop();
        }
        Some(Frame::Seq { .. }) => {
            path.pop();
        }
        _ => {}
    }
}

/// What a plain scalar means to Helm (go-yaml, YAML 1.1 rules): `1234567` is a number, `yes` a
/// boolean. A string that would change type written plain must be quoted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlainType {
    String,
    Number,
    Bool,
    Null,
    /// `2026-11-22…`: a YAML 1.1 timestamp.
    Timestamp,
}

pub fn plain_type(text: &str) -> PlainType {
    const BOOLS: [&str; 22] = [
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false", "False", "FALSE",
        "on", "On", "ON", "off", "Off", "OFF",
    ];
    if ["", "~", "null", "Null", "NULL"].contains(&text) {
        return PlainType::Null;
    }
    if BOOLS.contains(&text) {
        return PlainType::Bool;
    }
    let date_like = text.len() >= 8
        && text.as_bytes()[..4].iter().all(u8::is_ascii_digit)
        && text.as_bytes()[4] == b'-'
        && text[5..]
            .split(['-', 'T', 't', ' '])
            .take(2)
            .all(|p| !p.is_empty() && p.len() <= 2 && p.chars().all(|c| c.is_ascii_digit()));
    if date_like {
        return PlainType::Timestamp;
    }
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let lower = body.to_ascii_lowercase();
    let is_digits = |s: &str, radix: u32| !s.is_empty() && s.chars().all(|c| c.is_digit(radix) || c == '_');
    let number = is_digits(body, 10)
        || lower.strip_prefix("0x").is_some_and(|h| is_digits(h, 16))
        || lower.strip_prefix("0o").is_some_and(|o| is_digits(o, 8))
        || lower.strip_prefix("0b").is_some_and(|b| is_digits(b, 2))
        || [".inf", ".nan"].contains(&lower.as_str())
        || is_float(&lower)
        // YAML 1.1 sexagesimal: 1:20, 190:20:30.15
        || (body.contains(':') && body.split(':').all(|p| is_digits(p.split('.').next().unwrap_or(""), 10)));
    if number { PlainType::Number } else { PlainType::String }
}

/// `1.5`, `.5`, `1.`, `1e5`, `1.5e-3` (digits with at most one dot, an optional exponent).
fn is_float(text: &str) -> bool {
    let (mantissa, exponent) = match text.split_once('e') {
        Some((m, e)) => (m, Some(e.strip_prefix(['-', '+']).unwrap_or(e))),
        None => (text, None),
    };
    let digits = mantissa.chars().filter(|c| c.is_ascii_digit()).count();
    let dots = mantissa.chars().filter(|c| *c == '.').count();
    let mantissa_ok = digits > 0 && dots <= 1 && mantissa.chars().all(|c| c.is_ascii_digit() || c == '.' || c == '_');
    mantissa_ok && exponent.is_none_or(|e| !e.is_empty() && e.chars().all(|c| c.is_ascii_digit()))
}

/// Whether `text` can be written as a plain scalar and read back as the same string.
pub fn plain_safe(text: &str, in_flow: bool) -> bool {
    let Some(first) = text.chars().next() else { return false };
    let last = text.chars().last().unwrap_or(first);
    if first.is_whitespace()
        || last.is_whitespace()
        || "-?:,[]{}#&*!|>'\"%@`".contains(first) && !safe_indicator_start(text)
    {
        return false;
    }
    if text.contains(": ") || text.contains(" #") || text.ends_with(':') || text.contains(['\n', '\r', '\t']) {
        return false;
    }
    // YAML 1.1, which Helm's parser follows: `<<` is a merge key, `=` a value key, and NEL, LS,
    // PS (and a BOM) break lines.
    if text == "=" || text.starts_with("<<") || text.contains(LINE_BREAKS_1_1) {
        return false;
    }
    if in_flow && text.contains([',', '[', ']', '{', '}', ':', '#', '?']) {
        return false;
    }
    text.chars().all(|c| !c.is_control())
}

/// What YAML 1.1 reads as a line break (or strips) besides `\n` and `\r`.
const LINE_BREAKS_1_1: [char; 4] = ['\u{85}', '\u{2028}', '\u{2029}', '\u{feff}'];

/// Only `-` may start a plain scalar, when a non-space follows (`-1`, `-dev`): YAML 1.2 allows
/// `?x` and `:x` too, but Helm's parser does not read them.
fn safe_indicator_start(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next() == Some('-') && chars.next().is_some_and(|c| !c.is_whitespace())
}

pub fn double_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || LINE_BREAKS_1_1.contains(&c) => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub fn single_quoted(text: &str) -> Option<String> {
    (!text.contains(['\n', '\r'])
        && !text.contains(LINE_BREAKS_1_1)
        && text.chars().all(|c| !c.is_control() || c == '\t'))
    .then(|| format!("'{}'", text.replace('\'', "''")))
}

/// The scalar at `path` in the first document that has one.
pub fn get(text: &str, path: &[Seg]) -> Result<Option<String>, SyntaxError> {
    let mut found = None;
    walk(text, |node| {
        if node.path == path && matches!(node.kind, NodeKind::Scalar(_)) {
            found = Some(node.value.to_string());
            return false;
        }
        true
    })?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_table() {
        let k = |s: &str| Seg::Key(s.into());
        let cases: [(&str, Option<Vec<Seg>>); 8] = [
            ("image.tag", Some(vec![k("image"), k("tag")])),
            ("version", Some(vec![k("version")])),
            ("a\\.b.c", Some(vec![k("a.b"), k("c")])),
            ("containers[0].image", Some(vec![k("containers"), Seg::Index(0), k("image")])),
            ("list[2]", Some(vec![k("list"), Seg::Index(2)])),
            ("", None),
            ("a..b", None),
            ("a[x]", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_path(text).ok(), want, "{text:?}");
            if let Ok(path) = parse_path(text) {
                assert_eq!(path_string(&path), text, "round trip {text:?}");
            }
        }
    }

    #[test]
    fn plain_type_table() {
        let cases = [
            ("64ed033", PlainType::String),
            ("1234567", PlainType::Number),
            ("0123456", PlainType::Number),
            ("1e5", PlainType::Number),
            ("64e5", PlainType::Number),
            ("1.2.3", PlainType::String),
            ("0.1", PlainType::Number),
            (".5", PlainType::Number),
            ("0x1F", PlainType::Number),
            ("yes", PlainType::Bool),
            ("off", PlainType::Bool),
            ("~", PlainType::Null),
            ("1:20", PlainType::Number),
            ("latest", PlainType::String),
            ("1.2.4-dev.64ed033", PlainType::String),
            ("e5", PlainType::String),
            ("2026-11-22T02:40:37.123456789Z", PlainType::Timestamp),
            ("2026-1-2", PlainType::Timestamp),
            ("2026-feature", PlainType::String),
        ];
        for (text, want) in cases {
            assert_eq!(plain_type(text), want, "{text:?}");
        }
    }

    #[test]
    fn plain_safety_table() {
        let cases = [
            ("latest", false, true),
            ("a: b", false, false),
            ("a #b", false, false),
            ("-dev", false, true),
            ("- x", false, false),
            ("*star", false, false),
            ("x,y", false, true),
            ("x,y", true, false),
            (" lead", false, false),
            ("", false, false),
            ("ünïcode", false, true),
            ("two\nlines", false, false),
            (":x", false, false),
            ("?x", false, false),
            ("x:y", false, true),
            ("x:y", true, false),
            ("a#b", true, false),
            ("<<", false, false),
            ("=", false, false),
            ("line\u{2028}sep", false, false),
        ];
        for (text, flow, want) in cases {
            assert_eq!(plain_safe(text, flow), want, "{text:?} flow={flow}");
        }
    }

    #[test]
    fn walk_reports_paths_and_byte_ranges() {
        let text = "a:\n  b: 'x'\nl:\n  - 1\n  - {c: d}\n";
        let mut seen = Vec::new();
        walk(text, |n| {
            if let NodeKind::Scalar(_) = n.kind {
                seen.push((path_string(n.path), text[n.start..n.end].to_string()));
            }
            true
        })
        .unwrap();
        assert_eq!(
            seen,
            [("a.b".into(), "'x'".into()), ("l[0]".into(), "1".into()), ("l[1].c".into(), "d".into())]
                as [(String, String); 3]
        );
    }
}
