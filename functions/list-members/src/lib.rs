//! `list-members`: `GET /v1/admin/members?limit=&cursor=`, a workspace admin's member list.
pub mod handler;
pub use handler::handle;
