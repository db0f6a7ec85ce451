//! Turning flags into a loaded model, and the policies the binary owns: notices, broken pipes.

use stancer::encode::embed::Embedder;
use stancer::encode::model::fetch::ResolvedModel;

use super::ModelArgs;

/// Prints a one-line notice on stderr unless quiet.
pub fn notice(quiet: bool, message: &str) {
    if !quiet {
        eprintln!("stancer: {message}");
    }
}

/// Resolves and loads the model that the flags name.
pub fn load_embedder(args: &ModelArgs) -> anyhow::Result<(Embedder, ResolvedModel)> {
    let quiet = args.quiet;
    stancer::pipeline::load_embedder(&args.settings(), &mut |line| notice(quiet, line))
}

/// `--stance`: the model that scores each (target, paragraph) pair.
#[derive(clap::Args, Debug, Clone)]
pub struct StanceArgs {
    /// The stance model: a stance model name (see `stancer models list`), an adapter folder
    /// written by `stancer finetune`, or `prototype` for the zero-shot prototype head on the
    /// encoder's vectors [default: minilm-l6-stance; with an NLI model as --model, that model,
    /// zero-shot]. A trained stance head given with --head takes precedence.
    #[arg(long, value_name = "NAME|DIR|prototype")]
    pub stance: Option<String>,
    /// How themes are scored: `prototype` compares the paragraph's vector with each theme's
    /// description and examples; `entailment` reads ("This text is about {theme}.", paragraph)
    /// pairs with the stance model and takes the softmax of their favor logits across the
    /// themes (one encoder pass per theme and paragraph); `nli` is the zero-shot pipeline of an
    /// NLI model given as --model (the schema's [nli] template). A trained theme head given
    /// with --head takes precedence. [default: prototype; nli with an NLI model]
    #[arg(long, value_enum, value_name = "HOW")]
    pub theme_head: Option<ThemeHeadKind>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThemeHeadKind {
    Prototype,
    Entailment,
    Nli,
}

impl From<ThemeHeadKind> for stancer::pipeline::ThemeHead {
    fn from(kind: ThemeHeadKind) -> Self {
        match kind {
            ThemeHeadKind::Prototype => Self::Prototype,
            ThemeHeadKind::Entailment => Self::Entailment,
            ThemeHeadKind::Nli => Self::Nli,
        }
    }
}

impl StanceArgs {
    pub fn settings(&self) -> stancer::pipeline::StanceSettings {
        stancer::pipeline::StanceSettings {
            stance: self.stance.clone(),
            theme_head: self.theme_head.map(Into::into),
        }
    }
}

/// The heads for a run (see [`stancer::pipeline::load_heads`]).
pub fn load_heads(
    embedder: &Embedder,
    model: &ResolvedModel,
    schema: &stancer::label::schema::Schema,
    head_dirs: &[std::path::PathBuf],
    stance: &StanceArgs,
    model_args: &ModelArgs,
) -> anyhow::Result<stancer::label::head::Heads> {
    let quiet = model_args.quiet;
    stancer::pipeline::load_heads(
        embedder,
        model,
        schema,
        head_dirs,
        &stance.settings(),
        &model_args.settings(),
        &mut |line| notice(quiet, line),
    )
}

/// Embeds passages through the on-disk cache (keyed by the encoder and its settings).
pub fn embed_cached(
    embedder: &Embedder,
    model: &ResolvedModel,
    texts: &[&str],
    quiet: bool,
) -> anyhow::Result<Vec<stancer::encode::embed::Embedding>> {
    let key = stancer::encode::embed_cache::embedder_key(&model.weights_checksum()?, embedder);
    let mut cache = stancer::encode::embed_cache::EmbeddingCache::open(&key, embedder.dimension())?;
    let embeddings = cache.embed_passages(embedder, texts)?;
    notice(
        quiet,
        &format!(
            "embeddings: {} from the cache, {} encoded ({})",
            cache.hits,
            cache.misses,
            cache.path().display()
        ),
    );
    Ok(embeddings)
}

/// Whether an error is a closed pipe on our output (`stancer ... | head`): a normal end.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let io = cause.downcast_ref::<std::io::Error>().map(|e| e.kind());
        // serde_json keeps the io::Error inside its own error type.
        let json = cause
            .downcast_ref::<serde_json::Error>()
            .and_then(|e| e.io_error_kind());
        io.or(json) == Some(std::io::ErrorKind::BrokenPipe)
    })
}
