//! Commands run in a running container through containerd's task Exec API: the process
//! spec is the container's own (env, working directory, user, capabilities) with other
//! arguments, and its stdio goes through FIFOs the kubelet creates and the runc shim opens.
//!
//! [`Runtime::exec_sync`] runs a command to its end and collects its output (exec probes);
//! [`Runtime::exec`] starts one with streams for the kubelet server's `/exec`.

use std::path::PathBuf;
use std::time::Duration;

use containerd_client::services::v1::{
    CloseIoRequest, DeleteProcessRequest, ExecProcessRequest, GetContainerRequest, KillRequest,
    ResizePtyRequest, StartRequest, WaitRequest,
};
use containerd_client::tonic::Code;
use serde_json::Value;
use tokio::io::AsyncReadExt as _;
use tokio::net::unix::pipe;

use super::{ContainerId, Error, Result, SIGKILL, cd_err};
use crate::containerd::{Containerd, RpcExt as _};

const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
/// How long the shim may take to open the FIFOs of a started process.
const FIFO_OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the output of a process that was killed on timeout may take to drain.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// What a command run to its end gave.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// A command to start in a container, and which of its streams to attach.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecRequest {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    /// Ignored with a tty, whose output is all on stdout.
    pub stderr: bool,
    pub tty: bool,
    /// The tty's size at start, `(width, height)`.
    pub console_size: Option<(u16, u16)>,
}

/// A started command's streams (those asked for) and its handle.
#[derive(Debug)]
pub struct ExecSession {
    pub stdin: Option<pipe::Sender>,
    pub stdout: Option<pipe::Receiver>,
    pub stderr: Option<pipe::Receiver>,
    pub process: ExecProcess,
}

/// A started exec process: resize its terminal, close its stdin, wait for it, kill it.
/// [`ExecProcess::cleanup`] deletes it in containerd and removes its FIFOs; clones share the
/// process.
#[derive(Clone, Debug)]
pub struct ExecProcess {
    cd: Containerd,
    container: String,
    exec_id: String,
    dir: PathBuf,
}

impl super::Runtime {
    /// Runs `command` in the container and returns its exit code and output; the process
    /// is killed when it runs longer than `timeout`, which is an error.
    pub async fn exec_sync(
        &self,
        container: &ContainerId,
        command: Vec<String>,
        timeout: Duration,
    ) -> Result<ExecOutput> {
        let request = ExecRequest {
            command,
            stdin: false,
            stdout: true,
            stderr: true,
            tty: false,
            console_size: None,
        };
        let session = self.exec(container, &request).await?;
        let ExecSession {
            stdout,
            stderr,
            process,
            ..
        } = session;
        let run = async {
            let (out, err, code) = tokio::join!(drain(stdout), drain(stderr), process.wait());
            Ok::<_, Error>(ExecOutput {
                exit_code: code?,
                stdout: out,
                stderr: err,
            })
        };
        let outcome = match tokio::time::timeout(timeout, run).await {
            Ok(r) => r,
            Err(_) => {
                process.kill().await;
                let _ = tokio::time::timeout(DRAIN_TIMEOUT, process.wait()).await;
                Err(Error::Exec {
                    container: container.0.clone(),
                    reason: format!(
                        "command timed out after {}",
                        humantime_secs(timeout.as_secs_f64())
                    ),
                })
            }
        };
        process.cleanup().await;
        outcome
    }

