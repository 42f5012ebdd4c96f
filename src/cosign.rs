//! Signatures and provenance attestations as cosign makes them with a key (`cosign sign --key`,
//! `cosign attest --key --type slsaprovenance1`), so that `cosign verify` checks what stagecoach
//! signed: keys in cosign's formats, the payloads and the DSSE envelope. Pure: the registry
//! side is the OCI adapter, `tools/oci.rs`. Key-based only (no transparency log, no certificate): a
//! keyless signer would be another [`dsse::Signer`] beside [`CosignKey`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePublicKey as _};
use serde::Deserialize;
use serde_json::json;

/// The media type of a signature layer: its bytes are the signed payload.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The media type of an attestation layer: a DSSE envelope.
pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// The layer annotation that holds a signature (base64), empty on attestations.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// The statement type cosign writes (and reads) with `--type slsaprovenance1`.
const IN_TOTO_STATEMENT: &str = "https://in-toto.io/Statement/v0.1";
/// What a signature payload says it is.
const SIMPLE_SIGNING_TYPE: &str = "cosign container image signature";
/// What the build in a provenance is: a stagecoach build-and-deploy run.
pub const BUILD_TYPE: &str = "https://github.com/stagecoach/stagecoach/build-and-deploy/v1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CosignError {
    #[error("not a cosign private key: {0}; make one with `cosign generate-key-pair`")]
    NotAPrivateKey(String),
    #[error("the password does not open the key (or the key was changed)")]
    WrongPassword,
    #[error("not a public key: {0}; `cosign public-key --key KEY` prints one")]
    NotAPublicKey(String),
    #[error("{0}")]
    Envelope(String),
}

/// A cosign private key (ECDSA P-256), opened with its password. Never printed.
pub struct CosignKey {
    key: p256::ecdsa::SigningKey,
}

impl std::fmt::Debug for CosignKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CosignKey({})", self.public_key().fingerprint())
    }
}

/// How cosign wraps a private key: scrypt from the password, then NaCl secretbox.
#[derive(Deserialize)]
struct Encrypted {
    kdf: Kdf,
    cipher: Cipher,
    #[serde(with = "b64")]
    ciphertext: Vec<u8>,
}

#[derive(Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    #[serde(with = "b64")]
    salt: Vec<u8>,
}

#[derive(Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Deserialize)]
struct Cipher {
    name: String,
    #[serde(with = "b64")]
    nonce: Vec<u8>,
}

mod b64 {
    use base64::Engine as _;
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        super::BASE64.decode(text).map_err(serde::de::Error::custom)
    }
}

/// The PEM labels cosign has written its encrypted keys under.
const PRIVATE_KEY_LABELS: [&str; 3] =
    ["ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY", "ENCRYPTED PRIVATE KEY"];

