//! index.yaml of a chart repository: merge a package in, leaving every existing byte alone.
//!
//! `helm repo index --merge` rewrites the whole file (and resets `created`, helm #7363); here the
//! new entry is spliced into its chart's list, newest version first, and `generated` is
//! updated. The same version with the same digest is a no-op; with another digest, an error:
//! a published chart is never replaced.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

use super::meta::Metadata;
use super::yaml::{self, NodeKind, PlainType, ScalarStyle, Seg};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndexError {
    #[error("index.yaml: not valid YAML: {0}")]
    Syntax(#[from] yaml::SyntaxError),
    #[error("index.yaml: apiVersion {0:?}; a chart repository index has `apiVersion: v1`")]
    ApiVersion(String),
    #[error("index.yaml: `entries` is missing or not a mapping")]
    NoEntries,
    #[error(
        "index.yaml: `{0}` is written in flow style ([…] or {{…}}); stagecoach edits block-style indexes as Helm writes them"
    )]
    FlowStyle(String),
    #[error(
        "index.yaml is JSON, which Helm reads too; stagecoach adds entries to the block-style YAML that \
         `helm repo index` writes and does not rewrite a whole index: convert it to YAML once \
         (`helm repo index DIR` writes it anew), then run again; nothing was changed"
    )]
    Json,
    #[error(
        "{name} {version} is already published{} with digest {published}, and this package's digest is {new}; \
         a published chart is never replaced: bump the version",
        spelled(.version, .published_version)
    )]
    Conflict { name: String, version: String, published_version: String, published: String, new: String },
}

/// How the index spells a version published under another spelling (` as v1.0.0`), if it does.
fn spelled(version: &str, published: &str) -> String {
    if version == published { String::new() } else { format!(" as {published}") }
}

/// What a merge did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Merged {
    /// The version was there with the same digest: the index is unchanged.
    AlreadyPublished,
    /// The index with the new entry.
    Added(String),
}

/// One index entry: the chart's metadata plus where and when it was published.
#[derive(Serialize)]
struct Entry<'a> {
    #[serde(flatten)]
    metadata: &'a Metadata,
    created: &'a str,
    digest: &'a str,
    urls: Vec<String>,
}

/// What the merge needs to know about a package.
pub struct NewEntry<'a> {
    pub metadata: &'a Metadata,
    pub digest: &'a str,
    pub url: String,
}

/// Merges `entry` into `existing` (or a new index when `None`); `now` is RFC 3339.
pub fn merge(existing: Option<&str>, entry: &NewEntry<'_>, now: &str) -> Result<Merged, IndexError> {
    merge_with(existing, entry, now, Scan::run)
}

type Scanner = fn(&str, &str) -> Result<Scan, IndexError>;

