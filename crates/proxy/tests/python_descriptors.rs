//! Checks stead's CloudState protocol files against the descriptors shipped by the official
//! Python support library (PyPI `cloudstate==0.1.1`), an authoritative record of the protocol.
//!
//! The Python descriptors are dumped by `tests/pydescriptors.py` into a directory named by
//! `STEAD_CLOUDSTATE_PY_DESCRIPTORS`. Every message, field (name, number, type, label, type
//! name, oneof), enum value, extension and service method they declare must be in ours, equal.
//! The Python library predates protocol 0.2; what 0.2 added is listed in [`ADDITIONS_IN_0_2`]
//! and is the only thing ours may have beyond theirs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use prost::Message as _;
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet,
};
use stead_proxy::protocol::FILE_DESCRIPTOR_SET;

const ENV: &str = "STEAD_CLOUDSTATE_PY_DESCRIPTORS";

/// Files the dump must contain; a dump without them is incomplete and fails the test.
const REQUIRED_FILES: &[&str] = &["cloudstate/entity.proto", "cloudstate/event_sourced.proto"];

/// Messages and fields protocol 0.2 added after the Python library's files were generated.
const ADDITIONS_IN_0_2: &[&str] = &[
    "cloudstate.Metadata",
    "cloudstate.MetadataEntry",
    "cloudstate.EntityPassivationStrategy",
    "cloudstate.TimeoutPassivationStrategy",
    "cloudstate.Reply.metadata",
    "cloudstate.Forward.metadata",
    "cloudstate.SideEffect.metadata",
    "cloudstate.Command.metadata",
    "cloudstate.Failure.restart",
    "cloudstate.ServiceInfo.protocol_major_version",
    "cloudstate.ServiceInfo.protocol_minor_version",
    "cloudstate.Entity.passivation_strategy",
];

/// Extensions (matched by extendee and number) renamed since: the Python library's
/// `cloudstate.entity_key` is number 50002, which protocol 0.2 calls `legacy_entity_key`
/// (and `entity_key` became 1080).
const RENAMED_EXTENSIONS: &[(&str, &str)] = &[("cloudstate.entity_key", "cloudstate.legacy_entity_key")];

#[test]
fn our_protocol_files_match_the_python_library_descriptors() {
    // Skips on a developer machine without them, fails under CI (see `stead-testkit`).
    let Some(dir) = stead_testkit::require_env(
        ENV,
        &format!(
            "no Python descriptors to compare with.\n\
             To run this check: python3 -m venv /tmp/cs-venv && \
             /tmp/cs-venv/bin/pip install --no-deps cloudstate==0.1.1 protobuf==4.25.3 && \
             PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python /tmp/cs-venv/bin/python \
             crates/proxy/tests/pydescriptors.py /tmp/cs-descriptors && \
             {ENV}=/tmp/cs-descriptors cargo test -p stead-proxy --test python_descriptors"
        ),
    ) else {
        return;
    };
    let theirs = read_dump(Path::new(&dir));
    let ours = our_files();
    let report = compare(&theirs, &ours);
    assert!(report.is_empty(), "our protocol files differ from the Python library's:\n{}", report.join("\n"));
    eprintln!("compared {} python descriptor files: {:?}", theirs.len(), theirs.keys().collect::<Vec<_>>());
}

/// The comparison itself must be able to fail: our own files compared with themselves pass,
/// and any single change to a field is reported.
#[test]
fn comparison_detects_a_changed_field() {
    let ours = our_files();
    assert!(compare(&ours, &ours).is_empty());

    let mut changed = ours.clone();
    let entity = changed.get_mut("cloudstate/entity.proto").expect("entity.proto is compiled");
    let command = entity
        .message_type
        .iter_mut()
        .find(|m| m.name() == "Command")
        .expect("cloudstate.Command is declared");
    let id = command.field.iter_mut().find(|f| f.name() == "id").expect("Command.id is declared");
    id.number = Some(7);
    let report = compare(&changed, &ours);
    assert_eq!(report, vec!["cloudstate.Command.id: number 7 expected, ours is 2".to_string()]);
}

#[test]
fn comparison_detects_a_missing_method() {
    let ours = our_files();
    let mut theirs = ours.clone();
    let es = theirs.get_mut("cloudstate/event_sourced.proto").expect("event_sourced.proto is compiled");
    let mut extra = es.service[0].method[0].clone();
    extra.name = Some("handleTwice".into());
    es.service[0].method.push(extra);
    let report = compare(&theirs, &ours);
    assert_eq!(report, vec!["cloudstate.eventsourced.EventSourced.handleTwice: method missing in ours"]);
}

