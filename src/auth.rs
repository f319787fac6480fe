//! Who may log in and who may read over REST.
//!
//! Open mode (no secret) trusts the userID a client claims; with a secret,
//! `login` needs an HS256 token whose `sub` is that userID, and the session
//! lasts as long as its token (renewed with `renewToken`). The admin token
//! is a separate, static credential for operators and backends.

use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::domain::{UserId, UserInfo, UserName};

/// The shortest HMAC secret accepted: HS256's own key size, so a secret
/// cannot be guessed faster than the signature can be forged.
pub(crate) const MIN_SECRET_BYTES: usize = 32;

/// Why a token was refused. The texts are the whole story a client gets:
/// the JWT library's own messages never reach it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum AuthError {
    #[error("a token is required")]
    Missing,
    #[error("the token is invalid")]
    Invalid,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued for another user")]
    WrongSubject,
}

impl From<jsonwebtoken::errors::Error> for AuthError {
    fn from(e: jsonwebtoken::errors::Error) -> Self {
        match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            _ => AuthError::Invalid,
        }
    }
}

#[derive(Deserialize, serde::Serialize)]
struct Claims {
    sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default)]
    exp: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error(transparent)]
    InvalidUser(#[from] crate::domain::InvalidValue),
    #[error("the auth secret must be at least {MIN_SECRET_BYTES} bytes")]
    WeakSecret,
    #[error("cannot sign: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// Signs a login token for `user`, valid for `ttl` (`roomd token`).
pub fn issue_token(
    secret: &Secret,
    user: &str,
    name: Option<&str>,
    ttl: std::time::Duration,
) -> Result<String, IssueError> {
    if secret.expose().len() < MIN_SECRET_BYTES {
        return Err(IssueError::WeakSecret);
    }
    let user = UserId::parse(user)?;
    if let Some(name) = name {
        UserName::parse(name)?;
    }
    let exp = chrono::Utc::now().timestamp().max(0) as u64 + ttl.as_secs();
    let claims = Claims {
        sub: user.to_string(),
        name: name.map(str::to_owned),
        exp,
    };
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.expose().as_bytes()),
    )?)
}

/// The identity behind a REST request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reader {
    /// The admin token: reads every room, including destroyed rooms' history.
    Admin,
    /// Open mode with no admin token: reads everything (local development).
    Anyone,
    /// A user token: reads only rooms the user is a member of.
    User(UserId),
}

/// A logged-in user, and until when their token holds (Unix seconds;
/// `None` in open mode, where sessions do not expire).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoggedIn {
    pub(crate) user: UserInfo,
    pub(crate) expires_at: Option<u64>,
}

pub(crate) struct Authenticator {
    jwt: Option<(DecodingKey, Validation)>,
    admin_token: Option<String>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        f.debug_struct("Authenticator")
            .field("open", &self.jwt.is_none())
            .field("admin_token", &self.admin_token.is_some())
            .finish()
    }
}

impl Authenticator {
    /// `leeway`: the clock skew tolerated on `exp` and `nbf`.
    pub(crate) fn new(secret: Option<&str>, admin_token: Option<&str>, leeway: Duration) -> Self {
        let jwt = secret.map(|secret| {
            let mut validation = Validation::new(Algorithm::HS256);
            validation.leeway = leeway.as_secs();
            validation.validate_nbf = true;
            validation.set_required_spec_claims(&["exp", "sub"]);
            (DecodingKey::from_secret(secret.as_bytes()), validation)
        });
        Self {
            jwt,
            // Compared with the trimmed bearer value, so trimmed too: a
            // secret file's trailing newline must not lock the admin out.
            admin_token: admin_token.map(|t| t.trim().to_owned()),
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.jwt.is_none()
    }

    /// Checks a `login`; returns the user as they will be known.
    pub(crate) fn login(
        &self,
        claimed: UserInfo,
        token: Option<&str>,
    ) -> Result<LoggedIn, AuthError> {
        let Some((key, validation)) = &self.jwt else {
            return Ok(LoggedIn {
                user: claimed,
                expires_at: None,
            });
        };
        let claims = verify(key, validation, token.ok_or(AuthError::Missing)?)?;
        if claims.sub != claimed.user_id.as_str() {
            return Err(AuthError::WrongSubject);
        }
        let user_name = match claims.name {
            Some(name) => UserName::parse(name).map_err(|_| AuthError::Invalid)?,
            None => claimed.user_name,
        };
        Ok(LoggedIn {
            user: UserInfo {
                user_id: claimed.user_id,
                user_name,
            },
            expires_at: Some(claims.exp),
        })
    }

    /// `renewToken`: a new token for the same user; returns its expiry.
    pub(crate) fn renew(&self, user: &UserId, token: &str) -> Result<Option<u64>, AuthError> {
        let Some((key, validation)) = &self.jwt else {
            return Ok(None);
        };
        let claims = verify(key, validation, token)?;
        if claims.sub != user.as_str() {
            return Err(AuthError::WrongSubject);
        }
        Ok(Some(claims.exp))
    }

    /// Decides who a REST request is, from its `Authorization` header.
    pub(crate) fn reader(&self, authorization: Option<&str>) -> Result<Reader, AuthError> {
        let bearer = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim);
        let Some(token) = bearer else {
            return if self.jwt.is_none() && self.admin_token.is_none() {
                Ok(Reader::Anyone)
            } else {
                Err(AuthError::Missing)
            };
        };
        if let Some(admin) = &self.admin_token
            && bool::from(admin.as_bytes().ct_eq(token.as_bytes()))
        {
            return Ok(Reader::Admin);
        }
        let Some((key, validation)) = &self.jwt else {
            return Err(AuthError::Invalid);
        };
        let claims = verify(key, validation, token)?;
        UserId::parse(claims.sub)
            .map(Reader::User)
            .map_err(|_| AuthError::Invalid)
    }
}

