//! Prints the BitcoinNetwork CustomResourceDefinition as YAML. The chart's copy is made with
//! `cargo run -p bitcoin-operator --bin crdgen > chart-template/crds/bitcoinnetworks.yaml`.

fn main() {
    print!("{}", bitcoin_operator::crd::crd_yaml());
}
