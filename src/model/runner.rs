//! Runs one manifest entry through tract: loaded and optimised once with its input shape
//! fixed, then run per frame from a reused state.

use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;
use tract_onnx::prelude::*;

use super::manifest::{InputSpec, Manifest, ModelEntry, Task};

#[derive(Debug, Error)]
pub enum ModelError {
    #[error("{path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("no model {id:?} in the manifest (it has: {})", known.join(", "))]
    UnknownId { id: String, known: Vec<String> },
    #[error("{path}: sha256 is {got}, the manifest says {expected}: the file is not the one the manifest describes")]
    Checksum {
        path: PathBuf,
        expected: String,
        got: String,
    },
    #[error("model {id}: {reason}")]
    Load { id: String, reason: String },
    #[error("model {id}: inference failed: {reason}")]
    Run { id: String, reason: String },
}

type Plan = Arc<TypedRunnableModel>;

/// The outputs of one run, each flat in row-major order, in the manifest's order.
pub type Outputs = Vec<Vec<f32>>;

/// One loaded model with its input buffer.
pub struct Model {
    pub entry: ModelEntry,
    /// The optimised plan, shared by every copy of this model (see [`Model::fork`]).
    plan: Plan,
    /// The plan's scratch state, reused for every run.
    state: TypedSimpleState,
    input: Vec<f32>,
}

impl Model {
    /// Loads `id` from the manifest; `verify` checks the file's sha256 first.
    pub fn load(manifest: &Manifest, id: &str, verify: bool) -> Result<Model, ModelError> {
        let entry = manifest.entry(id)?.clone();
        let bytes = manifest.read_file(&entry, verify)?;
        let fail = load_error(&entry.id);
        let shape: TVec<usize> = entry.input.shape.iter().copied().collect();
        let plan = super::prelu::onnx()
            .model_for_read(&mut bytes.as_slice())
            .and_then(|m| m.with_input_fact(0, f32::fact(&shape).into()))
            .and_then(|m| m.into_typed())
            .and_then(|m| m.into_decluttered())
            .and_then(|mut m| {
                // Our kernels replace nodes in place: the graph stays decluttered, and tract's
                // optimisation (codegen) follows.
                facecast_kernels::install(&mut m)?;
                m.optimize()?;
                Ok(m)
            })
            .and_then(|m| m.into_runnable())
            .map_err(&fail)?;
        check_outputs(&entry, &plan)?;
        let state = plan.spawn().map_err(fail)?;
        let input = vec![0.0; shape.iter().product()];
        Ok(Model {
            entry,
            plan,
            state,
            input,
        })
    }

    /// Another copy of this model to run on another thread: the optimised plan (weights
    /// included) is shared; only the scratch state and the input are new.
    pub fn fork(&self) -> Result<Model, ModelError> {
        let state = self.plan.spawn().map_err(load_error(&self.entry.id))?;
        Ok(Model {
            entry: self.entry.clone(),
            plan: self.plan.clone(),
            state,
            input: vec![0.0; self.input.len()],
        })
    }

    /// Refuses a model made for another task (a configuration naming the wrong id).
    pub fn expect_task(&self, task: Task) -> Result<(), ModelError> {
        if self.entry.task == task {
            Ok(())
        } else {
            Err(ModelError::Load {
                id: self.entry.id.clone(),
                reason: format!("is a {:?} model, {task:?} expected", self.entry.task),
            })
        }
    }

    /// Index of the output the manifest gives `role`.
    pub fn output_index(&self, role: &str) -> Result<usize, ModelError> {
        self.entry
            .outputs
            .iter()
            .position(|o| o.role == role)
            .ok_or_else(|| ModelError::Load {
                id: self.entry.id.clone(),
                reason: format!("no output with role {role:?}"),
            })
    }

    /// The input's description and its tensor data, to fill together (see
    /// [`super::preprocess::sample_into`]).
    pub fn input(&mut self) -> (&InputSpec, &mut [f32]) {
        (&self.entry.input, &mut self.input)
    }

    /// Runs the model on the current input; outputs in the manifest's order.
    pub fn run(&mut self) -> Result<TVec<TValue>, ModelError> {
        let fail = self.run_error();
        let input = self.input_tensor().map_err(&fail)?;
        crate::perf::time(&self.entry.id, || self.state.run(tvec![input])).map_err(fail)
    }

    fn input_tensor(&self) -> TractResult<TValue> {
        Ok(Tensor::from_shape(&self.entry.input.shape, &self.input)?.into())
    }

    /// Turns tract's error in a run of this model into ours (without borrowing the model).
    fn run_error(&self) -> impl Fn(TractError) -> ModelError {
        let id = self.entry.id.clone();
        move |e| ModelError::Run {
            id: id.clone(),
            reason: format!("{e:#}"),
        }
    }

