//! Properties the rest of the pipeline relies on: mapping is a deterministic function of what
//! it reads, its hash moves exactly when the Visma target moves, and employee numbers always
//! fit Visma's key.

use mlc_domain::{
    build_command, employee_cd, map_snapshot, EmployeeCdRule, EmployeeCdStrategy, Mapped, Mapping,
};
use mlc_proto::v1::{EmployeeContent, EmployeeSnapshot, EmploymentStatus, Location, TraceContext};
use proptest::prelude::*;
use proptest::sample::select;

const EXAMPLE: &str = include_str!("../../../schemas/examples/mapping.example.toml");

const DEPARTMENTS: &[&str] = &["Consulting", "Engineering", "Finance", "Sales", "People", "Operations"];
const CITIES: &[&str] = &["Oslo", "Stockholm", "Copenhagen", "Helsinki", "Reykjavik"];
const COUNTRIES: &[&str] = &["NO", "Norway", "SE", "Sverige", "DK", "FI", "IS", "USA"];
const TITLES: &[&str] = &["Partner", "Consultant", "Trainee", "Office Manager", ""];
const STATUSES: &[EmploymentStatus] = &[
    EmploymentStatus::Onboarding,
    EmploymentStatus::Active,
    EmploymentStatus::Terminated,
    EmploymentStatus::Deleted,
];

fn mappings() -> Vec<Mapping> {
    let example = Mapping::from_toml_str(EXAMPLE, "example").expect("example parses");
    let hashed = Mapping::from_toml_str(
        &EXAMPLE.replace("strategy = \"employee_code\"", "strategy = \"uuid_hash\""),
        "example-uuid-hash",
    )
    .expect("variant parses");
    vec![example, hashed]
}

fn location() -> impl Strategy<Value = Location> {
    ("[0-9a-f]{8}", "[A-Za-z ]{0,20}[0-9]{0,3}", select(CITIES), "[0-9]{4}", select(COUNTRIES)).prop_map(
        |(uuid, street, city, zip, country)| Location {
            uuid,
            street_1: street,
            city: city.to_owned(),
            zip,
            country: country.to_owned(),
            state: String::new(),
        },
    )
}

/// Content that always maps: names, an email, a mapped department and office, a known status.
fn content() -> impl Strategy<Value = EmployeeContent> {
    (
        ("[A-Z][a-z]{0,10}", "[A-Z]?", "[A-Z][a-z]{0,12}", "[A-Z][a-z]{0,8}"),
        ("[a-z]{1,8}@private\\.example", "([a-z]{1,8}@nordlys\\.example)?"),
        ("(\\+47 [0-9]{8})?", select(TITLES), select(DEPARTMENTS), "[0-9a-f]{8}"),
        (location(), select(STATUSES), "[a-z0-9]{6}"),
        ("(20[0-9]{2}-0[1-9]-1[0-9])?", "(20[0-9]{2}-0[1-9]-1[0-9])?"),
    )
        .prop_map(
            |(
                (first, middle, last, preferred),
                (email, work_email),
                (phone, title, department, department_uuid),
                (location, status, code),
                (hire, termination),
            )| EmployeeContent {
                first_name: first,
                middle_initial: middle,
                last_name: last,
                preferred_first_name: preferred,
                email,
                work_email,
                phone,
                job_title: title.to_owned(),
                department_uuid,
                department_title: department.to_owned(),
                work_location: Some(location),
                status: status as i32,
                hire_date: hire,
                termination_date: termination,
                employee_code: code,
            },
        )
}

fn snapshot() -> impl Strategy<Value = EmployeeSnapshot> {
    (
        content(),
        "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
        "[0-9a-f]{32}",
        proptest::collection::vec("[0-9a-f-]{36}", 0..3),
        any::<i64>(),
    )
        .prop_map(|(content, uuid, version, events, fetched)| EmployeeSnapshot {
            company_uuid: "a007e1ab-3595-43c2-ab4b-af7a5af2e365".into(),
            employee_uuid: uuid,
            content_hash: mlc_domain::content_hash(&content),
            content: Some(content),
            gusto_version: version,
            causing_event_ids: events,
            fetched_at_ms: fetched,
            trace: None,
            webhook_received_at_ms: fetched,
        })
}

