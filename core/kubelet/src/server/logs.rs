//! Container logs as `/containerLogs` serves them: tail, since, timestamps, byte limit,
//! the previous instance's log, and follow.
//!
//! The runtime has the runc shim append a container's stdout and stderr, as they come, to
//! `<log_root>/<ns>_<pod>_<uid>/<container>.log`; when a container is started again its old
//! log is kept beside it as `<container>.log.previous` ([`keep_previous`]). Those files carry
//! no per-line times, so a line's time is the file's modification time when it was read from
//! what was there, and the time it was read when followed. Lines in the CRI format
//! (`<RFC3339Nano> stdout|stderr F|P <text>`) are read with their own times, should the runtime
//! write that format one day.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use tokio::sync::mpsc;

/// How often a followed log is checked for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// The query of a log request, as `PodLogOptions` names it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub tail_lines: Option<u64>,
    pub timestamps: bool,
    pub since: Option<Timestamp>,
    pub limit_bytes: Option<u64>,
    pub previous: bool,
}

impl LogOptions {
    /// Parses the query parameters (`follow`, `tailLines`, `timestamps`, `sinceSeconds`,
    /// `sinceTime`, `limitBytes`, `previous`); the message says which one is wrong.
    pub fn from_query(query: &[(String, String)]) -> Result<Self, String> {
        let mut o = LogOptions::default();
        let flag = |v: &str| matches!(v, "true" | "1" | "True" | "TRUE");
        for (k, v) in query {
            match k.as_str() {
                "follow" => o.follow = flag(v),
                "timestamps" => o.timestamps = flag(v),
                "previous" => o.previous = flag(v),
                "tailLines" => {
                    let n: i64 = v.parse().map_err(|_| format!("invalid tailLines {v:?}"))?;
                    // Kubernetes: a negative tail means everything.
                    o.tail_lines = u64::try_from(n).ok();
                }
                "limitBytes" => {
                    let n: i64 = v.parse().map_err(|_| format!("invalid limitBytes {v:?}"))?;
                    if n < 1 {
                        return Err("limitBytes: Invalid value: must be greater than 0".into());
                    }
                    o.limit_bytes = u64::try_from(n).ok();
                }
                "sinceSeconds" => {
                    let n: i64 = v
                        .parse()
                        .map_err(|_| format!("invalid sinceSeconds {v:?}"))?;
                    if n < 1 {
                        return Err("sinceSeconds: Invalid value: must be greater than 0".into());
                    }
                    let since = Timestamp::now()
                        .checked_sub(jiff::SignedDuration::from_secs(n))
                        .unwrap_or(Timestamp::MIN);
                    o.since = Some(since);
                }
                "sinceTime" => {
                    o.since = Some(v.parse().map_err(|_| format!("invalid sinceTime {v:?}"))?);
                }
                _ => {}
            }
        }
        Ok(o)
    }
}

/// Where a container's previous instance's log is kept.
pub fn previous_path(log: &Path) -> PathBuf {
    let mut name = log.file_name().unwrap_or_default().to_os_string();
    name.push(".previous");
    log.with_file_name(name)
}

/// Before a container starts again: keeps its last instance's log as the previous one, so
/// that the new instance starts a new file. Nothing to do on a first start.
pub fn keep_previous(log: &Path) {
    if log.exists()
        && let Err(e) = std::fs::rename(log, previous_path(log))
    {
        tracing::warn!(log = %log.display(), "cannot keep the previous container log: {e}");
    }
}

/// One line of a log file.
#[derive(Debug, PartialEq, Eq)]
struct Line<'a> {
    time: Option<Timestamp>,
    /// The text, with its newline (none for the last, unfinished line).
    text: &'a [u8],
}

/// Parses a line in the CRI format, or takes it as plain text.
fn parse_line(raw: &[u8]) -> Line<'_> {
    let cri = || {
        let sp = raw.iter().position(|b| *b == b' ')?;
        let time: Timestamp = std::str::from_utf8(&raw[..sp]).ok()?.parse().ok()?;
        let rest = &raw[sp + 1..];
        let rest = rest
            .strip_prefix(b"stdout ")
            .or_else(|| rest.strip_prefix(b"stderr "))?;
        let text = rest
            .strip_prefix(b"F ")
            .or_else(|| rest.strip_prefix(b"P "))?;
        Some(Line {
            time: Some(time),
            text,
        })
    };
    cri().unwrap_or(Line {
        time: None,
        text: raw,
    })
}

/// Splits after each newline; the last piece may be unfinished.
fn split_lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split_inclusive(|b| *b == b'\n')
}

