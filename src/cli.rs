//! Command-line definitions (clap). Nothing else in stagecoach sees clap: [`Cli::into_request`]
//! turns the parsed arguments into the plain request `app` defines.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::app::{Action, Flow, Global, InitKind, Promote, Request, RunFlags};

const EXIT_CODES: &str = "\
Exit codes:
  0    success
  1    a stage failed (the error names it), or a chart command was refused its input
  2    usage or configuration error (a pipeline file, a missing tool or credential), or a
       repository whose content would lead a write out of its checkout
  130  interrupted by Ctrl-C (SIGINT); 143 by SIGTERM. Cleanup ran first; a second signal
       abandons diagnostics, never the deletion of a cluster this run created

Environment:
  STAGECOACH_CONFIG   pipeline file, when --config is not given
  STAGECOACH_NETWORK_TIMEOUT   how long a network operation may go without progress
  CI, TRAVIS, GITHUB_ACTIONS, GITLAB_CI and their commit/tag/branch variables: what is being built
  Credentials: the variables named under `credentials:` in the pipeline file";

#[derive(Debug, Parser)]
#[command(
    name = "stagecoach",
    version,
    about = "Carries a Kubernetes operator through DEV, QA and RELEASE git repositories, GitOps style",
    long_about = "Carries a Kubernetes operator through three git repositories, GitOps style:\n\
        build-and-deploy (DEV) builds, tests and pushes the image and writes its tag into the QA repo's chart;\n\
        integration-test (QA) installs that chart on a kind cluster and runs the integration tests;\n\
        release (RELEASE) publishes tested, tagged charts into a Helm chart repository.\n\
        The pipeline file (pipelines/stagecoach.yaml) says where everything is.",
    after_help = EXIT_CODES,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Verb,
}

