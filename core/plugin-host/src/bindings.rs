//! The host's bindings of the root `wit/`: one `bindgen!` over a world that includes all three
//! plugin worlds, so every kind shares one set of types. Each kind's linker adds only the
//! interfaces its own world imports (see `linker.rs`).
//!
//! The generated types also derive serde's traits: native plugins receive the same values
//! encoded with `postcard`, and postcard encodes a record or variant by field and case order,
//! which both sides take from the same WIT.

wasmtime::component::bindgen!({
    path: "../../wit",
    inline: "
        package keelson-host:all;

        world all {
            include keelson:plugin/scheduler-policy@0.1.0;
            include keelson:plugin/admission-check@0.1.0;
            include keelson:plugin/network-backend@0.1.0;
        }
    ",
    world: "keelson-host:all/all",
    additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
});

pub use keelson::plugin::types::ErrorKind;

impl std::fmt::Display for ErrorKind {
    /// The WIT name of the kind, such as `invalid-config`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ErrorKind::InvalidConfig => "invalid-config",
            ErrorKind::InvalidInput => "invalid-input",
            ErrorKind::Unschedulable => "unschedulable",
            ErrorKind::Unresolvable => "unresolvable",
            ErrorKind::NotFound => "not-found",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        })
    }
}
