//! `stagecoach chart …` through the real binary: what it prints, writes, and refuses.

use crate::support::stagecoach;

#[test]
fn chart_set_prints_the_diff_and_dry_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let values = "image:\n  repository: op # the operator\n  tag: latest # set by CI\n";
    std::fs::write(dir.path().join("values.yaml"), values).unwrap();

    let dry = stagecoach(dir.path(), &["--dry-run", "chart", "set", "values.yaml", "image.tag=64ed033"], &[]);
    dry.success();
    assert!(dry.stdout.contains("-  tag: latest # set by CI\n+  tag: 64ed033 # set by CI\n"), "{}", dry.stdout);
    assert!(dry.stdout.ends_with("dry run: nothing written\n"));
    assert_eq!(std::fs::read_to_string(dir.path().join("values.yaml")).unwrap(), values);

    stagecoach(dir.path(), &["chart", "set", "values.yaml", "image.tag=64ed033"], &[]).success();
    assert_eq!(std::fs::read_to_string(dir.path().join("values.yaml")).unwrap(), values.replace("latest", "64ed033"));

    let again = stagecoach(dir.path(), &["chart", "set", "values.yaml", "image.tag=64ed033"], &[]);
    again.success();
    assert_eq!(again.stdout, "values.yaml: already set, nothing changed\n");
}

#[test]
fn chart_commands_refuse_bad_input_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("values.yaml"), "image:\n  tag: x\n").unwrap();
    std::fs::create_dir(dir.path().join("chart")).unwrap();
    std::fs::write(dir.path().join("chart/Chart.yaml"), "apiVersion: v2\nname: op\nversion: latest\n").unwrap();
    // A chart repository whose index.yaml is JSON, and a chart named `..`.
    let json = dir.path().join("json-repo");
    std::fs::create_dir_all(json.join("good")).unwrap();
    std::fs::write(json.join("good/Chart.yaml"), "apiVersion: v2\nname: good\nversion: 1.0.0\n").unwrap();
    stagecoach(&json, &["chart", "package", "good"], &[]).success();
    let index = "{\"apiVersion\":\"v1\",\"entries\":{},\"generated\":\"2026-01-01T00:00:00Z\"}\n";
    std::fs::write(json.join("index.yaml"), index).unwrap();
    std::fs::create_dir(dir.path().join("dots")).unwrap();
    std::fs::write(dir.path().join("dots/Chart.yaml"), "apiVersion: v2\nname: ..\nversion: 1.0.0\n").unwrap();
    let cases: [(&[&str], i32, &str); 9] = [
        (&["chart", "index", "--repo", "json-repo"], 1, "index.yaml is JSON, which Helm reads too"),
        (&["chart", "package", "dots"], 1, "dots/Chart.yaml: name: \"..\" names a directory"),
        (&["chart", "package", "chart", "--rename", "."], 1, "name: \".\" names a directory"),
        (
            &["chart", "set", "values.yaml", "image.tg=1"],
            1,
            "error: values.yaml: `image.tg` not found; did you mean `image.tag`?",
        ),
        (&["chart", "set", "values.yaml", "image"], 2, "\"image\" is not KEY=VALUE"),
        (&["chart", "set", "nope.yaml", "a=1"], 2, "reading nope.yaml"),
        (&["chart", "package", "chart"], 1, "chart/Chart.yaml: version: \"latest\" is not a SemVer version"),
        (&["chart", "package", "."], 1, "not a chart directory (no Chart.yaml)"),
        (&["chart", "index", "--repo", "."], 1, "no .tgz packages to index"),
    ];
    for (args, code, want) in cases {
        let run = stagecoach(dir.path(), args, &[]);
        assert_eq!(run.code, code, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(want), "{args:?}: {}", run.stderr);
    }
    assert_eq!(std::fs::read_to_string(dir.path().join("values.yaml")).unwrap(), "image:\n  tag: x\n");
    assert_eq!(std::fs::read_to_string(json.join("index.yaml")).unwrap(), index, "the JSON index was changed");
}

