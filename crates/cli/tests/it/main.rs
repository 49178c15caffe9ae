//! The one integration-test entry: the real `vellum` binary, a real server process,
//! real profile directories. Regression tests are named after the issue they cover.

mod harness;

mod app;
mod app_browser;
mod app_rest;
mod bench;
mod binding;
mod chat;
mod console;
mod crash;
mod devices;
mod directory;
mod escape;
mod failover;
mod files;
mod foia;
mod habits;
mod membership;
mod monitor;
mod multinode;
mod office;
mod production;
mod receipts;
mod records;
mod restore;
mod rich;
mod roles;
mod search;
mod secrets;
mod timers;
mod witness;
