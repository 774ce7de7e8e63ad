//! A Deploy stand-in that accepts a request only with a bearer JWT that the `jose` library
//! (`tests/deploy-jwt/server.mjs` on Node) verifies the way Deploy's OIDC `access-token`
//! settings would: issuer, audience, a JWKS URL or an HS256 secret, the allowed algorithms,
//! the user-name and roles claims. `scripts/node-setup.sh` installs its packages.
//!
//! Valid token: 200 JSON `{"user", "roles", "path", "method", "claims", "headers"}` (the
//! request's header lines as `[name, value]` pairs);
//! `/deployit/security/check/admin` answers `<boolean>true|false</boolean>` (ADMIN_ROLE in
//! the roles); `/deployit/server/info` answers `<server-info>…</server-info>`;
//! `/deployit/security/role/roles` the token's roles and
//! `/deployit/security/granted-permissions` what [`JwtDeployOptions::role_permissions`]
//! grants them, in XML (`<list><string>…`, `<map><entry key="SCOPE">…`) or, asked with
//! `Accept: application/json`, in JSON.
//! Refused or missing token: 401 JSON `{"error": "<jose error code>", "message"}` (and
//! `"claim"` when jose names the claim that failed), e.g.
//! `ERR_JWS_SIGNATURE_VERIFICATION_FAILED`, `ERR_JWT_CLAIM_VALIDATION_FAILED`,
//! `ERR_JWT_EXPIRED`, `ERR_JOSE_ALG_NOT_ALLOWED`, `ERR_JWKS_NO_MATCHING_KEY`, or
//! `ERR_MISSING_BEARER` without a token.
//!
//! An unknown `kid` makes it fetch the key set again at once (no cool-down), so a key
//! published after it started is found; the set is also refetched when older than 10 s.
//! Time claims get 5 s of clock tolerance; `exp` is required.

use bytes::Bytes;

use super::node::NodeProcess;
use super::oidc::request;
use super::Answer;

/// How the stand-in validates tokens; the fields map to Deploy's `access-token` settings.
#[derive(Debug, Clone, Default)]
pub struct JwtDeployOptions {
    /// `keyRetrievalUri`: the JWKS that asymmetric tokens (RS256, EdDSA, …) are verified with.
    pub jwks_url: Option<String>,
    /// `secretKey`: the shared secret HS* tokens are verified with.
    pub hs256_secret: Option<String>,
    pub issuer: String,
    pub audience: String,
    /// `jwsAlg`: the accepted `alg` values, e.g. `["RS256"]`.
    pub algorithms: Vec<String>,
    /// `userNameClaimName`; `preferred_username` when `None`.
    pub username_claim: Option<String>,
    /// `rolesClaimName` (a list of strings or one string); `groups` when `None`.
    pub roles_claim: Option<String>,
    /// The role `/deployit/security/check/admin` answers `true` for.
    pub admin_role: Option<String>,
    /// What each role grants: `{"role": {"scope": ["permission", …]}}`, `""` the global
    /// scope; `/deployit/security/granted-permissions` answers the merge for a token's roles.
    pub role_permissions: Option<serde_json::Value>,
}

/// The running stand-in; killed when dropped (and it exits by itself when its stdin closes).
pub struct JwtDeploy {
    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub url: String,
    pub port: u16,
    process: NodeProcess,
}

pub fn server_script() -> String {
    format!("{}/tests/deploy-jwt/server.mjs", env!("CARGO_MANIFEST_DIR"))
}

/// The variables the stand-in reads; all are cleared before it starts so a caller's
/// environment cannot leak into it.
const SETTINGS: [&str; 10] = [
    "PORT",
    "JWKS_URL",
    "HS256_SECRET",
    "ISSUER",
    "AUDIENCE",
    "ALGORITHMS",
    "USERNAME_CLAIM",
    "ROLES_CLAIM",
    "ADMIN_ROLE",
    "ROLE_PERMISSIONS",
];

impl JwtDeploy {
    /// Starts `node tests/deploy-jwt/server.mjs` and waits for its `READY <port>` line.
    pub async fn start(opts: JwtDeployOptions) -> JwtDeploy {
        let mut command = tokio::process::Command::new("node");
        command.arg(server_script());
        for name in SETTINGS {
            command.env_remove(name);
        }
        let permissions = opts.role_permissions.as_ref().map(|p| p.to_string());
        let optional = [
            ("ROLE_PERMISSIONS", &permissions),
            ("JWKS_URL", &opts.jwks_url),
            ("HS256_SECRET", &opts.hs256_secret),
            ("USERNAME_CLAIM", &opts.username_claim),
            ("ROLES_CLAIM", &opts.roles_claim),
            ("ADMIN_ROLE", &opts.admin_role),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                command.env(name, value);
            }
        }
        command
            .env("PORT", "0")
            .env("ISSUER", &opts.issuer)
            .env("AUDIENCE", &opts.audience)
            .env("ALGORITHMS", opts.algorithms.join(","));
        let (process, port) =
            NodeProcess::start(command, "the JWT Deploy stand-in", "scripts/node-setup.sh").await;
        let port: u16 = port.parse().expect("READY <port>");
        JwtDeploy {
            url: format!("http://127.0.0.1:{port}"),
            port,
            process,
        }
    }

    /// `{"accepted": n, "refused": n, "last_refusal": "CODE: message" | null,
    /// "refusals": {"CODE": n, …}}` since the start (or the last [`Self::reset_stats`]).
    pub async fn stats(&self) -> serde_json::Value {
        let answer = request("GET", &format!("{}/__stats", self.url), &[], Bytes::new()).await;
        assert_eq!(answer.status, 200, "stats: {:?}", answer.body);
        answer.json()
    }

    /// Sets the counters of [`Self::stats`] back to zero.
    pub async fn reset_stats(&self) {
        let answer = request(
            "DELETE",
            &format!("{}/__stats", self.url),
            &[],
            Bytes::new(),
        )
        .await;
        assert_eq!(answer.status, 200, "stats reset: {:?}", answer.body);
    }

    /// GET `path` straight from the stand-in, with `Authorization: Bearer <jwt>` when given.
    pub async fn get(&self, path: &str, jwt: Option<&str>) -> Answer {
        self.get_with(path, jwt, &[]).await
    }

    /// [`Self::get`] with `extra` headers (an `Accept`, say).
    pub async fn get_with(&self, path: &str, jwt: Option<&str>, extra: &[(&str, &str)]) -> Answer {
        let bearer = jwt.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = bearer
            .iter()
            .map(|b| ("authorization", b.as_str()))
            .collect();
        headers.extend_from_slice(extra);
        request(
            "GET",
            &format!("{}{path}", self.url),
            &headers,
            Bytes::new(),
        )
        .await
    }

    /// What the stand-in wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// The stand-in's process id.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }
}
