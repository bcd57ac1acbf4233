//! A small Chrome DevTools Protocol driver for browser tests: starts headless Chromium on a
//! fresh profile, opens pages, evaluates JavaScript in them and takes screenshots. One
//! WebSocket to the browser carries every page's commands, each page on its own flattened
//! session (`Target.attachToTarget` with `flatten: true`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// How long Chromium may take to open its debugging port.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one command may wait for its answer.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How often [`Page::wait_for`] evaluates its expression.
const POLL: Duration = Duration::from_millis(100);

/// The flags of every run: headless, no sandbox (tests run as root), and nothing that talks to
/// the network on its own.
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1920,1080",
    "--remote-debugging-port=0",
];

/// The Chromium to run: `$CIVIC_CHROMIUM`, else Debian's `/usr/bin/chromium`.
fn executable() -> PathBuf {
    std::env::var_os("CIVIC_CHROMIUM").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// A headless Chromium with one DevTools connection; the process is killed, and its profile
/// removed, when this is dropped.
pub struct Browser {
    connection: Arc<Connection>,
    _process: Process,
}

impl Browser {
    /// Starts Chromium headless on a fresh profile and connects to it. Fails with a message
    /// naming what to install when there is no Chromium.
    pub async fn launch() -> anyhow::Result<Browser> {
        let exe = executable();
        if !exe.is_file() {
            bail!(
                "no Chromium at {}: browser tests need it (`apt-get install chromium`, or set CIVIC_CHROMIUM)",
                exe.display()
            );
        }
        let dir = tempfile::Builder::new().prefix("civic-chromium-").tempdir().context("making a profile directory")?;
        let profile = dir.path().join("profile");
        let log = std::fs::File::create(dir.path().join("chromium.log")).context("making Chromium's log file")?;
        let child = Command::new(&exe)
            .args(FLAGS)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let mut process = Process { child, dir };

        // Chromium writes the port it chose, and the browser's WebSocket path, to this file.
        let active = profile.join("DevToolsActivePort");
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let endpoint = loop {
            if let Ok(text) = std::fs::read_to_string(&active) {
                let mut lines = text.lines().map(str::trim);
                if let (Some(port), Some(path)) = (lines.next(), lines.next())
                    && !port.is_empty()
                    && path.starts_with('/')
                {
                    break format!("ws://127.0.0.1:{port}{path}");
                }
            }
            if let Some(status) = process.child.try_wait().context("watching Chromium")? {
                bail!("Chromium exited ({status}) before opening its debugging port; its log:\n{}", process.log());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("Chromium did not open its debugging port within {START_TIMEOUT:?}; its log:\n{}", process.log());
            }
            tokio::time::sleep(POLL).await;
        };
        let connection = Connection::open(&endpoint).await?;
        Ok(Browser { connection: Arc::new(connection), _process: process })
    }

    /// Opens `url` in a new page of 1920×1080 CSS pixels. Returns once the navigation has
    /// started, not when the page has loaded: wait for what the test needs with
    /// [`Page::wait_for`].
    pub async fn open(&self, url: &str) -> anyhow::Result<Page> {
        let created = self.connection.call(None, "Target.createTarget", json!({"url": "about:blank"})).await?;
        let target = created["targetId"].as_str().context("Target.createTarget answered no targetId")?;
        let attached =
            self.connection.call(None, "Target.attachToTarget", json!({"targetId": target, "flatten": true})).await?;
        let session = attached["sessionId"].as_str().context("Target.attachToTarget answered no sessionId")?;
        let page = Page { connection: Arc::clone(&self.connection), session: session.to_owned() };
        let metrics = json!({"width": 1920, "height": 1080, "deviceScaleFactor": 1, "mobile": false});
        page.call("Emulation.setDeviceMetricsOverride", metrics).await?;
        let navigated = page.call("Page.navigate", json!({"url": url})).await?;
        if let Some(error) = navigated.get("errorText").and_then(Value::as_str) {
            bail!("opening {url}: {error}");
        }
        Ok(page)
    }
}

/// One page (tab) of the browser.
pub struct Page {
    connection: Arc<Connection>,
    session: String,
}

impl Page {
    async fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.connection.call(Some(&self.session), method, params).await
    }

    /// The value of a JavaScript expression in the page (a promise is awaited); an error if
    /// it throws. `undefined`, and values JSON cannot hold, come back as null.
    pub async fn evaluate(&self, expression: &str) -> anyhow::Result<Value> {
        let params = json!({"expression": expression, "returnByValue": true, "awaitPromise": true});
        let result = self.call("Runtime.evaluate", params).await?;
        if let Some(exception) = result.get("exceptionDetails") {
            let why = exception
                .pointer("/exception/description")
                .or_else(|| exception.get("text"))
                .and_then(Value::as_str)
                .unwrap_or("an exception");
            bail!("`{expression}` threw: {why}");
        }
        Ok(result.pointer("/result/value").cloned().unwrap_or(Value::Null))
    }

    /// Evaluates `expression` every 100 ms until its value is truthy (as JavaScript judges),
    /// and returns that value. Throwing counts as not yet (the page may still be loading); at
    /// the timeout the error names the expression and its last value or exception.
    pub async fn wait_for(&self, expression: &str, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let last = match self.evaluate(expression).await {
                Ok(value) if truthy(&value) => return Ok(value),
                Ok(value) => format!("last value: {value}"),
                Err(error) => format!("last error: {error:#}"),
            };
            if tokio::time::Instant::now() >= deadline {
                bail!("`{expression}` did not become true within {timeout:?} ({last})");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Saves a PNG screenshot of what the page shows.
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"})).await?;
        let data = shot["data"].as_str().context("Page.captureScreenshot answered no data")?;
        let png = base64::engine::general_purpose::STANDARD.decode(data).context("the screenshot's base64")?;
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
    }
}

/// JavaScript's truthiness, for the JSON a page hands back.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// The Chromium process and the directory of its profile and log.
struct Process {
    child: Child,
    dir: tempfile::TempDir,
}

impl Process {
    /// The last lines Chromium wrote to its standard error.
    fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("chromium.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Commands waiting for their answers, by id; closed once the connection has ended.
#[derive(Default)]
struct Pending {
    waiting: HashMap<u64, oneshot::Sender<Value>>,
    closed: bool,
}

/// The WebSocket to the browser: a task writes the commands queued to it, another hands each
/// answer to the command waiting for its id (events, which have no id, are dropped).
struct Connection {
    outgoing: mpsc::UnboundedSender<String>,
    pending: Arc<Mutex<Pending>>,
    next_id: AtomicU64,
}

impl Connection {
    async fn open(endpoint: &str) -> anyhow::Result<Connection> {
        let (socket, _) = tokio_tungstenite::connect_async(endpoint)
            .await
            .with_context(|| format!("connecting to Chromium at {endpoint}"))?;
        let (mut sink, mut stream) = socket.split();
        let (outgoing, mut queue) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(text) = queue.recv().await {
                if sink.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
            let _ = sink.close().await;
        });
        let pending = Arc::new(Mutex::new(Pending::default()));
        let answers = Arc::clone(&pending);
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else { continue };
                let Ok(answer) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                let Some(id) = answer.get("id").and_then(Value::as_u64) else { continue };
                let waiting = answers.lock().await.waiting.remove(&id);
                if let Some(waiting) = waiting {
                    let _ = waiting.send(answer);
                }
            }
            // Whoever still waits learns at once that no answer will come.
            let mut pending = answers.lock().await;
            pending.closed = true;
            pending.waiting.clear();
        });
        Ok(Connection { outgoing, pending, next_id: AtomicU64::new(1) })
    }

    /// Sends one command (to a page's session, when given) and waits for its result.
    async fn call(&self, session: Option<&str>, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut command = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            command["sessionId"] = Value::from(session);
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.pending.lock().await;
            if pending.closed {
                bail!("{method}: the connection to Chromium is closed");
            }
            pending.waiting.insert(id, tx);
        }
        self.outgoing
            .send(command.to_string())
            .map_err(|_| anyhow!("{method}: the connection to Chromium is closed"))?;
        let answer = match tokio::time::timeout(COMMAND_TIMEOUT, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => bail!("{method}: the connection to Chromium closed before the answer"),
            Err(_) => {
                self.pending.lock().await.waiting.remove(&id);
                bail!("{method}: no answer from Chromium within {COMMAND_TIMEOUT:?}");
            }
        };
        if let Some(error) = answer.get("error") {
            bail!("{method}: {error}");
        }
        Ok(answer.get("result").cloned().unwrap_or(Value::Null))
    }
}
