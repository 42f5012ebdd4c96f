//! Byte-preserving scalar edits: `set(text, "image.tag", "64ed033")` changes the bytes of that one
//! scalar and nothing else — comments, quoting, key order, anchors, line endings stay as they are.

use granit_parser::ScalarStyle;

use super::yaml::{self, NodeKind, PlainType, Seg, SyntaxError};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EditError {
    #[error("not valid YAML: {0}")]
    Syntax(#[from] SyntaxError),
    #[error("not UTF-8 text: {0}")]
    NotUtf8(#[from] crate::files::NotUtf8),
    #[error("{0}")]
    BadPath(String),
    #[error("`{path}` not found{hint}")]
    NotFound { path: String, hint: String },
    #[error("`{path}` is in documents {documents:?} of the file; stagecoach sets a key in one document only")]
    Ambiguous { path: String, documents: Vec<usize> },
    #[error(
        "`{path}` is a duplicate key: it is on line {first} and again on line {second} of the same document; \
         YAML readers keep one of them or refuse the file: remove one"
    )]
    DuplicateKey { path: String, first: usize, second: usize },
    #[error("`{path}` is {what}, not a single value")]
    NotScalar { path: String, what: &'static str },
    #[error("`{path}` is an alias (`*name`); set the value where its anchor `&name` is defined")]
    Alias { path: String },
    #[error("cannot create `{path}`: {reason}")]
    CannotCreate { path: String, reason: String },
    #[error("`{path}` could not be written so that it reads back as {value:?}; nothing was changed")]
    NoRoundTrip { path: String, value: String },
}

/// Whether the header of the block scalar whose body starts at `body` (`|+`, `>2+`…) keeps its
/// trailing line breaks.
fn keeps_trailing_breaks(text: &str, body: usize) -> bool {
    let line_start = text[..body].rfind('\n').map_or(0, |i| i + 1);
    let header_end = line_start.saturating_sub(1);
    let header_start = text[..header_end].rfind('\n').map_or(0, |i| i + 1);
    let header = &text[header_start..header_end];
    let header = header.split(" #").next().unwrap_or(header);
    header.rfind(['|', '>']).is_some_and(|at| header[at + 1..].trim_end().contains('+'))
}

/// The end of a block scalar's own lines in `start..end`, a range that may run into the next
/// line's indentation: after its last line break, and unless it keeps its trailing breaks
/// (`keep`), after the line break of its last line that is not blank.
fn own_end(text: &str, start: usize, end: usize, keep: bool) -> usize {
    let body = &text[start..end];
    let mut own =
        if body.ends_with('\n') || !body.contains('\n') { body.len() } else { body.rfind('\n').map_or(0, |i| i + 1) };
    if !keep {
        let mut offset = 0;
        own = 0;
        for line in body.split_inclusive('\n') {
            offset += line.len();
            if !line.trim().is_empty() {
                own = offset;
            }
        }
    }
    start + own
}

/// Sets each `key=value` in turn. Values are strings; a key that held a number or boolean
/// keeps that type when the new value is one too.
pub fn set_all(text: &[u8], assignments: &[(String, String)], create: bool) -> Result<Vec<u8>, EditError> {
    let mut text = crate::files::utf8_text(text)?.to_string();
    for (key, value) in assignments {
        let path = yaml::parse_path(key).map_err(EditError::BadPath)?;
        text = set(&text, &path, value, create)?;
    }
    Ok(text.into_bytes())
}

struct Found {
    document: usize,
    kind: NodeKind,
    value: String,
    start: usize,
    end: usize,
    column: usize,
    flow_depth: usize,
}

/// Sets the scalar at `path` to `value`; with `create`, adds missing keys to a block mapping.
pub fn set(text: &str, path: &[Seg], value: &str, create: bool) -> Result<String, EditError> {
    let shown = yaml::path_string(path);
    let mut found: Vec<Found> = Vec::new();
    // (document, byte offset) of each key naming `path`: two in one document are a duplicate.
    let mut keys: Vec<(usize, usize)> = Vec::new();
    yaml::walk(text, |node| {
        if node.path == path && node.kind == NodeKind::Key {
            keys.push((node.document, node.start));
        }
        if node.path == path && !matches!(node.kind, NodeKind::Key | NodeKind::MappingEnd | NodeKind::SequenceEnd) {
            found.push(Found {
                document: node.document,
                kind: node.kind,
                value: node.value.to_string(),
                start: node.start,
                end: node.end,
                column: node.column,
                flow_depth: node.flow_depth,
            });
        }
        true
    })?;
    let line = |offset: usize| text[..offset].matches('\n').count() + 1;
    if let Some(pair) = keys.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        return Err(EditError::DuplicateKey { path: shown, first: line(pair[0].1), second: line(pair[1].1) });
    }
    let target = match found.len() {
        0 if create => return create_key(text, path, value),
        0 => return Err(EditError::NotFound { path: shown, hint: not_found_hint(text, path)? }),
        1 => found.remove(0),
        _ => {
            return Err(EditError::Ambiguous {
                path: shown,
                documents: found.iter().map(|f| f.document + 1).collect(),
            });
        }
    };
    let style = match target.kind {
        NodeKind::Scalar(style) => style,
        NodeKind::Alias => return Err(EditError::Alias { path: shown }),
        NodeKind::MappingStart { .. } => return Err(EditError::NotScalar { path: shown, what: "a mapping" }),
        _ => return Err(EditError::NotScalar { path: shown, what: "a list" }),
    };
    if target.value == value {
        return Ok(text.to_string());
    }
    // A block scalar's range runs over the blank lines after it; unless its header keeps
    // trailing line breaks (`|+`, `>+`), they are not its own and stay.
    let end = match style {
        ScalarStyle::Literal | ScalarStyle::Folded => {
            own_end(text, target.start, target.end, keeps_trailing_breaks(text, target.start))
        }
        _ => target.end,
    };
    let target = Found { end, ..target };
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let in_flow = target.flow_depth > 0;
    let rendered = match style {
        ScalarStyle::Plain => {
            let keeps_type = !(yaml::plain_type(&target.value) == PlainType::String
                && target.start != target.end
                && yaml::plain_type(value) != PlainType::String);
            if keeps_type && yaml::plain_safe(value, in_flow) { value.to_string() } else { yaml::double_quoted(value) }
        }
        ScalarStyle::SingleQuoted => yaml::single_quoted(value).unwrap_or_else(|| yaml::double_quoted(value)),
        ScalarStyle::DoubleQuoted => yaml::double_quoted(value),
        ScalarStyle::Literal | ScalarStyle::Folded => {
            let indent = " ".repeat(target.column);
            let body = value.strip_suffix('\n').unwrap_or(value);
            let mut out = body.split('\n').collect::<Vec<_>>().join(&format!("{eol}{indent}"));
            // A last line without a line break (the end of the file) stays without one.
            if text[target.start..target.end].ends_with('\n') {
                out.push_str(eol);
            }
            out
        }
    };
    // `key:` with no value: the parser gives an empty range at the colon; write after it.
    let (start, end, rendered) = if target.start == target.end {
        let at = target.start + usize::from(text[target.start..].starts_with(':'));
        (at, at, format!(" {rendered}"))
    } else {
        (target.start, target.end, rendered)
    };
    let mut out = String::with_capacity(text.len() + rendered.len());
    out.push_str(&text[..start]);
    out.push_str(&rendered);
    out.push_str(&text[end..]);
    check_reads_back(&out, path, value)?;
    Ok(out)
}

