//! `kafka` queue (Kafka, Redpanda, anything speaking the protocol): an idempotent producer
//! (`acks=all`), each lane's pages in order on its own partition (lane `k` = partition `k`; one
//! lane = partition 0), a consumer of the configured group whose offsets are committed only after
//! the destination commit that covers them (the engine calls `ack_through`).
//!
//! A consumer assigns its lane's partition itself (one consumer per lane, no group rebalancing)
//! and starts from the group's committed offset; redelivered pages are skipped by the engine.

use std::sync::Mutex;
use std::time::Duration;

use bizon_core::{Error, QueueBroker, QueuePublisher, QueueSubscriber, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::Deserialize;

use crate::descriptor::{BrokerSpec, QueueDescriptor};

/// `engine.queue.config.queue` (bizon's keys: bootstrap_server, topic; ours: the rest).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaQueueConfig {
    /// `host:port[,host:port…]`.
    #[serde(alias = "bootstrap_servers")]
    pub bootstrap_server: String,
    #[serde(default = "default_topic")]
    pub topic: String,
    /// `plaintext` (default), `ssl`, `sasl_plaintext`, `sasl_ssl`.
    #[serde(default)]
    pub security_protocol: Option<String>,
    /// `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`.
    #[serde(default)]
    pub sasl_mechanism: Option<String>,
    #[serde(default)]
    pub sasl_username: Option<String>,
    #[serde(default)]
    pub sasl_password: Option<String>,
    /// CA certificates (PEM) for `ssl` / `sasl_ssl`.
    #[serde(default)]
    pub ssl_ca_location: Option<String>,
}

/// `engine.queue.config.consumer` (bizon's keys).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaConsumerConfig {
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Where a group without a committed offset starts: `earliest` (default) or `latest`.
    #[serde(default = "default_reset")]
    pub auto_offset_reset: String,
    /// bizon's auto-commit switch: offsets are always committed after the destination commit here,
    /// so it is accepted and unused.
    #[serde(default)]
    pub enable_auto_commit: Option<bool>,
    /// bizon's poll timeout; the engine polls with its own deadline, so it is accepted and unused.
    #[serde(default)]
    pub consumer_timeout_ms: Option<u64>,
    /// Pages consumed between commits of the destination and the group offset (default
    /// [`DEFAULT_MAX_PAGES_PER_COMMIT`]); the producer runs at most twice this ahead of the last
    /// commit.
    #[serde(default)]
    pub max_pages_per_commit: Option<u16>,
}

impl Default for KafkaConsumerConfig {
    fn default() -> Self {
        KafkaConsumerConfig {
            group_id: default_group(),
            auto_offset_reset: default_reset(),
            enable_auto_commit: None,
            consumer_timeout_ms: None,
            max_pages_per_commit: None,
        }
    }
}

/// Pages consumed between commits when `max_pages_per_commit` is not set.
pub const DEFAULT_MAX_PAGES_PER_COMMIT: u16 = 16;

/// The queue's topic when `topic` is not set (bizon's).
fn default_topic() -> String {
    "bizon".into()
}
/// The consumer group when `group_id` is not set (bizon's).
fn default_group() -> String {
    "bizon".into()
}
/// A group without a committed offset reads the topic from its start.
fn default_reset() -> String {
    "earliest".into()
}

/// How long metadata calls and the final flush may take before the attempt fails.
const TIMEOUT: Duration = Duration::from_secs(15);

pub struct KafkaBroker {
    config: KafkaQueueConfig,
    consumer: KafkaConsumerConfig,
    lanes: usize,
    topic_ready: std::sync::atomic::AtomicBool,
}

impl KafkaBroker {
    /// `lanes`: partitions used (0..lanes); the topic must have at least that many.
    pub fn new(config: KafkaQueueConfig, consumer: KafkaConsumerConfig, lanes: usize) -> Self {
        KafkaBroker { config, consumer, lanes: lanes.max(1), topic_ready: std::sync::atomic::AtomicBool::new(false) }
    }