impl CosignKey {
    /// The key `cosign generate-key-pair` wrote (`cosign.key`), opened with `password`.
    pub fn from_pem(pem: &[u8], password: &[u8]) -> Result<Self, CosignError> {
        let not_a_key = |why: &str| CosignError::NotAPrivateKey(why.to_string());
        let (label, body) = pem_rfc7468::decode_vec(pem).map_err(|_| not_a_key("no PEM block in it"))?;
        if !PRIVATE_KEY_LABELS.contains(&label) {
            return Err(not_a_key(&format!("a PEM block of `{label}`")));
        }
        let encrypted: Encrypted =
            serde_json::from_slice(&body).map_err(|e| not_a_key(&format!("its contents do not read: {e}")))?;
        let (kdf, cipher) = (&encrypted.kdf, &encrypted.cipher);
        if kdf.name != "scrypt" || cipher.name != "nacl/secretbox" {
            return Err(not_a_key(&format!(
                "encrypted with {} and {}, not scrypt and nacl/secretbox",
                kdf.name, cipher.name
            )));
        }
        // cosign's own two work factors; anything else could make opening the key take hours.
        if !matches!(kdf.params.n, 32768 | 65536) || kdf.params.r != 8 || kdf.params.p != 1 {
            return Err(not_a_key("scrypt parameters other than cosign's"));
        }
        let params = scrypt::Params::new(kdf.params.n.ilog2() as u8, kdf.params.r, kdf.params.p, 32)
            .map_err(|e| not_a_key(&e.to_string()))?;
        let mut secret = zeroize::Zeroizing::new([0u8; 32]);
        scrypt::scrypt(password, &kdf.salt, &params, secret.as_mut()).map_err(|e| not_a_key(&e.to_string()))?;
        use crypto_secretbox::aead::{Aead as _, KeyInit as _};
        let nonce = crypto_secretbox::Nonce::from_exact_iter(cipher.nonce.iter().copied())
            .ok_or_else(|| not_a_key("a nonce that is not 24 bytes"))?;
        let der = zeroize::Zeroizing::new(
            crypto_secretbox::XSalsa20Poly1305::new(secret.as_ref().into())
                .decrypt(&nonce, encrypted.ciphertext.as_slice())
                .map_err(|_| CosignError::WrongPassword)?,
        );
        let key = p256::ecdsa::SigningKey::from_pkcs8_der(&der)
            .map_err(|_| not_a_key("the opened key is not an ECDSA P-256 key"))?;
        Ok(Self { key })
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey { key: *self.key.verifying_key() }
    }

    /// An ECDSA P-256 signature over SHA-256 of `message`, ASN.1 DER, as cosign signs.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let signature: p256::ecdsa::Signature = self.key.sign(message);
        signature.to_der().as_bytes().to_vec()
    }
}

impl dsse::Signer for CosignKey {
    fn sign(&self, message: &[u8]) -> dsse::Result<Vec<u8>> {
        Ok(CosignKey::sign(self, message))
    }
}

/// A public key as `cosign.pub` holds it (PEM, SubjectPublicKeyInfo).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    key: p256::ecdsa::VerifyingKey,
}

impl PublicKey {
    pub fn from_pem(pem: &[u8]) -> Result<Self, CosignError> {
        let text = std::str::from_utf8(pem).map_err(|_| CosignError::NotAPublicKey("not text".into()))?;
        p256::ecdsa::VerifyingKey::from_public_key_pem(text.trim()).map(|key| Self { key }).map_err(|e| {
            CosignError::NotAPublicKey(format!("an ECDSA P-256 `PUBLIC KEY` PEM block does not read: {e}"))
        })
    }

    pub fn to_pem(&self) -> String {
        self.key.to_public_key_pem(p256::pkcs8::LineEnding::LF).unwrap_or_default()
    }

    /// `SHA256:` and the hex of the SHA-256 of the key's DER: how plans name a key.
    pub fn fingerprint(&self) -> String {
        let der = self.key.to_public_key_der().map(|d| d.into_vec()).unwrap_or_default();
        format!("SHA256:{:x}", <sha2::Sha256 as sha2::Digest>::digest(der))
    }

    /// Whether `signature` (DER, or the raw 64 bytes) is this key's over `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        let parsed =
            p256::ecdsa::Signature::from_der(signature).or_else(|_| p256::ecdsa::Signature::from_slice(signature));
        parsed.is_ok_and(|signature| self.key.verify(message, &signature).is_ok())
    }
}

impl dsse::Verifier for PublicKey {
    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.verifies(message, signature)
    }
}

/// The payload `cosign sign` signs for image `repository` (no tag) at manifest `digest`.
pub fn simple_signing(repository: &str, digest: &str) -> Vec<u8> {
    let payload = json!({
        "critical": {
            "identity": { "docker-reference": repository },
            "image": { "docker-manifest-digest": digest },
            "type": SIMPLE_SIGNING_TYPE,
        },
        "optional": null,
    });
    serde_json::to_vec(&payload).unwrap_or_default()
}

/// The manifest digest a signature payload names, if it is one.
pub fn signed_digest(payload: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let critical = value.get("critical")?;
    (critical.get("type")?.as_str()? == SIMPLE_SIGNING_TYPE)
        .then(|| critical.get("image")?.get("docker-manifest-digest")?.as_str().map(str::to_string))
        .flatten()
}