/// Re-reads the edited text: the value must be there, exactly once, as written.
fn check_reads_back(text: &str, path: &[Seg], value: &str) -> Result<(), EditError> {
    let mut values = Vec::new();
    let parsed = yaml::walk(text, |node| {
        if node.path == path && matches!(node.kind, NodeKind::Scalar(_)) {
            values.push(node.value.to_string());
        }
        true
    });
    if parsed.is_ok() && values == [value] {
        Ok(())
    } else {
        Err(EditError::NoRoundTrip { path: yaml::path_string(path), value: value.to_string() })
    }
}

/// "did you mean" among the keys beside the missing one, and how to create it.
fn not_found_hint(text: &str, path: &[Seg]) -> Result<String, EditError> {
    let Some((Seg::Key(missing), parent)) = path.split_last() else {
        return Ok(String::new());
    };
    let mut siblings = Vec::new();
    yaml::walk(text, |node| {
        if node.kind == NodeKind::Key && node.path.len() == path.len() && node.path[..parent.len()] == *parent {
            siblings.push(node.value.to_string());
        }
        true
    })?;
    let candidates: Vec<&str> = siblings.iter().map(String::as_str).collect();
    Ok(match crate::config::did_you_mean(missing, &candidates) {
        Some(best) => {
            let mut near = parent.to_vec();
            near.push(Seg::Key(best.to_string()));
            format!("; did you mean `{}`?", yaml::path_string(&near))
        }
        None => "; add it to the file, or pass --create".to_string(),
    })
}

