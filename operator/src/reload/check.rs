//! The data-plane binary's own check of a revision (`fluentd --dry-run`,
//! `fluent-bit --dry-run`): the same binary and plugins as the running process, so what it
//! accepts is what the process will load.

use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncReadExt;

use super::Settings;

/// How much of the check's output is kept: the end, where the error is.
const OUTPUT_KEPT: usize = 8 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    /// With what the binary printed (or why it could not run).
    Rejected(String),
}

/// The check's argv with `{dir}` replaced by the revision directory.
fn argv(settings: &Settings, dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy();
    settings
        .validate
        .iter()
        .map(|arg| arg.replace("{dir}", &dir))
        .collect()
}

fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(OUTPUT_KEPT);
    String::from_utf8_lossy(&bytes[start..]).trim().to_owned()
}

async fn read_all(pipe: Option<impl AsyncReadExt + Unpin>) -> Vec<u8> {
    let mut buffer = Vec::new();
    if let Some(mut pipe) = pipe {
        let _ = pipe.read_to_end(&mut buffer).await;
    }
    buffer
}

/// Runs the check on the revision in `dir`. A check that outlives the timeout is killed with
/// everything it started (its own process group) and counts as a rejection.
pub async fn run(settings: &Settings, dir: &Path) -> Verdict {
    let argv = argv(settings, dir);
    let Some((program, args)) = argv.split_first() else {
        return Verdict::Rejected("no check command configured".to_owned());
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => return Verdict::Rejected(format!("cannot run {program}: {error}")),
    };
    let group = child.id();
    let stdout = tokio::spawn(read_all(child.stdout.take()));
    let stderr = tokio::spawn(read_all(child.stderr.take()));
    let status = tokio::time::timeout(settings.validate_timeout, child.wait()).await;
    let timed_out = status.is_err();
    if timed_out && let Some(group) = group.and_then(|id| i32::try_from(id).ok()) {
        if let Some(pid) = rustix::process::Pid::from_raw(group) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = child.wait().await;
    }
    let stdout = stdout.await.unwrap_or_default();
    let stderr = stderr.await.unwrap_or_default();
    let output = [tail(&stdout), tail(&stderr)]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    match status {
        Err(_) => Verdict::Rejected(format!(
            "the check timed out after {:?} and was killed; its output: {}",
            settings.validate_timeout, output
        )),
        Ok(Err(error)) => Verdict::Rejected(format!("waiting for {program}: {error}")),
        Ok(Ok(status)) if status.success() => Verdict::Accepted,
        Ok(Ok(status)) => Verdict::Rejected(format!("{status}: {output}")),
    }
}
