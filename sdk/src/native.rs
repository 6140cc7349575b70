//! The native C ABI glue: what the export macros' `extern "C"` functions call. The only
//! `unsafe` of the SDK outside the generated Wasm bindings.
#![allow(unsafe_code)]

use std::any::TypeId;
use std::collections::BTreeMap;
use std::ffi::c_void;
use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::Mutex;

use keelson_plugin_abi::{Bytes, HostVtable, OwnedBuf, status};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::host::native::{Enter, Imports};

/// Why a native call could not be dispatched.
pub(crate) enum Dispatch {
    /// The input did not decode as the function's arguments.
    BadInput(String),
    /// The function id is unknown, or names an extension point the plugin does not export.
    Unknown,
}

/// The state of one plugin instance, dispatching encoded calls; one impl per plugin kind.
pub(crate) trait Runtime: Default + 'static {
    fn dispatch(&mut self, exports: &[&str], func: u32, input: &[u8]) -> Result<Vec<u8>, Dispatch>;
}

pub(crate) fn decode<T: DeserializeOwned>(input: &[u8]) -> Result<T, Dispatch> {
    postcard::from_bytes(input).map_err(|e| Dispatch::BadInput(e.to_string()))
}

pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Dispatch> {
    postcard::to_allocvec(value)
        .map_err(|e| Dispatch::BadInput(format!("encoding the result: {e}")))
}

struct Instance<R> {
    host: Rc<dyn Imports>,
    runtime: R,
}

/// The host behind a [`HostVtable`].
struct AbiHost(*const HostVtable);

impl Imports for AbiHost {
    fn call(&self, func: u32, input: &[u8]) -> Result<Vec<u8>, String> {
        // SAFETY: the loader guarantees the vtable outlives every instance created with it.
        let host = unsafe { &*self.0 };
        let mut out = OwnedBuf::EMPTY;
        let code = (host.call)(host.ctx, func, Bytes::from_slice(input), &mut out);
        let bytes = if out.ptr.is_null() || out.len == 0 {
            Vec::new()
        } else {
            // SAFETY: the host wrote `len` initialised bytes at `ptr`.
            unsafe { std::slice::from_raw_parts(out.ptr, out.len) }.to_vec()
        };
        (host.free_buf)(out);
        if code == status::OK {
            Ok(bytes)
        } else {
            Err(format!(
                "status {code}: {}",
                String::from_utf8_lossy(&bytes)
            ))
        }
    }
}

/// Creates an instance; null if creating it panicked.
///
/// # Safety
/// `host` must point to a vtable that outlives the instance.
pub(crate) unsafe fn create<R: Runtime>(host: *const HostVtable) -> *mut c_void {
    let made = catch_unwind(|| {
        Box::new(Instance {
            host: Rc::new(AbiHost(host)) as Rc<dyn Imports>,
            runtime: R::default(),
        })
    });
    match made {
        Ok(instance) => Box::into_raw(instance).cast(),
        Err(_) => std::ptr::null_mut(),
    }
}

/// Runs one call.
///
/// # Safety
/// `instance` must come from [`create`] with the same `R` and not be destroyed; `input` must be
/// valid for reads for the call; `output` must be valid for writes.
pub(crate) unsafe fn call<R: Runtime>(
    exports: &[&str],
    instance: *mut c_void,
    func: u32,
    input: Bytes,
    output: *mut OwnedBuf,
) -> u32 {
    if instance.is_null() || output.is_null() {
        return status::BAD_INPUT;
    }
    // SAFETY: per this function's contract.
    let instance = unsafe { &mut *instance.cast::<Instance<R>>() };
    let input: &[u8] = if input.len == 0 || input.ptr.is_null() {
        &[]
    } else {
        // SAFETY: per this function's contract.
        unsafe { std::slice::from_raw_parts(input.ptr, input.len) }
    };
    let host = instance.host.clone();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let _enter = Enter::new(host);
        instance.runtime.dispatch(exports, func, input)
    }));
    let (code, bytes) = match result {
        Ok(Ok(bytes)) => (status::OK, bytes),
        Ok(Err(Dispatch::BadInput(message))) => (status::BAD_INPUT, message.into_bytes()),
        Ok(Err(Dispatch::Unknown)) => (status::UNKNOWN_FUNCTION, Vec::new()),
        Err(panic) => (status::PANIC, panic_message(panic.as_ref()).into_bytes()),
    };
    // SAFETY: per this function's contract.
    unsafe { write_output(output, bytes) };
    code
}

