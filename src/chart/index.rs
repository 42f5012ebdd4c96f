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
use super::yaml::{self, NodeKind, PlainType, Seg};

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
        "{name} {version} is already published with digest {published}, and this package's digest is {new}; \
         a published chart is never replaced: bump the version"
    )]
    Conflict { name: String, version: String, published: String, new: String },
}

/// What a merge did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Merged {
    /// The version was there with the same digest: the index is unchanged.
    AlreadyPublished,
    Added,
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
pub fn merge(existing: Option<&str>, entry: &NewEntry<'_>, now: &str) -> Result<(String, Merged), IndexError> {
    let value = entry_value(entry, now);
    let name = &entry.metadata.name;
    let Some(text) = existing.filter(|t| !t.trim().is_empty()) else {
        let mut out = String::from("apiVersion: v1\nentries:\n");
        out.push_str(&format!("  {}:\n", key_text(name)));
        out.push_str(&render_item(&value, 2, "\n"));
        out.push_str(&format!("generated: {}\n", yaml::double_quoted(now)));
        return Ok((out, Merged::Added));
    };
    if text.trim_start_matches('\u{feff}').trim_start().starts_with(['{', '[']) {
        return Err(IndexError::Json);
    }
    let scan = Scan::run(text, name)?;
    if scan.api_version.as_deref() != Some("v1") {
        return Err(IndexError::ApiVersion(scan.api_version.unwrap_or_default()));
    }
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let version = semver::Version::parse(&entry.metadata.version).ok();
    for item in &scan.items {
        if item.version.as_deref() == Some(entry.metadata.version.as_str()) {
            let published = item.digest.clone().unwrap_or_default();
            return if published == entry.digest {
                Ok((text.to_string(), Merged::AlreadyPublished))
            } else {
                Err(IndexError::Conflict {
                    name: name.clone(),
                    version: entry.metadata.version.clone(),
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
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut out = text.to_string();
    for (at, removed, inserted) in edits {
        out.replace_range(at..at + removed, &inserted);
    }
    Ok((out, Merged::Added))
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

fn render_map_lines(value: &Value, column: usize, lines: &mut Vec<String>) {
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
        let mut scan = Scan::default();
        let mut chart_key_column = 0;
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
                    let this_chart = matches!(&path.get(1), Some(Seg::Key(k)) if k == name);
                    match (path.len(), kind) {
                        (2, NodeKind::Key) => {
                            let key = node.value.to_string();
                            if key == name {
                                chart_key_column = node.column;
                            }
                            scan.chart_keys.push(ChartKey {
                                name: key,
                                line_start: line_start(text, node.start),
                                column: node.column,
                            });
                        }
                        (2, NodeKind::SequenceStart { flow: true }) if this_chart => scan.chart_flow = true,
                        (3, NodeKind::MappingStart { .. }) if this_chart => {
                            let dash = dash_position(text, node.start);
                            let dash_column = dash - line_start(text, dash);
                            if scan.dash_offset.is_none() {
                                scan.dash_offset = Some(dash_column.saturating_sub(chart_key_column));
                            }
                            scan.items.push(Item {
                                line_start: line_start(text, dash),
                                dash_column,
                                version: None,
                                digest: None,
                            });
                        }
                        (3, NodeKind::MappingStart { .. }) if scan.dash_offset.is_none() => {
                            let dash = dash_position(text, node.start);
                            let column = dash - line_start(text, dash);
                            let key_column = scan.chart_keys.last().map_or(0, |k| k.column);
                            scan.dash_offset = Some(column.saturating_sub(key_column));
                        }
                        (4, NodeKind::Scalar(_)) if this_chart => {
                            if let (Some(item), Some(Seg::Key(field))) = (scan.items.last_mut(), path.get(3)) {
                                match field.as_str() {
                                    "version" => item.version = Some(node.value.to_string()),
                                    "digest" => item.digest = Some(node.value.to_string()),
                                    _ => {}
                                }
                            }
                        }
                        _ => {}
                    }
                    if this_chart && path.len() > 2 && !matches!(kind, NodeKind::MappingEnd | NodeKind::SequenceEnd) {
                        scan.chart_last_end = scan.chart_last_end.max(node.end);
                    }
                }
                _ => {}
            }
            true
        })?;
        Ok(scan)
    }
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

    fn merge_one(
        existing: Option<&str>,
        name: &str,
        version: &str,
        digest: &str,
    ) -> Result<(String, Merged), IndexError> {
        let metadata = meta(name, version);
        let entry =
            NewEntry { metadata: &metadata, digest, url: format!("https://charts.example/{name}-{version}.tgz") };
        merge(existing, &entry, NOW)
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
        assert_eq!(merged, Merged::Added);
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
        assert_eq!(merged, Merged::AlreadyPublished);
        assert_eq!(twice, once);
    }

    #[test]
    fn a_published_version_is_never_replaced() {
        let error = merge_one(Some(HELM_INDEX), "bitcoin-operator", "0.1.0", "other").unwrap_err();
        assert_eq!(
            error,
            IndexError::Conflict {
                name: "bitcoin-operator".into(),
                version: "0.1.0".into(),
                published: "d1".into(),
                new: "other".into()
            }
        );
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
