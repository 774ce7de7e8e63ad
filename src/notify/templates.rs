//! The e-mail's subject (plain text) and body (HTML, every inserted value escaped),
//! rendered with minijinja, and the text/plain alternative rendered from the same data
//! by a built-in template.
//!
//! Administrators write the templates, so their cost is bounded: each at most
//! [`MAX_TEMPLATE_BYTES`], each render at most [`FUEL`] instructions and
//! [`MAX_RENDERED_BYTES`] of output, and [`Templates::prepare`] and
//! [`Templates::render_apart`] render on a blocking thread within [`RENDER_TIMEOUT`], so
//! that a template never holds up the runtime that serves token checks.

use std::sync::Arc;
use std::time::Duration;

use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};
use serde::Serialize;

/// Longest subject or body template.
pub const MAX_TEMPLATE_BYTES: usize = 16 * 1024;
/// Instructions one render may run: the built-in templates need a few hundred.
pub const FUEL: u64 = 50_000;
/// Longest rendered subject, body or text.
pub const MAX_RENDERED_BYTES: usize = 256 * 1024;
/// Longest a check or a render may take off the runtime.
pub const RENDER_TIMEOUT: Duration = Duration::from_secs(2);

pub const DEFAULT_SUBJECT: &str =
    "Your personal access token \"{{ token_name }}\" expires in {{ days_left }} day{% if days_left != 1 %}s{% endif %}";

pub const DEFAULT_BODY: &str = r#"<p>Hello {{ user }},</p>
<p>Your personal access token <strong>{{ token_name }}</strong> for Digital.ai Deploy expires in
{{ days_left }} day{% if days_left != 1 %}s{% endif %}: on {{ expires_at_local }} ({{ expires_at_utc }}).</p>
<p>Scripts and pipelines that use it will then be refused. Generate a new token before then
and replace this one{% if tokens_url %} on your <a href="{{ tokens_url }}">Access tokens</a> page{% endif %}.</p>
<p>This message was sent by the Deploy personal access token gateway.</p>
"#;

const TEXT: &str = "Hello {{ user }},

Your personal access token \"{{ token_name }}\" for Digital.ai Deploy expires in {{ days_left }} day{% if days_left != 1 %}s{% endif %}: on {{ expires_at_local }} ({{ expires_at_utc }}).

Scripts and pipelines that use it will then be refused. Generate a new token before then and replace this one{% if tokens_url %} on your Access tokens page: {{ tokens_url }}{% endif %}.
";

/// What a template can use.
#[derive(Debug, Clone, Serialize)]
pub struct Variables {
    /// The token owner's username.
    pub user: String,
    pub email: String,
    pub token_name: String,
    pub token_id: String,
    /// RFC 3339, UTC (`2026-12-07T01:00:00Z`).
    pub expires_at_utc: String,
    /// In the server's zone (`2026-12-07 02:00 CET`).
    pub expires_at_local: String,
    pub time_zone: String,
    /// Whole days left, rounded up (an expiry in 6 days and 1 hour is 7).
    pub days_left: i64,
    /// The access tokens page, or empty when `notify.public_url` is not set.
    pub tokens_url: String,
}

impl Variables {
    /// Made-up values for checking templates when they are saved.
    pub fn example() -> Variables {
        Variables {
            user: "alice".into(),
            email: "alice@example.com".into(),
            token_name: "ci <pipeline>".into(),
            token_id: "abc123".into(),
            expires_at_utc: "2026-12-07T01:00:00Z".into(),
            expires_at_local: "2026-12-07 02:00 CET".into(),
            time_zone: "Europe/Paris".into(),
            days_left: 7,
            tokens_url: "https://deploy.example.com/patgate/".into(),
        }
    }
}

/// Which template, for error messages and escaping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Subject,
    Body,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Subject => "subject",
            Part::Body => "body",
        }
    }
}

/// A rendered e-mail, before addressing.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub subject: String,
    pub html: String,
    pub text: String,
}

