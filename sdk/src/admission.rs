//! Admission checks: the [`AdmissionCheck`] trait, response helpers and the export glue.

use crate::{AdmissionRequest, AdmissionResponse, ErrorKind, PluginError, plugin_error};

/// An admission check: validates and/or mutates API requests before they are stored.
///
/// Implement [`validate`](Self::validate), [`mutate`](Self::mutate) or both, and list the ones
/// implemented in [`export_admission_check!`](crate::export_admission_check); the host calls
/// only those. Mutating checks run first, one after another, each seeing the object as the
/// previous ones patched it; validating checks then see the final object. A check reads other
/// cluster objects through [`cluster`](crate::cluster), served from the host's cache.
///
/// ```no_run
/// use keelson_plugin_sdk::*;
///
/// /// Denies pods in the `default` namespace.
/// struct NotInDefault;
///
/// impl AdmissionCheck for NotInDefault {
///     const NAME: &'static str = "not-in-default";
///
///     fn configure(_options: &str) -> Result<Self, PluginError> {
///         Ok(NotInDefault)
///     }
///
///     fn validate(&mut self, request: &AdmissionRequest) -> Result<AdmissionResponse, PluginError> {
///         if request.namespace.as_deref() == Some("default") {
///             Ok(deny("pods may not run in the default namespace"))
///         } else {
///             Ok(allow())
///         }
///     }
/// }
///
/// export_admission_check!(NotInDefault, exports: [validate]);
/// # fn main() {}
/// ```
pub trait AdmissionCheck: Sized + 'static {
    /// The plugin's name, short and kebab-case (`require-owner`).
    ///
    /// ```
    /// # use keelson_plugin_sdk::*;
    /// # struct P;
    /// # impl AdmissionCheck for P {
    /// const NAME: &'static str = "require-owner";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) } }
    /// assert_eq!(P::NAME, "require-owner");
    /// ```
    const NAME: &'static str;

    /// Builds the check from its options (JSON text, `{}` when none were given). Return an
    /// error of kind [`ErrorKind::InvalidConfig`] to stop the API server from starting.
    ///
    /// ```
    /// # use keelson_plugin_sdk::*;
    /// # struct P;
    /// # impl AdmissionCheck for P { const NAME: &'static str = "p";
    /// fn configure(options: &str) -> Result<Self, PluginError> {
    ///     if options.contains("\"label\"") { Ok(P) } else {
    ///         Err(plugin_error(ErrorKind::InvalidConfig, "option \"label\" is required"))
    ///     }
    /// }
    /// # }
    /// assert!(P::configure("{}").is_err());
    /// ```
    fn configure(options: &str) -> Result<Self, PluginError>;

    /// Decides whether the request may proceed, without changing it. Default: allow.
    ///
    /// ```
    /// # use keelson_plugin_sdk::*;
    /// # struct P;
    /// # impl AdmissionCheck for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) }
    /// fn validate(&mut self, request: &AdmissionRequest) -> Result<AdmissionResponse, PluginError> {
    ///     let has_owner = request.object.as_deref().is_some_and(|o| o.contains("\"owner\""));
    ///     Ok(if has_owner { allow() } else { deny("objects need an owner label") })
    /// }
    /// # }
    /// ```
    fn validate(&mut self, request: &AdmissionRequest) -> Result<AdmissionResponse, PluginError> {
        let _ = request;
        Ok(allow())
    }

    /// Decides whether the request may proceed and may change the object by returning a JSON
    /// patch (see [`patch`]). Default: allow unchanged.
    ///
    /// ```
    /// # use keelson_plugin_sdk::*;
    /// # struct P;
    /// # impl AdmissionCheck for P { const NAME: &'static str = "p";
    /// # fn configure(_: &str) -> Result<Self, PluginError> { Ok(P) }
    /// fn mutate(&mut self, _request: &AdmissionRequest) -> Result<AdmissionResponse, PluginError> {
    ///     Ok(patch(r#"[{"op":"add","path":"/metadata/labels/checked","value":"yes"}]"#))
    /// }
    /// # }
    /// ```
    fn mutate(&mut self, request: &AdmissionRequest) -> Result<AdmissionResponse, PluginError> {
        let _ = request;
        Ok(allow())
    }
}

/// A response that admits the request unchanged.
///
/// ```
/// assert!(keelson_plugin_sdk::allow().allowed);
/// ```
pub fn allow() -> AdmissionResponse {
    AdmissionResponse {
        allowed: true,
        message: None,
        status_code: None,
        patch: None,
        warnings: Vec::new(),
    }
}

