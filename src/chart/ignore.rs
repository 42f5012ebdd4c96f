//! `.helmignore` rules, with Helm's semantics: a path is left out when some rule matches it and
//! no `!` rule does; a rule without `/` matches the file name, one with `/` the whole path from
//! the chart root; a trailing `/` matches directories only; `**` is refused; dotfiles in
//! `templates/` are always left out.

use glob::{MatchOptions, Pattern};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(".helmignore line {line}: {message}")]
pub struct IgnoreError {
    pub line: usize,
    pub message: String,
}

struct Rule {
    pattern: Pattern,
    negate: bool,
    dir_only: bool,
    /// Match the whole relative path (the rule had a `/`), not just the file name.
    whole_path: bool,
}

#[derive(Default)]
pub struct Rules {
    rules: Vec<Rule>,
}

const OPTIONS: MatchOptions =
    MatchOptions { case_sensitive: true, require_literal_separator: true, require_literal_leading_dot: false };

impl Rules {
    /// Parses a `.helmignore` file's text; Helm's default rule comes first.
    pub fn parse(text: &str) -> Result<Self, IgnoreError> {
        let mut rules = Self::default();
        rules.add("templates/.?*", 0)?;
        for (index, line) in text.trim_start_matches('\u{feff}').lines().enumerate() {
            rules.add(line, index + 1)?;
        }
        Ok(rules)
    }

    fn add(&mut self, line: &str, number: usize) -> Result<(), IgnoreError> {
        let rule = line.trim();
        if rule.is_empty() || rule.starts_with('#') {
            return Ok(());
        }
        let error = |message: String| IgnoreError { line: number, message };
        if rule.contains("**") {
            return Err(error("`**` is not supported by Helm".into()));
        }
        let (negate, rule) = match rule.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, rule),
        };
        let (dir_only, rule) = match rule.strip_suffix('/') {
            Some(rest) => (true, rest),
            None => (false, rule),
        };
        let whole_path = rule.contains('/');
        let rule = rule.strip_prefix('/').unwrap_or(rule);
        let glob = glob_pattern(rule).ok_or_else(|| error(format!("{rule:?}: a `\\` at the end escapes nothing")))?;
        let pattern = Pattern::new(&glob).map_err(|e| error(format!("{rule:?}: {}", e.msg)))?;
        self.rules.push(Rule { pattern, negate, dir_only, whole_path });
        Ok(())
    }

    /// Whether `path` (relative to the chart root, `/`-separated) is left out.
    pub fn ignores(&self, path: &str, is_dir: bool) -> bool {
        let name = path.rsplit('/').next().unwrap_or(path);
        let (mut positive, mut negative) = (false, false);
        for rule in &self.rules {
            if rule.dir_only && !is_dir {
                continue;
            }
            let subject = if rule.whole_path { path } else { name };
            if rule.pattern.matches_with(subject, OPTIONS) {
                positive = true;
                negative |= rule.negate;
            }
        }
        positive && !negative
    }
}

/// A pattern of Go's `filepath.Match`, which Helm uses, as the glob crate writes it: `\\c` is the
/// character `c` (so `\\!keep` and `\\#notes` name files, not a negation or a comment), and a
/// negated class `[^…]` is `[!…]`. `None` for a pattern that ends in a lone `\\`.
fn glob_pattern(rule: &str) -> Option<String> {
    let mut out = String::with_capacity(rule.len());
    let mut chars = rule.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                special @ ('*' | '?' | '[' | ']') => out.push_str(&format!("[{special}]")),
                other => out.push(other),
            },
            '[' if chars.peek() == Some(&'^') => {
                chars.next();
                out.push_str("[!");
            }
            other => out.push(other),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helm_semantics_table() {
        let rules =
            Rules::parse("# comment\n\n.git/\n*.swp\ntemp?.txt\nsecret/*.key\n/ci\n*.tgz\n!keep.tgz\n").unwrap();
        let cases = [
            ("Chart.yaml", false, false),
            (".git", true, true),
            (".git", false, false),
            ("a.swp", false, true),
            ("templates/x.swp", false, true),
            ("temp1.txt", false, true),
            ("temp12.txt", false, false),
            ("secret/a.key", false, true),
            ("other/secret/a.key", false, false),
            ("ci", true, true),
            ("sub/ci", true, false),
            ("old.tgz", false, true),
            ("keep.tgz", false, false),
            ("templates/.hidden", false, true),
            ("templates/deployment.yaml", false, false),
        ];
        for (path, is_dir, want) in cases {
            assert_eq!(rules.ignores(path, is_dir), want, "{path} dir={is_dir}");
        }
        assert_eq!(Rules::parse("a/**/b").err().map(|e| e.line), Some(1));
        assert_eq!(Rules::parse("ok\\").err().map(|e| e.line), Some(1));
    }

    #[test]
    fn escaped_characters_name_files_as_helm_reads_them() {
        let rules = Rules::parse("\\!bang.txt\n\\#hash.txt\nstar\\*.txt\n[^a]b.txt\n").unwrap();
        let cases = [
            ("!bang.txt", true),
            ("bang.txt", false),
            ("#hash.txt", true),
            ("hash.txt", false),
            ("star*.txt", true),
            ("starry.txt", false),
            ("cb.txt", true),
            ("ab.txt", false),
        ];
        for (path, want) in cases {
            assert_eq!(rules.ignores(path, false), want, "{path}");
        }
    }
}
