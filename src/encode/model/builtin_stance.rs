//! The stance models compiled into the binary (`models/NAME.toml` and `models/NAME/`): a few MB
//! each, so an installed `stancer` has its default stance model wherever it runs. The bytes are
//! checked against the manifest's sha256 on every load.

use super::BuiltinAdapter;

pub const MODELS: &[BuiltinAdapter] = &[BuiltinAdapter {
    name: "minilm-l6-stance",
    manifest: include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/minilm-l6-stance.toml"
    )),
    weights: include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/minilm-l6-stance/adapter.safetensors"
    )),
    card: include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/minilm-l6-stance/card.json"
    )),
}];

/// The stance model of `classify`, `eval` and `bench --classify` when `--stance` is not given.
pub const DEFAULT: &str = "minilm-l6-stance";
