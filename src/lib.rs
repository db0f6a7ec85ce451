//! stancer: label every paragraph of a document with a theme and, for each target, a stance,
//! using a transformer encoder that runs locally on candle.
//!
//! The modules follow the data: [`text`] turns documents into paragraphs; [`encode`] turns
//! paragraphs into tokens, batches, vectors and pair scores through a [`encode::model::Model`];
//! [`label`] turns those into themes and stances (one labelling path, [`label::classify`]);
//! [`eval`] scores labels against gold data, cross-validates and measures speed; [`finetune`]
//! trains the stance cross-encoders that [`label`] loads. The binary (`src/cli`) parses flags,
//! calls the library and prints.

pub mod encode;
pub mod error;
pub mod eval;
pub mod finetune;
pub mod label;
pub mod pipeline;
pub mod text;

pub use error::{Error, Result};
#[doc(hidden)]
pub mod testkit;