#[derive(Debug, Args)]
struct GlobalArgs {
    /// Pipeline file [default: pipelines/stagecoach.yaml in this or a parent directory, up to the repository root]
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Show what would change; push, publish and delete nothing
    #[arg(long, global = true)]
    dry_run: bool,
    /// Echo every external command (secrets masked); twice for debug logs
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,
    /// Print only errors and the command's result
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Write the JSON run record (stages, outcomes, durations, what was built) to this path
    #[arg(long, global = true, value_name = "PATH")]
    report: Option<PathBuf>,
    /// How long a network operation (git, the registry, the served index) may go without progress [default: the pipeline file's network.timeout, else 60s]
    #[arg(long, global = true, value_name = "DURATION")]
    network_timeout: Option<String>,
    /// Write the run as a JUnit XML report (a test case per stage) to this path, for CI test views
    #[arg(long, global = true, value_name = "PATH")]
    junit: Option<PathBuf>,
    /// Plain progress lines even on a terminal
    #[arg(long, global = true)]
    no_progress: bool,
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// DEV: build, unit-test, build and push the image, write its tag into the QA repo's chart
    #[command(long_about = "DEV stage. Runs the build and unit-test commands, builds the image tagged with the short \
        commit hash (or the git tag on a tagged build), pushes it, then clones the QA repository, sets the image in \
        values.yaml and version/appVersion in Chart.yaml, commits and pushes, and then pushes :latest. Only builds of \
        repositories.dev.branch and release tags push and promote (--promote: any build); QA never takes an older \
        commit than the one it holds. With STAGECOACH_COSIGN_KEY set, the pushed image is signed and its SLSA \
        provenance attested as cosign does with that key (`cosign verify --key` checks them); a key the password \
        does not open stops the run before anything is built.\n\n\
        Changes: the image registry and the QA repository (nothing remote with --dry-run).\n\
        Reads: the CI variables (TRAVIS_*, GITHUB_*, CI_COMMIT_*), the credential variables of the pipeline file, \
        STAGECOACH_COSIGN_KEY (a key `cosign generate-key-pair` wrote, or its path) and \
        STAGECOACH_COSIGN_PASSWORD.")]
    BuildAndDeploy {
        /// Build the image but push it nowhere (local runs without a registry; QA then uses the local image)
        #[arg(long)]
        no_push: bool,
        /// Push and promote even a pull-request build or a build of another branch than
        /// repositories.dev.branch (those build and test, and push and promote nothing)
        #[arg(long)]
        promote: bool,
    },
    /// QA: bring up a cluster, install the chart, run the integration tests at the chart's appVersion
    #[command(long_about = "QA stage, run in a checkout of the QA repository. Brings up a kind cluster (node image \
        cached), loads the image named by values.yaml, installs the chart with Helm, checks out the DEV repository \
        at the chart's appVersion commit and runs its integration tests; on a release version continues with \
        `release`. The cluster is deleted afterwards, also on failure and Ctrl-C. With image.verify_key (a cosign \
        public key) in the pipeline file, nothing is deployed unless the image, by the digest in values.yaml, is \
        signed by that key and its SLSA provenance names the chart's appVersion as the commit built.\n\n\
        Changes: a local kind cluster; the RELEASE repository for release versions.\n\
        Reads: KUBECONFIG (provider existing) and the credential variables of the pipeline file.")]
    IntegrationTest {
        /// Leave the cluster running afterwards (to debug a failure)
        #[arg(long)]
        keep_cluster: bool,
    },
    /// RELEASE: package the tested chart, merge it into index.yaml of the chart repository and push
    #[command(long_about = "RELEASE stage, for tagged releases only. Packages the QA chart under its release name \
        without CI files, clones the RELEASE repository, merges the package into index.yaml, commits and pushes. \
        With chart.oci it is pushed to that OCI repository first; with STAGECOACH_SIGNING_KEY set it is signed \
        (NAME-VERSION.tgz.prov beside the package, in both places). With STAGECOACH_COSIGN_KEY set, the OCI \
        manifest is signed as `cosign sign --key` does and attested with an SLSA provenance of what QA tested \
        (QA commit, test run and outcome, image digest); with it or image.verify_key, the image the package \
        deploys must carry a valid signature and provenance before anything is published.\n\n\
        Changes: the RELEASE repository and chart.oci (nothing with --dry-run).\n\
        Reads: the credential variables of the pipeline file; STAGECOACH_SIGNING_KEY and \
        STAGECOACH_SIGNING_PASSPHRASE; STAGECOACH_COSIGN_KEY and STAGECOACH_COSIGN_PASSWORD; docker login's \
        credentials for chart.oci without oci_credentials.")]
    Release {
        /// The run record (--report) of the integration-test run that tested this chart: the
        /// release refuses a chart whose appVersion or package digest differ from it
        #[arg(long, value_name = "RUN-RECORD", required_unless_present = "untested")]
        tested: Option<PathBuf>,
        /// Publish without a tested run record
        #[arg(long, conflicts_with = "tested")]
        untested: bool,
    },
    /// Write values into a chart in another git repository: clone, edit, commit, push
    #[command(long_about = "Clones REPO, sets KEY=VALUE in FILE without touching anything else in it, commits and \
        pushes; retries on a concurrent push by re-applying the edit. Prints the diff; with --dry-run pushes nothing.\n\n\
        Changes: the given repository (nothing with --dry-run).\n\
        Reads: the credential variables of the pipeline file.")]
    Promote(PromoteArgs),
    /// Edit, package and index Helm charts (no Helm needed)
    #[command(
        subcommand,
        long_about = "Edits, packages and indexes Helm charts natively: the same files Helm \
        would write, reproducibly.\n\nChanges: only the files and directories named.\nReads: no environment variables."
    )]
    Chart(ChartVerb),
    /// Print the stages a command would run, with the concrete actions of each; changes nothing
    #[command(long_about = "Prints the stages of build-and-deploy, integration-test and release (or only FLOW) in \
        order, with the concrete actions each would take for the commit being built. The stages describe \
        themselves (the command lines are the ones the run starts); nothing is connected to or created, and \
        what is not at hand is named instead: a missing tool by its name, the QA chart's values as \
        <values KEY>.\n\n\
        Changes: nothing.\n\
        Reads: STAGECOACH_CONFIG, the variables used as ${VAR} in the pipeline file, and the CI variables \
        (or the local git checkout) to know what is being built.")]
    Plan {
        /// Only this command's plan
        #[arg(value_enum)]
        flow: Option<FlowArg>,
    },
    /// Run the whole flow locally on three local repositories (a demonstration)
    #[command(long_about = "Creates local DEV, QA and RELEASE repositories under the work directory and runs \
        build-and-deploy, integration-test and release on them, then shows what each changed.\n\n\
        Changes: only the work directory, and a local registry and Docker images when Docker is present.\n\
        Reads: PATH (to find docker, kind and helm).")]
    Demo {
        /// Where the demo repositories go
        #[arg(long, value_name = "DIR", default_value = "target/stagecoach-demo")]
        workdir: PathBuf,
    },
    /// Create a QA repository (seeded from chart-template/) or an empty RELEASE chart repository
    #[command(long_about = "Creates DIR as a QA repository (the chart from chart-template/ with its CI configs) or \
        as an empty Helm chart repository with index.yaml.\n\nChanges: DIR only.\nReads: no environment variables.")]
    Init {
        #[arg(value_enum)]
        kind: InitArg,
        dir: PathBuf,
        /// The chart to seed a QA repository from [default: chart-template/ of the DEV repository]
        #[arg(long, value_name = "CHART_DIR")]
        from: Option<PathBuf>,
    },
    /// Print stagecoach's version
    #[command(long_about = "Prints stagecoach's version and the pipeline file format it reads.\n\n\
        Changes: nothing.\nReads: no environment variables.")]
    Version,
}