fn read_dump(dir: &Path) -> BTreeMap<String, FileDescriptorProto> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    let mut files = BTreeMap::new();
    for entry in entries {
        let path = entry.unwrap_or_else(|e| panic!("listing {}: {e}", dir.display())).path();
        if path.extension().is_none_or(|ext| ext != "pb") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let file = FileDescriptorProto::decode(bytes.as_slice())
            .unwrap_or_else(|e| panic!("decoding {}: {e}", path.display()));
        files.insert(file.name().to_string(), file);
    }
    for required in REQUIRED_FILES {
        assert!(files.contains_key(*required), "{} holds no descriptor for {required}", dir.display());
    }
    files
}

fn our_files() -> BTreeMap<String, FileDescriptorProto> {
    let set = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("our descriptor set decodes");
    set.file.into_iter().map(|f| (f.name().to_string(), f)).collect()
}

/// Everything in `theirs` must be in `ours`, equal; ours may add only [`ADDITIONS_IN_0_2`].
fn compare(
    theirs: &BTreeMap<String, FileDescriptorProto>,
    ours: &BTreeMap<String, FileDescriptorProto>,
) -> Vec<String> {
    let mut report = Vec::new();
    let our_messages = index_messages(ours.values());
    let our_enums = index_enums(ours.values());
    let our_extensions: BTreeMap<String, &FieldDescriptorProto> = ours
        .values()
        .flat_map(|f| f.extension.iter().map(move |x| (qualify(f.package(), x.name()), x)))
        .collect();
    let mut their_messages = BTreeSet::new();

    for (name, their_file) in theirs {
        // Extension-only files (entity_key.proto) are compared through the extension index,
        // since the option moved between files and numbers.
        if let Some(our_file) = ours.get(name) {
            if our_file.package() != their_file.package() {
                report.push(format!(
                    "{name}: package {} expected, ours is {}",
                    their_file.package(),
                    our_file.package()
                ));
            }
        } else if !their_file.message_type.is_empty() || !their_file.service.is_empty() {
            report.push(format!("{name}: file missing in ours"));
            continue;
        }
        for (full, their_msg) in index_messages([their_file]) {
            their_messages.insert(full.clone());
            match our_messages.get(&full) {
                None => report.push(format!("{full}: message missing in ours")),
                Some(our_msg) => compare_message(&full, their_msg, our_msg, &mut report),
            }
        }
        for (full, their_enum) in index_enums([their_file]) {
            match our_enums.get(&full) {
                None => report.push(format!("{full}: enum missing in ours")),
                Some(our_enum) => compare_enum(&full, their_enum, our_enum, &mut report),
            }
        }
        for ext in &their_file.extension {
            let full = qualify(their_file.package(), ext.name());
            let found = our_extensions
                .iter()
                .find(|(_, o)| o.extendee() == ext.extendee() && o.number() == ext.number());
            match found {
                None => report.push(format!("{full}: extension number {} missing in ours", ext.number())),
                Some((our_name, our_ext)) => {
                    let renamed = RENAMED_EXTENSIONS.contains(&(full.as_str(), our_name.as_str()));
                    if *our_name != full && !renamed {
                        report.push(format!("{full}: extension named {our_name} in ours"));
                    }
                    compare_field(&full, ext, our_ext, &mut report);
                }
            }
        }
        for their_svc in &their_file.service {
            let full = qualify(their_file.package(), their_svc.name());
            let our_svc =
                ours.get(name).and_then(|f| f.service.iter().find(|s| s.name() == their_svc.name()));
            let Some(our_svc) = our_svc else {
                report.push(format!("{full}: service missing in ours"));
                continue;
            };
            for m in &their_svc.method {
                let Some(o) = our_svc.method.iter().find(|o| o.name() == m.name()) else {
                    report.push(format!("{full}.{}: method missing in ours", m.name()));
                    continue;
                };
                let theirs_sig =
                    (m.input_type(), m.output_type(), m.client_streaming(), m.server_streaming());
                let ours_sig = (o.input_type(), o.output_type(), o.client_streaming(), o.server_streaming());
                if theirs_sig != ours_sig {
                    report.push(format!(
                        "{full}.{}: signature {theirs_sig:?} expected, ours is {ours_sig:?}",
                        m.name()
                    ));
                }
            }
            for o in &our_svc.method {
                if !their_svc.method.iter().any(|m| m.name() == o.name()) {
                    report.push(format!("{full}.{}: method not in theirs", o.name()));
                }
            }
        }
    }

    // Ours may have more messages than theirs in the files they declare, but only listed ones.
    for name in theirs.keys() {
        let Some(our_file) = ours.get(name) else { continue };
        for (full, _) in index_messages([our_file]) {
            if !their_messages.contains(&full) && !ADDITIONS_IN_0_2.contains(&full.as_str()) {
                report.push(format!("{full}: message not in theirs and not a known 0.2 addition"));
            }
        }
    }
    report
}

