//! The pod worker's side of pulls: a container's image per its imagePullPolicy, pulls run as
//! tasks the worker looks in on (so that a long pull holds up neither the pod's other
//! containers nor its deletion), and the events and waiting reasons Kubernetes' kubelet
//! gives (`Pulling`, `Pulled`, `Failed`, `ErrImagePull`, `ErrImageNeverPull`,
//! `ImagePullBackOff`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use kube::Api;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::{Credential, Progress, PullOptions, PulledImage, credentials_from_secret, pull};
use crate::containerd::Containerd;
use crate::images::{ImageSummary, Result, normalize_reference};

/// How often a pod worker looks in on a running pull.
pub const PULL_POLL: Duration = Duration::from_millis(250);

/// A container's imagePullPolicy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    /// The container's policy. The API server defaults it; a pod that reached the kubelet
    /// without one gets the same default: `Always` for a `:latest` or untagged image,
    /// `IfNotPresent` otherwise.
    pub fn of(container: &Container) -> Self {
        match container.image_pull_policy.as_deref() {
            Some("Always") => PullPolicy::Always,
            Some("Never") => PullPolicy::Never,
            Some("IfNotPresent") => PullPolicy::IfNotPresent,
            _ => {
                let image = container.image.as_deref().unwrap_or_default();
                let name = image.split('@').next().unwrap_or_default();
                let last = name.rsplit('/').next().unwrap_or_default();
                match last.split_once(':') {
                    _ if image.contains('@') => PullPolicy::IfNotPresent,
                    Some((_, tag)) if tag != "latest" => PullPolicy::IfNotPresent,
                    _ => PullPolicy::Always,
                }
            }
        }
    }
}

/// How the kubelet pulls: the registries reached over plain HTTP, and whether pulls take
/// turns across pods.
#[derive(Clone, Debug)]
pub struct PullConfig {
    pub insecure_registries: Vec<String>,
    limit: Option<Arc<Semaphore>>,
}

impl PullConfig {
    /// `serialize` makes pulls run one at a time (the kubelet's `--serialize-image-pulls`).
    pub fn new(insecure_registries: Vec<String>, serialize: bool) -> Self {
        Self {
            insecure_registries,
            limit: serialize.then(|| Arc::new(Semaphore::new(1))),
        }
    }

    pub fn serialized(&self) -> bool {
        self.limit.is_some()
    }
}

impl Default for PullConfig {
    fn default() -> Self {
        Self::new(Vec::new(), true)
    }
}

/// An event to record about the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Notice {
    pub fn kind(&self) -> keelson_client::events::EventType {
        if self.warning {
            keelson_client::events::EventType::Warning
        } else {
            keelson_client::events::EventType::Normal
        }
    }

    fn normal(reason: &'static str, message: String) -> Self {
        Self {
            warning: false,
            reason,
            message,
        }
    }

    fn warning(reason: &'static str, message: String) -> Self {
        Self {
            warning: true,
            reason,
            message,
        }
    }
}

/// Where a container's image stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ensure {
    /// In containerd: the container can start.
    Ready(ImageSummary),
    /// Being pulled: look again soon.
    Pulling,
    /// Not there and not to be had now: the waiting reason (`ErrImagePull`,
    /// `ErrImageNeverPull`, `InvalidImageName`) and its message.
    Failed {
        reason: &'static str,
        message: String,
    },
}

struct PullTask {
    handle: JoinHandle<Result<PulledImage>>,
    started: Instant,
}

impl Drop for PullTask {
    fn drop(&mut self) {
        // A pod worker that goes away takes its pulls with it (a shared pull carries on
        // with whoever else waits for it).
        self.handle.abort();
    }
}

/// One pod worker's pulls.
pub struct ContainerImages {
    config: PullConfig,
    pulls: HashMap<String, PullTask>,
}

impl ContainerImages {
    pub fn new(config: PullConfig) -> Self {
        Self {
            config,
            pulls: HashMap::new(),
        }
    }

