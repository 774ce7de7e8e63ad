//! Why a presented token was refused, with the code and status every path answers.

use crate::core::scope::Scope;
use crate::core::token::MalformedToken;

/// Why a presented token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Malformed(MalformedToken),
    /// Unknown or revoked: deliberately the same answer.
    #[error("token is not valid: it is unknown or has been revoked")]
    Invalid,
    #[error("token has expired")]
    Expired,
    #[error("the token's user is disabled")]
    UserDisabled,
    /// The owner signs in with SSO and administrators have switched SSO users' tokens off.
    #[error("personal access tokens of SSO users are switched off by an administrator")]
    SsoDisabled,
    /// The SSO provider refused to re-validate the owner (their access there was
    /// revoked); the token works again once they sign in through SSO.
    #[error("the token's owner lost access at the SSO provider (it refused to re-validate them); the token works again once they sign in through SSO")]
    SsoSuspended,
    #[error("the store could not be reached to check the token; try again")]
    Unavailable,
    /// This address sent too many bad tokens recently.
    #[error("too many failed token checks from your address; wait and try again")]
    TooManyFailures,
    /// Valid, but its scope does not cover this request.
    #[error("this token's scope is {}: it allows {}", .0.as_str(), .0.allows())]
    ScopeDenied(Scope),
    /// Valid, but not from this address.
    #[error("this token may not be used from your address")]
    AddressNotAllowed,
}

impl Refusal {
    /// Stable machine-readable code for the JSON error body and metrics.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Malformed(_) => "malformed_token",
            Refusal::Invalid => "invalid_token",
            Refusal::Expired => "token_expired",
            Refusal::UserDisabled => "user_disabled",
            Refusal::SsoDisabled => "sso_tokens_disabled",
            Refusal::SsoSuspended => "sso_suspended",
            Refusal::Unavailable => "token_check_unavailable",
            Refusal::TooManyFailures => "too_many_failures",
            Refusal::ScopeDenied(_) => "scope_denied",
            Refusal::AddressNotAllowed => "address_not_allowed",
        }
    }

    /// The HTTP status a refusal is answered with, on every path.
    pub fn status(self) -> http::StatusCode {
        match self {
            Refusal::Unavailable => http::StatusCode::SERVICE_UNAVAILABLE,
            Refusal::TooManyFailures => http::StatusCode::TOO_MANY_REQUESTS,
            Refusal::ScopeDenied(_) | Refusal::AddressNotAllowed => http::StatusCode::FORBIDDEN,
            _ => http::StatusCode::UNAUTHORIZED,
        }
    }
}
