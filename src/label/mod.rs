//! Stage 3, vectors and pairs to labels: what can be labelled ([`schema`]: themes and targets;
//! [`stance`]: favor, against, none), the heads that score them ([`head`]: prototypes, trained
//! linear heads, the stance cross-encoder), the one labelling path ([`classify`]) and classify's
//! output records ([`records`]).

pub mod classify;
pub mod head;
pub mod records;
pub mod schema;
pub mod stance;
