//! `/exec` over WebSocket, in the channel protocol kubectl speaks (`v5.channel.k8s.io`, and
//! `v4.channel.k8s.io`): every binary message starts with its channel, 0 stdin, 1 stdout,
//! 2 stderr, 3 error (the outcome, a `metav1.Status`), 4 resize (`{"Width":..,"Height":..}`);
//! v5 adds 255, whose second byte names a channel the client has closed (stdin's EOF).

use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::runtime::{ExecRequest, ExecSession};

pub const PROTOCOL_V5: &str = "v5.channel.k8s.io";
pub const PROTOCOL_V4: &str = "v4.channel.k8s.io";

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
pub const CLOSE: u8 = 255;

/// How long output may keep coming after the process exited (a child it left behind can hold
/// stdout open).
const OUTPUT_DRAIN: Duration = Duration::from_secs(5);
/// How long a tty session waits for the client's terminal size before it starts anyway.
const FIRST_RESIZE_WAIT: Duration = Duration::from_secs(1);
/// The exit code reported when the command could not be started, as runc-based runtimes do.
const EXEC_FAILED_CODE: i32 = 126;

/// The protocol to answer with, from the client's `Sec-WebSocket-Protocol` offers.
pub fn negotiate(offered: &str) -> Option<&'static str> {
    let offers: Vec<&str> = offered.split(',').map(str::trim).collect();
    [PROTOCOL_V5, PROTOCOL_V4]
        .into_iter()
        .find(|p| offers.contains(p))
}

/// The exec request's query: `command` (repeated), `stdin`, `stdout`, `stderr`, `tty`.
pub fn request_from_query(query: &[(String, String)]) -> Result<ExecRequest, String> {
    let flag = |v: &str| matches!(v, "true" | "1" | "True" | "TRUE");
    let mut r = ExecRequest::default();
    for (k, v) in query {
        match k.as_str() {
            "command" => r.command.push(v.clone()),
            "input" | "stdin" => r.stdin = flag(v),
            "output" | "stdout" => r.stdout = flag(v),
            "error" | "stderr" => r.stderr = flag(v),
            "tty" => r.tty = flag(v),
            _ => {}
        }
    }
    if r.command.is_empty() {
        return Err("you must specify at least one command for the container".into());
    }
    if !r.stdin && !r.stdout && !r.stderr {
        return Err("you must specify at least 1 of stdin, stdout, stderr".into());
    }
    if r.tty && r.stderr {
        // A terminal has one output stream; kubectl asks for stderr off with -t.
        r.stderr = false;
    }
    Ok(r)
}

/// One message from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientFrame<'a> {
    Stdin(&'a [u8]),
    Resize {
        width: u16,
        height: u16,
    },
    /// The client closed this channel (v5).
    Close(u8),
    /// Empty, or for a channel the server does not read.
    Ignored,
}

pub fn parse_client_frame(data: &[u8]) -> ClientFrame<'_> {
    match data {
        [STDIN, rest @ ..] => ClientFrame::Stdin(rest),
        [RESIZE, rest @ ..] => {
            let size: Value = serde_json::from_slice(rest).unwrap_or(Value::Null);
            let get = |k: &str| {
                size.get(k)
                    .and_then(Value::as_u64)
                    .and_then(|n| u16::try_from(n).ok())
            };
            match (get("Width"), get("Height")) {
                (Some(width), Some(height)) => ClientFrame::Resize { width, height },
                _ => ClientFrame::Ignored,
            }
        }
        [CLOSE, channel, ..] => ClientFrame::Close(*channel),
        _ => ClientFrame::Ignored,
    }
}

/// A server message: the channel, then the data.
pub fn frame(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 1);
    out.push(channel);
    out.extend_from_slice(data);
    out
}

