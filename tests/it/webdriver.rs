//! A small W3C WebDriver client over reqwest, driving Debian's headless `chromium` through
//! `chromedriver` (both installed by `.ci/run`). No browser means a failing test, not a skip.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A browser session; the driver process ends when it is dropped.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
}

/// Where the driver and the browser are (`CHROMEDRIVER`, `CHROMIUM` override).
fn paths() -> (String, String) {
    let driver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let chrome = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    (driver, chrome)
}

impl Browser {
    /// Starts chromedriver and a headless Chromium; `javascript: false` turns scripts off.
    pub async fn start(javascript: bool) -> Browser {
        let (driver_bin, chrome) = paths();
        assert!(
            std::path::Path::new(&chrome).exists(),
            "no browser at {chrome}: install Debian's chromium and chromium-driver (bash .ci/run does)"
        );
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {driver_bin} ({e}): install chromium-driver (bash .ci/run does)"
                )
            });
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let mut ready = false;
        for _ in 0..100 {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ready, "chromedriver did not become ready");
        let mut prefs = json!({});
        if !javascript {
            prefs["profile.managed_default_content_settings.javascript"] = json!(2);
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chrome,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1600"],
                "prefs": prefs
            }
        }}});
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {r}"))
            .to_string();
        Browser {
            driver,
            base,
            session,
            http,
        }
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("webdriver request");
        r.json::<Value>().await.unwrap_or(Value::Null)
    }

    async fn ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let v = self.cmd(method, path, body).await;
        if let Some(e) = v["value"]["error"].as_str() {
            panic!("webdriver {path}: {e}: {}", v["value"]["message"]);
        }
        v["value"].clone()
    }

    /// Opens `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.ok(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        self.ok(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The page's HTML as the browser has it now.
    pub async fn source(&self) -> String {
        self.ok(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The element for `css`, waiting up to 5 s for it to appear.
    pub async fn find(&self, css: &str) -> String {
        for _ in 0..50 {
            if let Some(e) = self.try_find(css).await {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "no element {css} on {}:\n{}",
            self.url().await,
            self.source().await
        );
    }

    /// The element for `css` if there is one now.
    pub async fn try_find(&self, css: &str) -> Option<String> {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v["value"][ELEMENT].as_str().map(str::to_string)
    }

    /// How many elements match `css`.
    pub async fn count(&self, css: &str) -> usize {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v["value"].as_array().map(Vec::len).unwrap_or(0)
    }

    /// Clicks the element for `css`.
    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.ok(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Types `text` into the element for `css` (after clearing it).
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.ok(
            reqwest::Method::POST,
            &format!("/element/{e}/clear"),
            Some(json!({})),
        )
        .await;
        self.ok(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Selects the option `value` of the `<select>` for `css`.
    pub async fn select(&self, css: &str, value: &str) {
        self.click(&format!("{css} option[value=\"{value}\"]"))
            .await;
    }

    /// The visible text of the element for `css`.
    pub async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.ok(reqwest::Method::GET, &format!("/element/{e}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// An attribute or property of the element for `css`.
    pub async fn property(&self, css: &str, name: &str) -> String {
        let e = self.find(css).await;
        self.ok(
            reqwest::Method::GET,
            &format!("/element/{e}/property/{name}"),
            None,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Waits until the element for `css` has `want` in its text.
    pub async fn wait_text(&self, css: &str, want: &str) {
        for _ in 0..50 {
            if let Some(e) = self.try_find(css).await {
                let v = self
                    .cmd(reqwest::Method::GET, &format!("/element/{e}/text"), None)
                    .await;
                if v["value"].as_str().is_some_and(|t| t.contains(want)) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{css} never showed {want:?}; page {}:\n{}",
            self.url().await,
            self.source().await
        );
    }

    /// Runs an async script (WebDriver executes it outside the page's CSP); the script calls
    /// `arguments[arguments.length - 1]` with its result.
    pub async fn run_async(&self, script: &str) -> Value {
        self.ok(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// The text of an open `alert()`/`confirm()` dialog, if any.
    pub async fn dialog(&self) -> Option<String> {
        let v = self.cmd(reqwest::Method::GET, "/alert/text", None).await;
        v["value"].as_str().map(str::to_string)
    }

    /// The browser console's messages since the last call (chromedriver's log endpoint).
    pub async fn console(&self) -> Vec<String> {
        let v = self
            .ok(
                reqwest::Method::POST,
                "/se/log",
                Some(json!({"type": "browser"})),
            )
            .await;
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["message"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Types `keys` on the keyboard into whatever has the focus (WebDriver key codes, e.g.
    /// `\u{E004}` Tab, `\u{E007}` Enter).
    pub async fn keys(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|c| {
                [
                    json!({"type": "keyDown", "value": c.to_string()}),
                    json!({"type": "keyUp", "value": c.to_string()}),
                ]
            })
            .collect();
        self.ok(
            reqwest::Method::POST,
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        )
        .await;
    }

    /// Runs a script in the page and returns its result.
    pub async fn run(&self, script: &str) -> Value {
        self.ok(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// The value of a cookie (HttpOnly ones too).
    pub async fn cookie(&self, name: &str) -> Option<String> {
        let v = self
            .cmd(reqwest::Method::GET, &format!("/cookie/{name}"), None)
            .await;
        v["value"]["value"].as_str().map(str::to_string)
    }

    /// A PNG of the whole page: the window is made as tall as the page first.
    pub async fn screenshot(&self, path: &std::path::Path) {
        let h = self
            .ok(
                reqwest::Method::POST,
                "/execute/sync",
                Some(
                    json!({"script": "return document.documentElement.scrollHeight;", "args": []}),
                ),
            )
            .await
            .as_u64()
            .unwrap_or(1600)
            .clamp(600, 6000);
        self.ok(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": 1280, "height": h + 140})),
        )
        .await;
        let v = self.ok(reqwest::Method::GET, "/screenshot", None).await;
        self.ok(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": 1280, "height": 1600})),
        )
        .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("screenshot is base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }

    /// Ends the session and the driver.
    pub async fn quit(self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
        // Drop ends the driver (a second DELETE of the ended session is harmless).
    }
}

impl Drop for Browser {
    /// A failed test drops the browser without `quit`: end the session (which closes
    /// Chromium) with a blocking request, then the driver, so no browser is left behind.
    fn drop(&mut self) {
        use std::io::{Read, Write};
        if let Some(addr) = self.base.strip_prefix("http://")
            && let Ok(mut s) = std::net::TcpStream::connect(addr)
        {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = write!(
                s,
                "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session
            );
            let _ = s.read_to_end(&mut Vec::new());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
