//! Operations that change the simulated world, as a person in Gusto would, each
//! emitting the events Gusto emits. Exposed as Rust methods on [`Sim`] and through
//! the `/admin` HTTP API.

use std::sync::Weak;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::model::*;
use crate::seed::{self, new_uuid};
use crate::{FaultRule, Sim, State};

/// Why an admin operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("invalid: {0}")]
    Invalid(String),
}

/// Result of [`Sim::seed_company`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompanyInfo {
    pub company_uuid: String,
    pub location_uuids: Vec<String>,
    pub department_uuids: Vec<String>,
    pub employee_uuids: Vec<String>,
}

/// Body of `POST /admin/companies/{company_uuid}/employees`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct HireRequest {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub work_email: Option<String>,
    pub title: Option<String>,
    pub department_uuid: Option<String>,
    pub location_uuid: Option<String>,
    pub hire_date: Option<NaiveDate>,
    /// Complete onboarding right away (emits `employee.onboarded`); default true.
    pub onboard: Option<bool>,
}

/// Body of `PATCH /admin/employees/{id}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EmployeePatch {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub preferred_first_name: Option<String>,
    pub email: Option<String>,
    pub work_email: Option<String>,
}

/// Body of `PATCH /admin/locations/{id}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LocationPatch {
    pub street_1: Option<String>,
    pub street_2: Option<String>,
    pub city: Option<String>,
    pub zip: Option<String>,
    pub phone_number: Option<String>,
    pub active: Option<bool>,
}

impl State {
    /// Simulated wall clock (real time plus the admin clock offset).
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.utc()
    }

    pub fn today(&self) -> NaiveDate {
        self.now().date_naive()
    }

    /// The calendar day in US Pacific time (Gusto's clock for effective dates, §1.5).
    pub fn pacific_today(&self) -> NaiveDate {
        pacific_date(self.now())
    }

    /// Records an event (for `/v1/events`) and queues it for webhook delivery.
    pub(crate) fn emit(&mut self, company: &str, event_type: &str, entity_type: &str, entity_uuid: &str) {
        let event = Event {
            uuid: new_uuid(self),
            event_type: event_type.to_owned(),
            resource_type: "Company".into(),
            resource_uuid: company.to_owned(),
            entity_type: entity_type.to_owned(),
            entity_uuid: entity_uuid.to_owned(),
            timestamp: self.now().timestamp(),
        };
        self.events.push(event.clone());
        // The dispatcher lives as long as the simulator; a send error means shutdown.
        let _ = self.events_tx.send(event);
    }

    fn employee_mut(&mut self, id: &str) -> Result<&mut Employee, SimError> {
        self.employees.get_mut(id).ok_or_else(|| SimError::NotFound(format!("employee {id}")))
    }

    pub(crate) fn employee_json(&self, e: &Employee) -> Value {
        let dept = e.department_uuid.as_ref().and_then(|d| self.departments.get(d)).map(|d| d.title.as_str());
        e.to_json(dept)
    }

    pub(crate) fn department_json(&self, d: &Department) -> Value {
        let members: Vec<Value> = self
            .employees
            .values()
            .filter(|e| e.department_uuid.as_deref() == Some(&d.uuid))
            .map(|e| json!({"uuid": e.uuid}))
            .collect();
        json!({"uuid": d.uuid, "company_uuid": d.company_uuid, "title": d.title,
               "version": version_of(&[&d.title]), "employees": members, "contractors": []})
    }

    /// Applies terminations and rehires whose day has come (Pacific time). Entries hold
    /// the day they take effect: a termination's is the day after the last day.
    pub(crate) fn process_effective_dates(&mut self) {
        let today = self.pacific_today();
        let due: Vec<(NaiveDate, String, bool)> =
            self.pending_effective.iter().filter(|(d, _, _)| *d <= today).cloned().collect();
        self.pending_effective.retain(|(d, _, _)| *d > today);
        for (_, id, is_termination) in due {
            self.make_effective(&id, is_termination);
        }
    }

    fn make_effective(&mut self, id: &str, is_termination: bool) {
        let Some(e) = self.employees.get_mut(id) else {
            return;
        };
        let company = e.company_uuid.clone();
        if is_termination {
            if let Some(t) = e.terminations.last_mut() {
                t.active = true;
            }
            e.terminated = true;
            let spelling = if self.embedded_spelling {
                "employee.termination_effective"
            } else {
                "employee.terminated_effective"
            };
            self.emit(&company, spelling, "Employee", id);
        } else {
            if let Some(r) = e.rehire.as_mut() {
                r.active = true;
            }
            e.terminated = false;
            e.rehire = None;
            self.emit(&company, "employee.rehire_effective", "Employee", id);
        }
    }
}

