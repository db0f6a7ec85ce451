//! The stance models compiled into the binary (`models/NAME.toml` and `models/NAME/`): a few MB
//! each, so an installed `stancer` has its default stance model wherever it runs. The bytes are
//! checked against the manifest's sha256 on every load.

use super::BuiltinAdapter;

pub const MODELS: &[BuiltinAdapter] = &[
    BuiltinAdapter {
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
    },
    // Research use only (trained with research-only sets as well): never the default.
    BuiltinAdapter {
        name: "minilm-l6-stance-research",
        manifest: include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/minilm-l6-stance-research.toml"
        )),
        weights: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/minilm-l6-stance-research/adapter.safetensors"
        )),
        card: include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/minilm-l6-stance-research/card.json"
        )),
    },
];

/// The stance model of `classify`, `eval` and `bench --classify` when `--stance` is not given.
pub const DEFAULT: &str = "minilm-l6-stance";
