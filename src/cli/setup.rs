//! Turning flags into a loaded model, and the policies the binary owns: notices, broken pipes.

use anyhow::Context;
use stancer::embed::Embedder;
use stancer::model::fetch::{ModelSpec, ResolvedModel};

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
    let quiet = args.quiet;
    let device = stancer::device::select(args.device, &mut |line| notice(quiet, line))?;
    let dtype_name = args
        .dtype
        .clone()
        .or_else(|| resolved.dtype.clone())
        .unwrap_or_else(|| "f32".into());
    let dtype = stancer::device::parse_dtype(&dtype_name)
        .map_err(|message| stancer::Error::Usage { message })?;
    let embedder = Embedder::load_engine(&resolved, &device, dtype, args.engine)
        .with_context(|| format!("cannot load model '{}'", resolved.name))?
        .batch_tokens(args.batch_tokens);
    Ok((embedder, resolved))
}

/// Whether an error is a closed pipe on our output (`stancer ... | head`): a normal end.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
