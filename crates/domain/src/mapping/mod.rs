//! The per-company mapping file: how Gusto's departments, locations and titles become Visma
//! ids, and how the Visma employee number is derived.
//!
//! The format is documented, with every key, in `schemas/examples/mapping.example.toml`; its
//! JSON Schema is `schemas/mapping.schema.json`. In short:
//!
//! ```toml
//! [defaults]
//! employee_class = "EMPSTD"
//! calendar = "MAIN"
//! department = "ADMIN"          # optional; fallback for unmapped.department = "default"
//! branch = "1"                  # optional; fallback for unmapped.location = "default"
//!
//! [departments]                 # Gusto department title or uuid -> Visma department id
//! "Consulting" = "CONS"
//!
//! [locations]                   # Gusto location uuid or city -> Visma branch (+ segment)
//! "Oslo" = { branch = "1", segment = { dimension = "SUBACCOUNT", segment_id = 2, value = "OSL" } }
//!
//! [job_titles]
//! target = "employee_class"     # or "none" together with acknowledge_dropped = true
//! [job_titles.classes]
//! "Partner" = "EMPPART"
//!
//! [employee_cd]
//! prefix = "G"
//! strategy = "employee_code"    # or "uuid_hash"
//! max_length = 10
//!
//! [unmapped]                    # optional; both default to "park"
//! department = "park"
//! location = "park"
//! ```
//!
//! Keys of `[departments]`, `[locations]` and `[job_titles.classes]` match Gusto values
//! case-insensitively and with whitespace runs collapsed, because those values are typed by
//! people in Gusto; two keys that match the same value are an error. Visma ids on the right
//! are used exactly as written.

mod error;
mod raw;

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use self::error::Problems;
pub use self::error::{MappingError, Problem, ProblemKind};
use self::raw::RawMapping;
use crate::employee_cd::{EmployeeCdRule, EmployeeCdStrategy};
use crate::hash::sha256_hex;

/// Hex digits of the mapping revision: 48 bits, ample for the revisions of one company.
const REVISION_LEN: usize = 12;

/// Version of the mapping *rules* in this crate, hashed into every revision. Bump it when
/// `map_snapshot` starts deriving different fields from the same file, so replays under the
/// new rules get new command ids instead of being deduplicated against the old ones.
const RULES_VERSION: &str = "mlc-mapping/1";

/// A parsed and validated mapping file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    source_name: String,
    revision: String,
    model: Model,
    departments_by_key: HashMap<String, String>,
    locations_by_key: HashMap<String, LocationTarget>,
    classes_by_key: HashMap<String, String>,
}

/// The validated content. Its canonical JSON (sorted keys, defaults filled in) is what the
/// revision hashes, so comments, key order, quoting and an explicit default do not change it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Model {
    defaults: Defaults,
    departments: BTreeMap<String, String>,
    locations: BTreeMap<String, LocationTarget>,
    job_titles: JobTitles,
    employee_cd: EmployeeCdRule,
    unmapped: Unmapped,
}

/// `[defaults]`: ids used when nothing more specific applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Defaults {
    /// Employee class when the job title is not mapped (or titles are not mapped at all).
    pub employee_class: String,
    /// Work calendar of every employee (Visma requires one on create).
    pub calendar: String,
    /// Department used by `unmapped.department = "default"`.
    pub department: Option<String>,
    /// Branch used by `unmapped.location = "default"`.
    pub branch: Option<String>,
}

/// Where a Gusto location goes in Visma.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocationTarget {
    /// Branch number set on the employee.
    pub branch: String,
    /// A segment value that stands for the location in the chart of accounts.
    ///
    /// Visma's employee has no dimension field, so this never reaches the employee record; it
    /// tells `mlc mapping check` which segment values must exist (`/v1/dimension/...`).
    pub segment: Option<SegmentValue>,
}

/// A value of one segment of a Visma segmented key (dimension).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentValue {
    /// Segmented key id, e.g. `SUBACCOUNT`.
    pub dimension: String,
    /// 1-based segment number within the key.
    pub segment_id: u32,
    /// The segment value, e.g. `OSL`.
    pub value: String,
}

/// Where the Gusto job title goes: Visma's employee has no title field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobTitleTarget {
    /// The title selects the employee class (`[job_titles.classes]`, else the default class).
    EmployeeClass,
    /// Titles are not carried to Visma; allowed only with `acknowledge_dropped = true`.
    None,
}

/// `[job_titles]`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobTitles {
    /// Where titles go.
    pub target: JobTitleTarget,
    /// Gusto title -> employee class id, keys as written.
    pub classes: BTreeMap<String, String>,
}

/// What to do with an employee whose Gusto value has no entry in the mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnmappedAction {
    /// Do not write the employee; the command is parked with a reason an operator can act on.
    Park,
    /// Use the value from `[defaults]`.
    Default,
}

