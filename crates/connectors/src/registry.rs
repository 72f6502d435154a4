//! The registry: one list of descriptors per kind (sources, destinations, backends, queues).
//! `bizon source list`, `destination list`, `stream list`, config validation and the README's
//! connector table read these lists and the descriptors' capabilities, never a list of names.
//!
//! Adding a connector = its folder (exporting `DESCRIPTOR`), one line here, one cargo feature
//! line when it pulls heavy dependencies. A connector of a feature this build left out stays
//! known by name, so a config naming it fails with the feature to enable.

use crate::descriptor::{BackendDescriptor, DestinationDescriptor, QueueDescriptor, SourceDescriptor};
#[allow(unused_imports)] // `queues` has only feature-gated connectors
use crate::{backends, destinations, queues, sources};

/// A registry line: a connector's name, the cargo feature that provides it (`None`: always
/// built) and its descriptor when this build has it.
pub struct Entry<D: 'static> {
    pub name: &'static str,
    pub feature: Option<&'static str>,
    pub descriptor: Option<&'static D>,
}

/// `entry!(descriptor)` for a connector always built; `entry!("name", "feature", descriptor)`
/// for one behind a cargo feature (the descriptor's path is only resolved when it is on).
macro_rules! entry {
    ($d:expr) => {
        Entry { name: $d.name, feature: None, descriptor: Some(&$d) }
    };
    ($name:literal, $feature:literal, $($d:tt)+) => {
        Entry {
            name: $name,
            feature: Some($feature),
            descriptor: {
                #[cfg(feature = $feature)]
                let d = Some(&$($d)+);
                #[cfg(not(feature = $feature))]
                let d = None;
                d
            },
        }
    };
}

pub static SOURCES: &[Entry<SourceDescriptor>] = &[
    entry!(sources::dummy::DESCRIPTOR),
    entry!(sources::generator::DESCRIPTOR),
    entry!(sources::command::DESCRIPTOR),
    entry!("postgres", "postgres", sources::postgres::DESCRIPTOR),
    entry!("kafka", "kafka", sources::kafka::DESCRIPTOR),
    entry!("rest", "http", sources::rest::DESCRIPTOR),
    entry!("pokeapi", "http", sources::pokeapi::DESCRIPTOR),
    entry!("gbif", "http", sources::gbif::DESCRIPTOR),
    entry!("cycle", "http", sources::cycle::DESCRIPTOR),
    entry!("hubspot", "http", sources::hubspot::DESCRIPTOR),
    entry!("sana_ai", "http", sources::sana_ai::DESCRIPTOR),
    entry!("periscope", "http", sources::periscope::DESCRIPTOR),
    entry!("gsheets", "bigquery", sources::gsheets::DESCRIPTOR),
    entry!("notion", "http", sources::notion::DESCRIPTOR),
];

pub static DESTINATIONS: &[Entry<DestinationDescriptor>] = &[
    entry!(destinations::logger::DESCRIPTOR),
    entry!(destinations::file::DESCRIPTOR),
    entry!(destinations::null::DESCRIPTOR),
    entry!(destinations::command::DESCRIPTOR),
    entry!("postgres", "postgres", destinations::postgres::DESCRIPTOR),
    entry!("bigquery", "bigquery", destinations::bigquery::DESCRIPTOR),
    entry!("bigquery_streaming", "bigquery", destinations::bigquery_streaming::DESCRIPTOR),
    entry!("bigquery_streaming_v2", "bigquery", destinations::bigquery_streaming_v2::DESCRIPTOR),
];

pub static BACKENDS: &[Entry<BackendDescriptor>] = &[
    entry!(backends::sqlite::DESCRIPTOR),
    entry!(backends::sqlite::IN_MEMORY),
    entry!("postgres", "postgres", backends::postgres::DESCRIPTOR),
    entry!("bigquery", "bigquery", backends::bigquery::DESCRIPTOR),
];

