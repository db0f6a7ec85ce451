//! The stance models compiled into the binary (`models/NAME.toml` and `models/NAME/`).

use super::BuiltinAdapter;

pub const MODELS: &[BuiltinAdapter] = &[];

/// Until a stance model ships, `--stance` defaults to the prototype head.
pub const DEFAULT: &str = "prototype";