fn merge_with(existing: Option<&str>, entry: &NewEntry<'_>, now: &str, scan: Scanner) -> Result<Merged, IndexError> {
    let value = entry_value(entry, now);
    let name = &entry.metadata.name;
    let Some(text) = existing.filter(|t| !t.trim().is_empty()) else {
        let mut out = String::from("apiVersion: v1\nentries:\n");
        out.push_str(&format!("  {}:\n", key_text(name)));
        out.push_str(&render_item(&value, 2, "\n"));
        out.push_str(&format!("generated: {}\n", yaml::double_quoted(now)));
        return Ok(Merged::Added(out));
    };
    if text.trim_start_matches('\u{feff}').trim_start().starts_with(['{', '[']) {
        return Err(IndexError::Json);
    }
    let scan = scan(text, name)?;
    if scan.api_version.as_deref() != Some("v1") {
        return Err(IndexError::ApiVersion(scan.api_version.unwrap_or_default()));
    }
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let version = semver::Version::parse(&entry.metadata.version).ok();
    // One SemVer version, one package: `v1.0.0` and `1.0.0`, or `1.0.0+a` and `1.0.0+b`, are one
    // version to Helm, which would find two packages for it.
    for item in &scan.items {
        let Some(published_version) = item.version.as_deref() else { continue };
        if crate::version::same_version(published_version, &entry.metadata.version) {
            let published = item.digest.clone().unwrap_or_default();
            return if published == entry.digest && published_version == entry.metadata.version {
                Ok(Merged::AlreadyPublished)
            } else {
                Err(IndexError::Conflict {
                    name: name.clone(),
                    version: entry.metadata.version.clone(),
                    published_version: published_version.to_string(),
                    published,
                    new: entry.digest.to_string(),
                })
            };
        }
    }

    // Edits as (offset, bytes removed, text inserted), applied from the end backwards.
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let entries = scan.entries.ok_or(IndexError::NoEntries)?;
    if entries.flow && !entries.empty {
        return Err(IndexError::FlowStyle("entries".into()));
    }
    if scan.chart_flow {
        return Err(IndexError::FlowStyle(format!("entries.{name}")));
    }
    if entries.flow {
        // Helm writes an empty index as `entries: {}`.
        let mut block = eol.to_string();
        block.push_str(&format!("  {}:{eol}", key_text(name)));
        block.push_str(&render_item(&value, 2, eol));
        let block = block.trim_end_matches(eol).to_string();
        // From right after `entries:`, so no space is left at the end of that line.
        let start = text[..entries.start].trim_end_matches(' ').len();
        edits.push((start, entries.end - start, block));
    } else if scan.items.is_empty() {
        // A chart new to this index goes among the others in name order.
        let key_column = scan.chart_keys.first().map_or(2, |k| k.column);
        let mut block = format!("{}{}:{eol}", " ".repeat(key_column), key_text(name));
        block.push_str(&render_item(&value, key_column + scan.dash_offset.unwrap_or(0), eol));
        let at = match scan.chart_keys.iter().find(|k| k.name.as_str() > name.as_str()) {
            Some(next) => next.line_start,
            None => after_line(text, entries.last_end, &mut block, eol),
        };
        edits.push((at, 0, block));
    } else {
        // Newest first: before the first entry of a lower version.
        let dash_column = scan.items[0].dash_column;
        let mut block = render_item(&value, dash_column, eol);
        let lower = scan.items.iter().find(|item| {
            let theirs = item.version.as_deref().and_then(|v| semver::Version::parse(v).ok());
            match (&version, theirs) {
                (Some(ours), Some(theirs)) => theirs < *ours,
                (Some(_), None) => true,
                (None, _) => false,
            }
        });
        let at = match lower {
            Some(item) => item.line_start,
            None => after_line(text, scan.chart_last_end, &mut block, eol),
        };
        edits.push((at, 0, block));
    }
    match scan.generated {
        Some((start, end)) => edits.push((start, end - start, yaml::double_quoted(now))),
        None => {
            let mut line = format!("generated: {}{eol}", yaml::double_quoted(now));
            if !text.ends_with('\n') {
                line.insert_str(0, eol);
            }
            edits.push((text.len(), 0, line));
        }
    }
    // One copy of the text, however large: the parts between the edits and the edits.
    edits.sort_by_key(|e| e.0);
    let mut out = String::with_capacity(text.len() + edits.iter().map(|e| e.2.len()).sum::<usize>());
    let mut copied = 0;
    for (at, removed, inserted) in edits {
        out.push_str(&text[copied..at]);
        out.push_str(&inserted);
        copied = at + removed;
    }
    out.push_str(&text[copied..]);
    Ok(Merged::Added(out))
}

/// Where a block goes after the line holding `end`; adds a line break when the file lacks one.
fn after_line(text: &str, end: usize, block: &mut String, eol: &str) -> usize {
    if end > 0 && text.as_bytes()[end - 1] == b'\n' {
        return end;
    }
    match text[end..].find('\n') {
        Some(newline) => end + newline + 1,
        None => {
            block.insert_str(0, eol);
            text.len()
        }
    }
}

fn entry_value(entry: &NewEntry<'_>, now: &str) -> Value {
    let record = Entry { metadata: entry.metadata, created: now, digest: entry.digest, urls: vec![entry.url.clone()] };
    serde_json::to_value(record).unwrap_or(Value::Null)
}

fn key_text(key: &str) -> String {
    scalar_text(key)
}

fn scalar_text(text: &str) -> String {
    if yaml::plain_safe(text, false) && yaml::plain_type(text) == PlainType::String {
        text.to_string()
    } else {
        yaml::double_quoted(text)
    }
}

/// A list item `- key: value …` with its dash at `dash_column`, in Helm's layout (lists at
/// the indentation of their key, keys sorted).
fn render_item(value: &Value, dash_column: usize, eol: &str) -> String {
    let mut out = String::new();
    let body_column = dash_column + 2;
    let mut lines = Vec::new();
    render_map_lines(value, body_column, &mut lines);
    for (index, line) in lines.iter().enumerate() {
        if index == 0 {
            out.push_str(&" ".repeat(dash_column));
            out.push_str("- ");
            out.push_str(line.trim_start());
        } else {
            out.push_str(line);
        }
        out.push_str(eol);
    }
    out
}