    /// Decides about `container`'s image, given the images containerd has: ready, being
    /// pulled (a pull is started when the policy asks for one), or failed. Returns the
    /// events to record with it. A pull it starts reports its progress through `report`
    /// (as the message of a `Pulling` event): each layer fetched, and every
    /// [`PROGRESS_EVERY`] within a long layer.
    #[allow(clippy::too_many_arguments)]
    pub async fn ensure(
        &mut self,
        cd: &Containerd,
        client: &kube::Client,
        pod: &Pod,
        container: &Container,
        images: &[ImageSummary],
        report: Arc<dyn Fn(String) + Send + Sync>,
    ) -> (Ensure, Vec<Notice>) {
        let image = container.image.clone().unwrap_or_default();
        let Ok(name) = normalize_reference(&image) else {
            let message = format!(
                "Failed to apply default image tag {image:?}: couldn't parse image name {image:?}: invalid reference format"
            );
            return (
                Ensure::Failed {
                    reason: "InvalidImageName",
                    message: message.clone(),
                },
                vec![
                    Notice::warning("InspectFailed", message),
                    Notice::warning("Failed", "Error: InvalidImageName".into()),
                ],
            );
        };
        if let Some(task) = self.pulls.get(&name) {
            if !task.handle.is_finished() {
                return (Ensure::Pulling, Vec::new());
            }
            let Some(mut task) = self.pulls.remove(&name) else {
                return (Ensure::Pulling, Vec::new());
            };
            let outcome = match (&mut task.handle).await {
                Ok(outcome) => outcome.map_err(|e| e.to_string()),
                Err(e) => Err(format!("the pull stopped: {e}")),
            };
            return match outcome {
                Ok(pulled) => {
                    let message = format!(
                        "Successfully pulled image {image:?} in {} ({} including waiting). Image size: {} bytes.",
                        go_duration(pulled.duration),
                        go_duration(task.started.elapsed()),
                        pulled.size
                    );
                    let summary = ImageSummary {
                        name: pulled.name,
                        digest: pulled.target.digest,
                        media_type: pulled.target.media_type,
                        size: pulled.size,
                    };
                    (
                        Ensure::Ready(summary),
                        vec![Notice::normal("Pulled", message)],
                    )
                }
                Err(message) => (
                    Ensure::Failed {
                        reason: "ErrImagePull",
                        message: message.clone(),
                    },
                    vec![
                        Notice::warning(
                            "Failed",
                            format!("Failed to pull image {image:?}: {message}"),
                        ),
                        Notice::warning("Failed", "Error: ErrImagePull".into()),
                    ],
                ),
            };
        }
        let present = images.iter().find(|i| i.name == name || i.name == image);
        let policy = PullPolicy::of(container);
        match (policy, present) {
            (PullPolicy::Never | PullPolicy::IfNotPresent, Some(found)) => {
                let message = format!("Container image {image:?} already present on machine");
                return (
                    Ensure::Ready(found.clone()),
                    vec![Notice::normal("Pulled", message)],
                );
            }
            (PullPolicy::Never, None) => {
                let message =
                    format!("Container image {image:?} is not present with pull policy of Never");
                return (
                    Ensure::Failed {
                        reason: "ErrImageNeverPull",
                        message: message.clone(),
                    },
                    vec![
                        Notice::warning("ErrImageNeverPull", message),
                        Notice::warning("Failed", "Error: ErrImageNeverPull".into()),
                    ],
                );
            }
            _ => {}
        }
        let mut notices = Vec::new();
        let (credentials, missing) = pull_credentials(client, pod).await;
        if !missing.is_empty() {
            notices.push(Notice::warning(
                "FailedToRetrieveImagePullSecret",
                format!(
                    "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                    missing.join(", ")
                ),
            ));
        }
        let progress_image = name.clone();
        let shown = image.clone();
        let fetched = std::sync::Mutex::new(Fetched::default());
        let options = PullOptions {
            insecure_registries: self.config.insecure_registries.clone(),
            credentials,
            progress: Some(Arc::new(move |p: &Progress| {
                tracing::debug!(
                    image = %progress_image,
                    what = p.what,
                    digest = %p.digest,
                    done = p.done,
                    total = p.total,
                    present = p.present,
                    "pull progress"
                );
                let Ok(mut f) = fetched.lock() else { return };
                if let Some(message) = f.step(&shown, p, Instant::now()) {
                    report(message);
                }
            })),
            limit: self.config.limit.clone(),
        };
        let cd = cd.clone();
        let target = name.clone();
        let handle = tokio::spawn(async move { pull(&cd, &target, &options).await });
        self.pulls.insert(
            name,
            PullTask {
                handle,
                started: Instant::now(),
            },
        );
        notices.push(Notice::normal(
            "Pulling",
            format!("Pulling image {image:?}"),
        ));
        (Ensure::Pulling, notices)
    }
}

