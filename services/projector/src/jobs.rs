//! Which employee a job or compensation belongs to.
//!
//! Gusto's `employee_job_compensation.*` events name the job (or compensation), not the
//! employee, and the App Integrations API has no job read (`GET /v1/jobs/{id}` is
//! Embedded-only, reference §2.4). Every employee the projector reads brings its
//! `jobs[]` (with `compensations[]` under `compensations:read`), so the index is
//! learnt from those reads: after the first list read of a company (a backfill, a
//! burst, a location change) a job event costs one employee read. An unknown job (a
//! new one, or a restarted projector) falls back to one list read, which teaches the
//! index the whole company again.

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub(crate) struct JobIndex(Mutex<HashMap<String, HashMap<String, String>>>);

impl JobIndex {
    pub(crate) fn employee_of(&self, company: &str, job_or_compensation: &str) -> Option<String> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(company)?.get(job_or_compensation).cloned()
    }

    pub(crate) fn learn(&self, company: &str, e: &gusto::Employee) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let jobs = map.entry(company.to_owned()).or_default();
        for j in &e.jobs {
            jobs.insert(j.uuid.clone(), e.uuid.clone());
            if let Some(c) = &j.current_compensation_uuid {
                jobs.insert(c.clone(), e.uuid.clone());
            }
            for c in &j.compensations {
                jobs.insert(c.uuid.clone(), e.uuid.clone());
            }
        }
    }
}
