//! A real browser for the page tests: Debian's headless Chromium driven over WebDriver
//! (fantoccini) through a chromedriver this harness starts on a free port, with a fresh
//! profile per browser. Screenshots go to `target/screenshots/` (not committed).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// How long a page may take to show what a test waits for.
const WAIT: Duration = Duration::from_secs(10);

/// Flags that make Chromium run headless as root without calling out to a network.
const CHROMIUM_FLAGS: [&str; 10] = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--lang=en-US",
];

/// A running chromedriver; killed when dropped.
pub struct Driver {
    port: u16,
    _child: tokio::process::Child,
}

impl Driver {
    /// Starts chromedriver; browsers it starts run in `time_zone` (`TZ`), UTC by default.
    pub async fn start(time_zone: Option<&str>) -> Driver {
        let port = super::free_port();
        let child = tokio::process::Command::new(chromedriver())
            .arg(format!("--port={port}"))
            .env("TZ", time_zone.unwrap_or("UTC"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts (scripts/browser-setup.sh installs it)");
        let driver = Driver {
            port,
            _child: child,
        };
        let ready = super::within(Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        assert!(ready.is_some(), "chromedriver listens within 10 s");
        driver
    }

    /// A new browser with its own empty profile and a window `width` px wide.
    pub async fn browser(&self, width: u32, height: u32) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| f.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.push(format!("--window-size={width},{height}"));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": chromium(), "args": args}),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a WebDriver session with Chromium");
        Browser {
            client,
            _profile: profile,
        }
    }
}

fn chromedriver() -> String {
    std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into())
}

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// One browser session.
pub struct Browser {
    pub client: Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Waits until the page's script has finished rendering its view.
    pub async fn ready(&self) {
        self.find("body[data-ready='true']").await;
    }

    /// The first element matching `css`, waiting for it to appear. A search the
    /// browser aborts because the page is navigating (a form's submit, a redirect) is
    /// asked again on the page that follows, until `WAIT` is over.
    pub async fn find(&self, css: &str) -> Element {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let error = match self
                .client
                .wait()
                .at_most(left)
                .for_element(Locator::Css(css))
                .await
            {
                Ok(el) => return el,
                Err(e) => e,
            };
            if std::time::Instant::now() >= deadline || !error.to_string().contains("navigation") {
                let url = self.client.current_url().await.map(|u| u.to_string());
                let page = self.client.source().await.unwrap_or_default();
                panic!("no element {css} within {WAIT:?} ({error}) on {url:?}:\n{page}")
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.client.find_all(Locator::Css(css)).await.unwrap()
    }

    /// The visible text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    /// Waits until the element matching `css` shows text containing `expected`.
    pub async fn wait_text(&self, css: &str, expected: &str) -> String {
        let start = std::time::Instant::now();
        loop {
            if let Ok(el) = self.client.find(Locator::Css(css)).await {
                if let Ok(text) = el.text().await {
                    if text.contains(expected) {
                        return text;
                    }
                    if start.elapsed() > WAIT {
                        panic!("{css} shows {text:?}, not {expected:?}");
                    }
                }
            }
            if start.elapsed() > WAIT {
                panic!("no element {css} showing {expected:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until nothing matches `css`.
    pub async fn wait_gone(&self, css: &str) {
        let start = std::time::Instant::now();
        while !self.find_all(css).await.is_empty() {
            assert!(
                start.elapsed() < WAIT,
                "{css} is still there after {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks the element matching `css`; if the page re-rendered it between finding
    /// and clicking, finds it again.
    pub async fn click(&self, css: &str) {
        for _ in 0..20 {
            match self.find(css).await.click().await {
                Ok(()) => return,
                Err(fantoccini::error::CmdError::Standard(e))
                    if e.error == fantoccini::error::ErrorStatus::StaleElementReference =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("clicking {css}: {e}"),
            }
        }
        panic!("{css} kept being replaced");
    }

    /// Replaces the value of the input matching `css`.
    pub async fn fill(&self, css: &str, value: &str) {
        let el = self.find(css).await;
        el.clear().await.unwrap();
        el.send_keys(value).await.unwrap();
    }

    /// Picks the option with `value` in the select matching `css`.
    pub async fn select(&self, css: &str, value: &str) {
        self.find(css)
            .await
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("{css} has no option {value}: {e}"));
    }

    /// The page's current path.
    pub async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_string()
    }

    /// Runs a script in the page and returns its value.
    pub async fn eval(&self, script: &str) -> serde_json::Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// Runs an asynchronous script (its callback is the last argument) and returns
    /// what it passed to the callback.
    pub async fn eval_async(&self, script: &str) -> serde_json::Value {
        self.client.execute_async(script, vec![]).await.unwrap()
    }

    /// Types `keys` into whatever has the keyboard focus (`\u{e007}` is Enter,
    /// `\u{e00c}` Escape, `\u{e004}` Tab).
    pub async fn press(&self, keys: &str) {
        self.client
            .active_element()
            .await
            .unwrap()
            .send_keys(keys)
            .await
            .unwrap();
    }

    /// The id (or name) of the element that has the keyboard focus.
    pub async fn focused(&self) -> String {
        let value = self
            .eval("const e = document.activeElement; return e.id || e.getAttribute('name') || e.tagName")
            .await;
        value.as_str().unwrap_or_default().to_string()
    }

    /// Form fields on the page that have neither a label nor an `aria-label`.
    pub async fn unlabelled_fields(&self) -> Vec<String> {
        let value = self
            .eval(
                "return [...document.querySelectorAll('input, select, textarea')]
                   .filter((e) => e.type !== 'hidden' && e.labels.length === 0
                     && !e.getAttribute('aria-label') && !e.getAttribute('aria-labelledby'))
                   .map((e) => e.outerHTML)",
            )
            .await;
        serde_json::from_value(value).unwrap()
    }

    /// Signs in through the sign-in page and waits for the Access tokens page.
    pub async fn sign_in(&self, base: &str, user: &str, password: &str) {
        self.goto(&format!("{base}/patgate/signin")).await;
        self.fill("input[name='username']", user).await;
        self.fill("input[name='password']", password).await;
        self.click("#sign-in").await;
        self.find("#user-menu-button").await;
        self.ready().await;
    }

    /// Saves a screenshot as `target/screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        let dir = screenshots_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// Resizes the window (390 px: a phone; 1280 px: a laptop).
    pub async fn resize(&self, width: u32, height: u32) {
        self.client.set_window_size(width, height).await.unwrap();
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// `target/screenshots/`, beside the build's own temporary directory.
pub fn screenshots_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("screenshots")
}
