//! Seeding through the admin API: setup data a test starts from.

use super::*;

impl TenantData {
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
