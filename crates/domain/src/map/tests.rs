use mlc_proto::v1::{Location, TraceContext};

use super::*;
use crate::hash::content_hash;

const EXAMPLE: &str = include_str!("../../../../schemas/examples/mapping.example.toml");

fn mapping() -> Mapping {
    Mapping::from_toml_str(EXAMPLE, "example").expect("example parses")
}

fn mapping_with(replace: &str, with: &str) -> Mapping {
    assert!(EXAMPLE.contains(replace), "{replace}");
    Mapping::from_toml_str(&EXAMPLE.replace(replace, with), "changed").expect("valid mapping")
}

fn snapshot() -> EmployeeSnapshot {
    let content = EmployeeContent {
        first_name: "Ingrid".into(),
        middle_initial: "M".into(),
        last_name: "Solberg".into(),
        preferred_first_name: "Inga".into(),
        email: "ingrid@private.example".into(),
        work_email: " ingrid.solberg@nordlys.example ".into(),
        phone: "+47 400 00 000".into(),
        job_title: "Senior Consultant".into(),
        department_uuid: "d-1".into(),
        department_title: "Consulting".into(),
        work_location: Some(Location {
            uuid: "l-1".into(),
            street_1: "Karl Johans gate 1".into(),
            city: "Oslo".into(),
            zip: "0154".into(),
            country: "Norway".into(),
            state: String::new(),
        }),
        status: EmploymentStatus::Active as i32,
        hire_date: "2024-01-08".into(),
        termination_date: String::new(),
        employee_code: "fesa3w".into(),
    };
    EmployeeSnapshot {
        company_uuid: "c-1".into(),
        employee_uuid: "9a0b7f52-0b0e-4c67-9d55-2a1c7e0e3a11".into(),
        content_hash: content_hash(&content),
        content: Some(content),
        gusto_version: "1c7ba9d6".into(),
        causing_event_ids: vec!["e-1".into()],
        fetched_at_ms: 1_700_000_000_000,
        trace: Some(TraceContext {
            traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
            tracestate: String::new(),
        }),
        webhook_received_at_ms: 1_700_000_000_000,
    }
}

fn with_content(edit: impl FnOnce(&mut EmployeeContent)) -> EmployeeSnapshot {
    let mut s = snapshot();
    if let Some(content) = s.content.as_mut() {
        edit(content);
    }
    s
}

fn command(snapshot: &EmployeeSnapshot, mapping: &Mapping) -> (CommandKind, VismaEmployeeFields) {
    match map_snapshot(snapshot, mapping) {
        Mapped::Command { kind, fields, content_hash } => {
            assert_eq!(content_hash, command_hash(kind, &fields));
            (kind, fields)
        }
        Mapped::Park { reason } => panic!("parked: {reason}"),
    }
}

fn park_reason(snapshot: &EmployeeSnapshot, mapping: &Mapping) -> String {
    match map_snapshot(snapshot, mapping) {
        Mapped::Park { reason } => reason,
        other => panic!("expected park, got {other:?}"),
    }
}

#[test]
fn active_employee_maps_to_a_complete_upsert() {
    let (kind, fields) = command(&snapshot(), &mapping());
    assert_eq!(kind, CommandKind::Upsert);
    assert_eq!(
        fields,
        VismaEmployeeFields {
            employee_cd: "GFESA3W".into(),
            first_name: "Ingrid".into(),
            middle_name: "M".into(),
            last_name: "Solberg".into(),
            email: "ingrid.solberg@nordlys.example".into(),
            phone: "+47 400 00 000".into(),
            department_id: "CONS".into(),
            employee_class: "EMPCONS".into(),
            branch: "1".into(),
            calendar: "MAIN".into(),
            status: VismaStatus::Active as i32,
            address_line1: "Karl Johans gate 1".into(),
            postal_code: "0154".into(),
            city: "Oslo".into(),
            country_id: "NO".into(),
        }
    );
}

#[test]
fn onboarding_is_an_active_upsert() {
    let s = with_content(|c| c.status = EmploymentStatus::Onboarding as i32);
    let (kind, fields) = command(&s, &mapping());
    assert_eq!((kind, fields.status()), (CommandKind::Upsert, VismaStatus::Active));
}