impl Sim {
    /// Creates a company (5 Nordic offices, 6 departments) with `n_employees` people.
    pub fn seed_company(&self, n_employees: usize) -> CompanyInfo {
        self.seed_named_company("Nordlys Consulting", n_employees)
    }

    pub fn seed_named_company(&self, name: &str, n_employees: usize) -> CompanyInfo {
        let mut st = self.state();
        let id = seed::seed_company(&mut st, name, n_employees);
        let c = st.companies.iter().find(|c| c.uuid == id).cloned();
        let c = c.unwrap_or_else(|| unreachable!("seed_company inserts the company"));
        CompanyInfo {
            company_uuid: c.uuid,
            location_uuids: c.locations,
            department_uuids: c.departments,
            employee_uuids: c.employees,
        }
    }

    /// Hires a person: `employee.created`, then `employee.onboarded` unless
    /// `onboard: false` (call [`Sim::onboard`] later).
    pub fn hire(&self, company_uuid: &str, req: HireRequest) -> Result<String, SimError> {
        let mut st = self.state();
        let company = st
            .companies
            .iter()
            .find(|c| c.uuid == company_uuid)
            .cloned()
            .ok_or_else(|| SimError::NotFound(format!("company {company_uuid}")))?;
        let (rf, rl) = seed::random_name(&mut st);
        let dept = req.department_uuid.or_else(|| c_first(&company.departments));
        let dept_title =
            dept.as_ref().and_then(|d| st.departments.get(d)).map(|d| d.title.clone()).unwrap_or_default();
        let title = match req.title {
            Some(t) => t,
            None => seed::title_for(&mut st, &dept_title),
        };
        let loc = req
            .location_uuid
            .or_else(|| c_first(&company.locations))
            .ok_or_else(|| SimError::Invalid("company has no location".into()))?;
        if !st.locations.contains_key(&loc) {
            return Err(SimError::NotFound(format!("location {loc}")));
        }
        let hire_date = req.hire_date.unwrap_or_else(|| st.today());
        let id = seed::new_employee(
            &mut st,
            company_uuid,
            &req.first_name.unwrap_or(rf),
            &req.last_name.unwrap_or(rl),
            &title,
            dept,
            &loc,
            hire_date,
            "nordlys.example",
        );
        if let Some(e) = st.employees.get_mut(&id) {
            if req.email.is_some() {
                e.email = req.email;
            }
            if req.work_email.is_some() {
                e.work_email = req.work_email;
            }
        }
        st.emit(company_uuid, "employee.created", "Employee", &id);
        drop(st);
        if req.onboard.unwrap_or(true) {
            self.onboard(&id)?;
        }
        Ok(id)
    }

    /// Completes onboarding: `employee.onboarded`.
    pub fn onboard(&self, id: &str) -> Result<(), SimError> {
        let mut st = self.state();
        let e = st.employee_mut(id)?;
        e.onboarded = true;
        e.onboarding_status = "onboarding_completed".into();
        let company = e.company_uuid.clone();
        st.emit(&company, "employee.onboarded", "Employee", id);
        Ok(())
    }

    /// Name / email change: `employee.updated`.
    pub fn update_employee(&self, id: &str, p: EmployeePatch) -> Result<(), SimError> {
        let mut st = self.state();
        let e = st.employee_mut(id)?;
        if let Some(v) = p.first_name {
            e.first_name = v;
        }
        if let Some(v) = p.last_name {
            e.last_name = v;
        }
        if let Some(v) = p.preferred_first_name {
            e.preferred_first_name = Some(v).filter(|s| !s.is_empty());
        }
        if let Some(v) = p.email {
            e.email = Some(v).filter(|s| !s.is_empty());
        }
        if let Some(v) = p.work_email {
            e.work_email = Some(v).filter(|s| !s.is_empty());
        }
        let company = e.company_uuid.clone();
        st.emit(&company, "employee.updated", "Employee", id);
        Ok(())
    }

