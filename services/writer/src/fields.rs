//! Visma's employee DTOs and the command's target fields: what Visma holds in the shape of
//! the target, and the create and update bodies (only the fields that differ).

use mlc_domain::FieldChange;
use mlc_proto::v1::{CommandKind, VismaEmployeeFields, VismaStatus};
use visma::dto::{v, AddressWrite, EmployeeContactWrite, Value};
use visma::{EmployeeCreateDto, EmployeeDto, EmployeeStatus, EmployeeUpdateDto, EmployeeWriteStatus};

/// The command's target under the employee number actually used; a deactivation is always
/// `Inactive`, whatever the fields say.
pub(crate) fn target_fields(
    kind: CommandKind,
    fields: &VismaEmployeeFields,
    cd: &str,
) -> VismaEmployeeFields {
    let mut t = fields.clone();
    t.employee_cd = cd.to_string();
    if kind == CommandKind::Deactivate {
        t.status = VismaStatus::Inactive as i32;
    }
    t
}

/// What Visma holds, in the shape of the command's target. Read names differ from write
/// names (`midName`, `calendarID`, `country.id`, `branch.number`); absent and `null` read
/// as empty, which is also how the target says "nothing". A status the connector does not
/// own (on hold, one-time) reads as unspecified, so the target status is written over it.
pub fn fields_from_dto(dto: &EmployeeDto, cd: &str) -> VismaEmployeeFields {
    let s = |o: Option<&String>| o.cloned().unwrap_or_default();
    let contact = dto.contact.clone().unwrap_or_default();
    let address = dto.address.clone().unwrap_or_default();
    let status = match dto.status {
        Some(EmployeeStatus::Active) => VismaStatus::Active,
        Some(EmployeeStatus::Inactive) => VismaStatus::Inactive,
        _ => VismaStatus::Unspecified,
    };
    VismaEmployeeFields {
        employee_cd: cd.to_string(),
        first_name: s(contact.first_name.as_ref()),
        middle_name: s(contact.mid_name.as_ref()),
        last_name: s(contact.last_name.as_ref()),
        email: s(contact.email.as_ref()),
        phone: s(contact.phone1.as_ref()),
        department_id: s(dto.department.as_ref()),
        employee_class: s(dto.employee_class.as_ref().and_then(|c| c.id.as_ref())),
        branch: s(dto.branch.as_ref().and_then(|b| b.number.as_ref())),
        calendar: s(dto.calendar_id.as_ref()),
        status: status as i32,
        address_line1: s(address.address_line1.as_ref()),
        postal_code: s(address.postal_code.as_ref()),
        city: s(address.city.as_ref()),
        country_id: s(address.country.as_ref().and_then(|c| c.id.as_ref())),
    }
}

pub(crate) fn write_status(status: VismaStatus) -> Option<Value<EmployeeWriteStatus>> {
    match status {
        VismaStatus::Active => Some(Value::new(EmployeeWriteStatus::Active)),
        VismaStatus::Inactive => Some(Value::new(EmployeeWriteStatus::Inactive)),
        VismaStatus::Unspecified => None,
    }
}

/// A create body with every field of the target; empty optional fields are left out.
pub(crate) fn create_dto(t: &VismaEmployeeFields) -> EmployeeCreateDto {
    let opt = |s: &str| (!s.is_empty()).then(|| v(s));
    let mut dto = EmployeeCreateDto::new(
        &t.employee_cd,
        &t.department_id,
        &t.employee_class,
        &t.branch,
        &t.calendar,
        &t.last_name,
        &t.email,
    );
    dto.contact.first_name = opt(&t.first_name);
    dto.contact.middle_name = opt(&t.middle_name);
    dto.contact.phone1 = opt(&t.phone);
    let address = AddressWrite {
        address_line1: opt(&t.address_line1),
        postal_code: opt(&t.postal_code),
        city: opt(&t.city),
        country_id: opt(&t.country_id),
        ..AddressWrite::default()
    };
    if address != AddressWrite::default() {
        dto.address = Some(address);
    }
    dto.status = write_status(t.status());
    dto
}

