//! The pure parts of pod status: phase, conditions and restart backoff, by Kubernetes' rules.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The first restart delay after the immediate first restart (Kubernetes' CrashLoopBackOff).
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
/// The longest restart delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A container that ran this long before exiting starts its backoff over.
pub const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// The delay after `current`: 10 s, doubling, capped at 300 s.
pub fn next_backoff(current: Duration) -> Duration {
    if current.is_zero() {
        BACKOFF_INITIAL
    } else {
        (current * 2).min(BACKOFF_MAX)
    }
}

/// Whether a container that exited with `exit_code` is restarted under `policy`.
pub fn restarts(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// The pod phase from its container statuses, as the kubelet's `getPhase` (no init
/// containers): a container waiting that never ran keeps the pod Pending; one running makes
/// it Running; when all have stopped, the restart policy decides.
pub fn phase(policy: &str, statuses: &[ContainerStatus]) -> &'static str {
    let (mut waiting, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in statuses {
        let state = s.state.clone().unwrap_or_default();
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = &state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if s
            .last_state
            .as_ref()
            .is_some_and(|l| l.terminated.is_some())
        {
            // Waiting to be restarted.
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    if statuses.is_empty() || waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        if policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

/// PodScheduled, Initialized, ContainersReady and Ready; a condition keeps its
/// lastTransitionTime from `previous` while its status stays the same.
pub fn conditions(
    previous: &[PodCondition],
    statuses: &[ContainerStatus],
    phase: &str,
    now: jiff::Timestamp,
) -> Vec<PodCondition> {
    let unready: Vec<&str> = statuses
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    let ready = unready.is_empty() && !statuses.is_empty();
    let (reason, message) = if ready {
        (None, None)
    } else if phase == "Succeeded" || phase == "Failed" {
        (Some("PodCompleted".to_string()), None)
    } else {
        (
            Some("ContainersNotReady".to_string()),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    let make = |type_: &str, ok: bool, reason: Option<String>, message: Option<String>| {
        let status = if ok { "True" } else { "False" };
        let since = previous
            .iter()
            .find(|p| p.type_ == type_ && p.status == status)
            .and_then(|p| p.last_transition_time.clone())
            .unwrap_or(Time(now));
        PodCondition {
            type_: type_.to_string(),
            status: status.to_string(),
            last_transition_time: Some(since),
            reason,
            message,
            ..Default::default()
        }
    };
    vec![
        make("PodScheduled", true, None, None),
        make("Initialized", true, None, None),
        make("ContainersReady", ready, reason.clone(), message.clone()),
        make("Ready", ready, reason, message),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    };

    fn status(state: ContainerState, last_terminated: bool) -> ContainerStatus {
        ContainerStatus {
            name: "c".into(),
            ready: state.running.is_some(),
            state: Some(state),
            last_state: last_terminated.then(|| ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 1,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn running() -> ContainerState {
        ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..Default::default()
        }
    }

    fn waiting() -> ContainerState {
        ContainerState {
            waiting: Some(ContainerStateWaiting::default()),
            ..Default::default()
        }
    }

    fn exited(code: i32) -> ContainerState {
        ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: code,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn phases_follow_the_kubelet() {
        assert_eq!(phase("Always", &[]), "Pending");
        assert_eq!(phase("Always", &[status(waiting(), false)]), "Pending");
        assert_eq!(phase("Always", &[status(running(), false)]), "Running");
        assert_eq!(
            phase(
                "Always",
                &[status(running(), false), status(waiting(), false)]
            ),
            "Pending"
        );
        // CrashLoopBackOff: waiting, with a last state.
        assert_eq!(phase("Always", &[status(waiting(), true)]), "Running");
        assert_eq!(phase("Never", &[status(exited(0), false)]), "Succeeded");
        assert_eq!(phase("Never", &[status(exited(2), false)]), "Failed");
        assert_eq!(phase("OnFailure", &[status(exited(0), false)]), "Succeeded");
        assert_eq!(
            phase(
                "Never",
                &[status(exited(0), false), status(running(), false)]
            ),
            "Running"
        );
    }

    #[test]
    fn backoff_doubles_to_five_minutes() {
        let mut d = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..8 {
            d = next_backoff(d);
            seen.push(d.as_secs());
        }
        assert_eq!(seen, [10, 20, 40, 80, 160, 300, 300, 300]);
        assert!(restarts("Always", 0));
        assert!(!restarts("OnFailure", 0));
        assert!(restarts("OnFailure", 1));
        assert!(!restarts("Never", 1));
    }

    #[test]
    fn conditions_keep_transition_times() {
        let t0 = jiff::Timestamp::from_second(1_000).expect("time");
        let t1 = jiff::Timestamp::from_second(2_000).expect("time");
        let first = conditions(&[], &[status(waiting(), false)], "Pending", t0);
        let ready = |cs: &[PodCondition]| {
            cs.iter()
                .find(|c| c.type_ == "Ready")
                .cloned()
                .expect("Ready")
        };
        assert_eq!(ready(&first).status, "False");
        assert_eq!(ready(&first).reason.as_deref(), Some("ContainersNotReady"));
        let second = conditions(&first, &[status(running(), false)], "Running", t1);
        assert_eq!(ready(&second).status, "True");
        assert_eq!(ready(&second).last_transition_time, Some(Time(t1)));
        let sched = |cs: &[PodCondition]| {
            cs.iter()
                .find(|c| c.type_ == "PodScheduled")
                .and_then(|c| c.last_transition_time.clone())
        };
        assert_eq!(sched(&second), Some(Time(t0)));
    }
}