    /// Job title change: `employee_job_compensation.updated` then `employee.updated`.
    pub fn change_title(&self, id: &str, title: &str) -> Result<(), SimError> {
        let mut st = self.state();
        let e = st.employee_mut(id)?;
        let job = e.primary_job_mut().ok_or_else(|| SimError::Invalid("employee has no job".into()))?;
        job.title = title.to_owned();
        let job_uuid = job.uuid.clone();
        let company = e.company_uuid.clone();
        st.emit(&company, "employee_job_compensation.updated", "EmployeeJobCompensation", &job_uuid);
        st.emit(&company, "employee.updated", "Employee", id);
        Ok(())
    }

    /// Department move: `employee.updated` (there is no Department event type).
    pub fn change_department(&self, id: &str, department_uuid: &str) -> Result<(), SimError> {
        let mut st = self.state();
        if !st.departments.contains_key(department_uuid) {
            return Err(SimError::NotFound(format!("department {department_uuid}")));
        }
        let e = st.employee_mut(id)?;
        e.department_uuid = Some(department_uuid.to_owned());
        let company = e.company_uuid.clone();
        st.emit(&company, "employee.updated", "Employee", id);
        Ok(())
    }

    /// Transfer to another office: new work address (`employee.work_address.created`,
    /// and `.updated` for the one it supersedes), job location
    /// (`employee_job_compensation.updated`) and `employee.updated`.
    pub fn transfer(
        &self,
        id: &str,
        location_uuid: &str,
        effective_date: Option<NaiveDate>,
    ) -> Result<(), SimError> {
        let mut st = self.state();
        if !st.locations.contains_key(location_uuid) {
            return Err(SimError::NotFound(format!("location {location_uuid}")));
        }
        let date = effective_date.unwrap_or_else(|| st.today());
        let wa_uuid = new_uuid(&mut st);
        let e = st.employee_mut(id)?;
        let previous = e.work_addresses.last().map(|w| w.uuid.clone());
        e.work_addresses.push(WorkAddress {
            uuid: wa_uuid.clone(),
            location_uuid: location_uuid.to_owned(),
            effective_date: date,
        });
        let job_uuid = e.primary_job_mut().map(|j| {
            j.location_uuid = location_uuid.to_owned();
            j.uuid.clone()
        });
        let company = e.company_uuid.clone();
        st.emit(&company, "employee.work_address.created", "WorkAddress", &wa_uuid);
        if let Some(prev) = previous {
            st.emit(&company, "employee.work_address.updated", "WorkAddress", &prev);
        }
        if let Some(job) = job_uuid {
            st.emit(&company, "employee_job_compensation.updated", "EmployeeJobCompensation", &job);
        }
        st.emit(&company, "employee.updated", "Employee", id);
        Ok(())
    }

    /// Termination with `effective_date` = the last day of work (§2.5):
    /// `employee.terminated` now; `employee.terminated_effective` (the App Integrations
    /// spelling, §1.5) at 12:00 AM Pacific the day after the last day, at once when that
    /// moment has passed. Without a date the last day is yesterday (Pacific), so the
    /// termination is effective at once.
    pub fn terminate(&self, id: &str, effective_date: Option<NaiveDate>) -> Result<(), SimError> {
        let mut st = self.state();
        let today = st.pacific_today();
        let date = effective_date.unwrap_or(today - chrono::Duration::days(1));
        let t_uuid = new_uuid(&mut st);
        let e = st.employee_mut(id)?;
        if e.terminated {
            return Err(SimError::Invalid("employee is already terminated".into()));
        }
        e.terminations.push(Termination {
            uuid: t_uuid,
            effective_date: date,
            active: false,
            run_termination_payroll: false,
        });
        e.rehire = None;
        let company = e.company_uuid.clone();
        st.emit(&company, "employee.terminated", "Employee", id);
        let effective_on = date + chrono::Duration::days(1);
        if effective_on <= today {
            st.make_effective(id, true);
        } else {
            st.pending_effective.push((effective_on, id.to_owned(), true));
        }
        Ok(())
    }

    /// Rehire: `employee.rehired`; `employee.rehire_effective` when the date comes.
    pub fn rehire(&self, id: &str, effective_date: Option<NaiveDate>) -> Result<(), SimError> {
        let mut st = self.state();
        let today = st.pacific_today();
        let date = effective_date.unwrap_or(today);
        let e = st.employee_mut(id)?;
        if !e.terminated {
            return Err(SimError::Invalid("only terminated employees can be rehired".into()));
        }
        e.rehire = Some(Rehire { effective_date: date, active: false });
        if let Some(j) = e.primary_job_mut() {
            j.hire_date = date;
        }
        let company = e.company_uuid.clone();
        st.emit(&company, "employee.rehired", "Employee", id);
        if date <= today {
            st.make_effective(id, false);
        } else {
            st.pending_effective.push((date, id.to_owned(), false));
        }
        Ok(())
    }

