//! facecast: a camera as a facial-analysis sensor.
//!
//! Data flows one way through one module per stage:
//! [`capture`] (frame sources) -> [`frame`] (the fixed ring of buffers) -> [`detect`] (faces)
//! -> [`analyse`] (mesh, irises, pose, gaze) -> [`record`] (the versioned output), tied together
//! by [`pipeline`] (the loop); [`publish`] sends records, events, status, stats and command
//! responses over MQTT.
//! Models are data: [`model::manifest`] describes every network, [`model::runner`] runs it
//! through tract and [`model::preprocess`] is the one place images become tensors.

pub mod analyse;
pub mod annotate;
pub mod bench;
pub mod capture;
pub mod config;
pub mod detect;
pub mod enrol;
pub mod frame;
pub mod gallery;
pub mod geometry;
pub mod model;
pub mod perf;
pub mod pipeline;
pub mod pixel;
pub mod publish;
pub mod record;
pub mod track;
