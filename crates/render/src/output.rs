//! Objects as text: a YAML stream (`---` between documents) or JSON (one object, or a `v1` List).

use serde_json::Value as J;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

/// Errors turning objects into text.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot write yaml: {0}")]
    Yaml(#[from] serde_saphyr::SerializeError),
    #[error("cannot write json: {0}")]
    Json(#[from] serde_json::Error),
}

pub fn to_string(objects: &[J], format: Format) -> Result<String, OutputError> {
    match format {
        Format::Yaml => {
            let mut out = String::new();
            for (i, object) in objects.iter().enumerate() {
                if i > 0 {
                    out.push_str("---\n");
                }
                out.push_str(&serde_saphyr::to_string(object)?);
            }
            Ok(out)
        }
        Format::Json => {
            let value = match objects {
                [one] => one.clone(),
                many => serde_json::json!({"apiVersion": "v1", "kind": "List", "items": many}),
            };
            let mut text = serde_json::to_string_pretty(&value)?;
            text.push('\n');
            Ok(text)
        }
    }
}