    /// Office edit (or deactivation): `location.updated`.
    pub fn edit_location(&self, id: &str, p: LocationPatch) -> Result<(), SimError> {
        let mut st = self.state();
        let now = st.now().format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string();
        let l = st.locations.get_mut(id).ok_or_else(|| SimError::NotFound(format!("location {id}")))?;
        if let Some(v) = p.street_1 {
            l.street_1 = v;
        }
        if let Some(v) = p.street_2 {
            l.street_2 = Some(v).filter(|s| !s.is_empty());
        }
        if let Some(v) = p.city {
            l.city = v;
        }
        if let Some(v) = p.zip {
            l.zip = v;
        }
        if let Some(v) = p.phone_number {
            l.phone_number = v;
        }
        if let Some(v) = p.active {
            l.active = v;
        }
        l.updated_at = now;
        let company = l.company_uuid.clone();
        st.emit(&company, "location.updated", "Location", id);
        Ok(())
    }

    /// The next `n` events are recorded (and listed by `/v1/events`) but never
    /// delivered by webhook: drift for reconcile to find.
    pub fn drop_next_webhooks(&self, n: u32) {
        self.state().drop_next_webhooks += n;
    }

    /// Revokes a grant: its tokens answer 401 and its refresh token `invalid_grant`.
    pub fn revoke_grant(&self, grant_id: &str) -> Result<(), SimError> {
        let mut st = self.state();
        let g = st.grants.get_mut(grant_id).ok_or_else(|| SimError::NotFound(format!("grant {grant_id}")))?;
        g.revoked = true;
        Ok(())
    }

    /// Expires the access tokens of `grant` (all grants when `None`).
    pub fn expire_tokens(&self, grant: Option<&str>) {
        let mut st = self.state();
        let past = st.now() - chrono::Duration::seconds(1);
        for t in st.access_tokens.values_mut() {
            if grant.is_none_or(|g| g == t.grant_id) {
                t.expires_at = past;
            }
        }
    }

    /// Moves the simulated clock forward (effective-dated events fire, tokens expire).
    pub fn advance_clock(&self, by: Duration) {
        let mut st = self.state();
        st.clock.advance(by);
        st.process_effective_dates();
    }

    /// Gusto's window for `grant` is exhausted for `dur` (as when another client of the
    /// same grant used it up): every request of the grant is answered 429 with
    /// `Retry-After` = the whole seconds left and `X-RateLimit-Remaining: 0`, "until the
    /// violating window closes" (reference §4), then served again. Unlike a fault rule
    /// of n 429s, a client that waits what `Retry-After` said is not refused again.
    pub fn throttle_grant(&self, grant: &str, dur: Duration) {
        let until = tokio::time::Instant::now() + dur;
        let mut st = self.state();
        let t = st.throttled.entry(grant.to_owned()).or_insert(until);
        *t = (*t).max(until);
    }

    /// Changes the app's minimum API version at runtime (as when Gusto raises it in the
    /// Developer Portal): a version older than it is answered 406 `invalid_api_version`
    /// until it is set back with `None` (then [`crate::SimConfig::min_api_version`] applies).
    pub fn set_min_api_version(&self, version: Option<&str>) {
        self.state().min_api_version = version.map(str::to_owned);
    }

    pub fn set_faults(&self, rules: Vec<FaultRule>) {
        self.state().faults = rules;
    }

    pub fn add_fault(&self, rule: FaultRule) {
        self.state().faults.push(rule);
    }

    pub fn clear_faults(&self) {
        self.state().faults.clear();
    }

    /// Changes duplicate / reorder behaviour of webhook delivery at runtime.
    pub fn set_webhook_behaviour(&self, duplicate_rate: f64, reorder_max_delay: Duration) {
        let mut st = self.state();
        st.webhook_cfg.duplicate_rate = duplicate_rate.clamp(0.0, 1.0);
        st.webhook_cfg.reorder_max_delay = reorder_max_delay;
    }

    /// Changes the share of 2xx webhook answers treated as lost (the delivery is retried).
    pub fn set_lost_ack_rate(&self, rate: f64) {
        self.state().webhook_cfg.lost_ack_rate = rate.clamp(0.0, 1.0);
    }

