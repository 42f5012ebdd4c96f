pub mod bitcoind;
pub mod fake_api;
pub mod fixtures;
pub mod regtest;
pub mod tools;