/// How often a layer still being fetched is reported.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// What a pull has fetched so far, for its progress reports.
#[derive(Debug, Default)]
struct Fetched {
    /// Layers fetched in full (a layer's end may be reported twice).
    finished: std::collections::HashSet<String>,
    bytes: u64,
    last_report: Option<Instant>,
}

impl Fetched {
    /// The progress message for step `p` of pulling `image`, when one is due: a layer
    /// finished, or a layer in flight not reported for [`PROGRESS_EVERY`].
    fn step(&mut self, image: &str, p: &Progress, now: Instant) -> Option<String> {
        if p.what != "layer" || p.present {
            return None;
        }
        let short = p.digest.strip_prefix("sha256:").unwrap_or(&p.digest);
        let short = &short[..short.len().min(12)];
        if p.done >= p.total {
            if !self.finished.insert(p.digest.clone()) {
                return None;
            }
            self.bytes += p.total;
            self.last_report = Some(now);
            return Some(format!(
                "Pulling image {image:?}: layer {short} done, {} layers ({}) fetched so far",
                self.finished.len(),
                mib(self.bytes)
            ));
        }
        if self
            .last_report
            .is_some_and(|at| now.duration_since(at) < PROGRESS_EVERY)
        {
            return None;
        }
        self.last_report = Some(now);
        Some(format!(
            "Pulling image {image:?}: layer {short} at {} of {}",
            mib(p.done),
            mib(p.total)
        ))
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The waiting message and events of a container whose image pull failed and is backing
/// off (`ImagePullBackOff`), given the failed pull's message.
pub fn back_off(image: &str, failure: &str) -> (String, Vec<Notice>) {
    (
        format!("Back-off pulling image {image:?}: ErrImagePull: {failure}"),
        vec![
            Notice::normal("BackOff", format!("Back-off pulling image {image:?}")),
            Notice::warning("Failed", "Error: ImagePullBackOff".into()),
        ],
    )
}

/// The credentials of the pod's imagePullSecrets, and the names of those that cannot be
/// read or parsed.
async fn pull_credentials(client: &kube::Client, pod: &Pod) -> (Vec<Credential>, Vec<String>) {
    let names: Vec<String> = pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.name)
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut credentials = Vec::new();
    let mut missing = Vec::new();
    for name in names {
        match api.get_opt(&name).await {
            Ok(Some(secret)) => match credentials_from_secret(&secret) {
                Ok(found) => credentials.extend(found),
                Err(e) => {
                    tracing::warn!(%namespace, secret = %name, "unusable image pull secret: {e}");
                    missing.push(format!("{namespace}/{name}"));
                }
            },
            Ok(None) => missing.push(format!("{namespace}/{name}")),
            Err(e) => {
                tracing::warn!(%namespace, secret = %name, "cannot read image pull secret: {e}");
                missing.push(format!("{namespace}/{name}"));
            }
        }
    }
    (credentials, missing)
}

/// A duration as Go prints a `time.Duration` truncated to milliseconds (`850ms`, `1.2s`,
/// `2m3.004s`), as the kubelet's Pulled event has it.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let hours = ms / 3_600_000;
    let minutes = ms / 60_000 % 60;
    let seconds = ms / 1000 % 60;
    let frac = ms % 1000;
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&seconds.to_string());
    if frac > 0 {
        let digits = format!("{frac:03}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push('s');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(digest: &str, done: u64, total: u64, present: bool) -> Progress {
        Progress {
            what: "layer",
            digest: digest.into(),
            done,
            total,
            present,
        }
    }

    #[test]
    fn progress_reports_finished_layers_and_slow_ones() {
        let mut f = Fetched::default();
        let t0 = Instant::now();
        let mib = 1024 * 1024;
        // Manifests, configs and layers already present say nothing.
        let config = Progress {
            what: "config",
            ..layer("sha256:c0", 10, 10, false)
        };
        assert_eq!(f.step("app", &config, t0), None);
        assert_eq!(f.step("app", &layer("sha256:aa", 0, 0, true), t0), None);
        // A layer in flight: reported at once, then not again within PROGRESS_EVERY.
        let first = f.step(
            "app",
            &layer("sha256:0123456789abcdef", mib, 4 * mib, false),
            t0,
        );
        assert_eq!(
            first.as_deref(),
            Some("Pulling image \"app\": layer 0123456789ab at 1.0 MiB of 4.0 MiB")
        );
        let soon = t0 + Duration::from_secs(1);
        assert_eq!(
            f.step(
                "app",
                &layer("sha256:0123456789abcdef", 2 * mib, 4 * mib, false),
                soon
            ),
            None
        );
        let later = t0 + PROGRESS_EVERY + Duration::from_secs(1);
        assert!(
            f.step(
                "app",
                &layer("sha256:0123456789abcdef", 3 * mib, 4 * mib, false),
                later
            )
            .is_some()
        );
        // Finished layers are always reported, with the running total.
        let done = f.step(
            "app",
            &layer("sha256:0123456789abcdef", 4 * mib, 4 * mib, false),
            later,
        );
        assert_eq!(
            done.as_deref(),
            Some(
                "Pulling image \"app\": layer 0123456789ab done, 1 layers (4.0 MiB) fetched so far"
            )
        );
        let second = f.step("app", &layer("sha256:ff", mib, mib, false), later);
        assert!(second.is_some_and(|m| m.contains("2 layers (5.0 MiB)")));
        // The same layer's end reported again counts once.
        assert_eq!(
            f.step("app", &layer("sha256:ff", mib, mib, false), later),
            None
        );
    }

    fn container(image: &str, policy: Option<&str>) -> Container {
        Container {
            name: "c".into(),
            image: Some(image.into()),
            image_pull_policy: policy.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn policies_default_as_the_api_server_does() {
        for (image, want) in [
            ("busybox", PullPolicy::Always),
            ("busybox:latest", PullPolicy::Always),
            ("busybox:1.36", PullPolicy::IfNotPresent),
            ("127.0.0.1:5000/app", PullPolicy::Always),
            ("127.0.0.1:5000/app:v1", PullPolicy::IfNotPresent),
            (
                "busybox@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                PullPolicy::IfNotPresent,
            ),
        ] {
            assert_eq!(PullPolicy::of(&container(image, None)), want, "{image}");
        }
        assert_eq!(
            PullPolicy::of(&container("busybox", Some("Never"))),
            PullPolicy::Never
        );
        assert_eq!(
            PullPolicy::of(&container("busybox:1", Some("Always"))),
            PullPolicy::Always
        );
    }

    #[test]
    fn durations_print_as_go_does() {
        let ms = Duration::from_millis;
        assert_eq!(go_duration(Duration::from_micros(300)), "0s");
        assert_eq!(go_duration(ms(850)), "850ms");
        assert_eq!(go_duration(ms(1200)), "1.2s");
        assert_eq!(go_duration(ms(2000)), "2s");
        assert_eq!(go_duration(ms(123_004)), "2m3.004s");
        assert_eq!(go_duration(ms(3_600_000 + 2000)), "1h0m2s");
    }

    #[test]
    fn serialized_pulls_share_one_permit() {
        assert!(PullConfig::default().serialized());
        assert!(!PullConfig::new(vec![], false).serialized());
    }
}
