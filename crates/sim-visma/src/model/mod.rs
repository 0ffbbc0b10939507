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

// ---- write DTOs (wire shapes of the spec, deserialised leniently) ----

/// `{"value": x}`; Visma treats `{"value": null}` and an omitted field alike.
#[derive(Debug, Clone, Deserialize)]
pub struct Val<T> {
    pub value: Option<T>,
}

type VStr = Option<Val<String>>;

fn take(v: &VStr) -> Option<String> {
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

fn apply_contact(c: &mut Contact, w: &ContactWrite) {
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

fn apply_address(a: &mut Address, w: &AddressWrite) {
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

fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

fn missing(field: &str) -> RuleError {
    RuleError::Invalid(format!("Error: '{field}' cannot be empty."))
}

impl TenantData {
    fn bump(&mut self) -> u64 {
        self.next_version += 1;
        // Start far from zero so timeStamps look like real rowversions.
        0x7_0000 + self.next_version
    }

    fn next_id(&mut self) -> i32 {
        self.next_id += 1;
        1000 + self.next_id
    }

    fn check_refs(
        &self,
        department: Option<&str>,
        class: Option<&str>,
        branch: Option<&str>,
        calendar: Option<&str>,
    ) -> Result<(), RuleError> {
        if let Some(d) = department {
            if !self.departments.contains_key(d) {
                return Err(RuleError::Invalid(format!(
                    "Error: 'Department' cannot be found in the system. Department '{d}' does not exist."
                )));
            }
        }
        if let Some(c) = class {
            if !self.employee_classes.contains_key(c) {
                return Err(RuleError::Invalid(format!(
                    "Error: 'Employee class' cannot be found in the system. Class '{c}' does not exist."
                )));
            }
        }
        if let Some(b) = branch {
            if !self.branches.contains_key(b) {
                return Err(RuleError::Invalid(format!(
                    "Error: 'Branch' cannot be found in the system. Branch '{b}' does not exist."
                )));
            }
        }
        if let Some(c) = calendar {
            if !self.calendars.iter().any(|x| x == c) {
                return Err(RuleError::Invalid(format!(
                    "Error: 'Calendar' cannot be found in the system. Calendar '{c}' does not exist."
                )));
            }
        }
        Ok(())
    }

    /// `POST /v1/employee`. Returns the stored record.
    pub fn create_employee(
        &mut self,
        w: &EmployeeCreate,
        now: NaiveDateTime,
    ) -> Result<&EmployeeRecord, RuleError> {
        let cd = non_empty(take(&w.employee_cd)).ok_or_else(|| missing("employeeCd"))?;
        let department = non_empty(take(&w.department)).ok_or_else(|| missing("department"))?;
        let class = non_empty(take(&w.employee_class)).ok_or_else(|| missing("employeeClass"))?;
        let branch = non_empty(take(&w.branch)).ok_or_else(|| missing("branch"))?;
        let calendar = non_empty(take(&w.calendar)).ok_or_else(|| missing("calendar"))?;
        let contact_w = w.contact.as_ref().ok_or_else(|| missing("contact"))?;
        non_empty(take(&contact_w.last_name)).ok_or_else(|| missing("contact.lastName"))?;
        non_empty(take(&contact_w.email)).ok_or_else(|| missing("contact.email"))?;
        let status = match take(&w.status) {
            None => EmployeeStatus::Active,
            Some(s) => EmployeeStatus::from_write(&s)
                .ok_or_else(|| RuleError::Invalid(format!("Error: Status '{s}' is not a valid value.")))?,
        };
        if self.employees.contains_key(&cd) {
            return Err(RuleError::Invalid(format!(
                "Error inserting the employee. Employee ID '{cd}' already exists."
            )));
        }
        self.check_refs(Some(&department), Some(&class), Some(&branch), Some(&calendar))?;
        let mut contact = Contact { contact_id: self.next_id(), ..Contact::default() };
        apply_contact(&mut contact, contact_w);
        let mut address = Address { address_id: self.next_id(), ..Address::default() };
        if let Some(a) = &w.address {
            apply_address(&mut address, a);
        }
        let record = EmployeeRecord {
            employee_id: self.next_id(),
            employee_cd: cd.clone(),
            employee_user_id: Uuid::new_v4(),
            status,
            department,
            employee_class: class,
            branch,
            calendar,
            contact,
            address,
            work_groups: Vec::new(),
            last_modified: now,
            version: self.bump(),
        };
        Ok(self.employees.entry(cd).or_insert(record))
    }

    /// `PUT /v1/employee/{employeeCd}`. Omitted fields stay unchanged.
    pub fn update_employee(
        &mut self,
        cd: &str,
        w: &EmployeeUpdate,
        if_match: Option<&str>,
        now: NaiveDateTime,
    ) -> Result<&EmployeeRecord, RuleError> {
        let current = self.employees.get(cd).ok_or_else(|| {
            RuleError::NotFound(format!("Error: Employee with employeeCd '{cd}' not found."))
        })?;
        if let Some(tag) = if_match {
            if !etag_matches(tag, current.version) {
                return Err(RuleError::Stale);
            }
        }
        let status =
            match take(&w.status) {
                None => None,
                Some(s) => Some(EmployeeStatus::from_write(&s).ok_or_else(|| {
                    RuleError::Invalid(format!("Error: Status '{s}' is not a valid value."))
                })?),
            };
        let department = take(&w.department);
        let class = take(&w.employee_class);
        let branch = take(&w.branch);
        let calendar = take(&w.calendar);
        self.check_refs(department.as_deref(), class.as_deref(), branch.as_deref(), calendar.as_deref())?;
        if let Some(c) = &w.contact {
            // Contact last name and email are mandatory on the record: clearing them fails.
            for (field, v) in [("contact.lastName", &c.last_name), ("contact.email", &c.email)] {
                if let Some(v) = v {
                    if non_empty(v.value.clone()).is_none() {
                        return Err(missing(field));
                    }
                }
            }
        }
        let version = self.bump();
        let e = self
            .employees
            .get_mut(cd)
            .ok_or_else(|| RuleError::NotFound(format!("Error: Employee '{cd}' not found.")))?;
        if let Some(s) = status {
            e.status = s;
        }
        if let Some(d) = department {
            e.department = d;
        }
        if let Some(c) = class {
            e.employee_class = c;
        }
        if let Some(b) = branch {
            e.branch = b;
        }
        if let Some(c) = calendar {
            e.calendar = c;
        }
        if let Some(c) = &w.contact {
            apply_contact(&mut e.contact, c);
        }
        if let Some(a) = &w.address {
            apply_address(&mut e.address, a);
        }
        for op in w.company_tree_info.iter().flatten() {
            let Some(id) = take(&op.work_group_id) else {
                continue;
            };
            let active = op.active.as_ref().and_then(|v| v.value);
            let owner = op.owner.as_ref().and_then(|v| v.value);
            match op.operation.as_deref() {
                Some("Delete") => e.work_groups.retain(|g| g.work_group_id != id),
                _ => {
                    if let Some(g) = e.work_groups.iter_mut().find(|g| g.work_group_id == id) {
                        g.active = active.unwrap_or(g.active);
                        g.owner = owner.unwrap_or(g.owner);
                    } else {
                        e.work_groups.push(WorkGroup {
                            work_group_id: id,
                            active: active.unwrap_or(true),
                            owner: owner.unwrap_or(false),
                        });
                    }
                }
            }
        }
        e.last_modified = now;
        e.version = version;
        Ok(e)
    }

    pub fn upsert_department(
        &mut self,
        id_from_path: Option<&str>,
        w: &DepartmentWrite,
        now: NaiveDateTime,
        create: bool,
    ) -> Result<&DepartmentRecord, RuleError> {
        let id = match id_from_path {
            Some(id) => id.to_string(),
            None => non_empty(w.department_id.clone()).ok_or_else(|| missing("departmentId"))?,
        };
        let exists = self.departments.contains_key(&id);
        if create && exists {
            return Err(RuleError::Invalid(format!(
                "Error inserting the department. Department ID '{id}' already exists."
            )));
        }
        if !create && !exists {
            return Err(RuleError::NotFound(format!("Error: Department '{id}' not found.")));
        }
        let version = self.bump();
        let d = self.departments.entry(id.clone()).or_insert_with(|| DepartmentRecord {
            department_id: id,
            public_id: Uuid::new_v4(),
            description: None,
            expense_account: None,
            expense_subaccount: None,
            last_modified: now,
            version,
        });
        if let Some(v) = &w.description {
            d.description = v.value.clone();
        }
        if let Some(v) = &w.expense_account {
            d.expense_account = v.value.clone();
        }
        if let Some(segs) = &w.expense_subaccount {
            let joined: Vec<String> = segs.iter().filter_map(|s| s.segment_value.clone()).collect();
            d.expense_subaccount = Some(joined.join("-"));
        }
        d.last_modified = now;
        d.version = version;
        Ok(d)
    }

    pub fn update_segment(
        &mut self,
        dimension: &str,
        segment_id: i32,
        w: &SegmentWrite,
        now: NaiveDateTime,
    ) -> Result<(), RuleError> {
        let version = self.bump();
        let seg =
            self.dimensions.get_mut(dimension).and_then(|d| d.segments.get_mut(&segment_id)).ok_or_else(
                || {
                    RuleError::NotFound(format!(
                        "Error: Segment {segment_id} of dimension '{dimension}' not found."
                    ))
                },
            )?;
        if let Some(d) = take(&w.description) {
            seg.description = d;
        }
        for v in w.segment_values.iter().flatten() {
            let value = non_empty(v.value.clone()).ok_or_else(|| missing("segmentValues.value"))?;
            if value.chars().count() > seg.length.max(0) as usize {
                return Err(RuleError::Invalid(format!(
                    "Error: Value '{value}' is longer than the segment length {}.",
                    seg.length
                )));
            }
            match v.operation.as_deref().unwrap_or("Insert") {
                "Delete" => {
                    seg.values.remove(&value);
                }
                op @ ("Insert" | "Update") => {
                    let exists = seg.values.contains_key(&value);
                    if op == "Insert" && exists {
                        return Err(RuleError::Invalid(format!(
                            "Error: Segment value '{value}' already exists."
                        )));
                    }
                    if op == "Update" && !exists {
                        return Err(RuleError::Invalid(format!(
                            "Error: Segment value '{value}' does not exist."
                        )));
                    }
                    let entry = seg.values.entry(value.clone()).or_insert_with(|| SegmentValueRecord {
                        value_id: value,
                        description: None,
                        active: true,
                        public_id: Uuid::new_v4(),
                        last_modified: now,
                        version,
                    });
                    if let Some(d) = &v.description {
                        entry.description = d.value.clone();
                    }
                    if let Some(a) = v.active.as_ref().and_then(|a| a.value) {
                        entry.active = a;
                    }
                    entry.last_modified = now;
                    entry.version = version;
                }
                other => {
                    return Err(RuleError::Invalid(format!("Error: Operation '{other}' is not supported.")))
                }
            }
        }
        seg.last_modified = now;
        seg.version = version;
        Ok(())
    }

    // ---- seeding (admin) ----

    pub fn seed_department(&mut self, id: &str, description: Option<String>, now: NaiveDateTime) {
        let version = self.bump();
        self.departments.insert(
            id.to_string(),
            DepartmentRecord {
                department_id: id.to_string(),
                public_id: Uuid::new_v4(),
                description,
                expense_account: None,
                expense_subaccount: None,
                last_modified: now,
                version,
            },
        );
    }

    pub fn seed_branch(&mut self, number: &str, name: &str, now: NaiveDateTime) {
        let is_main = self.branches.is_empty();
        let branch_id = self.next_id();
        self.branches.insert(
            number.to_string(),
            BranchRecord {
                branch_id,
                number: number.to_string(),
                name: name.to_string(),
                is_main_branch: is_main,
                is_active: true,
                last_modified: now,
            },
        );
    }

    pub fn seed_segment(
        &mut self,
        dimension: &str,
        dimension_description: &str,
        segment_id: i32,
        description: &str,
        length: i32,
        now: NaiveDateTime,
    ) {
        let version = self.bump();
        let dim = self.dimensions.entry(dimension.to_string()).or_insert_with(|| DimensionRecord {
            id: dimension.to_string(),
            description: dimension_description.to_string(),
            segments: BTreeMap::new(),
        });
        dim.segments.entry(segment_id).or_insert_with(|| SegmentRecord {
            segment_id,
            description: description.to_string(),
            length,
            is_auto_number: false,
            validate: true,
            internal_id: Uuid::new_v4(),
            values: BTreeMap::new(),
            last_modified: now,
            version,
        });
    }
}

/// Compares an `If-Match` header against a row version (quotes and `W/` tolerated, `*` matches).
pub fn etag_matches(if_match: &str, version: u64) -> bool {
    let current = time_stamp(version);
    if_match
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/").trim_matches('"') == current)
}

/// Inserts `key: value` only when `value` is present (the spec's read schemas are not nullable).
fn put(m: &mut Map<String, Value>, key: &str, value: &Option<String>) {
    if let Some(v) = value {
        m.insert(key.to_string(), Value::String(v.clone()));
    }
}

impl EmployeeRecord {
    /// The `EmployeeDto` read shape.
    pub fn to_dto(&self, tenant: &TenantData) -> Value {
        let c = &self.contact;
        let name = [&c.first_name, &c.middle_name, &c.last_name]
            .iter()
            .filter_map(|p| p.as_deref())
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        let mut contact = Map::new();
        contact.insert("contactId".into(), json!(c.contact_id));
        contact.insert("name".into(), json!(name));
        put(&mut contact, "firstName", &c.first_name);
        put(&mut contact, "midName", &c.middle_name);
        put(&mut contact, "lastName", &c.last_name);
        put(&mut contact, "email", &c.email);
        put(&mut contact, "phone1", &c.phone1);
        put(&mut contact, "phone2", &c.phone2);
        put(&mut contact, "phone3", &c.phone3);
        put(&mut contact, "fax", &c.fax);

        let a = &self.address;
        let mut address = Map::new();
        address.insert("addressId".into(), json!(a.address_id));
        put(&mut address, "addressLine1", &a.address_line1);
        put(&mut address, "addressLine2", &a.address_line2);
        put(&mut address, "addressLine3", &a.address_line3);
        put(&mut address, "postalCode", &a.postal_code);
        put(&mut address, "city", &a.city);
        if let Some(id) = &a.country_id {
            address.insert("country".into(), json!({ "id": id, "name": country_name(id) }));
        }
        if let Some(id) = &a.county {
            address.insert("county".into(), json!({ "id": id, "name": id }));
        }
        let branch_name = tenant.branches.get(&self.branch).map(|b| b.name.clone()).unwrap_or_default();
        let class_description =
            tenant.employee_classes.get(&self.employee_class).cloned().unwrap_or_default();
        json!({
            "employeeUserId": self.employee_user_id,
            "employeeId": self.employee_id,
            "employeeNumber": self.employee_cd,
            "employeeName": name,
            "status": self.status,
            "department": self.department,
            "contact": contact,
            "address": address,
            "lastModifiedDateTime": fmt_time(self.last_modified),
            "employeeClass": {"id": self.employee_class, "description": class_description},
            "branch": {"number": self.branch, "name": branch_name},
            "calendarID": self.calendar,
            "workGroupDescription": self.work_groups.iter().map(|g| g.work_group_id.clone()).collect::<Vec<_>>(),
            "timeStamp": time_stamp(self.version),
        })
    }
}

fn country_name(id: &str) -> &'static str {
    match id {
        "NO" => "Norway",
        "SE" => "Sweden",
        "DK" => "Denmark",
        "FI" => "Finland",
        "NL" => "Netherlands",
        "US" => "United States",
        "GB" => "United Kingdom",
        _ => "",
    }
}

impl DepartmentRecord {
    pub fn to_dto(&self) -> Value {
        let mut m = Map::new();
        m.insert("departmentId".into(), json!(self.department_id));
        m.insert("publicId".into(), json!(self.public_id));
        put(&mut m, "description", &self.description);
        if let Some(acc) = &self.expense_account {
            m.insert("expenseAccount".into(), json!({"number": acc, "type": "Expense", "active": true}));
        }
        if let Some(sub) = &self.expense_subaccount {
            m.insert("expenseSubaccount".into(), json!({"id": sub, "active": true}));
        }
        m.insert("lastModifiedDateTime".into(), json!(fmt_time(self.last_modified)));
        m.insert("timeStamp".into(), json!(time_stamp(self.version)));
        Value::Object(m)
    }
}

impl BranchRecord {
    pub fn to_dto(&self) -> Value {
        json!({
            "branchId": self.branch_id,
            "number": self.number,
            "name": self.name,
            "isMainBranch": self.is_main_branch,
            "isActive": self.is_active,
            "lastModifiedDateTime": fmt_time(self.last_modified),
        })
    }
}

impl SegmentRecord {
    pub fn to_dto(&self) -> Value {
        let values: Vec<Value> = self
            .values
            .values()
            .map(|v| {
                let mut m = Map::new();
                m.insert("internalId".into(), json!(v.public_id));
                m.insert("segmentId".into(), json!(self.segment_id));
                m.insert("valueId".into(), json!(v.value_id));
                put(&mut m, "description", &v.description);
                m.insert("publicId".into(), json!(v.public_id));
                m.insert("active".into(), json!(v.active));
                m.insert("timeStamp".into(), json!(time_stamp(v.version)));
                m.insert("lastModified".into(), json!(fmt_time(v.last_modified)));
                Value::Object(m)
            })
            .collect();
        json!({
            "internalId": self.internal_id,
            "segmentId": self.segment_id,
            "description": self.description,
            "length": self.length,
            "publicId": self.internal_id,
            "timeStamp": time_stamp(self.version),
            "lastModified": fmt_time(self.last_modified),
            "validate": self.validate,
            "segmentValues": values,
            "isAutoNumber": self.is_auto_number,
        })
    }
}

impl DimensionRecord {
    pub fn to_dto(&self) -> Value {
        let length: i32 = self.segments.values().map(|s| s.length).sum();
        json!({
            "id": self.id,
            "length": length,
            "description": self.description,
            "segments": self.segments.values().map(SegmentRecord::to_dto).collect::<Vec<_>>(),
        })
    }
}
