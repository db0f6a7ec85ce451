//! Stage 2, paragraphs to vectors and pair scores: tokens and windows ([`tokenize`]), batch
//! plans ([`batch`]), the encoders and their loading ([`model`]: the `Model` seam, BERT on the
//! packed CPU engine and on candle, manifests, adapters), the embedding pipeline ([`embed`]),
//! its on-disk cache ([`embed_cache`]) and where the model runs ([`device`]).

pub mod batch;
pub mod device;
pub mod embed;
pub mod embed_cache;
pub mod model;
pub mod tokenize;