#[test]
fn terminated_and_deleted_deactivate_with_complete_fields() {
    let (_, active) = command(&snapshot(), &mapping());
    for status in [EmploymentStatus::Terminated, EmploymentStatus::Deleted] {
        let s = with_content(|c| c.status = status as i32);
        let (kind, fields) = command(&s, &mapping());
        assert_eq!(kind, CommandKind::Deactivate);
        assert_eq!(fields.status(), VismaStatus::Inactive);
        // Everything but the status is still there, so Visma can create it inactive.
        assert_eq!(VismaEmployeeFields { status: VismaStatus::Active as i32, ..fields }, active);
    }
}

#[test]
fn unspecified_status_parks() {
    let s = with_content(|c| c.status = EmploymentStatus::Unspecified as i32);
    assert_eq!(park_reason(&s, &mapping()), "employee has no known employment status");
    let s = with_content(|c| c.status = 42);
    assert_eq!(park_reason(&s, &mapping()), "employee has no known employment status");
}

#[test]
fn email_prefers_work_then_personal_else_parks() {
    let s = with_content(|c| c.work_email = "  ".into());
    assert_eq!(command(&s, &mapping()).1.email, "ingrid@private.example");
    let s = with_content(|c| {
        c.work_email.clear();
        c.email.clear();
    });
    assert_eq!(park_reason(&s, &mapping()), NO_EMAIL_REASON);
    assert_eq!(NO_EMAIL_REASON, "employee has no email; Visma requires contact.email");
}

#[test]
fn legal_first_name_is_used_not_the_preferred_one() {
    let (_, fields) = command(&snapshot(), &mapping());
    assert_eq!(fields.first_name, "Ingrid");
}

#[test]
fn missing_last_name_parks() {
    let s = with_content(|c| c.last_name = " ".into());
    assert_eq!(park_reason(&s, &mapping()), "employee has no last name; Visma requires contact.lastName");
}

#[test]
fn department_by_uuid_wins_over_title() {
    let m = mapping_with("# \"56260b3d-c375-415c-b77a-75d99f717193\" = \"CONS\"", "\"D-1\" = \"SPECIAL\"");
    assert_eq!(command(&snapshot(), &m).1.department_id, "SPECIAL");
}

#[test]
fn unmapped_department_parks_with_an_operator_reason() {
    let s = with_content(|c| c.department_title = "Stage Hand".into());
    let reason = park_reason(&s, &mapping());
    assert_eq!(
        reason,
        "Gusto department \"Stage Hand\" (uuid d-1) is not in [departments] and \
         unmapped.department = \"park\""
    );
    // No personal data in the reason.
    for personal in ["Ingrid", "Solberg", "ingrid", "+47", "Karl Johans"] {
        assert!(!reason.contains(personal), "{reason}");
    }

    let s = with_content(|c| {
        c.department_title.clear();
        c.department_uuid.clear();
    });
    assert_eq!(
        park_reason(&s, &mapping()),
        "employee has no department in Gusto and unmapped.department = \"park\""
    );
}

#[test]
fn unmapped_department_may_fall_back_to_the_default() {
    let m = mapping_with("department = \"park\"", "department = \"default\"");
    let s = with_content(|c| c.department_title = "Stage Hand".into());
    assert_eq!(command(&s, &m).1.department_id, "ADMIN");
}

#[test]
fn location_maps_to_branch_and_address() {
    let s = with_content(|c| {
        c.work_location = Some(Location {
            uuid: "l-9".into(),
            street_1: "Kungsgatan 2".into(),
            city: "stockholm".into(),
            zip: "111 43".into(),
            country: "SE".into(),
            state: String::new(),
        });
    });
    let (_, f) = command(&s, &mapping());
    assert_eq!(
        (
            f.branch.as_str(),
            f.address_line1.as_str(),
            f.postal_code.as_str(),
            f.city.as_str(),
            f.country_id.as_str()
        ),
        ("2", "Kungsgatan 2", "111 43", "stockholm", "SE")
    );
}