/// What a log request returns from the data already written, before any follow: the lines
/// since `since`, the last `tail_lines` of them, each prefixed with its time when asked.
/// `file_time` is the time of lines that carry none. Byte limits are applied by the caller.
pub fn render(data: &[u8], file_time: Timestamp, opts: &LogOptions) -> Vec<u8> {
    let lines: Vec<Line<'_>> = split_lines(data)
        .map(parse_line)
        .filter(|l| match opts.since {
            Some(since) => l.time.unwrap_or(file_time) >= since,
            None => true,
        })
        .collect();
    let skip = match opts.tail_lines {
        Some(n) => lines
            .len()
            .saturating_sub(usize::try_from(n).unwrap_or(usize::MAX)),
        None => 0,
    };
    let mut out = Vec::new();
    for l in &lines[skip..] {
        push_line(&mut out, l, file_time, opts.timestamps);
    }
    out
}

fn push_line(out: &mut Vec<u8>, line: &Line<'_>, default_time: Timestamp, timestamps: bool) {
    if timestamps {
        out.extend_from_slice(rfc3339_nano(line.time.unwrap_or(default_time)).as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(line.text);
}

/// Kubernetes' RFC3339Nano: UTC, trailing zeros of the fraction dropped.
pub fn rfc3339_nano(t: Timestamp) -> String {
    t.to_string()
}

/// Something that says whether the container still runs (a followed log ends when not).
pub trait Liveness: Send + 'static {
    fn running(&mut self) -> impl std::future::Future<Output = bool> + Send;
}

/// Sends the log through `tx` as `opts` asks, following it while `alive` says the container
/// runs. Returns when all is sent, the limit is reached or the receiver is gone.
pub async fn stream(
    path: PathBuf,
    opts: LogOptions,
    mut alive: impl Liveness,
    tx: mpsc::Sender<std::io::Result<Bytes>>,
) {
    let mut budget = opts.limit_bytes.unwrap_or(u64::MAX);
    let send = async |mut chunk: Vec<u8>, budget: &mut u64| -> bool {
        if chunk.is_empty() {
            return *budget > 0;
        }
        let keep = usize::try_from(*budget).unwrap_or(usize::MAX);
        chunk.truncate(keep);
        *budget -= chunk.len() as u64;
        tx.send(Ok(Bytes::from(chunk))).await.is_ok() && *budget > 0
    };
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && opts.follow => {
            // Not written yet: wait for it while the container runs.
            loop {
                if !alive.running().await {
                    return;
                }
                tokio::time::sleep(FOLLOW_POLL).await;
                if let Ok(f) = tokio::fs::File::open(&path).await {
                    break f;
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            let _ = tx.send(Err(e)).await;
            return;
        }
    };
    let mut data = Vec::new();
    if let Err(e) = file.read_to_end(&mut data).await {
        let _ = tx.send(Err(e)).await;
        return;
    }
    let file_time = file
        .metadata()
        .await
        .ok()
        .and_then(|m| m.modified().ok())
        .and_then(|t| Timestamp::try_from(t).ok())
        .unwrap_or_else(Timestamp::now);
    // An unfinished last line is held back while following, to be sent whole.
    let (done, mut pending) = if opts.follow {
        let cut = data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let rest = data.split_off(cut);
        (data, rest)
    } else {
        (data, Vec::new())
    };
    if !send(render(&done, file_time, &opts), &mut budget).await || !opts.follow {
        return;
    }
    let mut offset = file.stream_position().await.unwrap_or(0);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Checked before reading, so that what was written up to the exit is still sent.
        let running = alive.running().await;
        let mut new = Vec::new();
        loop {
            match file.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => new.extend_from_slice(&buf[..n]),
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
        if new.is_empty() {
            // Truncated under us: start again from its beginning.
            if let Ok(m) = tokio::fs::metadata(&path).await
                && m.len() < offset
                && file.seek(std::io::SeekFrom::Start(0)).await.is_ok()
            {
                offset = 0;
                continue;
            }
        }
        offset += new.len() as u64;
        pending.extend_from_slice(&new);
        let cut = if running {
            pending
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1)
        } else {
            pending.len()
        };
        let rest = pending.split_off(cut);
        let now = Timestamp::now();
        let mut out = Vec::new();
        for raw in split_lines(&pending) {
            let line = parse_line(raw);
            if opts.since.is_some_and(|s| line.time.unwrap_or(now) < s) {
                continue;
            }
            push_line(&mut out, &line, now, opts.timestamps);
        }
        pending = rest;
        if !send(out, &mut budget).await || !running {
            return;
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    #[test]
    fn tail_since_and_timestamps() {
        let data = b"one\ntwo\nthree\n";
        let now = t("2026-01-02T03:04:05.5Z");
        let all = LogOptions::default();
        assert_eq!(render(data, now, &all), data);
        let tail = LogOptions {
            tail_lines: Some(2),
            ..Default::default()
        };
        assert_eq!(render(data, now, &tail), b"two\nthree\n");
        let zero = LogOptions {
            tail_lines: Some(0),
            ..Default::default()
        };
        assert_eq!(render(data, now, &zero), b"");
        let stamped = LogOptions {
            tail_lines: Some(1),
            timestamps: true,
            ..Default::default()
        };
        assert_eq!(
            String::from_utf8_lossy(&render(data, now, &stamped)),
            "2026-01-02T03:04:05.5Z three\n"
        );
        let later = LogOptions {
            since: Some(t("2026-01-02T03:04:06Z")),
            ..Default::default()
        };
        assert_eq!(render(data, now, &later), b"");
        let earlier = LogOptions {
            since: Some(t("2026-01-02T03:04:00Z")),
            ..Default::default()
        };
        assert_eq!(render(data, now, &earlier), data);
        // An unfinished last line is a line.
        assert_eq!(render(b"a\nb", now, &tail), b"a\nb");
    }

    #[test]
    fn cri_lines_carry_their_own_times() {
        let data =
            b"2026-01-01T00:00:01Z stdout F first\n2026-01-01T00:00:03.25Z stderr F second\n";
        let file_time = t("2026-06-01T00:00:00Z");
        let since = LogOptions {
            since: Some(t("2026-01-01T00:00:02Z")),
            timestamps: true,
            ..Default::default()
        };
        assert_eq!(
            String::from_utf8_lossy(&render(data, file_time, &since)),
            "2026-01-01T00:00:03.25Z second\n"
        );
        assert_eq!(
            render(data, file_time, &LogOptions::default()),
            b"first\nsecond\n"
        );
    }

    #[test]
    fn query_parsing() {
        let q = |pairs: &[(&str, &str)]| {
            let v: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            LogOptions::from_query(&v)
        };
        let o = q(&[
            ("follow", "true"),
            ("tailLines", "5"),
            ("limitBytes", "10"),
            ("previous", "true"),
            ("timestamps", "1"),
        ])
        .expect("options");
        assert!(o.follow && o.previous && o.timestamps);
        assert_eq!((o.tail_lines, o.limit_bytes), (Some(5), Some(10)));
        assert_eq!(q(&[("tailLines", "-1")]).expect("ok").tail_lines, None);
        assert!(q(&[("limitBytes", "0")]).is_err());
        assert!(q(&[("sinceSeconds", "x")]).is_err());
        let since = q(&[("sinceSeconds", "60")])
            .expect("ok")
            .since
            .expect("since");
        assert!(since < Timestamp::now());
    }

    struct Until(tokio::sync::watch::Receiver<bool>);

    impl Liveness for Until {
        async fn running(&mut self) -> bool {
            !*self.0.borrow()
        }
    }

    async fn collect(mut rx: mpsc::Receiver<std::io::Result<Bytes>>) -> String {
        let mut out = Vec::new();
        while let Some(chunk) = rx.recv().await {
            out.extend_from_slice(&chunk.expect("chunk"));
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn follow_sends_new_lines_and_ends_with_the_container() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("c.log");
        std::fs::write(&path, "old\npart").expect("write");
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let (tx, rx) = mpsc::channel(16);
        let opts = LogOptions {
            follow: true,
            ..Default::default()
        };
        let task = tokio::spawn(stream(path.clone(), opts, Until(stop_rx), tx));
        let reader = tokio::spawn(collect(rx));
        tokio::time::sleep(Duration::from_millis(300)).await;
        {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .expect("open");
            f.write_all(b"ial\nnew\nlast").expect("append");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop_tx.send(true).expect("stop");
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("follow ends when the container does")
            .expect("task");
        assert_eq!(reader.await.expect("reader"), "old\npartial\nnew\nlast");
    }

    #[tokio::test]
    async fn limit_bytes_cuts_the_output() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("c.log");
        std::fs::write(&path, "0123456789\nabc\n").expect("write");
        let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let (tx, rx) = mpsc::channel(16);
        let opts = LogOptions {
            follow: true,
            limit_bytes: Some(4),
            ..Default::default()
        };
        tokio::time::timeout(
            Duration::from_secs(5),
            stream(path, opts, Until(stop_rx), tx),
        )
        .await
        .expect("a reached limit ends a follow");
        assert_eq!(collect(rx).await, "0123");
    }

    #[test]
    fn previous_log_is_kept_on_restart() {
        let dir = tempfile::tempdir().expect("dir");
        let log = dir.path().join("app.log");
        keep_previous(&log);
        assert!(!previous_path(&log).exists());
        std::fs::write(&log, "first run\n").expect("write");
        keep_previous(&log);
        assert!(!log.exists());
        assert_eq!(
            std::fs::read_to_string(previous_path(&log)).expect("previous"),
            "first run\n"
        );
    }
}
