//! Ward's authorization policy engine.
//!
//! Istio `AuthorizationPolicy` documents (`security.istio.io/v1`, `v1beta1`)
//! load unchanged; Ward's `Role` and `RoleBinding` compile into the same
//! evaluator. Policies are compiled per route into indexes, and a decision
//! follows Istio's order: CUSTOM, then DENY (any match denies), then ALLOW
//! (when any ALLOW policy applies, one must match). Where Istio would allow
//! because no ALLOW policy exists, Ward denies unless `default_action =
//! "allow"` was chosen. Every deliberate difference from Istio is listed in
//! `docs/policy.md`.
//!
//! The core is pure: documents in, decisions out. Reading files is the only
//! I/O ([`load_dir`]).
#![forbid(unsafe_code)]

mod doc;
mod engine;
mod matcher;
mod model;
mod path;
mod request;
mod routes;
pub mod testing;

pub use doc::{DocError, LoadOptions, Parsed, parse_file};
pub use engine::{
    DefaultAction, EngineConfig, Explanation, Loaded, PolicySet, PolicyTrace, RuleRef, RuleTrace, Target, Verdict,
    load_dir, load_texts, policy_files,
};
pub use matcher::{Cidr, MatchError, PathMatch, StringMatch, canonical_ip};
pub use model::{Action, Kind, Policy, PolicyId};
pub use path::{Allow, EncodedSlashes, PathCase, PathError, PathOptions, normalize_path, normalize_path_with};
pub use request::{HeaderLookup, NoHeaders, Request};
pub use routes::{ROUTE_LABEL, Route, RouteTable};
