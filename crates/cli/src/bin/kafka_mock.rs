//! `bizon-kafka-mock [BROKERS]`: start librdkafka's mock Kafka cluster (in memory, the real wire
//! protocol: produce, fetch, consumer groups, offset commits), print its bootstrap address on
//! stdout as `bootstrap.servers=HOST:PORT,…` and serve until killed. Test support only: nothing
//! is persisted and the cluster is gone when the process ends.

use std::io::Write;

fn main() {
    let brokers: i32 = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 1,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("usage: bizon-kafka-mock [BROKERS]   (a positive number, default 1)");
            std::process::exit(2);
        }
    };
    let cluster = match rdkafka::mocking::MockCluster::new(brokers) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bizon-kafka-mock: cannot start the mock cluster: {e}");
            std::process::exit(1);
        }
    };
    let mut out = std::io::stdout();
    let _ = writeln!(out, "bootstrap.servers={}", cluster.bootstrap_servers());
    let _ = out.flush();
    loop {
        std::thread::park();
    }
}