    /// Starts `request.command` in the container with FIFOs for the streams asked for.
    /// The caller reads and writes the streams, then waits for the process and cleans up.
    pub async fn exec(
        &self,
        container: &ContainerId,
        request: &ExecRequest,
    ) -> Result<ExecSession> {
        let id = container.0.as_str();
        if request.command.is_empty() {
            return Err(Error::Exec {
                container: id.to_string(),
                reason: "no command given".into(),
            });
        }
        let process_spec = self.process_spec(id, request).await?;
        let exec_id = format!("exec-{}", uuid::Uuid::new_v4().simple());
        let dir = std::env::temp_dir().join("keelson-exec").join(&exec_id);
        let fifo_err = |source: std::io::Error| Error::Exec {
            container: id.to_string(),
            reason: format!("cannot create FIFOs in {}: {source}", dir.display()),
        };
        std::fs::create_dir_all(&dir).map_err(fifo_err)?;
        let process = ExecProcess {
            cd: self.cd.clone(),
            container: id.to_string(),
            exec_id: exec_id.clone(),
            dir: dir.clone(),
        };
        let want_stderr = request.stderr && !request.tty;
        let paths = [
            request.stdin.then(|| dir.join("stdin")),
            request.stdout.then(|| dir.join("stdout")),
            want_stderr.then(|| dir.join("stderr")),
        ];
        for path in paths.iter().flatten() {
            if let Err(e) =
                nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            {
                process.remove_dir();
                return Err(fifo_err(std::io::Error::from(e)));
            }
        }
        // The read ends are opened before the shim opens the write ends; a blocking open
        // returns once the shim is there, so EOF means the process's output has ended.
        let stdout_open = paths[1].clone().map(open_reader);
        let stderr_open = paths[2].clone().map(open_reader);
        let uri = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        let started = async {
            let spec = serde_json::to_vec(&process_spec).map_err(|e| Error::Exec {
                container: id.to_string(),
                reason: e.to_string(),
            })?;
            self.cd
                .tasks()
                .exec(self.cd.request(
                    ExecProcessRequest {
                        container_id: id.to_string(),
                        stdin: uri(&paths[0]),
                        stdout: uri(&paths[1]),
                        stderr: uri(&paths[2]),
                        terminal: request.tty,
                        spec: Some(prost_types::Any {
                            type_url: PROCESS_TYPE_URL.to_string(),
                            value: spec,
                        }),
                        exec_id: exec_id.clone(),
                    },
                    None,
                ))
                .await
                .map_err(|status| exec_status_error(id, status))?;
            self.cd
                .tasks()
                .start(self.cd.request(
                    StartRequest {
                        container_id: id.to_string(),
                        exec_id: exec_id.clone(),
                    },
                    None,
                ))
                .await
                .map_err(|status| exec_status_error(id, status))?;
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = started {
            // Wake the blocked opens, then forget the process.
            for path in [&paths[1], &paths[2]].into_iter().flatten() {
                let _ = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path);
            }
            process.cleanup().await;
            return Err(e);
        }
        let opened = async {
            let stdin = match &paths[0] {
                // Read-write, so that the open does not wait for the shim and writes
                // before it reads are kept in the pipe.
                Some(p) => Some(pipe::OpenOptions::new().read_write(true).open_sender(p)?),
                None => None,
            };
            let stdout = match stdout_open {
                Some(h) => Some(h.await.map_err(std::io::Error::other)??),
                None => None,
            };
            let stderr = match stderr_open {
                Some(h) => Some(h.await.map_err(std::io::Error::other)??),
                None => None,
            };
            Ok::<_, std::io::Error>((stdin, stdout, stderr))
        };
        match tokio::time::timeout(FIFO_OPEN_TIMEOUT, opened).await {
            Ok(Ok((stdin, stdout, stderr))) => Ok(ExecSession {
                stdin,
                stdout,
                stderr,
                process,
            }),
            outcome => {
                let reason = match outcome {
                    Ok(Err(e)) => format!("cannot open the process's FIFOs: {e}"),
                    _ => format!(
                        "the shim did not open the process's FIFOs within {}s",
                        FIFO_OPEN_TIMEOUT.as_secs()
                    ),
                };
                for path in [&paths[1], &paths[2]].into_iter().flatten() {
                    let _ = std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(path);
                }
                process.kill().await;
                process.cleanup().await;
                Err(Error::Exec {
                    container: id.to_string(),
                    reason,
                })
            }
        }
    }

    /// The container's own process spec with `command` as its arguments.
    async fn process_spec(&self, id: &str, request: &ExecRequest) -> Result<Value> {
        let record = self
            .cd
            .containers()
            .get(
                self.cd
                    .request(GetContainerRequest { id: id.to_string() }, None),
            )
            .await
            .rpc("get container")
            .map_err(|e| {
                if e.is_not_found() {
                    Error::NotFound {
                        container: id.to_string(),
                    }
                } else {
                    cd_err(id)(e)
                }
            })?
            .container
            .ok_or_else(|| Error::NotFound {
                container: id.to_string(),
            })?;
        let spec = record.spec.map(|s| s.value).unwrap_or_default();
        let spec: Value = serde_json::from_slice(&spec).map_err(|e| Error::Exec {
            container: id.to_string(),
            reason: format!("the container's OCI spec does not parse: {e}"),
        })?;
        Ok(exec_process(&spec, request))
    }
}

/// The exec's process: the container's process (env, cwd, user, capabilities, rlimits, ...)
/// with other arguments and the terminal setting.
fn exec_process(container_spec: &Value, request: &ExecRequest) -> Value {
    let mut process = container_spec
        .get("process")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| serde_json::json!({"cwd": "/", "user": {"uid": 0, "gid": 0}}));
    if let Some(obj) = process.as_object_mut() {
        obj.insert("args".into(), serde_json::json!(request.command));
        obj.insert("terminal".into(), Value::Bool(request.tty));
        obj.remove("consoleSize");
        if let (true, Some((width, height))) = (request.tty, request.console_size) {
            obj.insert(
                "consoleSize".into(),
                serde_json::json!({"height": height, "width": width}),
            );
        }
        if obj
            .get("cwd")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            obj.insert("cwd".into(), Value::String("/".into()));
        }
    }
    process
}

impl ExecProcess {
    pub fn exec_id(&self) -> &str {
        &self.exec_id
    }

    /// Waits for the process's exit and returns its exit code.
    pub async fn wait(&self) -> Result<i32> {
        let reply = self
            .cd
            .tasks()
            .wait(self.cd.request(
                WaitRequest {
                    container_id: self.container.clone(),
                    exec_id: self.exec_id.clone(),
                },
                None,
            ))
            .await
            .rpc("wait exec process")
            .map_err(cd_err(&self.container))?;
        Ok(i32::try_from(reply.exit_status).unwrap_or(i32::MAX))
    }

