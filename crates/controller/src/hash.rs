//! The hashes Kubernetes puts in names: FNV over bytes, printed in decimal, then "safe encoded".

/// Kubernetes' `rand.SafeEncodeString` alphabet: no vowels and no characters that read alike, so
/// that no generated name spells a word.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

/// FNV-1 (32 bit): multiply, then xor. Go's `fnv.New32`, which ControllerRevision names use.
pub fn fnv1_32(parts: &[&[u8]]) -> u32 {
    let mut h = FNV_OFFSET;
    for part in parts {
        for b in *part {
            h = h.wrapping_mul(FNV_PRIME);
            h ^= u32::from(*b);
        }
    }
    h
}

/// FNV-1a (32 bit): xor, then multiply. Go's `fnv.New32a`, which `pod-template-hash` uses.
pub fn fnv1a_32(parts: &[&[u8]]) -> u32 {
    let mut h = FNV_OFFSET;
    for part in parts {
        for b in *part {
            h ^= u32::from(*b);
            h = h.wrapping_mul(FNV_PRIME);
        }
    }
    h
}

/// `rand.SafeEncodeString(fmt.Sprint(h))`: each decimal digit mapped through the safe alphabet.
pub fn safe_encode(h: u32) -> String {
    h.to_string().bytes().map(|b| char::from(SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()])).collect()
}

/// A `k8s-openapi` object as canonical JSON bytes the way Go's `json.Marshal` of a
/// `map[string]interface{}` writes them: keys sorted at every level, no spaces, and `<`, `>`, `&`
/// escaped. Hashing these bytes makes a hash depend on content only, never on field order.
pub fn canonical_json(value: &serde_json::Value) -> Vec<u8> {
    let sorted = sort_keys(value);
    let text = serde_json::to_string(&sorted).unwrap_or_default();
    text.replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026").into_bytes()
}

fn sort_keys(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = serde_json::Map::new();
            for k in keys {
                if let Some(v) = map.get(k) {
                    out.insert(k.clone(), sort_keys(v));
                }
            }
            serde_json::Value::Object(out)
        }
        serde_json::Value::Array(items) => serde_json::Value::Array(items.iter().map(sort_keys).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_vectors() {
        // Published FNV test vectors.
        assert_eq!(fnv1_32(&[b""]), 0x811c9dc5);
        assert_eq!(fnv1_32(&[b"a"]), 0x050c5d7e);
        assert_eq!(fnv1a_32(&[b"a"]), 0xe40c292c);
        assert_eq!(fnv1a_32(&[b"foobar"]), 0xbf9cf968);
        assert_eq!(fnv1_32(&[b"foo", b"bar"]), fnv1_32(&[b"foobar"]));
    }

    #[test]
    fn safe_encode_maps_each_digit() {
        // digits '0'..'9' are bytes 48..57; 48 % 27 = 21 -> '4', 49 % 27 = 22 -> '5'.
        assert_eq!(safe_encode(0), "4");
        assert_eq!(safe_encode(10), "54");
    }

    #[test]
    fn canonical_json_sorts_and_escapes() {
        let v = serde_json::json!({"b": 1, "a": {"d": "<&>", "c": [2, {"z": 0, "y": 1}]}});
        let s = String::from_utf8(canonical_json(&v)).unwrap();
        assert_eq!(s, r#"{"a":{"c":[2,{"y":1,"z":0}],"d":"\u003c\u0026\u003e"},"b":1}"#);
    }
}
