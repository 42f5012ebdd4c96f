//! Invalid pipeline files: each case changes the valid file in one place, and the real binary
//! must exit with 2 and name file:line:column, the field, and what to do.

use crate::support::{VALID_PIPELINE, stagecoach};

struct Case {
    name: &'static str,
    /// Replace the first occurrence of `.0` with `.1`.
    edit: (&'static str, &'static str),
    /// `line:column: field: message` (the start of the message is enough).
    want: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "misspelt key gets a suggestion",
        edit: ("    branch: main", "    brnch: main"),
        want: "7:5: repositories.qa.brnch: unknown key `brnch`; did you mean `branch`?",
    },
    Case {
        name: "misspelt section gets a suggestion",
        edit: ("chart:\n", "chrat:\n"),
        want: "15:1: chrat: unknown key `chrat`; did you mean `chart`?",
    },
    Case {
        name: "a secret written in the file",
        edit: ("    token_env: GITHUB_TOKEN", "    token: ghp_notreallyasecret"),
        want: "30:5: credentials.git.token: unknown key `token`; secrets are never written in the pipeline file: name the environment variable that holds it with `token_env`",
    },
    Case {
        name: "missing section",
        edit: ("image:\n  repository: 127.0.0.1:5000/bitcoin-operator\n  credentials: registry\n", ""),
        want: "missing field `image`",
    },
    Case {
        name: "unsupported version",
        edit: ("version: 1", "version: 2"),
        want: "1:10: version: unsupported version 2; this stagecoach reads version 1",
    },
    Case {
        name: "version of the wrong type",
        edit: ("version: 1", "version: one"),
        want: "1:10: version: invalid u32",
    },
    Case {
        name: "unset variable",
        edit: ("https://git.example/dev.git", "${STAGECOACH_TEST_UNSET}/dev.git"),
        want: "4:10: repositories.dev.url: environment variable STAGECOACH_TEST_UNSET is not set; export it, or give a default with `${STAGECOACH_TEST_UNSET:-…}`",
    },
    Case {
        name: "unclosed interpolation",
        edit: ("https://git.example/dev.git", "${STAGECOACH_QA/dev.git"),
        want: "4:10: repositories.dev.url: `${` without a closing `}`",
    },
    Case {
        name: "password in a URL",
        edit: ("https://git.example/qa.git", "https://bot:hunter22@git.example/qa.git"),
        want: "6:10: repositories.qa.url: credentials must not be written in URLs",
    },
    Case {
        name: "unsupported URL scheme",
        edit: ("https://git.example/qa.git", "ftp://git.example/qa.git"),
        want: "6:10: repositories.qa.url: unsupported URL scheme `ftp`",
    },
    Case {
        name: "invalid branch name",
        edit: ("    branch: main", "    branch: 'bad..name'"),
        want: "7:13: repositories.qa.branch: \"bad..name\" is not a valid git branch name",
    },
    Case {
        name: "undefined credentials are suggested",
        edit: ("    credentials: git", "    credentials: gti"),
        want: "8:18: repositories.qa.credentials: no credentials named `gti`; did you mean `git`?",
    },
    Case {
        name: "image repository with a tag",
        edit: ("127.0.0.1:5000/bitcoin-operator", "127.0.0.1:5000/bitcoin-operator:v1"),
        want: "13:15: image.repository: must not carry a tag (`:v1`)",
    },
    Case {
        name: "image repository in capitals",
        edit: ("127.0.0.1:5000/bitcoin-operator", "127.0.0.1:5000/Bitcoin"),
        want: "13:15: image.repository: \"127.0.0.1:5000/Bitcoin\" is not a valid image name",
    },
    Case {
        name: "invalid chart name",
        edit: ("  name: bitcoin-operator", "  name: bitcoin operator"),
        want: "16:9: chart.name: \"bitcoin operator\" is not a valid chart name",
    },
    Case {
        name: "an OCI repository that is not one",
        edit: ("  name: bitcoin-operator\n", "  name: bitcoin-operator\n  oci: https://registry.example/charts\n"),
        want: "17:8: chart.oci: \"https://registry.example/charts\" is not an OCI repository; write oci://HOST[:PORT]/PATH",
    },
    Case {
        name: "OCI credentials that are not an entry",
        edit: (
            "  name: bitcoin-operator\n",
            "  name: bitcoin-operator\n  oci: oci://r.example/c\n  oci_credentials: regsitry\n",
        ),
        want: "18:20: chart.oci_credentials:",
    },
    Case {
        name: "unknown cluster provider",
        edit: ("provider: kind", "provider: kinde"),
        want: "18:13: cluster.provider: unknown provider `kinde`; did you mean `kind`? expected `kind` or `existing`",
    },
    Case {
        name: "kind without a node image",
        edit: ("  node_image: kindest/node:v1.33.1\n", ""),
        want: "18:3: cluster.node_image: provider `kind` needs `node_image`",
    },
    Case {
        name: "a kind setting with provider existing",
        edit: ("provider: kind", "provider: existing"),
        want: "19:15: cluster.node_image: only used with provider `kind`",
    },
    Case {
        name: "timeout that is not a duration",
        edit: ("timeout: 20m", "timeout: 20 minutes"),
        want: "25:14: commands.unit_tests.timeout: \"20 minutes\" is not a duration; write it like 90s, 30m or 1h30m",
    },
    Case {
        name: "zero timeout",
        edit: ("timeout: 20m", "timeout: 0s"),
        want: "25:14: commands.unit_tests.timeout: must be longer than 0s",
    },
    Case {
        name: "empty command",
        edit: ("run: cargo build", "run: ''"),
        want: "22:10: commands.build.run: must not be empty",
    },
    Case {
        name: "a value where a variable name belongs",
        edit: ("token_env: GITHUB_TOKEN", "token_env: ghp-1234-abcd"),
        want: "30:16: credentials.git.token_env: is not an environment variable name",
    },
    Case {
        name: "two secrets in one credential",
        edit: ("    token_env: GITHUB_TOKEN\n", "    token_env: GITHUB_TOKEN\n    password_env: GIT_PASSWORD\n"),
        want: "31:19: credentials.git.password_env: give only one of `token_env`, `password_env`, `ssh_key_path`",
    },
    Case {
        name: "password without a user",
        edit: ("    username: bot\n", ""),
        want: "32:19: credentials.registry: `password_env` needs `username` or `username_env`",
    },
    Case {
        name: "broken YAML",
        edit: ("url: https://git.example/dev.git", "url: 'https://git.example/dev.git"),
        want: "invalid indentation in multiline quoted scalar",
    },
];

