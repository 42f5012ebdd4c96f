//! Prints the StatefulSet and Service the operator builds for a sample network, with its default
//! settings, as the API server would be sent them. `operator/generated/sample-network.yaml` is
//! this output; a test fails when it is stale, and the schema and policy checks read it.

fn main() {
    print!("{}", bitcoin_operator::resources::sample_yaml());
}
