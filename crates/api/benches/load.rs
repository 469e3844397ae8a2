//! Time to load and validate one file of 1 to 10,000 StatefulServices, and to load, validate and
//! draw every diagnostic of a file of 20 to 20,000 errors, each with its growth per 10x: 10.0 is
//! linear; the quadratic loader this replaced grew about 100-fold per 10x (491 s at 1,000
//! services). Prints; asserts nothing. Run: `cargo bench -p stead-api --bench load`.

use miette::{GraphicalReportHandler, GraphicalTheme};
use std::time::{Duration, Instant};
use stead_api::{SourceFile, load_source, validate};

/// An ordinary StatefulService of about 2.5 KB: a user container with ports, environment,
/// probes, resources and a mount, a log shipper, a volume, a claim template, labels.
fn service(i: usize) -> String {
    let env: String =
        (0..12).map(|j| format!("    - name: SETTING_{j}\n      value: \"value-{j}\"\n")).collect();
    format!(
        r#"apiVersion: cloudstate.io/v1alpha1
kind: StatefulService
metadata:
  name: cart-{i}
  namespace: shop
  labels:
    app.kubernetes.io/name: cart-{i}
    app.kubernetes.io/part-of: shop
  annotations:
    example.com/owner: team-{i}
spec:
  replicas: 3
  serviceName: cart-{i}-pods
  datastore:
    name: store
  containers:
  - image: registry.example.com/shop/cart:1.{i}
    ports:
    - containerPort: 8080
      name: grpc
    env:
{env}    resources:
      requests: {{cpu: 100m, memory: 128Mi}}
      limits: {{cpu: "1", memory: 512Mi}}
    readinessProbe:
      tcpSocket: {{port: 8080}}
      periodSeconds: 5
    livenessProbe:
      httpGet: {{path: /health, port: 8080}}
      initialDelaySeconds: 10
    volumeMounts:
    - name: config
      mountPath: /etc/cart
      readOnly: true
    - name: data
      mountPath: /var/lib/cart
      subPath: cart
  - name: log-shipper
    image: registry.example.com/shop/shipper:2
    args: ["--source", "/var/log/cart", "--target", "logs.example.com:514"]
    resources:
      requests: {{cpu: 10m, memory: 16Mi}}
  volumes:
  - name: config
    configMap:
      name: cart-config
      defaultMode: 0444
      items:
      - {{key: app.properties, path: app.properties}}
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {{requests: {{storage: 1Gi}}}}
"#
    )
}

/// A service with four errors: a port out of range, a bad container name, a malformed
/// quantity, a subPath that climbs out of its volume.
fn broken(i: usize) -> String {
    format!(
        "apiVersion: cloudstate.io/v1alpha1\nkind: StatefulService\nmetadata:\n  name: cart-{i}\nspec:\n  containers:\n  - image: cart:1\n    ports: [{{containerPort: 70000}}]\n    resources: {{limits: {{memory: 5Xi}}}}\n    volumeMounts: [{{name: d, mountPath: /d, subPath: ../x}}]\n  - {{name: Bad_{i}, image: ship:1}}\n  volumes: [{{name: d, emptyDir: {{}}}}]\n"
    )
}

const STORE: &str = "apiVersion: cloudstate.io/v1alpha1\nkind: StatefulStore\nmetadata:\n  name: store\n  namespace: shop\nspec:\n  inMemory: true\n";

/// Runs `f` at least once and for at least `min` in all; the mean time of one run.
fn time(min: Duration, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    let mut runs = 0u32;
    while runs == 0 || start.elapsed() < min {
        f();
        runs += 1;
    }
    start.elapsed() / runs
}

fn row(label: &str, n: usize, bytes: usize, took: Duration, previous: Option<Duration>) {
    let growth =
        previous.map_or_else(|| "-".to_owned(), |p| format!("{:.1}x", took.as_secs_f64() / p.as_secs_f64()));
    println!(
        "{label} {n:>6}: {:>9.2} ms  ({:>6.1} KB, {:>7.1} us each)  growth per 10x: {growth}",
        took.as_secs_f64() * 1e3,
        bytes as f64 / 1e3,
        took.as_secs_f64() * 1e6 / n as f64,
    );
}

fn main() {
    let min = Duration::from_millis(500);
    println!("load + validate, ordinary StatefulServices in one file:");
    let mut previous = None;
    for n in [1, 10, 100, 1_000, 10_000] {
        let mut docs: Vec<String> = (0..n).map(service).collect();
        docs.push(STORE.to_owned());
        let text = docs.join("---\n");
        let took = time(min, || {
            let loaded = load_source(SourceFile::new("services.yaml", text.as_str()));
            let problems = validate(&loaded.documents);
            assert!(
                loaded.problems.is_empty() && problems.is_empty(),
                "{:?}",
                loaded.problems.first().or(problems.first()).map(ToString::to_string)
            );
            std::hint::black_box((loaded, problems));
        });
        row("services", n, text.len(), took, previous);
        previous = Some(took);
    }

    println!("load + validate + draw every diagnostic, 4 errors per service:");
    let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor()).with_context_lines(2);
    let mut previous = None;
    for n in [5, 50, 500, 5_000] {
        let text = (0..n).map(broken).collect::<Vec<_>>().join("---\n");
        let took = time(min, || {
            let loaded = load_source(SourceFile::new("broken.yaml", text.as_str()));
            let mut problems = loaded.problems;
            problems.extend(validate(&loaded.documents));
            assert_eq!(problems.len(), 4 * n);
            let mut out = String::new();
            for p in &problems {
                handler.render_report(&mut out, p).expect("draws");
            }
            std::hint::black_box(out);
        });
        row("errors  ", 4 * n, text.len(), took, previous);
        previous = Some(took);
    }
}
