//! Broken inputs, each with the exact place and field the message must name.

use stead_api::{Problem, Severity, load_str, validate};

/// Loads and validates, returning every problem as its one-line form.
fn problems(text: &str) -> Vec<Problem> {
    let loaded = load_str("svc.yaml", text);
    let mut all = loaded.problems;
    all.extend(validate(&loaded.documents));
    all
}

fn lines(text: &str) -> Vec<String> {
    problems(text).iter().map(ToString::to_string).collect()
}

const HEADER: &str =
    "apiVersion: cloudstate.io/v1alpha1\nkind: StatefulService\nmetadata:\n  name: cart\nspec:\n";

/// (what, spec body after the header, the one problem expected, its help if any)
const CASES: &[(&str, &str, &str, Option<&str>)] = &[
    (
        "bad indentation",
        "  containers:\n  - image: cart:1\n     ports: []\n",
        "svc.yaml:8:11: invalid YAML: mapping values are not allowed in this context",
        Some("check the indentation of this line against the lines above it"),
    ),
    (
        "headless service named like the client service",
        "  serviceName: cart\n  containers:\n  - image: cart:1\n",
        "svc.yaml:6:16: spec.serviceName: serviceName \"cart\" is the service's own name, which its client Service already has",
        Some("name the headless Service differently, e.g. \"cart-pods\""),
    ),
    (
        "wrong type",
        "  replicas: three\n  containers:\n  - image: cart:1\n",
        "svc.yaml:6:13: spec.replicas: expected an integer, found string \"three\"",
        None,
    ),
    (
        "quoted port",
        "  containers:\n  - image: cart:1\n    ports:\n    - containerPort: \"8080\"\n",
        "svc.yaml:9:22: spec.containers[0].ports[0].containerPort: expected an integer, found string \"8080\"",
        Some("write 8080 without quotes"),
    ),
    (
        "unknown field",
        "  containers:\n  - image: cart:1\n    imagePulPolicy: Always\n",
        "svc.yaml:8:5: spec.containers[0].imagePulPolicy: unknown field \"imagePulPolicy\"",
        Some("did you mean \"imagePullPolicy\"?"),
    ),
    (
        "unknown spec field",
        "  replica: 2\n  containers:\n  - image: cart:1\n",
        "svc.yaml:6:3: spec.replica: unknown field \"replica\"",
        Some("did you mean \"replicas\"?"),
    ),
    (
        "bad container name",
        "  containers:\n  - image: cart:1\n  - name: Log_Shipper\n    image: ship:1\n",
        "svc.yaml:8:11: spec.containers[1].name: invalid container name \"Log_Shipper\": must be lowercase",
        None,
    ),
    (
        "port out of range",
        "  containers:\n  - image: cart:1\n    ports:\n    - containerPort: 8080\n    - containerPort: 70000\n",
        "svc.yaml:10:22: spec.containers[0].ports[1].containerPort: invalid port 70000: must be between 1 and 65535",
        None,
    ),
    (
        "duplicate ports",
        "  containers:\n  - image: cart:1\n    ports:\n    - containerPort: 8080\n  - name: metrics\n    image: m:1\n    ports:\n    - containerPort: 8080\n",
        "svc.yaml:13:22: spec.containers[1].ports[0].containerPort: duplicate port 8080/TCP: containers of a pod share one network",
        Some("also declared at spec.containers[0].ports[0].containerPort"),
    ),
    (
        "missing image",
        "  containers:\n  - ports:\n    - containerPort: 8080\n",
        "svc.yaml:7:5: spec.containers[0].image: missing required field \"image\"",
        Some(
            "every container names an image; stead records it and, on this machine, runs `command` on the host",
        ),
    ),
    (
        "sidecar port taken",
        "  containers:\n  - image: cart:1\n    ports:\n    - containerPort: 9090\n",
        "svc.yaml:9:22: spec.containers[0].ports[0].containerPort: port 9090 is the sidecar's metrics port",
        Some("pick another port, or set spec.proxy.mode: none"),
    ),
    (
        "enum",
        "  podManagementPolicy: Ordered\n  containers:\n  - image: cart:1\n",
        "svc.yaml:6:24: spec.podManagementPolicy: unsupported value \"Ordered\": expected one of OrderedReady, Parallel",
        Some("did you mean \"OrderedReady\"?"),
    ),
    (
        "list written as a mapping",
        "  containers:\n    image: cart:1\n",
        "svc.yaml:7:5: spec.containers: expected a list, found object",
        Some("start each item with `- `"),
    ),
    (
        "mount of an undeclared volume",
        "  containers:\n  - image: cart:1\n    volumeMounts:\n    - name: date\n      mountPath: /data\n  volumes:\n  - name: data\n    emptyDir: {}\n",
        "svc.yaml:9:13: spec.containers[0].volumeMounts[0].name: volume \"date\" is not declared",
        Some("did you mean \"data\"?"),
    ),
    (
        "negative replicas",
        "  replicas: -1\n  containers:\n  - image: cart:1\n",
        "svc.yaml:6:13: spec.replicas: must not be negative (is -1)",
        None,
    ),
    (
        "tab indentation",
        "  containers:\n\t- image: cart:1\n",
        "svc.yaml:7:2: invalid YAML: tabs disallowed within this context (block indentation)",
        Some("YAML indents with spaces, not tabs"),
    ),
];

