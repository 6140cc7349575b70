//! A scheduler policy that reads a file, so its standard library imports `wasi:filesystem`,
//! which no plugin world grants: the host must refuse to load it, naming the import.

use keelson_plugin_sdk::{
    ErrorKind, PluginError, SchedulerPolicy, export_scheduler_policy, plugin_error,
};

struct ReadsFiles;

impl SchedulerPolicy for ReadsFiles {
    const NAME: &'static str = "imports-filesystem";

    fn configure(_options: &str) -> Result<Self, PluginError> {
        std::fs::read_to_string("/etc/hostname")
            .map(|_| ReadsFiles)
            .map_err(|e| plugin_error(ErrorKind::InvalidConfig, e.to_string()))
    }
}

export_scheduler_policy!(ReadsFiles, exports: [score]);
