//! What the connector sends: every scalar as `{"value": x}`, unchanged fields left out,
//! write-side names (`middleName`, `calendar`, `countryId`, `Hold`).

use super::{v, EmployeeStatus, Value};
use serde::{Deserialize, Serialize};

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
