//! OCI registries, for Helm charts: a package (and its provenance file) pushed the way
//! `helm push` does, with Helm's media types, and the manifest's digest read back.

use std::collections::BTreeMap;
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{OCI_IMAGE_MEDIA_TYPE, OciImageManifest, OciManifest};
pub use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::chart::meta::Metadata;
use crate::cosign::Attached;

pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.cncf.helm.config.v1+json";
pub const CHART_MEDIA_TYPE: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
pub const PROVENANCE_MEDIA_TYPE: &str = "application/vnd.cncf.helm.chart.provenance.v1.prov";

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("{0}: not an OCI repository; write oci://HOST[:PORT]/PATH")]
    Repository(String),
    #[error("{reference}: {what}: {message}")]
    Registry { reference: String, what: &'static str, message: String },
    #[error(
        "{reference}: {what}: the registry refused the credentials, or asks for some; `docker login {host}` \
         stores the ones chart push uses"
    )]
    Unauthorized { reference: String, what: &'static str, host: String },
    #[error("{reference}: the registry holds manifest {found} after the push, not the {pushed} pushed")]
    Mismatch { reference: String, pushed: String, found: String },
    #[error(
        "{reference} is already published as manifest {published}, and this chart makes {new}; \
         a published chart is never replaced: bump the version"
    )]
    Conflict { reference: String, published: String, new: String },
}

/// What [`Oci::publish`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Published {
    /// Pushed and read back: the manifest digest.
    Pushed(String),
    /// That very manifest was there already.
    AlreadyThere(String),
}

/// A chart as it is pushed.
pub struct Chart<'a> {
    pub metadata: &'a Metadata,
    pub package: &'a [u8],
    pub provenance: Option<&'a [u8]>,
}

/// `HOST/PATH/NAME:TAG` for chart `name` at `version` under `oci://HOST/PATH`; the tag is the
/// version with `+` written `_`, as Helm writes it (a tag cannot hold `+`).
pub fn reference(repository: &str, name: &str, version: &str) -> Result<String, OciError> {
    let base = repository.strip_prefix("oci://").map(|b| b.trim_end_matches('/'));
    match base {
        Some(base) if !base.is_empty() && !base.starts_with('/') => {
            Ok(format!("{base}/{name}:{}", version.replace('+', "_")))
        }
        _ => Err(OciError::Repository(repository.to_string())),
    }
}

/// The registry of an `oci://HOST[:PORT]/PATH` repository.
pub fn host(repository: &str) -> &str {
    repository.trim_start_matches("oci://").split('/').next().unwrap_or_default()
}

/// Whether a repository's registry is on this machine (127.0.0.0/8, ::1, localhost): the Docker
/// engine talks plain HTTP to those without being told, and so does signing an image there.
pub fn on_this_machine(repository: &str) -> bool {
    let authority = host(repository);
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The manifest `helm push` writes for `chart`: the metadata as the config, the package, then
/// the provenance file. No creation time, so that the same chart is the same manifest.
pub fn manifest(chart: &Chart<'_>) -> (OciImageManifest, Config, Vec<ImageLayer>) {
    let config =
        Config::new(serde_json::to_vec(chart.metadata).unwrap_or_default(), CONFIG_MEDIA_TYPE.to_string(), None);
    let mut layers = vec![ImageLayer::new(chart.package.to_vec(), CHART_MEDIA_TYPE.to_string(), None)];
    if let Some(provenance) = chart.provenance {
        layers.push(ImageLayer::new(provenance.to_vec(), PROVENANCE_MEDIA_TYPE.to_string(), None));
    }
    let metadata = chart.metadata;
    let mut annotations = BTreeMap::from([
        ("org.opencontainers.image.title".to_string(), metadata.name.clone()),
        ("org.opencontainers.image.version".to_string(), metadata.version.clone()),
    ]);
    if let Some(description) = metadata.description.as_ref().filter(|d| !d.is_empty()) {
        annotations.insert("org.opencontainers.image.description".into(), description.clone());
    }
    let mut manifest = OciImageManifest::build(&layers, &config, Some(annotations));
    manifest.media_type = Some(OCI_IMAGE_MEDIA_TYPE.to_string());
    (manifest, config, layers)
}

/// The sha256 digest of a manifest as oci-client sends it (canonical JSON).
pub fn digest(manifest: &OciImageManifest) -> String {
    let mut bytes = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut bytes, olpc_cjson::CanonicalFormatter::new());
    serde::Serialize::serialize(&OciManifest::Image(manifest.clone()), &mut serializer).unwrap_or_default();
    format!("sha256:{:x}", <sha2::Sha256 as sha2::Digest>::digest(bytes))
}

