//! What Visma answers: plain scalars, read-side names (`midName`, `calendarID`, `OnHold`).

use serde::{Deserialize, Serialize};

/// Employee status as *read* (`OnHold`, not `Hold`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EmployeeStatus {
    Active,
    OnHold,
    HoldPayments,
    Inactive,
    OneTime,
    /// A value this client does not know yet.
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MetadataDto {
    pub total_count: Option<i64>,
    pub max_page_size: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContactInEmployeeDto {
    pub contact_id: Option<i32>,
    pub title: Option<String>,
    pub first_name: Option<String>,
    pub mid_name: Option<String>,
    pub last_name: Option<String>,
    pub name: Option<String>,
    pub attention: Option<String>,
    pub email: Option<String>,
    pub web: Option<String>,
    pub phone1: Option<String>,
    pub phone2: Option<String>,
    pub phone3: Option<String>,
    pub fax: Option<String>,
    pub employee_contact: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct IdName {
    pub id: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AddressInEmployeeDto {
    pub address_id: Option<i32>,
    pub address_line1: Option<String>,
    pub address_line2: Option<String>,
    pub address_line3: Option<String>,
    pub postal_code: Option<String>,
    pub city: Option<String>,
    pub country: Option<IdName>,
    pub county: Option<IdName>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EmployeeClassRef {
    pub id: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BranchNumberDto {
    pub number: Option<String>,
    pub name: Option<String>,
}

/// `EmployeeDto` (read).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EmployeeDto {
    pub employee_user_id: Option<String>,
    /// Internal id (used by `changeEmployeeCd`), not the employee number.
    pub employee_id: Option<i32>,
    /// The employeeCd used in paths.
    pub employee_number: Option<String>,
    pub employee_name: Option<String>,
    pub status: Option<EmployeeStatus>,
    pub department: Option<String>,
    pub contact: Option<ContactInEmployeeDto>,
    pub address: Option<AddressInEmployeeDto>,
    pub last_modified_date_time: Option<String>,
    pub employee_class: Option<EmployeeClassRef>,
    pub branch: Option<BranchNumberDto>,
    #[serde(rename = "calendarID")]
    pub calendar_id: Option<String>,
    pub employee_login: Option<String>,
    pub work_group_description: Option<Vec<String>>,
    /// Row version (Spec 2026); the ETag is this value in quotes.
    pub time_stamp: Option<String>,
    pub error_info: Option<String>,
    pub metadata: Option<MetadataDto>,
}

impl EmployeeDto {
    /// The value to send as `If-Match`, when Visma exposes versions.
    pub fn etag(&self) -> Option<String> {
        self.time_stamp.as_ref().map(|t| format!("\"{t}\""))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExpenseAccountRef {
    #[serde(rename = "type")]
    pub account_type: Option<String>,
    pub number: Option<String>,
    pub description: Option<String>,
    pub active: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExpenseSubaccountRef {
    pub id: Option<String>,
    pub description: Option<String>,
    pub active: Option<bool>,
}

/// `DepartmentDto` (read).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DepartmentDto {
    pub department_id: Option<String>,
    pub public_id: Option<String>,
    pub description: Option<String>,
    pub expense_account: Option<ExpenseAccountRef>,
    pub expense_subaccount: Option<ExpenseSubaccountRef>,
    pub last_modified_date_time: Option<String>,
    pub time_stamp: Option<String>,
}

/// `BranchDto` (read; only the fields the connector uses).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BranchDto {
    pub branch_id: Option<i32>,
    pub number: Option<String>,
    pub name: Option<String>,
    pub organization_id: Option<i32>,
    pub is_main_branch: Option<bool>,
    pub is_active: Option<bool>,
    pub last_modified_date_time: Option<String>,
}

/// `DtoSegmentValue`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SegmentValueDto {
    pub internal_id: Option<String>,
    pub segment_id: Option<i32>,
    pub value_id: Option<String>,
    pub description: Option<String>,
    pub public_id: Option<String>,
    pub active: Option<bool>,
    pub time_stamp: Option<String>,
    pub last_modified: Option<String>,
}

/// `DtoSegment`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SegmentDto {
    pub internal_id: Option<String>,
    pub segment_id: Option<i32>,
    pub description: Option<String>,
    pub length: Option<i32>,
    pub public_id: Option<String>,
    pub time_stamp: Option<String>,
    pub last_modified: Option<String>,
    pub validate: Option<bool>,
    pub segment_values: Option<Vec<SegmentValueDto>>,
    pub is_auto_number: Option<bool>,
}

/// `DtoDimension`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DimensionDto {
    pub id: Option<String>,
    pub length: Option<i32>,
    pub description: Option<String>,
    pub segments: Option<Vec<SegmentDto>>,
}
