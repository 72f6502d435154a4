//! `rabbitmq` queue: a durable queue, persistent messages, publisher confirms, consumer
//! prefetch, acknowledgements only after the destination commit (the engine calls `ack_through`).
//!
//! lapin is async; a small tokio runtime (one worker) owned by the broker drives every
//! connection, and the engine's threads block on it. The producer and the consumer each open
//! their own connection, so a failure of one does not take the other's state with it.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bizon_core::{Error, QueueBroker, QueuePublisher, QueueSubscriber, Result};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer, PublisherConfirm};
use serde::Deserialize;

use crate::descriptor::{BrokerSpec, QueueDescriptor};
use tokio::runtime::{Handle, Runtime};

/// `engine.queue.config.queue` (bizon's keys: host, port, queue_name, exchange; ours: the rest).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RabbitQueueConfig {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    pub queue_name: String,
    /// Publish through this exchange (routing key = `queue_name`); "" = the default exchange.
    /// A named exchange must route `queue_name` to the queue.
    #[serde(default)]
    pub exchange: String,
    #[serde(default = "default_guest")]
    pub username: String,
    #[serde(default = "default_guest")]
    pub password: String,
    #[serde(default = "default_vhost")]
    pub vhost: String,
    /// Connect with TLS (`amqps`), verifying the server against the bundled web PKI roots.
    #[serde(default)]
    pub tls: bool,
}

/// `engine.queue.config.consumer`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RabbitConsumerConfig {
    /// bizon's polling interval (seconds); deliveries are pushed here, so it is accepted and unused.
    #[serde(default)]
    pub poll_interval: Option<f64>,
    /// Pages a consumer holds unacknowledged (AMQP prefetch); the consumer commits before
    /// reaching it. Default [`DEFAULT_PREFETCH`].
    #[serde(default)]
    pub prefetch: Option<u16>,
}

/// Pages a consumer holds unacknowledged when `prefetch` is not set.
pub const DEFAULT_PREFETCH: u16 = 64;

/// AMQP's standard port.
fn default_port() -> u16 {
    5672
}
/// RabbitMQ's stock user and password (`guest`, which only connects from localhost).
fn default_guest() -> String {
    "guest".into()
}
/// RabbitMQ's default virtual host.
fn default_vhost() -> String {
    "/".into()
}

/// Seconds to wait for a connection (refused or silent host) before the attempt fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Publishes awaiting their broker confirmation before the producer waits for the oldest.
const CONFIRM_WINDOW: usize = 32;

pub struct RabbitBroker {
    config: RabbitQueueConfig,
    prefetch: u16,
    lanes: usize,
    runtime: Arc<Runtime>,
}

impl RabbitBroker {
    /// `lanes` > 1: one queue per lane, `<queue_name>.<lane>`.
    pub fn new(config: RabbitQueueConfig, consumer: &RabbitConsumerConfig, lanes: usize) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("bizon-amqp")
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| Error::internal(format!("cannot start the AMQP runtime: {e}")))?;
        Ok(RabbitBroker {
            config,
            prefetch: consumer.prefetch.unwrap_or(DEFAULT_PREFETCH).max(1),
            lanes: lanes.max(1),
            runtime: Arc::new(runtime),
        })
    }

    fn queue(&self, lane: usize) -> String {
        match self.lanes {
            1 => self.config.queue_name.clone(),
            _ => format!("{}.{lane}", self.config.queue_name),
        }
    }

    /// Run `op` on every lane's queue over one connection.
    fn each_queue<F, Fut>(&self, what: &str, op: F) -> Result<()>
    where
        F: Fn(Channel, String) -> Fut,
        Fut: std::future::Future<Output = lapin::Result<u32>>,
    {
        let (conn, channel) = self.channel()?;
        let mut result = Ok(());
        for lane in 0..self.lanes {
            if let Err(e) = self.runtime.block_on(op(channel.clone(), self.queue(lane))) {
                result = Err(self.error(what, e));
                break;
            }
        }
        self.runtime.block_on(close(&conn));
        result
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::transient(format!("{}: {what}: {e}", self.describe()))
    }

    /// A connection, or an error once CONNECT_TIMEOUT passed without one.
    async fn connect(&self) -> Result<Connection> {
        let c = &self.config;
        let uri = AMQPUri {
            scheme: if c.tls { AMQPScheme::AMQPS } else { AMQPScheme::AMQP },
            authority: AMQPAuthority {
                userinfo: AMQPUserInfo { username: c.username.clone(), password: c.password.clone() },
                host: c.host.clone(),
                port: c.port,
            },
            vhost: c.vhost.clone(),
            query: AMQPQueryString::default(),
        };
        let props = ConnectionProperties::default().with_connection_name("bizon".into());
        tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect_uri(uri, props))
            .await
            .map_err(|_| self.error("cannot connect", format!("no answer within {} s", CONNECT_TIMEOUT.as_secs())))?
            .map_err(|e| self.error("cannot connect", e))
    }

    /// `bizon check`: connect, then look each lane's queue up without declaring it (a passive
    /// declare; a missing queue closes its channel, so each gets its own).
    fn check(&self) -> Result<String> {
        self.runtime.block_on(async {
            let conn = self.connect().await?;
            let mut found = Vec::new();
            for lane in 0..self.lanes {
                let queue = self.queue(lane);
                let channel = conn.create_channel().await.map_err(|e| self.error("cannot open a channel", e))?;
                let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
                found.push(match channel.queue_declare(queue.as_str().into(), passive, FieldTable::default()).await {
                    Ok(q) => format!("`{queue}` holds {} message(s)", q.message_count()),
                    Err(_) => format!("`{queue}` is missing and is created by the run"),
                });
            }
            close(&conn).await;
            Ok(format!("connected; {}", found.join(", ")))
        })
    }

    /// A connection and a channel with every lane's queue declared (durable).
    fn channel(&self) -> Result<(Connection, Channel)> {
        let queues: Vec<String> = (0..self.lanes).map(|l| self.queue(l)).collect();
        self.runtime.block_on(async {
            let conn = self.connect().await?;
            let channel = conn.create_channel().await.map_err(|e| self.error("cannot open a channel", e))?;
            let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
            for queue in queues {
                channel
                    .queue_declare(queue.as_str().into(), durable, FieldTable::default())
                    .await
                    .map_err(|e| self.error(&format!("cannot declare queue `{queue}`"), e))?;
            }
            Ok((conn, channel))
        })
    }
}