pub struct Oci {
    client: Client,
}

impl Oci {
    /// A client over HTTPS, or plain HTTP; `timeout` bounds connecting and each read.
    pub fn new(plain_http: bool, timeout: Duration) -> Self {
        // Already installed is fine: it is the same one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = ClientConfig {
            protocol: if plain_http { ClientProtocol::Http } else { ClientProtocol::Https },
            connect_timeout: Some(timeout),
            read_timeout: Some(timeout),
            ..ClientConfig::default()
        };
        Self { client: Client::new(config) }
    }

    /// `auth` as the registry takes it; none is anonymous.
    pub fn auth(auth: Option<&crate::tools::docker::RegistryAuth>) -> RegistryAuth {
        match auth {
            Some(auth) => RegistryAuth::Basic(auth.username.clone(), auth.password.clone()),
            None => RegistryAuth::Anonymous,
        }
    }

    /// The digest of the manifest `reference` names, or `None` when there is none.
    pub async fn manifest_digest(&self, reference: &str, auth: &RegistryAuth) -> Result<Option<String>, OciError> {
        let parsed = parse(reference)?;
        use oci_client::errors::{OciDistributionError, OciErrorCode};
        match self.client.fetch_manifest_digest(&parsed, auth).await {
            Ok(digest) => Ok(Some(digest)),
            Err(OciDistributionError::ImageManifestNotFoundError(_)) => Ok(None),
            Err(OciDistributionError::RegistryError { envelope, .. })
                if envelope
                    .errors
                    .iter()
                    .all(|e| matches!(e.code, OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown)) =>
            {
                Ok(None)
            }
            Err(e) => Err(registry_error(reference, "reading the manifest", &e)),
        }
    }

    /// Publishes `chart` as `reference`: nothing to do when the same manifest is there, refused
    /// when another one is, else pushed and read back.
    pub async fn publish(
        &self,
        reference: &str,
        chart: &Chart<'_>,
        auth: &RegistryAuth,
    ) -> Result<Published, OciError> {
        let built = manifest(chart);
        let new = digest(&built.0);
        match self.manifest_digest(reference, auth).await? {
            Some(there) if there == new => Ok(Published::AlreadyThere(there)),
            // A signature carries the time it was made, so a chart signed again is another
            // manifest: what decides is the package layer.
            Some(published) => {
                let package = format!("sha256:{:x}", <sha2::Sha256 as sha2::Digest>::digest(chart.package));
                if self.package_layer(reference, auth).await?.as_deref() == Some(package.as_str()) {
                    Ok(Published::AlreadyThere(published))
                } else {
                    Err(OciError::Conflict { reference: reference.into(), published, new })
                }
            }
            None => self.push(reference, built, auth).await.map(Published::Pushed),
        }
    }

    /// The digest of the chart package layer of the manifest `reference` names.
    async fn package_layer(&self, reference: &str, auth: &RegistryAuth) -> Result<Option<String>, OciError> {
        let (manifest, _) = self
            .client
            .pull_manifest(&parse(reference)?, auth)
            .await
            .map_err(|e| registry_error(reference, "reading the manifest", &e))?;
        Ok(match manifest {
            OciManifest::Image(image) => {
                image.layers.into_iter().find(|l| l.media_type == CHART_MEDIA_TYPE).map(|l| l.digest)
            }
            OciManifest::ImageIndex(_) => None,
        })
    }

    /// Pushes a chart's manifest, config and layers as `reference`, reads the manifest back
    /// and returns its digest.
    async fn push(
        &self,
        reference: &str,
        (manifest, config, layers): (OciImageManifest, Config, Vec<ImageLayer>),
        auth: &RegistryAuth,
    ) -> Result<String, OciError> {
        let parsed = parse(reference)?;
        let pushed = digest(&manifest);
        self.client
            .push(&parsed, &layers, config, auth, Some(manifest))
            .await
            .map_err(|e| registry_error(reference, "pushing", &e))?;
        match self.manifest_digest(reference, auth).await? {
            Some(found) if found == pushed => Ok(pushed),
            found => {
                Err(OciError::Mismatch { reference: reference.into(), pushed, found: found.unwrap_or("none".into()) })
            }
        }
    }
}

