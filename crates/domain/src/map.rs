//! From an employee snapshot to a Visma command.
//!
//! [`map_snapshot`] is a pure function of the snapshot's `content`, its employee uuid and the
//! mapping: Gusto's opaque version, fetch time, causing events and trace never influence the
//! result. That is what lets a replay of `EMPLOYEE_STATE` reproduce every command exactly, and
//! lets the writer skip an employee whose command hash it already applied.

use mlc_proto::v1::{
    CommandKind, EmployeeContent, EmployeeSnapshot, EmploymentStatus, VismaCommand, VismaEmployeeFields,
    VismaStatus,
};

use crate::country::iso_alpha2;
use crate::employee_cd::employee_cd;
use crate::hash::command_hash;
use crate::mapping::{Mapping, UnmappedAction};

/// Park reason for an employee without any email. Visma's create requires `contact.email`.
pub const NO_EMAIL_REASON: &str = "employee has no email; Visma requires contact.email";

/// The outcome of mapping one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "Command is the common case, moved once per snapshot; a Box would only add indirection"
)]
pub enum Mapped {
    /// The employee can be written.
    Command {
        /// Upsert (active, onboarding) or deactivate (terminated, deleted).
        kind: CommandKind,
        /// The complete target state, also for a deactivation: an employee never created
        /// before can then be created inactive.
        fields: VismaEmployeeFields,
        /// [`command_hash`] of `kind` and `fields`.
        content_hash: String,
    },
    /// The employee cannot be written until someone fixes the mapping or the Gusto data.
    Park {
        /// Operator-facing: names the unmapped or missing Gusto value(s), never personal data
        /// such as names, emails or phone numbers. Several problems are joined with `"; "`.
        reason: String,
    },
}

/// Maps a snapshot to the Visma state the employee should have.
///
/// Rules, in the order they are checked (all problems are reported together when parking):
///
/// * **Status**: active and onboarding -> upsert, `Active`; terminated -> deactivate,
///   `Inactive`; deleted (Gusto deletes only onboarding employees) -> deactivate, `Inactive`.
///   An unspecified status parks: guessing could reactivate a terminated employee.
/// * **Names**: legal `first_name`, `middle_initial` as middle name, `last_name` (required by
///   Visma). `preferred_first_name` is not used: the ERP holds the legal name, which is the one
///   on payroll and expense documents.
/// * **Email**: `work_email`, else the personal `email`; neither parks with
///   [`NO_EMAIL_REASON`].
/// * **Department**: `department_uuid`, then `department_title`, looked up in
///   `[departments]`; unmapped or absent follows `unmapped.department`.
/// * **Location**: the work location's uuid, then city, looked up in `[locations]` for the
///   branch; unmapped or absent follows `unmapped.location`. The address (street_1, zip, city,
///   country as ISO alpha-2) is copied from the work location either way.
/// * **Employee class** from the job title per `[job_titles]`; **calendar** from `[defaults]`.
/// * **Employee number** from `[employee_cd]` (see [`employee_cd`]).
///
/// Text values are trimmed; nothing else about them is changed.
pub fn map_snapshot(snapshot: &EmployeeSnapshot, mapping: &Mapping) -> Mapped {
    let Some(content) = snapshot.content.as_ref() else {
        return Mapped::Park { reason: "snapshot has no employee content".to_owned() };
    };
    let mut problems = Vec::new();

    let (kind, status) = match content.status() {
        EmploymentStatus::Onboarding | EmploymentStatus::Active => (CommandKind::Upsert, VismaStatus::Active),
        EmploymentStatus::Terminated | EmploymentStatus::Deleted => {
            (CommandKind::Deactivate, VismaStatus::Inactive)
        }
        EmploymentStatus::Unspecified => {
            problems.push("employee has no known employment status".to_owned());
            (CommandKind::Unspecified, VismaStatus::Unspecified)
        }
    };

    let last_name = content.last_name.trim();
    if last_name.is_empty() {
        problems.push("employee has no last name; Visma requires contact.lastName".to_owned());
    }
    let email = [&content.work_email, &content.email]
        .into_iter()
        .map(|e| e.trim())
        .find(|e| !e.is_empty())
        .unwrap_or_else(|| {
            problems.push(NO_EMAIL_REASON.to_owned());
            ""
        });

    let department_id = department(content, mapping).unwrap_or_else(|reason| {
        problems.push(reason);
        String::new()
    });
    let branch = branch(content, mapping).unwrap_or_else(|reason| {
        problems.push(reason);
        String::new()
    });

    let location = content.work_location.clone().unwrap_or_default();
    let country_id = iso_alpha2(&location.country).unwrap_or_else(|err| {
        problems.push(err.to_string());
        String::new()
    });

    let employee_cd =
        employee_cd(&snapshot.employee_uuid, &content.employee_code, mapping.employee_cd_rule())
            .unwrap_or_else(|err| {
                problems.push(err.to_string());
                String::new()
            });

    if !problems.is_empty() {
        return Mapped::Park { reason: problems.join("; ") };
    }

    let fields = VismaEmployeeFields {
        employee_cd,
        first_name: content.first_name.trim().to_owned(),
        middle_name: content.middle_initial.trim().to_owned(),
        last_name: last_name.to_owned(),
        email: email.to_owned(),
        phone: content.phone.trim().to_owned(),
        department_id,
        employee_class: mapping.employee_class_for(&content.job_title).to_owned(),
        branch,
        calendar: mapping.defaults().calendar.clone(),
        status: status as i32,
        address_line1: location.street_1.trim().to_owned(),
        postal_code: location.zip.trim().to_owned(),
        city: location.city.trim().to_owned(),
        country_id,
    };
    Mapped::Command { kind, content_hash: command_hash(kind, &fields), fields }
}

