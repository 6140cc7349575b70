//! The proc macro behind `keelson_plugin_sdk::export_*!`.
//!
//! It emits, in the plugin's crate, the Wasm component glue for exactly the interfaces the
//! plugin implements (so a component exports only those and the host calls only those) and the
//! native C ABI entry points, each behind its `cfg(target_arch)`. The bindings are generated
//! from the SDK's own copy of `wit/`, located when this crate is built, and reuse the SDK's
//! types through `with`, so the plugin's trait implementation and the glue share one set of
//! types.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Ident, Token, Type};

/// `export!(kind, Type, [point, ...])`: see the SDK's `export_scheduler_policy!`,
/// `export_admission_check!` and `export_network_backend!`.
#[proc_macro]
pub fn export(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as ExportInput);
    match expand(input) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

struct ExportInput {
    kind: Ident,
    ty: Type,
    points: Vec<Ident>,
}

impl Parse for ExportInput {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let kind: Ident = input.parse()?;
        input.parse::<Token![,]>()?;
        let ty: Type = input.parse()?;
        input.parse::<Token![,]>()?;
        let content;
        syn::bracketed!(content in input);
        let points = Punctuated::<Ident, Token![,]>::parse_terminated(&content)?
            .into_iter()
            .collect();
        Ok(ExportInput { kind, ty, points })
    }
}

/// One optional export: the WIT interface, the native function ids it covers, and the Wasm
/// `Guest` impl that forwards to the SDK.
struct Point {
    interface: &'static str,
    guest_impl: TokenStream2,
}