impl Oci {
    /// Adds `layer` to the manifest `repository:tag` (a `sha256-….sig` or `.att` tag), keeping
    /// the layers already there as cosign does; the same layer twice is kept once. Returns the
    /// manifest's digest.
    pub async fn attach(
        &self,
        repository: &str,
        tag: &str,
        layer: Attached,
        auth: &RegistryAuth,
    ) -> Result<String, OciError> {
        let reference = format!("{repository}:{tag}");
        let mut layers = self.attached(repository, tag, auth).await?;
        if !layers.contains(&layer) {
            layers.push(layer);
        }
        let layers: Vec<ImageLayer> = layers
            .into_iter()
            .map(|l| ImageLayer::new(l.bytes, l.media_type, Some(l.annotations).filter(|a| !a.is_empty())))
            .collect();
        // The config go-containerregistry writes for such an image: empty but for the layers.
        let diff_ids: Vec<String> =
            layers.iter().map(|l| format!("sha256:{:x}", <sha2::Sha256 as sha2::Digest>::digest(&l.data))).collect();
        let config = serde_json::json!({
            "architecture": "", "os": "", "config": {},
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        });
        let config = Config::new(
            serde_json::to_vec(&config).unwrap_or_default(),
            oci_client::manifest::IMAGE_CONFIG_MEDIA_TYPE.to_string(),
            None,
        );
        let mut manifest = OciImageManifest::build(&layers, &config, None);
        manifest.media_type = Some(OCI_IMAGE_MEDIA_TYPE.to_string());
        self.push(&reference, (manifest, config, layers), auth).await
    }

    /// The layers of `repository:tag`, none when there is no such tag.
    pub async fn attached(&self, repository: &str, tag: &str, auth: &RegistryAuth) -> Result<Vec<Attached>, OciError> {
        let reference = format!("{repository}:{tag}");
        if self.manifest_digest(&reference, auth).await?.is_none() {
            return Ok(Vec::new());
        }
        let accepted = vec![crate::cosign::SIMPLE_SIGNING_MEDIA_TYPE, crate::cosign::DSSE_MEDIA_TYPE];
        let image = self
            .client
            .pull(&parse(&reference)?, auth, accepted)
            .await
            .map_err(|e| registry_error(&reference, "reading the signatures", &e))?;
        Ok(image
            .layers
            .into_iter()
            .map(|l| Attached {
                media_type: l.media_type,
                bytes: l.data.to_vec(),
                annotations: l.annotations.unwrap_or_default(),
            })
            .collect())
    }
}

fn parse(reference: &str) -> Result<Reference, OciError> {
    reference.parse().map_err(|e: oci_client::ParseError| OciError::Registry {
        reference: reference.into(),
        what: "reading the reference",
        message: e.to_string(),
    })
}

fn registry_error(reference: &str, what: &'static str, error: &oci_client::errors::OciDistributionError) -> OciError {
    if let oci_client::errors::OciDistributionError::UnauthorizedError { .. } = error {
        let host = reference.split('/').next().unwrap_or_default().to_string();
        return OciError::Unauthorized { reference: reference.into(), what, host };
    }
    OciError::Registry { reference: reference.into(), what, message: error.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_this_machine_table() {
        let cases = [
            ("127.0.0.1:5000/op", true),
            ("127.1.2.3/op", true),
            ("localhost:5000/a/op", true),
            ("[::1]:5000/op", true),
            ("registry.example/op", false),
            ("10.0.0.1:5000/op", false),
            ("[2001:db8::1]:5000/op", false),
        ];
        for (repository, want) in cases {
            assert_eq!(on_this_machine(repository), want, "{repository}");
        }
    }

    #[test]
    fn reference_table() {
        let cases = [
            ("oci://127.0.0.1:5000/charts", "op", "1.2.3", Ok("127.0.0.1:5000/charts/op:1.2.3")),
            ("oci://registry.example/a/b/", "op", "1.2.3+build.5", Ok("registry.example/a/b/op:1.2.3_build.5")),
            ("oci://host", "op", "0.1.0-dev.abc", Ok("host/op:0.1.0-dev.abc")),
            ("https://host/charts", "op", "1.0.0", Err(())),
            ("oci://", "op", "1.0.0", Err(())),
            ("oci:///charts", "op", "1.0.0", Err(())),
        ];
        for (repository, name, version, want) in cases {
            let got = reference(repository, name, version).map_err(|_| ());
            assert_eq!(got, want.map(String::from), "{repository}");
        }
    }
}
