use super::*;
use crate::employee_cd::EmployeeCdRuleError;

const EXAMPLE: &str = include_str!("../../../../schemas/examples/mapping.example.toml");

/// A small valid file; tests append to it or replace lines of it.
const MINIMAL: &str = r#"[defaults]
employee_class = "EMPSTD"
calendar = "MAIN"

[departments]
"Consulting" = "CONS"

[locations]
"Oslo" = { branch = "1", segment = { dimension = "SUBACCOUNT", segment_id = 2, value = "OSL" } }

[job_titles]
target = "employee_class"

[employee_cd]
prefix = "G"
strategy = "employee_code"
"#;

fn parse(src: &str) -> Result<Mapping, MappingError> {
    Mapping::from_toml_str(src, "mapping.toml")
}

/// Parses a file that must fail, and returns its single problem.
fn problem(src: &str) -> (Problem, String) {
    let err = parse(src).expect_err("mapping must be rejected");
    assert_eq!(err.problems().len(), 1, "{err}");
    (err.problems()[0].clone(), err.to_string())
}

#[test]
fn parses_the_example_file() {
    let m = Mapping::from_toml_str(EXAMPLE, "mapping.example.toml").expect("example parses");
    assert_eq!(m.defaults().employee_class, "EMPSTD");
    assert_eq!(m.departments().len(), 6);
    for (city, branch, segment) in [
        ("Oslo", "1", "OSL"),
        ("Stockholm", "2", "STO"),
        ("Copenhagen", "3", "CPH"),
        ("Helsinki", "4", "HEL"),
        ("Reykjavik", "5", "REK"),
    ] {
        let target = m.location_for("", city).expect("office mapped");
        assert_eq!(target.branch, branch);
        let seg = target.segment.as_ref().expect("segment");
        assert_eq!((seg.dimension.as_str(), seg.segment_id, seg.value.as_str()), ("SUBACCOUNT", 2, segment));
    }
    for (title, id) in [
        ("Consulting", "CONS"),
        ("Engineering", "ENG"),
        ("Finance", "FIN"),
        ("Sales", "SALES"),
        ("People", "HR"),
        ("Operations", "OPS"),
    ] {
        assert_eq!(m.department_for("", title), Some(id));
    }
    assert_eq!(m.employee_cd_rule().prefix(), "G");
    assert_eq!(m.unmapped().location, UnmappedAction::Default);
    assert_eq!(m.revision().len(), REVISION_LEN);
}

#[test]
fn defaults_apply_when_optional_parts_are_missing() {
    let m = parse(MINIMAL).expect("valid");
    assert_eq!(m.employee_cd_rule().max_length(), 10);
    assert_eq!(m.unmapped(), Unmapped { department: UnmappedAction::Park, location: UnmappedAction::Park });
    assert_eq!(m.defaults().department, None);
    assert!(m.job_titles().classes.is_empty());
}

#[test]
fn lookups_ignore_case_and_whitespace_and_prefer_uuid() {
    let src = format!("{MINIMAL}\n[departments]\n\"Sales  Ops\" = \"SALES\"\n\"uuid-1\" = \"ENG\"\n")
        .replace("[departments]\n\"Consulting\" = \"CONS\"\n", "");
    let m = parse(&src).expect("valid");
    assert_eq!(m.department_for("", " sales ops "), Some("SALES"));
    assert_eq!(m.department_for("UUID-1", "Sales Ops"), Some("ENG"));
    assert_eq!(m.department_for("uuid-2", "Sales Ops"), Some("SALES"));
    assert_eq!(m.department_for("", ""), None);
    assert_eq!(m.location_for("", "OSLO").map(|t| t.branch.as_str()), Some("1"));
}

#[test]
fn employee_class_follows_job_titles() {
    let src = format!("{MINIMAL}\n[job_titles.classes]\n\"Partner\" = \"EMPPART\"\n")
        .replace("target = \"employee_class\"\n", "target = \"employee_class\"\n");
    let m = parse(&src).expect("valid");
    assert_eq!(m.employee_class_for("partner"), "EMPPART");
    assert_eq!(m.employee_class_for("Intern"), "EMPSTD");
    assert_eq!(m.employee_class_for(""), "EMPSTD");
}

