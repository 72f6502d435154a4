//! `bizon-kafka-mock [BROKERS] [--topic NAME:PARTITIONS]...`: start librdkafka's mock Kafka cluster (in memory, the real wire
//! protocol: produce, fetch, consumer groups, offset commits), print its bootstrap address on
//! stdout as `bootstrap.servers=HOST:PORT,…` and serve until killed. Test support only: nothing
//! is persisted and the cluster is gone when the process ends.

use std::io::Write;

fn usage() -> ! {
    eprintln!(
        "usage: bizon-kafka-mock [BROKERS] [--topic NAME:PARTITIONS]...   (BROKERS: a positive number, default 1)"
    );
    std::process::exit(2);
}

fn main() {
    let mut brokers = 1;
    let mut topics: Vec<(String, i32)> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--topic" => {
                let spec = args.next().unwrap_or_else(|| usage());
                let (name, n) = spec.rsplit_once(':').unwrap_or_else(|| usage());
                match n.parse::<i32>() {
                    Ok(n) if n > 0 && !name.is_empty() => topics.push((name.to_owned(), n)),
                    _ => usage(),
                }
            }
            n => match n.parse::<i32>() {
                Ok(n) if n > 0 => brokers = n,
                _ => usage(),
            },
        }
    }
    let cluster = match rdkafka::mocking::MockCluster::new(brokers) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bizon-kafka-mock: cannot start the mock cluster: {e}");
            std::process::exit(1);
        }
    };
    // the mock has no CreateTopics API; topics not listed here are auto-created with 4 partitions
    for (name, partitions) in &topics {
        if let Err(e) = cluster.create_topic(name, *partitions, 1) {
            eprintln!("bizon-kafka-mock: cannot create topic `{name}`: {e}");
            std::process::exit(1);
        }
    }
    let mut out = std::io::stdout();
    let _ = writeln!(out, "bootstrap.servers={}", cluster.bootstrap_servers());
    let _ = out.flush();
    loop {
        std::thread::park();
    }
}
