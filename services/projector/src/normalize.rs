//! Gusto's employee record, normalised into the content of an `EmployeeSnapshot`.
//!
//! Only what the mapping may read goes in, so a change elsewhere in Gusto's record (a
//! pay rate, a benefit) makes no new snapshot.

use gusto::{Employee, Location};
use mlc_proto::v1::{EmployeeContent, EmploymentStatus, Location as ProtoLocation};
use std::collections::HashMap;

/// The primary job, else the first one: titles and locations come from it.
fn primary_job(e: &Employee) -> Option<&gusto::Job> {
    e.jobs.iter().find(|j| j.primary).or_else(|| e.jobs.first())
}

/// The uuid of the employee's work location, if any job names one.
pub fn location_uuid(e: &Employee) -> Option<&str> {
    primary_job(e).and_then(|j| j.location_uuid.as_deref()).filter(|s| !s.is_empty())
}

pub fn normalize(e: &Employee, locations: &HashMap<String, Location>) -> EmployeeContent {
    let job = primary_job(e);
    let status = if e.terminated {
        EmploymentStatus::Terminated
    } else if !e.onboarded {
        EmploymentStatus::Onboarding
    } else {
        EmploymentStatus::Active
    };
    // The last day of the termination that took effect; a future-dated one does not
    // make the employee terminated yet.
    let termination_date = if e.terminated {
        e.terminations
            .iter()
            .filter_map(|t| t.effective_date)
            .max()
            .map(|d| d.to_string())
            .unwrap_or_default()
    } else {
        String::new()
    };
    let work_location = location_uuid(e).map(|uuid| match locations.get(uuid) {
        Some(l) => ProtoLocation {
            uuid: l.uuid.clone(),
            street_1: l.street_1.clone().unwrap_or_default(),
            city: l.city.clone().unwrap_or_default(),
            zip: l.zip.clone().unwrap_or_default(),
            country: l.country.clone().unwrap_or_default(),
            state: l.state.clone().unwrap_or_default(),
        },
        // Unknown to the cache: keep the uuid so the mapping can still match on it.
        None => ProtoLocation { uuid: uuid.to_string(), ..Default::default() },
    });
    let clean = |s: &Option<String>| s.as_deref().map(str::trim).unwrap_or_default().to_string();
    EmployeeContent {
        first_name: e.first_name.trim().to_string(),
        middle_initial: clean(&e.middle_initial),
        last_name: e.last_name.trim().to_string(),
        preferred_first_name: clean(&e.preferred_first_name),
        email: clean(&e.email),
        work_email: clean(&e.work_email),
        phone: clean(&e.phone),
        job_title: job
            .and_then(|j| j.title.clone())
            .or_else(|| e.title.clone())
            .unwrap_or_default()
            .trim()
            .to_string(),
        department_uuid: clean(&e.department_uuid),
        department_title: clean(&e.department),
        work_location,
        status: status as i32,
        hire_date: job.and_then(|j| j.hire_date).or(e.hired_at).map(|d| d.to_string()).unwrap_or_default(),
        termination_date,
        employee_code: clean(&e.employee_code),
    }
}