#[test]
fn dropped_titles_need_acknowledgement() {
    let src = MINIMAL.replace("target = \"employee_class\"", "target = \"none\"\nacknowledge_dropped = true");
    let m = parse(&src).expect("acknowledged drop is valid");
    assert_eq!(m.job_titles().target, JobTitleTarget::None);
    assert_eq!(m.employee_class_for("Partner"), "EMPSTD");

    let (p, msg) = problem(&MINIMAL.replace("target = \"employee_class\"", "target = \"none\""));
    assert_eq!((p.line, p.column), (12, 10));
    assert_eq!(p.kind, ProblemKind::DropNotAcknowledged);
    assert!(msg.starts_with("mapping.toml:12:10: job_titles.target = \"none\""), "{msg}");

    let (p, _) = problem(
        &MINIMAL.replace("target = \"employee_class\"", "target = \"none\"\nacknowledge_dropped = false"),
    );
    assert_eq!((p.line, p.kind), (12, ProblemKind::DropNotAcknowledged));
}

#[test]
fn acknowledgement_without_drop_is_an_error() {
    let (p, _) =
        problem(&MINIMAL.replace(
            "target = \"employee_class\"",
            "target = \"employee_class\"\nacknowledge_dropped = true",
        ));
    assert_eq!((p.line, p.kind), (13, ProblemKind::AcknowledgeWithoutDrop));
}

#[test]
fn classes_with_dropped_titles_are_an_error() {
    let src = format!("{MINIMAL}[job_titles.classes]\n\"Partner\" = \"EMPPART\"\n")
        .replace("target = \"employee_class\"", "target = \"none\"\nacknowledge_dropped = true");
    let (p, _) = problem(&src);
    assert_eq!((p.line, p.kind), (19, ProblemKind::ClassesIgnored));
}

#[test]
fn syntax_error_names_line_and_column() {
    let src = MINIMAL.replace("calendar = \"MAIN\"", "calendar = \"MAIN");
    let (p, msg) = problem(&src);
    assert_eq!(p.line, 3, "{msg}");
    assert!(matches!(p.kind, ProblemKind::Toml { .. }));
    assert!(msg.starts_with("mapping.toml:3:"), "{msg}");
}

#[test]
fn unknown_key_names_its_line() {
    let src = MINIMAL.replace("calendar = \"MAIN\"", "calendar = \"MAIN\"\ncalender = \"X\"");
    let (p, msg) = problem(&src);
    assert_eq!((p.line, p.column), (4, 1), "{msg}");
    assert!(msg.contains("unknown field `calender`"), "{msg}");
}

#[test]
fn unknown_table_names_its_line() {
    let src = format!("{MINIMAL}\n[departmnets]\n\"Sales\" = \"SALES\"\n");
    let (p, msg) = problem(&src);
    assert_eq!((p.line, p.column), (18, 2), "{msg}");
    assert!(msg.contains("unknown field `departmnets`"), "{msg}");
}

#[test]
fn unknown_key_in_inline_location_names_its_line() {
    let src = MINIMAL.replace("{ branch = \"1\",", "{ brnch = \"1\",");
    let (p, msg) = problem(&src);
    assert_eq!(p.line, 9, "{msg}");
    assert!(msg.contains("brnch"), "{msg}");
}

#[test]
fn bad_enum_value_names_its_line() {
    let src = MINIMAL.replace("strategy = \"employee_code\"", "strategy = \"sequence\"");
    let (p, msg) = problem(&src);
    assert_eq!((p.line, p.column), (16, 12), "{msg}");
    assert!(msg.contains("sequence"), "{msg}");
}

#[test]
fn wrong_type_names_its_line() {
    let src = MINIMAL.replace("segment_id = 2", "segment_id = \"2\"");
    let (p, msg) = problem(&src);
    assert_eq!(p.line, 9, "{msg}");
}

#[test]
fn missing_required_table_is_reported() {
    let src = MINIMAL.replace("[job_titles]\ntarget = \"employee_class\"\n", "");
    let (p, msg) = problem(&src);
    assert_eq!(p.line, 1, "{msg}");
    assert!(msg.contains("missing field `job_titles`"), "{msg}");
}

