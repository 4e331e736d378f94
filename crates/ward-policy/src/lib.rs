//! Authorization v0: routes, allow rules and path normalisation.
//!
//! Default deny: a request is allowed only when a route matches its path and
//! one of that route's allow rules matches its method, path and claims. The
//! decision functions are pure; the gateway calls them with the normalised
//! path and the verified identity.
//!
//! Issue #3 replaces the rule language with Istio-compatible policies; the
//! [`authorize`] signature is the seam it plugs into.
#![forbid(unsafe_code)]

mod path;
mod rules;

pub use path::{PathError, normalize_path};
pub use rules::{AllowRule, ClaimRequirement, PathPattern, PatternError, Route, RouteTable, authorize};
