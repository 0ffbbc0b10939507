//! Commands with a module of their own (the older ones still live in `ops`).

pub mod check;
pub mod connect;
pub mod mapping;
pub mod retry;
pub mod sim;
