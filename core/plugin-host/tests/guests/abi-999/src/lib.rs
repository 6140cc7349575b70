//! A native library that speaks a plugin ABI from the future: only the version symbol, which
//! the loader reads first and must refuse.

/// An ABI version no host speaks.
#[unsafe(no_mangle)]
pub extern "C" fn keelson_plugin_abi_version() -> u32 {
    999
}
