//! The review file of `mlc match`: the proposal as CSV for a person to approve, read back
//! and checked as a whole before any link is written.

use super::{GustoPerson, Proposal, VismaPerson};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fmt;

/// One line of the review file (CSV with a header line).
///
/// Only `approve`, `gusto_uuid`, `visma_cd` and `company` are read back; the other columns
/// are there for the reviewer and may be deleted or reordered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReviewRow {
    /// `yes` writes the link on apply; `no` or empty does not.
    #[serde(default)]
    pub approve: String,
    #[serde(default)]
    pub suggestion: String,
    #[serde(default)]
    pub confidence: String,
    #[serde(default)]
    pub criteria: String,
    pub gusto_uuid: String,
    #[serde(default)]
    pub gusto_name: String,
    #[serde(default)]
    pub gusto_work_email: String,
    #[serde(default)]
    pub gusto_email: String,
    #[serde(default)]
    pub gusto_code: String,
    pub visma_cd: String,
    #[serde(default)]
    pub visma_name: String,
    #[serde(default)]
    pub visma_email: String,
    #[serde(default)]
    pub reason: String,
    pub company: String,
}

impl ReviewRow {
    pub fn from_proposal(p: &Proposal, company: &str) -> Self {
        let g = p.gusto.as_ref();
        let v = p.visma.as_ref();
        Self {
            approve: String::new(),
            suggestion: p.suggestion.to_string(),
            confidence: if p.gusto.is_some() && p.visma.is_some() {
                format!("{:.2}", p.confidence)
            } else {
                String::new()
            },
            criteria: p.criteria_text(),
            gusto_uuid: g.map(|g| g.uuid.clone()).unwrap_or_default(),
            gusto_name: g.map(GustoPerson::name).unwrap_or_default(),
            gusto_work_email: g.and_then(|g| g.work_email.clone()).unwrap_or_default(),
            gusto_email: g.and_then(|g| g.email.clone()).unwrap_or_default(),
            gusto_code: g.and_then(|g| g.employee_code.clone()).unwrap_or_default(),
            visma_cd: v.map(|v| v.employee_cd.clone()).unwrap_or_default(),
            visma_name: v.map(VismaPerson::name).unwrap_or_default(),
            visma_email: v.and_then(|v| v.email.clone()).unwrap_or_default(),
            reason: p.reason.clone(),
            company: company.to_string(),
        }
    }

    pub fn approved(&self) -> bool {
        self.approve.trim().eq_ignore_ascii_case("yes")
    }
}

/// A problem with one line of the review file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line in the file (the header is line 1).
    pub line: u64,
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Why a review file cannot be applied. Nothing is written when any line is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ReviewFileError {
    #[error("{path}: not a review file: {source}")]
    Csv {
        path: String,
        #[source]
        source: csv::Error,
    },
    #[error("{path}: {} problem(s), nothing applied:\n{}", errors.len(), errors.iter().map(|e| format!("  {path}:{}: {}", e.line, e.message)).collect::<Vec<_>>().join("\n"))]
    Invalid { path: String, errors: Vec<LineError> },
    #[error("{path}: cannot write: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Writes the review file.
pub fn write_review(path: &std::path::Path, rows: &[ReviewRow]) -> Result<(), ReviewFileError> {
    let err = |source: csv::Error| ReviewFileError::Csv { path: path.display().to_string(), source };
    let mut w = csv::Writer::from_path(path).map_err(err)?;
    for r in rows {
        w.serialize(r).map_err(err)?;
    }
    w.flush().map_err(|source| ReviewFileError::Write { path: path.display().to_string(), source })
}

/// Reads the review file: rows with their line numbers.
pub fn read_review(path: &str, text: &str) -> Result<Vec<(u64, ReviewRow)>, ReviewFileError> {
    let mut r = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
    let headers = r.headers().map_err(|source| ReviewFileError::Csv { path: path.into(), source })?.clone();
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|source| ReviewFileError::Csv { path: path.into(), source })?;
        let line = rec.position().map_or(0, |p| p.line());
        if rec.iter().all(str::is_empty) {
            continue;
        }
        match rec.deserialize::<ReviewRow>(Some(&headers)) {
            Ok(row) => out.push((line, row)),
            Err(e) => errors.push(LineError { line, message: e.to_string() }),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ReviewFileError::Invalid { path: path.into(), errors })
    }
}

