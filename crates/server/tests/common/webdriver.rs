//! A headless Chromium (through ChromeDriver) or Firefox (through geckodriver), over the W3C
//! WebDriver protocol (JSON over HTTP, with the `ureq` the other tests use): the few
//! commands the browser tests need, each waiting for what it acts on. Screenshots go to
//! `target/screenshots/`.
//!
//! Needs Debian's `chromium` and `chromium-driver`, and for Firefox Debian's `firefox-esr`
//! and `geckodriver` (from crates.io); `cargo xtask ci` installs them when missing.
//! `CHROMIUM`, `CHROMEDRIVER`, `FIREFOX` and `GECKODRIVER` name other binaries.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use base64::Engine as _;
use serde_json::{Value, json};

/// How long a command waits for what it needs to appear.
const PATIENCE: Duration = Duration::from_secs(10);
/// The key W3C WebDriver names an element reference by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Which browser a [`Browser`] drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Chromium,
    Firefox,
}

pub struct Browser {
    engine: Engine,
    driver: Child,
    endpoint: String,
    agent: ureq::Agent,
}

fn program(variable: &str, default: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| default.to_owned())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Engine {
    /// The driver's command line, and the capabilities of a new session.
    fn driver_and_capabilities(self, port: u16) -> (Command, Value) {
        match self {
            Engine::Chromium => {
                let mut driver = Command::new(program("CHROMEDRIVER", "chromedriver"));
                driver.arg(format!("--port={port}"));
                let capabilities = json!({
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": program("CHROMIUM", "/usr/bin/chromium"),
                        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                 "--window-size=1440,900", "--no-first-run", "--disable-extensions"],
                    },
                    "goog:loggingPrefs": {"browser": "ALL"},
                });
                (driver, capabilities)
            }
            Engine::Firefox => {
                let mut driver = Command::new(program("GECKODRIVER", "geckodriver"));
                driver.args(["--host", "127.0.0.1", "--port", &port.to_string()]);
                let capabilities = json!({
                    "browserName": "firefox",
                    "moz:firefoxOptions": {
                        "binary": program("FIREFOX", "/usr/bin/firefox-esr"),
                        "args": ["-headless", "-width", "1440", "-height", "900"],
                        // No update checks, telemetry or remote settings on a closed network.
                        "prefs": {
                            "app.update.enabled": false,
                            "datareporting.policy.dataSubmissionEnabled": false,
                            "toolkit.telemetry.enabled": false,
                            "network.captive-portal-service.enabled": false,
                            "browser.safebrowsing.update.enabled": false,
                        },
                    },
                });
                (driver, capabilities)
            }
        }
    }

    fn packages(self) -> &'static str {
        match self {
            Engine::Chromium => "Debian's chromium and chromium-driver",
            Engine::Firefox => "Debian's firefox-esr and geckodriver (cargo install geckodriver)",
        }
    }
}

impl Browser {
    /// A new headless Chromium, 1440 × 900.
    pub fn start() -> Self {
        Self::start_engine(Engine::Chromium)
    }