#[test]
fn empty_ids_name_their_line() {
    let (p, msg) = problem(&MINIMAL.replace("calendar = \"MAIN\"", "calendar = \"  \""));
    assert_eq!((p.line, p.column), (3, 12), "{msg}");
    assert_eq!(p.kind, ProblemKind::Empty { what: "defaults.calendar".into() });

    let (p, msg) = problem(&MINIMAL.replace("\"Consulting\" = \"CONS\"", "\"Consulting\" = \"\""));
    assert_eq!((p.line, p.column), (6, 16), "{msg}");
    assert!(msg.contains("departments.\"Consulting\" must not be empty"), "{msg}");

    let (p, msg) = problem(&MINIMAL.replace("\"Consulting\" = \"CONS\"", "\" \" = \"CONS\""));
    assert_eq!((p.line, p.column), (6, 1), "{msg}");
    assert!(msg.contains("a key of [departments] must not be empty"), "{msg}");

    let (p, msg) = problem(&MINIMAL.replace("value = \"OSL\"", "value = \"\""));
    assert_eq!(p.line, 9, "{msg}");
    assert!(msg.contains("locations.\"Oslo\".segment.value"), "{msg}");
}

#[test]
fn ids_with_whitespace_are_rejected() {
    let (p, _) = problem(&MINIMAL.replace("branch = \"1\"", "branch = \" 1\""));
    assert_eq!(p.line, 9);
    assert!(matches!(p.kind, ProblemKind::InvalidId { .. }));
}

#[test]
fn duplicate_keys_after_normalisation_are_rejected() {
    let src =
        MINIMAL.replace("\"Consulting\" = \"CONS\"", "\"Consulting\" = \"CONS\"\n\"consulting \" = \"ENG\"");
    let (p, msg) = problem(&src);
    assert_eq!((p.line, p.column), (7, 1), "{msg}");
    assert_eq!(
        p.kind,
        ProblemKind::DuplicateKey { table: "departments", key: "consulting ".into(), first_line: 6 }
    );
}

#[test]
fn bad_segment_id_names_its_line() {
    let (p, msg) = problem(&MINIMAL.replace("segment_id = 2", "segment_id = 0"));
    assert_eq!(p.line, 9, "{msg}");
    assert_eq!(p.kind, ProblemKind::SegmentId { value: 0 });
}

#[test]
fn employee_cd_rule_too_long_names_its_line() {
    let (p, msg) = problem(&MINIMAL.replace("prefix = \"G\"", "prefix = \"GUSTO\""));
    assert_eq!((p.line, p.column), (15, 10), "{msg}");
    assert!(matches!(p.kind, ProblemKind::EmployeeCd(EmployeeCdRuleError::TooLong { .. })), "{msg}");
    assert!(msg.contains("exceeds max_length 10"), "{msg}");

    let src = MINIMAL.replace("prefix = \"G\"\n", "") + "max_length = 5\n";
    let (p, msg) = problem(&src);
    assert_eq!((p.line, p.column), (16, 14), "{msg}");

    let src = MINIMAL.replace("strategy = \"employee_code\"", "strategy = \"uuid_hash\"\nmax_length = 8");
    let (p, _) = problem(&src);
    assert_eq!(p.line, 15);
}

#[test]
fn employee_cd_bad_prefix_and_length_name_their_line() {
    let (p, _) = problem(&MINIMAL.replace("prefix = \"G\"", "prefix = \"g/\""));
    assert_eq!(p.line, 15);
    assert!(matches!(p.kind, ProblemKind::EmployeeCd(EmployeeCdRuleError::InvalidPrefix { .. })));
    let (p, _) = problem(&format!("{MINIMAL}max_length = 99\n"));
    assert_eq!(p.line, 17);
    assert!(matches!(
        p.kind,
        ProblemKind::EmployeeCd(EmployeeCdRuleError::MaxLengthOutOfRange { max_length: 99 })
    ));
}

#[test]
fn default_policy_needs_the_default() {
    let src = format!("{MINIMAL}\n[unmapped]\ndepartment = \"default\"\n");
    let (p, msg) = problem(&src);
    assert_eq!((p.line, p.column), (19, 14), "{msg}");
    assert_eq!(
        p.kind,
        ProblemKind::MissingDefault { policy: "unmapped.department", needs: "defaults.department" }
    );
    let src = format!("{MINIMAL}\n[unmapped]\ndepartment = \"default\"\n")
        .replace("calendar = \"MAIN\"", "calendar = \"MAIN\"\ndepartment = \"ADMIN\"");
    assert!(parse(&src).is_ok());
}

