//! `sluice run` that cannot start says why: rejected credentials as an authentication
//! failure naming whose they are, a refusal as an authorization failure naming the identity,
//! and no answer at all as a connection problem naming the server.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;

use base64::Engine;

/// A ServiceAccount-shaped token (unsigned: only its `sub` claim is read, for the message).
fn token(subject: &str) -> String {
    let encode = |value: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
    };
    format!(
        "{}.{}.c2lnbmF0dXJl",
        encode(serde_json::json!({"alg": "RS256"})),
        encode(serde_json::json!({"sub": subject, "iss": "kubernetes/serviceaccount"}))
    )
}

fn kubeconfig(dir: &std::path::Path, server: &str, token: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
             clusters: [{{name: k, cluster: {{server: \"{server}\"}}}}]\n\
             users: [{{name: u, user: {{token: \"{token}\"}}}}]\n\
             contexts: [{{name: c, context: {{cluster: k, user: u}}}}]\n"
        ),
    )
    .unwrap();
    path
}

/// An HTTP server answering every request with `code` and a Kubernetes Status, in a thread.
fn answering(code: u16, reason: &str, message: &str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure",
        "reason": reason, "message": message, "code": code
    })
    .to_string();
    let reason = reason.to_owned();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 {code} {reason}\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{address}")
}

fn run(kubeconfig: &std::path::Path) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--listen", "127.0.0.1:0", "--kubeconfig"])
        .arg(kubeconfig)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const ACCOUNT: &str = "system:serviceaccount:sluice-system:sluice-operator";

#[test]
fn a_401_is_an_authentication_failure_naming_the_token_subject() {
    let dir = tempfile::tempdir().unwrap();
    let server = answering(401, "Unauthorized", "Unauthorized");
    let (ok, stderr) = run(&kubeconfig(dir.path(), &server, &token(ACCOUNT)));
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("authentication failed"), "{stderr}");
    assert!(stderr.contains("401"), "{stderr}");
    assert!(stderr.contains(ACCOUNT), "{stderr}");
    assert!(stderr.contains(&server), "{stderr}");
    assert!(!stderr.contains("cannot reach"), "{stderr}");
}

#[test]
fn a_403_is_an_authorization_failure_naming_the_identity() {
    let dir = tempfile::tempdir().unwrap();
    let server = answering(
        403,
        "Forbidden",
        "loggings.logging.sluice.dev is forbidden: User \"x\" cannot list resource",
    );
    let (ok, stderr) = run(&kubeconfig(dir.path(), &server, &token(ACCOUNT)));
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("authorization failed"), "{stderr}");
    assert!(stderr.contains("403"), "{stderr}");
    assert!(stderr.contains(ACCOUNT), "{stderr}");
    assert!(stderr.contains("cannot list resource"), "{stderr}");
}

#[test]
fn no_answer_is_a_connection_failure_naming_the_server() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: bound, then released.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = format!("http://127.0.0.1:{port}");
    let (ok, stderr) = run(&kubeconfig(dir.path(), &server, &token(ACCOUNT)));
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("cannot reach the API server at"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(!stderr.contains("authentication"), "{stderr}");
}
