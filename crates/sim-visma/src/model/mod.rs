//! In-memory ERP data of one tenant and the rules Visma applies to it.
//!
//! The write side speaks the `{"value": x}` wrapper DTOs of the spec, the read side renders the
//! plain-scalar read DTOs, including Visma's name asymmetries (`middleName`/`midName`,
//! `calendar`/`calendarID`, `countryId`/`country.id`, write `Hold` / read `OnHold`).

use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use uuid::Uuid;

mod read;
mod rules;
mod seed;
mod write;
pub use read::etag_matches;
pub use write::*;

/// Renders a timestamp the way the ERP does: local time, milliseconds, no offset.
pub fn fmt_time(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string()
}

/// Encodes a row version as Visma's `timeStamp` (base64 of an 8-byte SQL rowversion).
pub fn time_stamp(version: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(version.to_be_bytes())
}

/// Employee status as stored; serialised with the *read* names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EmployeeStatus {
    Active,
    OnHold,
    HoldPayments,
    Inactive,
    OneTime,
}

impl EmployeeStatus {
    /// Parses the *write* enum (`Hold`, not `OnHold`).
    fn from_write(s: &str) -> Option<Self> {
        Some(match s {
            "Active" => Self::Active,
            "Hold" => Self::OnHold,
            "HoldPayments" => Self::HoldPayments,
            "Inactive" => Self::Inactive,
            "OneTime" => Self::OneTime,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    pub contact_id: i32,
    pub first_name: Option<String>,
    pub middle_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone1: Option<String>,
    pub phone2: Option<String>,
    pub phone3: Option<String>,
    pub fax: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    pub address_id: i32,
    pub address_line1: Option<String>,
    pub address_line2: Option<String>,
    pub address_line3: Option<String>,
    pub postal_code: Option<String>,
    pub city: Option<String>,
    pub country_id: Option<String>,
    pub county: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WorkGroup {
    pub work_group_id: String,
    pub active: bool,
    pub owner: bool,
}

/// One employee as the simulator stores it (inspect with `SimHandle::employees`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EmployeeRecord {
    pub employee_id: i32,
    pub employee_cd: String,
    pub employee_user_id: Uuid,
    pub status: EmployeeStatus,
    pub department: String,
    pub employee_class: String,
    pub branch: String,
    pub calendar: String,
    pub contact: Contact,
    pub address: Address,
    pub work_groups: Vec<WorkGroup>,
    pub last_modified: NaiveDateTime,
    /// Row version; `timeStamp`/`ETag` are derived from it.
    pub version: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DepartmentRecord {
    pub department_id: String,
    pub public_id: Uuid,
    pub description: Option<String>,
    pub expense_account: Option<String>,
    pub expense_subaccount: Option<String>,
    pub last_modified: NaiveDateTime,
    pub version: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BranchRecord {
    pub branch_id: i32,
    pub number: String,
    pub name: String,
    pub is_main_branch: bool,
    pub is_active: bool,
    pub last_modified: NaiveDateTime,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SegmentValueRecord {
    pub value_id: String,
    pub description: Option<String>,
    pub active: bool,
    pub public_id: Uuid,
    pub last_modified: NaiveDateTime,
    pub version: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SegmentRecord {
    pub segment_id: i32,
    pub description: String,
    pub length: i32,
    pub is_auto_number: bool,
    pub validate: bool,
    pub internal_id: Uuid,
    pub values: BTreeMap<String, SegmentValueRecord>,
    pub last_modified: NaiveDateTime,
    pub version: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DimensionRecord {
    pub id: String,
    pub description: String,
    pub segments: BTreeMap<i32, SegmentRecord>,
}

/// Everything one tenant (company) holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantData {
    pub departments: BTreeMap<String, DepartmentRecord>,
    pub branches: BTreeMap<String, BranchRecord>,
    /// Employee class id -> description (the API has no class endpoint; classes are setup data).
    pub employee_classes: BTreeMap<String, String>,
    /// Work calendar ids (no calendar endpoint either).
    pub calendars: Vec<String>,
    pub employees: BTreeMap<String, EmployeeRecord>,
    pub dimensions: BTreeMap<String, DimensionRecord>,
    next_id: i32,
    next_version: u64,
}

/// A business rule failure, answered as 400 `{"message": "VismaId: <uuid>. Error: ..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleError {
    /// 400 with a message.
    Invalid(String),
    /// 404 with a message.
    NotFound(String),
    /// 412, the `If-Match` did not match.
    Stale,
}
