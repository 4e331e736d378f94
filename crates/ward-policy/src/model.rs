//! Compiled policies and how one rule matches one request.
//!
//! Semantics follow Istio's `AuthorizationPolicy`: a rule matches when any of
//! its `from` sources, any of its `to` operations and every `when` condition
//! match (an absent section matches everything). Inside a source or an
//! operation every field that is set must match; a field matches when any of
//! its values does, and its `not*` twin when none does. An attribute the
//! request does not have (no token, no mTLS) matches no value and therefore
//! satisfies every `not*` list.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use crate::matcher::{Cidr, PathMatch, StringMatch};
use crate::request::{Request, claim_strings};

/// What a policy does when one of its rules matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Action {
    /// Delegate to an external authorizer (evaluated first).
    Custom,
    /// Deny (any match denies).
    Deny,
    /// Allow (when any ALLOW policy applies, one must match).
    Allow,
    /// Mark the request for the audit log; never changes the decision.
    Audit,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Custom => "CUSTOM",
            Self::Deny => "DENY",
            Self::Allow => "ALLOW",
            Self::Audit => "AUDIT",
        })
    }
}

/// The kind of document a policy came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Istio `AuthorizationPolicy`.
    AuthorizationPolicy,
    /// Ward `RoleBinding` (compiled to an ALLOW policy).
    RoleBinding,
}

/// Which policy: kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyId {
    /// The kind of document.
    pub kind: Kind,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl fmt::Display for PolicyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::AuthorizationPolicy => write!(f, "{}/{}", self.namespace, self.name),
            Kind::RoleBinding => write!(f, "rolebinding:{}/{}", self.namespace, self.name),
        }
    }
}

/// Where a document was written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    /// File, relative to the policy directory.
    pub file: String,
    /// 1-based line of the document's first key (0 when unknown).
    pub line: usize,
}

/// A compiled policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Which policy.
    pub id: PolicyId,
    /// What a match does.
    pub action: Action,
    /// For CUSTOM: the external authorizer's name.
    pub provider: Option<String>,
    /// `selector.matchLabels`; empty selects every target.
    pub selector: BTreeMap<String, String>,
    /// The rules; none means the policy matches no request.
    pub rules: Vec<Rule>,
    /// Where it came from.
    pub origin: Origin,
}

/// A field and its `not*` twin. Both empty: the field is not set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<T> {
    /// One must match.
    pub values: Vec<T>,
    /// None may match.
    pub not_values: Vec<T>,
}

impl<T> Default for Field<T> {
    fn default() -> Self {
        Self { values: Vec::new(), not_values: Vec::new() }
    }
}

impl<T> Field<T> {
    /// Whether the field is set at all.
    #[must_use]
    pub fn is_set(&self) -> bool {
        !self.values.is_empty() || !self.not_values.is_empty()
    }

    /// Evaluate against a request attribute with separate predicates for the
    /// positive and the negated list.
    fn eval(&self, positive: impl Fn(&T) -> bool, negative: impl Fn(&T) -> bool) -> bool {
        (self.values.is_empty() || self.values.iter().any(positive)) && !self.not_values.iter().any(negative)
    }
}

/// `from[].source`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Source {
    /// Peer identities (mTLS).
    pub principals: Field<StringMatch>,
    /// `iss/sub` of the token.
    pub request_principals: Field<StringMatch>,
    /// Namespaces of the peer identity.
    pub namespaces: Field<StringMatch>,
    /// Peer address.
    pub ip_blocks: Field<Cidr>,
    /// Original client address.
    pub remote_ip_blocks: Field<Cidr>,
}

/// A path matcher with its lower-cased twin for case-folded matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathValue {
    /// As written.
    pub exact: PathMatch,
    /// ASCII-lowercased.
    pub folded: PathMatch,
}

impl PathValue {
    /// Wrap a matcher.
    #[must_use]
    pub fn new(m: PathMatch) -> Self {
        Self { folded: m.to_ascii_lowercase(), exact: m }
    }
}

