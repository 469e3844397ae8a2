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
    (
        "subPath climbing out of its volume",
        "  containers:\n  - image: cart:1\n    volumeMounts:\n    - name: data\n      mountPath: /data\n      subPath: ../x\n  volumes:\n  - name: data\n    emptyDir: {}\n",
        "svc.yaml:11:16: spec.containers[0].volumeMounts[0].subPath: invalid subPath \"../x\": must not contain '..'",
        None,
    ),
    (
        "absolute subPath",
        "  containers:\n  - image: cart:1\n    volumeMounts:\n    - name: data\n      mountPath: /data\n      subPath: /etc\n  volumes:\n  - name: data\n    emptyDir: {}\n",
        "svc.yaml:11:16: spec.containers[0].volumeMounts[0].subPath: invalid subPath \"/etc\": must be a relative path",
        None,
    ),
    (
        "configMap item path climbing out",
        "  containers:\n  - image: cart:1\n  volumes:\n  - name: config\n    configMap:\n      name: cart\n      items:\n      - key: a\n        path: a/../../b\n",
        "svc.yaml:14:15: spec.volumes[0].configMap.items[0].path: invalid path \"a/../../b\": must not contain '..'",
        None,
    ),
    (
        "secret item path absolute",
        "  containers:\n  - image: cart:1\n  volumes:\n  - name: creds\n    secret:\n      secretName: cart\n      items:\n      - key: a\n        path: /etc/a\n",
        "svc.yaml:14:15: spec.volumes[0].secret.items[0].path: invalid path \"/etc/a\": must be a relative path",
        None,
    ),
    (
        "projected file over the kubelet's own",
        "  containers:\n  - image: cart:1\n  volumes:\n  - name: info\n    projected:\n      sources:\n      - downwardAPI:\n          items:\n          - path: ..data\n            fieldRef: {fieldPath: metadata.name}\n",
        "svc.yaml:14:19: spec.volumes[0].projected.sources[0].downwardAPI.items[0].path: invalid path \"..data\": must not start with '..'",
        None,
    ),
    (
        "secret volume without a secretName",
        "  containers:\n  - image: cart:1\n  volumes:\n  - name: creds\n    secret:\n      defaultMode: 0400\n",
        "svc.yaml:11:7: spec.volumes[0].secret.secretName: missing required field \"secretName\"",
        None,
    ),
    (
        "configMap volume without a name",
        "  containers:\n  - image: cart:1\n  volumes:\n  - name: conf\n    configMap: {}\n",
        "svc.yaml:10:16: spec.volumes[0].configMap.name: missing required field \"name\"",
        None,
    ),
    (
        "defaultMode out of range",
        "  containers:\n  - image: cart:1\n  volumes:\n  - name: creds\n    secret:\n      secretName: cart\n      defaultMode: 99999\n",
        "svc.yaml:12:20: spec.volumes[0].secret.defaultMode: invalid defaultMode 99999: must be a file mode between 0 and 0777 (octal; 511 in decimal)",
        None,
    ),
    (
        "octal defaultMode out of range, read as Kubernetes reads it",
        "  containers:\n  - image: cart:1\n  volumes:\n  - name: creds\n    secret:\n      secretName: cart\n      defaultMode: 01000\n",
        "svc.yaml:12:20: spec.volumes[0].secret.defaultMode: invalid defaultMode 512: must be a file mode between 0 and 0777 (octal; 511 in decimal)",
        None,
    ),
    (
        "item mode out of range",
        "  containers:\n  - image: cart:1\n  volumes:\n  - name: config\n    configMap:\n      name: cart\n      items:\n      - {key: a, path: a, mode: 1024}\n",
        "svc.yaml:13:33: spec.volumes[0].configMap.items[0].mode: invalid mode 1024: must be a file mode between 0 and 0777 (octal; 511 in decimal)",
        None,
    ),
    (
        "relative hostPath",
        "  containers:\n  - image: cart:1\n  volumes:\n  - name: host\n    hostPath:\n      path: data\n",
        "svc.yaml:11:13: spec.volumes[0].hostPath.path: invalid hostPath \"data\": must be an absolute path",
        None,
    ),
    (
        "hostPath climbing",
        "  containers:\n  - image: cart:1\n  volumes:\n  - name: host\n    hostPath:\n      path: /srv/../etc\n",
        "svc.yaml:11:13: spec.volumes[0].hostPath.path: invalid hostPath \"/srv/../etc\": must not contain '..'",
        None,
    ),
    (
        "malformed limit",
        "  containers:\n  - image: cart:1\n    resources:\n      limits:\n        memory: 5Xi\n",
        "svc.yaml:10:17: spec.containers[0].resources.limits.memory: invalid memory limit \"5Xi\": not a quantity",
        Some("a number with an optional suffix such as m, Ki, Mi, Gi, k, M, G or e3"),
    ),
    (
        "words for a request",
        "  containers:\n  - image: cart:1\n    resources:\n      requests:\n        cpu: abc\n",
        "svc.yaml:10:14: spec.containers[0].resources.requests.cpu: invalid cpu request \"abc\": not a quantity",
        Some("a number with an optional suffix such as m, Ki, Mi, Gi, k, M, G or e3"),
    ),
    (
        "negative request",
        "  containers:\n  - image: cart:1\n    resources:\n      requests:\n        memory: -1Gi\n",
        "svc.yaml:10:17: spec.containers[0].resources.requests.memory: invalid memory request \"-1Gi\": must not be negative",
        None,
    ),
    (
        "request above its limit",
        "  containers:\n  - image: cart:1\n    resources:\n      requests: {memory: 2Gi}\n      limits: {memory: 1Gi}\n",
        "svc.yaml:9:26: spec.containers[0].resources.requests.memory: memory request \"2Gi\" is more than its limit \"1Gi\"",
        None,
    ),
    (
        "negative sidecar limit",
        "  sidecarResources:\n    limits: {cpu: -1}\n  containers:\n  - image: cart:1\n",
        "svc.yaml:7:19: spec.sidecarResources.limits.cpu: invalid cpu limit \"-1\": must not be negative",
        None,
    ),
    (
        "negative storage",
        "  containers:\n  - image: cart:1\n  volumeClaimTemplates:\n  - metadata: {name: data}\n    spec:\n      resources:\n        requests:\n          storage: -1Gi\n",
        "svc.yaml:13:20: spec.volumeClaimTemplates[0].spec.resources.requests.storage: invalid storage request \"-1Gi\": must not be negative",
        None,
    ),
    (
        "no storage at all",
        "  containers:\n  - image: cart:1\n  volumeClaimTemplates:\n  - metadata: {name: data}\n    spec:\n      resources:\n        requests:\n          storage: 0\n",
        "svc.yaml:13:20: spec.volumeClaimTemplates[0].spec.resources.requests.storage: invalid storage request \"0\": must be greater than zero",
        None,
    ),
];