    /// Make sure the topic exists: auto-created by the broker on a producer's metadata request
    /// where allowed, else created (one partition, the cluster's default replication).
    fn ensure_topic(&self) -> Result<()> {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        use std::sync::atomic::Ordering;
        if self.topic_ready.load(Ordering::Relaxed) {
            return Ok(());
        }
        // a producer's metadata request lets a broker that allows it auto-create the topic
        let probe: BaseProducer = self.client_config().create().map_err(|e| self.error("cannot create a client", e))?;
        let metadata = probe
            .client()
            .fetch_metadata(Some(&self.config.topic), TIMEOUT)
            .map_err(|e| self.error("cannot read the cluster's metadata", e))?;
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.error().is_none() && !t.partitions().is_empty())
            .map(|t| t.partitions().len());
        tracing::debug!(topic = %self.config.topic, ?partitions, "kafka topic metadata");
        if let Some(n) = partitions {
            if n < self.lanes {
                return Err(Error::config(format!(
                    "{}: the topic has {n} partitions, {} lanes need at least {}",
                    self.describe(),
                    self.lanes,
                    self.lanes
                )));
            }
            self.topic_ready.store(true, Ordering::Relaxed);
            return Ok(());
        }
        let admin: AdminClient<rdkafka::client::DefaultClientContext> =
            self.client_config().create().map_err(|e| self.error("cannot create an admin client", e))?;
        let topic = NewTopic::new(&self.config.topic, self.lanes as i32, TopicReplication::Fixed(-1));
        let opts = AdminOptions::new().request_timeout(Some(TIMEOUT)).operation_timeout(Some(TIMEOUT));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| Error::internal(format!("cannot start a runtime: {e}")))?;
        let results = runtime
            .block_on(admin.create_topics([&topic], &opts))
            .map_err(|e| self.error("cannot create the topic", e))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => return Err(self.error("cannot create the topic", code)),
            }
        }
        self.topic_ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::transient(format!("{}: {what}: {e}", self.describe()))
    }

    fn client_config(&self) -> ClientConfig {
        let c = &self.config;
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &c.bootstrap_server)
            .set("client.id", "bizon")
            // an unreachable broker fails the attempt instead of retrying forever
            .set("socket.connection.setup.timeout.ms", "10000")
            .set("log_level", "3");
        let optional = [
            ("security.protocol", &c.security_protocol),
            ("sasl.mechanism", &c.sasl_mechanism),
            ("sasl.username", &c.sasl_username),
            ("sasl.password", &c.sasl_password),
            ("ssl.ca.location", &c.ssl_ca_location),
        ];
        for (key, value) in optional {
            if let Some(v) = value {
                cfg.set(key, v);
            }
        }
        cfg
    }

    fn consumer(&self) -> Result<BaseConsumer> {
        let mut cfg = self.client_config();
        cfg.set("group.id", &self.consumer.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", &self.consumer.auto_offset_reset)
            // bounds what the client prefetches (memory stays flat)
            .set("queued.max.messages.kbytes", "16384")
            .set("fetch.max.bytes", "16777216")
            // a consumer that caught up asks again soon instead of idling in a long poll
            .set("fetch.wait.max.ms", "20")
            // librdkafka pauses fetching for 1 s whenever its prefetch queue is full
            .set("fetch.queue.backoff.ms", "5");
        cfg.create().map_err(|e| self.error("cannot create a consumer", e))
    }

    /// `bizon check`: the cluster's metadata (every topic, so asking creates none), and the
    /// topic's partitions against the lanes.
    fn check(&self) -> Result<String> {
        let consumer = self.consumer()?;
        let metadata = consumer.fetch_metadata(None, TIMEOUT).map_err(|e| self.error("cannot reach the cluster", e))?;
        let brokers = metadata.brokers().len();
        let topic = &self.config.topic;
        match metadata.topics().iter().find(|t| t.name() == topic) {
            None => Ok(format!("{brokers} broker(s) answered; topic `{topic}` is missing and is created by the run")),
            Some(t) if t.partitions().len() < self.lanes => Err(Error::config(format!(
                "topic `{topic}` has {} partition(s), fewer than the {} lanes (one partition per lane): add \
                 partitions or lower `lanes`",
                t.partitions().len(),
                self.lanes
            ))),
            Some(t) => {
                Ok(format!("{brokers} broker(s) answered; topic `{topic}` has {} partition(s)", t.partitions().len()))
            }
        }
    }

    /// The partition's high watermark (the offset the next message gets).
    fn high_watermark(&self, consumer: &BaseConsumer, partition: i32) -> Result<i64> {
        consumer
            .fetch_watermarks(&self.config.topic, partition, TIMEOUT)
            .map(|(_, high)| high)
            .map_err(|e| self.error("cannot read the topic's offsets", e))
    }
}

