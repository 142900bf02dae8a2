pub mod runtime;
pub mod storage;
