//! File naming as bizon's; the conformance suite runs from `crate::conformance` for every
//! destination in the registry.

use super::{FileConfig, FileDestination};

#[test]
fn default_name_is_destination_id_dot_json_and_staging_is_bizons() {
    let d = FileDestination::new(&FileConfig::default(), "creatures");
    assert_eq!(d.target(), std::path::Path::new("creatures.json"));
    assert_eq!(d.staging_path(), std::path::Path::new("creatures_temp.json"));
}