/// (what, a whole document, the one problem expected, its help if any)
const DOCUMENT_CASES: &[(&str, &str, &str, Option<&str>)] = &[
    (
        "ConfigMap key climbing out of its volume",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  ../../etc/passwd: x\n",
        "svc.yaml:5:21: data[\"../../etc/passwd\"]: invalid key \"../../etc/passwd\": must consist of alphanumerics, '-', '_' or '.'",
        None,
    ),
    (
        "ConfigMap key with a slash",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\nbinaryData:\n  a/b: eA==\n",
        "svc.yaml:5:8: binaryData[\"a/b\"]: invalid key \"a/b\": must consist of alphanumerics, '-', '_' or '.'",
        None,
    ),
    (
        "Secret key '..'",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData:\n  \"..\": x\n",
        "svc.yaml:5:9: stringData[\"..\"]: invalid key \"..\": must not be '..'",
        None,
    ),
    (
        "Secret key over the kubelet's own",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata:\n  ..data: eA==\n",
        "svc.yaml:5:11: data[\"..data\"]: invalid key \"..data\": must not start with '..'",
        None,
    ),
    (
        "nodePort outside the range",
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  type: NodePort\n  ports:\n  - {port: 80, nodePort: 22}\n",
        "svc.yaml:7:26: spec.ports[0].nodePort: invalid nodePort 22: must be in the node port range 30000-32767",
        None,
    ),
    (
        "nodePort on a ClusterIP Service",
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports:\n  - {port: 80, nodePort: 30080}\n",
        "svc.yaml:6:26: spec.ports[0].nodePort: nodePort may only be set on a Service of type NodePort or LoadBalancer (this one is ClusterIP)",
        None,
    ),
    (
        "subPath in a Deployment's template",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      - name: web\n        image: nginx\n        volumeMounts: [{name: d, mountPath: /d, subPath: ../../x}]\n      volumes: [{name: d, emptyDir: {}}]\n",
        "svc.yaml:12:58: spec.template.spec.containers[0].volumeMounts[0].subPath: invalid subPath \"../../x\": must not contain '..'",
        None,
    ),
    (
        "malformed storage of a PersistentVolumeClaim",
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec:\n  resources: {requests: {storage: lots}}\n",
        "svc.yaml:5:35: spec.resources.requests.storage: invalid storage request \"lots\": not a quantity",
        Some("a number with an optional suffix such as m, Ki, Mi, Gi, k, M, G or e3"),
    ),
    (
        "StatefulSet claim template with no storage",
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n  serviceName: db\n  selector: {matchLabels: {app: db}}\n  template:\n    metadata: {labels: {app: db}}\n    spec:\n      containers: [{name: db, image: pg}]\n  volumeClaimTemplates:\n  - metadata: {name: data}\n    spec: {resources: {requests: {storage: 0Gi}}}\n",
        "svc.yaml:13:44: spec.volumeClaimTemplates[0].spec.resources.requests.storage: invalid storage request \"0Gi\": must be greater than zero",
        None,
    ),
];

fn check(found: &[Problem], what: &str, expected: &str, help: Option<&str>, failures: &mut Vec<String>) {
    let errors: Vec<&Problem> = found.iter().filter(|p| p.severity == Severity::Error).collect();
    let ok = errors.len() == 1 && errors[0].to_string() == expected && errors[0].help.as_deref() == help;
    if !ok {
        let got: Vec<String> = errors.iter().map(|p| format!("{p} [help: {:?}]", p.help)).collect();
        failures.push(format!("{what}:\n  expected {expected} [help: {help:?}]\n  got      {got:#?}"));
    }
}

#[test]
fn each_broken_input_is_reported_at_its_field() {
    let mut failures = Vec::new();
    for (what, body, expected, help) in CASES {
        check(&problems(&format!("{HEADER}{body}")), what, expected, *help, &mut failures);
    }
    for (what, document, expected, help) in DOCUMENT_CASES {
        check(&problems(document), what, expected, *help, &mut failures);
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
