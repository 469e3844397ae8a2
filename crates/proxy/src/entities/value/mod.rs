//! The value entity: `driver.rs` is the task of one active entity.

pub(crate) mod driver;
