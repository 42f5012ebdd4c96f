//! Secret values known to this run, and masking of any text that may reach a user.
//!
//! Credentials are only ever named by environment variable in pipeline files; their values are
//! collected here once so that every echo, error and run record can be masked the same way.

use std::borrow::Cow;

/// The replacement shown wherever a secret value would have appeared.
pub const MASK: &str = "***";

/// Values shorter than this are not masked: masking "a" would shred every message and hide
/// nothing worth hiding. Such credentials are refused when they are read (see `config`).
pub const MIN_SECRET_LEN: usize = 4;

#[derive(Clone, Debug, Default)]
pub struct Secrets {
    values: Vec<String>,
}

impl Secrets {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a value to be masked from now on.
    pub fn add(&mut self, value: impl Into<String>) {
        let value = value.into();
        if value.len() >= MIN_SECRET_LEN && !self.values.contains(&value) {
            self.values.push(value);
            // Longest first, so a secret that contains another is masked whole.
            self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Masks known secret values and the password part of `scheme://user:password@host` URLs.
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for value in &self.values {
            if out.contains(value.as_str()) {
                out = Cow::Owned(out.replace(value.as_str(), MASK));
            }
        }
        match mask_url_passwords(&out) {
            Some(masked) => Cow::Owned(masked),
            None => out,
        }
    }
}

/// Replaces `user:password@` after `://` with `user:***@`; `None` when there is nothing to mask.
fn mask_url_passwords(text: &str) -> Option<String> {
    let mut result = String::new();
    let mut rest = text;
    let mut changed = false;
    while let Some(start) = rest.find("://") {
        let (head, tail) = rest.split_at(start + 3);
        result.push_str(head);
        let authority_end =
            tail.find(|c: char| c == '/' || c.is_whitespace() || c == '\'' || c == '"').unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                result.push_str(&authority[..=colon]);
                result.push_str(MASK);
                result.push_str(&authority[at..]);
                changed = true;
            }
            _ => result.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    result.push_str(rest);
    changed.then_some(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_table() {
        let mut secrets = Secrets::new();
        secrets.add("canary-s3cr3t-42");
        secrets.add("canary");
        secrets.add("ab"); // too short to mask

        let cases = [
            ("no secret", "clone done", "clone done"),
            ("value in text", "token canary-s3cr3t-42 rejected", "token *** rejected"),
            ("longest wins", "canary-s3cr3t-42/canary", "***/***"),
            ("short value ignored", "tab", "tab"),
            ("url password", "https://bot:hunter22@git.example/x.git", "https://bot:***@git.example/x.git"),
            ("url user only", "https://bot@git.example/x.git", "https://bot@git.example/x.git"),
            ("port is not a password", "http://127.0.0.1:5000/v2/", "http://127.0.0.1:5000/v2/"),
            ("two urls", "a://u:p@h b://v:q@i/", "a://u:***@h b://v:***@i/"),
        ];
        for (name, input, want) in cases {
            assert_eq!(secrets.mask(input), want, "case {name}");
        }
    }
}
