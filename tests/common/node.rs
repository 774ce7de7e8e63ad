//! A Node test component (the OpenID provider, the JWT-validating Deploy stand-in) as a
//! child process: started with piped stdio, its stderr collected for failure messages,
//! ready once it prints `READY <value>`, and gone when dropped or when its stdin closes.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running component.
pub struct NodeProcess {
    pub child: Child,
    /// Held open: the component exits when it closes.
    _stdin: ChildStdin,
    stderr: Arc<Mutex<String>>,
}

impl NodeProcess {
    /// Runs `node <script>` with the environment already set on `command`; returns the
    /// process and what followed `READY `. `what` and `setup` name the component and
    /// the script that installs its packages, for the failure message.
    pub async fn start(mut command: Command, what: &str, setup: &str) -> (NodeProcess, String) {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("could not run node for {what}: {e}"));
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let text = Arc::new(Mutex::new(String::new()));
        let sink = text.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let ready = tokio::time::timeout(START_TIMEOUT, async {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(value) = line.strip_prefix("READY ") {
                    // Keep draining stdout so the component never blocks on it.
                    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                    return Some(value.trim().to_string());
                }
            }
            None
        })
        .await;
        let value = match ready {
            Ok(Some(value)) => value,
            failed => {
                let why = match failed {
                    Err(_) => format!("no READY line within {START_TIMEOUT:?}"),
                    _ => format!("it exited ({:?})", child.wait().await),
                };
                // Let the stderr reader catch up with a dying process.
                tokio::time::sleep(Duration::from_millis(100)).await;
                panic!(
                    "{what} did not start: {why} (were its packages installed? run {setup})\n\
                     --- its stderr ---\n{}",
                    text.lock().unwrap()
                );
            }
        };
        let process = NodeProcess {
            child,
            _stdin: stdin,
            stderr: text,
        };
        (process, value)
    }

    /// What the component wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}
