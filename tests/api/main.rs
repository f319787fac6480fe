//! Integration tests: one binary, real PostgreSQL, real WebSocket clients.

mod helpers;

mod bad_input;
mod cluster;
mod destruction;
mod embedded;
mod errors;
mod faults;
mod flow;
mod hardening;
mod history;
mod javascript;
mod lifecycle;
mod reliability;
mod rest;
mod security;
mod web;