/// `to[].operation`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Operation {
    /// `Host`, lower-cased (hosts match case-insensitively).
    pub hosts: Field<StringMatch>,
    /// Destination ports.
    pub ports: Field<u16>,
    /// Methods.
    pub methods: Field<StringMatch>,
    /// Paths.
    pub paths: Field<PathValue>,
}

/// The attribute a `when` condition reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionKey {
    /// `request.auth.claims[a][b]`.
    Claim(Vec<String>),
    /// `request.auth.principal`.
    RequestPrincipal,
    /// `request.auth.audiences`.
    Audiences,
    /// `request.auth.presenter`.
    Presenter,
    /// `request.headers[name]` (lower-cased name).
    Header(String),
    /// `source.ip`.
    SourceIp,
    /// `remote.ip`.
    RemoteIp,
    /// `source.principal`.
    SourcePrincipal,
    /// `source.namespace`.
    SourceNamespace,
    /// `destination.ip`.
    DestinationIp,
    /// `destination.port`.
    DestinationPort,
    /// `connection.sni`.
    ConnectionSni,
}

impl fmt::Display for ConditionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Claim(path) => {
                f.write_str("request.auth.claims")?;
                for p in path {
                    write!(f, "[{p}]")?;
                }
                Ok(())
            }
            Self::RequestPrincipal => f.write_str("request.auth.principal"),
            Self::Audiences => f.write_str("request.auth.audiences"),
            Self::Presenter => f.write_str("request.auth.presenter"),
            Self::Header(h) => write!(f, "request.headers[{h}]"),
            Self::SourceIp => f.write_str("source.ip"),
            Self::RemoteIp => f.write_str("remote.ip"),
            Self::SourcePrincipal => f.write_str("source.principal"),
            Self::SourceNamespace => f.write_str("source.namespace"),
            Self::DestinationIp => f.write_str("destination.ip"),
            Self::DestinationPort => f.write_str("destination.port"),
            Self::ConnectionSni => f.write_str("connection.sni"),
        }
    }
}

/// The values of a condition, typed by its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionValues {
    /// String forms.
    Strings(Field<StringMatch>),
    /// Addresses and blocks.
    Cidrs(Field<Cidr>),
    /// Ports.
    Ports(Field<u16>),
}

/// `when[]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// What it reads.
    pub key: ConditionKey,
    /// `values` / `notValues`.
    pub values: ConditionValues,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    /// Any must match; empty matches any source.
    pub from: Vec<Source>,
    /// Any must match; empty matches any operation.
    pub to: Vec<Operation>,
    /// All must match.
    pub when: Vec<Condition>,
}

/// Which way a policy's matches push the decision. Paths are compared
/// case-sensitively, except where a case-folded comparison can only make
/// the outcome stricter: a DENY (or CUSTOM) rule's `paths` also match a
/// path that differs only in case, and so does an ALLOW rule's `notPaths`.
/// `/ADMIN/x` therefore cannot slip past a DENY on `/admin/*`, and an ALLOW
/// on `/admin/*` still does not allow `/ADMIN/x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bias {
    /// A match denies (DENY, CUSTOM): match more.
    TowardDeny,
    /// A match allows (ALLOW): match less.
    TowardAllow,
    /// A match changes nothing (AUDIT).
    Neutral,
}

impl From<Action> for Bias {
    fn from(a: Action) -> Self {
        match a {
            Action::Deny | Action::Custom => Self::TowardDeny,
            Action::Allow => Self::TowardAllow,
            Action::Audit => Self::Neutral,
        }
    }
}

/// The request with what matching derives from it computed once.
#[derive(Debug)]
pub struct Prepared<'a> {
    /// The request.
    pub request: Request<'a>,
    /// The path ASCII-lowercased (for case-folded comparisons).
    pub folded_path: std::borrow::Cow<'a, str>,
    /// The host ASCII-lowercased.
    pub host: Option<std::borrow::Cow<'a, str>>,
}

