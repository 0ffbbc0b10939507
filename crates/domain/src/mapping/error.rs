//! Errors of a mapping file, each pinned to a line and column of the file.

use std::fmt;
use std::ops::Range;

use crate::employee_cd::EmployeeCdRuleError;

/// A mapping file that cannot be used, with every problem found in it.
///
/// All semantic problems are collected in one pass so `mlc mapping check` can list them
/// together; a TOML syntax or structure error stops parsing and is the only problem.
/// Displayed as one `source:line:column: message` line per problem, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct MappingError {
    source_name: String,
    problems: Vec<Problem>,
}

/// One problem at one place in the mapping file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong.
    pub kind: ProblemKind,
}

/// What is wrong with a mapping file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProblemKind {
    /// TOML syntax, or a structure the mapping does not have: unknown key, wrong type,
    /// missing required key, value outside an enumeration. The message is the TOML parser's.
    #[error("{message}")]
    Toml {
        /// The parser's message, without its source excerpt.
        message: String,
    },
    /// A required id or key is empty.
    #[error("{what} must not be empty")]
    Empty {
        /// The key path, e.g. `defaults.calendar`.
        what: String,
    },
    /// An id with surrounding whitespace or control characters: Visma would not find it.
    #[error("{what} {value:?} must not contain control characters or leading/trailing whitespace")]
    InvalidId {
        /// The key path.
        what: String,
        /// The value as written.
        value: String,
    },
    /// Two keys of one table match the same Gusto value (keys compare case-insensitively).
    #[error("[{table}] key {key:?} matches the same Gusto value as the key on line {first_line}")]
    DuplicateKey {
        /// The table, e.g. `departments`.
        table: &'static str,
        /// The later key as written.
        key: String,
        /// Line of the earlier key.
        first_line: usize,
    },
    /// A segment id that Visma cannot have.
    #[error("segment_id {value} must be a positive integer")]
    SegmentId {
        /// The value as written.
        value: i64,
    },
    /// The employee number rule is invalid or too long.
    #[error(transparent)]
    EmployeeCd(#[from] EmployeeCdRuleError),
    /// `target = "none"` without the explicit acknowledgement.
    #[error(
        "job_titles.target = \"none\" drops every job title (Visma's employee has no title \
         field); add acknowledge_dropped = true to confirm"
    )]
    DropNotAcknowledged,
    /// `acknowledge_dropped` where nothing is dropped.
    #[error("job_titles.acknowledge_dropped only applies to target = \"none\"")]
    AcknowledgeWithoutDrop,
    /// Title classes given although titles are dropped.
    #[error("[job_titles.classes] has entries but target = \"none\" ignores them")]
    ClassesIgnored,
    /// An `unmapped` policy of `default` without the default it falls back to.
    #[error("{policy} = \"default\" needs {needs} to be set")]
    MissingDefault {
        /// The policy key, e.g. `unmapped.department`.
        policy: &'static str,
        /// The default it needs, e.g. `defaults.department`.
        needs: &'static str,
    },
}

impl MappingError {
    pub(crate) fn new(source_name: &str, mut problems: Vec<Problem>) -> Self {
        problems.sort_by_key(|p| (p.line, p.column));
        Self { source_name: source_name.to_owned(), problems }
    }

    /// A TOML syntax or structure error.
    pub(crate) fn from_toml(src: &str, source_name: &str, err: &toml::de::Error) -> Self {
        let (line, column) = err.span().map_or((1, 1), |span| line_column(src, span.start));
        let problem =
            Problem { line, column, kind: ProblemKind::Toml { message: err.message().trim().to_owned() } };
        Self::new(source_name, vec![problem])
    }

    /// The name the file was loaded under (usually its path).
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// Every problem, in file order; never empty.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }
}

impl fmt::Display for MappingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}:{}:{}: {}", self.source_name, p.line, p.column, p.kind)?;
        }
        Ok(())
    }
}

/// Collects semantic problems while the parsed file is validated.
pub(crate) struct Problems<'a> {
    src: &'a str,
    found: Vec<Problem>,
}

impl<'a> Problems<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        Self { src, found: Vec::new() }
    }

    pub(crate) fn push(&mut self, span: Range<usize>, kind: impl Into<ProblemKind>) {
        let (line, column) = self.line_column(span.start);
        self.found.push(Problem { line, column, kind: kind.into() });
    }

    pub(crate) fn line_column(&self, offset: usize) -> (usize, usize) {
        line_column(self.src, offset)
    }

    pub(crate) fn into_result<T>(self, source_name: &str, value: T) -> Result<T, MappingError> {
        if self.found.is_empty() {
            Ok(value)
        } else {
            Err(MappingError::new(source_name, self.found))
        }
    }
}

/// 1-based line and character column of a byte offset.
fn line_column(src: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(src.len());
    while !src.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_lines_and_characters() {
        let src = "a = 1\nbé = 2\n";
        assert_eq!(line_column(src, 0), (1, 1));
        assert_eq!(line_column(src, 6), (2, 1));
        // Offset of `=` on line 2: "bé " is 4 bytes but 3 characters.
        assert_eq!(line_column(src, 10), (2, 4));
        assert_eq!(line_column(src, 999), (3, 1));
    }
}
