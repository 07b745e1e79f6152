pub mod adapters;
pub mod domain;
pub mod gateway;
pub mod http;
pub mod ports;
pub mod settings;
pub mod ucp;