impl<'a> Prepared<'a> {
    /// Prepare a request for matching.
    #[must_use]
    pub fn new(request: Request<'a>) -> Self {
        let lower = |s: &'a str| {
            if s.bytes().any(|b| b.is_ascii_uppercase()) {
                std::borrow::Cow::Owned(s.to_ascii_lowercase())
            } else {
                std::borrow::Cow::Borrowed(s)
            }
        };
        Self { folded_path: lower(request.path), host: request.host.map(lower), request }
    }
}

/// A sink for explanations; `None` when only the answer matters.
pub type Trace<'t> = Option<&'t mut Vec<String>>;

fn note(trace: &mut Trace<'_>, msg: impl FnOnce() -> String) {
    if let Some(t) = trace.as_deref_mut() {
        t.push(msg());
    }
}

fn strings_field(field: &Field<StringMatch>, value: Option<&str>) -> bool {
    match value {
        Some(v) => field.eval(|m| m.matches(v), |m| m.matches(v)),
        None => field.values.is_empty(),
    }
}

fn multi_strings_field(field: &Field<StringMatch>, values: &[std::borrow::Cow<'_, str>]) -> bool {
    field.eval(|m| values.iter().any(|v| m.matches(v)), |m| values.iter().any(|v| m.matches(v)))
}

fn cidr_field(field: &Field<Cidr>, ip: Option<IpAddr>) -> bool {
    match ip {
        Some(ip) => field.eval(|c| c.contains(ip), |c| c.contains(ip)),
        None => field.values.is_empty(),
    }
}

fn port_field(field: &Field<u16>, port: Option<u16>) -> bool {
    match port {
        Some(p) => field.eval(|x| *x == p, |x| *x == p),
        None => field.values.is_empty(),
    }
}

fn show<T: fmt::Display>(field: &Field<T>) -> String {
    let list = |v: &[T]| v.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    match (field.values.is_empty(), field.not_values.is_empty()) {
        (false, true) => format!("[{}]", list(&field.values)),
        (true, false) => format!("not [{}]", list(&field.not_values)),
        _ => format!("[{}] and not [{}]", list(&field.values), list(&field.not_values)),
    }
}

impl fmt::Display for PathValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.exact.fmt(f)
    }
}

impl Source {
    fn matches(&self, req: &Prepared<'_>, trace: &mut Trace<'_>, at: &str) -> bool {
        let r = &req.request;
        if !strings_field(&self.principals, r.source_principal) {
            note(trace, || {
                format!("{at}.principals: {:?} does not match {}", r.source_principal, show(&self.principals))
            });
            return false;
        }
        if !strings_field(&self.request_principals, r.request_principal) {
            note(trace, || {
                format!(
                    "{at}.requestPrincipals: {:?} does not match {}",
                    r.request_principal,
                    show(&self.request_principals)
                )
            });
            return false;
        }
        if !strings_field(&self.namespaces, r.source_namespace()) {
            note(trace, || {
                format!("{at}.namespaces: {:?} does not match {}", r.source_namespace(), show(&self.namespaces))
            });
            return false;
        }
        if !cidr_field(&self.ip_blocks, r.source_ip) {
            note(trace, || format!("{at}.ipBlocks: {:?} does not match {}", r.source_ip, show(&self.ip_blocks)));
            return false;
        }
        if !cidr_field(&self.remote_ip_blocks, r.remote_ip) {
            note(trace, || {
                format!("{at}.remoteIpBlocks: {:?} does not match {}", r.remote_ip, show(&self.remote_ip_blocks))
            });
            return false;
        }
        true
    }
}

impl Operation {
    fn matches(&self, req: &Prepared<'_>, bias: Bias, trace: &mut Trace<'_>, at: &str) -> bool {
        let r = &req.request;
        if !strings_field(&self.hosts, req.host.as_deref()) {
            note(trace, || format!("{at}.hosts: {:?} does not match {}", r.host, show(&self.hosts)));
            return false;
        }
        if !port_field(&self.ports, r.destination_port) {
            note(trace, || format!("{at}.ports: {:?} does not match {}", r.destination_port, show(&self.ports)));
            return false;
        }
        if !strings_field(&self.methods, Some(r.method)) {
            note(trace, || format!("{at}.methods: {} does not match {}", r.method, show(&self.methods)));
            return false;
        }
        let strict = |p: &PathValue| p.exact.matches(r.path);
        let loose = |p: &PathValue| p.exact.matches(r.path) || p.folded.matches(&req.folded_path);
        let ok = match bias {
            Bias::TowardDeny => self.paths.eval(loose, strict),
            Bias::TowardAllow => self.paths.eval(strict, loose),
            Bias::Neutral => self.paths.eval(strict, strict),
        };
        if !ok {
            note(trace, || format!("{at}.paths: {} does not match {}", r.path, show(&self.paths)));
        }
        ok
    }
}

