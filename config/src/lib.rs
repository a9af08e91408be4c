//! masq's YAML configuration: schema, validation with key paths and line
//! numbers, the embedded default. Arrives with the config/control issue (#5);
//! the engine meanwhile takes plain parameters (`dataplane::nat::EngineParams`).
#![forbid(unsafe_code)]
