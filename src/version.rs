//! Chart versions: release tags become SemVer versions; dev builds become a SemVer pre-release
//! of the next patch, so that `1.2.3 < 1.2.4-dev.64ed033 < 1.2.4`.

use semver::{BuildMetadata, Prerelease, Version};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VersionError {
    #[error("tag `{0}` is not a release version; tag releases like v1.2.3, 1.2.3, 1.2 or v1.2.3-rc.1")]
    NotARelease(String),
    #[error("chart version `{0}` is not a SemVer version (like 1.2.3); fix `version` in Chart.yaml")]
    BadChartVersion(String),
    #[error("`{0}` is not a short commit hash")]
    BadHash(String),
}

/// The chart version a release tag stands for: `v1.2.3`, `1.2.3`, `1.2` (→ `1.2.0`), `v1.2.3-rc.1`.
pub fn release_version(tag: &str) -> Result<Version, VersionError> {
    let bare = tag.strip_prefix('v').unwrap_or(tag);
    parse_lenient(bare).ok_or_else(|| VersionError::NotARelease(tag.to_string()))
}

/// SemVer, or `MAJOR.MINOR[-pre]` read as `MAJOR.MINOR.0[-pre]`.
fn parse_lenient(text: &str) -> Option<Version> {
    if let Ok(version) = Version::parse(text) {
        return Some(version);
    }
    let (core, pre) = match text.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (text, None),
    };
    let (major, minor) = core.split_once('.')?;
    let number = |s: &str| {
        (!s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) && (s == "0" || !s.starts_with('0')))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    let mut version = Version::new(number(major)?, number(minor)?, 0);
    if let Some(pre) = pre {
        version.pre = Prerelease::new(pre).ok()?;
    }
    Some(version)
}

/// Whether two chart versions are one SemVer version as Helm's index compares them: a leading
/// `v` is read, `1.2` is `1.2.0`, and build metadata does not count (`1.0.0+a` is `1.0.0+b`).
/// Text that is no version is compared as it is.
pub fn same_version(a: &str, b: &str) -> bool {
    let parse = |text: &str| parse_lenient(text.strip_prefix('v').unwrap_or(text));
    match (parse(a), parse(b)) {
        (Some(a), Some(b)) => a.cmp_precedence(&b).is_eq(),
        _ => a == b,
    }
}

/// Reads a chart's version: SemVer, `1.2`, or the seed's legacy `0.9-dev64ed033` (read as the
/// release `0.9.0` it was built after; never written).
pub fn parse_chart_version(text: &str) -> Result<Version, VersionError> {
    let bad = || VersionError::BadChartVersion(text.to_string());
    if let Some((release, hash)) = text.split_once("-dev")
        && !hash.is_empty()
        && !hash.starts_with('.')
        && hash.chars().all(|c| c.is_ascii_hexdigit())
    {
        let version = parse_lenient(release).ok_or_else(bad)?;
        return if version.pre.is_empty() { Ok(version) } else { Err(bad()) };
    }
    parse_lenient(text).ok_or_else(bad)
}

/// The version of a dev build after `current`: the next patch as pre-release `dev.<hash>`.
/// A current pre-release (an earlier dev build, a release candidate) keeps its patch.
pub fn dev_version(current: &Version, short_hash: &str) -> Result<Version, VersionError> {
    if short_hash.is_empty() || !short_hash.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()) {
        return Err(VersionError::BadHash(short_hash.to_string()));
    }
    let patch = if current.pre.is_empty() { current.patch + 1 } else { current.patch };
    // SemVer forbids numeric identifiers with leading zeros, so `0123456` is written `g0123456`
    // (as `git describe` does).
    let id = if short_hash.starts_with('0') && short_hash.chars().all(|c| c.is_ascii_digit()) {
        format!("g{short_hash}")
    } else {
        short_hash.to_string()
    };
    Ok(Version {
        major: current.major,
        minor: current.minor,
        patch,
        pre: Prerelease::new(&format!("dev.{id}")).map_err(|_| VersionError::BadHash(short_hash.to_string()))?,
        build: BuildMetadata::EMPTY,
    })
}