#[derive(Debug, Args)]
struct PromoteArgs {
    /// Repository: `dev`, `qa` or `release` from the pipeline file, or a URL (https, ssh, file://, a path)
    #[arg(long)]
    repo: String,
    /// Branch to push to [default: the pipeline file's, else main]
    #[arg(long)]
    branch: Option<String>,
    /// File to edit, relative to the repository root
    #[arg(long)]
    file: PathBuf,
    /// KEY=VALUE to set (dotted keys, e.g. image.tag=64ed033); repeatable
    #[arg(long = "set", value_name = "KEY=VALUE", required = true, value_parser = key_value)]
    set: Vec<(String, String)>,
    /// Create keys that do not exist yet
    #[arg(long)]
    create: bool,
    /// Commit message; {sets}, {files}, {repo}, and where known {tag}, {version}, {commit} are filled in
    #[arg(long, default_value = crate::app::DEFAULT_MESSAGE)]
    message: String,
    /// Entry under `credentials:` in the pipeline file [default: the repository's own]
    #[arg(long, value_name = "NAME")]
    credentials: Option<String>,
    /// Commit author
    #[arg(long, value_name = "NAME <EMAIL>", default_value = "stagecoach <stagecoach@localhost>")]
    author: String,
    /// Pushes to try when the branch keeps moving
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    attempts: u32,
}

