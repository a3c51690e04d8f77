//! facecast: a camera as a facial-analysis sensor.
//!
//! Data flows one way through one module per stage:
//! [`capture`] (frame sources) -> [`frame`] (the fixed ring of buffers) -> [`detect`] (faces)
//! -> [`record`] (the versioned output) -> [`pipeline`] (the loop that ties them together)
//! -> [`publish`] (MQTT: records, events, status, stats, commands).
//! Models are data: [`model::manifest`] describes every network, [`model::runner`] runs it
//! through tract and [`model::preprocess`] is the one place images become tensors.

pub mod annotate;
pub mod capture;
pub mod config;
pub mod detect;
pub mod frame;
pub mod geometry;
pub mod model;
pub mod pipeline;
pub mod pixel;
pub mod publish;
pub mod record;
