//! A small Chrome DevTools Protocol driver for browser tests: starts headless Chromium on a
//! fresh profile, opens pages, evaluates JavaScript in them and takes screenshots. One
//! WebSocket to the browser carries every page's session (flattened sessions).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// The Chromium to run: `$CIVIC_CHROMIUM`, else Debian's `/usr/bin/chromium`.
fn executable() -> PathBuf {
    std::env::var_os("CIVIC_CHROMIUM").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// A headless Chromium, killed when dropped.
pub struct Browser {
    child: std::process::Child,
    _profile: tempfile::TempDir,
    outgoing: mpsc::UnboundedSender<String>,
    pending: Pending,
    next_id: Arc<AtomicU64>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Starts Chromium headless and connects to it.
    pub async fn launch() -> anyhow::Result<Browser> {
        let exe = executable();
        if !exe.exists() {
            bail!(
                "no Chromium at {} — browser tests need it: `apt-get install chromium`, or set CIVIC_CHROMIUM",
                exe.display()
            );
        }
        let profile = tempfile::tempdir()?;
        let child = std::process::Command::new(&exe)
            .args([
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
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        // Chromium writes the port it chose, and the browser's WebSocket path, to this file.
        let active = profile.path().join("DevToolsActivePort");
        let mut endpoint = None;
        for _ in 0..200 {
            if let Ok(text) = std::fs::read_to_string(&active) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    endpoint = Some(format!("ws://127.0.0.1:{port}{path}"));
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let endpoint = endpoint.ok_or_else(|| anyhow!("Chromium did not open its debugging port within 20 s"))?;
        let (socket, _) =
            tokio_tungstenite::connect_async(endpoint.as_str()).await.context("connecting to Chromium")?;
        let (mut sink, mut stream) = socket.split();
        let (outgoing, mut queue) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(text) = queue.recv().await {
                if sink.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
        });
        let pending: Pending = Arc::default();
        let answers = pending.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else { continue };
                let Ok(value) = serde_json::from_str::<Value>(&text) else { continue };
                // Answers carry the id of their command; events have none and are not needed.
                if let Some(id) = value.get("id").and_then(Value::as_u64)
                    && let Some(waiting) = answers.lock().await.remove(&id)
                {
                    let _ = waiting.send(value);
                }
            }
        });
        let next_id = Arc::new(AtomicU64::new(1));
        Ok(Browser { child, _profile: profile, outgoing, pending, next_id })
    }

    /// Sends one command (to a page's session when given) and waits for its result.
    async fn command(&self, session: Option<&str>, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = Value::String(session.to_owned());
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().await.insert(id, tx);
        self.outgoing.send(message.to_string()).map_err(|_| anyhow!("the connection to Chromium is closed"))?;
        let answer = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .with_context(|| format!("{method}: no answer within 30 s"))?
            .map_err(|_| anyhow!("{method}: the connection closed"))?;
        if let Some(error) = answer.get("error") {
            bail!("{method}: {error}");
        }
        Ok(answer["result"].clone())
    }

    /// Opens `url` in a new 1920×1080 page.
    pub async fn open(&self, url: &str) -> anyhow::Result<Page<'_>> {
        let target = self.command(None, "Target.createTarget", json!({"url": "about:blank"})).await?;
        let target = target["targetId"].as_str().ok_or_else(|| anyhow!("no target id"))?.to_owned();
        let attached =
            self.command(None, "Target.attachToTarget", json!({"targetId": target, "flatten": true})).await?;
        let session = attached["sessionId"].as_str().ok_or_else(|| anyhow!("no session id"))?.to_owned();
        let page = Page { browser: self, session };
        page.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1920, "height": 1080, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await?;
        page.call("Page.navigate", json!({"url": url})).await?;
        Ok(page)
    }
}

/// One page of the browser.
pub struct Page<'b> {
    browser: &'b Browser,
    session: String,
}

impl Page<'_> {
    async fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.browser.command(Some(&self.session), method, params).await
    }

    /// The value of a JavaScript expression (promises awaited).
    pub async fn evaluate(&self, expression: &str) -> anyhow::Result<Value> {
        let result = self
            .call("Runtime.evaluate", json!({"expression": expression, "returnByValue": true, "awaitPromise": true}))
            .await?;
        if let Some(exception) = result.get("exceptionDetails") {
            bail!("`{expression}` threw: {exception}");
        }
        Ok(result["result"]["value"].clone())
    }

    /// Polls `expression` every 100 ms until it is truthy, and returns its value.
    pub async fn wait_for(&self, expression: &str, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = Value::Null;
        while tokio::time::Instant::now() < deadline {
            // Before the page's script runs, the expression may throw: keep polling.
            if let Ok(value) = self.evaluate(expression).await {
                let truthy =
                    !matches!(&value, Value::Null | Value::Bool(false)) && value != json!(0) && value != json!("");
                if truthy {
                    return Ok(value);
                }
                last = value;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("`{expression}` was not true within {timeout:?} (last: {last})")
    }

    /// Saves a PNG screenshot of the page.
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"})).await?;
        let data = shot["data"].as_str().ok_or_else(|| anyhow!("no screenshot data"))?;
        let png = base64::engine::general_purpose::STANDARD.decode(data)?;
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
    }
}
