//! The rules Visma applies to writes: creates, updates, `If-Match`, segment values.

use super::write::{apply_address, apply_contact, missing, non_empty, take};
use super::*;

impl TenantData {
    pub(super) fn bump(&mut self) -> u64 {
        self.next_version += 1;
        // Start far from zero so timeStamps look like real rowversions.
        0x7_0000 + self.next_version
    }

    pub(super) fn next_id(&mut self) -> i32 {
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

    /// Someone else saved employee `cd` (in the Visma UI, another integration) without
    /// changing what we sync: its version and modification time move on. `false` when
    /// there is no such employee.
    pub fn touch_employee(&mut self, cd: &str, now: NaiveDateTime) -> bool {
        if !self.employees.contains_key(cd) {
            return false;
        }
        let version = self.bump();
        let e = self.employees.get_mut(cd).expect("checked above");
        e.last_modified = now;
        e.version = version;
        true
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
}
