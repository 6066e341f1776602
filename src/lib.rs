//! pgstorage: object storage whose metadata and permissions live in PostgreSQL.
//!
//! Requests flow one way: a front (`http`, `s3`) turns a protocol call into a core call made on behalf
//! of an [`auth::Identity`]; the core (`core`) coordinates the database (`db`) and the byte store
//! (`bytes`). Nothing below `core` knows about HTTP.

pub mod auth;
pub mod bytes;
pub mod cli;
pub mod config;
pub mod core;
pub mod db;
pub mod http;
pub mod resumable;
pub mod s3;
pub mod transform;