    /// Sets the size of the process's terminal.
    pub async fn resize(&self, width: u16, height: u16) -> Result<()> {
        self.cd
            .tasks()
            .resize_pty(self.cd.request(
                ResizePtyRequest {
                    container_id: self.container.clone(),
                    exec_id: self.exec_id.clone(),
                    width: u32::from(width),
                    height: u32::from(height),
                },
                None,
            ))
            .await
            .rpc("resize exec pty")
            .map(|_| ())
            .map_err(cd_err(&self.container))
    }

    /// Closes the process's stdin (the shim stops copying into it), so it reads EOF.
    pub async fn close_stdin(&self) -> Result<()> {
        self.cd
            .tasks()
            .close_io(self.cd.request(
                CloseIoRequest {
                    container_id: self.container.clone(),
                    exec_id: self.exec_id.clone(),
                    stdin: true,
                },
                None,
            ))
            .await
            .rpc("close exec stdin")
            .map(|_| ())
            .map_err(cd_err(&self.container))
    }

    /// SIGKILLs the process; one that has exited already is not an error.
    pub async fn kill(&self) {
        let reply = self
            .cd
            .tasks()
            .kill(self.cd.request(
                KillRequest {
                    container_id: self.container.clone(),
                    exec_id: self.exec_id.clone(),
                    signal: SIGKILL,
                    all: false,
                },
                None,
            ))
            .await;
        if let Err(status) = reply
            && !matches!(status.code(), Code::NotFound | Code::FailedPrecondition)
        {
            tracing::warn!(container = %self.container, exec = %self.exec_id,
                "cannot kill exec process: {}", status.message());
        }
    }

    /// Deletes the process in containerd (killing it first if it still runs) and removes its
    /// FIFOs.
    pub async fn cleanup(&self) {
        let delete = || async {
            self.cd
                .tasks()
                .delete_process(self.cd.request(
                    DeleteProcessRequest {
                        container_id: self.container.clone(),
                        exec_id: self.exec_id.clone(),
                    },
                    None,
                ))
                .await
        };
        match delete().await {
            Ok(_) => {}
            Err(status) if status.code() == Code::NotFound => {}
            Err(_) => {
                // Still running: kill, reap, delete.
                self.kill().await;
                let _ = tokio::time::timeout(DRAIN_TIMEOUT, self.wait()).await;
                if let Err(status) = delete().await
                    && status.code() != Code::NotFound
                {
                    tracing::warn!(container = %self.container, exec = %self.exec_id,
                        "cannot delete exec process: {}", status.message());
                }
            }
        }
        self.remove_dir();
    }

    fn remove_dir(&self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.dir.display(), "cannot remove exec FIFOs: {e}");
        }
    }
}

/// Opens a FIFO's read end in a blocking thread (the open returns when a writer comes).
fn open_reader(path: PathBuf) -> tokio::task::JoinHandle<std::io::Result<pipe::Receiver>> {
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path)?;
        pipe::Receiver::from_file(file)
    })
}

/// Everything a stream gives until EOF (nothing for a stream not attached).
async fn drain(stream: Option<pipe::Receiver>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(mut s) = stream
        && let Err(e) = s.read_to_end(&mut out).await
    {
        tracing::debug!("exec output read failed: {e}");
    }
    out
}

fn exec_status_error(id: &str, status: containerd_client::tonic::Status) -> Error {
    if status.code() == Code::NotFound {
        return Error::NotFound {
            container: id.to_string(),
        };
    }
    Error::Exec {
        container: id.to_string(),
        reason: status.message().to_string(),
    }
}

fn humantime_secs(secs: f64) -> String {
    if secs.fract() == 0.0 {
        format!("{secs:.0}s")
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_from_container_spec() {
        let spec = serde_json::json!({
            "process": {"args": ["sleep", "1d"], "env": ["A=1"], "cwd": "/work",
                "user": {"uid": 1000, "gid": 1000}, "terminal": false,
                "consoleSize": {"height": 1, "width": 1}},
            "root": {"path": "rootfs"}
        });
        let request = ExecRequest {
            command: vec!["sh".into(), "-c".into(), "id".into()],
            tty: true,
            console_size: Some((132, 50)),
            ..Default::default()
        };
        let p = exec_process(&spec, &request);
        assert_eq!(p["args"], serde_json::json!(["sh", "-c", "id"]));
        assert_eq!(p["env"], serde_json::json!(["A=1"]));
        assert_eq!(p["cwd"], "/work");
        assert_eq!(p["user"]["uid"], 1000);
        assert_eq!(p["terminal"], true);
        assert_eq!(
            p["consoleSize"],
            serde_json::json!({"height": 50, "width": 132})
        );
        let bare = exec_process(&serde_json::json!({}), &request);
        assert_eq!(bare["cwd"], "/");
    }
}
