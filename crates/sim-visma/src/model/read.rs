//! The read DTOs as Visma renders them: plain scalars, read-side names, `timeStamp`.

use super::*;

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
