//! Field-by-field difference of two Visma employee states.
//!
//! The writer sends only the fields that differ (Visma leaves omitted fields unchanged), and
//! `mlc replay --dry-run` prints the same list. Values are compared exactly: normalising what
//! Visma returns (e.g. `null` to `""`) is the job of whoever reads it into
//! `VismaEmployeeFields`.

use mlc_proto::v1::{VismaEmployeeFields, VismaStatus};

/// One field whose value differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    /// The `VismaEmployeeFields` field name, e.g. `"department_id"`.
    pub field: &'static str,
    /// The current value (`status` as Visma spells it: `Active`, `Inactive`).
    pub from: String,
    /// The target value.
    pub to: String,
}

/// The fields of `target` that differ from `current`, in `VismaEmployeeFields` order.
/// Empty when nothing needs writing.
pub fn diff_fields(current: &VismaEmployeeFields, target: &VismaEmployeeFields) -> Vec<FieldChange> {
    // Exhaustive destructuring: a field added to the message fails to compile here until it
    // is compared too.
    let VismaEmployeeFields {
        employee_cd,
        first_name,
        middle_name,
        last_name,
        email,
        phone,
        department_id,
        employee_class,
        branch,
        calendar,
        status: _,
        address_line1,
        postal_code,
        city,
        country_id,
    } = target;
    let mut changes = Vec::new();
    let mut compare = |field: &'static str, from: &str, to: &str| {
        if from != to {
            changes.push(FieldChange { field, from: from.to_owned(), to: to.to_owned() });
        }
    };
    compare("employee_cd", &current.employee_cd, employee_cd);
    compare("first_name", &current.first_name, first_name);
    compare("middle_name", &current.middle_name, middle_name);
    compare("last_name", &current.last_name, last_name);
    compare("email", &current.email, email);
    compare("phone", &current.phone, phone);
    compare("department_id", &current.department_id, department_id);
    compare("employee_class", &current.employee_class, employee_class);
    compare("branch", &current.branch, branch);
    compare("calendar", &current.calendar, calendar);
    compare("status", status_name(current.status()), status_name(target.status()));
    compare("address_line1", &current.address_line1, address_line1);
    compare("postal_code", &current.postal_code, postal_code);
    compare("city", &current.city, city);
    compare("country_id", &current.country_id, country_id);
    changes
}

/// Visma's spelling of a status; empty when unspecified.
pub fn status_name(status: VismaStatus) -> &'static str {
    match status {
        VismaStatus::Unspecified => "",
        VismaStatus::Active => "Active",
        VismaStatus::Inactive => "Inactive",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> VismaEmployeeFields {
        VismaEmployeeFields {
            employee_cd: "GFESA3W".into(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            email: "ada@example.com".into(),
            department_id: "CONS".into(),
            status: VismaStatus::Active as i32,
            ..VismaEmployeeFields::default()
        }
    }

    #[test]
    fn equal_fields_have_no_changes() {
        assert!(diff_fields(&fields(), &fields()).is_empty());
    }

    #[test]
    fn lists_changed_fields_in_declaration_order() {
        let target = VismaEmployeeFields {
            department_id: "ENG".into(),
            status: VismaStatus::Inactive as i32,
            first_name: "Augusta".into(),
            ..fields()
        };
        let changes = diff_fields(&fields(), &target);
        assert_eq!(
            changes,
            vec![
                FieldChange { field: "first_name", from: "Ada".into(), to: "Augusta".into() },
                FieldChange { field: "department_id", from: "CONS".into(), to: "ENG".into() },
                FieldChange { field: "status", from: "Active".into(), to: "Inactive".into() },
            ]
        );
    }

    #[test]
    fn every_field_is_compared() {
        let current = VismaEmployeeFields::default();
        let target = VismaEmployeeFields {
            employee_cd: "a".into(),
            first_name: "a".into(),
            middle_name: "a".into(),
            last_name: "a".into(),
            email: "a".into(),
            phone: "a".into(),
            department_id: "a".into(),
            employee_class: "a".into(),
            branch: "a".into(),
            calendar: "a".into(),
            status: VismaStatus::Active as i32,
            address_line1: "a".into(),
            postal_code: "a".into(),
            city: "a".into(),
            country_id: "a".into(),
        };
        assert_eq!(diff_fields(&current, &target).len(), 15);
    }
}
