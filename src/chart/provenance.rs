//! Provenance files: what `helm package --sign` writes beside a package and `helm verify`
//! checks: the chart's metadata and the package's sha256, clearsigned with an OpenPGP key.

use pgp::composed::{ArmorOptions, CleartextSignedMessage, Deserializable, SignedSecretKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{SignatureConfig, SignatureType, Subpacket, SubpacketData};
use pgp::types::{KeyDetails, Password, Timestamp};

use super::meta::Metadata;

#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    #[error("the signing key is not an ASCII-armored OpenPGP private key ({0})")]
    Key(String),
    #[error("the signing key {key} does not unlock ({message}): give its passphrase, the right one")]
    Locked { key: String, message: String },
    #[error("signing with key {key} failed: {message}")]
    Sign { key: String, message: String },
}

/// An unlocked-on-use OpenPGP private key; its `Debug` shows only whose it is.
pub struct SigningKey {
    key: SignedSecretKey,
    password: Password,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.owner())
    }
}

impl SigningKey {
    /// Reads an ASCII-armored private key (`gpg --armor --export-secret-keys`).
    pub fn from_armored(text: &str, passphrase: Option<&str>) -> Result<Self, ProvenanceError> {
        let (key, _) =
            SignedSecretKey::from_armor_single(text.as_bytes()).map_err(|e| ProvenanceError::Key(e.to_string()))?;
        let password = passphrase.map_or_else(Password::empty, Password::from);
        let key = Self { key, password };
        // Unlocked once here, so that a wrong passphrase is said before anything is packaged.
        let unlocked = key.key.primary_key.unlock(&key.password, |_, _| Ok(()));
        if let Err(e) | Ok(Err(e)) = unlocked {
            return Err(ProvenanceError::Locked { key: key.owner(), message: e.to_string() });
        }
        Ok(key)
    }

    /// The key's first user id and its fingerprint, as `gpg` shows them.
    pub fn owner(&self) -> String {
        let user = self.key.details.users.first().map(|u| String::from_utf8_lossy(u.id.id()).into_owned());
        let fingerprint = format!("{:X}", self.key.primary_key.fingerprint());
        match user {
            Some(user) => format!("{user} ({fingerprint})"),
            None => fingerprint,
        }
    }
}

/// What Helm signs: the chart's metadata as YAML, YAML's document end marker (a PGP clearsigned
/// block cannot hold `---`), and the package's sum by file name.
pub fn message(metadata: &Metadata, file_name: &str, digest: &str) -> String {
    let value = serde_json::to_value(metadata).unwrap_or(serde_json::Value::Null);
    let mut lines = Vec::new();
    super::index::render_map_lines(&value, 0, &mut lines);
    let mut text = lines.join("\n");
    text.push_str("\n\n...\nfiles:\n");
    let mut files = Vec::new();
    super::index::render_map_lines(&serde_json::json!({ file_name: format!("sha256:{digest}") }), 2, &mut files);
    text.push_str(&files.join("\n"));
    text.push('\n');
    text
}

/// The `.prov` file: `message` clearsigned with `key`, over SHA-512 as Helm signs.
pub fn sign(key: &SigningKey, message: &str) -> Result<String, ProvenanceError> {
    let fail = |e: pgp::errors::Error| ProvenanceError::Sign { key: key.owner(), message: e.to_string() };
    let primary = &key.key.primary_key;
    let mut config = SignatureConfig::v4(SignatureType::Text, primary.algorithm(), HashAlgorithm::Sha512);
    config.hashed_subpackets = vec![
        Subpacket::regular(SubpacketData::SignatureCreationTime(Timestamp::now())).map_err(fail)?,
        Subpacket::regular(SubpacketData::IssuerFingerprint(primary.fingerprint())).map_err(fail)?,
    ];
    config.unhashed_subpackets =
        vec![Subpacket::regular(SubpacketData::IssuerKeyId(primary.legacy_key_id())).map_err(fail)?];
    let signed = CleartextSignedMessage::new(message, config, primary, &key.password).map_err(fail)?;
    signed.to_armored_string(ArmorOptions::default()).map_err(fail)
}
