//! Any bytes through everything `stead render` does with them ([`pipeline::load_draw_render`]).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../render_pipeline.rs"]
mod pipeline;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    pipeline::load_draw_render(text);
});
