//! What a run is set up with besides the VM itself — limits, a gdb stub, a recording — and the
//! steps both the headless run and the TUI take to attach them.

use std::path::PathBuf;
use std::sync::Arc;

use crate::controller::Controller;
use crate::gdb::GdbServer;
use crate::recording::writer::{RecordError, WriteStats};
use crate::recording::{Recorder, RecordingConsole, header};
use crate::sink::ExitSink;
use crate::vmm::{RunEnd, RunLimits, RunningVm, VmConfig, VmError};

/// How to run.
#[derive(Default)]
pub struct Session {
    pub limits: RunLimits,
    /// A bound gdb stub to serve.
    pub gdb: Option<GdbServer>,
    /// `--record FILE`.
    pub record: Option<PathBuf>,
}

/// Errors setting up or finishing a run.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error(transparent)]
    Record(#[from] RecordError),
}

impl SessionError {
    /// Whether the user's input is at fault (exit status 2).
    pub fn is_bad_input(&self) -> bool {
        match self {
            SessionError::Vm(e) => e.is_bad_input(),
            SessionError::Record(RecordError::Create { .. }) => true,
            SessionError::Record(_) => false,
        }
    }
}

impl Session {
    /// Creates the recording, if asked for: the console is recorded too, and the recorder joins
    /// the sinks.
    pub fn attach_recorder(
        &self,
        config: &mut VmConfig,
        sinks: &mut Vec<Arc<dyn ExitSink>>,
    ) -> Result<Option<Arc<Recorder>>, SessionError> {
        let Some(path) = &self.record else { return Ok(None) };
        let recorder = Arc::new(Recorder::create(path, &header::for_run(&config.image, config.cpus))?);
        let inner = std::mem::replace(&mut config.console, Box::new(std::io::sink()));
        config.console = Box::new(RecordingConsole { inner, recorder: recorder.clone() });
        sinks.push(recorder.clone());
        Ok(Some(recorder))
    }

    /// Once the vCPUs run: event times for the recorder, the gdb stub on its own thread.
    pub fn started(&mut self, running: &RunningVm, recorder: Option<&Arc<Recorder>>) -> Controller {
        let controller = Controller::new(running);
        if let Some(r) = recorder {
            r.set_start(running.start());
        }
        if let Some(gdb) = self.gdb.take() {
            let _ = gdb.spawn(controller.clone());
        }
        controller
    }
}

/// Closes the recording and says what it holds.
pub fn finish_recording(
    recorder: Option<Arc<Recorder>>,
    end: &RunEnd,
    path: Option<&PathBuf>,
) -> Result<(), SessionError> {
    let (Some(r), Some(path)) = (recorder, path) else { return Ok(()) };
    let WriteStats { exits, chunks, bytes, .. } = r.finish(end)?;
    let per_exit =
        if exits > 0 { format!(", {:.1} bytes per exit", bytes as f64 / exits as f64) } else { String::new() };
    eprintln!("kvmscope: recorded {exits} exits in {} ({bytes} bytes in {chunks} chunks{per_exit})", path.display());
    Ok(())
}
