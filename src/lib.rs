//! socialgate: a forwarding HTTP/HTTPS proxy that enforces per-group
//! social-platform policy and measures how social platforms are used.
pub mod activetime;
pub mod event;
pub mod pseudonym;
pub mod report;
