//! SCRAM-SHA-256 verifiers as PostgreSQL stores them in
//! `pg_authid.rolpassword`: made on this side, so a password never travels
//! to the server in clear, and compared by re-deriving with the stored salt
//! and iteration count, so an unchanged password is not a change.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::secrets::Secret;

/// A new verifier with a random salt (4096 iterations, as PostgreSQL).
pub fn verifier(password: &Secret) -> String {
    postgres_protocol::password::scram_sha_256(password.expose().as_bytes())
}

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// PBKDF2-HMAC-SHA-256 with one block: SCRAM's Hi().
fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut block = salt.to_vec();
    block.extend_from_slice(&1u32.to_be_bytes());
    let mut previous = hmac(password, &block);
    let mut result = previous.clone();
    for _ in 1..iterations {
        previous = hmac(password, &previous);
        for (accumulated, byte) in result.iter_mut().zip(&previous) {
            *accumulated ^= byte;
        }
    }
    result
}

/// SASLprep as PostgreSQL applies it: skipped when the password is not
/// valid for it.
fn prepare(password: &str) -> Vec<u8> {
    stringprep::saslprep(password)
        .map(|prepared| prepared.into_owned().into_bytes())
        .unwrap_or_else(|_| password.as_bytes().to_vec())
}

/// The parts of a stored SCRAM-SHA-256 verifier.
struct StoredVerifier {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl StoredVerifier {
    fn parse(stored: &str) -> Option<Self> {
        let rest = stored.strip_prefix("SCRAM-SHA-256$")?;
        let (parameters, keys) = rest.split_once('$')?;
        let (iterations, salt) = parameters.split_once(':')?;
        let (stored_key, server_key) = keys.split_once(':')?;
        Some(StoredVerifier {
            iterations: iterations.parse().ok()?,
            salt: STANDARD.decode(salt).ok()?,
            stored_key: STANDARD.decode(stored_key).ok()?,
            server_key: STANDARD.decode(server_key).ok()?,
        })
    }
}

/// Whether `stored` (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`)
/// was made from `password`. Any other format (md5, empty) does not match.
pub fn matches(stored: &str, password: &Secret) -> bool {
    let Some(StoredVerifier { iterations, salt, stored_key, server_key }) = StoredVerifier::parse(stored) else {
        return false;
    };
    if iterations == 0 || iterations > 10_000_000 {
        return false;
    }
    let salted = salted_password(&prepare(password.expose()), &salt, iterations);
    let client_key = hmac(&salted, b"Client Key");
    let derived_stored = Sha256::digest(&client_key).to_vec();
    let derived_server = hmac(&salted, b"Server Key");
    derived_stored == stored_key && derived_server == server_key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_verifier_matches_its_password_only() {
        let password = Secret::new("correct horse".into());
        let stored = verifier(&password);
        assert!(stored.starts_with("SCRAM-SHA-256$4096:"));
        assert!(matches(&stored, &password));
        assert!(!matches(&stored, &Secret::new("correct horsf".into())));
        assert!(!matches("md5abcdef", &password));
        assert!(!matches("", &password));
    }

    #[test]
    fn matches_verifiers_postgresql_made() {
        // `CREATE ROLE t PASSWORD 'pgfleet'` and `CREATE ROLE u PASSWORD
        // 'pässwörd ﬁ'` (SASLprep folds the ligature) on PostgreSQL 15,
        // read back from pg_authid.
        let t = "SCRAM-SHA-256$4096:Kr8r3u2h6g1o94gw9dDKMw==$02mNpGviLjZHgAb6CvdlKA0J78P91VLbAx8TzWGDe0o=:2xjCo6duV1R7aed8Mf1mbX/1Y+R0cO1Gzt8zvKdWfoY=";
        assert!(matches(t, &Secret::new("pgfleet".into())));
        assert!(!matches(t, &Secret::new("pgfleet2".into())));
        let u = "SCRAM-SHA-256$4096:aKJOA75qXlCL/gmSqogp6Q==$HmRONpwZuQCQKzHDo48tMXMFwT521cZ2wP9/r3rElP8=:EXOqf6/ql0T7RF7Mag8grsNxO3LxC9sh5Ye0hOZjIzQ=";
        assert!(matches(u, &Secret::new("pässwörd ﬁ".into())));
    }
}
