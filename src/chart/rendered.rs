//! What a rendered chart would deploy: every container image in the manifests `helm template`
//! prints, and the check that each one is an image this run prepared.

use serde_json::Value;

/// A container of a rendered manifest and the image it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    /// The template it came from (`# Source:` line), or `?`.
    pub source: String,
    /// `Deployment/bitcoin-operator`
    pub object: String,
    pub name: String,
    pub image: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RenderedError {
    #[error("the rendered manifests are not YAML ({source_file}): {message}")]
    Yaml { source_file: String, message: String },
    #[error(
        "the chart would deploy `{}` ({}, container {}, from {}), but this run prepared `{prepared}` (values \
         {keys}); make the template use those values, or list the image under cluster.pulled_images if the \
         cluster pulls it itself",
        .container.image, .container.object, .container.name, .container.source
    )]
    Unexpected { container: Box<Container>, prepared: String, keys: String },
    #[error("no container of the rendered chart runs the prepared image `{prepared}` (values {keys})")]
    NotDeployed { prepared: String, keys: String },
}

/// The containers (also init and ephemeral ones) of every object in `manifests`, at any depth,
/// so that pod templates of Deployments, Jobs, CronJobs and custom resources are all found.
pub fn containers(manifests: &str) -> Result<Vec<Container>, RenderedError> {
    let mut found = Vec::new();
    let mut source = "?".to_string();
    for document in split_documents(manifests) {
        if let Some(path) = document.lines().find_map(|l| l.strip_prefix("# Source: ")) {
            source = path.trim().to_string();
        }
        if document.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) {
            continue;
        }
        let value: Value = serde_saphyr::from_str(document)
            .map_err(|e| RenderedError::Yaml { source_file: source.clone(), message: e.to_string() })?;
        let object =
            format!("{}/{}", value["kind"].as_str().unwrap_or("?"), value["metadata"]["name"].as_str().unwrap_or("?"));
        walk(&value, &mut |container| {
            found.push(Container {
                source: source.clone(),
                object: object.clone(),
                name: container["name"].as_str().unwrap_or("?").to_string(),
                image: container["image"].as_str().unwrap_or_default().to_string(),
            })
        });
    }
    Ok(found)
}

/// The `metadata.name` of every CustomResourceDefinition in a YAML stream (a chart's crds/).
pub fn crd_names(text: &str) -> Vec<String> {
    split_documents(text)
        .into_iter()
        .filter_map(|document| serde_saphyr::from_str::<Value>(document).ok())
        .filter(|value| value["kind"] == "CustomResourceDefinition")
        .filter_map(|value| value["metadata"]["name"].as_str().map(String::from))
        .collect()
}

fn split_documents(text: &str) -> Vec<&str> {
    let mut documents = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_end() == "---" {
            documents.push(&text[start..offset]);
            start = offset + line.len();
        }
        offset += line.len();
    }
    documents.push(&text[start..]);
    documents
}

fn walk(value: &Value, on_container: &mut dyn FnMut(&Value)) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if matches!(key.as_str(), "containers" | "initContainers" | "ephemeralContainers")
                    && let Value::Array(items) = child
                {
                    items.iter().filter(|c| c.get("image").is_some()).for_each(&mut *on_container);
                } else {
                    walk(child, on_container);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| walk(item, on_container)),
        _ => {}
    }
}

/// Every container must run `prepared` or an image the cluster pulls itself (`pulled`: a
/// reference without tag or digest allows the whole repository), and at least one must run
/// `prepared`. `keys` names the values that make up the prepared reference, for the error.
pub fn check(containers: &[Container], prepared: &str, pulled: &[String], keys: &str) -> Result<(), RenderedError> {
    let allowed = |image: &str| {
        image == prepared
            || pulled
                .iter()
                .any(|p| p == image || (!p.contains(['@']) && !tag_of(p) && repository_of(image) == p.as_str()))
    };
    if let Some(c) = containers.iter().find(|c| !allowed(&c.image)) {
        return Err(RenderedError::Unexpected {
            container: Box::new(c.clone()),
            prepared: prepared.to_string(),
            keys: keys.to_string(),
        });
    }
    if !containers.iter().any(|c| c.image == prepared) {
        return Err(RenderedError::NotDeployed { prepared: prepared.to_string(), keys: keys.to_string() });
    }
    Ok(())
}

