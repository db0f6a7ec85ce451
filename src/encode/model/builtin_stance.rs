//! The stance models compiled into the binary (`models/NAME.toml` and `models/NAME/`): a few MB
//! each, so an installed `stancer` has its default stance model wherever it runs. The bytes are
//! checked against the manifest's sha256 on every load.

use super::BuiltinAdapter;

/// The built-in entry for `models/$name.toml` and `models/$name/`.
macro_rules! builtin {
    ($name:literal) => {
        BuiltinAdapter {
            name: $name,
            manifest: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/models/",
                $name,
                ".toml"
            )),
            weights: include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/models/",
                $name,
                "/adapter.safetensors"
            )),
            card: include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/models/",
                $name,
                "/card.json"
            )),
        }
    };
}

pub const MODELS: &[BuiltinAdapter] = &[
    builtin!("minilm-l6-stance"),
    // Research use only (trained with research-only sets as well): never the default.
    builtin!("minilm-l6-stance-research"),
];

/// The stance model of `classify`, `eval` and `bench --classify` when `--stance` is not given.
pub const DEFAULT: &str = "minilm-l6-stance";