pub static QUEUES: &[Entry<QueueDescriptor>] = &[
    entry!("rabbitmq", "rabbitmq", queues::rabbitmq::DESCRIPTOR),
    entry!("kafka", "kafka", queues::kafka::DESCRIPTOR),
];

/// bizon's connectors that bizon-rs does not have yet (a config naming one is told so).
pub const PLANNED_SOURCES: &[&str] = &[];
pub const PLANNED_DESTINATIONS: &[&str] = &[];
pub const PLANNED_BACKENDS: &[&str] = &[];

/// Why a name is not available: unknown, planned, or left out of this build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    Unknown {
        closest: Option<&'static str>,
    },
    Planned,
    /// Known, but this build was made without its cargo feature.
    LeftOut {
        feature: &'static str,
    },
}

/// Look `name` up in a registry list.
pub fn find<D>(list: &'static [Entry<D>], planned: &[&str], name: &str) -> Result<&'static D, Missing> {
    match list.iter().find(|e| e.name == name) {
        Some(Entry { descriptor: Some(d), .. }) => Ok(d),
        Some(Entry { feature, .. }) => Err(Missing::LeftOut { feature: feature.unwrap_or("default") }),
        None if planned.contains(&name) => Err(Missing::Planned),
        None => Err(Missing::Unknown { closest: bizon_core::suggest::closest(name, names(list)) }),
    }
}

/// The names this build has, in registry order.
pub fn names<D>(list: &'static [Entry<D>]) -> impl Iterator<Item = &'static str> + Clone {
    list.iter().filter(|e| e.descriptor.is_some()).map(|e| e.name)
}

/// The descriptors this build has, in registry order.
pub fn available<D>(list: &'static [Entry<D>]) -> impl Iterator<Item = &'static D> {
    list.iter().filter_map(|e| e.descriptor)
}

/// The message for a name not found: what `what` (source, destination, backend type, queue
/// type) the user asked for and what the build offers.
pub fn missing_message<D>(what: &str, name: &str, list: &'static [Entry<D>], missing: &Missing) -> String {
    let available = names(list).collect::<Vec<_>>().join(", ");
    match missing {
        Missing::LeftOut { feature } => format!(
            "{what} `{name}` is not in this build: it was compiled without the `{feature}` cargo feature \
             (rebuild with `--features {feature}`, or the default features); available: {available}"
        ),
        Missing::Planned => format!("{what} `{name}` is not available in this build yet; available: {available}"),
        Missing::Unknown { closest } => {
            let hint = closest.map(|s| format!("; did you mean `{s}`?")).unwrap_or_default();
            format!("unknown {what} `{name}`{hint} Available: {available}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registry_line_names_its_descriptor() {
        for e in SOURCES {
            assert!(e.descriptor.is_none_or(|d| d.name == e.name), "source line `{}`", e.name);
        }
        for e in DESTINATIONS {
            assert!(e.descriptor.is_none_or(|d| d.name == e.name), "destination line `{}`", e.name);
        }
        for e in BACKENDS {
            assert!(e.descriptor.is_none_or(|d| d.name == e.name), "backend line `{}`", e.name);
        }
        for e in QUEUES {
            assert!(e.descriptor.is_none_or(|d| d.name == e.name), "queue line `{}`", e.name);
        }
    }

    #[test]
    fn lookups_tell_unknown_planned_and_left_out_apart() {
        assert!(find(SOURCES, PLANNED_SOURCES, "generator").is_ok());
        assert_eq!(
            find(SOURCES, PLANNED_SOURCES, "generatr").err(),
            Some(Missing::Unknown { closest: Some("generator") })
        );
        assert_eq!(find(SOURCES, &["salesforce"], "salesforce").err(), Some(Missing::Planned));
        let kafka = find(SOURCES, PLANNED_SOURCES, "kafka");
        if cfg!(feature = "kafka") {
            assert!(kafka.is_ok());
        } else {
            assert_eq!(kafka.err(), Some(Missing::LeftOut { feature: "kafka" }));
        }
    }
}
