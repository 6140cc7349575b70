//! Host imports seen from the plugin: Wasm imports in a component; natively, calls through the
//! host that is running the current call (the loader's C ABI, or the [`testing`](crate::testing)
//! harness).

use crate::Level;

/// Whether the host keeps log records at `level`.
#[cfg(target_arch = "wasm32")]
pub(crate) fn log_enabled(level: Level) -> bool {
    crate::bindings::keelson::plugin::log::enabled(level)
}

/// Writes a log record.
#[cfg(target_arch = "wasm32")]
pub(crate) fn log(level: Level, message: &str) {
    crate::bindings::keelson::plugin::log::log(level, message)
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn log_enabled(level: Level) -> bool {
    // Logging outside a call (a plugin's own unit test calling its trait directly) is dropped
    // rather than treated as a bug.
    native::has_host() && native::call_import(keelson_plugin_abi::imports::LOG_ENABLED, &(level,))
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn log(level: Level, message: &str) {
    if native::has_host() {
        native::call_import::<_, ()>(keelson_plugin_abi::imports::LOG, &(level, message))
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod native {
    use std::cell::RefCell;
    use std::rc::Rc;

    use serde::Serialize;
    use serde::de::DeserializeOwned;

    /// A host as the native side of the SDK sees it: one entry point taking a function id of
    /// [`keelson_plugin_abi::imports`] and the encoded arguments, returning the encoded result
    /// or why the call could not be made.
    pub trait Imports {
        /// Runs import `func`.
        fn call(&self, func: u32, input: &[u8]) -> Result<Vec<u8>, String>;
    }

    thread_local! {
        // The hosts of the calls running on this thread, innermost last. A plugin call runs on
        // the host's thread from start to end, so a thread-local is exactly its extent.
        static CURRENT: RefCell<Vec<Rc<dyn Imports>>> = const { RefCell::new(Vec::new()) };
    }

    /// Makes `host` the current host until the guard drops.
    pub(crate) struct Enter(());

    impl Enter {
        pub(crate) fn new(host: Rc<dyn Imports>) -> Enter {
            CURRENT.with_borrow_mut(|c| c.push(host));
            Enter(())
        }
    }

    impl Drop for Enter {
        fn drop(&mut self) {
            CURRENT.with_borrow_mut(|c| {
                c.pop();
            });
        }
    }

    pub(crate) fn has_host() -> bool {
        CURRENT.with_borrow(|c| !c.is_empty())
    }

    /// Calls import `func` on the current host. A failure to reach the host is a bug in the
    /// plugin's setup (an import called outside a call) or in the host, so it panics; the
    /// panic is caught at the ABI boundary and reported as the call's failure.
    pub(crate) fn call_import<A: Serialize + ?Sized, R: DeserializeOwned>(
        func: u32,
        args: &A,
    ) -> R {
        let input = match postcard::to_allocvec(args) {
            Ok(input) => input,
            Err(e) => {
                panic!("keelson-plugin-sdk: could not encode the arguments of import {func}: {e}")
            }
        };
        let Some(host) = CURRENT.with_borrow(|c| c.last().cloned()) else {
            panic!(
                "keelson-plugin-sdk: a host import was called outside a plugin call; in unit \
                 tests, drive the plugin through keelson_plugin_sdk::testing"
            )
        };
        let output = match host.call(func, &input) {
            Ok(output) => output,
            Err(e) => panic!("keelson-plugin-sdk: host import {func} failed: {e}"),
        };
        match postcard::from_bytes(&output) {
            Ok(r) => r,
            Err(e) => {
                panic!("keelson-plugin-sdk: could not decode the result of import {func}: {e}")
            }
        }
    }
}

/// The per-instance state of a plugin in a Wasm component, where one component instance holds
/// exactly one plugin; `Any` because a `static` cannot be generic over the plugin's type.
pub(crate) mod wasm_state {
    use std::any::Any;
    use std::cell::RefCell;

    thread_local! {
        static STATE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    }

    /// Runs `f` on the instance's runtime of type `R`, creating it on first use.
    pub(crate) fn with<R: Default + 'static, O>(f: impl FnOnce(&mut R) -> O) -> O {
        STATE.with_borrow_mut(|slot| {
            let state = slot.get_or_insert_with(|| Box::new(R::default()));
            match state.downcast_mut::<R>() {
                Some(rt) => f(rt),
                // Only one export macro runs per component, so only one `R` touches the slot.
                None => panic!("keelson-plugin-sdk: plugin state has an unexpected type"),
            }
        })
    }
}
