//! socialgate: a forwarding HTTP/HTTPS proxy that enforces per-group
//! social-platform policy and measures how social platforms are used.
pub mod event;