impl QueueBroker for RabbitBroker {
    fn describe(&self) -> String {
        let c = &self.config;
        let lanes = if self.lanes > 1 { format!(" ({} lanes)", self.lanes) } else { String::new() };
        format!("rabbitmq {}:{} queue `{}`{lanes}", c.host, c.port, c.queue_name)
    }

    fn purge(&self) -> Result<()> {
        self.each_queue("cannot purge the queue", |ch, q| async move {
            ch.queue_purge(q.as_str().into(), QueuePurgeOptions::default()).await
        })
    }

    fn delete(&self) -> Result<()> {
        self.each_queue("cannot delete the queue", |ch, q| async move {
            ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await
        })
    }

    fn lanes(&self) -> usize {
        self.lanes
    }

    fn publisher(&self) -> Result<Box<dyn QueuePublisher>> {
        let (conn, channel) = self.channel()?;
        self.runtime
            .block_on(channel.confirm_select(ConfirmSelectOptions::default()))
            .map_err(|e| self.error("cannot enable publisher confirms", e))?;
        Ok(Box::new(RabbitPublisher {
            handle: self.runtime.handle().clone(),
            _runtime: self.runtime.clone(),
            conn,
            channel,
            exchange: self.config.exchange.clone(),
            routing_keys: (0..self.lanes).map(|l| self.queue(l)).collect(),
            pending: VecDeque::new(),
            describe: self.describe(),
        }))
    }

    fn subscriber(&self, lane: usize) -> Result<Box<dyn QueueSubscriber>> {
        let (conn, channel) = self.channel()?;
        let queue = self.queue(lane);
        let queue = queue.as_str();
        let consumer = self.runtime.block_on(async {
            channel.basic_qos(self.prefetch, BasicQosOptions::default()).await?;
            channel.basic_consume(queue.into(), "".into(), BasicConsumeOptions::default(), FieldTable::default()).await
        });
        let consumer = consumer.map_err(|e| self.error("cannot start consuming", e))?;
        Ok(Box::new(RabbitSubscriber {
            handle: self.runtime.handle().clone(),
            _runtime: self.runtime.clone(),
            conn,
            channel,
            consumer,
            queue: queue.to_owned(),
            describe: self.describe(),
        }))
    }

    fn max_unacked(&self) -> usize {
        usize::from(self.prefetch)
    }
}

/// How long a backlog question may hold the consumer up.
const BACKLOG_TIMEOUT: Duration = Duration::from_secs(1);

async fn close(conn: &Connection) {
    let _ = tokio::time::timeout(Duration::from_secs(2), conn.close(200, "bye".into())).await;
}

struct RabbitPublisher {
    handle: Handle,
    /// Keeps the runtime alive as long as the connection.
    _runtime: Arc<Runtime>,
    conn: Connection,
    channel: Channel,
    exchange: String,
    /// The queue of each lane.
    routing_keys: Vec<String>,
    pending: VecDeque<PublisherConfirm>,
    describe: String,
}

impl RabbitPublisher {
    fn confirm_oldest(&mut self) -> Result<()> {
        let Some(confirm) = self.pending.pop_front() else { return Ok(()) };
        match self.handle.block_on(confirm) {
            Ok(Confirmation::Ack(_)) | Ok(Confirmation::NotRequested) => Ok(()),
            Ok(Confirmation::Nack(_)) => {
                Err(Error::transient(format!("{}: the broker refused a message", self.describe)))
            }
            Err(e) => Err(Error::transient(format!("{}: publishing failed: {e}", self.describe))),
        }
    }
}