#[test]
fn invalid_pipeline_files_are_refused_with_position_field_and_advice() {
    let mut failures = Vec::new();
    for case in CASES {
        let (from, to) = case.edit;
        assert!(VALID_PIPELINE.contains(from), "case {}: the edit does not apply", case.name);
        let text = VALID_PIPELINE.replacen(from, to, 1);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("pipelines")).unwrap();
        std::fs::write(dir.path().join("pipelines/stagecoach.yaml"), &text).unwrap();
        let run = stagecoach(dir.path(), &["plan"], &[]);
        let want = format!("stagecoach.yaml:{}", case.want);
        let want = if case.want.starts_with(|c: char| c.is_ascii_digit()) { want.as_str() } else { case.want };
        if run.code != 2 || !run.stderr.contains(want) || !run.stdout.is_empty() {
            failures.push(format!(
                "case {:?}: exit {}\n  want: {want}\n  got:  {}",
                case.name,
                run.code,
                run.stderr.trim()
            ));
        }
        assert!(
            !run.stderr.contains("hunter22") && !run.stderr.contains("ghp-1234"),
            "case {}: a secret was echoed",
            case.name
        );
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), CASES.len(), failures.join("\n"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = VALID_PIPELINE.replacen("version: 1", "version: 3", 1).replacen("timeout: 20m", "timeout: soon", 1);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pipelines")).unwrap();
    std::fs::write(dir.path().join("pipelines/stagecoach.yaml"), &text).unwrap();
    let run = stagecoach(dir.path(), &["plan"], &[]);
    assert_eq!(run.code, 2);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stderr);
    assert!(
        lines[0].ends_with("stagecoach.yaml:1:10: version: unsupported version 3; this stagecoach reads version 1"),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains("stagecoach.yaml:25:14: commands.unit_tests.timeout:"), "{}", lines[1]);
}

#[test]
fn a_missing_file_says_where_it_looked_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".git")).unwrap();
    let run = stagecoach(dir.path(), &["plan"], &[]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("no pipeline file found: looked for pipelines/stagecoach.yaml in"), "{}", run.stderr);
    assert!(run.stderr.contains("pass --config FILE"), "{}", run.stderr);

    let run = stagecoach(dir.path(), &["--config", "nope.yaml", "plan"], &[]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("nope.yaml: cannot read the pipeline file"), "{}", run.stderr);
}

#[test]
fn a_file_that_is_not_utf8_is_refused_at_its_first_bad_byte() {
    // Latin-1 "é" in the QA repository's branch name, line 7.
    let text = VALID_PIPELINE.replacen("    branch: main", "    branch: caf\u{e9}", 1);
    let bytes = text.replace("caf\u{e9}", "caf\u{1}").into_bytes();
    let bytes: Vec<u8> = bytes.into_iter().map(|b| if b == 1 { 0xe9 } else { b }).collect();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pipelines")).unwrap();
    std::fs::write(dir.path().join("pipelines/stagecoach.yaml"), bytes).unwrap();
    let run = stagecoach(dir.path(), &["plan"], &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("pipelines/stagecoach.yaml:7:16: byte 0xe9 is not UTF-8; save the file as UTF-8 text"),
        "{}",
        run.stderr
    );
}