    /// A new headless `engine`, 1440 × 900.
    pub fn start_engine(engine: Engine) -> Self {
        let port = free_port();
        let (mut command, mut capabilities) = engine.driver_and_capabilities(port);
        let driver = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {:?} ({e}): the browser tests need {} (cargo xtask ci installs them when run as root)",
                command.get_program(),
                engine.packages()
            )
        });
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let mut browser = Self { engine, driver, endpoint: format!("http://127.0.0.1:{port}"), agent };
        let deadline = Instant::now() + PATIENCE;
        while browser.agent.get(format!("{}/status", browser.endpoint)).call().is_err() {
            assert!(Instant::now() < deadline, "{:?} did not start", command.get_program());
            std::thread::sleep(Duration::from_millis(100));
        }
        // A confirm() stays open for the test to answer.
        capabilities["unhandledPromptBehavior"] = json!("ignore");
        let session = browser.command("POST", "/session", Some(json!({"capabilities": {"alwaysMatch": capabilities}})));
        let id = session["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {session}")).to_owned();
        browser.endpoint = format!("{}/session/{id}", browser.endpoint);
        browser.command("POST", "/window/rect", Some(json!({"width": 1440, "height": 900})));
        browser
    }

    /// One WebDriver command; its `value`.
    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_command(method, path, body).unwrap_or_else(|error| panic!("{method} {path}: {error}"))
    }

    fn try_command(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, Value> {
        let url = format!("{}{path}", self.endpoint);
        let response = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self.agent.post(&url).send_json(body.unwrap_or_else(|| json!({}))),
        };
        let mut response = response.map_err(|e| json!(e.to_string()))?;
        let ok = response.status().is_success();
        let answer: Value = response.body_mut().read_json().map_err(|e| json!(e.to_string()))?;
        let value = answer.get("value").cloned().unwrap_or(answer.clone());
        if ok { Ok(value) } else { Err(value) }
    }

    pub fn go(&self, url: &str) {
        self.command("POST", "/url", Some(json!({"url": url})));
    }

    pub fn url(&self) -> String {
        self.command("GET", "/url", None).as_str().unwrap_or_default().to_owned()
    }

    /// Waits until the current URL's path is `path` (a page navigates after a fetch).
    pub fn wait_for_path(&self, path: &str) {
        self.wait(&format!("the page at {path}"), || {
            let url = self.url();
            let after_host = url.splitn(4, '/').nth(3).map(|p| format!("/{p}")).unwrap_or_default();
            (after_host.split('?').next() == Some(path)).then_some(())
        });
    }

    /// Polls `probe` until it yields, or fails saying what never came.
    pub fn wait<T>(&self, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(found) = probe() {
                return found;
            }
            if Instant::now() >= deadline {
                let shown = self.try_command(
                    "POST",
                    "/execute/sync",
                    Some(json!({"script": "return document.body.innerText;", "args": []})),
                );
                panic!(
                    "waited {PATIENCE:?} for {what}; the page at {} shows:\n{}",
                    self.url(),
                    shown.unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The element `css` selects, once it exists and is displayed.
    pub fn find(&self, css: &str) -> String {
        self.wait(&format!("`{css}` to be shown"), || {
            let found =
                self.try_command("POST", "/element", Some(json!({"using": "css selector", "value": css}))).ok()?;
            let element = found[ELEMENT].as_str()?.to_owned();
            let shown = self.try_command("GET", &format!("/element/{element}/displayed"), None).ok()?;
            (shown == json!(true)).then_some(element)
        })
    }

    /// Whether any element matches `css` now.
    pub fn exists(&self, css: &str) -> bool {
        self.try_command("POST", "/element", Some(json!({"using": "css selector", "value": css}))).is_ok()
    }

    /// Clicks `css` (found again if the page replaced it meanwhile).
    pub fn click(&self, css: &str) {
        self.wait(&format!("`{css}` to take a click"), || {
            let element = self.find(css);
            self.try_command("POST", &format!("/element/{element}/click"), None).ok()
        });
    }

    /// Replaces the value of the control `css` selects with `text`.
    pub fn fill(&self, css: &str, text: &str) {
        self.wait(&format!("`{css}` to take text"), || {
            let element = self.find(css);
            self.try_command("POST", &format!("/element/{element}/clear"), None).ok()?;
            self.try_command("POST", &format!("/element/{element}/value"), Some(json!({"text": text}))).ok()
        });
    }

    /// Picks the option of value `value` in the select `css` names.
    pub fn select(&self, css: &str, value: &str) {
        self.click(&format!("{css} option[value=\"{value}\"]"));
    }

    /// Types `text` on the keyboard into whatever has the focus (`\u{E004}` is Tab,
    /// `\u{E007}` Enter), as a person without a mouse would.
    pub fn keys(&self, text: &str) {
        let strokes: Vec<Value> = text
            .chars()
            .flat_map(|c| {
                [json!({"type": "keyDown", "value": c.to_string()}), json!({"type": "keyUp", "value": c.to_string()})]
            })
            .collect();
        self.command(
            "POST",
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": strokes}]})),
        );
    }

    /// The id of the element that has the focus.
    pub fn focused(&self) -> String {
        self.script("return document.activeElement ? document.activeElement.id : '';")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The rendered text of `css` (found again if the page replaced it meanwhile).
    pub fn text(&self, css: &str) -> String {
        self.wait(&format!("the text of `{css}`"), || {
            let element = self.find(css);
            let text = self.try_command("GET", &format!("/element/{element}/text"), None).ok()?;
            Some(text.as_str().unwrap_or_default().to_owned())
        })
    }

    /// Waits until the text of `css` is not empty, and returns it.
    pub fn wait_for_text(&self, css: &str) -> String {
        self.wait(&format!("text in `{css}`"), || Some(self.text(css)).filter(|t| !t.trim().is_empty()))
    }

    /// The whole document as it is now.
    pub fn source(&self) -> String {
        self.command("GET", "/source", None).as_str().unwrap_or_default().to_owned()
    }

    pub fn script(&self, script: &str) -> Value {
        self.command("POST", "/execute/sync", Some(json!({"script": script, "args": []})))
    }

    /// Accepts the `confirm()` the page shows, returning its text.
    pub fn accept_prompt(&self) -> String {
        let text = self.wait("a prompt", || self.try_command("GET", "/alert/text", None).ok());
        self.command("POST", "/alert/accept", None);
        text.as_str().unwrap_or_default().to_owned()
    }

    /// What the page logged (errors, CSP violations), as `LEVEL message` lines. Chromium
    /// only: geckodriver has no command for the console, so Firefox gives no lines.
    pub fn console(&self) -> Vec<String> {
        if self.engine == Engine::Firefox {
            return Vec::new();
        }
        let entries = self.command("POST", "/se/log", Some(json!({"type": "browser"})));
        entries
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| format!("{} {}", e["level"].as_str().unwrap_or(""), e["message"].as_str().unwrap_or("")))
            .collect()
    }

    fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.command("POST", "/goog/cdp/execute", Some(json!({"cmd": cmd, "params": params})))
    }

    /// Saves the whole page at 1440 px and at 390 px wide (a phone) as
    /// `target/screenshots/{name}-1440.png` and `…-390.png`. Firefox's are
    /// `{name}-firefox-{width}.png`, where the narrow one is as narrow as Firefox lets a
    /// window be (about 490 px: its windows have a minimum width, and geckodriver has no
    /// device emulation).
    pub fn screenshots(&self, name: &str) {
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        for width in [1440, 390] {
            let (png, file) = match self.engine {
                Engine::Chromium => (self.chromium_screenshot(width), format!("{name}-{width}.png")),
                Engine::Firefox => {
                    let png = self.firefox_screenshot(width);
                    let shown = self.script("return window.innerWidth;");
                    (png, format!("{name}-firefox-{shown}.png"))
                }
            };
            let png = base64::engine::general_purpose::STANDARD.decode(png).unwrap();
            std::fs::write(dir.join(file), png).unwrap();
        }
        match self.engine {
            Engine::Chromium => drop(self.cdp("Emulation.clearDeviceMetricsOverride", json!({}))),
            Engine::Firefox => drop(self.command("POST", "/window/rect", Some(json!({"width": 1440, "height": 900})))),
        }
    }

    /// A page `width` px wide does not scroll sideways: only a table scrolls, in its box
    /// (an element that sticks out makes a phone zoom the whole page out).
    fn assert_no_sideways_scroll(&self, width: u32) {
        let wide = self.script(
            "return [document.documentElement.scrollWidth, [...document.querySelectorAll('body *')]\
               .filter(e => e.getBoundingClientRect().right > window.innerWidth).slice(0, 5)\
               .map(e => `${e.tagName}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`)];",
        );
        assert!(wide[0].as_u64().unwrap_or(0) <= u64::from(width), "{} is wider than {width} px: {wide}", self.url());
    }

    /// The page at `width` as a phone or a desktop shows it, whole: base64 PNG.
    fn chromium_screenshot(&self, width: u32) -> String {
        let mobile = width < 600;
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": mobile}),
        );
        let height = self.script("return document.documentElement.scrollHeight;").as_u64().unwrap_or(900).max(400);
        self.assert_no_sideways_scroll(width);
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
        let shot = self.cdp("Page.captureScreenshot", json!({"format": "png"}));
        shot["data"].as_str().unwrap_or_default().to_owned()
    }

    /// Firefox: the window at `width`, and geckodriver's whole-page screenshot.
    fn firefox_screenshot(&self, width: u32) -> String {
        self.command("POST", "/window/rect", Some(json!({"width": width, "height": 900})));
        let shown = self.script("return window.innerWidth;").as_u64().unwrap_or(u64::from(width));
        self.assert_no_sideways_scroll(u32::try_from(shown).unwrap_or(width));
        self.command("GET", "/moz/screenshot/full", None).as_str().unwrap_or_default().to_owned()
    }
}

/// `target/screenshots` of this workspace (or of `CARGO_TARGET_DIR`).
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"), PathBuf::from);
    target.join("screenshots")
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.try_command("DELETE", "", None);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