#[test]
fn unmapped_location_follows_the_policy() {
    let bergen = |c: &mut EmployeeContent| {
        if let Some(l) = c.work_location.as_mut() {
            l.city = "Bergen".into();
        }
    };
    // The example maps unmapped locations to the default branch.
    let (_, f) = command(&with_content(bergen), &mapping());
    assert_eq!((f.branch.as_str(), f.city.as_str()), ("1", "Bergen"));

    let m = mapping_with("location = \"default\"", "location = \"park\"");
    assert_eq!(
        park_reason(&with_content(bergen), &m),
        "Gusto work location \"Bergen\" (uuid l-1) is not in [locations] and \
         unmapped.location = \"park\""
    );
    let s = with_content(|c| c.work_location = None);
    assert_eq!(
        park_reason(&s, &m),
        "employee has no work location in Gusto and unmapped.location = \"park\""
    );
}

#[test]
fn us_country_is_translated() {
    let s = with_content(|c| {
        if let Some(l) = c.work_location.as_mut() {
            l.country = "USA".into();
        }
    });
    assert_eq!(command(&s, &mapping()).1.country_id, "US");
    let s = with_content(|c| {
        if let Some(l) = c.work_location.as_mut() {
            l.country = "Atlantis".into();
        }
    });
    assert!(park_reason(&s, &mapping()).contains("\"Atlantis\" is not a recognised"));
}

#[test]
fn job_title_selects_employee_class_or_default() {
    let s = with_content(|c| c.job_title = "Office Dog".into());
    assert_eq!(command(&s, &mapping()).1.employee_class, "EMPSTD");
    let s = with_content(|c| c.job_title = "partner".into());
    assert_eq!(command(&s, &mapping()).1.employee_class, "EMPPART");
}

#[test]
fn employee_cd_follows_the_rule_or_parks() {
    let m = mapping_with("strategy = \"employee_code\"", "strategy = \"uuid_hash\"");
    let (_, f) = command(&snapshot(), &m);
    assert_eq!(f.employee_cd.len(), 10);
    assert!(f.employee_cd.starts_with('G'));

    let s = with_content(|c| c.employee_code.clear());
    assert_eq!(
        park_reason(&s, &mapping()),
        "employee has no Gusto employee_code; employee_cd strategy \"employee_code\" needs it"
    );
}

#[test]
fn several_problems_are_reported_together() {
    let s = with_content(|c| {
        c.work_email.clear();
        c.email.clear();
        c.department_title = "Stage Hand".into();
    });
    let reason = park_reason(&s, &mapping());
    assert!(reason.starts_with(NO_EMAIL_REASON), "{reason}");
    assert!(reason.contains("; Gusto department \"Stage Hand\""), "{reason}");
}

#[test]
fn snapshot_without_content_parks() {
    let s = EmployeeSnapshot::default();
    assert_eq!(park_reason(&s, &mapping()), "snapshot has no employee content");
}

#[test]
fn build_command_fills_ids_and_target() {
    let m = mapping();
    let s = snapshot();
    let c = build_command(&s, 42, &m, "tenant-1");
    assert_eq!(c.command_id, format!("42-{}", m.revision()));
    assert_eq!(command_msg_id(&c), c.command_id);
    assert_eq!(c.mapping_revision, m.revision());
    assert_eq!(c.source_snapshot_seq, 42);
    assert_eq!(c.company_uuid, "c-1");
    assert_eq!(c.employee_uuid, s.employee_uuid);
    assert_eq!(c.visma_tenant, "tenant-1");
    assert_eq!(c.trace, s.trace);
    assert_eq!(c.kind(), CommandKind::Upsert);
    let fields = c.fields.clone().expect("fields");
    assert_eq!(c.content_hash, command_hash(CommandKind::Upsert, &fields));
    assert!(c.parked_reason.is_empty());
}

#[test]
fn build_command_carries_the_park_reason() {
    let s = with_content(|c| {
        c.work_email.clear();
        c.email.clear();
    });
    let c = build_command(&s, 7, &mapping(), "tenant-1");
    assert_eq!(c.parked_reason, NO_EMAIL_REASON);
    assert_eq!(c.kind(), CommandKind::Unspecified);
    assert!(c.fields.is_none());
    assert!(c.content_hash.is_empty());
    assert_eq!(c.command_id, format!("7-{}", mapping().revision()));
}
