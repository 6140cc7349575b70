//! An admission check whose `validate` and `mutate` panic, for the host's failure-policy
//! tests: a trap when built as a component, a caught panic when built natively.

use keelson_plugin_sdk::{
    AdmissionCheck, AdmissionRequest, AdmissionResponse, PluginError, export_admission_check,
};

struct Panics;

impl AdmissionCheck for Panics {
    const NAME: &'static str = "admission-panics";

    fn configure(_options: &str) -> Result<Self, PluginError> {
        Ok(Panics)
    }

    fn validate(&mut self, request: &AdmissionRequest) -> Result<AdmissionResponse, PluginError> {
        panic!("admission-panics panics on {} as designed", request.uid)
    }

    fn mutate(&mut self, request: &AdmissionRequest) -> Result<AdmissionResponse, PluginError> {
        panic!("admission-panics panics on {} as designed", request.uid)
    }
}

export_admission_check!(Panics, exports: [validate, mutate]);
