//! A write load for crash tests: workers write back to back until stopped,
//! and every answer is kept, so a test knows exactly which writes the
//! server acknowledged and which failed, with what code, whatever it killed
//! meanwhile.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;
use tonic::Status;

/// A call that failed: what it was, and the answer.
#[derive(Debug)]
pub struct Failure {
    pub call: String,
    pub status: Status,
}

/// What a load has been answered so far.
struct Answers<W> {
    acknowledged: Vec<W>,
    failed: Vec<Failure>,
}

/// Where a worker's step records each answer.
pub struct Recorder<W> {
    answers: Arc<Mutex<Answers<W>>>,
}

impl<W> Clone for Recorder<W> {
    fn clone(&self) -> Self {
        Self {
            answers: self.answers.clone(),
        }
    }
}

impl<W: Clone> Recorder<W> {
    /// Records `answer` to `call`: `ack` of what came back when it is OK,
    /// the status when not; returns the answer for the step to go on with.
    pub fn record<T>(
        &self,
        call: &str,
        answer: Result<T, Status>,
        ack: impl FnOnce(&T) -> W,
    ) -> Option<T> {
        let mut answers = self.answers.lock().expect("answers");
        match answer {
            Ok(value) => {
                answers.acknowledged.push(ack(&value));
                Some(value)
            }
            Err(status) => {
                answers.failed.push(Failure {
                    call: call.to_string(),
                    status,
                });
                None
            }
        }
    }
}

/// Workers writing until [`WriteLoad::stop`].
pub struct WriteLoad<W> {
    answers: Arc<Mutex<Answers<W>>>,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl<W: Clone + Send + 'static> WriteLoad<W> {
    /// Starts `workers` tasks, each calling `step(recorder, worker, n)` for
    /// n = 0, 1, … until the load stops or the step answers `false` (it has
    /// nothing more to write).
    pub fn start<F, Fut>(workers: usize, step: F) -> Self
    where
        F: Fn(Recorder<W>, usize, u64) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send,
    {
        let answers = Arc::new(Mutex::new(Answers {
            acknowledged: Vec::new(),
            failed: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..workers)
            .map(|worker| {
                let recorder = Recorder {
                    answers: answers.clone(),
                };
                let (stop, step) = (stop.clone(), step.clone());
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        if !step(recorder.clone(), worker, n).await {
                            break;
                        }
                        n += 1;
                    }
                })
            })
            .collect();
        Self {
            answers,
            stop,
            workers,
        }
    }

    /// How many calls were acknowledged so far.
    pub fn acknowledged(&self) -> usize {
        self.answers.lock().expect("answers").acknowledged.len()
    }

    /// How many calls failed so far.
    pub fn failed(&self) -> usize {
        self.answers.lock().expect("answers").failed.len()
    }

    /// Waits until `count` calls in all were acknowledged: the barrier a
    /// test kills behind, so the kill lands mid-load.
    pub async fn until_acknowledged(&self, count: usize) {
        crate::eventually(&format!("{count} writes acknowledged"), || async {
            let seen = self.acknowledged();
            if seen >= count {
                Ok(())
            } else {
                Err(self.progress())
            }
        })
        .await;
    }

    /// What the load was answered so far, for a failure message.
    fn progress(&self) -> String {
        let answers = self.answers.lock().expect("answers");
        format!(
            "{} acknowledged, {} failed, the last failure: {:?}",
            answers.acknowledged.len(),
            answers.failed.len(),
            answers.failed.last()
        )
    }

    /// Waits until `count` calls in all failed.
    pub async fn until_failed(&self, count: usize) {
        crate::eventually(&format!("{count} writes failed"), || async {
            let seen = self.failed();
            if seen >= count { Ok(()) } else { Err(seen) }
        })
        .await;
    }

    /// Stops the workers after their call in flight; returns every
    /// acknowledged write, in the order the answers came, and every failure.
    pub async fn stop(self) -> (Vec<W>, Vec<Failure>) {
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers {
            worker.await.expect("a load worker panicked");
        }
        let mut answers = self.answers.lock().expect("answers");
        (
            std::mem::take(&mut answers.acknowledged),
            std::mem::take(&mut answers.failed),
        )
    }
}
