//! Protobuf messages of the ml-connector streams, generated from `proto/mlconnector/v1`.

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/mlconnector.v1.rs"));
}

pub use prost::{Message, Name};