/// An update body with exactly the changed fields (Visma leaves omitted fields alone). A
/// field emptied in Gusto is sent as `{"value": ""}` so Visma clears it too.
pub(crate) fn update_dto(t: &VismaEmployeeFields, changes: &[FieldChange]) -> EmployeeUpdateDto {
    let mut dto =
        EmployeeUpdateDto { contact: EmployeeContactWrite::default(), ..EmployeeUpdateDto::default() };
    for c in changes {
        let to = Some(v(c.to.clone()));
        match c.field {
            "first_name" => dto.contact.first_name = to,
            "middle_name" => dto.contact.middle_name = to,
            "last_name" => dto.contact.last_name = to,
            "email" => dto.contact.email = to,
            "phone" => dto.contact.phone1 = to,
            "department_id" => dto.department = to,
            "employee_class" => dto.employee_class = to,
            "branch" => dto.branch = to,
            "calendar" => dto.calendar = to,
            "status" => dto.status = write_status(t.status()),
            "address_line1" => dto.address.get_or_insert_with(AddressWrite::default).address_line1 = to,
            "postal_code" => dto.address.get_or_insert_with(AddressWrite::default).postal_code = to,
            "city" => dto.address.get_or_insert_with(AddressWrite::default).city = to,
            "country_id" => dto.address.get_or_insert_with(AddressWrite::default).country_id = to,
            // The number is only in the path; renaming is `changeEmployeeCd`, not a PUT.
            _ => {}
        }
    }
    dto
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlc_domain::diff_fields;

    fn target() -> VismaEmployeeFields {
        VismaEmployeeFields {
            employee_cd: "G1".into(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            email: "ada@example.com".into(),
            department_id: "ENG".into(),
            employee_class: "EMPSTD".into(),
            branch: "1".into(),
            calendar: "MAIN".into(),
            status: VismaStatus::Active as i32,
            city: "Oslo".into(),
            country_id: "NO".into(),
            ..VismaEmployeeFields::default()
        }
    }

    /// The read DTO of an employee created from `create_dto(target())`, as Visma renders it.
    fn read_back() -> EmployeeDto {
        serde_json::from_value(serde_json::json!({
            "employeeNumber": "G1",
            "status": "Active",
            "department": "ENG",
            "contact": {"firstName": "Ada", "midName": null, "lastName": "Lovelace",
                        "email": "ada@example.com", "phone1": null},
            "address": {"addressLine1": null, "city": "Oslo", "country": {"id": "NO", "name": "Norway"}},
            "employeeClass": {"id": "EMPSTD"},
            "branch": {"number": "1", "name": "Main"},
            "calendarID": "MAIN",
            "timeStamp": "AAAAAAAHAAE="
        }))
        .expect("read dto")
    }

    #[test]
    fn read_dto_maps_onto_the_target_despite_name_asymmetries() {
        assert_eq!(fields_from_dto(&read_back(), "G1"), target());
    }

    #[test]
    fn update_sends_only_changed_fields_and_clears_with_empty_values() {
        let mut want = target();
        want.department_id = "SALES".into();
        want.city = String::new();
        want.status = VismaStatus::Inactive as i32;
        let changes = diff_fields(&target(), &want);
        let body = serde_json::to_value(update_dto(&want, &changes)).expect("json");
        assert_eq!(
            body,
            serde_json::json!({
                "department": {"value": "SALES"},
                "status": {"value": "Inactive"},
                "contact": {},
                "address": {"city": {"value": ""}},
            })
        );
    }

    #[test]
    fn create_carries_every_field_and_the_status() {
        let mut t = target();
        t.status = VismaStatus::Inactive as i32;
        let body = serde_json::to_value(create_dto(&t)).expect("json");
        assert_eq!(body["status"]["value"], "Inactive");
        assert_eq!(body["contact"]["firstName"]["value"], "Ada");
        assert_eq!(body["address"]["countryId"]["value"], "NO");
        assert!(body["contact"].get("middleName").is_none());
    }

    #[test]
    fn deactivation_forces_inactive() {
        let t = target_fields(CommandKind::Deactivate, &target(), "X9");
        assert_eq!(t.status(), VismaStatus::Inactive);
        assert_eq!(t.employee_cd, "X9");
    }
}
