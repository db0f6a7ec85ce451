//! Turning flags into a loaded model, and the policies the binary owns: notices, broken pipes.

use anyhow::Context;
use stancer::encode::embed::Embedder;
use stancer::encode::model::fetch::{ModelSpec, ResolvedModel};
use stancer::label::head::trained::TrainedHead;

use super::ModelArgs;

/// Prints a one-line notice on stderr unless quiet.
pub fn notice(quiet: bool, message: &str) {
    if !quiet {
        eprintln!("stancer: {message}");
    }
}

/// Resolves `--model` (fetching if needed) without loading it.
pub fn resolve_model(args: &ModelArgs) -> anyhow::Result<ResolvedModel> {
    let spec = ModelSpec::parse(args.model.as_deref())?;
    let quiet = args.quiet;
    Ok(spec.resolve(&mut |line| notice(quiet, line))?)
}

/// Resolves and loads the model that the flags name.
pub fn load_embedder(args: &ModelArgs) -> anyhow::Result<(Embedder, ResolvedModel)> {
    let resolved = resolve_model(args)?;
    let options = load_options(args, &resolved)?;
    let (device, dtype) = (options.device, options.dtype);
    let embedder = Embedder::load_engine(&resolved, &device, dtype, args.engine)
        .with_context(|| format!("cannot load model '{}'", resolved.name))?
        .batch_tokens(args.batch_tokens);
    Ok((embedder, resolved))
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

/// The heads for a run: trained heads from `--head` folders where given, zero-shot otherwise;
/// the stance model of `--stance` unless a trained stance head replaces it. An NLI model given
/// as `--model` labels themes and stances itself.
pub fn load_heads(
    embedder: &Embedder,
    model: &ResolvedModel,
    schema: &stancer::label::schema::Schema,
    head_dirs: &[std::path::PathBuf],
    stance: &StanceArgs,
    model_args: &ModelArgs,
) -> anyhow::Result<stancer::label::head::Heads> {
    if !embedder.gives_vectors() {
        return nli_heads(embedder, model, schema, head_dirs, stance, model_args);
    }
    if stance.theme_head == Some(ThemeHeadKind::Nli) {
        anyhow::bail!(stancer::Error::Usage {
            message: format!(
                "--theme-head nli needs an NLI model as --model; '{}' is a sentence encoder",
                model.name
            )
        });
    }
    let argument = stance
        .stance
        .as_deref()
        .unwrap_or(stancer::encode::model::adapter::DEFAULT_STANCE);
    let spec = stancer::encode::model::adapter::StanceSpec::parse(argument)?;
    let mut heads = stancer::label::head::Heads::zero_shot(embedder, schema)?;
    let entailment = stance.theme_head == Some(ThemeHeadKind::Entailment);
    if let Some(adapter) = spec.load()? {
        let quiet = model_args.quiet;
        // The stance model runs where and as the encoder runs; on the encoder's own weights
        // (a variant of the adapter's base) it takes the encoder's matrix precision too.
        let base = if model.weights_checksum()? == adapter.card.base.sha256 {
            model.clone()
        } else {
            let base = ModelSpec::parse(Some(&adapter.card.base.name))?;
            base.resolve(&mut |line| notice(quiet, line))?
        };
        let options = load_options(model_args, &base)?;
        let name = spec.name();
        let head = stancer::label::head::cross_encoder::load(&adapter, &base, &options, &name)
            .with_context(|| format!("cannot load stance model '{name}'"))?
            .batch_tokens(model_args.batch_tokens);
        let head = std::sync::Arc::new(head);
        heads.stance = Box::new(head.clone());
        heads.kind = format!("zero-shot theme + {name} stance");
        if entailment && !schema.themes.is_empty() {
            heads.theme = Some(Box::new(
                stancer::label::head::entailment::EntailmentTheme::new(head, schema, &name)?,
            ));
            heads.kind = format!("{name} entailment theme + {name} stance");
        }
    } else if entailment {
        anyhow::bail!(stancer::Error::Usage {
            message: "--theme-head entailment scores themes with the stance model; it needs a \
                      stance model (--stance NAME or DIR), not --stance prototype"
                .into()
        });
    }
    if head_dirs.is_empty() {
        return Ok(heads);
    }
    let checksum = model.weights_checksum()?;
    let trained = head_dirs
        .iter()
        .map(|dir| TrainedHead::load(dir, &model.name, &checksum))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(heads.with_trained(trained))
}

/// The heads of an NLI model given as `--model`: its zero-shot theme and stance heads, which
/// read texts; heads on sentence vectors cannot apply, since the model gives none.
fn nli_heads(
    embedder: &Embedder,
    model: &ResolvedModel,
    schema: &stancer::label::schema::Schema,
    head_dirs: &[std::path::PathBuf],
    stance: &StanceArgs,
    model_args: &ModelArgs,
) -> anyhow::Result<stancer::label::head::Heads> {
    let usage = |message: String| anyhow::Error::from(stancer::Error::Usage { message });
    if !head_dirs.is_empty() {
        return Err(usage(format!(
            "trained heads (--head) read sentence vectors, and '{}' is an NLI model that gives \
             none; leave out --head, or pass a sentence encoder as --model",
            model.name
        )));
    }
    if let Some(argument) = stance.stance.as_deref().filter(|s| *s != "nli") {
        return Err(usage(format!(
            "with an NLI model as --model, its zero-shot stance is the stance model; leave out \
             --stance {argument} (or pass --stance nli)"
        )));
    }
    if let Some(kind) = stance.theme_head.filter(|k| *k != ThemeHeadKind::Nli) {
        return Err(usage(format!(
            "with an NLI model as --model, themes come from its zero-shot pipeline; leave out \
             --theme-head {}",
            match kind {
                ThemeHeadKind::Prototype => "prototype",
                ThemeHeadKind::Entailment => "entailment",
                ThemeHeadKind::Nli => "nli",
            }
        )));
    }
    let nli = stancer::label::head::nli::load(model, embedder.model())?
        .batch_tokens(model_args.batch_tokens);
    let nli = std::sync::Arc::new(nli);
    let theme: Option<Box<dyn stancer::label::head::ThemeHead>> = if schema.themes.is_empty() {
        None
    } else {
        Some(Box::new(stancer::label::head::nli::NliTheme::new(
            nli.clone(),
            schema,
        )?))
    };
    Ok(stancer::label::head::Heads {
        theme,
        stance: Box::new(stancer::label::head::nli::NliStance::new(nli, &schema.nli)),
        kind: format!("{} NLI zero-shot", model.name),
        seen_targets: None,
    })
}

/// Device, dtype, engine and matrix precision for a model, from the flags and its manifest.
pub fn load_options(
    args: &ModelArgs,
    resolved: &ResolvedModel,
) -> anyhow::Result<stancer::encode::model::LoadOptions> {
    let quiet = args.quiet;
    let choice = match (args.device, resolved.matmul) {
        (stancer::encode::device::DeviceChoice::Auto, matmul)
            if matmul != stancer::encode::model::Matmul::F32 =>
        {
            stancer::encode::device::DeviceChoice::Cpu
        }
        (choice, _) => choice,
    };
    let device = stancer::encode::device::select(choice, &mut |line| notice(quiet, line))?;
    let dtype_name = args
        .dtype
        .clone()
        .or_else(|| resolved.dtype.clone())
        .unwrap_or_else(|| "f32".into());
    let dtype = stancer::encode::device::parse_dtype(&dtype_name)
        .map_err(|message| stancer::Error::Usage { message })?;
    Ok(stancer::encode::model::LoadOptions {
        pooling: resolved.pooling,
        device,
        dtype,
        engine: args.engine,
        matmul: resolved.matmul,
    })
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
