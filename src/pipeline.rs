//! Loading what a run needs from plain settings: the model (fetched if needed) and how it is
//! run, then the theme and stance heads. The command line and the Python package both go
//! through here, so the same settings give the same labels whichever way stancer is called.
//! Progress lines go to the caller's `notice`.

use anyhow::Context;

use crate::encode::embed::Embedder;
use crate::encode::model::fetch::{ModelSpec, ResolvedModel};
use crate::label::head::trained::TrainedHead;

/// Which model, where and how it runs (the command line's `--model`, `--device`, `--dtype`,
/// `--batch-tokens` and `--engine`).
#[derive(Debug, Clone)]
pub struct ModelSettings {
    /// A manifest name, a manifest file or a model folder; `None` for the default model.
    pub model: Option<String>,
    pub device: crate::encode::device::DeviceChoice,
    /// f32, f16 or bf16; `None` for the manifest's, else f32.
    pub dtype: Option<String>,
    pub batch_tokens: usize,
    pub engine: crate::encode::model::Engine,
}

impl Default for ModelSettings {
    fn default() -> Self {
        Self {
            model: None,
            device: crate::encode::device::DeviceChoice::Auto,
            dtype: None,
            batch_tokens: crate::encode::embed::DEFAULT_BATCH_TOKENS,
            engine: crate::encode::model::Engine::Auto,
        }
    }
}

/// How themes are scored (`--theme-head`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThemeHead {
    Prototype,
    Entailment,
    Nli,
}

/// The stance model and theme head (`--stance`, `--theme-head`); `None` for the defaults.
#[derive(Debug, Clone, Default)]
pub struct StanceSettings {
    pub stance: Option<String>,
    pub theme_head: Option<ThemeHead>,
}

/// Resolves the model the settings name (fetching it if needed) without loading it.
pub fn resolve_model(
    settings: &ModelSettings,
    notice: &mut dyn FnMut(&str),
) -> anyhow::Result<ResolvedModel> {
    let spec = ModelSpec::parse(settings.model.as_deref())?;
    Ok(spec.resolve(notice)?)
}

/// Resolves and loads the model the settings name.
pub fn load_embedder(
    settings: &ModelSettings,
    notice: &mut dyn FnMut(&str),
) -> anyhow::Result<(Embedder, ResolvedModel)> {
    let resolved = resolve_model(settings, notice)?;
    let options = load_options(settings, &resolved, notice)?;
    let (device, dtype) = (options.device, options.dtype);
    let embedder = Embedder::load_engine(&resolved, &device, dtype, settings.engine)
        .with_context(|| format!("cannot load model '{}'", resolved.name))?
        .batch_tokens(settings.batch_tokens);
    Ok((embedder, resolved))
}

