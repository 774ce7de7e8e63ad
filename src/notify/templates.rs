//! The e-mail's subject (plain text) and body (HTML, every inserted value escaped),
//! rendered with minijinja, and the text/plain alternative rendered from the same data
//! by a built-in template.

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;

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
        let mut env = Environment::new();
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

    pub fn render(&self, vars: &Variables) -> Result<Rendered, String> {
        let render = |name: &str, part: Option<Part>| {
            self.env
                .get_template(name)
                .and_then(|t| t.render(vars))
                .map_err(|e| match part {
                    Some(part) => explain(part, &e),
                    None => format!("built-in text template: {e}"),
                })
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

/// `body, line 3: syntax error: unexpected end of input`.
fn explain(part: Part, e: &minijinja::Error) -> String {
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