impl QueueBroker for KafkaBroker {
    fn describe(&self) -> String {
        let lanes = if self.lanes > 1 { format!(" ({} lanes)", self.lanes) } else { String::new() };
        format!("kafka {} topic `{}`{lanes}", self.config.bootstrap_server, self.config.topic)
    }

    /// Kafka keeps messages: "purging" moves the group's offset to the end of the topic.
    fn purge(&self) -> Result<()> {
        self.ensure_topic()?;
        let consumer = self.consumer()?;
        let mut tpl = TopicPartitionList::new();
        for lane in 0..self.lanes {
            let high = self.high_watermark(&consumer, lane as i32)?;
            tpl.add_partition_offset(&self.config.topic, lane as i32, Offset::Offset(high))
                .map_err(|e| self.error("cannot build the offset list", e))?;
        }
        consumer.commit(&tpl, CommitMode::Sync).map_err(|e| self.error("cannot commit the group's offset", e))
    }

    fn lanes(&self) -> usize {
        self.lanes
    }

    /// Topics are left to their retention (deleting one needs admin rights users may not grant).
    fn delete(&self) -> Result<()> {
        Ok(())
    }

    fn publisher(&self) -> Result<Box<dyn QueuePublisher>> {
        self.ensure_topic()?;
        let mut cfg = self.client_config();
        cfg.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            .set("message.max.bytes", "67108864")
            .set("message.timeout.ms", "30000");
        let context = DeliveryContext { failed: Mutex::new(None) };
        let producer: BaseProducer<DeliveryContext> =
            cfg.create_with_context(context).map_err(|e| self.error("cannot create a producer", e))?;
        Ok(Box::new(KafkaPublisher { producer, topic: self.config.topic.clone(), describe: self.describe() }))
    }

    fn subscriber(&self, lane: usize) -> Result<Box<dyn QueueSubscriber>> {
        self.ensure_topic()?;
        let consumer = self.consumer()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.config.topic, lane as i32, Offset::Stored)
            .map_err(|e| self.error("cannot build the partition list", e))?;
        consumer.assign(&tpl).map_err(|e| self.error("cannot assign the partition", e))?;
        Ok(Box::new(KafkaSubscriber {
            consumer,
            topic: self.config.topic.clone(),
            partition: lane as i32,
            describe: self.describe(),
        }))
    }

    /// Pages between offset commits (the consumer also commits on `buffer_size` and
    /// `buffer_flush_timeout`); with `max_in_flight` it bounds how far the producer runs ahead.
    fn max_unacked(&self) -> usize {
        usize::from(self.consumer.max_pages_per_commit.unwrap_or(DEFAULT_MAX_PAGES_PER_COMMIT).max(1))
    }
}

/// Records the first delivery failure; the publisher reports it on the next call.
struct DeliveryContext {
    failed: Mutex<Option<String>>,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
            failed.get_or_insert_with(|| e.to_string());
        }
    }
}

struct KafkaPublisher {
    producer: BaseProducer<DeliveryContext>,
    topic: String,
    describe: String,
}

impl KafkaPublisher {
    fn check(&self) -> Result<()> {
        let failed = self.producer.context().failed.lock().unwrap_or_else(|p| p.into_inner()).take();
        match failed {
            Some(e) => Err(Error::transient(format!("{}: a message was not delivered: {e}", self.describe))),
            None => Ok(()),
        }
    }
}