/// What the file is checked against on apply.
#[derive(Debug, Default)]
pub struct ApplyContext {
    pub company: String,
    /// Every Gusto employee of the company.
    pub gusto_uuids: HashSet<String>,
    /// Every employee number of the company's Visma tenant.
    pub visma_cds: HashSet<String>,
    /// Existing links of the tenant: Gusto uuid -> Visma number.
    pub links: HashMap<String, String>,
}

/// An approved link, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovedLink {
    pub line: u64,
    pub gusto_uuid: String,
    pub visma_cd: String,
    /// Already stored exactly so (the file is applied a second time).
    pub existing: bool,
}

/// Checks every row and returns the approved links, or every problem at once.
pub fn validate(
    path: &str,
    rows: &[(u64, ReviewRow)],
    ctx: &ApplyContext,
) -> Result<Vec<ApprovedLink>, ReviewFileError> {
    let mut errors = Vec::new();
    let mut err = |line: u64, message: String| errors.push(LineError { line, message });
    let linked_cd: HashMap<&str, &str> = ctx.links.iter().map(|(g, cd)| (cd.as_str(), g.as_str())).collect();
    let mut seen_g: HashMap<String, u64> = HashMap::new();
    let mut seen_v: HashMap<String, u64> = HashMap::new();
    let mut out = Vec::new();
    for (line, row) in rows {
        let line = *line;
        let approve = row.approve.trim().to_lowercase();
        if !matches!(approve.as_str(), "" | "yes" | "no") {
            err(line, format!("approve is {:?}; write yes, no, or leave it empty", row.approve));
            continue;
        }
        if row.company.trim() != ctx.company {
            err(
                line,
                format!(
                    "company {:?} is not {}; this file belongs to another company",
                    row.company, ctx.company
                ),
            );
            continue;
        }
        if approve != "yes" {
            continue;
        }
        let (g, cd) = (row.gusto_uuid.trim(), row.visma_cd.trim());
        if g.is_empty() || cd.is_empty() {
            err(line, "an approved row needs both gusto_uuid and visma_cd".into());
            continue;
        }
        if !ctx.gusto_uuids.contains(g) {
            err(line, format!("Gusto employee {g} is not an employee of company {}", ctx.company));
            continue;
        }
        if !ctx.visma_cds.contains(cd) {
            err(line, format!("Visma employee {cd} does not exist in the company's Visma tenant"));
            continue;
        }
        let first_g = *seen_g.entry(g.to_string()).or_insert(line);
        let first_v = *seen_v.entry(cd.to_string()).or_insert(line);
        if first_g != line {
            err(line, format!("Gusto employee {g} is approved twice (also on line {first_g})"));
        }
        if first_v != line {
            err(line, format!("Visma employee {cd} is approved twice (also on line {first_v})"));
        }
        if first_g != line || first_v != line {
            continue;
        }
        let existing = match (ctx.links.get(g), linked_cd.get(cd)) {
            (Some(have), _) if have == cd => true,
            (Some(have), _) => {
                err(line, format!("Gusto employee {g} is already linked to Visma employee {have}"));
                continue;
            }
            (None, Some(other)) => {
                err(line, format!("Visma employee {cd} is already linked to Gusto employee {other}"));
                continue;
            }
            (None, None) => false,
        };
        out.push(ApprovedLink { line, gusto_uuid: g.into(), visma_cd: cd.into(), existing });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ReviewFileError::Invalid { path: path.into(), errors })
    }
}
