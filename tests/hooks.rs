//! The chart's hook subcommands: `privx-operator probe` (the `helm test` Pod) against a real
//! HTTP listener on 127.0.0.1, and the listing behind `privx-operator uninstall-check` (the
//! pre-delete hook) against kube-rs's mock API service.

use std::time::Duration;

use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use privx_operator::controller::core::finalizer::FINALIZER;
use privx_operator::runtime::hooks::find_blocking;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_test::mock;

/// Guards against a hang (a missing mock answer); never used to assert how fast anything is.
const HANG_GUARD: Duration = Duration::from_secs(30);

/// Serves one canned HTTP answer to every connection; returns the port.
async fn serve(status_line: &'static str, body: &'static str) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            let answer = format!(
                "HTTP/1.1 {status_line}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(answer.as_bytes()).await;
        }
    });
    port
}

/// Runs `privx-operator probe` without blocking the runtime that serves the listener.
async fn probe(url: &str) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_privx-operator"))
        .args(["probe", url, "--timeout=5s"])
        .output()
        .await
        .expect("running privx-operator probe")
}

#[tokio::test]
async fn probe_succeeds_on_2xx_and_fails_naming_the_answer_otherwise() {
    let ready = serve("200 OK", "ok\n").await;
    let output = probe(&format!("http://127.0.0.1:{ready}/readyz")).await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("200 OK: ok"));

    let unready = serve("503 Service Unavailable", "watches not synced\nnote: x\n").await;
    let output = probe(&format!("http://127.0.0.1:{unready}/readyz")).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("503 Service Unavailable: watches not synced"),
        "{stderr}"
    );

    // Nothing listens on a port just released.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let output = probe(&format!("http://127.0.0.1:{closed}/readyz")).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("no answer"));
}

fn list(items: serde_json::Value) -> Response<Body> {
    let body = json!({
        "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
        "metadata": {"resourceVersion": "1"},
        "items": items,
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

fn meta(namespace: Option<&str>, name: &str, finalizers: &[&str]) -> serde_json::Value {
    json!({
        "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
        "metadata": {"name": name, "namespace": namespace, "finalizers": finalizers},
    })
}

#[tokio::test]
async fn uninstall_check_lists_metadata_of_policies_and_each_watched_namespace() {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let namespaces = vec!["team-a".to_string(), "team-b".to_string()];
    let check = tokio::spawn(async move { find_blocking(&client, &namespaces).await });

    let mut paths = Vec::new();
    for answer in [
        vec![meta(None, "kept", &[FINALIZER]), meta(None, "free", &[])],
        vec![meta(Some("team-a"), "app", &[FINALIZER])],
        vec![meta(Some("team-b"), "other", &["example.com/x"])],
    ] {
        let (request, respond) = tokio::time::timeout(HANG_GUARD, handle.next_request())
            .await
            .expect("a list request")
            .expect("the client is alive");
        assert_eq!(request.method(), http::Method::GET);
        let accept = request
            .headers()
            .get("accept")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        assert!(
            accept.contains("as=PartialObjectMetadataList"),
            "metadata only: {accept}"
        );
        paths.push(request.uri().path().to_string());
        respond.send_response(list(json!(answer)));
    }
    let found = tokio::time::timeout(HANG_GUARD, check)
        .await
        .expect("done")
        .unwrap()
        .expect("listed");
    assert_eq!(
        paths,
        [
            "/apis/privx-operator.dev/v1alpha1/passwordpolicies",
            "/apis/privx-operator.dev/v1alpha1/namespaces/team-a/vaultsecrets",
            "/apis/privx-operator.dev/v1alpha1/namespaces/team-b/vaultsecrets",
        ]
    );
    let names: Vec<String> = found
        .iter()
        .map(|b| format!("{} {}", b.kind, b.name))
        .collect();
    assert_eq!(names, ["PasswordPolicy kept", "VaultSecret team-a/app"]);
}