/// Destroys an instance, ignoring a panic in its destructor.
///
/// # Safety
/// `instance` must come from [`create`] with the same `R`, and is not used afterwards.
pub(crate) unsafe fn destroy<R: Runtime>(instance: *mut c_void) {
    if instance.is_null() {
        return;
    }
    // SAFETY: per this function's contract.
    let instance = unsafe { Box::from_raw(instance.cast::<Instance<R>>()) };
    let _ = catch_unwind(AssertUnwindSafe(move || drop(instance)));
}

/// Defines the `create`, `call` and `destroy` functions a plugin kind's `native` module
/// exposes to the export macro, for the kind's trait `$bound` and its `Runtime<T>` (in scope
/// where the macro is used).
macro_rules! entry_points {
    ($bound:path) => {
        /// Creates an instance.
        ///
        /// # Safety
        /// See the ABI: `host` outlives the instance.
        pub unsafe fn create<T: $bound>(
            host: *const keelson_plugin_abi::HostVtable,
        ) -> *mut std::ffi::c_void {
            // SAFETY: forwarded contract.
            unsafe { crate::native::create::<Runtime<T>>(host) }
        }

        /// Runs one call.
        ///
        /// # Safety
        /// See the ABI: a live instance of this type, readable input, writable output.
        pub unsafe fn call<T: $bound>(
            exports: &[&str],
            instance: *mut std::ffi::c_void,
            func: u32,
            input: keelson_plugin_abi::Bytes,
            output: *mut keelson_plugin_abi::OwnedBuf,
        ) -> u32 {
            // SAFETY: forwarded contract.
            unsafe { crate::native::call::<Runtime<T>>(exports, instance, func, input, output) }
        }

        /// Destroys an instance.
        ///
        /// # Safety
        /// See the ABI: a live instance of this type, not used afterwards.
        pub unsafe fn destroy<T: $bound>(instance: *mut std::ffi::c_void) {
            // SAFETY: forwarded contract.
            unsafe { crate::native::destroy::<Runtime<T>>(instance) }
        }
    };
}
pub(crate) use entry_points;

/// Releases a buffer this library returned.
pub extern "C" fn free_buf(buf: OwnedBuf) {
    if !buf.ptr.is_null() {
        // SAFETY: every non-null buffer this library hands out comes from `write_output`, which
        // leaks a `Vec<u8>` with exactly this pointer, length and capacity.
        drop(unsafe { Vec::from_raw_parts(buf.ptr, buf.len, buf.cap) });
    }
}

unsafe fn write_output(output: *mut OwnedBuf, bytes: Vec<u8>) {
    let mut bytes = ManuallyDrop::new(bytes);
    let buf = OwnedBuf {
        ptr: bytes.as_mut_ptr(),
        len: bytes.len(),
        cap: bytes.capacity(),
    };
    // SAFETY: the caller guarantees `output` is valid for writes.
    unsafe { output.write(buf) };
}

pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "the plugin panicked".to_string()
    }
}

/// The manifest JSON of a native library.
pub fn manifest(kind: &str, name: &str, exports: &[&str]) -> String {
    let quote = |s: &str| {
        let mut out = String::with_capacity(s.len() + 2);
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    };
    let exports: Vec<String> = exports.iter().map(|e| quote(e)).collect();
    format!(
        "{{\"contract\":{},\"kind\":{},\"name\":{},\"exports\":[{}]}}",
        quote(keelson_plugin_abi::CONTRACT),
        quote(kind),
        quote(name),
        exports.join(",")
    )
}

/// The manifest of built-in plugin type `T`, made by `make` on first use and kept for the
/// process's life (one small string per type), so a built-in's manifest is `'static` like a
/// library's.
pub(crate) fn static_manifest<T: 'static>(make: impl FnOnce() -> String) -> &'static str {
    static MANIFESTS: Mutex<BTreeMap<TypeId, &'static str>> = Mutex::new(BTreeMap::new());
    let mut manifests = MANIFESTS.lock().unwrap_or_else(|e| e.into_inner());
    manifests
        .entry(TypeId::of::<T>())
        .or_insert_with(|| Box::leak(make().into_boxed_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_is_json_with_escapes() {
        let m = manifest("scheduler-policy", "we\"ird", &["lifecycle", "score"]);
        assert_eq!(
            m,
            "{\"contract\":\"keelson:plugin@0.1.0\",\"kind\":\"scheduler-policy\",\
             \"name\":\"we\\\"ird\",\"exports\":[\"lifecycle\",\"score\"]}"
        );
    }
}
