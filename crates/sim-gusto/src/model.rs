//! In-memory data of the simulator and its JSON renderings (spec field names).

use chrono::NaiveDate;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// 32-hex opaque version computed from the updatable attributes, like Gusto's.
pub fn version_of(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0x1f]);
    }
    hex::encode(&h.finalize()[..16])
}

#[derive(Debug, Clone, Serialize)]
pub struct Company {
    pub uuid: String,
    pub name: String,
    pub admin_uuid: String,
    pub employees: Vec<String>,
    pub locations: Vec<String>,
    pub departments: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Location {
    pub uuid: String,
    pub company_uuid: String,
    pub phone_number: String,
    pub street_1: String,
    pub street_2: Option<String>,
    pub city: String,
    pub state: String,
    pub zip: String,
    pub country: String,
    pub mailing_address: bool,
    pub filing_address: bool,
    pub active: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl Location {
    pub fn version(&self) -> String {
        version_of(&[
            &self.street_1,
            self.street_2.as_deref().unwrap_or(""),
            &self.city,
            &self.state,
            &self.zip,
            &self.country,
            &self.phone_number,
            &self.mailing_address.to_string(),
            &self.filing_address.to_string(),
            &self.active.to_string(),
        ])
    }

    pub fn to_json(&self) -> Value {
        json!({
            "uuid": self.uuid, "version": self.version(), "company_uuid": self.company_uuid,
            "phone_number": self.phone_number, "street_1": self.street_1, "street_2": self.street_2,
            "city": self.city, "state": self.state, "zip": self.zip, "country": self.country,
            "mailing_address": self.mailing_address, "filing_address": self.filing_address,
            "created_at": self.created_at, "updated_at": self.updated_at,
            "active": self.active, "inactive": !self.active,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Department {
    pub uuid: String,
    pub company_uuid: String,
    pub title: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub uuid: String,
    pub title: String,
    pub location_uuid: String,
    pub primary: bool,
    pub hire_date: NaiveDate,
    pub rate: String,
    pub payment_unit: String,
    pub compensation_uuid: String,
}

impl Job {
    pub fn version(&self) -> String {
        version_of(&[&self.title, &self.hire_date.to_string(), &self.location_uuid])
    }

    pub fn to_json(&self, employee_uuid: &str) -> Value {
        json!({
            "uuid": self.uuid, "version": self.version(), "employee_uuid": employee_uuid,
            "hire_date": self.hire_date.to_string(), "title": self.title, "primary": self.primary,
            "rate": self.rate, "payment_unit": self.payment_unit,
            "current_compensation_uuid": self.compensation_uuid,
            "two_percent_shareholder": false, "state_wc_covered": null, "state_wc_class_code": null,
            "location_uuid": self.location_uuid,
            "compensations": [{
                "uuid": self.compensation_uuid,
                "version": version_of(&[&self.rate, &self.payment_unit, &self.hire_date.to_string()]),
                "job_uuid": self.uuid, "employee_uuid": employee_uuid, "rate": self.rate,
                "payment_unit": self.payment_unit, "flsa_status": "Exempt",
                "effective_date": self.hire_date.to_string(), "adjust_for_minimum_wage": false,
                "minimum_wages": [],
            }],
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Termination {
    pub uuid: String,
    pub effective_date: NaiveDate,
    pub active: bool,
    pub run_termination_payroll: bool,
}

impl Termination {
    pub fn to_json(&self, employee_uuid: &str) -> Value {
        json!({
            "uuid": self.uuid,
            "version": version_of(&[&self.effective_date.to_string(), &self.run_termination_payroll.to_string()]),
            "employee_uuid": employee_uuid, "active": self.active,
            "cancelable": !self.active && !self.run_termination_payroll,
            "effective_date": self.effective_date.to_string(),
            "run_termination_payroll": self.run_termination_payroll,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkAddress {
    pub uuid: String,
    pub location_uuid: String,
    pub effective_date: NaiveDate,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rehire {
    pub effective_date: NaiveDate,
    pub active: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Employee {
    pub uuid: String,
    pub company_uuid: String,
    pub first_name: String,
    pub middle_initial: Option<String>,
    pub last_name: String,
    pub preferred_first_name: Option<String>,
    pub email: Option<String>,
    pub work_email: Option<String>,
    pub phone: Option<String>,
    pub date_of_birth: Option<NaiveDate>,
    pub employee_code: String,
    pub manager_uuid: Option<String>,
    pub department_uuid: Option<String>,
    pub onboarded: bool,
    pub onboarding_status: String,
    pub terminated: bool,
    pub current_employment_status: String,
    pub jobs: Vec<Job>,
    pub terminations: Vec<Termination>,
    pub work_addresses: Vec<WorkAddress>,
    pub rehire: Option<Rehire>,
}

impl Employee {
    pub fn primary_job(&self) -> Option<&Job> {
        self.jobs.iter().find(|j| j.primary).or_else(|| self.jobs.first())
    }

    pub fn primary_job_mut(&mut self) -> Option<&mut Job> {
        let idx = self.jobs.iter().position(|j| j.primary).unwrap_or(0);
        self.jobs.get_mut(idx)
    }

    /// Terminated, or with a termination scheduled that no rehire supersedes.
    pub fn terminated_or_scheduled(&self) -> bool {
        self.terminated || (self.terminations.iter().any(|t| !t.active) && self.rehire.is_none())
    }

    pub fn version(&self) -> String {
        let jobs: Vec<String> = self.jobs.iter().map(Job::version).collect();
        let dob = self.date_of_birth.map(|d| d.to_string()).unwrap_or_default();
        let mut parts: Vec<&str> = vec![
            &self.first_name,
            self.middle_initial.as_deref().unwrap_or(""),
            &self.last_name,
            self.preferred_first_name.as_deref().unwrap_or(""),
            self.email.as_deref().unwrap_or(""),
            self.work_email.as_deref().unwrap_or(""),
            self.phone.as_deref().unwrap_or(""),
            &dob,
            self.department_uuid.as_deref().unwrap_or(""),
        ];
        parts.extend(jobs.iter().map(String::as_str));
        version_of(&parts)
    }

    pub fn to_json(&self, department_title: Option<&str>) -> Value {
        let hired_at = self.primary_job().map(|j| j.hire_date.to_string());
        json!({
            "uuid": self.uuid, "first_name": self.first_name, "middle_initial": self.middle_initial,
            "last_name": self.last_name, "email": self.email, "company_uuid": self.company_uuid,
            "manager_uuid": self.manager_uuid, "version": self.version(),
            "department": department_title, "department_uuid": self.department_uuid,
            "terminated": self.terminated, "two_percent_shareholder": false,
            "work_email": self.work_email, "onboarded": self.onboarded,
            "onboarding_status": self.onboarding_status,
            "onboarding_documents_config": {"uuid": null, "i9_document": false},
            "jobs": self.jobs.iter().map(|j| j.to_json(&self.uuid)).collect::<Vec<_>>(),
            "eligible_paid_time_off": [],
            "terminations": self.terminations.iter().map(|t| t.to_json(&self.uuid)).collect::<Vec<_>>(),
            "garnishments": [],
            "date_of_birth": self.date_of_birth.map(|d| d.to_string()),
            "has_ssn": true, "ssn": "", "phone": self.phone,
            "preferred_first_name": self.preferred_first_name,
            "payment_method": "Direct Deposit",
            "current_employment_status": self.current_employment_status,
            "historical": false, "employee_code": self.employee_code,
            "title": self.primary_job().map(|j| j.title.clone()).unwrap_or_default(),
            "hired_at": hired_at,
            "flsa_status": "Exempt", "applicable_tax_ids": [],
        })
    }

    pub fn work_address_json(&self, wa: &WorkAddress, active: bool, loc: Option<&Location>) -> Value {
        json!({
            "uuid": wa.uuid, "effective_date": wa.effective_date.to_string(), "active": active,
            "location_uuid": wa.location_uuid, "employee_uuid": self.uuid,
            "version": version_of(&[&wa.location_uuid, &wa.effective_date.to_string()]),
            "street_1": loc.map(|l| l.street_1.clone()).unwrap_or_default(),
            "street_2": loc.and_then(|l| l.street_2.clone()),
            "city": loc.map(|l| l.city.clone()).unwrap_or_default(),
            "state": loc.map(|l| l.state.clone()).unwrap_or_default(),
            "zip": loc.map(|l| l.zip.clone()).unwrap_or_default(),
            "country": loc.map(|l| l.country.clone()).unwrap_or_default(),
        })
    }

    /// Index of the work address active on `today` (latest effective on or before it).
    pub fn active_work_address(&self, today: NaiveDate) -> Option<usize> {
        self.work_addresses
            .iter()
            .enumerate()
            .filter(|(_, w)| w.effective_date <= today)
            .max_by_key(|(i, w)| (w.effective_date, *i))
            .map(|(i, _)| i)
            .or(if self.work_addresses.is_empty() { None } else { Some(0) })
    }
}

/// An event as kept for `GET /v1/events` and delivered by webhook.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Event {
    pub uuid: String,
    pub event_type: String,
    pub resource_type: String,
    pub resource_uuid: String,
    pub entity_type: String,
    pub entity_uuid: String,
    pub timestamp: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Subscription {
    pub uuid: String,
    pub url: String,
    pub status: String,
    pub subscription_types: Vec<String>,
    /// Never rendered by the API (Gusto only POSTs it to the URL).
    pub verification_token: String,
}

impl Subscription {
    pub fn to_json(&self) -> Value {
        json!({"uuid": self.uuid, "url": self.url, "status": self.status, "subscription_types": self.subscription_types})
    }

    /// Which subscription type receives events of `entity_type`.
    pub fn wants(&self, entity_type: &str) -> bool {
        let ty = match entity_type {
            "WorkAddress" | "HomeAddress" => "Employee",
            other => other,
        };
        self.subscription_types.iter().any(|t| t == ty)
    }
}

/// One OAuth authorisation (a chain of rotating tokens), or the system grant.
#[derive(Debug, Clone, Serialize)]
pub struct Grant {
    pub id: String,
    /// `None` for the system (application) grant.
    pub company_uuid: Option<String>,
    pub revoked: bool,
}

#[derive(Debug, Clone)]
pub struct AccessToken {
    pub grant_id: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub revoked: bool,
    /// The refresh token that produced this token: revoked (with its access token) on
    /// the first use of this one, as Doorkeeper does.
    pub previous_refresh: Option<String>,
    pub used: bool,
    /// The refresh token issued together with this access token.
    pub refresh_token: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RefreshToken {
    pub grant_id: String,
    pub revoked: bool,
    pub access_token: String,
}

#[derive(Debug, Clone)]
pub struct AuthCode {
    pub company_uuid: String,
    pub redirect_uri: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// A record of one webhook POST attempt.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub subscription_uuid: String,
    /// `None` for the verification-token POST.
    pub event_uuid: Option<String>,
    pub attempt: u32,
    /// HTTP status, or `None` on timeout / connection failure.
    pub status: Option<u16>,
    pub dropped_on_purpose: bool,
    /// The receiver answered 2xx but the simulator treated the answer as lost
    /// (`WebhookConfig::lost_ack_rate`) and retries the delivery.
    pub ack_lost: bool,
}
