//! The write DTOs: wire shapes of the spec (`{"value": x}`), deserialised leniently, and how
//! they change a stored record.

use super::*;

/// `{"value": x}`; Visma treats `{"value": null}` and an omitted field alike.
#[derive(Debug, Clone, Deserialize)]
pub struct Val<T> {
    pub value: Option<T>,
}

type VStr = Option<Val<String>>;

pub(super) fn take(v: &VStr) -> Option<String> {
    v.as_ref().and_then(|v| v.value.clone())
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactWrite {
    pub first_name: VStr,
    pub last_name: VStr,
    pub middle_name: VStr,
    pub email: VStr,
    pub phone1: VStr,
    pub phone2: VStr,
    pub phone3: VStr,
    pub fax: VStr,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddressWrite {
    pub address_line1: VStr,
    pub address_line2: VStr,
    pub address_line3: VStr,
    pub postal_code: VStr,
    pub city: VStr,
    pub country_id: VStr,
    pub county: VStr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompanyTreeWrite {
    pub operation: Option<String>,
    pub active: Option<Val<bool>>,
    pub owner: Option<Val<bool>>,
    #[serde(rename = "workGroupID")]
    pub work_group_id: VStr,
}

/// `EmployeeCreateDTO`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmployeeCreate {
    pub employee_cd: VStr,
    pub department: VStr,
    pub employee_class: VStr,
    pub branch: VStr,
    pub calendar: VStr,
    pub contact: Option<ContactWrite>,
    pub address: Option<AddressWrite>,
    pub status: VStr,
}

/// `EmployeeUpdateDto`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmployeeUpdate {
    pub employee_class: VStr,
    pub status: VStr,
    pub department: VStr,
    pub contact: Option<ContactWrite>,
    pub address: Option<AddressWrite>,
    pub branch: VStr,
    pub calendar: VStr,
    pub company_tree_info: Option<Vec<CompanyTreeWrite>>,
}

/// `DepartmentUpdateBaseDto` (note: `departmentId` is a plain string there).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DepartmentWrite {
    pub department_id: Option<String>,
    pub description: VStr,
    pub expense_account: VStr,
    pub expense_subaccount: Option<Vec<SegmentRef>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentRef {
    pub segment_id: Option<i32>,
    pub segment_value: Option<String>,
}

/// `DtoSegmentUpdateDto` (the spec spells `segementId`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentWrite {
    pub segment_values: Option<Vec<SegmentValueWrite>>,
    pub description: VStr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentValueWrite {
    pub operation: Option<String>,
    pub value: Option<String>,
    pub description: VStr,
    pub active: Option<Val<bool>>,
}

pub(super) fn apply_contact(c: &mut Contact, w: &ContactWrite) {
    let set = |slot: &mut Option<String>, v: &VStr| {
        if let Some(v) = v {
            *slot = v.value.clone();
        }
    };
    set(&mut c.first_name, &w.first_name);
    set(&mut c.last_name, &w.last_name);
    set(&mut c.middle_name, &w.middle_name);
    set(&mut c.email, &w.email);
    set(&mut c.phone1, &w.phone1);
    set(&mut c.phone2, &w.phone2);
    set(&mut c.phone3, &w.phone3);
    set(&mut c.fax, &w.fax);
}

pub(super) fn apply_address(a: &mut Address, w: &AddressWrite) {
    let set = |slot: &mut Option<String>, v: &VStr| {
        if let Some(v) = v {
            *slot = v.value.clone();
        }
    };
    set(&mut a.address_line1, &w.address_line1);
    set(&mut a.address_line2, &w.address_line2);
    set(&mut a.address_line3, &w.address_line3);
    set(&mut a.postal_code, &w.postal_code);
    set(&mut a.city, &w.city);
    set(&mut a.country_id, &w.country_id);
    set(&mut a.county, &w.county);
}

pub(super) fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

pub(super) fn missing(field: &str) -> RuleError {
    RuleError::Invalid(format!("Error: '{field}' cannot be empty."))
}