#[test]
fn all_semantic_problems_are_reported_in_file_order() {
    let src = MINIMAL
        .replace("prefix = \"G\"", "prefix = \"GUSTO\"")
        .replace("calendar = \"MAIN\"", "calendar = \"\"");
    let err = parse(&src).expect_err("invalid");
    let lines: Vec<_> = err.problems().iter().map(|p| p.line).collect();
    assert_eq!(lines, vec![3, 15]);
    assert_eq!(err.to_string().lines().count(), 2);
    assert!(err.to_string().lines().all(|l| l.starts_with("mapping.toml:")));
}

#[test]
fn revision_ignores_layout_and_follows_meaning() {
    let base = parse(MINIMAL).expect("valid");
    assert_eq!(base.revision(), parse(MINIMAL).expect("valid").revision());

    // Comments, blank lines, key order, quoting style and an explicit default: same meaning.
    let reformatted = format!(
        "# comment\n{}",
        MINIMAL
            .replace(
                "employee_class = \"EMPSTD\"\ncalendar = \"MAIN\"",
                "calendar = 'MAIN'\n\nemployee_class = \"EMPSTD\""
            )
            .replace("strategy = \"employee_code\"", "strategy = \"employee_code\"\nmax_length = 10")
    );
    assert_eq!(base.revision(), parse(&reformatted).expect("valid").revision());
    assert_eq!(base.canonical_json(), parse(&reformatted).expect("valid").canonical_json());

    // Any change of meaning: new revision.
    for changed in [
        MINIMAL.replace("\"CONS\"", "\"CONSULT\""),
        MINIMAL.replace("\"OSL\"", "\"OSLO\""),
        MINIMAL.replace("prefix = \"G\"", "prefix = \"E\""),
        format!("{MINIMAL}max_length = 9\n"),
        MINIMAL.replace("\"Consulting\"", "\"consulting\""),
    ] {
        let m = parse(&changed).expect("valid");
        assert_ne!(base.revision(), m.revision(), "{changed}");
    }
}

#[test]
fn byte_order_mark_is_accepted() {
    let with_bom = format!("\u{feff}{MINIMAL}");
    assert_eq!(parse(&with_bom).expect("valid").revision(), parse(MINIMAL).expect("valid").revision());
}

#[test]
fn example_uses_every_key_of_the_schema() {
    // The schema and the example describe the same format: every property the schema declares
    // appears in the example (commented-out alternatives aside) and vice versa.
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../../../schemas/mapping.schema.json"))
            .expect("schema is JSON");
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    let example: toml::Value = toml::from_str(EXAMPLE).expect("example is TOML");
    let example = serde_json::to_value(example).expect("TOML converts to JSON");
    assert_matches_schema(&schema, &schema, &example, "$");
}

/// A small structural check of the subset of JSON Schema the mapping schema uses: `$ref` into
/// `$defs`, `type` object/string/integer/boolean, `properties`, `required`,
/// `additionalProperties` (false or a schema), `enum`.
fn assert_matches_schema(
    root: &serde_json::Value,
    schema: &serde_json::Value,
    value: &serde_json::Value,
    path: &str,
) {
    use serde_json::Value;
    if let Some(Value::String(reference)) = schema.get("$ref") {
        let name = reference.trim_start_matches("#/$defs/");
        return assert_matches_schema(root, &root["$defs"][name], value, path);
    }
    if let Some(Value::Array(options)) = schema.get("enum") {
        assert!(options.contains(value), "{path}: {value} not in {options:?}");
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => assert!(value.is_string(), "{path}: expected string"),
        Some("integer") => assert!(value.is_i64(), "{path}: expected integer"),
        Some("boolean") => assert!(value.is_boolean(), "{path}: expected boolean"),
        Some("object") => {
            let object = value.as_object().unwrap_or_else(|| panic!("{path}: expected object"));
            let properties = schema.get("properties").and_then(Value::as_object);
            for required in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
                let key = required.as_str().expect("required names are strings");
                assert!(object.contains_key(key), "{path}: missing {key}");
            }
            for (key, child) in object {
                let child_path = format!("{path}.{key}");
                match properties.and_then(|p| p.get(key)) {
                    Some(child_schema) => {
                        assert_matches_schema(root, child_schema, child, &child_path);
                    }
                    None => match schema.get("additionalProperties") {
                        Some(Value::Bool(false)) | None => {
                            panic!("{child_path}: not allowed by the schema")
                        }
                        Some(extra) => assert_matches_schema(root, extra, child, &child_path),
                    },
                }
            }
        }
        _ => {}
    }
}
