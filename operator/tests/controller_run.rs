//! `sluice run` end to end against a small fake API server (lists, hanging watches, applies):
//! the wiring of caches, controller, reconcile, HTTP endpoints and shutdown, which the
//! mock-API tests of single reconciles do not cover.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};

use sluice::controller::{ControlNamespaces, Options, Settings, run_with};

#[derive(Clone, Default)]
struct Fake {
    /// method, path, query of every request.
    calls: Arc<Mutex<Vec<(String, String, String)>>>,
    /// Items returned when this collection path is listed.
    lists: Arc<BTreeMap<String, Vec<Value>>>,
}

fn json_response(code: StatusCode, value: &Value) -> Response {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(value).unwrap_or_default()))
        .unwrap_or_default()
}

async fn handle(State(fake): State<Fake>, method: Method, uri: Uri, body: Bytes) -> Response {
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or("").to_owned();
    fake.calls.lock().unwrap_or_else(|e| e.into_inner()).push((
        method.to_string(),
        path.clone(),
        query.clone(),
    ));
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match method {
        Method::GET if query.contains("watch=") => {
            // A watch that never sends anything: the caches stay as listed.
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .body(Body::from_stream(futures::stream::pending::<
                    Result<Bytes, std::io::Error>,
                >()))
                .unwrap_or_default()
        }
        Method::GET if query.contains("limit=") => {
            let items = fake.lists.get(&path).cloned().unwrap_or_default();
            json_response(
                StatusCode::OK,
                &json!({"apiVersion": "v1", "kind": "List",
                        "metadata": {"resourceVersion": "1"}, "items": items}),
            )
        }
        Method::GET => json_response(
            StatusCode::NOT_FOUND,
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": "NotFound", "code": 404}),
        ),
        _ => {
            let mut echo = body;
            if echo.get("metadata").is_none() {
                echo["metadata"] = json!({"name": "x"});
            }
            echo["metadata"]["resourceVersion"] = json!("2");
            json_response(StatusCode::OK, &echo)
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn http_get(port: u16, path: &str) -> String {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream =
            std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("{e}"));
        let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_caches_reconciles_serves_and_stops() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let logging = json!({
        "apiVersion": "logging.sluice.dev/v1alpha1", "kind": "Logging",
        "metadata": {"name": "main", "uid": "uid-main", "generation": 1, "resourceVersion": "1"},
        "spec": {"controlNamespace": "logging"}
    });
    let fake = Fake {
        lists: Arc::new(BTreeMap::from([(
            "/apis/logging.sluice.dev/v1alpha1/loggings".to_owned(),
            vec![logging],
        )])),
        ..Fake::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let address = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(fake.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let url: http::Uri = format!("http://{address}")
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let client = kube::Client::try_from(kube::Config::new(url)).unwrap_or_else(|e| panic!("{e}"));
    let port = free_port();
    let options = Options {
        kubeconfig: None,
        listen: ([127, 0, 0, 1], port).into(),
        lease: None,
        identity: "test".to_owned(),
        control_namespaces: ControlNamespaces::Only(vec!["logging".to_owned()]),
        concurrency: 2,
        debounce: Duration::from_millis(100),
        settings: Settings::default(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(run_with(client, options, async move {
        let _ = stopped.await;
    }));

    let daemon_set = "/apis/apps/v1/namespaces/logging/daemonsets/main-agent";
    let calls = || fake.calls.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !calls()
        .iter()
        .any(|(m, p, _)| m == "PATCH" && p == daemon_set)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no DaemonSet applied; requests: {:#?}",
            calls()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let calls = calls();
    let apply = calls
        .iter()
        .find(|(m, p, _)| m == "PATCH" && p == daemon_set)
        .unwrap_or_else(|| panic!("no apply"));
    assert!(
        apply.2.contains("fieldManager=sluice.dev%2Foperator"),
        "{}",
        apply.2
    );
    assert!(apply.2.contains("force=true"), "{}", apply.2);
    // Secrets are listed only in the control namespace, only Sluice's own.
    assert!(
        calls.iter().all(|(_, p, _)| p != "/api/v1/secrets"),
        "cluster-wide Secret list"
    );
    let secret_list = calls
        .iter()
        .find(|(m, p, q)| {
            m == "GET" && p == "/api/v1/namespaces/logging/secrets" && q.contains("limit=")
        })
        .unwrap_or_else(|| panic!("no Secret list: {calls:#?}"));
    assert!(
        secret_list
            .2
            .contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dsluice"),
        "{}",
        secret_list.2
    );

    let ready = http_get(port, "/readyz").await;
    assert!(
        ready.starts_with("HTTP/1.0 200") || ready.starts_with("HTTP/1.1 200"),
        "{ready}"
    );
    let metrics = http_get(port, "/metrics").await;
    assert!(
        metrics.contains("sluice_reconciles_total{kind=\"Logging\"}"),
        "{metrics}"
    );

    let _ = stop.send(());
    let result = tokio::time::timeout(Duration::from_secs(15), operator)
        .await
        .unwrap_or_else(|_| panic!("did not stop"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(result.is_ok(), "{result:?}");
}
