//! Create throughput of the SQLite store under concurrent clients, the API server's
//! "32 clients create objects" load without HTTP on top.
//!
//! ```text
//! cargo run --release -p keelson-store --example store_bench -- [clients] [objects] [dir]
//! ```
//!
//! Defaults: 32 clients, 20,000 objects of 1 KiB, a temp dir.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use keelson_store::{ListOptions, SqliteStore, Store};

#[tokio::main]
async fn main() -> anyhow_free::Result<()> {
    let mut args = std::env::args().skip(1);
    let clients: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(32);
    let objects: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20_000);
    let temp = tempfile::tempdir()?;
    let dir = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| temp.path().to_path_buf());
    let store = Arc::new(SqliteStore::open(&dir.join("bench.db"))?);
    let value = Bytes::from(vec![b'x'; 1024]);

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let store = Arc::clone(&store);
        let value = value.clone();
        let count = objects / clients + usize::from(client < objects % clients);
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(count);
            for i in 0..count {
                let key = format!("/registry/pods/bench/c{client}-{i}");
                let t = Instant::now();
                store.create(&key, value.clone()).await?;
                latencies.push(t.elapsed());
            }
            Ok::<_, keelson_store::Error>(latencies)
        });
    }
    let mut latencies: Vec<Duration> = Vec::with_capacity(objects);
    while let Some(result) = tasks.join_next().await {
        latencies.extend(result??);
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize];
    println!(
        "create: {objects} objects, {clients} clients: {:.0} objects/s, p50 {:?}, p99 {:?}",
        objects as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99)
    );

    let t = Instant::now();
    let listed = store
        .list("/registry/pods/", ListOptions::default())
        .await?;
    println!("list: {} objects in {:?}", listed.items.len(), t.elapsed());
    Ok(())
}

/// The example avoids a dependency on anyhow, which the library does not need.
mod anyhow_free {
    pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;
}
