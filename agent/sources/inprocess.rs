//! Pools that live in the agent's own process (the `demo` command's), sampled by calling them:
//! no I/O, no connection of the agent's, so a sample cannot hang or fail.

use std::fmt;
use std::sync::Arc;

use super::{SampleFuture, Source};
use crate::model::TargetSample;

/// Something in this process that can report its pools, as a source would see them.
pub trait InProcessPools: Send + Sync + fmt::Debug {
    fn sample(&self) -> TargetSample;
}

pub struct InProcess {
    pools: Arc<dyn InProcessPools>,
}

impl InProcess {
    pub fn new(pools: Arc<dyn InProcessPools>) -> InProcess {
        InProcess { pools }
    }
}

impl Source for InProcess {
    fn sample(&mut self) -> SampleFuture<'_> {
        Box::pin(std::future::ready(Ok(self.pools.sample())))
    }

    fn reset(&mut self) {}
}
