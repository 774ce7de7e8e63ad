//! A token's scope: what it may ask of Deploy; and how it was made.

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Everything its owner may do (the only kind before scopes existed).
    #[default]
    Full,
    /// Only `GET`, `HEAD` and `OPTIONS` reach Deploy.
    Read,
    /// Only the paths under `webhooks.paths` reach Deploy.
    Webhook,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Full, Scope::Read, Scope::Webhook];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Full => "full",
            Scope::Read => "read",
            Scope::Webhook => "webhook",
        }
    }

    /// What a token of this scope may do, for refusals.
    pub fn allows(self) -> &'static str {
        match self {
            Scope::Full => "anything its owner may do",
            Scope::Read => "only GET, HEAD and OPTIONS requests",
            Scope::Webhook => "only the webhook paths configured under webhooks.paths",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(text: &str) -> Result<Scope, String> {
        Scope::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| format!("unknown scope {text:?}; use full, read or webhook"))
    }
}

impl<'de> serde::Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Scope, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// How a token was made, as the administrators' inventory lists and filters it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MadeBy {
    /// On the pages (a browser session).
    Page,
    /// With the command line, on the gateway's host.
    Cli,
    /// Through the API with a password (scripts, other clients).
    #[default]
    Api,
    /// By a token exchange (a CI identity token traded for a short-lived token).
    Exchange,
}

impl MadeBy {
    pub const ALL: [MadeBy; 4] = [MadeBy::Page, MadeBy::Cli, MadeBy::Api, MadeBy::Exchange];

    pub fn as_str(self) -> &'static str {
        match self {
            MadeBy::Page => "page",
            MadeBy::Cli => "cli",
            MadeBy::Api => "api",
            MadeBy::Exchange => "exchange",
        }
    }
}

impl std::str::FromStr for MadeBy {
    type Err = String;

    fn from_str(text: &str) -> Result<MadeBy, String> {
        MadeBy::ALL
            .into_iter()
            .find(|m| m.as_str() == text)
            .ok_or_else(|| format!("unknown made_by {text:?}; use page, cli, api or exchange"))
    }
}
