//! A strict fake API server over `tower_test::mock`: it plays a script of exchanges in order,
//! asserting each request (method, path with query, body) and answering as the API server would.
//! A missing request times out with its description; an extra request fails the test.

#![allow(dead_code)]

use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value as J, json};
use std::time::Duration;
use tokio::sync::oneshot;
use tower_test::mock::Handle;

/// What a request's body must be.
pub enum Expect {
    /// No body (GET, LIST).
    Empty,
    /// Exactly this JSON.
    Json(J),
    /// Checked by a function.
    Check(Box<dyn Fn(&J) + Send>),
}

pub struct Exchange {
    pub method: &'static str,
    pub uri: String,
    pub body: Expect,
    pub status: u16,
    pub reply: J,
}

pub fn get(uri: impl Into<String>, status: u16, reply: J) -> Exchange {
    Exchange { method: "GET", uri: uri.into(), body: Expect::Empty, status, reply }
}

pub fn patch(uri: impl Into<String>, body: J, reply: J) -> Exchange {
    Exchange { method: "PATCH", uri: uri.into(), body: Expect::Json(body), status: 200, reply }
}

pub fn not_found(what: &str) -> J {
    status(404, "NotFound", &format!("{what} not found"))
}

pub fn status(code: u16, reason: &str, message: &str) -> J {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code})
}

pub type ApiHandle = Handle<Request<Body>, Response<Body>>;

/// A client over a fresh mock, and the server end.
pub fn client() -> (kube::Client, ApiHandle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), handle)
}

/// Plays `script`, then fails on any further request until `done` fires. Returns the request
/// bodies it saw (JSON, or Null when empty).
pub async fn serve(mut handle: ApiHandle, script: Vec<Exchange>, done: oneshot::Receiver<()>) -> Vec<J> {
    let mut seen = Vec::new();
    for (i, ex) in script.into_iter().enumerate() {
        let (req, send) = tokio::time::timeout(Duration::from_secs(2), handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("request #{i} never came: expected {} {}", ex.method, ex.uri))
            .unwrap_or_else(|| panic!("client dropped before request #{i}: {} {}", ex.method, ex.uri));
        let (method, uri) = (req.method().to_string(), req.uri().to_string());
        assert_eq!((method.as_str(), uri.as_str()), (ex.method, ex.uri.as_str()), "request #{i}");
        if ex.method == "PATCH" {
            let content_type = req.headers().get("content-type").and_then(|v| v.to_str().ok());
            if uri.contains("fieldManager=stead") {
                assert_eq!(content_type, Some("application/apply-patch+yaml"), "request #{i}: {uri}");
            }
        }
        let bytes = req.into_body().collect_bytes().await.expect("request body");
        let body: J =
            if bytes.is_empty() { J::Null } else { serde_json::from_slice(&bytes).expect("json body") };
        match &ex.body {
            Expect::Empty => assert_eq!(body, J::Null, "request #{i} {uri} has a body"),
            Expect::Json(want) => {
                assert_eq!(&body, want, "request #{i} {uri}: body differs")
            }
            Expect::Check(check) => check(&body),
        }
        seen.push(body);
        let response = Response::builder()
            .status(ex.status)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&ex.reply).expect("reply")))
            .expect("response");
        send.send_response(response);
    }
    tokio::select! {
        extra = handle.next_request() => {
            if let Some((req, _)) = extra {
                panic!("unexpected request: {} {}", req.method(), req.uri());
            }
        }
        _ = done => {}
    }
    seen
}

/// Runs `work` against a server playing `script`; both must finish within 10 s.
pub async fn scenario<T, F>(handle: ApiHandle, script: Vec<Exchange>, work: F) -> (T, Vec<J>)
where
    F: std::future::Future<Output = T>,
{
    let (done_tx, done_rx) = oneshot::channel();
    let server = tokio::spawn(serve(handle, script, done_rx));
    let out = tokio::time::timeout(Duration::from_secs(10), work).await.expect("work timed out");
    let _ = done_tx.send(());
    let seen = match tokio::time::timeout(Duration::from_secs(5), server).await.expect("server timed out") {
        Ok(seen) => seen,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    (out, seen)
}