    /// Issues an authorisation code for `company_uuid` as `/oauth/authorize` would.
    pub fn issue_code(&self, company_uuid: &str, redirect_uri: &str) -> Result<String, SimError> {
        let mut st = self.state();
        if !st.companies.iter().any(|c| c.uuid == company_uuid) {
            return Err(SimError::NotFound(format!("company {company_uuid}")));
        }
        let code = st.random_token();
        let expires_at = st.now() + chrono::Duration::minutes(10);
        st.codes.insert(
            code.clone(),
            AuthCode { company_uuid: company_uuid.into(), redirect_uri: redirect_uri.into(), expires_at },
        );
        Ok(code)
    }

    /// Everything, as JSON (tokens excluded).
    pub fn state_json(&self) -> Value {
        let st = self.state();
        let mut employees: Vec<Value> = st.employees.values().map(|e| st.employee_json(e)).collect();
        employees.sort_by_key(|e| e["uuid"].as_str().map(str::to_owned));
        let mut locations: Vec<Value> = st.locations.values().map(Location::to_json).collect();
        locations.sort_by_key(|l| l["uuid"].as_str().map(str::to_owned));
        let mut departments: Vec<Value> = st.departments.values().map(|d| st.department_json(d)).collect();
        departments.sort_by_key(|d| d["uuid"].as_str().map(str::to_owned));
        json!({
            "now": st.now().to_rfc3339(),
            "companies": st.companies,
            "employees": employees,
            "locations": locations,
            "departments": departments,
            "events": st.events,
            "subscriptions": st.subscriptions.iter().map(Subscription::to_json).collect::<Vec<_>>(),
            "grants": st.grants.values().collect::<Vec<_>>(),
            "faults": st.faults,
            "drop_next_webhooks": st.drop_next_webhooks,
            "deliveries": st.deliveries,
            "refresh_counts": st.refresh_counts,
            "rate_limited": st.rate_limited,
            "request_counts": st.arrivals.iter().map(|(g, v)| (g.clone(), v.len())).collect::<std::collections::HashMap<_, _>>(),
        })
    }
}

fn c_first(v: &[String]) -> Option<String> {
    v.first().cloned()
}

/// Fires effective-dated events as real time passes (once per second).
pub(crate) async fn effective_date_ticker(sim: Weak<Sim>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(sim) = sim.upgrade() else { return };
        sim.state().process_effective_dates();
    }
}

/// The US Pacific calendar day of `t`: PDT (UTC-7) from the second Sunday of March,
/// 2:00 local, to the first Sunday of November, 2:00 local; PST (UTC-8) otherwise.
pub(crate) fn pacific_date(t: DateTime<Utc>) -> NaiveDate {
    use chrono::{Datelike, NaiveTime, Weekday};
    let year = t.year();
    let nth_sunday = |month: u32, n: u8| {
        NaiveDate::from_weekday_of_month_opt(year, month, Weekday::Sun, n).unwrap_or_default()
    };
    let at = |d: NaiveDate, utc_hour: u32| {
        d.and_time(NaiveTime::from_hms_opt(utc_hour, 0, 0).unwrap_or_default()).and_utc()
    };
    // 2:00 PST = 10:00 UTC; 2:00 PDT = 09:00 UTC.
    let dst = t >= at(nth_sunday(3, 2), 10) && t < at(nth_sunday(11, 1), 9);
    let offset = if dst { 7 } else { 8 };
    (t - chrono::Duration::hours(offset)).date_naive()
}

#[cfg(test)]
mod pacific_tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn pacific_day_boundaries() {
        // Winter: 07:59 UTC is still the previous day (PST).
        let t = Utc.with_ymd_and_hms(2026, 12, 2, 7, 59, 0).unwrap();
        assert_eq!(pacific_date(t), NaiveDate::from_ymd_opt(2026, 12, 1).unwrap());
        let t = Utc.with_ymd_and_hms(2026, 12, 2, 8, 0, 0).unwrap();
        assert_eq!(pacific_date(t), NaiveDate::from_ymd_opt(2026, 12, 2).unwrap());
        // Summer: midnight PDT is 07:00 UTC.
        let t = Utc.with_ymd_and_hms(2026, 7, 2, 6, 59, 0).unwrap();
        assert_eq!(pacific_date(t), NaiveDate::from_ymd_opt(2026, 7, 1).unwrap());
        let t = Utc.with_ymd_and_hms(2026, 7, 2, 7, 0, 0).unwrap();
        assert_eq!(pacific_date(t), NaiveDate::from_ymd_opt(2026, 7, 2).unwrap());
    }
}
