//! Models as data: the manifest describes each network, the runner executes it with tract,
//! and preprocessing turns image regions into the tensor each manifest entry asks for.

pub mod embedded;
pub mod manifest;
mod pool;
mod prelu;
pub mod preprocess;
pub mod runner;

pub use manifest::{Manifest, ModelEntry, Task};
pub use pool::ModelPool;
pub use runner::{Model, ModelError, Outputs};
