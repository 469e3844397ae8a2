use crate::{FileArgs, diagnostics, exit, inputs};

pub fn run(args: &FileArgs) -> anyhow::Result<i32> {
    let loaded = inputs::load_and_validate(&args.files);
    let errors = diagnostics::report(&loaded.problems);
    if errors > 0 {
        return Ok(exit::INVALID);
    }
    let n = loaded.documents.len();
    println!("{n} object{} valid", if n == 1 { "" } else { "s" });
    Ok(exit::OK)
}