#[derive(Debug, Subcommand)]
enum ChartVerb {
    /// Set scalars in a YAML file, changing nothing but their bytes
    #[command(long_about = "Sets scalars at dotted keys (image.tag=64ed033, version=1.2.4-dev.64ed033) in a YAML \
        file; comments, quoting, order and line endings stay byte for byte.\n\n\
        Changes: FILE (nothing with --dry-run).\nReads: no environment variables.")]
    Set {
        file: PathBuf,
        #[arg(value_name = "KEY=VALUE", required = true, value_parser = key_value)]
        assignments: Vec<(String, String)>,
        /// Create keys that do not exist yet
        #[arg(long)]
        create: bool,
    },
    /// Package a chart directory into a reproducible .tgz
    #[command(long_about = "Packages a chart directory like `helm package`, honouring .helmignore and leaving out \
        CI files; the same chart always gives the same bytes. It packs every file Helm packs but this chart's \
        own earlier packages at its top level (NAME-VERSION.tgz and .tgz.prov, under its name or --rename), \
        which a package written into the chart directory (`--out .`) would otherwise carry. With --sign, also the provenance file \
        NAME-VERSION.tgz.prov (the chart's metadata and the package's sha256, clearsigned), as \
        `helm package --sign` writes it.\n\n\
        Changes: writes NAME-VERSION.tgz (and .prov) into --out.\n\
        Reads: STAGECOACH_SIGNING_KEY (an ASCII-armored OpenPGP private key) and \
        STAGECOACH_SIGNING_PASSPHRASE, with --sign only.")]
    Package {
        dir: PathBuf,
        /// Publish under this chart name
        #[arg(long)]
        rename: Option<String>,
        /// Where the .tgz goes
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Leave out this path (relative to the chart); repeatable [default: .travis.yml, .github, .gitlab-ci.yml, ci]
        #[arg(long, value_name = "PATH")]
        drop: Vec<String>,
        /// Also write NAME-VERSION.tgz.prov, the provenance file `helm verify` checks, signed with
        /// the key in STAGECOACH_SIGNING_KEY
        #[arg(long)]
        sign: bool,
    },
    /// Merge packages into a chart repository's index.yaml
    #[command(long_about = "Adds the packages in a chart repository directory to its index.yaml; existing \
        entries stay as they are, and a published version is never replaced by different bytes.\n\n\
        Changes: DIR/index.yaml.\nReads: no environment variables.")]
    Index {
        /// Chart repository directory
        #[arg(long)]
        repo: PathBuf,
        /// Base URL the packages are served from
        #[arg(long)]
        url: Option<String>,
    },
    /// Push a packaged chart to an OCI registry, as `helm push` does
    #[command(long_about = "Pushes PACKAGE (and PACKAGE.prov beside it, if there is one) to the OCI repository \
        as NAME:VERSION (`+` written `_`), with Helm's media types, then reads the manifest back and prints its \
        digest. The same chart already there is left as it is; another one under the same version is refused. \
        With --dry-run, prints the reference and the digest and pushes nothing.\n\n\
        Changes: the OCI repository (nothing with --dry-run).\n\
        Reads: the pipeline file's chart.oci_credentials when chart.oci is on that registry, else the \
        credentials `docker login` stored ($DOCKER_CONFIG/config.json or ~/.docker/config.json, credential \
        helpers too); STAGECOACH_NETWORK_TIMEOUT.")]
    Push {
        /// The packaged chart (.tgz)
        package: PathBuf,
        /// oci://HOST[:PORT]/PATH
        repository: String,
        /// Talk HTTP, not HTTPS, to the registry (a registry on this machine)
        #[arg(long)]
        plain_http: bool,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FlowArg {
    BuildAndDeploy,
    IntegrationTest,
    Release,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum InitArg {
    Qa,
    Release,
}

/// `KEY=VALUE`, split at the first `=`.
fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE (e.g. image.tag=64ed033)")),
    }
}

impl Cli {
    pub fn into_request(self) -> Request {
        let g = self.global;
        let global = Global {
            config: g.config,
            dry_run: g.dry_run,
            verbose: g.verbose,
            quiet: g.quiet,
            report: g.report,
            junit: g.junit,
            network_timeout: g.network_timeout,
            no_progress: g.no_progress,
        };
        let action = match self.command {
            Verb::BuildAndDeploy { no_push, promote } => {
                Action::Run { flow: Flow::BuildAndDeploy, flags: RunFlags { no_push, promote, ..RunFlags::default() } }
            }
            Verb::IntegrationTest { keep_cluster } => {
                Action::Run { flow: Flow::IntegrationTest, flags: RunFlags { keep_cluster, ..RunFlags::default() } }
            }
            Verb::Release { tested, untested } => {
                Action::Run { flow: Flow::Release, flags: RunFlags { tested, untested, ..RunFlags::default() } }
            }
            Verb::Plan { flow } => Action::Plan { flow: flow.map(Flow::from) },
            Verb::Version => Action::Version,
            Verb::Promote(p) => Action::Promote(Promote {
                repo: p.repo,
                branch: p.branch,
                file: p.file,
                set: p.set,
                create: p.create,
                message: p.message,
                credentials: p.credentials,
                author: p.author,
                attempts: p.attempts,
            }),
            Verb::Chart(ChartVerb::Set { file, assignments, create }) => Action::ChartSet { file, assignments, create },
            Verb::Chart(ChartVerb::Package { dir, rename, out, drop, sign }) => {
                Action::ChartPackage { dir, rename, out, drop, sign }
            }
            Verb::Chart(ChartVerb::Index { repo, url }) => Action::ChartIndex { repo, url },
            Verb::Chart(ChartVerb::Push { package, repository, plain_http }) => {
                Action::ChartPush { package, repository, plain_http }
            }
            Verb::Demo { workdir } => Action::Demo { workdir },
            Verb::Init { kind, dir, from } => {
                let kind = match kind {
                    InitArg::Qa => InitKind::Qa,
                    InitArg::Release => InitKind::Release,
                };
                Action::Init { kind, dir, from }
            }
        };
        Request { global, action }
    }
}

impl From<FlowArg> for Flow {
    fn from(flow: FlowArg) -> Self {
        match flow {
            FlowArg::BuildAndDeploy => Flow::BuildAndDeploy,
            FlowArg::IntegrationTest => Flow::IntegrationTest,
            FlowArg::Release => Flow::Release,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