fn compare_message(full: &str, theirs: &DescriptorProto, ours: &DescriptorProto, report: &mut Vec<String>) {
    for tf in &theirs.field {
        let name = format!("{full}.{}", tf.name());
        match ours.field.iter().find(|of| of.name() == tf.name()) {
            None => report.push(format!("{name}: field missing in ours")),
            Some(of) => {
                compare_field(&name, tf, of, report);
                let t_oneof = tf.oneof_index.map(|i| oneof_name(theirs, i));
                let o_oneof = of.oneof_index.map(|i| oneof_name(ours, i));
                if t_oneof != o_oneof {
                    report.push(format!("{name}: oneof {t_oneof:?} expected, ours is {o_oneof:?}"));
                }
            }
        }
    }
    for of in &ours.field {
        let name = format!("{full}.{}", of.name());
        if !theirs.field.iter().any(|tf| tf.name() == of.name()) && !ADDITIONS_IN_0_2.contains(&name.as_str())
        {
            report.push(format!("{name}: field not in theirs and not a known 0.2 addition"));
        }
    }
}

fn compare_field(
    name: &str,
    theirs: &FieldDescriptorProto,
    ours: &FieldDescriptorProto,
    report: &mut Vec<String>,
) {
    if theirs.number() != ours.number() {
        report.push(format!("{name}: number {} expected, ours is {}", theirs.number(), ours.number()));
    }
    if theirs.r#type() != ours.r#type() {
        report.push(format!("{name}: type {:?} expected, ours is {:?}", theirs.r#type(), ours.r#type()));
    }
    if theirs.label() != ours.label() {
        report.push(format!("{name}: label {:?} expected, ours is {:?}", theirs.label(), ours.label()));
    }
    if theirs.type_name() != ours.type_name() {
        report.push(format!(
            "{name}: type name {} expected, ours is {}",
            theirs.type_name(),
            ours.type_name()
        ));
    }
}

fn compare_enum(
    full: &str,
    theirs: &EnumDescriptorProto,
    ours: &EnumDescriptorProto,
    report: &mut Vec<String>,
) {
    let values = |e: &EnumDescriptorProto| {
        e.value.iter().map(|v| (v.name().to_string(), v.number())).collect::<Vec<_>>()
    };
    if values(theirs) != values(ours) {
        report.push(format!("{full}: values {:?} expected, ours are {:?}", values(theirs), values(ours)));
    }
}

fn oneof_name(msg: &DescriptorProto, index: i32) -> String {
    usize::try_from(index)
        .ok()
        .and_then(|i| msg.oneof_decl.get(i))
        .map_or_else(|| format!("<bad oneof index {index}>"), |o| o.name().to_string())
}

fn qualify(package: &str, name: &str) -> String {
    if package.is_empty() { name.to_string() } else { format!("{package}.{name}") }
}

/// All messages, nested ones included, by fully qualified name (without the leading dot).
fn index_messages<'a>(
    files: impl IntoIterator<Item = &'a FileDescriptorProto>,
) -> BTreeMap<String, &'a DescriptorProto> {
    fn walk<'a>(prefix: &str, msgs: &'a [DescriptorProto], out: &mut BTreeMap<String, &'a DescriptorProto>) {
        for m in msgs {
            let full = qualify(prefix, m.name());
            walk(&full, &m.nested_type, out);
            out.insert(full, m);
        }
    }
    let mut out = BTreeMap::new();
    for f in files {
        walk(f.package(), &f.message_type, &mut out);
    }
    out
}

/// All enums, nested ones included, by fully qualified name.
fn index_enums<'a>(
    files: impl IntoIterator<Item = &'a FileDescriptorProto>,
) -> BTreeMap<String, &'a EnumDescriptorProto> {
    fn walk<'a>(
        prefix: &str,
        msgs: &'a [DescriptorProto],
        out: &mut BTreeMap<String, &'a EnumDescriptorProto>,
    ) {
        for m in msgs {
            let full = qualify(prefix, m.name());
            for e in &m.enum_type {
                out.insert(qualify(&full, e.name()), e);
            }
            walk(&full, &m.nested_type, out);
        }
    }
    let mut out = BTreeMap::new();
    for f in files {
        for e in &f.enum_type {
            out.insert(qualify(f.package(), e.name()), e);
        }
        walk(f.package(), &f.message_type, &mut out);
    }
    out
}