/// What a plugin kind contributes: its base world, the `with` mappings to the SDK's types, the
/// SDK module of its glue, the `Guest` impls every plugin of the kind has, and its optional
/// exports by the name used in the export macro.
type KindGlue = (
    &'static str,
    Vec<(&'static str, TokenStream2)>,
    Ident,
    TokenStream2,
    Vec<(&'static str, Point)>,
);

fn wit_dir() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit");
    dir.canonicalize()
        .unwrap_or(dir)
        .to_string_lossy()
        .into_owned()
}

fn expand(input: ExportInput) -> syn::Result<TokenStream2> {
    let ty = &input.ty;
    let kind = input.kind.to_string();
    let sdk = quote!(::keelson_plugin_sdk);
    let rt = quote!(#sdk::__private);

    let (world, with, kind_mod, base_impls, points): KindGlue = match kind.as_str() {
        "scheduler" => (
            "keelson:plugin/scheduler-policy-base@0.1.0",
            vec![
                (
                    "keelson:plugin/types@0.1.0",
                    quote!(#sdk::bindings::keelson::plugin::types),
                ),
                (
                    "keelson:plugin/log@0.1.0",
                    quote!(#sdk::bindings::keelson::plugin::log),
                ),
                (
                    "keelson:plugin/scheduler-types@0.1.0",
                    quote!(#sdk::bindings::keelson::plugin::scheduler_types),
                ),
            ],
            format_ident!("scheduler"),
            quote! {
                impl exports::keelson::plugin::scheduler::Guest for __KeelsonExport {
                    fn node_added(index: u32, node: #sdk::NodeInfo) {
                        #rt::scheduler::wasm::node_added::<#ty>(index, node)
                    }
                    fn node_updated(index: u32, node: #sdk::NodeInfo) {
                        #rt::scheduler::wasm::node_updated::<#ty>(index, node)
                    }
                    fn node_removed(index: u32) {
                        #rt::scheduler::wasm::node_removed::<#ty>(index)
                    }
                    fn end_cycle(cycle: u64, outcome: #sdk::CycleOutcome) {
                        #rt::scheduler::wasm::end_cycle::<#ty>(cycle, outcome)
                    }
                }
            },
            vec![
                (
                    "pre_filter",
                    Point {
                        interface: "pre-filter",
                        guest_impl: quote! {
                            impl exports::keelson::plugin::pre_filter::Guest for __KeelsonExport {
                                fn pre_filter(cycle: u64, pod: #sdk::PodInfo)
                                    -> Result<#sdk::PreFilterResult, #sdk::PluginError> {
                                    #rt::scheduler::wasm::pre_filter::<#ty>(cycle, pod)
                                }
                            }
                        },
                    },
                ),
                (
                    "filter",
                    Point {
                        interface: "filter",
                        guest_impl: quote! {
                            impl exports::keelson::plugin::filter::Guest for __KeelsonExport {
                                fn filter(cycle: u64, pod: #sdk::PodInfo, candidates: Vec<u32>)
                                    -> Result<Vec<#sdk::FilterResult>, #sdk::PluginError> {
                                    #rt::scheduler::wasm::filter::<#ty>(cycle, pod, candidates)
                                }
                                fn reasons(start: u32) -> Vec<String> {
                                    #rt::scheduler::wasm::reasons::<#ty>(start)
                                }
                            }
                        },
                    },
                ),
                (
                    "score",
                    Point {
                        interface: "score",
                        guest_impl: quote! {
                            impl exports::keelson::plugin::score::Guest for __KeelsonExport {
                                fn score(cycle: u64, pod: #sdk::PodInfo, candidates: Vec<u32>)
                                    -> Result<Vec<i64>, #sdk::PluginError> {
                                    #rt::scheduler::wasm::score::<#ty>(cycle, pod, candidates)
                                }
                            }
                        },
                    },
                ),
                (
                    "normalize_score",
                    Point {
                        interface: "normalize-score",
                        guest_impl: quote! {
                            impl exports::keelson::plugin::normalize_score::Guest for __KeelsonExport {
                                fn normalize_score(cycle: u64, scores: Vec<i64>)
                                    -> Result<Vec<i64>, #sdk::PluginError> {
                                    #rt::scheduler::wasm::normalize_score::<#ty>(cycle, scores)
                                }
                            }
                        },
                    },
                ),
            ],
        ),
        "admission" => (
            "keelson:plugin/admission-check-base@0.1.0",
            vec![
                (
                    "keelson:plugin/types@0.1.0",
                    quote!(#sdk::bindings::keelson::plugin::types),
                ),
                (
                    "keelson:plugin/log@0.1.0",
                    quote!(#sdk::bindings::keelson::plugin::log),
                ),
                (
                    "keelson:plugin/admission@0.1.0",
                    quote!(#sdk::bindings::keelson::plugin::admission),
                ),
                (
                    "keelson:plugin/cluster@0.1.0",
                    quote!(#sdk::bindings::keelson::plugin::cluster),
                ),
            ],
            format_ident!("admission"),
            quote! {},
            vec![
                (
                    "validate",
                    Point {
                        interface: "validate",
                        guest_impl: quote! {
                            impl exports::keelson::plugin::validate::Guest for __KeelsonExport {
                                fn validate(request: #sdk::AdmissionRequest)
                                    -> Result<#sdk::AdmissionResponse, #sdk::PluginError> {
                                    #rt::admission::wasm::validate::<#ty>(request)
                                }
                            }
                        },
                    },
                ),
                (
                    "mutate",
                    Point {
                        interface: "mutate",
                        guest_impl: quote! {
                            impl exports::keelson::plugin::mutate::Guest for __KeelsonExport {
                                fn mutate(request: #sdk::AdmissionRequest)
                                    -> Result<#sdk::AdmissionResponse, #sdk::PluginError> {
                                    #rt::admission::wasm::mutate::<#ty>(request)
                                }
                            }
                        },
                    },
                ),
            ],
        ),
        "network" => (
            "keelson:plugin/network-backend@0.1.0",
            vec![
                (
                    "keelson:plugin/types@0.1.0",
                    quote!(#sdk::bindings::keelson::plugin::types),
                ),
                (
                    "keelson:plugin/log@0.1.0",
                    quote!(#sdk::bindings::keelson::plugin::log),
                ),
                (
                    "keelson:plugin/network-types@0.1.0",
                    quote!(#sdk::bindings::keelson::plugin::network_types),
                ),
                (
                    "keelson:plugin/host-net@0.1.0",
                    quote!(#sdk::bindings::keelson::plugin::host_net),
                ),
            ],
            format_ident!("network"),
            quote! {
                impl exports::keelson::plugin::backend::Guest for __KeelsonExport {
                    fn node_added(node: #sdk::NodeNetworkInfo) -> Result<(), #sdk::PluginError> {
                        #rt::network::wasm::node_added::<#ty>(node)
                    }
                    fn node_updated(node: #sdk::NodeNetworkInfo) -> Result<(), #sdk::PluginError> {
                        #rt::network::wasm::node_updated::<#ty>(node)
                    }
                    fn node_removed(node: #sdk::NodeNetworkInfo) -> Result<(), #sdk::PluginError> {
                        #rt::network::wasm::node_removed::<#ty>(node)
                    }
                    fn restore_pod(pod: #sdk::AttachedPod) -> Result<(), #sdk::PluginError> {
                        #rt::network::wasm::restore_pod::<#ty>(pod)
                    }
                    fn attach_pod(request: #sdk::AttachRequest)
                        -> Result<#sdk::AttachResult, #sdk::PluginError> {
                        #rt::network::wasm::attach_pod::<#ty>(request)
                    }
                    fn detach_pod(request: #sdk::DetachRequest) -> Result<(), #sdk::PluginError> {
                        #rt::network::wasm::detach_pod::<#ty>(request)
                    }
                }
            },
            vec![],
        ),
        other => {
            return Err(syn::Error::new(
                input.kind.span(),
                format!("unknown plugin kind `{other}`: expected scheduler, admission or network"),
            ));
        }
    };

    let mut chosen: Vec<&Point> = Vec::new();
    let mut chosen_names: Vec<String> = Vec::new();
    for p in &input.points {
        let name = p.to_string();
        match points.iter().find(|(n, _)| *n == name) {
            Some((_, point)) if !chosen_names.contains(&name) => {
                chosen.push(point);
                chosen_names.push(name);
            }
            Some(_) => {
                return Err(syn::Error::new(
                    p.span(),
                    format!("`{name}` is listed twice"),
                ));
            }
            None => {
                let known: Vec<&str> = points.iter().map(|(n, _)| *n).collect();
                return Err(syn::Error::new(
                    p.span(),
                    if known.is_empty() {
                        format!("this plugin kind has no optional exports, but `{name}` is listed")
                    } else {
                        format!(
                            "unknown export `{name}`: expected one of {}",
                            known.join(", ")
                        )
                    },
                ));
            }
        }
    }
    if kind == "scheduler"
        && chosen_names.iter().any(|n| n == "normalize_score")
        && !chosen_names.iter().any(|n| n == "score")
    {
        return Err(syn::Error::new(
            Span::call_site(),
            "`normalize_score` needs `score`: it rescales the plugin's own scores",
        ));
    }
    if kind != "network" && chosen.is_empty() {
        return Err(syn::Error::new(
            Span::call_site(),
            "list at least one export; a plugin with none would never be called",
        ));
    }

    let mut inline =
        format!("package keelson-export:plugin;\nworld plugin {{\n    include {world};\n");
    for p in &chosen {
        inline.push_str(&format!(
            "    export keelson:plugin/{}@0.1.0;\n",
            p.interface
        ));
    }
    inline.push_str("}\n");
    let wit = wit_dir();
    let with_entries = with.iter().map(|(k, v)| quote!(#k: #v));
    let guest_impls = chosen.iter().map(|p| &p.guest_impl);
    let mut exports: Vec<String> = match kind.as_str() {
        "scheduler" => vec!["lifecycle".into(), "scheduler".into()],
        "network" => vec!["lifecycle".into(), "backend".into()],
        _ => vec!["lifecycle".into()],
    };
    exports.extend(chosen.iter().map(|p| p.interface.to_string()));
    let kind_name = match kind.as_str() {
        "scheduler" => "scheduler-policy",
        "admission" => "admission-check",
        _ => "network-backend",
    };

    Ok(quote! {
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        #[allow(unsafe_code, clippy::all, missing_docs, unused_imports)]
        mod __keelson_plugin_wasm {
            use super::*;

            #sdk::__private::wit_bindgen::generate!({
                path: #wit,
                inline: #inline,
                world: "keelson-export:plugin/plugin",
                with: { #(#with_entries,)* },
                runtime_path: "::keelson_plugin_sdk::__private::wit_bindgen::rt",
            });

            struct __KeelsonExport;

            impl exports::keelson::plugin::lifecycle::Guest for __KeelsonExport {
                fn name() -> String {
                    #rt::#kind_mod::wasm::name::<#ty>()
                }
                fn configure(options: String) -> Result<(), #sdk::PluginError> {
                    #rt::#kind_mod::wasm::configure::<#ty>(options)
                }
            }

            #base_impls
            #(#guest_impls)*

            export!(__KeelsonExport);
        }

        #[cfg(not(target_arch = "wasm32"))]
        #[doc(hidden)]
        #[allow(unsafe_code)]
        mod __keelson_plugin_native {
            use super::*;

            const EXPORTS: &[&str] = &[#(#exports),*];

            static VTABLE: #rt::abi::PluginVtable = #rt::abi::PluginVtable {
                abi_version: #rt::abi::ABI_VERSION,
                create: __keelson_create,
                call: __keelson_call,
                free_buf: #rt::native::free_buf,
                destroy: __keelson_destroy,
            };

            extern "C" fn __keelson_create(
                host: *const #rt::abi::HostVtable,
            ) -> *mut ::std::ffi::c_void {
                // SAFETY: the loader passes a host vtable that outlives the instance.
                unsafe { #rt::#kind_mod::native::create::<#ty>(host) }
            }

            extern "C" fn __keelson_call(
                instance: *mut ::std::ffi::c_void,
                func: u32,
                input: #rt::abi::Bytes,
                output: *mut #rt::abi::OwnedBuf,
            ) -> u32 {
                // SAFETY: the loader passes an instance `__keelson_create` made, input bytes
                // valid for the call and a writable output buffer.
                unsafe { #rt::#kind_mod::native::call::<#ty>(EXPORTS, instance, func, input, output) }
            }

            extern "C" fn __keelson_destroy(instance: *mut ::std::ffi::c_void) {
                // SAFETY: the loader passes an instance `__keelson_create` made, once.
                unsafe { #rt::#kind_mod::native::destroy::<#ty>(instance) }
            }

            /// The ABI version this library speaks; checked by the loader before anything else.
            #[unsafe(no_mangle)]
            pub extern "C" fn keelson_plugin_abi_version() -> u32 {
                #rt::abi::ABI_VERSION
            }

            /// The library's manifest: contract, kind, name and exports, as JSON.
            #[unsafe(no_mangle)]
            pub extern "C" fn keelson_plugin_manifest() -> #rt::abi::Bytes {
                static MANIFEST: ::std::sync::OnceLock<String> = ::std::sync::OnceLock::new();
                let m = MANIFEST.get_or_init(|| {
                    #rt::native::manifest(#kind_name, #rt::#kind_mod::name_of::<#ty>(), EXPORTS)
                });
                #rt::abi::Bytes::from_slice(m.as_bytes())
            }

            /// The plugin's functions.
            #[unsafe(no_mangle)]
            pub extern "C" fn keelson_plugin_vtable() -> *const #rt::abi::PluginVtable {
                &VTABLE
            }
        }
    })
}
