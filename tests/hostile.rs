//! Hostile inputs and faulty environments, through the real binary.

use crate::registry::docker_available;
use crate::support::{Repo, VALID_PIPELINE, stagecoach};

#[test]
fn commands_see_only_the_credential_variables_they_list() {
    if !docker_available() {
        return;
    }
    let show = "run: echo \"token=${GITHUB_TOKEN:-unset} password=${DOCKER_PASSWORD:-unset} home=${HOME:+set}\"";
    let env = [("GITHUB_TOKEN", "canary-token-1"), ("DOCKER_PASSWORD", "canary-password-2")];
    let cases = [
        ("nothing listed", "", "token=unset password=unset home=set"),
        ("one listed", "\n    env_passthrough: [DOCKER_PASSWORD]", "token=unset password=*** home=set"),
    ];
    for (name, passthrough, want) in cases {
        let pipeline = VALID_PIPELINE.replace("run: cargo build", &format!("{show}{passthrough}"));
        let repo = Repo::new(&pipeline);
        // The run fails later (there is no Dockerfile); the build stage is what is looked at.
        let run = stagecoach(repo.path(), &["--no-progress", "build-and-deploy"], &env);
        assert!(run.stderr.contains(&format!("[build] {want}\n")), "{name}: {}", run.stderr);
        assert!(!run.stderr.contains("canary-"), "{name}: a secret was shown: {}", run.stderr);
    }

    let typo = VALID_PIPELINE.replace("run: cargo build", "run: make\n    env_passthrough: [GITHUB_TOKN]");
    let run = stagecoach(Repo::new(&typo).path(), &["plan"], &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("commands.build.env_passthrough: `GITHUB_TOKN` is no variable of `credentials:`; did you mean `GITHUB_TOKEN`?"),
        "{}",
        run.stderr
    );
    let plan = stagecoach(Repo::new(VALID_PIPELINE).path(), &["plan", "build-and-deploy"], &[]);
    assert!(
        plan.stdout.contains("sh -c 'cargo build' (timeout 30m), without DOCKER_PASSWORD, GITHUB_TOKEN in "),
        "{}",
        plan.stdout
    );
}
