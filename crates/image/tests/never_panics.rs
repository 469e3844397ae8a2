//! Arbitrary input to every parser is an `Err` or an `Ok`, never a panic.

use proptest::prelude::*;
use stead_image::auth::Keyring;
use stead_image::container::ImageUser;
use stead_image::reference::ImageRef;
use stead_image::registries::RegistriesConf;
use stead_image::unpack::{UnpackOptions, unpack_layer};

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn references(text in "\\PC{0,80}", structured in "[a-zA-Z0-9._:/@-]{0,60}") {
        let _ = ImageRef::parse(&text);
        if let Ok(r) = ImageRef::parse(&structured) {
            // a parsed reference prints to a name that parses to itself
            let again = ImageRef::parse(&r.to_string());
            prop_assert_eq!(again, Ok(r));
        }
    }

    #[test]
    fn registries_conf(text in "\\PC{0,200}", prefix in "[a-z*.:/@0-9-]{0,20}", location in "[a-z.:/0-9-]{0,20}", image in "[a-z0-9./:-]{1,30}") {
        let _ = RegistriesConf::parse(&text, "fuzz");
        let conf = format!("[[registry]]\nprefix = \"{prefix}\"\nlocation = \"{location}\"\n[[registry.mirror]]\nlocation = \"{location}/m\"\n");
        if let (Ok(conf), Ok(image)) = (RegistriesConf::parse(&conf, "fuzz"), ImageRef::parse(&image)) {
            let _ = conf.resolve(&image);
        }
    }

    #[test]
    fn credentials(text in "\\PC{0,200}", key in "[a-z0-9.:/*-]{0,30}", auth in "[A-Za-z0-9+/=]{0,24}") {
        let mut k = Keyring::new();
        let _ = k.add_json(text.as_bytes(), "fuzz");
        let json = format!(r#"{{"auths":{{"{key}":{{"auth":"{auth}"}}}}}}"#);
        let _ = k.add_json(json.as_bytes(), "fuzz");
        let _ = k.lookup("a.io", "x/y");
    }

    #[test]
    fn image_users(text in "\\PC{0,30}") {
        let _ = ImageUser::parse(&text);
    }

    /// Garbage layers are errors; a garbage tar header behind valid gzip too.
    #[test]
    fn layers(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let dir = tempfile::tempdir().unwrap();
        let options = UnpackOptions { as_root: false };
        let _ = unpack_layer(&bytes[..], dir.path(), "fuzz", &options);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &bytes).unwrap();
        let gz = gz.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let _ = unpack_layer(&gz[..], dir.path(), "fuzz", &options);
    }
}
