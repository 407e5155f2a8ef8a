//! socialgate's integration tests: one binary, real sockets on 127.0.0.1,
//! real origins and real clients (reqwest, curl).

mod support;

mod access_requests;
mod activities;
mod admin_ops;
mod agreement;
mod bad_input;
mod browser;
mod budget;
mod cli;
mod deploy;
mod dns;
mod docs;
mod faults;
mod forwarding;
mod hostile;
mod identity;
mod inspection;
mod limits;
mod log_faults;
mod observability;
mod over_time;
mod pac;
mod parent;
mod policy_rules;
mod protocol;
mod reload;
mod report_log;
mod report_privacy;
mod report_requests;
mod reporting;
mod safety;
mod schema;
mod smuggling;
mod streaming;
mod transparency;
mod transparent;
mod under_load;
mod warn;
mod websocket;
