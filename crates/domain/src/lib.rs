//! Pure domain logic of ml-connector: content hashes, the per-company mapping file, and the
//! derivation of Visma commands from Gusto employee snapshots.
//!
//! Nothing here does I/O, reads a clock or keeps state. Every function is deterministic in its
//! arguments, which is what makes replaying `EMPLOYEE_STATE` reproduce the same commands (same
//! ids, same hashes) and lets the writer recognise work it already did.
//!
//! * [`content_hash`] / [`command_hash`]: change detectors for snapshots and commands.
//! * [`Mapping`]: the validated mapping file, with its [`Mapping::revision`].
//! * [`map_snapshot`] / [`build_command`]: snapshot -> command or park reason.
//! * [`employee_cd`]: the deterministic Visma employee number.
//! * [`diff_fields`]: which Visma fields differ from the target.

mod country;
mod diff;
mod employee_cd;
mod hash;
mod map;
pub mod mapping;

pub use crate::country::{iso_alpha2, UnknownCountry};
pub use crate::diff::{diff_fields, status_name, FieldChange};
pub use crate::employee_cd::{
    employee_cd, EmployeeCdError, EmployeeCdRule, EmployeeCdRuleError, EmployeeCdStrategy,
};
pub use crate::hash::{command_hash, content_hash};
pub use crate::map::{build_command, command_msg_id, map_snapshot, Mapped, NO_EMAIL_REASON};
pub use crate::mapping::{Mapping, MappingError};
