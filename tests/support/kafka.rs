//! Kafka helpers for the tests that run tripline against a broker: topics made up front, and
//! what a daemon's consumer group gave it.

#![allow(dead_code)]

use std::time::Duration;

use rdkafka::config::ClientConfig;

use super::daemon::Daemon;

/// Creates `topic` with `partitions` partitions on the broker at `addr`.
pub fn create_topic(addr: &str, topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .expect("admin client");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let done = rt
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .expect("create topics");
    for r in done {
        r.unwrap_or_else(|(t, e)| panic!("creating {t}: {e}"));
    }
}

/// How many partitions the daemon's last assignment gave it, from its JSON log (0 after a
/// revocation, `None` before any).
pub fn assigned(d: &Daemon) -> Option<i64> {
    let mut last = None;
    for l in d.logs().lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
            continue;
        };
        match v["fields"]["message"].as_str() {
            Some("partitions assigned") => last = v["fields"]["partitions"].as_i64(),
            Some("partitions revoked") => last = Some(0),
            _ => {}
        }
    }
    last
}
