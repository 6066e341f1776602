//! Running the `pgstorage` binary from tests.

use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long a spawned command may take to finish or to start answering (start-up includes
/// initdb on a busy CI machine).
pub const WAIT: Duration = Duration::from_secs(60);

/// `pgstorage <args>` with none of the caller's `PGSTORAGE_*` settings.
pub fn pgstorage(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pgstorage"));
    command.args(args).stdin(Stdio::null());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PGSTORAGE_") {
            command.env_remove(name);
        }
    }
    command
}

/// Runs a command that should end by itself, killing it (and failing) after [`WAIT`].
pub fn run_to_end(mut command: Command) -> Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(WAIT) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = kill(pid, Signal::SIGKILL);
            panic!("{command:?} did not finish within {WAIT:?}");
        }
    }
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
