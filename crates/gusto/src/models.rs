//! Typed models of the Gusto objects a read-only sync needs.
//!
//! Decoding is lenient on purpose: unknown fields are ignored (Gusto adds fields in
//! new versions), optional strings and dates tolerate `null`, a missing key and `""`
//! (integrators see all three), and unknown enum values never fail a decode.

use chrono::NaiveDate;
use serde::{Deserialize, Deserializer, Serialize};

/// Lenient decoders shared by the models.
pub mod lenient {
    use super::*;

    /// `null`, missing or `""` -> `None`.
    pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let v: Option<String> = Option::deserialize(d)?;
        Ok(v.filter(|s| !s.trim().is_empty()))
    }

    /// `null`, missing, `""` or an unparsable value -> `None`; `YYYY-MM-DD` (optionally
    /// followed by a time part) -> the date.
    pub fn opt_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
        let v: Option<serde_json::Value> = Option::deserialize(d)?;
        Ok(match v {
            Some(serde_json::Value::String(s)) => {
                let s = s.trim();
                let head = s.get(..10).unwrap_or(s);
                NaiveDate::parse_from_str(head, "%Y-%m-%d").ok()
            }
            _ => None,
        })
    }

    /// `null` or missing -> `false`.
    pub fn bool_or_false<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        Ok(Option::<bool>::deserialize(d)?.unwrap_or(false))
    }

    /// `null` or missing -> empty vector.
    pub fn vec_or_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
    }
}

use lenient::{bool_or_false, opt_date, opt_string, vec_or_empty};

/// `GET /v1/employees/{id}` and the items of the company employee list.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Employee {
    pub uuid: String,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    #[serde(default, deserialize_with = "opt_string")]
    pub middle_initial: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub preferred_first_name: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub work_email: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub company_uuid: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub manager_uuid: Option<String>,
    /// Opaque optimistic-concurrency token; NOT a change detector (read-only fields
    /// such as `terminated` change without bumping it).
    #[serde(default, deserialize_with = "opt_string")]
    pub version: Option<String>,
    /// Department title.
    #[serde(default, deserialize_with = "opt_string")]
    pub department: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub department_uuid: Option<String>,
    #[serde(default, deserialize_with = "bool_or_false")]
    pub terminated: bool,
    #[serde(default, deserialize_with = "bool_or_false")]
    pub onboarded: bool,
    #[serde(default, deserialize_with = "opt_string")]
    pub onboarding_status: Option<String>,
    #[serde(default, deserialize_with = "vec_or_empty")]
    pub jobs: Vec<Job>,
    #[serde(default, deserialize_with = "vec_or_empty")]
    pub terminations: Vec<Termination>,
    #[serde(default, deserialize_with = "opt_date")]
    pub date_of_birth: Option<NaiveDate>,
    #[serde(default, deserialize_with = "opt_string")]
    pub phone: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub employee_code: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "opt_date")]
    pub hired_at: Option<NaiveDate>,
    #[serde(default, deserialize_with = "opt_string")]
    pub current_employment_status: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub payment_method: Option<String>,
    #[serde(default, deserialize_with = "bool_or_false")]
    pub historical: bool,
}

impl Employee {
    /// The primary job, or the first one when none is flagged primary.
    pub fn primary_job(&self) -> Option<&Job> {
        self.jobs.iter().find(|j| j.primary).or_else(|| self.jobs.first())
    }
}

/// An entry of `Employee.jobs`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Job {
    pub uuid: String,
    #[serde(default, deserialize_with = "opt_string")]
    pub version: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub employee_uuid: Option<String>,
    #[serde(default, deserialize_with = "opt_date")]
    pub hire_date: Option<NaiveDate>,
    #[serde(default, deserialize_with = "opt_string")]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "bool_or_false")]
    pub primary: bool,
    #[serde(default, deserialize_with = "opt_string")]
    pub location_uuid: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub payment_unit: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub rate: Option<String>,
    /// Only with scope `compensations:read`.
    #[serde(default, deserialize_with = "opt_string")]
    pub current_compensation_uuid: Option<String>,
    /// Only with scope `compensations:read`; just the ids are kept.
    #[serde(default, deserialize_with = "vec_or_empty")]
    pub compensations: Vec<UuidRef>,
}

