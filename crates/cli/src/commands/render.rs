use crate::{RenderArgs, diagnostics, exit, inputs};
use anyhow::Context;
use stead_render::RenderOptions;

pub fn run(args: &RenderArgs) -> anyhow::Result<i32> {
    let loaded = inputs::load_and_validate(&args.files.files);
    if diagnostics::report(&loaded.problems) > 0 {
        return Ok(exit::INVALID);
    }
    let mut opts = RenderOptions::default();
    if let Some(image) = &args.proxy_image {
        opts.proxy_image = image.clone();
    }
    let manifests: Vec<_> = loaded.documents.into_iter().map(|d| d.manifest).collect();
    let rendered = stead_render::render_all(&manifests, &opts);
    for warning in &rendered.warnings {
        eprintln!("warning: {warning}");
    }
    let objects = rendered
        .objects
        .iter()
        .map(|m| m.to_json().with_context(|| format!("cannot serialize {}", m.reference())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    print!("{}", stead_render::to_string(&objects, args.output.into())?);
    Ok(exit::OK)
}
