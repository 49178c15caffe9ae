//! The one integration-test entry: the real `vellum` binary, a real server process,
//! real profile directories. Regression tests are named after the issue they cover.

mod harness;

mod binding;
mod chat;
mod crash;
mod devices;
mod directory;
mod escape;
mod habits;
mod files;
mod membership;
mod monitor;
mod receipts;
mod records;
mod restore;
mod roles;
mod rich;
mod secrets;
mod timers;
mod witness;