/// `GET /v1/employees/{id}/terminations` item and `Employee.terminations`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Termination {
    pub uuid: String,
    #[serde(default, deserialize_with = "opt_string")]
    pub version: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub employee_uuid: Option<String>,
    /// Whether the termination has gone into effect.
    #[serde(default, deserialize_with = "bool_or_false")]
    pub active: bool,
    #[serde(default, deserialize_with = "bool_or_false")]
    pub cancelable: bool,
    /// Last day of work.
    #[serde(default, deserialize_with = "opt_date")]
    pub effective_date: Option<NaiveDate>,
    #[serde(default, deserialize_with = "bool_or_false")]
    pub run_termination_payroll: bool,
}

/// A company location (office).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Location {
    pub uuid: String,
    #[serde(default, deserialize_with = "opt_string")]
    pub version: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub company_uuid: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub phone_number: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub street_1: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub street_2: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub city: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub state: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub zip: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub country: Option<String>,
    /// Missing `active` means active: inactive locations say so explicitly.
    #[serde(default = "default_true", deserialize_with = "bool_or_true")]
    pub active: bool,
    #[serde(default, deserialize_with = "opt_string")]
    pub created_at: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub updated_at: Option<String>,
}

fn default_true() -> bool {
    true
}

fn bool_or_true<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(true))
}

/// A reference `{"uuid": ...}` inside a department.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct UuidRef {
    #[serde(default)]
    pub uuid: String,
}

/// A company department.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Department {
    pub uuid: String,
    #[serde(default, deserialize_with = "opt_string")]
    pub version: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub company_uuid: Option<String>,
    #[serde(default)]
    pub title: String,
    #[serde(default, deserialize_with = "vec_or_empty")]
    pub employees: Vec<UuidRef>,
}

/// `GET /v1/employees/{id}/work_addresses` item. The one with `active: true` is the
/// authoritative current work location.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct WorkAddress {
    pub uuid: String,
    #[serde(default, deserialize_with = "opt_string")]
    pub version: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub employee_uuid: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub location_uuid: Option<String>,
    #[serde(default, deserialize_with = "opt_date")]
    pub effective_date: Option<NaiveDate>,
    #[serde(default, deserialize_with = "bool_or_false")]
    pub active: bool,
    #[serde(default, deserialize_with = "opt_string")]
    pub street_1: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub street_2: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub city: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub state: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub zip: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub country: Option<String>,
}

/// An item of `GET /v1/events`, and the body of a webhook delivery (same thin shape).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Event {
    pub uuid: String,
    #[serde(default)]
    pub event_type: String,
    /// Always `Company` per Gusto's docs; kept as a string to tolerate change.
    #[serde(default, deserialize_with = "opt_string")]
    pub resource_type: Option<String>,
    /// The company UUID.
    #[serde(default, deserialize_with = "opt_string")]
    pub resource_uuid: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub entity_type: Option<String>,
    #[serde(default, deserialize_with = "opt_string")]
    pub entity_uuid: Option<String>,
    /// Seconds since the Unix epoch (1 s resolution: ties happen).
    #[serde(default)]
    pub timestamp: Option<i64>,
}

/// The webhook body is the same thin envelope as an [`Event`].
pub type WebhookEvent = Event;

/// `resource` / `resource_owner` of [`TokenInfo`].
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct TokenResource {
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "opt_string")]
    pub uuid: Option<String>,
}

/// `GET /v1/token_info`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct TokenInfo {
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub resource: Option<TokenResource>,
    #[serde(default)]
    pub resource_owner: Option<TokenResource>,
}