/// The Visma department id, or the park reason.
fn department(content: &EmployeeContent, mapping: &Mapping) -> Result<String, String> {
    let (uuid, title) = (content.department_uuid.trim(), content.department_title.trim());
    if let Some(id) = mapping.department_for(uuid, title) {
        return Ok(id.to_owned());
    }
    let fallback = mapping.defaults().department.as_ref();
    match (mapping.unmapped().department, fallback) {
        (UnmappedAction::Default, Some(id)) => Ok(id.clone()),
        _ if uuid.is_empty() && title.is_empty() => {
            Err("employee has no department in Gusto and unmapped.department = \"park\"".to_owned())
        }
        _ => Err(format!(
            "Gusto department {} is not in [departments] and unmapped.department = \"park\"",
            describe(title, uuid)
        )),
    }
}

/// The Visma branch, or the park reason.
fn branch(content: &EmployeeContent, mapping: &Mapping) -> Result<String, String> {
    let (uuid, city) = content.work_location.as_ref().map_or(("", ""), |l| (l.uuid.trim(), l.city.trim()));
    if let Some(target) = mapping.location_for(uuid, city) {
        return Ok(target.branch.clone());
    }
    let fallback = mapping.defaults().branch.as_ref();
    match (mapping.unmapped().location, fallback) {
        (UnmappedAction::Default, Some(branch)) => Ok(branch.clone()),
        _ if uuid.is_empty() && city.is_empty() => {
            Err("employee has no work location in Gusto and unmapped.location = \"park\"".to_owned())
        }
        _ => Err(format!(
            "Gusto work location {} is not in [locations] and unmapped.location = \"park\"",
            describe(city, uuid)
        )),
    }
}

/// `"Consulting" (uuid 56..)`, or whichever half is known.
fn describe(name: &str, uuid: &str) -> String {
    match (name.is_empty(), uuid.is_empty()) {
        (false, false) => format!("{name:?} (uuid {uuid})"),
        (false, true) => format!("{name:?}"),
        (true, _) => format!("with uuid {uuid}"),
    }
}

/// Builds the `VismaCommand` the projector publishes for a snapshot stored at `snapshot_seq`.
///
/// `command_id` is `"<snapshot_seq>-<mapping revision>"`: a redelivered or replayed snapshot
/// under the same mapping gives the same id (and JetStream drops the duplicate), while a new
/// mapping revision gives a new id so the employee is re-evaluated. A parked command carries
/// `parked_reason`, no kind, no fields and no content hash. `webhook_received_at_ms` is left 0:
/// the snapshot does not know it; the caller sets it when it does.
pub fn build_command(
    snapshot: &EmployeeSnapshot,
    snapshot_seq: u64,
    mapping: &Mapping,
    tenant: &str,
) -> VismaCommand {
    let mut command = VismaCommand {
        command_id: format!("{snapshot_seq}-{}", mapping.revision()),
        company_uuid: snapshot.company_uuid.clone(),
        employee_uuid: snapshot.employee_uuid.clone(),
        mapping_revision: mapping.revision().to_owned(),
        source_snapshot_seq: snapshot_seq,
        trace: snapshot.trace.clone(),
        visma_tenant: tenant.to_owned(),
        ..VismaCommand::default()
    };
    match map_snapshot(snapshot, mapping) {
        Mapped::Command { kind, fields, content_hash } => {
            command.kind = kind as i32;
            command.fields = Some(fields);
            command.content_hash = content_hash;
        }
        Mapped::Park { reason } => command.parked_reason = reason,
    }
    command
}

/// The `Nats-Msg-Id` of a command on `VISMA_COMMANDS`: its `command_id`.
pub fn command_msg_id(command: &VismaCommand) -> String {
    command.command_id.clone()
}

#[cfg(test)]
mod tests;