/// The administrators' templates, checked.
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// Compiles the subject and body (`None`: the built-in ones) and renders them once
    /// with example values; a template that does not render is refused with its line.
    pub fn new(subject: Option<&str>, body: Option<&str>) -> Result<Templates, String> {
        for (part, source) in [(Part::Subject, subject), (Part::Body, body)] {
            if source.is_some_and(|s| s.len() > MAX_TEMPLATE_BYTES) {
                return Err(format!(
                    "{}: longer than {} KiB; shorten it",
                    part.name(),
                    MAX_TEMPLATE_BYTES / 1024
                ));
            }
        }
        let mut env = Environment::new();
        env.set_fuel(Some(FUEL));
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|name| match name {
            "body" => AutoEscape::Html,
            _ => AutoEscape::None,
        });
        let sources = [
            (Part::Subject, subject.unwrap_or(DEFAULT_SUBJECT)),
            (Part::Body, body.unwrap_or(DEFAULT_BODY)),
        ];
        for (part, source) in sources {
            env.add_template_owned(part.name(), source.to_string())
                .map_err(|e| explain(part, &e))?;
        }
        env.add_template("text", TEXT)
            .map_err(|e| format!("built-in text template: {e}"))?;
        let templates = Templates { env };
        templates.render(&Variables::example())?;
        Ok(templates)
    }

    /// [`Self::new`] on a blocking thread, within [`RENDER_TIMEOUT`].
    pub async fn prepare(
        subject: Option<String>,
        body: Option<String>,
    ) -> Result<Templates, String> {
        apart(move || Templates::new(subject.as_deref(), body.as_deref())).await
    }

    /// [`Self::render`] on a blocking thread, within [`RENDER_TIMEOUT`].
    pub async fn render_apart(self: &Arc<Self>, vars: &Variables) -> Result<Rendered, String> {
        let (templates, vars) = (self.clone(), vars.clone());
        apart(move || templates.render(&vars)).await
    }

    pub fn render(&self, vars: &Variables) -> Result<Rendered, String> {
        let render = |name: &str, part: Option<Part>| {
            let mut out = Capped(Vec::new());
            self.env
                .get_template(name)
                .and_then(|t| t.render_captured_to(vars, &mut out).map(drop))
                .map_err(|e| match part {
                    Some(part) => explain(part, &e),
                    None => format!("built-in text template: {e}"),
                })?;
            String::from_utf8(out.0).map_err(|_| format!("{name}: renders to invalid UTF-8"))
        };
        let subject = render("subject", Some(Part::Subject))?;
        // A header is one line.
        let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
        if subject.is_empty() {
            return Err("subject: renders to nothing; write a subject line".into());
        }
        Ok(Rendered {
            subject,
            html: render("body", Some(Part::Body))?,
            text: render("text", None)?,
        })
    }
}

/// Runs `work` on a blocking thread, giving up after [`RENDER_TIMEOUT`] (the thread
/// then stops on its own when its fuel runs out).
async fn apart<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    match tokio::time::timeout(RENDER_TIMEOUT, tokio::task::spawn_blocking(work)).await {
        Ok(Ok(done)) => done,
        Ok(Err(_)) => Err("the templates could not be rendered".into()),
        Err(_) => Err(format!(
            "rendering took longer than {} s; simplify the template",
            RENDER_TIMEOUT.as_secs()
        )),
    }
}

/// Output that refuses to grow past [`MAX_RENDERED_BYTES`].
struct Capped(Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + bytes.len() > MAX_RENDERED_BYTES {
            return Err(std::io::Error::other("rendered text too long"));
        }
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `body, line 3: syntax error: unexpected end of input`.
fn explain(part: Part, e: &minijinja::Error) -> String {
    if e.kind() == ErrorKind::OutOfFuel {
        return format!(
            "{}: needs more work to render than a notice may take (loops within loops?); simplify it",
            part.name()
        );
    }
    if e.kind() == ErrorKind::WriteFailure {
        return format!(
            "{}: renders to more than {} KiB; shorten it",
            part.name(),
            MAX_RENDERED_BYTES / 1024
        );
    }
    let reason = e
        .detail()
        .map(|d| format!("{}: {d}", e.kind()))
        .unwrap_or_else(|| e.kind().to_string());
    match e.line() {
        Some(line) => format!("{}, line {line}: {reason}", part.name()),
        None => format!("{}: {reason}", part.name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_render_and_escape_html_but_not_the_subject() {
        let t = Templates::new(None, None).unwrap();
        let mut vars = Variables::example();
        vars.token_name = "<script>alert(1)</script>".into();
        let out = t.render(&vars).unwrap();
        assert!(
            out.html
                .contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
            "{}",
            out.html
        );
        assert!(!out.html.contains("<script>"));
        assert!(
            out.subject.contains("<script>alert(1)</script>"),
            "{}",
            out.subject
        );
        assert!(out.text.contains("<script>alert(1)</script>"));
        assert!(out.text.contains("https://deploy.example.com/patgate/"));
    }

    #[test]
    fn costly_templates_are_stopped() {
        let nested = "{% for a in range(100000) %}{% for b in range(100000) %}{{ a }}{% endfor %}{% endfor %}";
        let started = std::time::Instant::now();
        let err = Templates::new(None, Some(nested)).err().unwrap();
        assert!(err.contains("simplify"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        let huge = "{{ 'x' * 1000000 }}";
        let err = Templates::new(None, Some(huge)).err().unwrap();
        assert!(err.contains("KiB"), "{err}");
        let long = "x".repeat(MAX_TEMPLATE_BYTES + 1);
        let err = Templates::new(None, Some(&long)).err().unwrap();
        assert!(err.starts_with("body: longer than 16 KiB"), "{err}");
    }

    #[test]
    fn a_broken_template_is_refused_with_its_line() {
        let err = Templates::new(None, Some("<p>fine</p>\n<p>{{ user </p>"))
            .err()
            .unwrap();
        assert!(err.starts_with("body, line 2:"), "{err}");
        let err = Templates::new(Some("{{ no_such_variable }}"), None)
            .err()
            .unwrap();
        assert!(err.starts_with("subject, line 1:"), "{err}");
        assert!(err.contains("undefined"), "{err}");
    }
}