/// `[unmapped]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Unmapped {
    /// Policy for a department missing from `[departments]`.
    pub department: UnmappedAction,
    /// Policy for a location missing from `[locations]`.
    pub location: UnmappedAction,
}

impl Mapping {
    /// Parses and validates a mapping file.
    ///
    /// `source_name` (usually the path) prefixes every error message, which reads
    /// `source:line:column: message`.
    ///
    /// # Errors
    /// A [`MappingError`] naming the line and column of the TOML syntax error, or of every
    /// semantic problem (unknown key, bad value, empty id, duplicate key, employee number rule
    /// that does not fit, ...).
    pub fn from_toml_str(src: &str, source_name: &str) -> Result<Self, MappingError> {
        // A UTF-8 byte order mark is legal in a file but not in TOML.
        let src = src.strip_prefix('\u{feff}').unwrap_or(src);
        let raw: RawMapping =
            toml::from_str(src).map_err(|err| MappingError::from_toml(src, source_name, &err))?;
        let mut problems = Problems::new(src);
        let model = raw.validate(&mut problems);
        let model = problems.into_result(source_name, model)?;
        Ok(Self::from_model(source_name, model))
    }

    fn from_model(source_name: &str, model: Model) -> Self {
        let revision = revision_of(&model);
        let index = |table: &BTreeMap<String, String>| {
            table.iter().map(|(k, v)| (match_key(k), v.clone())).collect::<HashMap<_, _>>()
        };
        let departments_by_key = index(&model.departments);
        let classes_by_key = index(&model.job_titles.classes);
        let locations_by_key = model.locations.iter().map(|(k, v)| (match_key(k), v.clone())).collect();
        Self {
            source_name: source_name.to_owned(),
            revision,
            model,
            departments_by_key,
            locations_by_key,
            classes_by_key,
        }
    }

    /// Short hex SHA-256 of the normalised content: equal for files that mean the same thing,
    /// different after any change of meaning. Part of every command id.
    pub fn revision(&self) -> &str {
        &self.revision
    }

    /// The name the file was loaded under.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// The normalised content the revision is computed from (sorted keys, defaults filled in).
    pub fn canonical_json(&self) -> String {
        canonical_json(&self.model)
    }

    /// `[defaults]`.
    pub fn defaults(&self) -> &Defaults {
        &self.model.defaults
    }

    /// `[departments]`, keys as written.
    pub fn departments(&self) -> &BTreeMap<String, String> {
        &self.model.departments
    }

    /// `[locations]`, keys as written.
    pub fn locations(&self) -> &BTreeMap<String, LocationTarget> {
        &self.model.locations
    }

    /// `[job_titles]`.
    pub fn job_titles(&self) -> &JobTitles {
        &self.model.job_titles
    }

    /// `[employee_cd]`.
    pub fn employee_cd_rule(&self) -> &EmployeeCdRule {
        &self.model.employee_cd
    }

    /// `[unmapped]`.
    pub fn unmapped(&self) -> Unmapped {
        self.model.unmapped
    }

    /// The Visma department of a Gusto department: by uuid first (stable across renames),
    /// then by title. `None` when neither is mapped.
    pub fn department_for(&self, uuid: &str, title: &str) -> Option<&str> {
        lookup(&self.departments_by_key, uuid, title).map(String::as_str)
    }

    /// The Visma target of a Gusto location: by uuid first, then by city.
    pub fn location_for(&self, uuid: &str, city: &str) -> Option<&LocationTarget> {
        lookup(&self.locations_by_key, uuid, city)
    }

    /// The employee class for a Gusto job title: the mapped class, else the default class.
    /// With `target = "none"` always the default class.
    pub fn employee_class_for(&self, job_title: &str) -> &str {
        let mapped = match self.model.job_titles.target {
            JobTitleTarget::EmployeeClass => lookup(&self.classes_by_key, job_title, ""),
            JobTitleTarget::None => None,
        };
        mapped.unwrap_or(&self.model.defaults.employee_class)
    }
}

fn lookup<'m, V>(table: &'m HashMap<String, V>, first: &str, second: &str) -> Option<&'m V> {
    [first, second].into_iter().map(match_key).filter(|key| !key.is_empty()).find_map(|key| table.get(&key))
}

/// How a mapping key and a Gusto value are compared: case-insensitive, whitespace collapsed.
pub(crate) fn match_key(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

fn canonical_json(model: &Model) -> String {
    // Serialising plain structs, BTreeMaps and strings cannot fail.
    serde_json::to_string(model).unwrap_or_default()
}

fn revision_of(model: &Model) -> String {
    let mut hash = sha256_hex(format!("{RULES_VERSION}\n{}", canonical_json(model)).as_bytes());
    hash.truncate(REVISION_LEN);
    hash
}

#[cfg(test)]
mod tests;
