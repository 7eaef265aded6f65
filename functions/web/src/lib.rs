//! `web`: serves the pages and their assets. No token is needed to load them: the page's script
//! calls the API, which authenticates the browser by its `__Host-` session cookie. The files are
//! embedded at build time (`assets/`), so a deploy needs no front-end build step.
pub mod handler;
pub use handler::{handle, CSP};
