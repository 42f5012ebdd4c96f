//! Everything stagecoach does to Helm charts, as functions from bytes to bytes: scalar edits
//! that keep every other byte, reproducible packages, index merges that keep existing entries.

pub mod edit;
pub mod ignore;
pub mod index;
pub mod meta;
pub mod package;
pub mod provenance;
pub mod rendered;
pub mod yaml;