/// The error channel's outcome: Success, or Kubernetes' NonZeroExitCode Failure whose
/// cause carries the exit code (what kubectl exits with).
pub fn exit_status(command: &[String], code: i32) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: command '{}' exited with {code}",
            command.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// An InternalError Status, for failures that are not the command's.
pub fn internal_error(message: &str) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("Internal error occurred: {message}"),
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    })
}

/// Runs the exec session over the upgraded connection: starts the process with `start`
/// (with a tty, once the client's first terminal size is in, so that the process starts at
/// that size), relays the streams until the process exits and its output is sent, then
/// reports the exit code and closes. A client that goes away kills the process.
pub async fn serve<S, F>(
    ws: WebSocketStream<S>,
    protocol: &'static str,
    mut request: ExecRequest,
    start: impl FnOnce(ExecRequest) -> F,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: std::future::Future<Output = Result<ExecSession, String>>,
{
    let (mut sink, mut incoming) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(32);
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            let close = matches!(m, Message::Close(_));
            if sink.send(m).await.is_err() || close {
                break;
            }
        }
        let _ = sink.close().await;
    });
    // The client's messages, in order; the channel closes when the client does.
    let (in_tx, mut in_rx) = mpsc::channel::<Vec<u8>>(32);
    let reader = tokio::spawn(async move {
        while let Some(message) = incoming.next().await {
            match message {
                Ok(Message::Binary(b)) => {
                    if in_tx.send(b.to_vec()).await.is_err() {
                        break;
                    }
                }
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    });
    let send_frame = |channel: u8, data: &[u8]| Message::Binary(frame(channel, data).into());
    // An empty message on the first writable channel tells the client the streams are up.
    let first = if request.stdout {
        STDOUT
    } else if request.stderr {
        STDERR
    } else {
        ERROR
    };
    let _ = out_tx.send(send_frame(first, &[])).await;

    let mut early = std::collections::VecDeque::new();
    if request.tty {
        let first_size = async {
            while let Some(data) = in_rx.recv().await {
                if let ClientFrame::Resize { width, height } = parse_client_frame(&data) {
                    return Some((width, height));
                }
                early.push_back(data);
            }
            None
        };
        if let Ok(size) = tokio::time::timeout(FIRST_RESIZE_WAIT, first_size).await {
            request.console_size = size;
        }
    }

    let session = match start(request.clone()).await {
        Ok(s) => s,
        Err(message) => {
            // The command did not start: its message on the output, exit code 126.
            let channel = if request.stderr { STDERR } else { STDOUT };
            let _ = out_tx
                .send(send_frame(channel, format!("{message}\n").as_bytes()))
                .await;
            finish(
                &out_tx,
                &exit_status(&request.command, EXEC_FAILED_CODE),
                writer,
            )
            .await;
            reader.abort();
            return;
        }
    };
    let ExecSession {
        stdin,
        stdout,
        stderr,
        process,
    } = session;
    let pumps: Vec<_> = [(STDOUT, stdout), (STDERR, stderr)]
        .into_iter()
        .filter_map(|(ch, s)| s.map(|s| tokio::spawn(pump(ch, s, out_tx.clone()))))
        .collect();

    // The client's side: stdin, resizes, close signals; it ends when the client does.
    let (gone_tx, mut gone_rx) = tokio::sync::oneshot::channel::<()>();
    let client_process = process.clone();
    let client = tokio::spawn(async move {
        let mut stdin = stdin;
        loop {
            let data = match early.pop_front() {
                Some(d) => d,
                None => match in_rx.recv().await {
                    Some(d) => d,
                    None => break,
                },
            };
            match parse_client_frame(&data) {
                ClientFrame::Stdin(bytes) => {
                    if let Some(s) = stdin.as_mut()
                        && s.write_all(bytes).await.is_err()
                    {
                        stdin = None;
                    }
                }
                ClientFrame::Resize { width, height } => {
                    if let Err(e) = client_process.resize(width, height).await {
                        tracing::debug!("exec resize: {e}");
                    }
                }
                ClientFrame::Close(STDIN) if protocol == PROTOCOL_V5 => {
                    if stdin.take().is_some()
                        && let Err(e) = client_process.close_stdin().await
                    {
                        tracing::debug!("exec close stdin: {e}");
                    }
                }
                _ => {}
            }
        }
        let _ = gone_tx.send(());
    });

    let code = tokio::select! {
        code = process.wait() => Some(code),
        _ = &mut gone_rx => None,
    };
    let code = match code {
        Some(code) => code,
        None => {
            tracing::debug!(exec = %process.exec_id(), "exec client went away; killing the process");
            process.kill().await;
            process.cleanup().await;
            reader.abort();
            client.abort();
            for p in pumps {
                p.abort();
            }
            writer.abort();
            return;
        }
    };
    for p in pumps {
        if tokio::time::timeout(OUTPUT_DRAIN, p).await.is_err() {
            tracing::debug!(exec = %process.exec_id(), "exec output still open after the exit");
        }
    }
    process.cleanup().await;
    let status = match code {
        Ok(code) => exit_status(&request.command, code),
        Err(e) => internal_error(&e.to_string()),
    };
    finish(&out_tx, &status, writer).await;
    reader.abort();
    client.abort();
}

async fn finish(out: &mpsc::Sender<Message>, status: &Value, writer: tokio::task::JoinHandle<()>) {
    let status = serde_json::to_vec(status).unwrap_or_default();
    let _ = out
        .send(Message::Binary(frame(ERROR, &status).into()))
        .await;
    // A normal closure: kubectl takes any other close as the streams failing.
    let close = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let _ = out.send(Message::Close(Some(close))).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
}

async fn pump(channel: u8, mut from: impl AsyncRead + Unpin, to: mpsc::Sender<Message>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let m = Message::Binary(frame(channel, &buf[..n]).into());
                if to.send(m).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        assert_eq!(frame(STDOUT, b"hi"), vec![1, b'h', b'i']);
        assert_eq!(parse_client_frame(&[0, b'x']), ClientFrame::Stdin(b"x"));
        assert_eq!(
            parse_client_frame(b"\x04{\"Width\":80,\"Height\":24}"),
            ClientFrame::Resize {
                width: 80,
                height: 24
            }
        );
        assert_eq!(parse_client_frame(&[255, 0]), ClientFrame::Close(STDIN));
        assert_eq!(parse_client_frame(&[]), ClientFrame::Ignored);
        assert_eq!(parse_client_frame(b"\x04{}"), ClientFrame::Ignored);
    }

    #[test]
    fn protocols() {
        assert_eq!(
            negotiate("v5.channel.k8s.io, v4.channel.k8s.io"),
            Some(PROTOCOL_V5)
        );
        assert_eq!(negotiate("v4.channel.k8s.io"), Some(PROTOCOL_V4));
        assert_eq!(negotiate("channel.k8s.io"), None);
    }

    #[test]
    fn statuses() {
        let cmd = vec!["sh".to_string(), "-c".to_string(), "exit 3".to_string()];
        let s = exit_status(&cmd, 3);
        assert_eq!(s["status"], "Failure");
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");
        assert_eq!(exit_status(&cmd, 0)["status"], "Success");
    }

    #[test]
    fn queries() {
        let q = |pairs: &[(&str, &str)]| {
            let v: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            request_from_query(&v)
        };
        let r = q(&[
            ("command", "sh"),
            ("command", "-c"),
            ("command", "echo hi"),
            ("stdout", "true"),
            ("stderr", "true"),
            ("tty", "true"),
        ])
        .expect("request");
        assert_eq!(r.command, ["sh", "-c", "echo hi"]);
        assert!(r.stdout && r.tty && !r.stderr && !r.stdin);
        assert!(q(&[("stdout", "1")]).is_err());
        assert!(q(&[("command", "ls")]).is_err());
    }
}