/// What a provenance says about the build of one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Build {
    /// The DEV repository as the pipeline file names it, and the commit built.
    pub source: String,
    pub commit: String,
    /// The commands that made the image, in order.
    pub commands: Vec<String>,
    pub builder_version: String,
    pub run_id: String,
}

/// An in-toto statement with an SLSA provenance v1 predicate for image `repository@digest`.
pub fn provenance_statement(repository: &str, digest: &str, build: &Build) -> Vec<u8> {
    let dependency = json!({ "uri": format!("git+{}", build.source), "digest": { "gitCommit": build.commit } });
    slsa_statement(
        (repository, digest),
        BUILD_TYPE,
        json!({ "source": build.source, "commands": build.commands }),
        vec![dependency],
        (&build.builder_version, &build.run_id),
    )
}

/// The statement both provenances are: `subject` (repository, digest) built by stagecoach
/// (`run`: its version and the run id) as `build_type` from `parameters` and `dependencies`.
fn slsa_statement(
    (repository, digest): (&str, &str),
    build_type: &str,
    parameters: serde_json::Value,
    dependencies: Vec<serde_json::Value>,
    (version, run_id): (&str, &str),
) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    let statement = json!({
        "_type": IN_TOTO_STATEMENT,
        "predicateType": SLSA_PROVENANCE_V1,
        "subject": [{ "name": repository, "digest": { "sha256": hex } }],
        "predicate": {
            "buildDefinition": {
                "buildType": build_type,
                "externalParameters": parameters,
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": { "id": "https://github.com/stagecoach/stagecoach", "version": { "stagecoach": version } },
                "metadata": { "invocationId": run_id },
            },
        },
    });
    serde_json::to_vec(&statement).unwrap_or_default()
}

/// What the build type of a chart's provenance says: a stagecoach release of a tested chart.
pub const RELEASE_BUILD_TYPE: &str = "https://github.com/stagecoach/stagecoach/release/v1";

/// What a release's provenance says about the chart it publishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// The QA repository as the pipeline file names it, and the commit QA tested.
    pub source: String,
    pub commit: String,
    /// The integration-test run that tested the chart: its id and outcome; none for `--untested`.
    pub tested: Option<(String, String)>,
    /// The operator image the chart deploys (`repository:tag`) and its manifest digest.
    pub image: String,
    pub image_digest: Option<String>,
    pub builder_version: String,
    pub run_id: String,
}

/// An in-toto statement with an SLSA provenance v1 predicate for the chart manifest
/// `repository@digest`: the QA commit and test run it comes from, and the image it deploys.
pub fn release_statement(repository: &str, digest: &str, release: &Release) -> Vec<u8> {
    let mut dependencies =
        vec![json!({ "uri": format!("git+{}", release.source), "digest": { "gitCommit": release.commit } })];
    if let Some(image) = &release.image_digest {
        dependencies.push(json!({
            "uri": format!("oci://{}", release.image),
            "name": "image",
            "digest": { "sha256": image.strip_prefix("sha256:").unwrap_or(image) },
        }));
    }
    let tested = release.tested.as_ref().map(|(run_id, outcome)| json!({ "runId": run_id, "outcome": outcome }));
    slsa_statement(
        (repository, digest),
        RELEASE_BUILD_TYPE,
        json!({ "source": release.source, "image": release.image, "integrationTest": tested }),
        dependencies,
        (&release.builder_version, &release.run_id),
    )
}

/// `statement` in a DSSE envelope signed by `key`, as the bytes of an attestation layer.
pub fn envelope(statement: &[u8], key: &CosignKey) -> Result<Vec<u8>, CosignError> {
    let envelope =
        dsse::sign(IN_TOTO_PAYLOAD_TYPE, statement, key).map_err(|e| CosignError::Envelope(e.to_string()))?;
    serde_json::to_vec(&envelope).map_err(|e| CosignError::Envelope(e.to_string()))
}

