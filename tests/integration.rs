//! All integration tests, in one test binary. Tests whose names contain `real_model` load the
//! default model (all-MiniLM-L6-v2), fetching it through the same code a user runs.

#[path = "integration/bench.rs"]
mod bench;
#[path = "integration/classify.rs"]
mod classify;
#[path = "integration/cli_errors.rs"]
mod cli_errors;
#[path = "integration/common.rs"]
mod common;
#[path = "integration/e5.rs"]
mod e5;
#[path = "integration/encoder.rs"]
mod encoder;
#[path = "integration/eval.rs"]
mod eval;
#[path = "integration/finetune.rs"]
mod finetune;
#[path = "integration/hub.rs"]
mod hub;
#[path = "integration/models.rs"]
mod models;
#[path = "integration/shards.rs"]
mod shards;
#[path = "integration/train.rs"]
mod train;
