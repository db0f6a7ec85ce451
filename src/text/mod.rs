//! Stage 1, text in and paragraphs out: where input comes from ([`input`]: files, folders, JSON
//! Lines, standard input) and how a document becomes paragraphs with byte offsets
//! ([`document`]).

pub mod document;
pub mod input;
pub mod shard;