#[test]
fn each_broken_input_is_reported_at_its_field() {
    let mut failures = Vec::new();
    for (what, body, expected, help) in CASES {
        let found = problems(&format!("{HEADER}{body}"));
        let errors: Vec<&Problem> = found.iter().filter(|p| p.severity == Severity::Error).collect();
        let ok =
            errors.len() == 1 && errors[0].to_string() == *expected && errors[0].help.as_deref() == *help;
        if !ok {
            let got: Vec<String> = errors.iter().map(|p| format!("{p} [help: {:?}]", p.help)).collect();
            failures.push(format!("{what}:\n  expected {expected} [help: {help:?}]\n  got      {got:#?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = format!(
        "{HEADER}  replica: 2\n  podManagementPolicy: Ordered\n  containers:\n  - image: cart:1\n    ports:\n    - containerPort: 70000\n  - name: Bad\n"
    );
    let found = lines(&text);
    assert_eq!(
        found,
        [
            "svc.yaml:6:3: spec.replica: unknown field \"replica\"",
            "svc.yaml:7:24: spec.podManagementPolicy: unsupported value \"Ordered\": expected one of OrderedReady, Parallel",
            "svc.yaml:11:22: spec.containers[0].ports[0].containerPort: invalid port 70000: must be between 1 and 65535",
            "svc.yaml:12:5: spec.containers[1].image: missing required field \"image\"",
            "svc.yaml:12:11: spec.containers[1].name: invalid container name \"Bad\": must be lowercase",
        ]
    );
}

#[test]
fn unsupported_kinds_and_versions_name_what_is_supported() {
    let found = problems(
        "apiVersion: apps/v1beta1\nkind: StatefulSet\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Servce\n",
    );
    assert_eq!(
        found[0].to_string(),
        "svc.yaml:1:13: apiVersion: unsupported apiVersion \"apps/v1beta1\" for kind StatefulSet: stead reads apps/v1 StatefulSet"
    );
    assert!(found[0].help.as_deref().unwrap().contains("cloudstate.io/v1alpha1 StatefulService"));
    assert_eq!(found[1].to_string(), "svc.yaml:6:7: kind: unsupported kind \"Servce\"");
    assert_eq!(found[1].help.as_deref(), Some("did you mean \"Service\"?"));
    let found = lines("kind: Pod\n");
    assert_eq!(found, ["svc.yaml:1:1: apiVersion: missing required field \"apiVersion\""]);
}

#[test]
fn a_missing_store_is_a_warning() {
    let text = format!(
        "{HEADER}  datastore:\n    name: postgress\n  containers:\n  - image: cart:1\n---\napiVersion: cloudstate.io/v1alpha1\nkind: StatefulStore\nmetadata:\n  name: postgres\nspec:\n  postgres:\n    host: db\n"
    );
    let found = problems(&text);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].severity, Severity::Warning);
    assert_eq!(
        found[0].to_string(),
        "svc.yaml:7:11: spec.datastore.name: StatefulStore \"postgress\" is not among the loaded manifests"
    );
    assert_eq!(found[0].help.as_deref(), Some("did you mean \"postgres\"?"));
}

#[test]
fn literal_credentials_are_refused() {
    let text = "apiVersion: cloudstate.io/v1alpha1\nkind: StatefulStore\nmetadata: {name: pg}\nspec:\n  type: Postgres\n  config:\n    service: db\n    credentials:\n      password: hunter2\n";
    assert_eq!(
        lines(text),
        [
            "svc.yaml:9:17: spec.config.credentials.password: a literal password would be copied into every pod spec"
        ]
    );
}

#[test]
fn duplicate_objects_are_reported_with_the_first_place() {
    let doc = format!("{HEADER}  containers:\n  - image: cart:1\n");
    let found = problems(&format!("{doc}---\n{doc}"));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].to_string(), "svc.yaml:12:9: metadata.name: statefulservice/cart is declared twice");
    assert_eq!(found[0].help.as_deref(), Some("first declared at svc.yaml:4:9"));
}

#[test]
fn core_kinds_follow_kubernetes_rules() {
    let text = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: web}\nspec:\n  serviceName: web\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: wbe}}\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: web\n        image: nginx\n";
    assert_eq!(
        lines(text),
        [
            "svc.yaml:6:33: spec.selector.matchLabels.app: selector app=web does not match the template's labels",
            "svc.yaml:10:22: spec.template.spec.restartPolicy: a StatefulSet's pods must restart Always (is \"Never\")",
        ]
    );
}
