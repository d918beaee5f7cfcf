//! agora's integration tests: the real binary, the real go client, a local "public" proxy built
//! from fixture git repositories, all on loopback.
//!
//! One test binary (faster to build and link than one per file); modules mirror features.

mod support;

mod access;
mod bad_input;
mod ceph;
mod cli;
mod deployment_shapes;
mod faults;
mod filter;
mod http_features;
mod migrate;
mod modes;
mod operations;
mod own_sumdb;
mod packaging;
mod private;
mod private_subdir;
mod replicas;
mod secrets;
mod serving;
mod sha256;
mod sumdb;
mod telemetry;
mod toolchain;
mod upstream_chain;
mod web_ui;
