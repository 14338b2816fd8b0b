//! The built-in `otlp` target's source: the pools applications pushed to the receiver, read from
//! its table at every tick (no I/O), so up, rules, health and the exposition treat them as they
//! treat any other target's pools.

use std::sync::Arc;
use std::time::Instant;

use super::{ErrorKind, SampleError, SampleFuture, Source};
use crate::receiver::Receiver;

pub struct Otlp {
    receiver: Option<Arc<Receiver>>,
}

impl Otlp {
    pub fn new(receiver: Option<Arc<Receiver>>) -> Otlp {
        Otlp { receiver }
    }
}

impl Source for Otlp {
    fn sample(&mut self) -> SampleFuture<'_> {
        let sample = match &self.receiver {
            Some(receiver) => Ok(receiver.sample(Instant::now())),
            None => Err(SampleError {
                kind: ErrorKind::Connect,
                message: "the OTLP receiver is not running in this command".into(),
            }),
        };
        Box::pin(std::future::ready(sample))
    }

    fn reset(&mut self) {}
}