/// What a verified provenance says: the image it is about and the commit it was built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provenance {
    pub subject_digests: Vec<String>,
    pub commit: Option<String>,
}

/// The statement in `envelope` if `key` signed it and it is an SLSA provenance v1.
pub fn open_provenance(envelope: &[u8], key: &PublicKey) -> Result<Provenance, CosignError> {
    let bad = |why: String| CosignError::Envelope(why);
    let envelope: dsse::Envelope =
        serde_json::from_slice(envelope).map_err(|e| bad(format!("not a DSSE envelope: {e}")))?;
    let verified = dsse::verify(&envelope, &[key as &dyn dsse::Verifier], 1)
        .map_err(|e| bad(format!("the attestation is not signed by this key: {e}")))?;
    if verified.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(bad(format!("the attestation holds {}, not an in-toto statement", verified.payload_type)));
    }
    let statement: serde_json::Value =
        serde_json::from_slice(&verified.payload).map_err(|e| bad(format!("the statement does not read: {e}")))?;
    let predicate_type = statement.get("predicateType").and_then(|t| t.as_str()).unwrap_or_default();
    if predicate_type != SLSA_PROVENANCE_V1 {
        return Err(bad(format!("the attestation is a {predicate_type:?}, not an SLSA provenance v1")));
    }
    let subject_digests = statement
        .get("subject")
        .and_then(|s| s.as_array())
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("digest")?.get("sha256")?.as_str().map(|hex| format!("sha256:{hex}")))
        .collect();
    let commit = statement
        .pointer("/predicate/buildDefinition/resolvedDependencies")
        .and_then(|d| d.as_array())
        .into_iter()
        .flatten()
        .find_map(|d| d.pointer("/digest/gitCommit")?.as_str().map(str::to_string));
    Ok(Provenance { subject_digests, commit })
}

/// A layer cosign keeps beside an image (a signature, an attestation): bytes, media type and
/// annotations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    pub media_type: String,
    pub bytes: Vec<u8>,
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// Why an artifact does not pass verification, each naming what was wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Unverified {
    #[error(
        "{reference} has no signature (no tag {tag} beside it): sign it with build-and-deploy and \
         STAGECOACH_COSIGN_KEY set, or `cosign sign --key`"
    )]
    NoSignature { reference: String, tag: String },
    #[error("{reference} is not signed by key {key}: {count} signature(s) beside it, none by that key")]
    OtherKey { reference: String, key: String, count: usize },
    #[error(
        "the signature by key {key} under {reference}'s tag is for {signed}, not {reference}: \
         a signature of another image was put there"
    )]
    OtherDigest { reference: String, key: String, signed: String },
    #[error("{reference} has no provenance attestation (no tag {tag} beside it)")]
    NoProvenance { reference: String, tag: String },
    #[error("{reference}: no SLSA provenance v1 signed by key {key} ({why})")]
    ProvenanceUnsigned { reference: String, key: String, why: String },
    #[error("{reference}: the provenance signed by key {key} is about {subjects}, not this image")]
    ProvenanceOtherImage { reference: String, key: String, subjects: String },
    #[error(
        "{reference} was built from commit {built} (its provenance says), but the chart's appVersion is \
         {expected}: the image is not the one built from the commit QA tests"
    )]
    OtherCommit { reference: String, built: String, expected: String },
}