/// Whether a reference (without digest) carries a tag: a `:` after the last `/`.
fn tag_of(reference: &str) -> bool {
    reference.rsplit('/').next().is_some_and(|last| last.contains(':'))
}

/// The repository of a reference: without digest and tag.
fn repository_of(reference: &str) -> &str {
    let name = reference.split('@').next().unwrap_or(reference);
    match name.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => repository,
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RENDERED: &str = "---
# Source: op/templates/serviceaccount.yaml
apiVersion: v1
kind: ServiceAccount
metadata:
  name: op
---
# Source: op/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: op
spec:
  template:
    spec:
      initContainers:
        - name: init
          image: busybox:1.36
      containers:
        - name: operator
          image: \"reg:5000/op:abc1234\"
---
# Source: op/templates/cronjob.yaml
apiVersion: batch/v1
kind: CronJob
metadata:
  name: sweep
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers:
            - name: sweep
              image: reg:5000/op:abc1234
";

    #[test]
    fn containers_are_found_at_any_depth_with_where_they_come_from() {
        let found = containers(RENDERED).unwrap();
        let summary: Vec<(&str, &str, &str, &str)> =
            found.iter().map(|c| (c.source.as_str(), c.object.as_str(), c.name.as_str(), c.image.as_str())).collect();
        assert_eq!(
            summary,
            [
                ("op/templates/deployment.yaml", "Deployment/op", "operator", "reg:5000/op:abc1234"),
                ("op/templates/deployment.yaml", "Deployment/op", "init", "busybox:1.36"),
                ("op/templates/cronjob.yaml", "CronJob/sweep", "sweep", "reg:5000/op:abc1234"),
            ]
        );
        assert!(matches!(containers("---\na: [\n"), Err(RenderedError::Yaml { .. })));
        let crds =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/chart-template/crds/bitcoinnetworks.yaml"));
        assert_eq!(crd_names(&crds.unwrap()), ["bitcoinnetworks.bitcoin.stagecoach.dev"]);
        assert_eq!(containers("").unwrap(), []);
    }

    #[test]
    fn check_table() {
        let found = containers(RENDERED).unwrap();
        let prepared = "reg:5000/op:abc1234";
        let keys = "image.repository, image.tag, image.digest";
        let cases: [(&str, &str, &[&str], Result<(), &str>); 7] = [
            ("prepared image and a pulled one", prepared, &["busybox:1.36"], Ok(())),
            ("a pulled repository allows every tag", prepared, &["busybox"], Ok(())),
            ("an image nobody prepared", prepared, &[], Err("the chart would deploy `busybox:1.36`")),
            (
                "another tag of a pulled image",
                prepared,
                &["busybox:1.35"],
                Err("`busybox:1.36` (Deployment/op, container init"),
            ),
            ("the chart points elsewhere", "reg:5000/op:def5678", &["busybox"], Err("deploy `reg:5000/op:abc1234`")),
            (
                "a prepared digest the chart drops",
                "reg:5000/op:abc1234@sha256:00",
                &["busybox", "reg:5000/op:abc1234"],
                Err("no container of the rendered chart runs the prepared image"),
            ),
            (
                "the error names the values keys",
                "reg:5000/op:zzz",
                &["busybox"],
                Err("values image.repository, image.tag, image.digest"),
            ),
        ];
        for (name, prepared, pulled, want) in cases {
            let pulled: Vec<String> = pulled.iter().map(ToString::to_string).collect();
            let got = check(&found, prepared, &pulled, keys).map_err(|e| e.to_string());
            match want {
                Ok(()) => assert_eq!(got, Ok(()), "{name}"),
                Err(part) => assert!(got.as_ref().is_err_and(|e| e.contains(part)), "{name}: {got:?}"),
            }
        }
    }
}
