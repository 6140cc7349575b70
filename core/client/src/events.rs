//! Recording core/v1 Events, as `kubectl describe` and `kubectl get events` show them.
//!
//! Recording never blocks the caller: events go through a bounded queue to a task that
//! writes them, and when the API server cannot keep up the excess is dropped with a warning
//! (events are advisory; the work they describe has happened either way). An event equal to
//! a recent one (same object, type, reason and message) bumps that Event's `count` and
//! `lastTimestamp` instead of creating another, as Kubernetes' recorder does.

use std::collections::HashMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use tokio::sync::mpsc;

/// How many events may wait to be written before new ones are dropped.
const QUEUE: usize = 4096;
/// How many recent events are remembered for counting repeats.
const REMEMBERED: usize = 4096;

/// `Normal` or `Warning`, the two event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something the user may need to act on.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

#[derive(Debug)]
struct Record {
    object: ObjectReference,
    kind: EventType,
    reason: String,
    message: String,
}

/// Records events for one component (`default-scheduler`, `replication-controller`, ...).
/// Cheap to clone; all clones feed one writer task.
#[derive(Debug, Clone)]
pub struct EventRecorder {
    tx: mpsc::Sender<Record>,
}

impl EventRecorder {
    /// A recorder writing as `component` (`source.component`, `reportingComponent`) from
    /// `instance` (`reportingInstance`, such as the host name). Spawns the writer task on
    /// the current runtime; it ends when every clone of the recorder is dropped.
    pub fn new(client: Client, component: &str, instance: &str) -> EventRecorder {
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = Writer {
            client,
            component: component.to_string(),
            instance: instance.to_string(),
            recent: HashMap::new(),
        };
        tokio::spawn(writer.run(rx));
        EventRecorder { tx }
    }

    /// Records that `reason` happened to `object`, with a human-readable `message`.
    pub fn record(&self, object: ObjectReference, kind: EventType, reason: &str, message: &str) {
        let record = Record {
            object,
            kind,
            reason: reason.to_string(),
            message: message.to_string(),
        };
        if let Err(mpsc::error::TrySendError::Full(r)) = self.tx.try_send(record) {
            tracing::warn!(
                reason = %r.reason,
                object = ?r.object.name,
                "event queue full; dropping event"
            );
        }
    }
}

/// Identifies repeats of one event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RepeatKey {
    namespace: String,
    uid: String,
    name: String,
    kind: EventType,
    reason: String,
    message: String,
}

#[derive(Debug, Clone)]
struct Written {
    name: String,
    count: i32,
}

struct Writer {
    client: Client,
    component: String,
    instance: String,
    recent: HashMap<RepeatKey, Written>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Record>) {
        while let Some(record) = rx.recv().await {
            if let Err(e) = self.write(&record).await {
                tracing::warn!(
                    reason = %record.reason,
                    object = ?record.object.name,
                    error = %e,
                    "could not record event"
                );
            }
        }
    }

    async fn write(&mut self, r: &Record) -> Result<(), kube::Error> {
        let namespace = r
            .object
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let key = RepeatKey {
            namespace: namespace.clone(),
            uid: r.object.uid.clone().unwrap_or_default(),
            name: r.object.name.clone().unwrap_or_default(),
            kind: r.kind,
            reason: r.reason.clone(),
            message: r.message.clone(),
        };
        let now = Timestamp::now();
        if let Some(prev) = self.recent.get(&key).cloned() {
            let count = prev.count.saturating_add(1);
            let patch = serde_json::json!({
                "count": count,
                "lastTimestamp": Time(now),
            });
            match api
                .patch(&prev.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    self.recent.insert(
                        key,
                        Written {
                            name: prev.name,
                            count,
                        },
                    );
                    return Ok(());
                }
                // The Event expired or was deleted: write a new one.
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        let object_name = r.object.name.clone().unwrap_or_else(|| "object".into());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{object_name}.{:x}", now.as_nanosecond())),
                namespace: Some(namespace),
                ..ObjectMeta::default()
            },
            involved_object: r.object.clone(),
            reason: Some(r.reason.clone()),
            message: Some(r.message.clone()),
            type_: Some(r.kind.as_str().into()),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        };
        let created = api.create(&PostParams::default(), &event).await?;
        if self.recent.len() >= REMEMBERED {
            self.recent.clear();
        }
        self.recent.insert(
            key,
            Written {
                name: created.metadata.name.unwrap_or_default(),
                count: 1,
            },
        );
        Ok(())
    }
}

/// A reference to `obj` for [`EventRecorder::record`].
pub fn reference<K>(obj: &K) -> ObjectReference
where
    K: kube::Resource<DynamicType = ()>,
{
    obj.object_ref(&())
}