impl fmt::Display for ConditionValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Strings(v) => f.write_str(&show(v)),
            Self::Cidrs(v) => f.write_str(&show(v)),
            Self::Ports(v) => f.write_str(&show(v)),
        }
    }
}

impl Condition {
    fn matches(&self, req: &Prepared<'_>, trace: &mut Trace<'_>, at: &str) -> bool {
        let r = &req.request;
        let ok = match (&self.key, &self.values) {
            (ConditionKey::Claim(path), ConditionValues::Strings(f)) => {
                multi_strings_field(f, &r.claim(path).map(claim_strings).unwrap_or_default())
            }
            (ConditionKey::Audiences, ConditionValues::Strings(f)) => {
                multi_strings_field(f, &r.claims.and_then(|c| c.get("aud")).map(claim_strings).unwrap_or_default())
            }
            (ConditionKey::Presenter, ConditionValues::Strings(f)) => {
                strings_field(f, r.claims.and_then(|c| c.get("azp")).and_then(|v| v.as_str()))
            }
            (ConditionKey::RequestPrincipal, ConditionValues::Strings(f)) => strings_field(f, r.request_principal),
            (ConditionKey::Header(name), ConditionValues::Strings(f)) => {
                strings_field(f, r.headers.header(name).as_deref())
            }
            (ConditionKey::SourcePrincipal, ConditionValues::Strings(f)) => strings_field(f, r.source_principal),
            (ConditionKey::SourceNamespace, ConditionValues::Strings(f)) => strings_field(f, r.source_namespace()),
            (ConditionKey::ConnectionSni, ConditionValues::Strings(f)) => strings_field(f, r.sni),
            (ConditionKey::SourceIp, ConditionValues::Cidrs(f)) => cidr_field(f, r.source_ip),
            (ConditionKey::RemoteIp, ConditionValues::Cidrs(f)) => cidr_field(f, r.remote_ip),
            (ConditionKey::DestinationIp, ConditionValues::Cidrs(f)) => cidr_field(f, r.destination_ip),
            (ConditionKey::DestinationPort, ConditionValues::Ports(f)) => port_field(f, r.destination_port),
            // The loader never pairs a key with the wrong value type; if it
            // ever did, the condition fails (closed) rather than matching.
            _ => false,
        };
        if !ok {
            note(trace, || format!("{at} {}: does not match {}", self.key, self.values));
        }
        ok
    }
}

impl Rule {
    /// Whether the rule matches, explaining a failure into `trace`.
    pub fn matches(&self, req: &Prepared<'_>, bias: Bias, mut trace: Trace<'_>) -> bool {
        if !self.from.is_empty() {
            let mut any = false;
            for (i, s) in self.from.iter().enumerate() {
                let at = if trace.is_some() { format!("from[{i}].source") } else { String::new() };
                if s.matches(req, &mut trace, &at) {
                    any = true;
                    break;
                }
            }
            if !any {
                return false;
            }
        }
        if !self.to.is_empty() {
            let mut any = false;
            for (i, o) in self.to.iter().enumerate() {
                let at = if trace.is_some() { format!("to[{i}].operation") } else { String::new() };
                if o.matches(req, bias, &mut trace, &at) {
                    any = true;
                    break;
                }
            }
            if !any {
                return false;
            }
        }
        for (i, c) in self.when.iter().enumerate() {
            let at = if trace.is_some() { format!("when[{i}]") } else { String::new() };
            if !c.matches(req, &mut trace, &at) {
                return false;
            }
        }
        true
    }
}
