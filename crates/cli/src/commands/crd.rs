use crate::{CrdArgs, exit};
use stead_render::RenderOptions;

pub fn run(args: &CrdArgs) -> anyhow::Result<i32> {
    let objects = if args.install {
        let mut opts = RenderOptions::default();
        if let Some(image) = &args.image {
            opts.proxy_image = image.clone();
        }
        stead_render::install_manifests(&opts)
    } else {
        stead_render::crds()
    };
    print!("{}", stead_render::to_string(&objects, args.output.into())?);
    Ok(exit::OK)
}