/// The signature of `repository@digest` by `key` among `layers` (what its `.sig` tag holds).
pub fn verify_signature(
    layers: &[Attached],
    key: &PublicKey,
    repository: &str,
    digest: &str,
) -> Result<(), Unverified> {
    let reference = format!("{repository}@{digest}");
    if layers.is_empty() {
        return Err(Unverified::NoSignature { reference, tag: tag_for(digest, "sig") });
    }
    let by_key = layers.iter().filter(|l| l.media_type == SIMPLE_SIGNING_MEDIA_TYPE).filter(|l| {
        let signature = l.annotations.get(SIGNATURE_ANNOTATION).and_then(|s| decode_signature(s));
        signature.is_some_and(|s| key.verifies(&l.bytes, &s))
    });
    let signed: Vec<Option<String>> = by_key.map(|l| signed_digest(&l.bytes)).collect();
    if signed.iter().any(|d| d.as_deref() == Some(digest)) {
        return Ok(());
    }
    let key = key.fingerprint();
    match signed.into_iter().next() {
        Some(other) => Err(Unverified::OtherDigest { reference, key, signed: other.unwrap_or("nothing".into()) }),
        None => Err(Unverified::OtherKey { reference, key, count: layers.len() }),
    }
}

/// The SLSA provenance of `repository@digest` by `key` among `layers` (its `.att` tag), which
/// must name `commit` as the source built.
pub fn verify_provenance(
    layers: &[Attached],
    key: &PublicKey,
    repository: &str,
    digest: &str,
    commit: &str,
) -> Result<Provenance, Unverified> {
    let reference = format!("{repository}@{digest}");
    if layers.is_empty() {
        return Err(Unverified::NoProvenance { reference, tag: tag_for(digest, "att") });
    }
    let opened: Vec<Result<Provenance, CosignError>> =
        layers.iter().filter(|l| l.media_type == DSSE_MEDIA_TYPE).map(|l| open_provenance(&l.bytes, key)).collect();
    let fingerprint = key.fingerprint();
    let provenances: Vec<&Provenance> = opened.iter().filter_map(|p| p.as_ref().ok()).collect();
    if provenances.is_empty() {
        let why =
            opened.iter().find_map(|p| p.as_ref().err()).map_or("none is an attestation".into(), |e| e.to_string());
        return Err(Unverified::ProvenanceUnsigned { reference, key: fingerprint, why });
    }
    let about: Vec<&Provenance> =
        provenances.iter().copied().filter(|p| p.subject_digests.iter().any(|d| d == digest)).collect();
    if about.is_empty() {
        let subjects = provenances.iter().flat_map(|p| p.subject_digests.iter().cloned()).collect::<Vec<_>>();
        return Err(Unverified::ProvenanceOtherImage { reference, key: fingerprint, subjects: subjects.join(", ") });
    }
    match about.iter().find(|p| p.commit.as_deref() == Some(commit)) {
        Some(provenance) => Ok((*provenance).clone()),
        None => Err(Unverified::OtherCommit {
            reference,
            built: about.iter().find_map(|p| p.commit.clone()).unwrap_or("none".into()),
            expected: commit.to_string(),
        }),
    }
}

/// The tag cosign keeps an image's signatures (`sig`) or attestations (`att`) under.
pub fn tag_for(digest: &str, suffix: &str) -> String {
    format!("{}.{suffix}", digest.replacen(':', "-", 1))
}

/// A signature as a registry layer holds it: base64 of the DER signature.
pub fn encode_signature(signature: &[u8]) -> String {
    BASE64.encode(signature)
}