/// A release is a version without a pre-release part; only releases are published.
pub fn is_release(version: &Version) -> bool {
    version.pre.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    #[test]
    fn release_tag_table() {
        let cases: [(&str, Result<&str, ()>); 14] = [
            ("v1.2.3", Ok("1.2.3")),
            ("1.2.3", Ok("1.2.3")),
            ("1.2", Ok("1.2.0")),
            ("v1.2", Ok("1.2.0")),
            ("v0.1.0", Ok("0.1.0")),
            ("v1.2.3-rc.1", Ok("1.2.3-rc.1")),
            ("1.2-rc.1", Ok("1.2.0-rc.1")),
            ("v10.20.30+build.5", Ok("10.20.30+build.5")),
            ("release-1", Err(())),
            ("v1", Err(())),
            ("vv1.2.3", Err(())),
            ("01.2.3", Err(())),
            ("1.2.3.4", Err(())),
            ("", Err(())),
        ];
        for (tag, want) in cases {
            let got = release_version(tag);
            match want {
                Ok(want) => assert_eq!(got, Ok(v(want)), "tag {tag:?}"),
                Err(()) => assert_eq!(got, Err(VersionError::NotARelease(tag.into())), "tag {tag:?}"),
            }
        }
        assert_eq!(
            release_version("release-1").unwrap_err().to_string(),
            "tag `release-1` is not a release version; tag releases like v1.2.3, 1.2.3, 1.2 or v1.2.3-rc.1"
        );
    }

    #[test]
    fn dev_version_table() {
        let cases = [
            ("after a release", "1.2.3", "64ed033", "1.2.4-dev.64ed033"),
            ("after another dev build", "1.2.4-dev.aaaaaaa", "64ed033", "1.2.4-dev.64ed033"),
            ("after a release candidate", "2.0.0-rc.1", "64ed033", "2.0.0-dev.64ed033"),
            ("after the seed's legacy form", "0.9-dev64ed033", "1b2c3d4", "0.9.1-dev.1b2c3d4"),
            ("after a two-part version", "1.2", "64ed033", "1.2.1-dev.64ed033"),
            ("digits only", "1.2.3", "1234567", "1.2.4-dev.1234567"),
            ("digits with a leading zero", "1.2.3", "0123456", "1.2.4-dev.g0123456"),
            ("zero version", "0.0.0", "abcdef0", "0.0.1-dev.abcdef0"),
        ];
        for (name, current, hash, want) in cases {
            let current = parse_chart_version(current).unwrap();
            let got = dev_version(&current, hash).unwrap();
            assert_eq!(got.to_string(), want, "case {name}");
            assert!(!is_release(&got), "case {name}");
            // Whatever we write must read back as itself.
            assert_eq!(parse_chart_version(&got.to_string()), Ok(got), "case {name}");
        }
        for bad in ["", "64ED033", "xyz"] {
            assert!(dev_version(&v("1.0.0"), bad).is_err(), "hash {bad:?}");
        }
    }

    #[test]
    fn ordering_table() {
        let dev = dev_version(&v("1.2.3"), "64ed033").unwrap();
        let later_dev = dev_version(&v("1.2.4"), "64ed033").unwrap();
        let ordered = [v("1.2.3"), dev.clone(), v("1.2.4-rc.1"), v("1.2.4"), later_dev, v("1.2.5"), v("1.10.0")];
        for pair in ordered.windows(2) {
            assert!(pair[0] < pair[1], "{} < {}", pair[0], pair[1]);
        }
        assert!(is_release(&v("1.2.4")));
        assert!(!is_release(&v("1.2.4-rc.1")));
    }

    #[test]
    fn chart_version_errors() {
        for bad in ["", "one", "1.2.3-", "1.2-rc.1-devabc", "1.2.3.4"] {
            assert_eq!(parse_chart_version(bad), Err(VersionError::BadChartVersion(bad.into())), "{bad:?}");
        }
    }

    #[test]
    fn same_version_table() {
        let cases = [
            ("v1.0.0", "1.0.0", true),
            ("1.2", "1.2.0", true),
            ("1.0.0+build.1", "1.0.0+build.2", true),
            ("1.0.0+build.1", "1.0.0", true),
            ("1.0.0-rc.1", "1.0.0", false),
            ("1.0.1", "1.0.0", false),
            ("v1.0.0-dev.abc", "1.0.0-dev.abc", true),
            ("not-a-version", "not-a-version", true),
        ];
        for (a, b, want) in cases {
            assert_eq!(same_version(a, b), want, "{a} {b}");
            assert_eq!(same_version(b, a), want, "{b} {a}");
        }
    }
}