    /// Output `index` of a run of this model, flat in row-major order.
    pub fn output<'a>(&self, outputs: &'a [TValue], index: usize) -> Result<&'a [f32], ModelError> {
        values(&outputs[index]).map_err(self.run_error())
    }

    /// Runs the model on the current input; each output's values, in the manifest's order,
    /// owned (tract's outputs cannot leave the thread that ran them).
    pub fn run_outputs(&mut self) -> Result<Outputs, ModelError> {
        let outputs = self.run()?;
        (0..outputs.len())
            .map(|index| self.output(&outputs, index).map(<[f32]>::to_vec))
            .collect()
    }

    /// Exchanges the input with `buffer` (of the input's length): a pool's thread takes an
    /// input filled elsewhere without copying it.
    pub(super) fn swap_input(&mut self, buffer: &mut Vec<f32>) {
        debug_assert_eq!(buffer.len(), self.input.len());
        std::mem::swap(&mut self.input, buffer);
    }

    /// Runs the model `runs` times on the current input, timing every node of the optimised
    /// plan: where tract spends a model's time, to compare with another runtime's profile of
    /// the same file.
    pub fn profile(&mut self, runs: usize) -> Result<Profile, ModelError> {
        let fail = self.run_error();
        let mut per_node: Vec<std::time::Duration> =
            vec![Default::default(); self.plan.model().nodes.len()];
        for _ in 0..runs {
            let input = self.input_tensor().map_err(&fail)?;
            self.state
                .run_plan_with_eval(tvec![input], |context, state, node, inputs| {
                    let started = std::time::Instant::now();
                    let outputs = tract_onnx::tract_core::plan::eval(context, state, node, inputs);
                    per_node[node.id] += started.elapsed();
                    outputs
                })
                .map_err(&fail)?;
        }
        let model = self.plan.model();
        let mut ops: Vec<OpTime> = Vec::new();
        for node in &model.nodes {
            let op = node.op().name();
            let time = per_node[node.id];
            match ops.iter_mut().find(|t| t.op == op) {
                Some(t) => {
                    t.nodes += 1;
                    t.total += time;
                }
                None => ops.push(OpTime {
                    op: op.to_string(),
                    nodes: 1,
                    total: time,
                }),
            }
        }
        ops.sort_by_key(|op| std::cmp::Reverse(op.total));
        let mut nodes: Vec<NodeTime> = model
            .nodes
            .iter()
            .map(|node| NodeTime {
                name: node.name.clone(),
                op: node.op().name().to_string(),
                // The shapes and what tract chose for the node (its kernel, its strategy).
                detail: format!(
                    "{} -> {}: {}",
                    node.inputs
                        .first()
                        .and_then(|&input| model.outlet_fact(input).ok())
                        .map(|fact| format!("{:?}", fact.shape))
                        .unwrap_or_default(),
                    node.outputs
                        .first()
                        .map(|o| format!("{:?}", o.fact.shape))
                        .unwrap_or_default(),
                    node.op().info().unwrap_or_default().join("; ")
                ),
                total: per_node[node.id],
            })
            .collect();
        nodes.sort_by_key(|node| std::cmp::Reverse(node.total));
        Ok(Profile { ops, nodes })
    }
}

/// Where a model's time went over the runs of [`Model::profile`], most expensive first.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Per operator, the nodes running it summed.
    pub ops: Vec<OpTime>,
    /// Per node of the optimised plan.
    pub nodes: Vec<NodeTime>,
}

/// Time spent in one kind of operator over the runs of [`Model::profile`].
#[derive(Debug, Clone)]
pub struct OpTime {
    /// tract's operator name (`OptMatMul`, `DepthWiseConv`, ...).
    pub op: String,
    /// Nodes of the optimised plan running this operator.
    pub nodes: usize,
    /// Total time in this operator, summed over every run.
    pub total: std::time::Duration,
}

/// Time spent in one node of the optimised plan over the runs of [`Model::profile`].
#[derive(Debug, Clone)]
pub struct NodeTime {
    /// The node's name in the plan (from the ONNX node it came from).
    pub name: String,
    /// Its operator.
    pub op: String,
    /// Its first input's and first output's shapes, and tract's description of the node
    /// (the kernel and strategy it chose).
    pub detail: String,
    /// Total time in this node, summed over every run.
    pub total: std::time::Duration,
}

/// An output's values, flat in row-major order.
pub fn values(output: &TValue) -> TractResult<&[f32]> {
    output.try_as_plain_ram()?.as_slice::<f32>()
}

/// Turns tract's error while loading or preparing model `id` into ours.
fn load_error(id: &str) -> impl Fn(TractError) -> ModelError + '_ {
    move |e| ModelError::Load {
        id: id.to_string(),
        reason: format!("{e:#}"),
    }
}

/// The graph's outputs must be what the manifest says, or every decoder reading them is wrong.
fn check_outputs(entry: &ModelEntry, plan: &Plan) -> Result<(), ModelError> {
    let model = plan.model();
    let fail = load_error(&entry.id);
    let outlets = model.output_outlets().map_err(&fail)?;
    if outlets.len() != entry.outputs.len() {
        return Err(ModelError::Load {
            id: entry.id.clone(),
            reason: format!(
                "graph has {} outputs, the manifest lists {}",
                outlets.len(),
                entry.outputs.len()
            ),
        });
    }
    for (outlet, spec) in outlets.iter().zip(&entry.outputs) {
        let fact = model.outlet_fact(*outlet).map_err(&fail)?;
        let shape: Option<Vec<usize>> = fact.shape.as_concrete().map(|s| s.to_vec());
        if shape.as_deref() != Some(spec.shape.as_slice()) {
            return Err(ModelError::Load {
                id: entry.id.clone(),
                reason: format!(
                    "output {} has shape {:?}, the manifest says {:?}",
                    spec.name, fact.shape, spec.shape
                ),
            });
        }
    }
    Ok(())
}