/// A response that denies the request with `message` (HTTP 403 unless `status_code` is set).
///
/// ```
/// let r = keelson_plugin_sdk::deny("pods need an owner label");
/// assert!(!r.allowed);
/// assert_eq!(r.message.as_deref(), Some("pods need an owner label"));
/// ```
pub fn deny(message: impl Into<String>) -> AdmissionResponse {
    AdmissionResponse {
        allowed: false,
        message: Some(message.into()),
        ..allow()
    }
}

/// A response that admits the request changed by `json_patch`, an RFC 6902 JSON Patch as
/// JSON text. Only `mutate` may return one.
///
/// ```
/// let r = keelson_plugin_sdk::patch(r#"[{"op":"remove","path":"/spec/nodeName"}]"#);
/// assert!(r.allowed && r.patch.is_some());
/// ```
pub fn patch(json_patch: impl Into<String>) -> AdmissionResponse {
    AdmissionResponse {
        patch: Some(json_patch.into()),
        ..allow()
    }
}

/// The check's name, for the native manifest.
pub fn name_of<T: AdmissionCheck>() -> &'static str {
    T::NAME
}

/// One plugin instance: the check once configured.
pub(crate) struct Runtime<T> {
    check: Option<T>,
}

impl<T> Default for Runtime<T> {
    fn default() -> Self {
        Runtime { check: None }
    }
}

impl<T: AdmissionCheck> Runtime<T> {
    pub(crate) fn configure(&mut self, options: &str) -> Result<(), PluginError> {
        self.check = Some(T::configure(options)?);
        Ok(())
    }

    fn check(&mut self) -> Result<&mut T, PluginError> {
        self.check
            .as_mut()
            .ok_or_else(|| plugin_error(ErrorKind::Internal, "called before configure succeeded"))
    }

    pub(crate) fn validate(
        &mut self,
        request: &AdmissionRequest,
    ) -> Result<AdmissionResponse, PluginError> {
        self.check()?.validate(request)
    }

    pub(crate) fn mutate(
        &mut self,
        request: &AdmissionRequest,
    ) -> Result<AdmissionResponse, PluginError> {
        self.check()?.mutate(request)
    }
}

/// What the Wasm `Guest` impls the export macro generates call.
pub mod wasm {
    use super::{AdmissionCheck, Runtime};
    use crate::host::wasm_state;
    use crate::{AdmissionRequest, AdmissionResponse, PluginError};

    /// `lifecycle.name`.
    pub fn name<T: AdmissionCheck>() -> String {
        T::NAME.to_string()
    }
    /// `lifecycle.configure`.
    pub fn configure<T: AdmissionCheck>(options: String) -> Result<(), PluginError> {
        wasm_state::with(|rt: &mut Runtime<T>| rt.configure(&options))
    }
    /// `validate.validate`.
    pub fn validate<T: AdmissionCheck>(
        request: AdmissionRequest,
    ) -> Result<AdmissionResponse, PluginError> {
        wasm_state::with(|rt: &mut Runtime<T>| rt.validate(&request))
    }
    /// `mutate.mutate`.
    pub fn mutate<T: AdmissionCheck>(
        request: AdmissionRequest,
    ) -> Result<AdmissionResponse, PluginError> {
        wasm_state::with(|rt: &mut Runtime<T>| rt.mutate(&request))
    }
}

/// What the native `extern "C"` functions the export macro generates call.
#[cfg(not(target_arch = "wasm32"))]
#[allow(unsafe_code)]
pub mod native {
    use keelson_plugin_abi::{admission as f, lifecycle};

    use super::{AdmissionCheck, Runtime};
    use crate::AdmissionRequest;
    use crate::native::{Dispatch, decode, encode};

    impl<T: AdmissionCheck> crate::native::Runtime for Runtime<T> {
        fn dispatch(
            &mut self,
            exports: &[&str],
            func: u32,
            input: &[u8],
        ) -> Result<Vec<u8>, Dispatch> {
            let exported = |name: &str| {
                if exports.contains(&name) {
                    Ok(())
                } else {
                    Err(Dispatch::Unknown)
                }
            };
            match func {
                lifecycle::NAME => encode(T::NAME),
                lifecycle::CONFIGURE => {
                    let (options,): (String,) = decode(input)?;
                    encode(&self.configure(&options))
                }
                f::VALIDATE => {
                    exported("validate")?;
                    let (request,): (AdmissionRequest,) = decode(input)?;
                    encode(&self.validate(&request))
                }
                f::MUTATE => {
                    exported("mutate")?;
                    let (request,): (AdmissionRequest,) = decode(input)?;
                    encode(&self.mutate(&request))
                }
                _ => Err(Dispatch::Unknown),
            }
        }
    }

    crate::native::entry_points!(AdmissionCheck);
}
