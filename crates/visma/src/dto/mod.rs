//! Wire DTOs of the Visma.net ERP API (names exactly as in the spec).
//!
//! Read DTOs carry plain scalars; write DTOs wrap every scalar as `{"value": x}` and leave out
//! (`skip_serializing_if`) every field that should stay unchanged. Mind the asymmetries: write
//! `middleName` / read `midName`, write `calendar` / read `calendarID`, write `countryId` / read
//! `country.id`, write status `Hold` / read `OnHold`.

use serde::{Deserialize, Serialize};

/// The `{"value": x}` wrapper of write DTOs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Value<T> {
    pub value: T,
}

impl<T> Value<T> {
    pub fn new(value: T) -> Self {
        Self { value }
    }
}

impl From<&str> for Value<String> {
    fn from(v: &str) -> Self {
        Self::new(v.to_string())
    }
}

impl From<String> for Value<String> {
    fn from(v: String) -> Self {
        Self::new(v)
    }
}

/// Shorthand for an optional wrapped string: `Some(v("x"))`.
pub fn v(s: impl Into<String>) -> Value<String> {
    Value::new(s.into())
}

// ---------------------------------------------------------------- read side

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

// ---------------------------------------------------------------- write side

/// Employee status as *written* (`Hold`, not `OnHold`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EmployeeWriteStatus {
    Active,
    Hold,
    HoldPayments,
    Inactive,
    OneTime,
}

impl EmployeeStatus {
    /// The write-side value that produces this read-side status.
    pub fn to_write(self) -> Option<EmployeeWriteStatus> {
        Some(match self {
            Self::Active => EmployeeWriteStatus::Active,
            Self::OnHold => EmployeeWriteStatus::Hold,
            Self::HoldPayments => EmployeeWriteStatus::HoldPayments,
            Self::Inactive => EmployeeWriteStatus::Inactive,
            Self::OneTime => EmployeeWriteStatus::OneTime,
            Self::Unknown => return None,
        })
    }
}

type W = Option<Value<String>>;

/// `EmployeeContactUpdateDto` (create) / `contactInEmployeeUpdateDto` (update).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmployeeContactWrite {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: W,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub middle_name: W,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: W,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: W,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone1: W,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone2: W,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone3: W,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fax: W,
}

/// `AddressUpdateDto` / `addressInEmployeeUpdateDto`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddressWrite {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address_line1: W,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address_line2: W,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address_line3: W,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postal_code: W,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: W,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country_id: W,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub county: W,
}

/// `EmployeeCreateDTO` (POST body). The caller chooses `employeeCd`, which is what makes a
/// create idempotent: a second create of the same number fails as
/// [`crate::VismaError::DuplicateEmployee`] instead of making a second employee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmployeeCreateDto {
    pub employee_cd: Value<String>,
    pub department: Value<String>,
    pub employee_class: Value<String>,
    pub branch: Value<String>,
    pub calendar: Value<String>,
    pub contact: EmployeeContactWrite,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<AddressWrite>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Value<EmployeeWriteStatus>>,
}

impl EmployeeCreateDto {
    /// A create body with every field Visma requires.
    pub fn new(
        employee_cd: impl Into<String>,
        department: impl Into<String>,
        employee_class: impl Into<String>,
        branch: impl Into<String>,
        calendar: impl Into<String>,
        last_name: impl Into<String>,
        email: impl Into<String>,
    ) -> Self {
        Self {
            employee_cd: v(employee_cd),
            department: v(department),
            employee_class: v(employee_class),
            branch: v(branch),
            calendar: v(calendar),
            contact: EmployeeContactWrite {
                last_name: Some(v(last_name)),
                email: Some(v(email)),
                ..EmployeeContactWrite::default()
            },
            address: None,
            status: None,
        }
    }
}

/// `CompanyTreeInfoDto`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompanyTreeInfoDto {
    pub operation: RowOperation,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<Value<bool>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<Value<bool>>,
    #[serde(rename = "workGroupID")]
    pub work_group_id: Value<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RowOperation {
    Insert,
    Update,
    Delete,
}

/// `EmployeeUpdateDto` (PUT body). Omitted fields stay unchanged. `contact` is always sent
/// (the spec marks it required); an empty contact object changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmployeeUpdateDto {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub employee_class: W,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Value<EmployeeWriteStatus>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department: W,
    pub contact: EmployeeContactWrite,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<AddressWrite>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: W,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calendar: W,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub company_tree_info: Option<Vec<CompanyTreeInfoDto>>,
}

impl EmployeeUpdateDto {
    /// The deactivation body (Visma has no DELETE for employees).
    pub fn deactivate() -> Self {
        Self { status: Some(Value::new(EmployeeWriteStatus::Inactive)), ..Self::default() }
    }
}

/// `DtoSegmentValueUpdateDtoBase`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentValueUpdateDto {
    pub operation: RowOperation,
    pub value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: W,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<Value<bool>>,
}

/// `DtoSegmentUpdateDto` (PUT `/dimension/{id}/{segmentId}`; the spec spells `segementId`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentUpdateDto {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimension_id: Option<String>,
    #[serde(rename = "segementId", skip_serializing_if = "Option::is_none")]
    pub segment_id: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: W,
    pub segment_values: Vec<SegmentValueUpdateDto>,
}