/// A webhook subscription. `status` is a string: the response enum may grow.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct WebhookSubscription {
    pub uuid: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub status: String,
    #[serde(default, deserialize_with = "vec_or_empty")]
    pub subscription_types: Vec<String>,
}

/// Fields a sync may write back with `PUT /v1/employees/{id}`. `None` = leave as is.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EmployeeUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub middle_initial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub work_email: Option<String>,
}

/// Query of `GET /v1/events`.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub starting_after_uuid: Option<String>,
    pub resource_uuid: Option<String>,
    pub event_type: Option<String>,
    /// 1..=100; Gusto defaults to 25.
    pub limit: Option<u32>,
    pub descending: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerates_null_missing_and_empty() {
        let e: Employee = serde_json::from_str(
            r#"{"uuid":"u","first_name":"A","last_name":"B","email":"","work_email":null,
                "date_of_birth":"","hired_at":null,"jobs":[{"uuid":"j","hire_date":"",
                "title":null,"primary":true}],"terminations":null,"brand_new_field":{"x":1}}"#,
        )
        .expect("lenient decode");
        assert_eq!(e.email, None);
        assert_eq!(e.work_email, None);
        assert_eq!(e.date_of_birth, None);
        assert_eq!(e.hired_at, None);
        assert!(e.terminations.is_empty());
        assert_eq!(e.primary_job().map(|j| j.uuid.as_str()), Some("j"));
        assert_eq!(e.jobs[0].hire_date, None);
    }

    #[test]
    fn parses_dates() {
        let t: Termination =
            serde_json::from_str(r#"{"uuid":"t","effective_date":"2024-01-15","active":true}"#)
                .expect("decode");
        assert_eq!(t.effective_date, NaiveDate::from_ymd_opt(2024, 1, 15));
    }

    /// Reference V.2/V.5: what Gusto added after 2025-06-15 decodes without a change.
    #[test]
    fn decodes_the_2026_shapes() {
        // Employee with the Aug 2026 `warnings` and the 2025-11-15 home-address shape
        // (no `id`, `effective_from`, `effective_to`; history entries carry `effective_date`).
        let e: Employee = serde_json::from_str(
            r#"{"uuid":"u","first_name":"A","last_name":"B",
                "warnings":[{"key":"geocode_error","message":"Address could not be verified"}],
                "current_home_address":{"uuid":"h","street_1":"Storgata 1","street_2":null,
                    "city":"Oslo","state":"NO","zip":"0155","country":"NOR","active":true},
                "all_home_addresses":[{"uuid":"h","street_1":"Storgata 1","city":"Oslo",
                    "state":"NO","zip":"0155","country":"NOR","active":true,"effective_date":"2026-01-01"}]}"#,
        )
        .expect("employee");
        assert_eq!(e.first_name, "A");
        let l: Location = serde_json::from_str(
            r#"{"uuid":"l","street_1":"x","city":"Oslo","active":true,"warnings":[{"message":"zip?"}]}"#,
        )
        .expect("location");
        assert!(l.active);
        // New subscription types in answers (PayrollSync in 2026-02-01, TimeSheetsBatch Oct 2026).
        let s: WebhookSubscription = serde_json::from_str(
            r#"{"uuid":"s","url":"https://x","status":"verified",
                "subscription_types":["Employee","PayrollSync","TimeSheetsBatch"]}"#,
        )
        .expect("subscription");
        assert_eq!(s.subscription_types.len(), 3);
        // New event types are plain strings.
        for t in ["company.suspended_effective", "payroll.deleted", "time_sheets_batch.completed"] {
            let body = format!(
                r#"{{"uuid":"e","event_type":"{t}","resource_type":"Company","resource_uuid":"c",
                    "entity_type":"Payroll","entity_uuid":"p","timestamp":1780000000}}"#
            );
            let ev: Event = serde_json::from_str(&body).expect("event");
            assert_eq!(ev.event_type, t);
        }
    }
}