impl QueuePublisher for KafkaPublisher {
    fn publish(&mut self, lane: usize, message: Vec<u8>) -> Result<()> {
        let mut record = BaseRecord::<(), [u8]>::to(&self.topic).partition(lane as i32).payload(&message[..]);
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                // the client's buffer is full: serve delivery reports, then retry (backpressure)
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    self.producer.poll(Duration::from_millis(50));
                    self.check()?;
                }
                Err((e, _)) => return Err(Error::transient(format!("{}: publishing failed: {e}", self.describe))),
            }
        }
        self.producer.poll(Duration::ZERO);
        self.check()
    }

    fn flush(&mut self) -> Result<()> {
        self.producer.flush(TIMEOUT).map_err(|e| {
            Error::transient(format!("{}: waiting for the broker's acknowledgements: {e}", self.describe))
        })?;
        self.check()
    }
}

/// How long a backlog question may hold the consumer up.
const BACKLOG_TIMEOUT: Duration = Duration::from_secs(1);

struct KafkaSubscriber {
    consumer: BaseConsumer,
    topic: String,
    partition: i32,
    describe: String,
}

impl QueueSubscriber for KafkaSubscriber {
    /// The partition's high watermark minus the position the next delivery comes from.
    fn waiting(&mut self) -> Option<u64> {
        let (low, high) = self.consumer.fetch_watermarks(&self.topic, self.partition, BACKLOG_TIMEOUT).ok()?;
        let position = self.consumer.position().ok()?;
        let at = match position.find_partition(&self.topic, self.partition).map(|p| p.offset()) {
            Some(Offset::Offset(n)) => n,
            _ => low,
        };
        Some(high.saturating_sub(at).max(0) as u64)
    }

    fn next(&mut self, timeout: Duration) -> Result<Option<(Vec<u8>, u64)>> {
        match self.consumer.poll(timeout) {
            None => Ok(None),
            Some(Ok(m)) => Ok(Some((m.payload().unwrap_or_default().to_vec(), m.offset() as u64))),
            Some(Err(e)) => Err(Error::transient(format!("{}: consuming failed: {e}", self.describe))),
        }
    }

    /// Offsets are positions: a skipped message is covered by the next `ack_through`.
    fn ack(&mut self, _tag: u64) -> Result<()> {
        Ok(())
    }

    fn ack_through(&mut self, tag: u64) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, self.partition, Offset::Offset(tag as i64 + 1))
            .map_err(|e| Error::internal(format!("{}: {e}", self.describe)))?;
        self.consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(|e| Error::transient(format!("{}: committing the offset failed: {e}", self.describe)))
    }
}

/// `engine.queue.type: kafka`, parsed.
#[derive(Debug)]
pub struct KafkaSpec {
    pub queue: KafkaQueueConfig,
    pub consumer: KafkaConsumerConfig,
    pub lanes: usize,
}

impl BrokerSpec for KafkaSpec {
    fn lanes(&self) -> usize {
        self.lanes
    }
    fn build(&self) -> Result<Box<dyn QueueBroker>> {
        Ok(Box::new(KafkaBroker::new(self.queue.clone(), self.consumer.clone(), self.lanes)))
    }
    fn check(&self) -> Result<String> {
        let broker = KafkaBroker::new(self.queue.clone(), self.consumer.clone(), self.lanes);
        broker.check().map(|found| format!("{}: {found}", broker.describe()))
    }
}

/// The `kafka` queue in the registry.
pub const DESCRIPTOR: QueueDescriptor = QueueDescriptor {
    name: "kafka",
    description: "a Kafka topic (one partition per lane), idempotent producer, offsets after the destination commit",
    parse: |node| {
        let (queue, consumer, lanes) = super::broker_keys(node)?;
        Ok(std::sync::Arc::new(KafkaSpec { queue, consumer, lanes }))
    },
    schema: super::config_schema::<KafkaQueueConfig, KafkaConsumerConfig>,
};
