//! The configuration error: where (file, line, column) and what is wrong. Exit status 78.

use std::fmt;
use std::path::{Path, PathBuf};

/// An invalid or unreadable configuration. `certkeeper` exits 78 (`EX_CONFIG`) on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column, when the problem has a place in the file.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl ConfigError {
    pub fn new(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            position: None,
            message: message.into(),
        }
    }

    /// An error at byte `offset` of `source`, naming the key whose value is there.
    pub fn at(file: &Path, source: &str, offset: usize, message: impl Into<String>) -> Self {
        let message = message.into();
        let message = match key_at(source, offset) {
            Some(key) if !message.contains(&key) => format!("{key}: {message}"),
            _ => message,
        };
        Self {
            position: Some(line_column(source, offset)),
            ..Self::new(file, message)
        }
    }
}

/// The key whose value holds byte `offset` of `source`: toml reports a bad value at the
/// value, and the operator wants to read which key it was. Tables are searched whatever
/// their own span, because an array-of-tables item spans only its `[[header]]`.
fn key_at(source: &str, offset: usize) -> Option<String> {
    use toml::de::{DeTable, DeValue};
    fn in_value(key: &str, value: &toml::Spanned<DeValue<'_>>, offset: usize) -> Option<String> {
        match value.get_ref() {
            DeValue::Table(t) => in_table(t, offset),
            DeValue::Array(items) => items
                .iter()
                .find_map(|i| in_value(key, i, offset))
                .or_else(|| value.span().contains(&offset).then(|| key.to_string())),
            _ => value.span().contains(&offset).then(|| key.to_string()),
        }
    }
    fn in_table(table: &DeTable<'_>, offset: usize) -> Option<String> {
        table
            .iter()
            .find_map(|(key, value)| in_value(key.get_ref(), value, offset))
    }
    in_table(DeTable::parse(source).ok()?.get_ref(), offset)
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => {
                write!(f, "{}:{line}:{col}: {}", self.file.display(), self.message)
            }
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions() {
        let src = "a = 1\nbé = 2\n";
        assert_eq!(line_column(src, 0), (1, 1));
        assert_eq!(line_column(src, 6), (2, 1));
        assert_eq!(line_column(src, 9), (2, 3));
    }
}
