//! Image pulls as `stead up` shows them: one line per image, with its layers and bytes, as
//! `docker pull` sums them up. Pure: progress events in, the line of the image they concern out.

use std::collections::{BTreeMap, BTreeSet};
use stead_image::pull::Progress;

use super::image::human_size;

#[derive(Default)]
struct ImagePull {
    layers: usize,
    /// Compressed bytes of the layers to fetch.
    bytes: u64,
    /// Bytes received per layer being downloaded.
    received: BTreeMap<String, u64>,
    done: BTreeSet<String>,
}

/// The pulls seen so far, by reference.
#[derive(Default)]
pub struct PullLines {
    pulls: BTreeMap<String, ImagePull>,
}

/// An image's line, and whether its pull is complete (the line then stays as it is).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullLine {
    pub reference: String,
    pub text: String,
    pub complete: bool,
}

impl PullLines {
    /// Records one event of `reference`'s pull; returns its line as it reads now.
    pub fn event(&mut self, reference: &str, progress: &Progress) -> PullLine {
        let pull = self.pulls.entry(reference.to_owned()).or_default();
        match progress {
            Progress::Resolved { layers, bytes, .. } => {
                *pull = ImagePull { layers: *layers, bytes: *bytes, ..Default::default() };
            }
            Progress::LayerExists { layer, .. } | Progress::LayerDone { layer, .. } => {
                pull.done.insert(layer.clone());
            }
            Progress::LayerBytes { layer, done, .. } => {
                pull.received.insert(layer.clone(), *done);
            }
            Progress::LayerUnpacking { .. } => {}
        }
        let received: u64 = pull.received.values().sum();
        let complete = pull.layers > 0 && pull.done.len() >= pull.layers;
        let text = if complete {
            format!("pulled {reference}: {} layers, {} downloaded", pull.layers, human_size(received))
        } else {
            format!(
                "pulling {reference}: {}/{} layers, {}/{}",
                pull.done.len(),
                pull.layers,
                human_size(received),
                human_size(pull.bytes)
            )
        };
        if complete {
            self.pulls.remove(reference);
        }
        PullLine { reference: reference.to_owned(), text, complete }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_image_with_layers_and_bytes() {
        let r = "docker.io/library/alpine:3.20";
        let mut lines = PullLines::default();
        let resolved = Progress::Resolved {
            reference: r.into(),
            digest: "sha256:d".into(),
            endpoint: "e".into(),
            layers: 3,
            to_fetch: 2,
            bytes: 3_400_000,
        };
        let line = lines.event(r, &resolved);
        assert_eq!(line.text, "pulling docker.io/library/alpine:3.20: 0/3 layers, 0B/3.4MB");
        assert!(!line.complete);
        lines.event(r, &Progress::LayerExists { reference: r.into(), layer: "a".into() });
        let bytes = |layer: &str, done| Progress::LayerBytes {
            reference: r.into(),
            layer: layer.into(),
            done,
            total: 1_700_000,
        };
        lines.event(r, &bytes("b", 500_000));
        let line = lines.event(r, &bytes("c", 700_000));
        assert_eq!(line.text, "pulling docker.io/library/alpine:3.20: 1/3 layers, 1.2MB/3.4MB");
        lines.event(r, &bytes("b", 1_700_000));
        lines.event(r, &Progress::LayerDone { reference: r.into(), layer: "b".into() });
        lines.event(r, &bytes("c", 1_700_000));
        let line = lines.event(r, &Progress::LayerDone { reference: r.into(), layer: "c".into() });
        assert_eq!(line.text, "pulled docker.io/library/alpine:3.20: 3 layers, 3.4MB downloaded");
        assert!(line.complete);
        // Another image's line is its own.
        let other = lines.event("x", &Progress::LayerUnpacking { reference: "x".into(), layer: "l".into() });
        assert_eq!(other.text, "pulling x: 0/0 layers, 0B/0B");
    }
}
