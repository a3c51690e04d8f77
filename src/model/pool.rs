//! One model run on several inputs at once: the calling thread runs one of them while threads
//! of the pool's own run the others. Each thread keeps its copy of the model (the optimised
//! plan is shared, see [`Model::fork`]) for the life of the pool, so its scratch stays warm: a
//! thread spawned for each run started cold and cost more than it saved (docs/performance.md).
//! The threads never see the frame: the caller fills each input, so a frame borrowed from the
//! capture ring needs no copy.

use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use super::manifest::InputSpec;
use super::runner::{Model, ModelError, Outputs};

pub struct ModelPool {
    /// Runs on the calling thread.
    local: Model,
    threads: Vec<ModelThread>,
}

/// A copy of the model on a thread of its own, waiting for inputs.
struct ModelThread {
    /// `None` once the pool is dropped: the thread's loop ends when this closes.
    inputs: Option<Sender<Vec<f32>>>,
    results: Receiver<(Vec<f32>, Result<Outputs, ModelError>)>,
    /// The input buffer to fill next; it travels to the thread and back with each run (empty
    /// once the thread has stopped).
    input: Vec<f32>,
    handle: Option<JoinHandle<()>>,
}

impl ModelPool {
    /// `threads` (at least 1) run the model at once, the calling thread being one of them.
    pub fn new(model: Model, threads: usize) -> Result<ModelPool, ModelError> {
        let threads = (1..threads.max(1))
            .map(|_| ModelThread::spawn(model.fork()?))
            .collect::<Result<_, _>>()?;
        Ok(ModelPool {
            local: model,
            threads,
        })
    }

    pub fn model_id(&self) -> &str {
        &self.local.entry.id
    }

    /// Runs the model once per item, as many at once as the pool has threads: `fill` writes an
    /// item's input (and returns what the caller needs to read its outputs). Results are in
    /// the items' order, and the same whatever the number of threads.
    pub fn run_each<T, C>(
        &mut self,
        items: &[T],
        mut fill: impl FnMut(&T, &InputSpec, &mut [f32]) -> C,
    ) -> Result<Vec<(C, Outputs)>, ModelError> {
        let mut results = Vec::with_capacity(items.len());
        for wave in items.chunks(self.threads.len() + 1) {
            let (mine, theirs) = wave.split_first().expect("chunks are never empty");
            // A thread that stopped never gave its input back: nothing of this wave starts.
            if self.threads[..theirs.len()]
                .iter()
                .any(|t| t.input.is_empty())
            {
                return Err(stopped(&self.local.entry.id));
            }
            // The others' inputs first, so that their threads start while this one fills its own.
            let mut filled = Vec::with_capacity(wave.len());
            let mut started = Vec::with_capacity(theirs.len());
            for (thread, item) in self.threads.iter_mut().zip(theirs) {
                filled.push(fill(item, &self.local.entry.input, &mut thread.input));
                started.push(thread.start(&self.local.entry.id));
            }
            let (spec, tensor) = self.local.input();
            filled.insert(0, fill(mine, spec, tensor));
            // Every started thread is waited for, even after a failure, so that no result is
            // left behind to be read as the next run's.
            let mut outputs = vec![self.local.run_outputs()];
            for (thread, start) in self.threads.iter_mut().zip(started) {
                outputs.push(start.and_then(|()| thread.finish(&self.local.entry.id)));
            }
            for (c, output) in filled.into_iter().zip(outputs) {
                results.push((c, output?));
            }
        }
        Ok(results)
    }
}

impl ModelThread {
    fn spawn(mut model: Model) -> Result<ModelThread, ModelError> {
        let (inputs, jobs) = mpsc::channel::<Vec<f32>>();
        let (done, results) = mpsc::channel();
        let input = vec![0.0; model.input().1.len()];
        let id = model.entry.id.clone();
        let handle = std::thread::Builder::new()
            .name(format!("model {id}"))
            .spawn(move || {
                for mut input in jobs {
                    model.swap_input(&mut input);
                    let result = model.run_outputs();
                    model.swap_input(&mut input);
                    if done.send((input, result)).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| ModelError::Load {
                id,
                reason: format!("cannot start its thread: {e}"),
            })?;
        Ok(ModelThread {
            inputs: Some(inputs),
            results,
            input,
            handle: Some(handle),
        })
    }

    fn start(&mut self, id: &str) -> Result<(), ModelError> {
        let input = std::mem::take(&mut self.input);
        match &self.inputs {
            Some(inputs) if inputs.send(input).is_ok() => Ok(()),
            _ => Err(stopped(id)),
        }
    }

    fn finish(&mut self, id: &str) -> Result<Outputs, ModelError> {
        let (input, result) = self.results.recv().map_err(|_| stopped(id))?;
        self.input = input;
        result
    }
}

/// The thread ended (a panic in tract): every later run on it fails the same way.
fn stopped(id: &str) -> ModelError {
    ModelError::Run {
        id: id.to_string(),
        reason: "its thread has stopped".into(),
    }
}

impl Drop for ModelThread {
    fn drop(&mut self) {
        self.inputs = None;
        if let Some(handle) = self.handle.take() {
            // A thread that panicked has already reported it through `finish`.
            let _ = handle.join();
        }
    }
}
