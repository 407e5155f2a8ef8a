//! socialgate's integration tests: one binary, real sockets on 127.0.0.1,
//! real origins and real clients (reqwest, curl).

mod support;

mod forwarding;