pub fn decode_signature(text: &str) -> Option<Vec<u8>> {
    BASE64.decode(text.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: u8) -> CosignKey {
        CosignKey { key: p256::ecdsa::SigningKey::from_slice(&[secret; 32]).unwrap() }
    }

    fn build() -> Build {
        Build {
            source: "https://git.example/dev.git".into(),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            commands: vec!["cargo build".into(), "docker build .".into()],
            builder_version: "0.1.0".into(),
            run_id: "run-1".into(),
        }
    }

    const DIGEST: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn signatures_table() {
        let payload = simple_signing("127.0.0.1:5000/op", DIGEST);
        let signature = key(1).sign(&payload);
        let mut changed = payload.clone();
        changed[10] ^= 1;
        let cases: [(&str, PublicKey, &[u8], &[u8], bool); 4] = [
            ("the signer's key", key(1).public_key(), &payload, &signature, true),
            ("another key", key(2).public_key(), &payload, &signature, false),
            ("a changed payload", key(1).public_key(), &changed, &signature, false),
            ("no signature", key(1).public_key(), &payload, b"", false),
        ];
        for (name, public, message, signature, want) in cases {
            assert_eq!(public.verifies(message, signature), want, "{name}");
        }
        assert_eq!(signed_digest(&payload).as_deref(), Some(DIGEST));
        assert_eq!(signed_digest(br#"{"critical":{"type":"other","image":{"docker-manifest-digest":"x"}}}"#), None);
        let public = key(1).public_key();
        assert_eq!(PublicKey::from_pem(public.to_pem().as_bytes()), Ok(public.clone()));
        assert!(public.fingerprint().starts_with("SHA256:") && public.fingerprint().len() == 71);
        assert_ne!(public.fingerprint(), key(2).public_key().fingerprint());
    }

    #[test]
    fn provenance_table() {
        let statement = provenance_statement("127.0.0.1:5000/op", DIGEST, &build());
        let envelope = envelope(&statement, &key(1)).unwrap();
        let other_type = {
            let mut value: serde_json::Value = serde_json::from_slice(&statement).unwrap();
            value["predicateType"] = "https://example.com/other".into();
            super::envelope(&serde_json::to_vec(&value).unwrap(), &key(1)).unwrap()
        };
        let tampered = {
            let mut value: serde_json::Value = serde_json::from_slice(&envelope).unwrap();
            let other = provenance_statement("127.0.0.1:5000/op", DIGEST, &Build { commit: "f".repeat(40), ..build() });
            value["payload"] = BASE64.encode(other).into();
            serde_json::to_vec(&value).unwrap()
        };
        let commit = build().commit;
        let cases: [(&str, &[u8], PublicKey, Result<Option<&str>, &str>); 5] = [
            ("signed by the key", &envelope, key(1).public_key(), Ok(Some(commit.as_str()))),
            ("another key", &envelope, key(2).public_key(), Err("not signed by this key")),
            ("a payload changed after signing", &tampered, key(1).public_key(), Err("not signed by this key")),
            ("another predicate type", &other_type, key(1).public_key(), Err("not an SLSA provenance v1")),
            ("not an envelope", b"{}", key(1).public_key(), Err("not a DSSE envelope")),
        ];
        for (name, envelope, public, want) in cases {
            match (open_provenance(envelope, &public), want) {
                (Ok(got), Ok(commit)) => {
                    assert_eq!(got.commit.as_deref(), commit, "{name}");
                    assert_eq!(got.subject_digests, [DIGEST], "{name}");
                }
                (Err(error), Err(part)) => assert!(error.to_string().contains(part), "{name}: {error}"),
                (got, want) => panic!("{name}: {got:?}, want {want:?}"),
            }
        }
    }

    fn signature_layer(signer: &CosignKey, digest: &str) -> Attached {
        let payload = simple_signing("127.0.0.1:5000/op", digest);
        let signature = encode_signature(&signer.sign(&payload));
        Attached {
            media_type: SIMPLE_SIGNING_MEDIA_TYPE.into(),
            bytes: payload,
            annotations: [(SIGNATURE_ANNOTATION.to_string(), signature)].into(),
        }
    }

    fn attestation_layer(signer: &CosignKey, digest: &str, commit: &str) -> Attached {
        let statement = provenance_statement("127.0.0.1:5000/op", digest, &Build { commit: commit.into(), ..build() });
        Attached {
            media_type: DSSE_MEDIA_TYPE.into(),
            bytes: envelope(&statement, signer).unwrap(),
            annotations: Default::default(),
        }
    }

    #[test]
    fn verification_table() {
        let other_digest = format!("sha256:{}", "b".repeat(64));
        let (signer, other) = (key(1), key(2));
        let commit = build().commit;
        let other_commit = "f".repeat(40);
        type Case<'a> = (&'a str, Vec<Attached>, Vec<Attached>, &'a str);
        let cases: [Case; 8] = [
            (
                "signed and attested",
                vec![signature_layer(&signer, DIGEST)],
                vec![attestation_layer(&signer, DIGEST, &commit)],
                "",
            ),
            (
                "another key's signature beside the key's",
                vec![signature_layer(&other, DIGEST), signature_layer(&signer, DIGEST)],
                vec![attestation_layer(&other, DIGEST, &other_commit), attestation_layer(&signer, DIGEST, &commit)],
                "",
            ),
            (
                "no signature",
                vec![],
                vec![attestation_layer(&signer, DIGEST, &commit)],
                "has no signature (no tag sha256-aaaa",
            ),
            ("another key", vec![signature_layer(&other, DIGEST)], vec![], "is not signed by key SHA256:"),
            (
                "a signature over another digest",
                vec![signature_layer(&signer, &other_digest)],
                vec![],
                "is for sha256:bbbb",
            ),
            ("no provenance", vec![signature_layer(&signer, DIGEST)], vec![], "has no provenance attestation"),
            (
                "a provenance of another image",
                vec![signature_layer(&signer, DIGEST)],
                vec![attestation_layer(&signer, &other_digest, &commit)],
                "is about sha256:bbbb",
            ),
            (
                "a provenance naming another commit",
                vec![signature_layer(&signer, DIGEST)],
                vec![attestation_layer(&signer, DIGEST, &other_commit), attestation_layer(&other, DIGEST, &commit)],
                "was built from commit ffff",
            ),
        ];
        let public = signer.public_key();
        for (name, signatures, attestations, want) in cases {
            let got = verify_signature(&signatures, &public, "127.0.0.1:5000/op", DIGEST)
                .and_then(|()| verify_provenance(&attestations, &public, "127.0.0.1:5000/op", DIGEST, &commit));
            match (got, want) {
                (Ok(provenance), "") => assert_eq!(provenance.commit.as_deref(), Some(commit.as_str()), "{name}"),
                (Err(error), part) if !part.is_empty() => {
                    assert!(error.to_string().contains(part), "{name}: {error}")
                }
                (got, want) => panic!("{name}: {got:?}, want {want:?}"),
            }
        }
        let unsigned = verify_provenance(&[attestation_layer(&other, DIGEST, &commit)], &public, "r", DIGEST, &commit);
        assert!(matches!(unsigned, Err(Unverified::ProvenanceUnsigned { .. })), "{unsigned:?}");
    }

    #[test]
    fn keys_that_are_not_cosign_keys_table() {
        let json = |body: &str| {
            pem_rfc7468::encode_string("ENCRYPTED SIGSTORE PRIVATE KEY", Default::default(), body.as_bytes()).unwrap()
        };
        let other_kdf = json(
            r#"{"kdf":{"name":"pbkdf2","params":{"N":32768,"r":8,"p":1},"salt":""},"cipher":{"name":"nacl/secretbox","nonce":""},"ciphertext":""}"#,
        );
        let huge_n = json(
            r#"{"kdf":{"name":"scrypt","params":{"N":1073741824,"r":8,"p":1},"salt":""},"cipher":{"name":"nacl/secretbox","nonce":""},"ciphertext":""}"#,
        );
        let public = key(1).public_key().to_pem();
        let not_json = json("nope");
        let cases: [(&str, &[u8], &str); 5] = [
            ("no PEM", b"hello", "no PEM block"),
            ("a public key", public.as_bytes(), "a PEM block of `PUBLIC KEY`"),
            ("not JSON inside", not_json.as_bytes(), "do not read"),
            ("another KDF", other_kdf.as_bytes(), "not scrypt and nacl/secretbox"),
            ("scrypt made to take hours", huge_n.as_bytes(), "scrypt parameters other than cosign's"),
        ];
        for (name, pem, part) in cases {
            let error = CosignKey::from_pem(pem, b"pw").unwrap_err().to_string();
            assert!(error.contains(part) && error.contains("cosign generate-key-pair"), "{name}: {error}");
        }
        assert_eq!(tag_for(DIGEST, "sig"), format!("sha256-{}.sig", "a".repeat(64)));
    }
}