fn command_hash_of(mapped: &Mapped) -> Option<&str> {
    match mapped {
        Mapped::Command { content_hash, .. } => Some(content_hash),
        Mapped::Park { .. } => None,
    }
}

fn content_mut(s: &mut EmployeeSnapshot) -> &mut EmployeeContent {
    s.content.get_or_insert_with(EmployeeContent::default)
}

fn location_mut(s: &mut EmployeeSnapshot) -> &mut Location {
    content_mut(s).work_location.get_or_insert_with(Location::default)
}

/// Edits of one mapped Gusto field, each guaranteed to change what Visma should hold.
const MAPPED_EDITS: usize = 12;

fn edit_mapped_field(s: &mut EmployeeSnapshot, which: usize) {
    let next = |list: &[&str], current: &str| {
        let i = list.iter().position(|v| *v == current).unwrap_or(0);
        list[(i + 1) % list.len()].to_owned()
    };
    match which {
        0 => content_mut(s).first_name.push('x'),
        1 => content_mut(s).last_name.push('x'),
        2 => {
            let c = content_mut(s);
            c.middle_initial = if c.middle_initial == "Q" { "R" } else { "Q" }.into();
        }
        3 => {
            // The email Visma gets: the work email when present, else the personal one.
            let c = content_mut(s);
            if c.work_email.is_empty() {
                c.email.insert(0, 'x');
            } else {
                c.work_email.insert(0, 'x');
            }
        }
        4 => content_mut(s).phone.push('9'),
        5 => {
            let c = content_mut(s);
            c.department_title = next(DEPARTMENTS, &c.department_title);
        }
        6 => {
            let l = location_mut(s);
            l.city = next(CITIES, &l.city);
        }
        7 => location_mut(s).street_1.push('B'),
        8 => location_mut(s).zip.push('1'),
        9 => {
            let l = location_mut(s);
            l.country = if l.country == "DK" { "FI" } else { "DK" }.into();
        }
        10 => {
            let c = content_mut(s);
            c.status = match c.status() {
                EmploymentStatus::Terminated | EmploymentStatus::Deleted => EmploymentStatus::Active,
                _ => EmploymentStatus::Terminated,
            } as i32;
        }
        _ => {
            // Changes the employee number under either strategy.
            s.employee_uuid.push('0');
            let c = content_mut(s);
            c.employee_code = if c.employee_code == "zzzzzz" { "yyyyyy" } else { "zzzzzz" }.into();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn map_snapshot_is_deterministic(s in snapshot(), m in select(mappings())) {
        let first = map_snapshot(&s, &m);
        prop_assert!(matches!(first, Mapped::Command { .. }), "{first:?}");
        prop_assert_eq!(&first, &map_snapshot(&s.clone(), &m));
    }

    #[test]
    fn building_twice_gives_equal_commands(
        s in snapshot(),
        m in select(mappings()),
        seq in any::<u64>(),
    ) {
        let a = build_command(&s, seq, &m, "tenant");
        let b = build_command(&s, seq, &m, "tenant");
        prop_assert_eq!(&a.content_hash, &b.content_hash);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn changing_a_mapped_field_changes_the_hash(
        s in snapshot(),
        m in select(mappings()),
        which in 0..MAPPED_EDITS,
    ) {
        let before = map_snapshot(&s, &m);
        let mut edited = s.clone();
        edit_mapped_field(&mut edited, which);
        let after = map_snapshot(&edited, &m);
        let (Some(before), Some(after)) = (command_hash_of(&before), command_hash_of(&after)) else {
            return Err(TestCaseError::fail(format!("parked: {before:?} / {after:?}")));
        };
        prop_assert_ne!(before, after, "edit {}", which);
    }

    #[test]
    fn unrelated_snapshot_fields_do_not_change_the_command(
        s in snapshot(),
        m in select(mappings()),
        version in "[0-9a-f]{32}",
        events in proptest::collection::vec("[0-9a-f-]{36}", 0..4),
        fetched in any::<i64>(),
        traceparent in "00-[0-9a-f]{32}-[0-9a-f]{16}-01",
        preferred in "[A-Z][a-z]{0,8}",
        dates in ("(20[0-9]{2}-0[1-9]-1[0-9])?", "(20[0-9]{2}-0[1-9]-1[0-9])?"),
        seq in any::<u64>(),
    ) {
        let mut other = s.clone();
        other.gusto_version = version;
        other.causing_event_ids = events;
        other.fetched_at_ms = fetched;
        other.trace = Some(TraceContext { traceparent, tracestate: String::new() });
        other.content_hash = "not-recomputed".into();
        let content = content_mut(&mut other);
        content.preferred_first_name = preferred;
        content.hire_date = dates.0;
        content.termination_date = dates.1;

        prop_assert_eq!(map_snapshot(&s, &m), map_snapshot(&other, &m));
        let (a, b) = (build_command(&s, seq, &m, "t"), build_command(&other, seq, &m, "t"));
        prop_assert_eq!(&a.content_hash, &b.content_hash);
        prop_assert_eq!(&a.command_id, &b.command_id);
        prop_assert_eq!(&a.fields, &b.fields);
    }

    #[test]
    fn employee_cd_fits_and_is_stable(
        prefix in "[A-Z0-9]{0,8}",
        max_length in 1i64..=30,
        hashed in any::<bool>(),
        uuid in "\\PC{0,40}",
        code in "[a-zA-Z0-9]{1,12}",
    ) {
        let strategy = if hashed { EmployeeCdStrategy::UuidHash } else { EmployeeCdStrategy::EmployeeCode };
        let Ok(rule) = EmployeeCdRule::new(prefix.clone(), strategy, max_length) else {
            // Rules that cannot fit are refused up front, never truncated later.
            let needed = prefix.len() + if hashed { 8 } else { 6 };
            prop_assert!(needed as i64 > max_length);
            return Ok(());
        };
        let first = employee_cd(&uuid, &code, &rule);
        prop_assert_eq!(&first, &employee_cd(&uuid, &code, &rule));
        match first {
            Ok(cd) => {
                prop_assert!(cd.len() <= rule.max_length(), "{cd} > {}", rule.max_length());
                prop_assert!(cd.starts_with(&prefix));
                prop_assert!(cd.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
                if hashed {
                    prop_assert_eq!(cd.len(), rule.max_length());
                    prop_assert_eq!(Ok(cd), employee_cd(&uuid.to_ascii_uppercase(), "", &rule));
                }
            }
            // Only a missing uuid, or a Gusto code longer than the room left, is refused.
            Err(err) => prop_assert!(
                if hashed { uuid.trim().is_empty() } else { prefix.len() + code.len() > rule.max_length() },
                "{err}"
            ),
        }
    }

    #[test]
    fn mapping_revision_ignores_key_order_and_follows_values(
        departments in proptest::collection::btree_map("[A-Z][a-z]{2,10}", "[A-Z]{2,6}", 1..8),
    ) {
        let file = |entries: &mut dyn Iterator<Item = (&String, &String)>| {
            let body: String = entries.map(|(k, v)| format!("\"{k}\" = \"{v}\"\n")).collect();
            EXAMPLE.replace("\"Consulting\" = \"CONS\"\n", &body)
                .replace("\"Engineering\" = \"ENG\"\n", "")
                .replace("\"Finance\" = \"FIN\"\n", "")
                .replace("\"Sales\" = \"SALES\"\n", "")
                .replace("\"People\" = \"HR\"\n", "")
                .replace("\"Operations\" = \"OPS\"\n", "")
        };
        let forward = Mapping::from_toml_str(&file(&mut departments.iter()), "a").map_err(|e| TestCaseError::fail(e.to_string()))?;
        let backward = Mapping::from_toml_str(&file(&mut departments.iter().rev()), "b").map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(forward.revision(), backward.revision());

        let mut changed = departments.clone();
        if let Some(v) = changed.values_mut().next() {
            v.push('X');
        }
        let changed = Mapping::from_toml_str(&file(&mut changed.iter()), "c").map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_ne!(forward.revision(), changed.revision());
    }
}