/// The heads for a run: trained heads from `--head` folders where given, zero-shot otherwise;
/// the stance model of `--stance` unless a trained stance head replaces it. An NLI model given
/// as `--model` labels themes and stances itself.
pub fn load_heads(
    embedder: &Embedder,
    model: &ResolvedModel,
    schema: &crate::label::schema::Schema,
    head_dirs: &[std::path::PathBuf],
    stance: &StanceSettings,
    settings: &ModelSettings,
    notice: &mut dyn FnMut(&str),
) -> anyhow::Result<crate::label::head::Heads> {
    if !embedder.gives_vectors() {
        return nli_heads(embedder, model, schema, head_dirs, stance, settings);
    }
    if stance.theme_head == Some(ThemeHead::Nli) {
        anyhow::bail!(crate::Error::Usage {
            message: format!(
                "--theme-head nli needs an NLI model as --model; '{}' is a sentence encoder",
                model.name
            )
        });
    }
    let argument = stance
        .stance
        .as_deref()
        .unwrap_or(crate::encode::model::adapter::DEFAULT_STANCE);
    let spec = crate::encode::model::adapter::StanceSpec::parse(argument)?;
    let mut heads = crate::label::head::Heads::zero_shot(embedder, schema)?;
    let entailment = stance.theme_head == Some(ThemeHead::Entailment);
    if let Some(adapter) = spec.load()? {
        // The stance model runs where and as the encoder runs; on the encoder's own weights
        // (a variant of the adapter's base) it takes the encoder's matrix precision too.
        let base = if model.weights_checksum()? == adapter.card.base.sha256 {
            model.clone()
        } else {
            let base = ModelSpec::parse(Some(&adapter.card.base.name))?;
            base.resolve(notice)?
        };
        let options = load_options(settings, &base, notice)?;
        let name = spec.name();
        let head = crate::label::head::cross_encoder::load(&adapter, &base, &options, &name)
            .with_context(|| format!("cannot load stance model '{name}'"))?
            .batch_tokens(settings.batch_tokens);
        let head = std::sync::Arc::new(head);
        heads.stance = Box::new(head.clone());
        heads.kind = format!("zero-shot theme + {name} stance");
        if entailment && !schema.themes.is_empty() {
            heads.theme = Some(Box::new(
                crate::label::head::entailment::EntailmentTheme::new(head, schema, &name)?,
            ));
            heads.kind = format!("{name} entailment theme + {name} stance");
        }
    } else if entailment {
        anyhow::bail!(crate::Error::Usage {
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
    schema: &crate::label::schema::Schema,
    head_dirs: &[std::path::PathBuf],
    stance: &StanceSettings,
    settings: &ModelSettings,
) -> anyhow::Result<crate::label::head::Heads> {
    let usage = |message: String| anyhow::Error::from(crate::Error::Usage { message });
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
    if let Some(kind) = stance.theme_head.filter(|k| *k != ThemeHead::Nli) {
        return Err(usage(format!(
            "with an NLI model as --model, themes come from its zero-shot pipeline; leave out \
             --theme-head {}",
            match kind {
                ThemeHead::Prototype => "prototype",
                ThemeHead::Entailment => "entailment",
                ThemeHead::Nli => "nli",
            }
        )));
    }
    let nli =
        crate::label::head::nli::load(model, embedder.model())?.batch_tokens(settings.batch_tokens);
    let nli = std::sync::Arc::new(nli);
    let theme: Option<Box<dyn crate::label::head::ThemeHead>> = if schema.themes.is_empty() {
        None
    } else {
        Some(Box::new(crate::label::head::nli::NliTheme::new(
            nli.clone(),
            schema,
        )?))
    };
    Ok(crate::label::head::Heads {
        theme,
        stance: Box::new(crate::label::head::nli::NliStance::new(nli, &schema.nli)),
        kind: format!("{} NLI zero-shot", model.name),
        seen_targets: None,
    })
}

/// Device, dtype, engine and matrix precision for a model, from the flags and its manifest.
pub fn load_options(
    settings: &ModelSettings,
    resolved: &ResolvedModel,
    notice: &mut dyn FnMut(&str),
) -> anyhow::Result<crate::encode::model::LoadOptions> {
    let choice = match (settings.device, resolved.matmul) {
        (crate::encode::device::DeviceChoice::Auto, matmul)
            if matmul != crate::encode::model::Matmul::F32 =>
        {
            crate::encode::device::DeviceChoice::Cpu
        }
        (choice, _) => choice,
    };
    let device = crate::encode::device::select(choice, notice)?;
    let dtype_name = settings
        .dtype
        .clone()
        .or_else(|| resolved.dtype.clone())
        .unwrap_or_else(|| "f32".into());
    let dtype = crate::encode::device::parse_dtype(&dtype_name)
        .map_err(|message| crate::Error::Usage { message })?;
    Ok(crate::encode::model::LoadOptions {
        pooling: resolved.pooling,
        device,
        dtype,
        engine: settings.engine,
        matmul: resolved.matmul,
    })
}
