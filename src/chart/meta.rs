//! Chart.yaml: the fields Helm knows, read from the file and checked as `helm package` would.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetaError {
    #[error("Chart.yaml:{line}:{column}: {message}")]
    Parse { line: u64, column: u64, message: String },
    #[error("Chart.yaml: {field}: {message}")]
    Invalid { field: &'static str, message: String },
}

/// Chart.yaml metadata. Fields are in alphabetical order, the order Helm writes index entries in.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    pub api_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<Dependency>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deprecated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_version: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub maintainers: Vec<Maintainer>,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub chart_type: Option<String>,
    #[serde(default)]
    pub version: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Maintainer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Dependency {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enabled: bool,
    /// Strings or `{child, parent}` mappings, kept as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub import_values: Vec<serde_json::Value>,
    pub name: String,
    /// Written even when empty, as Helm writes it.
    #[serde(default)]
    pub repository: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl Metadata {
    /// Reads Chart.yaml and checks what a package needs: apiVersion v2, a name, a SemVer version.
    pub fn parse(bytes: &[u8]) -> Result<Self, MetaError> {
        let text = crate::files::utf8_text(bytes).map_err(|e| MetaError::Parse {
            line: e.line as u64,
            column: e.column as u64,
            message: format!("byte 0x{:02x} is not UTF-8; save the file as UTF-8 text", e.byte),
        })?;
        let meta: Self = serde_saphyr::from_str(text).map_err(|e| {
            let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
            let full = e.without_snippet().to_string();
            let message = full.rsplit_once(" at line ").map_or(full.as_str(), |(m, _)| m).to_string();
            MetaError::Parse { line, column, message }
        })?;
        meta.validate()?;
        Ok(meta)
    }

    fn validate(&self) -> Result<(), MetaError> {
        if self.api_version != "v2" {
            return Err(MetaError::Invalid {
                field: "apiVersion",
                message: format!("{:?}: stagecoach packages Helm 3 charts, `apiVersion: v2`", self.api_version),
            });
        }
        if self.name.is_empty() {
            return Err(MetaError::Invalid { field: "name", message: "missing; every chart needs a name".into() });
        }
        // `.` and `..` would name the directory itself, or its parent, inside the package.
        if self.name == "." || self.name == ".." {
            return Err(MetaError::Invalid {
                field: "name",
                message: format!("{:?} names a directory, not a chart; Helm refuses it too", self.name),
            });
        }
        if !self.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(MetaError::Invalid {
                field: "name",
                message: format!("{:?} may only hold letters, digits, `-`, `_` and `.`", self.name),
            });
        }
        if semver::Version::parse(&self.version).is_err() {
            return Err(MetaError::Invalid {
                field: "version",
                message: format!("{:?} is not a SemVer version like 1.2.3", self.version),
            });
        }
        Ok(())
    }

    pub fn semver(&self) -> semver::Version {
        semver::Version::parse(&self.version).unwrap_or_else(|_| semver::Version::new(0, 0, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_table() {
        let ok = "apiVersion: v2\nname: op\nversion: 1.2.4-dev.64ed033\nappVersion: 1.10\n";
        let meta = Metadata::parse(ok.as_bytes()).unwrap();
        // A plain 1.10 stays the text it is, as Helm reads it.
        assert_eq!(meta.app_version.as_deref(), Some("1.10"));
        let cases = [
            (
                "apiVersion: v1\nname: op\nversion: 1.0.0\n",
                "Chart.yaml: apiVersion: \"v1\": stagecoach packages Helm 3 charts",
            ),
            ("apiVersion: v2\nversion: 1.0.0\n", "Chart.yaml: name: missing"),
            ("apiVersion: v2\nname: my chart\nversion: 1.0.0\n", "Chart.yaml: name: \"my chart\" may only hold"),
            ("apiVersion: v2\nname: op\nversion: 1.0\n", "Chart.yaml: version: \"1.0\" is not a SemVer version"),
            ("apiVersion: v2\nname: .\nversion: 1.0.0\n", "Chart.yaml: name: \".\" names a directory"),
            ("apiVersion: v2\nname: ..\nversion: 1.0.0\n", "Chart.yaml: name: \"..\" names a directory"),
            ("apiVersion: v2\nname: a/b\nversion: 1.0.0\n", "Chart.yaml: name: \"a/b\" may only hold"),
            ("apiVersion: v2\nname: op\nversion: 1.0.0\nkeywords: x: y\n", "Chart.yaml:4:"),
        ];
        for (text, want) in cases {
            let got = Metadata::parse(text.as_bytes()).unwrap_err().to_string();
            assert!(got.starts_with(want), "{text:?}: {got}");
        }
    }
}
