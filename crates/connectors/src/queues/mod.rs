//! External queues between producer and consumer (`engine.queue.type`): RabbitMQ.

pub mod rabbitmq;
