//! The file as written. Every value that is validated beyond its type is `Spanned`, so a
//! problem can name its line; [`RawMapping::validate`] turns it into the model, recording
//! every problem with its place.

use super::*;

type SpannedTable = BTreeMap<Spanned<String>, Spanned<String>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMapping {
    defaults: RawDefaults,
    #[serde(default)]
    departments: SpannedTable,
    #[serde(default)]
    locations: BTreeMap<Spanned<String>, RawLocation>,
    job_titles: RawJobTitles,
    employee_cd: Spanned<RawEmployeeCd>,
    #[serde(default)]
    unmapped: RawUnmapped,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    employee_class: Spanned<String>,
    calendar: Spanned<String>,
    department: Option<Spanned<String>>,
    branch: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocation {
    branch: Spanned<String>,
    segment: Option<RawSegment>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSegment {
    dimension: Spanned<String>,
    segment_id: Spanned<i64>,
    value: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJobTitles {
    target: Spanned<JobTitleTarget>,
    acknowledge_dropped: Option<Spanned<bool>>,
    #[serde(default)]
    classes: SpannedTable,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmployeeCd {
    prefix: Option<Spanned<String>>,
    strategy: EmployeeCdStrategy,
    max_length: Option<Spanned<i64>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUnmapped {
    department: Option<Spanned<UnmappedAction>>,
    location: Option<Spanned<UnmappedAction>>,
}

impl RawMapping {
    /// Checks everything the types cannot, recording each problem with its place. Always
    /// returns a model; it is only used when no problem was recorded.
    pub(super) fn validate(self, p: &mut Problems<'_>) -> Model {
        let d = self.defaults;
        let defaults = Defaults {
            employee_class: id(p, "defaults.employee_class", d.employee_class),
            calendar: id(p, "defaults.calendar", d.calendar),
            department: d.department.map(|v| id(p, "defaults.department", v)),
            branch: d.branch.map(|v| id(p, "defaults.branch", v)),
        };

        let departments = table(p, "departments", self.departments);

        check_duplicates(p, "locations", self.locations.keys());
        let locations = self
            .locations
            .into_iter()
            .map(|(key, loc)| {
                let key = key_text(p, "locations", key);
                let what = format!("locations.{key:?}");
                let target = LocationTarget {
                    branch: id(p, &format!("{what}.branch"), loc.branch),
                    segment: loc.segment.map(|s| segment(p, &what, s)),
                };
                (key, target)
            })
            .collect();

        let job_titles = job_titles(p, self.job_titles);
        let employee_cd = employee_cd_rule(p, self.employee_cd);

        let unmapped = Unmapped {
            department: policy(
                p,
                self.unmapped.department,
                defaults.department.is_some(),
                "unmapped.department",
                "defaults.department",
            ),
            location: policy(
                p,
                self.unmapped.location,
                defaults.branch.is_some(),
                "unmapped.location",
                "defaults.branch",
            ),
        };

        Model { defaults, departments, locations, job_titles, employee_cd, unmapped }
    }
}

/// A Visma id: non-empty, no surrounding whitespace, no control characters.
fn id(p: &mut Problems<'_>, what: &str, value: Spanned<String>) -> String {
    let span = value.span();
    let value = value.into_inner();
    if value.trim().is_empty() {
        p.push(span, ProblemKind::Empty { what: what.into() });
    } else if value.trim() != value || value.chars().any(char::is_control) {
        p.push(span, ProblemKind::InvalidId { what: what.into(), value: value.clone() });
    }
    value
}

/// A key of a lookup table (Gusto value): must match something.
fn key_text(p: &mut Problems<'_>, table: &str, key: Spanned<String>) -> String {
    let span = key.span();
    let key = key.into_inner();
    if match_key(&key).is_empty() {
        p.push(span, ProblemKind::Empty { what: format!("a key of [{table}]") });
    }
    key
}

/// A `Gusto value -> Visma id` table with its keys and ids checked.
fn table(p: &mut Problems<'_>, name: &'static str, raw: SpannedTable) -> BTreeMap<String, String> {
    check_duplicates(p, name, raw.keys());
    raw.into_iter()
        .map(|(key, value)| {
            let key = key_text(p, name, key);
            let value = id(p, &format!("{name}.{key:?}"), value);
            (key, value)
        })
        .collect()
}

/// Reports keys that differ as written but match the same Gusto value.
fn check_duplicates<'k>(
    p: &mut Problems<'_>,
    table: &'static str,
    keys: impl Iterator<Item = &'k Spanned<String>>,
) {
    // Sort by position so "first" means first in the file.
    let mut keys: Vec<_> = keys.collect();
    keys.sort_by_key(|k| k.span().start);
    let mut seen: HashMap<String, Range<usize>> = HashMap::new();
    for key in keys {
        let normalised = match_key(key.get_ref());
        if normalised.is_empty() {
            continue;
        }
        if let Some(first) = seen.get(&normalised) {
            let (first_line, _) = p.line_column(first.start);
            p.push(key.span(), ProblemKind::DuplicateKey { table, key: key.get_ref().clone(), first_line });
        } else {
            seen.insert(normalised, key.span());
        }
    }
}

fn segment(p: &mut Problems<'_>, location: &str, raw: RawSegment) -> SegmentValue {
    let what = format!("{location}.segment");
    let segment_id =
        u32::try_from(*raw.segment_id.get_ref()).ok().filter(|id| *id > 0).unwrap_or_else(|| {
            p.push(raw.segment_id.span(), ProblemKind::SegmentId { value: *raw.segment_id.get_ref() });
            0
        });
    SegmentValue {
        dimension: id(p, &format!("{what}.dimension"), raw.dimension),
        segment_id,
        value: id(p, &format!("{what}.value"), raw.value),
    }
}

fn job_titles(p: &mut Problems<'_>, raw: RawJobTitles) -> JobTitles {
    let target = *raw.target.get_ref();
    match (target, &raw.acknowledge_dropped) {
        (JobTitleTarget::None, Some(ack)) if *ack.get_ref() => {}
        (JobTitleTarget::None, _) => p.push(raw.target.span(), ProblemKind::DropNotAcknowledged),
        (JobTitleTarget::EmployeeClass, Some(ack)) if *ack.get_ref() => {
            p.push(ack.span(), ProblemKind::AcknowledgeWithoutDrop);
        }
        (JobTitleTarget::EmployeeClass, _) => {}
    }
    if target == JobTitleTarget::None {
        if let Some(first) = raw.classes.keys().min_by_key(|k| k.span().start) {
            p.push(first.span(), ProblemKind::ClassesIgnored);
        }
    }
    JobTitles { target, classes: table(p, "job_titles.classes", raw.classes) }
}

fn employee_cd_rule(p: &mut Problems<'_>, raw: Spanned<RawEmployeeCd>) -> EmployeeCdRule {
    let table_span = raw.span();
    let raw = raw.into_inner();
    let prefix_given = raw.prefix.is_some();
    let (prefix, prefix_span) =
        raw.prefix.map_or_else(|| (String::new(), table_span.clone()), |s| (s.get_ref().clone(), s.span()));
    let (max_length, max_span) = raw.max_length.map_or_else(
        || (EmployeeCdRule::DEFAULT_MAX_LENGTH as i64, table_span.clone()),
        |s| (*s.get_ref(), s.span()),
    );
    EmployeeCdRule::new(prefix, raw.strategy, max_length).unwrap_or_else(|err| {
        use crate::employee_cd::EmployeeCdRuleError as E;
        let span = match err {
            E::InvalidPrefix { .. } => prefix_span,
            E::TooLong { .. } if prefix_given => prefix_span,
            E::MaxLengthOutOfRange { .. } | E::TooLong { .. } => max_span,
        };
        p.push(span, err);
        // Never used: a problem was recorded, so the mapping is rejected.
        EmployeeCdRule::placeholder()
    })
}

fn policy(
    p: &mut Problems<'_>,
    raw: Option<Spanned<UnmappedAction>>,
    has_default: bool,
    policy: &'static str,
    needs: &'static str,
) -> UnmappedAction {
    let Some(raw) = raw else {
        return UnmappedAction::Park;
    };
    if *raw.get_ref() == UnmappedAction::Default && !has_default {
        p.push(raw.span(), ProblemKind::MissingDefault { policy, needs });
    }
    *raw.get_ref()
}