pub(super) fn render_map_lines(value: &Value, column: usize, lines: &mut Vec<String>) {
    let Value::Object(map) = value else { return };
    let pad = " ".repeat(column);
    for (key, value) in map {
        match value {
            Value::Object(inner) if inner.is_empty() => lines.push(format!("{pad}{}: {{}}", key_text(key))),
            Value::Object(_) => {
                lines.push(format!("{pad}{}:", key_text(key)));
                render_map_lines(value, column + 2, lines);
            }
            Value::Array(items) if items.is_empty() => lines.push(format!("{pad}{}: []", key_text(key))),
            Value::Array(items) => {
                lines.push(format!("{pad}{}:", key_text(key)));
                for item in items {
                    if item.is_object() {
                        let mut inner = Vec::new();
                        render_map_lines(item, column + 2, &mut inner);
                        for (index, line) in inner.into_iter().enumerate() {
                            if index == 0 {
                                lines.push(format!("{pad}- {}", line.trim_start()));
                            } else {
                                lines.push(line);
                            }
                        }
                    } else {
                        lines.push(format!("{pad}- {}", scalar_value(item)));
                    }
                }
            }
            other => lines.push(format!("{pad}{}: {}", key_text(key), scalar_value(other))),
        }
    }
}

fn scalar_value(value: &Value) -> String {
    match value {
        Value::String(text) => scalar_text(text),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

struct Item {
    line_start: usize,
    dash_column: usize,
    version: Option<String>,
    digest: Option<String>,
}

struct ChartKey {
    name: String,
    line_start: usize,
    column: usize,
}

struct EntriesNode {
    flow: bool,
    empty: bool,
    start: usize,
    end: usize,
    last_end: usize,
}

#[derive(Default)]
struct Scan {
    api_version: Option<String>,
    entries: Option<EntriesNode>,
    chart_keys: Vec<ChartKey>,
    chart_flow: bool,
    items: Vec<Item>,
    chart_last_end: usize,
    /// Column of an existing list's dash relative to its chart key (Helm: 0).
    dash_offset: Option<usize>,
    generated: Option<(usize, usize)>,
}

impl Scan {
    fn run(text: &str, name: &str) -> Result<Self, IndexError> {
        match Scan::by_lines(text, name) {
            Some(scan) => Ok(scan),
            None => Scan::walk(text, name),
        }
    }

    /// Parses the whole text.
    fn walk(text: &str, name: &str) -> Result<Self, IndexError> {
        let mut scan = Scan::default();
        yaml::walk(text, |node| {
            if node.document > 0 {
                return false;
            }
            let path = node.path;
            let top = match path.first() {
                Some(Seg::Key(key)) => key.as_str(),
                _ => return true,
            };
            match (top, path.len(), node.kind) {
                ("apiVersion", 1, NodeKind::Scalar(_)) => scan.api_version = Some(node.value.to_string()),
                ("generated", 1, NodeKind::Scalar(_)) => scan.generated = Some((node.start, node.end)),
                ("entries", 1, NodeKind::MappingStart { flow }) => {
                    scan.entries =
                        Some(EntriesNode { flow, empty: true, start: node.start, end: node.end, last_end: node.end });
                }
                ("entries", 1, NodeKind::MappingEnd) => {
                    if let Some(entries) = scan.entries.as_mut() {
                        entries.end = node.end;
                    }
                }
                ("entries", _, kind) => {
                    if let Some(entries) = scan.entries.as_mut() {
                        entries.empty = false;
                        if !matches!(kind, NodeKind::MappingEnd | NodeKind::SequenceEnd) {
                            entries.last_end = entries.last_end.max(node.end);
                        }
                    }
                    if let (2, NodeKind::Key) = (path.len(), kind) {
                        scan.chart_keys.push(ChartKey {
                            name: node.value.to_string(),
                            line_start: line_start(text, node.start),
                            column: node.column,
                        });
                    } else {
                        let key_column = scan.chart_keys.last().map_or(0, |k| k.column);
                        scan.visit_entry(text, 0, &path[1..], node, name, key_column);
                    }
                }
                _ => {}
            }
            true
        })?;
        Ok(scan)
    }

    /// What a node inside `entries` tells; `path` starts at the chart's key, the node's offsets
    /// at `base`, and `key_column` is its chart key's column.
    fn visit_entry(
        &mut self,
        text: &str,
        base: usize,
        path: &[Seg],
        node: &yaml::Node<'_, '_>,
        name: &str,
        key_column: usize,
    ) {
        let this_chart = matches!(path.first(), Some(Seg::Key(k)) if k == name);
        match (path.len(), node.kind) {
            (1, NodeKind::SequenceStart { flow: true }) if this_chart => self.chart_flow = true,
            (2, NodeKind::MappingStart { .. }) if this_chart || self.dash_offset.is_none() => {
                let dash = dash_position(text, base + node.start);
                let dash_column = dash - line_start(text, dash);
                if self.dash_offset.is_none() {
                    self.dash_offset = Some(dash_column.saturating_sub(key_column));
                }
                if this_chart {
                    self.items.push(Item {
                        line_start: line_start(text, dash),
                        dash_column,
                        version: None,
                        digest: None,
                    });
                }
            }
            (3, NodeKind::Scalar(_)) if this_chart => {
                if let (Some(item), Some(Seg::Key(field))) = (self.items.last_mut(), path.get(2)) {
                    match field.as_str() {
                        "version" => item.version = Some(node.value.to_string()),
                        "digest" => item.digest = Some(node.value.to_string()),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        if this_chart && path.len() > 1 && !matches!(node.kind, NodeKind::MappingEnd | NodeKind::SequenceEnd) {
            self.chart_last_end = self.chart_last_end.max(base + node.end);
        }
    }

    /// Helm's layout read line by line, so that a merge costs little more than reading the
    /// index: the YAML parser sees only the top-level lines, the chart key lines and the
    /// sections a merge depends on (the merged chart's; when it is new, the first chart's for
    /// the list style and the last one's for where it goes). Other charts' entries are copied,
    /// not parsed. `None` when the text leaves that layout (documents, flow style, a top-level
    /// scalar over several lines, tabs, a section the parser refuses): the caller walks it all.
    fn by_lines(text: &str, name: &str) -> Option<Scan> {
        #[derive(PartialEq)]
        enum Region {
            Start,
            /// Under `key:`: its lines are its value.
            Block,
            /// After `key: scalar`: an indented line would continue the scalar.
            Scalar,
            Entries,
        }
        let mut scan = Scan::default();
        let mut region = Region::Start;
        let mut chart_column = None;
        // Byte ranges of the charts' sections, from their key line to the next structural line.
        let mut sections: Vec<(usize, usize)> = Vec::new();
        let mut entries_end = None;
        let mut offset = 0;
        let mut deeper = String::new();
        for line in text.split_inclusive('\n') {
            let start = offset;
            offset += line.len();
            // Most lines are inside an entry: one comparison tells.
            if !deeper.is_empty() && line.starts_with(deeper.as_str()) {
                continue;
            }
            let body = line.trim_end_matches(['\n', '\r']);
            let rest = body.trim_start_matches(' ');
            let indent = body.len() - rest.len();
            if rest.is_empty() || rest.starts_with('#') {
                continue;
            }
            if rest.starts_with('\t') {
                return None;
            }
            if indent == 0 {
                if region == Region::Entries {
                    deeper.clear();
                    entries_end = Some(start);
                    if let Some(last) = sections.last_mut() {
                        last.1 = start;
                    }
                }
                let (key, value) = key_line(body)?;
                region = if matches!(value, LineValue::Empty) { Region::Block } else { Region::Scalar };
                match (key.as_str(), value) {
                    ("apiVersion", LineValue::Scalar(value, _)) if scan.api_version.is_none() => {
                        scan.api_version = Some(value)
                    }
                    ("generated", LineValue::Scalar(_, (from, to))) if scan.generated.is_none() => {
                        scan.generated = Some((start + from, start + to))
                    }
                    ("entries", LineValue::Empty) if scan.entries.is_none() => {
                        region = Region::Entries;
                        scan.entries = Some(EntriesNode { flow: false, empty: false, start, end: start, last_end: 0 });
                    }
                    ("apiVersion" | "generated" | "entries", _) => return None,
                    _ => {}
                }
                continue;
            }
            match region {
                Region::Start | Region::Scalar => return None,
                Region::Block => continue,
                Region::Entries => {}
            }
            let column = *chart_column.get_or_insert_with(|| {
                deeper = " ".repeat(indent + 1);
                indent
            });
            if indent > column {
                continue;
            }
            if indent < column {
                return None;
            }
            if rest == "-" || rest.starts_with("- ") {
                if sections.is_empty() {
                    return None;
                }
                continue;
            }
            let (key, LineValue::Empty) = key_line(rest)? else { return None };
            if let Some(last) = sections.last_mut() {
                last.1 = start;
            }
            sections.push((start, text.len()));
            scan.chart_keys.push(ChartKey { name: key, line_start: start, column });
        }
        let entries_end = entries_end.unwrap_or(text.len());
        let entries = scan.entries.as_mut()?;
        if sections.is_empty() {
            return None;
        }
        entries.end = entries_end;
        let column = chart_column.unwrap_or(0);
        match scan.chart_keys.iter().position(|k| k.name == name) {
            Some(ours) => {
                let (from, to) = sections[ours];
                scan.section(text, from, to, name, column)?;
            }
            None => {
                for &(from, to) in &sections {
                    scan.section(text, from, to, name, column)?;
                    if scan.dash_offset.is_some() {
                        break;
                    }
                }
                let (from, to) = *sections.last()?;
                let mut last_end = 0;
                walk_section(&text[from..to], |path, node| {
                    if path.len() > 1 && !matches!(node.kind, NodeKind::MappingEnd | NodeKind::SequenceEnd) {
                        last_end = last_end.max(from + node.end);
                    }
                })?;
                scan.entries.as_mut()?.last_end = last_end;
            }
        }
        Some(scan)
    }

    /// Parses one chart's section, `text[from..to]`.
    fn section(&mut self, text: &str, from: usize, to: usize, name: &str, key_column: usize) -> Option<()> {
        walk_section(&text[from..to], |path, node| {
            if path.len() > 1 || node.kind != NodeKind::Key {
                self.visit_entry(text, from, path, node, name, key_column);
            }
        })
    }
}

/// Walks a chart's section on its own; `None` when it does not parse as one mapping.
fn walk_section(section: &str, mut visit: impl FnMut(&[Seg], &yaml::Node<'_, '_>)) -> Option<()> {
    let mut charts = 0;
    yaml::walk(section, |node| {
        if node.document > 0 {
            charts = usize::MAX;
            return false;
        }
        if node.path.len() == 1 && node.kind == NodeKind::Key {
            charts += 1;
        }
        if !node.path.is_empty() {
            visit(node.path, node);
        }
        true
    })
    .ok()?;
    (charts == 1).then_some(())
}

/// What follows `key:` on a line on its own.
enum LineValue {
    /// Nothing: the value is on the lines below.
    Empty,
    /// A plain or quoted scalar, and its byte range in the line.
    Scalar(String, (usize, usize)),
    /// Something else complete on the line (`{}`, `[a, b]`).
    Other,
}

/// A line holding `key:` or `key: value` (no anchor, no block scalar), as the parser reads it.
fn key_line(line: &str) -> Option<(String, LineValue)> {
    let mut key = None;
    let mut value = LineValue::Empty;
    let mut nodes = 0;
    let mut valid = true;
    let parsed = yaml::walk(line, |node| {
        nodes += 1;
        valid &= !node.anchored;
        match (nodes, node.path.len(), node.kind) {
            (1, 0, NodeKind::MappingStart { flow: false }) => {}
            (2, 1, NodeKind::Key) => key = Some(node.value.to_string()),
            (3, 1, NodeKind::Scalar(ScalarStyle::Plain)) if node.start == node.end => {}
            (3, 1, NodeKind::Scalar(ScalarStyle::Plain | ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted)) => {
                value = LineValue::Scalar(node.value.to_string(), (node.start, node.end));
            }
            (3, 1, NodeKind::Scalar(_) | NodeKind::Alias) => valid = false,
            (_, 0, NodeKind::MappingEnd) => {}
            (_, 0, _) => valid = false,
            (_, _, NodeKind::Key) if node.path.len() == 1 => valid = false,
            _ => value = LineValue::Other,
        }
        true
    });
    if parsed.is_err() || !valid {
        return None;
    }
    Some((key?, value))
}

fn line_start(text: &str, at: usize) -> usize {
    text[..at].rfind('\n').map_or(0, |newline| newline + 1)
}

/// The `-` that opens the list item whose content starts at `at`.
fn dash_position(text: &str, at: usize) -> usize {
    let before = text[..at].trim_end();
    if before.ends_with('-') { before.len() - 1 } else { at }
}

/// RFC 3339 in UTC with nanoseconds, as Helm writes `created` and `generated`.
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_nanos()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-11-22T02:40:37.123456789Z";

    fn meta(name: &str, version: &str) -> Metadata {
        Metadata {
            api_version: "v2".into(),
            name: name.into(),
            version: version.into(),
            app_version: Some("64ed033a1f3c9b2e8d7f6a5b4c3d2e1f0a9b8c7d".into()),
            description: Some("Runs bitcoind: regtest".into()),
            keywords: vec!["bitcoin".into()],
            chart_type: Some("application".into()),
            ..Metadata::default()
        }
    }

    /// Merges through `merge`, and checks that reading the whole text with the parser gives the
    /// same result: the line reader must never change an answer, only its cost.
    fn merge_one(
        existing: Option<&str>,
        name: &str,
        version: &str,
        digest: &str,
    ) -> Result<(String, &'static str), IndexError> {
        let metadata = meta(name, version);
        let entry =
            NewEntry { metadata: &metadata, digest, url: format!("https://charts.example/{name}-{version}.tgz") };
        let merged = merge(existing, &entry, NOW);
        assert_eq!(
            merged,
            merge_with(existing, &entry, NOW, Scan::walk),
            "line reader and parser differ: {existing:?}"
        );
        merged.map(|m| match m {
            Merged::Added(text) => (text, "added"),
            Merged::AlreadyPublished => (existing.unwrap_or_default().to_string(), "already published"),
        })
    }

    /// As Helm writes it (sigs.k8s.io/yaml): sorted keys, lists at their key's indentation.
    const HELM_INDEX: &str = "apiVersion: v1
entries:
  bitcoin-operator:
  - apiVersion: v2
    appVersion: aaaa
    created: \"2025-01-02T03:04:05.000000006Z\"
    digest: d3
    name: bitcoin-operator
    urls:
    - https://charts.example/bitcoin-operator-0.3.0.tgz
    version: 0.3.0
  - apiVersion: v2
    created: \"2025-01-01T00:00:00Z\"
    digest: d1
    name: bitcoin-operator
    urls:
    - https://charts.example/bitcoin-operator-0.1.0.tgz
    version: 0.1.0
  zeta:
  - apiVersion: v2
    created: \"2025-01-01T00:00:00Z\"
    digest: z1
    name: zeta
    urls:
    - zeta-1.0.0.tgz
    version: 1.0.0
generated: \"2025-01-02T03:04:05Z\"
";

    const NEW_ITEM: &str = "  - apiVersion: v2
    appVersion: 64ed033a1f3c9b2e8d7f6a5b4c3d2e1f0a9b8c7d
    created: \"2026-11-22T02:40:37.123456789Z\"
    description: \"Runs bitcoind: regtest\"
    digest: d2
    keywords:
    - bitcoin
    name: bitcoin-operator
    type: application
    urls:
    - https://charts.example/bitcoin-operator-0.2.0.tgz
    version: 0.2.0
";

    #[test]
    fn a_new_index() {
        let (text, merged) = merge_one(None, "bitcoin-operator", "0.2.0", "d2").unwrap();
        assert_eq!(merged, "added");
        assert_eq!(text, format!("apiVersion: v1\nentries:\n  bitcoin-operator:\n{NEW_ITEM}generated: \"{NOW}\"\n"));
    }

    #[test]
    fn existing_entries_stay_byte_for_byte_and_versions_stay_newest_first() {
        let (text, _) = merge_one(Some(HELM_INDEX), "bitcoin-operator", "0.2.0", "d2").unwrap();
        let want = HELM_INDEX
            .replacen(
                "  - apiVersion: v2\n    created: \"2025-01-01T00:00:00Z\"\n    digest: d1",
                &format!("{NEW_ITEM}  - apiVersion: v2\n    created: \"2025-01-01T00:00:00Z\"\n    digest: d1"),
                1,
            )
            .replace("generated: \"2025-01-02T03:04:05Z\"", &format!("generated: \"{NOW}\""));
        assert_eq!(text, want);
    }

    #[test]
    fn placement_table() {
        let cases = [
            (
                "newest goes first",
                "bitcoin-operator",
                "0.4.0",
                "  bitcoin-operator:\n  - apiVersion: v2\n    appVersion: 64ed",
            ),
            (
                "oldest goes last",
                "bitcoin-operator",
                "0.0.1",
                "    version: 0.1.0\n  - apiVersion: v2\n    appVersion: 64ed",
            ),
            (
                "a pre-release sorts below its release",
                "bitcoin-operator",
                "0.3.0-rc.1",
                "    version: 0.3.0\n  - apiVersion: v2\n    appVersion: 64ed",
            ),
            (
                "a new chart goes in name order",
                "middle",
                "1.0.0",
                "    version: 0.1.0\n  middle:\n  - apiVersion: v2\n",
            ),
            ("a new chart after the last", "zz", "1.0.0", "    version: 1.0.0\n  zz:\n  - apiVersion: v2\n"),
        ];
        for (name, chart, version, want) in cases {
            let (text, _) = merge_one(Some(HELM_INDEX), chart, version, "dx").unwrap();
            assert!(text.contains(want), "case {name}:\n{text}");
            assert!(text.ends_with(&format!("generated: \"{NOW}\"\n")), "case {name}");
        }
    }

    #[test]
    fn the_same_package_twice_changes_nothing() {
        let (once, _) = merge_one(Some(HELM_INDEX), "bitcoin-operator", "0.2.0", "d2").unwrap();
        let (twice, merged) = merge_one(Some(&once), "bitcoin-operator", "0.2.0", "d2").unwrap();
        assert_eq!(merged, "already published");
        assert_eq!(twice, once);
    }

    #[test]
    fn a_published_version_is_never_replaced_nor_added_again_under_another_spelling() {
        let error = merge_one(Some(HELM_INDEX), "bitcoin-operator", "0.1.0", "other").unwrap_err();
        assert_eq!(
            error,
            IndexError::Conflict {
                name: "bitcoin-operator".into(),
                version: "0.1.0".into(),
                published_version: "0.1.0".into(),
                published: "d1".into(),
                new: "other".into()
            }
        );
        // (case, the version published, the version added, same digest?)
        let cases = [
            ("a leading v", "v1.0.0", "1.0.0", false),
            ("a leading v, the same bytes", "v1.0.0", "1.0.0", true),
            ("other build metadata", "1.0.0+build.1", "1.0.0+build.2", false),
            ("build metadata added", "1.0.0", "1.0.0+build.7", true),
        ];
        for (case, published, added, same) in cases {
            let (index, _) = merge_one(None, "op", published, "d1").unwrap();
            let digest = if same { "d1" } else { "d2" };
            let error = merge_one(Some(&index), "op", added, digest).unwrap_err();
            let IndexError::Conflict { version, published_version, .. } = &error else { panic!("{case}: {error:?}") };
            assert_eq!((version.as_str(), published_version.as_str()), (added, published), "{case}");
        }
    }

    #[test]
    fn other_shapes() {
        let empty = "apiVersion: v1\nentries: {}\ngenerated: \"2025-01-01T00:00:00Z\"\n";
        let (text, _) = merge_one(Some(empty), "bitcoin-operator", "0.2.0", "d2").unwrap();
        assert_eq!(text, format!("apiVersion: v1\nentries:\n  bitcoin-operator:\n{NEW_ITEM}generated: \"{NOW}\"\n"));

        let crlf = HELM_INDEX.replace('\n', "\r\n");
        let (text, _) = merge_one(Some(&crlf), "bitcoin-operator", "0.2.0", "d2").unwrap();
        assert!(!text.replace("\r\n", "").contains('\n'), "a bare LF slipped into a CRLF file");
        assert!(text.contains(&NEW_ITEM.replace('\n', "\r\n")));

        let indented = "apiVersion: v1\nentries:\n  op:\n    - name: op\n      version: 0.1.0\n      digest: a\n";
        let (text, _) = merge_one(Some(indented), "op", "0.2.0", "b").unwrap();
        assert!(text.contains("  op:\n    - apiVersion: v2\n"), "{text}");
        assert!(text.ends_with("      digest: a\ngenerated: \"2026-11-22T02:40:37.123456789Z\"\n"), "{text}");

        let errors = [
            ("apiVersion: v2\nentries: {}\n", IndexError::ApiVersion("v2".into())),
            ("apiVersion: v1\n", IndexError::NoEntries),
            ("{\"apiVersion\":\"v1\",\"entries\":{}}", IndexError::Json),
            ("\n  {\"apiVersion\": \"v1\", \"entries\": {\"op\": []}}\n", IndexError::Json),
            ("apiVersion: v1\nentries: {op: [{version: 0.1.0}]}\n", IndexError::FlowStyle("entries".into())),
            (
                "apiVersion: v1\nentries:\n  bitcoin-operator: []\n",
                IndexError::FlowStyle("entries.bitcoin-operator".into()),
            ),
        ];
        for (text, want) in errors {
            assert_eq!(merge_one(Some(text), "bitcoin-operator", "0.2.0", "d2").unwrap_err(), want, "{text:?}");
        }
    }

    #[test]
    fn the_line_reader_agrees_with_the_parser() {
        // (case, index, whether the line reader handles it rather than leaving it to the parser)
        let cases = [
            ("Helm's layout", HELM_INDEX.to_string(), true),
            ("CRLF", HELM_INDEX.replace('\n', "\r\n"), true),
            ("no final line break", HELM_INDEX.trim_end().to_string(), true),
            (
                "comments everywhere",
                HELM_INDEX
                    .replace("entries:\n", "# top\nentries: # the charts\n# between\n")
                    .replace("  zeta:\n", "  # zeta next\n  zeta: # z\n")
                    .replace("generated:", "    # trailing\n# before\ngenerated:"),
                true,
            ),
            (
                "other top-level keys, nested and scalar",
                HELM_INDEX.replace("entries:\n", "serverInfo:\n  contextPath: /x\n  a:\n  - b\nentries:\n")
                    + "annotations: {}\n",
                true,
            ),
            ("quoted keys and values", HELM_INDEX.replace("  zeta:", "  \"zeta\":").replace("apiVersion: v1", "\"apiVersion\": 'v1'"), true),
            (
                "a block scalar in an entry",
                HELM_INDEX.replace("    digest: d3\n", "    description: |\n      # not a comment\n\n      zeta:\n    digest: d3\n")
                    .replace("    digest: z1\n", "    digest: z1\n    notes: >-\n      last\n      # words\n"),
                true,
            ),
            ("lists indented under their key", "apiVersion: v1\nentries:\n  op:\n    - name: op\n      version: 0.1.0\n      digest: a\n  zz:\n    - version: 1.0.0\n".into(), true),
            ("charts at column 4", HELM_INDEX.replace("\n  ", "\n    "), true),
            ("generated first, apiVersion last", "generated: \"2025-01-01T00:00:00Z\"\nentries:\n  a:\n  - version: 1.0.0\napiVersion: v1\n".into(), true),
            ("a second document", format!("{HELM_INDEX}---\napiVersion: v2\n"), false),
            ("a top-level scalar over two lines", HELM_INDEX.replace("apiVersion: v1\n", "apiVersion: v1\n  continued\n"), false),
            ("a scalar after the entries over two lines", format!("{HELM_INDEX}x: a\n      b\n"), false),
            ("flow style entries", "apiVersion: v1\nentries: {}\n".into(), false),
            ("a chart in flow style", "apiVersion: v1\nentries:\n  bitcoin-operator: []\n".into(), false),
            ("an anchor", HELM_INDEX.replace("entries:", "entries: &e"), false),
            ("a tab", HELM_INDEX.replace("  zeta:", "\tzeta:"), false),
            ("a list for entries", "apiVersion: v1\nentries:\n- a\n".into(), false),
            ("duplicate generated", format!("{HELM_INDEX}generated: x\n"), false),
            ("broken YAML in the merged chart", HELM_INDEX.replace("    digest: d1", "    digest: \"d1"), false),
            ("entries without charts", "apiVersion: v1\nentries:\ngenerated: x\n".into(), false),
        ];
        for (name, text, by_lines) in &cases {
            assert_eq!(Scan::by_lines(text, "bitcoin-operator").is_some(), *by_lines, "case {name}");
            for (chart, version, digest) in [
                ("bitcoin-operator", "0.2.0", "d2"),
                ("bitcoin-operator", "0.9.0", "d9"),
                ("bitcoin-operator", "0.0.1", "d0"),
                ("bitcoin-operator", "0.3.0", "d3"),
                ("bitcoin-operator", "0.1.0", "changed"),
                ("aaa", "1.0.0", "a1"),
                ("middle", "1.0.0", "m1"),
                ("zz", "1.0.0", "z1"),
            ] {
                // merge_one fails the test when the two readers differ.
                let _ = merge_one(Some(text), chart, version, digest);
            }
        }

        // The one difference, by design: other charts' entries are copied, not parsed, so a
        // flaw in them is left as it was found (Helm reported it when it wrote them).
        let broken = HELM_INDEX.replace("    digest: z1", "    digest: \"z1");
        let metadata = meta("bitcoin-operator", "0.2.0");
        let entry = NewEntry { metadata: &metadata, digest: "d2", url: "x.tgz".into() };
        assert!(matches!(merge(Some(&broken), &entry, NOW), Ok(Merged::Added(_))));
        assert!(matches!(merge_with(Some(&broken), &entry, NOW, Scan::walk), Err(IndexError::Syntax(_))));
    }

    #[test]
    fn rfc3339_table() {
        let cases = [
            (0, 0, "1970-01-01T00:00:00.000000000Z"),
            (951_868_800, 0, "2000-03-01T00:00:00.000000000Z"),
            (1_709_210_096, 5, "2024-02-29T12:34:56.000000005Z"),
            (4_102_444_799, 999_999_999, "2099-12-31T23:59:59.999999999Z"),
        ];
        for (secs, nanos, want) in cases {
            let time = UNIX_EPOCH + std::time::Duration::new(secs, nanos);
            assert_eq!(rfc3339(time), want);
        }
    }
}
