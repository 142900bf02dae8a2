pub mod cli;
pub mod runtime;
pub mod storage;