#[test]
fn a_published_version_with_other_bytes_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("chart");
    std::fs::create_dir(&chart).unwrap();
    std::fs::write(chart.join("Chart.yaml"), "apiVersion: v2\nname: op\nversion: 1.0.0\n").unwrap();
    std::fs::write(chart.join("values.yaml"), "a: 1\n").unwrap();
    let repo = dir.path().join("repo");
    let (chart_arg, repo_arg) = (chart.to_str().unwrap(), repo.to_str().unwrap());
    stagecoach(dir.path(), &["chart", "package", chart_arg, "--out", repo_arg], &[]).success();
    stagecoach(dir.path(), &["chart", "index", "--repo", repo_arg], &[]).success();
    let published = std::fs::read_to_string(repo.join("index.yaml")).unwrap();

    // Same version, different content.
    std::fs::write(chart.join("values.yaml"), "a: 2\n").unwrap();
    stagecoach(dir.path(), &["chart", "package", chart_arg, "--out", repo_arg], &[]).success();
    let run = stagecoach(dir.path(), &["chart", "index", "--repo", repo_arg], &[]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("op 1.0.0 is already published with digest"), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(repo.join("index.yaml")).unwrap(), published);
}

/// What Helm's own YAML parser (the real engine, PyPI helm-python-sdk) reads from the chart's
/// values.yaml, as JSON.
fn helm_reads_values(python: &std::path::Path, chart: &std::path::Path, written: &str) -> serde_json::Value {
    let script = "import helm_python, sys\n\
        out = helm_python.Chart.load(sys.argv[1]).render({}, name='t', namespace='default', is_install=True)\n\
        print(next(v for k, v in out.items() if k.endswith('values.txt')))";
    let out = std::process::Command::new(python).args(["-c", script]).arg(chart).output().unwrap();
    assert!(out.status.success(), "Helm cannot read:\n{written}\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn chart_set_writes_values_helm_reads_back_as_the_same_string_in_every_context() {
    let Some(python) = crate::support::helm_engine() else { return };
    let values = [
        "a: b",
        "x:y",
        ":x",
        "?x",
        "? x",
        "x?y",
        "a #b",
        "a#b",
        "#hash",
        "=",
        "<<",
        "<<x",
        "a,b",
        "[x]",
        "{x}",
        "line\u{2028}sep",
        "para\u{2029}sep",
        "next\u{85}line",
        "bom\u{feff}",
        "'single'",
        "\"double\"",
        "tab\there",
        " lead",
        "trail ",
        "-",
        "- x",
        "-x",
        "~",
        "null",
        "Null",
        "true",
        "yes",
        "off",
        "1.0",
        "0x10",
        "1e3",
        "0o7",
        "2026-01-01",
        "12:30",
        "*star",
        "&anchor",
        "!tag",
        "%pct",
        "@at",
        "`tick",
        "|pipe",
        ">gt",
        "",
        "ünïcode",
        "emoji 🚀",
        "back\\slash",
        "a: b # c",
        "x, y: z",
    ];
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path();
    std::fs::create_dir(chart.join("templates")).unwrap();
    std::fs::write(chart.join("Chart.yaml"), "apiVersion: v2\nname: quoting\nversion: 0.1.0\n").unwrap();
    std::fs::write(chart.join("templates/values.txt"), "{{ .Values | toJson }}").unwrap();
    let original = "block: old # a comment\nflow_map: {key: old, other: kept}\nflow_seq: [old, kept]\n";
    for value in values {
        std::fs::write(chart.join("values.yaml"), original).unwrap();
        let sets = [format!("block={value}"), format!("flow_map.key={value}"), format!("flow_seq[0]={value}")];
        let mut args = vec!["chart", "set", "values.yaml"];
        args.extend(sets.iter().map(String::as_str));
        stagecoach(chart, &args, &[]).success();
        let written = std::fs::read_to_string(chart.join("values.yaml")).unwrap();
        let read = helm_reads_values(&python, chart, &written);
        for (context, got) in [
            ("block", &read["block"]),
            ("flow mapping", &read["flow_map"]["key"]),
            ("flow sequence", &read["flow_seq"][0]),
        ] {
            assert_eq!(got, &serde_json::json!(value), "{value:?} in a {context}:\n{written}");
        }
        assert_eq!(read["flow_map"]["other"], "kept", "{value:?}:\n{written}");
        assert_eq!(read["flow_seq"][1], "kept", "{value:?}:\n{written}");
        assert!(written.contains(" # a comment\n"), "{value:?}:\n{written}");
    }
}
