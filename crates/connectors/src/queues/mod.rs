//! External queues between producer and consumer (`engine.queue.type`): RabbitMQ and Kafka.

pub mod kafka;
pub mod rabbitmq;
