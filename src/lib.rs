//! stancer: label every paragraph of a document with a theme and, for each target, a stance,
//! using a transformer encoder that runs locally on candle.
//!
//! The stages read as a pipeline: [`input`] and [`document`] split documents into paragraphs,
//! [`embed`] tokenizes, batches and encodes them through a [`model::Encoder`], heads score them,
//! and the binary writes the results.

pub mod batch;
pub mod bench;
pub mod classify;
pub mod cross_validation;
pub mod device;
pub mod document;
pub mod embed;
pub mod embed_cache;
pub mod error;
pub mod eval;
pub mod finetune;
pub mod gold;
pub mod head;
pub mod input;
pub mod model;
pub mod records;
pub mod schema;
pub mod stance;
pub mod tokenize;

pub use error::{Error, Result};
#[doc(hidden)]
pub mod testkit;
