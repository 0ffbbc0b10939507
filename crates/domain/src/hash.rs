//! Content hashes: the change detectors of the pipeline.
//!
//! Both hashes are lowercase hex SHA-256 over the **protobuf encoding** of a message. That
//! encoding is canonical for our purposes because prost writes a given message value the same
//! way every time:
//!
//! * fields are written in ascending field-number order;
//! * proto3 scalars holding their default value (`""`, `0`, enum `0`) are not written at all, so
//!   "absent" and "empty" hash alike, and adding a new field to the `.proto` does not change
//!   the hash of messages that leave it empty;
//! * our messages have no `map` fields (whose order would be unspecified) and prost keeps no
//!   unknown fields, so nothing decoded from an older or newer writer leaks into the bytes.
//!
//! What is *not* promised: stability across a change of the message's field numbers or types.
//! The `.proto` evolution rules (never reuse a number) keep that from happening silently; if it
//! ever did happen, every hash changes once and each employee is rewritten once, never twice.

use mlc_proto::v1::{CommandKind, EmployeeContent, VismaCommand, VismaEmployeeFields};
use mlc_proto::Message;
use sha2::{Digest, Sha256};

/// Hex SHA-256 of the protobuf encoding of `content`.
///
/// This is the `EmployeeSnapshot.content_hash` the projector stores, and what decides whether
/// a fetched employee is new: two fetches with equal content hash alike, whatever Gusto's
/// opaque `version`, fetch time or causing events were.
pub fn content_hash(content: &EmployeeContent) -> String {
    sha256_hex(&content.encode_to_vec())
}

/// Hex SHA-256 of a command's target: the protobuf encoding of a `VismaCommand` that holds only
/// `kind` and `fields`.
///
/// Everything else on a command (ids, mapping revision, sequence numbers, trace, tenant) is
/// left out on purpose: the writer compares this hash with the last one it applied for the
/// employee, so only a change of what Visma should hold may produce a different value.
pub fn command_hash(kind: CommandKind, fields: &VismaEmployeeFields) -> String {
    let target = VismaCommand { kind: kind as i32, fields: Some(fields.clone()), ..VismaCommand::default() };
    sha256_hex(&target.encode_to_vec())
}

/// Lowercase hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hash_is_hex_sha256_of_the_encoding() {
        let content = EmployeeContent { first_name: "Ada".into(), ..EmployeeContent::default() };
        let hash = content_hash(&content);
        assert_eq!(hash.len(), 64);
        assert_eq!(hash, sha256_hex(&content.encode_to_vec()));
        assert_eq!(hash, content_hash(&content.clone()));
    }

    #[test]
    fn empty_content_hashes_the_empty_encoding() {
        // sha256("") - an all-default message encodes to zero bytes.
        assert_eq!(
            content_hash(&EmployeeContent::default()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn command_hash_depends_on_kind_and_fields() {
        let fields = VismaEmployeeFields { employee_cd: "G1".into(), ..VismaEmployeeFields::default() };
        let upsert = command_hash(CommandKind::Upsert, &fields);
        let deactivate = command_hash(CommandKind::Deactivate, &fields);
        assert_ne!(upsert, deactivate);

        let other = VismaEmployeeFields { employee_cd: "G2".into(), ..fields.clone() };
        assert_ne!(upsert, command_hash(CommandKind::Upsert, &other));
        assert_eq!(upsert, command_hash(CommandKind::Upsert, &fields));
    }
}
