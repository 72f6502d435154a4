//! `bizon-kafka-load BOOTSTRAP TOPIC [--partitions N] [--from I] [--count N] [--size BYTES] [--batch N]`:
//! create the topic (N partitions, default 4; a broker without the admin API auto-creates it
//! with its own default count) if missing and produce messages `I..I+count`,
//! message `i` on partition `i % N` (so its offset is `i / N` on a fresh topic), with key
//! `{"id":i}` and a JSON value of about BYTES bytes (default 200), at most `--batch` messages per
//! produced record batch (default 10000; 1 keeps Tansu's high watermark exact, see the README's
//! test section). Prints the count and rate.
//! Test and benchmark support for the Kafka source.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

fn usage(msg: &str) -> ! {
    eprintln!("bizon-kafka-load: {msg}\nusage: bizon-kafka-load BOOTSTRAP TOPIC [--partitions N] [--from I] [--count N] [--size BYTES] [--batch N]");
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(bootstrap), Some(topic)) = (args.first(), args.get(1)) else { usage("BOOTSTRAP and TOPIC are required") };
    let mut opts = [("--partitions", 4u64), ("--from", 0), ("--count", 1000), ("--size", 200), ("--batch", 10_000)];
    let mut rest = args[2..].iter();
    while let Some(flag) = rest.next() {
        let Some(slot) = opts.iter_mut().find(|(f, _)| f == flag) else { usage(&format!("unknown option `{flag}`")) };
        let value = rest.next().and_then(|v| v.parse().ok());
        slot.1 = value.unwrap_or_else(|| usage(&format!("`{flag}` needs a number")));
    }
    let [(_, partitions), (_, from), (_, count), (_, size), (_, batch)] = opts;
    let partitions = partitions.max(1) as i32;

    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    // an existing topic is used as it is (a consumer's metadata request never auto-creates)
    let probe: BaseConsumer = config.create().unwrap_or_else(|e| usage(&format!("{e}")));
    let exists = probe
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map(|m| m.topics().first().is_some_and(|t| !t.partitions().is_empty()))
        .unwrap_or(false);
    // a broker without the admin API (librdkafka's mock: the request times out) creates the
    // topic on the producer's metadata request instead, with its default partition count
    let created = match exists {
        true => Ok(()),
        false => {
            let admin: AdminClient<DefaultClientContext> = config.create().unwrap_or_else(|e| usage(&format!("{e}")));
            let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
            let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(3)));
            create_topic(admin.create_topics([&new], &opts))
        }
    };

    let producer: BaseProducer = config
        .clone()
        .set("linger.ms", "20")
        .set("batch.num.messages", batch.max(1).to_string())
        .set("queue.buffering.max.messages", "1000000")
        .set("compression.type", "lz4")
        .create()
        .unwrap_or_else(|e| usage(&format!("{e}")));
    let metadata = producer.client().fetch_metadata(Some(topic), Duration::from_secs(10));
    let partitions = match metadata.as_ref().map(|m| m.topics().first().map_or(0, |t| t.partitions().len())) {
        Ok(n) if n > 0 => n as i32,
        Ok(_) | Err(_) => usage(&format!("topic `{topic}` could not be created: {created:?} / {:?}", metadata.err())),
    };
    let started = Instant::now();
    let pad = "x".repeat(size.saturating_sub(64) as usize);
    for i in from..from + count {
        let key = format!("{{\"id\":{i}}}");
        let value = format!("{{\"id\":{i},\"name\":\"user-{i}\",\"active\":true,\"payload\":\"{pad}\"}}");
        let mut record = BaseRecord::to(topic).key(&key).payload(&value).partition((i % partitions as u64) as i32);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, r)) if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) => {
                    producer.poll(Duration::from_millis(10));
                    record = r;
                }
                Err((e, _)) => usage(&format!("producing message {i}: {e}")),
            }
        }
        producer.poll(Duration::ZERO);
    }
    if let Err(e) = producer.flush(Duration::from_secs(60)) {
        usage(&format!("flushing: {e}"));
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "produced {count} messages to {topic} ({partitions} partitions) in {secs:.2} s ({:.0} msgs/s)",
        count as f64 / secs
    );
}

/// Wait for the topic creation (an admin future); an existing topic is fine.
fn create_topic<F>(f: F) -> Result<(), String>
where
    F: std::future::Future<Output = rdkafka::error::KafkaResult<Vec<rdkafka::admin::TopicResult>>>,
{
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().map_err(|e| e.to_string())?;
    for r in rt.block_on(f).map_err(|e| e.to_string())? {
        match r {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => return Err(format!("{t}: {e}")),
        }
    }
    Ok(())
}