fn verify(key: &DecodingKey, validation: &Validation, token: &str) -> Result<Claims, AuthError> {
    Ok(jsonwebtoken::decode::<Claims>(token, key, validation)?.claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-test-secret-of-thirty-two-bytes!";
    const LEEWAY: Duration = Duration::from_secs(30);

    fn user(id: &str, name: &str) -> UserInfo {
        UserInfo {
            user_id: UserId::parse(id).unwrap(),
            user_name: UserName::parse(name).unwrap(),
        }
    }

    fn token(sub: &str, name: Option<&str>) -> String {
        issue_token(&Secret::from(SECRET), sub, name, Duration::from_secs(60)).unwrap()
    }

    #[test]
    fn open_mode_trusts_the_claimed_user_and_lets_anyone_read() {
        let auth = Authenticator::new(None, None, LEEWAY);
        assert!(auth.is_open());
        assert_eq!(
            auth.login(user("alice", "A"), None).unwrap().user,
            user("alice", "A")
        );
        assert_eq!(auth.reader(None), Ok(Reader::Anyone));
    }

    #[test]
    fn a_token_logs_in_its_subject_only_and_its_name_wins() {
        let auth = Authenticator::new(Some(SECRET), None, LEEWAY);
        let named = token("alice", Some("Alice L."));
        let logged_in = auth.login(user("alice", "a"), Some(&named)).unwrap();
        assert_eq!(logged_in.user, user("alice", "Alice L."));
        assert!(logged_in.expires_at.is_some());
        assert_eq!(
            auth.login(user("bob", "b"), Some(&named)),
            Err(AuthError::WrongSubject)
        );
        assert_eq!(
            auth.login(user("alice", "a"), None),
            Err(AuthError::Missing)
        );
        let other = issue_token(
            &Secret::from("another-secret-of-thirty-two-byte"),
            "alice",
            None,
            Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(
            auth.login(user("alice", "a"), Some(&other)),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            auth.login(user("alice", "a"), Some("garbage")),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn short_secrets_sign_nothing() {
        let short = Secret::from("too-short");
        assert!(matches!(
            issue_token(&short, "alice", None, Duration::from_secs(60)),
            Err(IssueError::WeakSecret)
        ));
    }

    #[test]
    fn readers_are_the_admin_a_user_or_nobody() {
        let auth = Authenticator::new(Some(SECRET), Some("admin-token"), LEEWAY);
        assert_eq!(auth.reader(Some("Bearer admin-token")), Ok(Reader::Admin));
        let alice = format!("Bearer {}", token("alice", None));
        assert_eq!(
            auth.reader(Some(&alice)),
            Ok(Reader::User(UserId::parse("alice").unwrap()))
        );
        assert_eq!(auth.reader(None), Err(AuthError::Missing));
        assert_eq!(auth.reader(Some("Basic xyz")), Err(AuthError::Missing));
        assert!(auth.reader(Some("Bearer admin-tokeN")).is_err());
        let admin_only = Authenticator::new(None, Some("admin-token"), LEEWAY);
        assert_eq!(admin_only.reader(None), Err(AuthError::Missing));
        assert!(admin_only.reader(Some("Bearer guess")).is_err());
    }
}