/// Adds the missing tail of `path` under the deepest block mapping that exists.
fn create_key(text: &str, path: &[Seg], value: &str) -> Result<String, EditError> {
    let shown = yaml::path_string(path);
    let cannot = |reason: &str| EditError::CannotCreate { path: shown.clone(), reason: reason.to_string() };
    // For every prefix that exists as a node: its kind, its children's key column, and where
    // its last descendant ends.
    struct Prefix {
        kind: Option<NodeKind>,
        key_column: Option<usize>,
        last_end: usize,
    }
    let mut prefixes: Vec<Prefix> =
        (0..path.len()).map(|_| Prefix { kind: None, key_column: None, last_end: 0 }).collect();
    yaml::walk(text, |node| {
        if node.document > 0 {
            return false;
        }
        for (depth, prefix) in prefixes.iter_mut().enumerate() {
            if node.path.len() < depth || node.path[..depth] != path[..depth] {
                continue;
            }
            if node.path.len() == depth && prefix.kind.is_none() && !matches!(node.kind, NodeKind::Key) {
                prefix.kind = Some(node.kind);
            }
            if node.kind == NodeKind::Key && node.path.len() == depth + 1 && prefix.key_column.is_none() {
                prefix.key_column = Some(node.column);
            }
            if node.path.len() > depth && !matches!(node.kind, NodeKind::MappingEnd | NodeKind::SequenceEnd) {
                prefix.last_end = prefix.last_end.max(node.end);
            }
        }
        true
    })?;
    let depth =
        (0..path.len()).rev().find(|d| prefixes[*d].kind.is_some()).ok_or_else(|| cannot("the document is empty"))?;
    let prefix = &prefixes[depth];
    match prefix.kind {
        Some(NodeKind::MappingStart { flow: false }) => {}
        Some(NodeKind::MappingStart { flow: true }) => {
            return Err(cannot("its parent is a flow mapping `{…}`; add it by hand"));
        }
        _ => {
            return Err(cannot(&format!("`{}` is not a mapping", yaml::path_string(&path[..depth.max(1)]))));
        }
    }
    let key_column = prefix.key_column.ok_or_else(|| cannot("its parent mapping is empty"))?;
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };

    let mut insertion = String::new();
    for (offset, seg) in path[depth..].iter().enumerate() {
        let Seg::Key(key) = seg else { return Err(cannot("list items are not created; add them by hand")) };
        let key = if yaml::plain_safe(key, false) && yaml::plain_type(key) == PlainType::String {
            key.clone()
        } else {
            yaml::double_quoted(key)
        };
        insertion.push_str(&" ".repeat(key_column + 2 * offset));
        insertion.push_str(&key);
        insertion.push(':');
        if offset + depth + 1 == path.len() {
            insertion.push(' ');
            let plain = yaml::plain_safe(value, false) && yaml::plain_type(value) == PlainType::String;
            insertion.push_str(&if plain { value.to_string() } else { yaml::double_quoted(value) });
        }
        insertion.push_str(eol);
    }
    // After the line on which the parent's last value ends (its comment included).
    let at = match text[prefix.last_end..].find('\n') {
        _ if prefix.last_end > 0 && text.as_bytes()[prefix.last_end - 1] == b'\n' => prefix.last_end,
        Some(newline) => prefix.last_end + newline + 1,
        None => {
            insertion.insert_str(0, eol);
            text.len()
        }
    };
    let mut out = String::with_capacity(text.len() + insertion.len());
    out.push_str(&text[..at]);
    out.push_str(&insertion);
    out.push_str(&text[at..]);
    check_reads_back(&out, path, value)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Case {
        name: &'static str,
        input: &'static str,
        key: &'static str,
        value: &'static str,
        /// The only bytes that may change: `from` (unique in the input) becomes `to`.
        from: &'static str,
        to: &'static str,
    }

    const CHART: &str = "# The bitcoin operator's chart\napiVersion: v2\nname: bitcoin-operator\ndescription: Runs bitcoind regtest networks\n\n# written by CI\nversion: 0.1.0 # chart version\nappVersion: \"0.1.0\"\nkeywords:\n  - bitcoin\n";

    const CASES: &[Case] = &[
        Case {
            name: "version never touches appVersion (the seed's sed trap)",
            input: CHART,
            key: "version",
            value: "0.1.1-dev.64ed033",
            from: "version: 0.1.0 #",
            to: "version: 0.1.1-dev.64ed033 #",
        },
        Case {
            name: "appVersion keeps its double quotes",
            input: CHART,
            key: "appVersion",
            value: "64ed033a1f3c9b2e8d7f6a5b4c3d2e1f0a9b8c7d",
            from: "\"0.1.0\"",
            to: "\"64ed033a1f3c9b2e8d7f6a5b4c3d2e1f0a9b8c7d\"",
        },
        Case {
            name: "inline comment on the changed line stays",
            input: "image:\n  repository: 127.0.0.1:5000/op   # where CI pushes\n  tag: latest   # set by stagecoach\n  pullPolicy: IfNotPresent\n",
            key: "image.tag",
            value: "64ed033",
            from: "tag: latest   #",
            to: "tag: 64ed033   #",
        },
        Case {
            name: "single quotes stay single",
            input: "image:\n  tag: 'latest'\n",
            key: "image.tag",
            value: "it's",
            from: "'latest'",
            to: "'it''s'",
        },
        Case {
            name: "CRLF line endings",
            input: "image:\r\n  # the tag\r\n  tag: latest\r\n  pullPolicy: Always\r\n",
            key: "image.tag",
            value: "v1.2.3",
            from: "tag: latest\r\n",
            to: "tag: v1.2.3\r\n",
        },
        Case {
            name: "no trailing newline",
            input: "controller_image_tag: abc1234",
            key: "controller_image_tag",
            value: "64ed033",
            from: "abc1234",
            to: "64ed033",
        },
        Case {
            name: "second document of a multi-document file",
            input: "kind: ConfigMap\nmetadata: {name: a}\n---\nimage:\n  tag: old\n...\n",
            key: "image.tag",
            value: "new",
            from: "tag: old",
            to: "tag: new",
        },
        Case {
            name: "inside a flow mapping",
            input: "image: {repository: op, tag: v1, pullPolicy: Always}\n",
            key: "image.tag",
            value: "v2",
            from: "tag: v1,",
            to: "tag: v2,",
        },
        Case {
            name: "a value with a comma in a flow mapping is quoted",
            input: "image: {repository: op, tag: v1}\n",
            key: "image.tag",
            value: "a,b",
            from: "tag: v1}",
            to: "tag: \"a,b\"}",
        },
        Case {
            name: "anchors, aliases and block scalars elsewhere stay",
            input: "defaults: &defaults\n  pullPolicy: IfNotPresent\nimage:\n  <<: *defaults\n  tag: latest\nnotes: |\n  keep\n    this\nfolded: >\n  a\n  b\n",
            key: "image.tag",
            value: "64ed033",
            from: "tag: latest",
            to: "tag: 64ed033",
        },
        Case {
            name: "unicode before the change",
            input: "description: \"Bitcoin ₿ regtest — ünïcode 🚀\"\nimage:\n  tag: latest # ✓\n",
            key: "image.tag",
            value: "v0.1.0",
            from: "latest # ✓",
            to: "v0.1.0 # ✓",
        },
        Case {
            name: "a numeric-looking tag stays a string",
            input: "image:\n  tag: latest\n",
            key: "image.tag",
            value: "1234567",
            from: "latest",
            to: "\"1234567\"",
        },
        Case {
            name: "a number stays a number",
            input: "replicaCount: 1\n",
            key: "replicaCount",
            value: "3",
            from: "1",
            to: "3",
        },
        Case {
            name: "an empty value gets one",
            input: "image:\n  tag:\n  pullPolicy: Always\n",
            key: "image.tag",
            value: "64ed033",
            from: "tag:\n",
            to: "tag: 64ed033\n",
        },
        Case {
            name: "an anchored scalar keeps its anchor",
            input: "tag: &t latest\nother: *t\n",
            key: "tag",
            value: "v1",
            from: "&t latest",
            to: "&t v1",
        },
        Case {
            name: "list item by index",
            input: "containers:\n  - name: op\n    image: op:old\n  - name: side\n    image: side:1\n",
            key: "containers[0].image",
            value: "op:new",
            from: "op:old",
            to: "op:new",
        },
        Case {
            name: "a literal block stays a literal block",
            input: "script: |\n  echo one\nafter: x\n",
            key: "script",
            value: "echo two\necho three\n",
            from: "  echo one\n",
            to: "  echo two\n  echo three\n",
        },
        Case {
            name: "a YAML 1.1 boolean word stays a string",
            input: "mode: auto\n",
            key: "mode",
            value: "yes",
            from: "auto",
            to: "\"yes\"",
        },
        Case {
            name: "a value needing quotes in plain style gets double quotes",
            input: "message: hello\n",
            key: "message",
            value: "a: b # not a comment",
            from: "hello",
            to: "\"a: b # not a comment\"",
        },
        Case {
            name: "a dotted key",
            input: "annotations:\n  example.com/tag: x\n",
            key: "annotations.example\\.com/tag",
            value: "new",
            from: "tag: x",
            to: "tag: new",
        },
    ];

    #[test]
    fn only_the_scalar_changes() {
        for case in CASES {
            assert_eq!(case.input.matches(case.from).count(), 1, "case {}: `from` must be unique", case.name);
            let want = case.input.replacen(case.from, case.to, 1);
            let got = set_all(case.input.as_bytes(), &[(case.key.into(), case.value.into())], false)
                .unwrap_or_else(|e| panic!("case {}: {e}", case.name));
            assert_eq!(String::from_utf8(got).unwrap(), want, "case {}", case.name);
            // Setting the same value again changes nothing.
            let again = set_all(want.as_bytes(), &[(case.key.into(), case.value.into())], false).unwrap();
            assert_eq!(String::from_utf8(again).unwrap(), want, "case {} (again)", case.name);
        }
    }

    #[test]
    fn a_block_scalar_edit_keeps_every_byte_that_is_not_the_scalars_own() {
        // What follows the scalar: nothing, blank lines, a comment, another key.
        let followers = [
            "",
            "\n",
            "\n# comment\n",
            "\n\n# comment\n\nnext: 1\n",
            "next: 1\n",
            "\n # less indented than the text\nnext: 1\n",
        ];
        for header in ["|", "|-", "|+", ">", ">-", ">+", "|2", "|2-"] {
            for follower in followers {
                let input = format!("a: {header}\n  old line\n{follower}");
                let keep = header.ends_with('+');
                // Only a keeping header makes the blank lines after the text the scalar's own.
                let blank: String =
                    follower.split_inclusive('\n').take_while(|l| l.trim().is_empty()).collect::<String>();
                let own = format!("  old line\n{}", if keep { blank.as_str() } else { "" });
                let want = input.replacen(&own, "  new one\n", 1);
                let value = if header.ends_with('-') { "new one" } else { "new one\n" };
                let got = set_all(input.as_bytes(), &[("a".into(), value.into())], false)
                    .unwrap_or_else(|e| panic!("{header} before {follower:?}: {e}"));
                assert_eq!(String::from_utf8(got).unwrap(), want, "{header} before {follower:?}");
            }
        }
        // The end of the file without a line break stays so.
        let got = set_all(b"a: |-\n  old", &[("a".into(), "new".into())], false).unwrap();
        assert_eq!(String::from_utf8(got).unwrap(), "a: |-\n  new");
    }

    #[test]
    fn refusals() {
        let cases: [(&str, &str, &str, EditError); 9] = [
            (
                "missing key with a near miss",
                "image:\n  tag: x\n",
                "image.tg",
                EditError::NotFound { path: "image.tg".into(), hint: "; did you mean `image.tag`?".into() },
            ),
            (
                "missing key",
                "image:\n  tag: x\n",
                "image.digest",
                EditError::NotFound {
                    path: "image.digest".into(),
                    hint: "; add it to the file, or pass --create".into(),
                },
            ),
            ("alias", "a: &x 1\nb: *x\n", "b", EditError::Alias { path: "b".into() }),
            (
                "mapping",
                "image:\n  tag: x\n",
                "image",
                EditError::NotScalar { path: "image".into(), what: "a mapping" },
            ),
            ("list", "l: [1]\n", "l", EditError::NotScalar { path: "l".into(), what: "a list" }),
            (
                "two documents",
                "a: 1\n---\na: 2\n",
                "a",
                EditError::Ambiguous { path: "a".into(), documents: vec![1, 2] },
            ),
            (
                "a key twice in one document",
                "image:\n  tag: a\n  pullPolicy: x\n  tag: b\n",
                "image.tag",
                EditError::DuplicateKey { path: "image.tag".into(), first: 2, second: 4 },
            ),
            (
                "a key twice in the second document",
                "a: 1\n---\nb: 1\n# c\nb: 2\n",
                "b",
                EditError::DuplicateKey { path: "b".into(), first: 3, second: 5 },
            ),
            (
                "bad path",
                "a: 1\n",
                "a..b",
                EditError::BadPath("\"a..b\" is not a key path like image.tag or containers[0].image".into()),
            ),
        ];
        for (name, input, key, want) in cases {
            assert_eq!(set_all(input.as_bytes(), &[(key.into(), "v".into())], false), Err(want), "case {name}");
        }
        let syntax = set_all(b"a: [1\n", &[("a".into(), "v".into())], false).unwrap_err();
        assert!(matches!(syntax, EditError::Syntax(_)), "{syntax:?}");
    }

    #[test]
    fn creating_keys() {
        let cases: [(&str, &str, &str, &str, &str); 5] = [
            (
                "under an existing mapping",
                "image:\n  tag: x # c\nother: 1\n",
                "image.digest",
                "sha256:ab",
                "image:\n  tag: x # c\n  digest: sha256:ab\nother: 1\n",
            ),
            ("nested, at the root", "a: 1\n", "b.c.d", "v", "a: 1\nb:\n  c:\n    d: v\n"),
            ("no trailing newline", "a: 1", "b", "v", "a: 1\nb: v\n"),
            ("CRLF", "a:\r\n  b: 1\r\n", "a.c", "2", "a:\r\n  b: 1\r\n  c: \"2\"\r\n"),
            (
                "after a nested block",
                "image:\n  nested:\n    deep: 1\nnext: 2\n",
                "image.tag",
                "t",
                "image:\n  nested:\n    deep: 1\n  tag: t\nnext: 2\n",
            ),
        ];
        for (name, input, key, value, want) in cases {
            let got = set_all(input.as_bytes(), &[(key.into(), value.into())], true)
                .unwrap_or_else(|e| panic!("case {name}: {e}"));
            assert_eq!(String::from_utf8(got).unwrap(), want, "case {name}");
        }
        let flow = set_all(b"image: {tag: x}\n", &[("image.digest".into(), "d".into())], true).unwrap_err();
        assert!(flow.to_string().contains("flow mapping"), "{flow}");
        let scalar = set_all(b"image: x\n", &[("image.tag".into(), "d".into())], true).unwrap_err();
        assert!(scalar.to_string().contains("`image` is not a mapping"), "{scalar}");
    }
}