impl QueuePublisher for RabbitPublisher {
    fn publish(&mut self, lane: usize, message: Vec<u8>) -> Result<()> {
        while self.pending.len() >= CONFIRM_WINDOW {
            self.confirm_oldest()?;
        }
        let props = BasicProperties::default().with_delivery_mode(2); // persistent
        let publish = self.channel.basic_publish(
            self.exchange.as_str().into(),
            self.routing_keys[lane % self.routing_keys.len()].as_str().into(),
            BasicPublishOptions::default(),
            &message,
            props,
        );
        let confirm = self
            .handle
            .block_on(publish)
            .map_err(|e| Error::transient(format!("{}: publishing failed: {e}", self.describe)))?;
        self.pending.push_back(confirm);
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        while !self.pending.is_empty() {
            self.confirm_oldest()?;
        }
        Ok(())
    }
}

impl Drop for RabbitPublisher {
    fn drop(&mut self) {
        self.handle.block_on(close(&self.conn));
    }
}

struct RabbitSubscriber {
    handle: Handle,
    _runtime: Arc<Runtime>,
    conn: Connection,
    channel: Channel,
    consumer: Consumer,
    queue: String,
    describe: String,
}

impl RabbitSubscriber {
    fn ack_with(&mut self, tag: u64, multiple: bool) -> Result<()> {
        let r = self.handle.block_on(self.channel.basic_ack(tag, BasicAckOptions { multiple }));
        r.map_err(|e| Error::transient(format!("{}: acknowledging failed: {e}", self.describe)))
    }
}

impl QueueSubscriber for RabbitSubscriber {
    /// The queue's ready messages (a passive declare: delivered, unacknowledged ones excluded).
    fn waiting(&mut self) -> Option<u64> {
        let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        let declare = self.channel.queue_declare(self.queue.as_str().into(), passive, FieldTable::default());
        let q = self.handle.block_on(async { tokio::time::timeout(BACKLOG_TIMEOUT, declare).await }).ok()?.ok()?;
        Some(u64::from(q.message_count()))
    }

    fn next(&mut self, timeout: Duration) -> Result<Option<(Vec<u8>, u64)>> {
        use futures_core::Stream;
        let consumer = &mut self.consumer;
        let next = std::future::poll_fn(|cx| Pin::new(&mut *consumer).poll_next(cx));
        match self.handle.block_on(async { tokio::time::timeout(timeout, next).await }) {
            Err(_) => Ok(None),
            Ok(Some(Ok(delivery))) => Ok(Some((delivery.data, delivery.delivery_tag))),
            Ok(Some(Err(e))) => Err(Error::transient(format!("{}: consuming failed: {e}", self.describe))),
            Ok(None) => Err(Error::transient(format!("{}: the broker ended the subscription", self.describe))),
        }
    }

    fn ack(&mut self, tag: u64) -> Result<()> {
        self.ack_with(tag, false)
    }

    fn ack_through(&mut self, tag: u64) -> Result<()> {
        self.ack_with(tag, true)
    }
}

impl Drop for RabbitSubscriber {
    fn drop(&mut self) {
        // unacknowledged deliveries go back to the queue when the connection closes
        self.handle.block_on(close(&self.conn));
    }
}

/// `engine.queue.type: rabbitmq`, parsed.
#[derive(Debug)]
pub struct RabbitSpec {
    pub queue: RabbitQueueConfig,
    pub consumer: RabbitConsumerConfig,
    pub lanes: usize,
}

impl BrokerSpec for RabbitSpec {
    fn lanes(&self) -> usize {
        self.lanes
    }
    fn build(&self) -> Result<Box<dyn QueueBroker>> {
        Ok(Box::new(RabbitBroker::new(self.queue.clone(), &self.consumer, self.lanes)?))
    }
    /// Connecting opens a connection and a channel; nothing is declared or consumed.
    fn check(&self) -> Result<String> {
        let broker = RabbitBroker::new(self.queue.clone(), &self.consumer, self.lanes)?;
        broker.check().map(|found| format!("{}: {found}", broker.describe()))
    }
}

/// The `rabbitmq` queue in the registry.
pub const DESCRIPTOR: QueueDescriptor = QueueDescriptor {
    name: "rabbitmq",
    description: "RabbitMQ queues (one per lane), publisher confirms, acks after the destination commit",
    parse: |node| {
        let (queue, consumer, lanes) = super::broker_keys(node)?;
        Ok(std::sync::Arc::new(RabbitSpec { queue, consumer, lanes }))
    },
    schema: super::config_schema::<RabbitQueueConfig, RabbitConsumerConfig>,
};
