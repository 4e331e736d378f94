//! Policy documents as written: YAML, several per file, Istio's
//! `AuthorizationPolicy` (`security.istio.io/v1` and `v1beta1`) and Ward's
//! `Role` and `RoleBinding` (`ward.dev/v1`). Every error names the file, the
//! line and the field.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_saphyr::Spanned;

use crate::matcher::{MatchError, PathMatch, StringMatch, parse_cidr};
use crate::model::{
    Action, Condition, ConditionKey, ConditionValues, Field, Kind, Operation, Origin, PathValue, Policy, PolicyId,
    Rule, Source,
};

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocError {
    /// File, as given to the loader.
    pub file: String,
    /// 1-based line (0 when the YAML parser could not tell).
    pub line: usize,
    /// Dotted path of the field (`spec.rules[0].to[0].operation.paths[1]`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for DocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        } else {
            write!(f, "{}:{}: {}: {}", self.file, self.line, self.field, self.message)
        }
    }
}

impl std::error::Error for DocError {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawDoc {
    api_version: Spanned<String>,
    kind: Spanned<String>,
    metadata: Spanned<RawMeta>,
    #[serde(default)]
    spec: Option<Spanned<RawSpec>>,
    /// Written by Kubernetes (`kubectl get -o yaml`); ignored.
    #[serde(default)]
    #[allow(dead_code)]
    status: Option<IgnoredAny>,
}

/// Kubernetes metadata: only name and namespace matter; the rest (labels,
/// annotations, uid, …) is accepted so exported documents load unchanged.
#[derive(Debug, Deserialize)]
struct RawMeta {
    name: Option<Spanned<String>>,
    #[serde(default)]
    namespace: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSpec {
    action: Option<Spanned<String>>,
    selector: Option<Spanned<RawSelector>>,
    rules: Option<Vec<Spanned<RawRule>>>,
    provider: Option<Spanned<RawProvider>>,
    target_ref: Option<Spanned<IgnoredAny>>,
    target_refs: Option<Spanned<IgnoredAny>>,
    // Role
    permissions: Option<Vec<Spanned<RawPermission>>>,
    // RoleBinding
    roles: Option<Vec<Spanned<String>>>,
    subjects: Option<Vec<Spanned<RawSubject>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSelector {
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    name: Spanned<String>,
}

type Values = Option<Vec<Spanned<String>>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    from: Option<Vec<Spanned<RawFrom>>>,
    #[serde(default)]
    to: Option<Vec<Spanned<RawTo>>>,
    #[serde(default)]
    when: Option<Vec<Spanned<RawCondition>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFrom {
    source: Spanned<RawSource>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSource {
    principals: Values,
    not_principals: Values,
    request_principals: Values,
    not_request_principals: Values,
    namespaces: Values,
    not_namespaces: Values,
    ip_blocks: Values,
    not_ip_blocks: Values,
    remote_ip_blocks: Values,
    not_remote_ip_blocks: Values,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTo {
    operation: Spanned<RawOperation>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawOperation {
    hosts: Values,
    not_hosts: Values,
    ports: Values,
    not_ports: Values,
    methods: Values,
    not_methods: Values,
    paths: Values,
    not_paths: Values,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawCondition {
    key: Spanned<String>,
    values: Values,
    not_values: Values,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPermission {
    methods: Values,
    paths: Values,
    hosts: Values,
    ports: Values,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSubject {
    principal: Option<Spanned<String>>,
    request_principal: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
}

/// A `Role`: permissions to be granted by bindings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// Namespace and name.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Each permission is one operation.
    pub permissions: Vec<Operation>,
    /// Where it came from.
    pub origin: Origin,
}

/// A `RoleBinding` before its roles are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Role names with the line each was written on.
    pub roles: Vec<(String, usize, String)>,
    /// Subjects as rules without operations.
    pub subjects: Vec<Rule>,
    /// `selector.matchLabels`.
    pub selector: BTreeMap<String, String>,
    /// Where it came from.
    pub origin: Origin,
}

/// What one file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// `AuthorizationPolicy` documents.
    pub policies: Vec<Policy>,
    /// `Role` documents.
    pub roles: Vec<Role>,
    /// `RoleBinding` documents.
    pub bindings: Vec<Binding>,
}

/// Options the loader needs from the configuration.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Namespace for documents that name none.
    pub default_namespace: String,
    /// Claim that holds a caller's groups, as a path of names.
    pub groups_claim: Vec<String>,
    /// External authorizers CUSTOM policies may name.
    pub providers: Vec<String>,
}

struct Ctx<'a> {
    file: &'a str,
    errors: Vec<DocError>,
}

fn line<T>(s: &Spanned<T>) -> usize {
    usize::try_from(s.referenced.line()).unwrap_or(0)
}

impl Ctx<'_> {
    fn error(&mut self, line: usize, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(DocError { file: self.file.to_owned(), line, field: field.into(), message: message.into() });
    }

    fn parsed<T>(
        &mut self,
        values: &Values,
        field: &str,
        parent_line: usize,
        parse: impl Fn(&str) -> Result<T, MatchError>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        let Some(list) = values else { return out };
        if list.is_empty() {
            // An empty list is almost always a mistake; and for a `not*` field
            // it would silently match everything.
            self.error(parent_line, field, "an empty list; remove the field or give values");
        }
        for (i, v) in list.iter().enumerate() {
            match parse(&v.value) {
                Ok(m) => out.push(m),
                Err(e) => self.error(line(v), format!("{field}[{i}]"), e.0),
            }
        }
        out
    }

    fn field<T>(
        &mut self,
        (pos, neg): (&Values, &Values),
        (at, line): (&str, usize),
        names: (&str, &str),
        parse: impl Fn(&str) -> Result<T, MatchError> + Copy,
    ) -> Field<T> {
        Field {
            values: self.parsed(pos, &format!("{at}.{}", names.0), line, parse),
            not_values: self.parsed(neg, &format!("{at}.{}", names.1), line, parse),
        }
    }

    fn source(&mut self, s: &Spanned<RawSource>, at: &str) -> Source {
        let r = &s.value;
        let out = Source {
            principals: self.field(
                (&r.principals, &r.not_principals),
                (at, line(s)),
                ("principals", "notPrincipals"),
                StringMatch::parse,
            ),
            request_principals: self.field(
                (&r.request_principals, &r.not_request_principals),
                (at, line(s)),
                ("requestPrincipals", "notRequestPrincipals"),
                StringMatch::parse,
            ),
            namespaces: self.field(
                (&r.namespaces, &r.not_namespaces),
                (at, line(s)),
                ("namespaces", "notNamespaces"),
                StringMatch::parse,
            ),
            ip_blocks: self.field(
                (&r.ip_blocks, &r.not_ip_blocks),
                (at, line(s)),
                ("ipBlocks", "notIpBlocks"),
                parse_cidr,
            ),
            remote_ip_blocks: self.field(
                (&r.remote_ip_blocks, &r.not_remote_ip_blocks),
                (at, line(s)),
                ("remoteIpBlocks", "notRemoteIpBlocks"),
                parse_cidr,
            ),
        };
        if !(out.principals.is_set()
            || out.request_principals.is_set()
            || out.namespaces.is_set()
            || out.ip_blocks.is_set()
            || out.remote_ip_blocks.is_set())
        {
            self.error(line(s), at, "an empty source matches nothing useful; set at least one field");
        }
        out
    }

    fn operation(&mut self, o: &Spanned<RawOperation>, at: &str) -> Operation {
        let r = &o.value;
        let op = self.operation_fields(
            &r.hosts,
            &r.not_hosts,
            &r.ports,
            &r.not_ports,
            &r.methods,
            &r.not_methods,
            &r.paths,
            &r.not_paths,
            at,
            line(o),
        );
        if !(op.hosts.is_set() || op.ports.is_set() || op.methods.is_set() || op.paths.is_set()) {
            self.error(line(o), at, "an empty operation; set at least one field");
        }
        op
    }

    #[allow(clippy::too_many_arguments)]
    fn operation_fields(
        &mut self,
        hosts: &Values,
        not_hosts: &Values,
        ports: &Values,
        not_ports: &Values,
        methods: &Values,
        not_methods: &Values,
        paths: &Values,
        not_paths: &Values,
        at: &str,
        line_no: usize,
    ) -> Operation {
        let host = |s: &str| StringMatch::parse(s).map(|m| m.to_ascii_lowercase());
        Operation {
            hosts: self.field((hosts, not_hosts), (at, line_no), ("hosts", "notHosts"), host),
            ports: self.field((ports, not_ports), (at, line_no), ("ports", "notPorts"), parse_port),
            methods: self.field((methods, not_methods), (at, line_no), ("methods", "notMethods"), StringMatch::parse),
            paths: self.field((paths, not_paths), (at, line_no), ("paths", "notPaths"), |s| {
                PathMatch::parse(s).map(PathValue::new)
            }),
        }
    }

    fn condition(&mut self, c: &Spanned<RawCondition>, at: &str) -> Option<Condition> {
        let r = &c.value;
        let key = match parse_key(&r.key.value) {
            Ok(k) => k,
            Err(e) => {
                self.error(line(&r.key), format!("{at}.key"), e);
                return None;
            }
        };
        if r.values.is_none() && r.not_values.is_none() {
            self.error(line(c), at, "a condition needs `values` or `notValues`");
            return None;
        }
        let names = ("values", "notValues");
        let values = match key {
            ConditionKey::SourceIp | ConditionKey::RemoteIp | ConditionKey::DestinationIp => {
                ConditionValues::Cidrs(self.field((&r.values, &r.not_values), (at, line(c)), names, parse_cidr))
            }
            ConditionKey::DestinationPort => {
                ConditionValues::Ports(self.field((&r.values, &r.not_values), (at, line(c)), names, parse_port))
            }
            _ => ConditionValues::Strings(self.field(
                (&r.values, &r.not_values),
                (at, line(c)),
                names,
                StringMatch::parse,
            )),
        };
        Some(Condition { key, values })
    }

    fn rule(&mut self, r: &Spanned<RawRule>, at: &str) -> Rule {
        let raw = &r.value;
        let mut rule = Rule::default();
        for (i, f) in raw.from.iter().flatten().enumerate() {
            rule.from.push(self.source(&f.value.source, &format!("{at}.from[{i}].source")));
        }
        for (i, t) in raw.to.iter().flatten().enumerate() {
            rule.to.push(self.operation(&t.value.operation, &format!("{at}.to[{i}].operation")));
        }
        for (i, c) in raw.when.iter().flatten().enumerate() {
            if let Some(c) = self.condition(c, &format!("{at}.when[{i}]")) {
                rule.when.push(c);
            }
        }
        for (name, list_empty) in [
            ("from", raw.from.as_ref().is_some_and(Vec::is_empty)),
            ("to", raw.to.as_ref().is_some_and(Vec::is_empty)),
            ("when", raw.when.as_ref().is_some_and(Vec::is_empty)),
        ] {
            if list_empty {
                self.error(line(r), format!("{at}.{name}"), "an empty list; remove the field or give entries");
            }
        }
        rule
    }
}

fn parse_port(s: &str) -> Result<u16, MatchError> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 && s.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => Err(MatchError(format!("`{s}` is not a port (1-65535)"))),
    }
}

/// Parse a `when` key in Istio's syntax.
fn parse_key(key: &str) -> Result<ConditionKey, String> {
    let bracketed = |rest: &str| -> Result<Vec<String>, String> {
        let mut names = Vec::new();
        let mut rest = rest;
        while !rest.is_empty() {
            let inner = rest.strip_prefix('[').ok_or_else(|| format!("`{key}`: expected `[name]`"))?;
            let end = inner.find(']').ok_or_else(|| format!("`{key}`: missing `]`"))?;
            let name = inner.get(..end).unwrap_or_default();
            if name.is_empty() || name.contains('[') {
                return Err(format!("`{key}`: empty or nested bracket"));
            }
            names.push(name.to_owned());
            rest = inner.get(end + 1..).unwrap_or_default();
        }
        if names.is_empty() {
            return Err(format!("`{key}`: a name in brackets is required"));
        }
        Ok(names)
    };
    if let Some(rest) = key.strip_prefix("request.auth.claims") {
        return bracketed(rest).map(ConditionKey::Claim);
    }
    if let Some(rest) = key.strip_prefix("request.headers") {
        let names = bracketed(rest)?;
        return match names.as_slice() {
            [one] => Ok(ConditionKey::Header(one.to_ascii_lowercase())),
            _ => Err(format!("`{key}`: one header name expected")),
        };
    }
    Ok(match key {
        "request.auth.principal" => ConditionKey::RequestPrincipal,
        "request.auth.audiences" => ConditionKey::Audiences,
        "request.auth.presenter" => ConditionKey::Presenter,
        "source.ip" => ConditionKey::SourceIp,
        "remote.ip" => ConditionKey::RemoteIp,
        "source.principal" => ConditionKey::SourcePrincipal,
        "source.namespace" => ConditionKey::SourceNamespace,
        "destination.ip" => ConditionKey::DestinationIp,
        "destination.port" => ConditionKey::DestinationPort,
        "connection.sni" => ConditionKey::ConnectionSni,
        other => return Err(format!("unknown key `{other}`")),
    })
}

/// Parse one file's text. `file` is used in error messages.
///
/// # Errors
/// Every problem found, each with file, line and field.
pub fn parse_file(file: &str, text: &str, options: &LoadOptions) -> Result<Parsed, Vec<DocError>> {
    let docs: Vec<Option<RawDoc>> = match serde_saphyr::from_multiple(text) {
        Ok(d) => d,
        Err(e) => {
            let line = e.location().map_or(0, |l| usize::try_from(l.line()).unwrap_or(0));
            return Err(vec![DocError {
                file: file.to_owned(),
                line,
                field: String::new(),
                message: e.without_snippet().to_string().lines().next().unwrap_or("invalid YAML").to_owned(),
            }]);
        }
    };
    let mut ctx = Ctx { file, errors: Vec::new() };
    let mut out = Parsed::default();
    for (d, doc) in docs.iter().enumerate() {
        let Some(doc) = doc else { continue };
        let here = |f: &str| if docs.len() > 1 { format!("[document {d}].{f}") } else { f.to_owned() };
        let origin = Origin { file: file.to_owned(), line: line(&doc.api_version).min(line(&doc.kind)) };
        let Some(name) = doc.metadata.value.name.as_ref().filter(|n| !n.value.is_empty()) else {
            ctx.error(line(&doc.metadata), here("metadata.name"), "a name is required");
            continue;
        };
        let namespace = doc
            .metadata
            .value
            .namespace
            .as_ref()
            .map_or_else(|| options.default_namespace.clone(), |n| n.value.clone());
        let empty = Spanned::new(RawSpec::default(), doc.kind.referenced, doc.kind.defined);
        let spec = doc.spec.as_ref().unwrap_or(&empty);
        let api = doc.api_version.value.as_str();
        match (api, doc.kind.value.as_str()) {
            ("security.istio.io/v1" | "security.istio.io/v1beta1", "AuthorizationPolicy") => {
                if let Some(p) = authorization_policy(&mut ctx, spec, &here, options) {
                    out.policies.push(Policy {
                        id: PolicyId { kind: Kind::AuthorizationPolicy, namespace, name: name.value.clone() },
                        origin,
                        ..p
                    });
                }
            }
            ("ward.dev/v1", "Role") => {
                let permissions = role(&mut ctx, spec, &here);
                out.roles.push(Role { namespace, name: name.value.clone(), permissions, origin });
            }
            ("ward.dev/v1", "RoleBinding") => {
                if let Some(b) = binding(&mut ctx, spec, &here, options) {
                    out.bindings.push(Binding { namespace, name: name.value.clone(), origin, ..b });
                }
            }
            (_, kind @ ("AuthorizationPolicy" | "Role" | "RoleBinding")) => ctx.error(
                line(&doc.api_version),
                here("apiVersion"),
                format!(
                    "`{api}` is not a supported apiVersion for {kind} (use {})",
                    if kind == "AuthorizationPolicy" { "security.istio.io/v1 or v1beta1" } else { "ward.dev/v1" }
                ),
            ),
            (_, kind) => ctx.error(
                line(&doc.kind),
                here("kind"),
                format!("unsupported kind `{kind}` (AuthorizationPolicy, Role or RoleBinding)"),
            ),
        }
    }
    if ctx.errors.is_empty() { Ok(out) } else { Err(ctx.errors) }
}

fn only(ctx: &mut Ctx<'_>, spec: &RawSpec, here: &dyn Fn(&str) -> String, kind: &str, allowed: &[&str]) {
    let present: [(&str, Option<usize>); 9] = [
        ("action", spec.action.as_ref().map(line)),
        ("selector", spec.selector.as_ref().map(line)),
        ("rules", spec.rules.as_ref().map(|r| r.first().map_or(0, line))),
        ("provider", spec.provider.as_ref().map(line)),
        ("targetRef", spec.target_ref.as_ref().map(line)),
        ("targetRefs", spec.target_refs.as_ref().map(line)),
        ("permissions", spec.permissions.as_ref().map(|r| r.first().map_or(0, line))),
        ("roles", spec.roles.as_ref().map(|r| r.first().map_or(0, line))),
        ("subjects", spec.subjects.as_ref().map(|r| r.first().map_or(0, line))),
    ];
    for (name, at) in present {
        if let Some(l) = at
            && !allowed.contains(&name)
        {
            let why = if name.starts_with("targetRef") {
                "is not supported by Ward (it selects Kubernetes Gateway API resources); use `selector`".to_owned()
            } else {
                format!("is not a field of {kind}")
            };
            ctx.error(l, here(&format!("spec.{name}")), why);
        }
    }
}

fn authorization_policy(
    ctx: &mut Ctx<'_>,
    spec: &Spanned<RawSpec>,
    here: &dyn Fn(&str) -> String,
    options: &LoadOptions,
) -> Option<Policy> {
    let s = &spec.value;
    let before = ctx.errors.len();
    only(ctx, s, here, "AuthorizationPolicy", &["action", "selector", "rules", "provider"]);
    let action = match s.action.as_ref().map(|a| a.value.as_str()) {
        None | Some("ALLOW") => Action::Allow,
        Some("DENY") => Action::Deny,
        Some("AUDIT") => Action::Audit,
        Some("CUSTOM") => Action::Custom,
        Some(other) => {
            let l = s.action.as_ref().map_or(0, line);
            ctx.error(l, here("spec.action"), format!("unknown action `{other}` (ALLOW, DENY, AUDIT or CUSTOM)"));
            Action::Allow
        }
    };
    let provider = s.provider.as_ref().map(|p| p.value.name.value.clone());
    match (action, &provider) {
        (Action::Custom, None) => ctx.error(line(spec), here("spec.provider"), "a CUSTOM policy needs `provider.name`"),
        (Action::Custom, Some(name)) if !options.providers.contains(name) => ctx.error(
            s.provider.as_ref().map_or(0, line),
            here("spec.provider.name"),
            format!(
                "no external authorizer named `{name}` is configured ([[policy.authorizers]]); \
                 a CUSTOM policy cannot be enforced without one"
            ),
        ),
        (Action::Custom, Some(_)) | (_, None) => {}
        (_, Some(_)) => ctx.error(
            s.provider.as_ref().map_or(0, line),
            here("spec.provider"),
            "`provider` is only valid with action CUSTOM",
        ),
    }
    let mut rules = Vec::new();
    for (i, r) in s.rules.iter().flatten().enumerate() {
        rules.push(ctx.rule(r, &here(&format!("spec.rules[{i}]"))));
    }
    if action == Action::Custom && rules.is_empty() && s.rules.is_some() {
        ctx.error(line(spec), here("spec.rules"), "a CUSTOM policy with an empty rule list matches nothing");
    }
    let selector = s.selector.as_ref().map(|sel| sel.value.match_labels.clone()).unwrap_or_default();
    (ctx.errors.len() == before).then(|| Policy {
        id: PolicyId { kind: Kind::AuthorizationPolicy, namespace: String::new(), name: String::new() },
        action,
        provider,
        selector,
        rules,
        origin: Origin::default(),
    })
}

fn role(ctx: &mut Ctx<'_>, spec: &Spanned<RawSpec>, here: &dyn Fn(&str) -> String) -> Vec<Operation> {
    let s = &spec.value;
    only(ctx, s, here, "Role", &["permissions"]);
    let mut out = Vec::new();
    let Some(perms) = s.permissions.as_ref().filter(|p| !p.is_empty()) else {
        ctx.error(line(spec), here("spec.permissions"), "a role needs at least one permission");
        return out;
    };
    for (i, p) in perms.iter().enumerate() {
        let r = &p.value;
        let at = here(&format!("spec.permissions[{i}]"));
        let op =
            ctx.operation_fields(&r.hosts, &None, &r.ports, &None, &r.methods, &None, &r.paths, &None, &at, line(p));
        if !(op.hosts.is_set() || op.ports.is_set() || op.methods.is_set() || op.paths.is_set()) {
            ctx.error(line(p), at, "an empty permission would grant everything; write `paths: [\"*\"]` if you mean it");
        }
        out.push(op);
    }
    out
}

fn binding(
    ctx: &mut Ctx<'_>,
    spec: &Spanned<RawSpec>,
    here: &dyn Fn(&str) -> String,
    options: &LoadOptions,
) -> Option<Binding> {
    let s = &spec.value;
    let before = ctx.errors.len();
    only(ctx, s, here, "RoleBinding", &["roles", "subjects", "selector"]);
    let roles: Vec<(String, usize, String)> = s
        .roles
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| (r.value.clone(), line(r), here(&format!("spec.roles[{i}]"))))
        .collect();
    if roles.is_empty() {
        ctx.error(line(spec), here("spec.roles"), "a binding needs at least one role");
    }
    let mut subjects = Vec::new();
    for (i, subject) in s.subjects.iter().flatten().enumerate() {
        let at = here(&format!("spec.subjects[{i}]"));
        let r = &subject.value;
        let given = [&r.principal, &r.request_principal, &r.group];
        if given.iter().filter(|g| g.is_some()).count() != 1 {
            ctx.error(line(subject), at, "give exactly one of `principal`, `requestPrincipal`, `group`");
            continue;
        }
        let parse = |ctx: &mut Ctx<'_>, v: &Spanned<String>, field: &str| match StringMatch::parse(&v.value) {
            Ok(m) => Some(m),
            Err(e) => {
                ctx.error(line(v), format!("{at}.{field}"), e.0);
                None
            }
        };
        let rule = if let Some(p) = &r.principal {
            parse(ctx, p, "principal").map(|m| Rule {
                from: vec![Source { principals: Field { values: vec![m], not_values: vec![] }, ..Source::default() }],
                ..Rule::default()
            })
        } else if let Some(p) = &r.request_principal {
            parse(ctx, p, "requestPrincipal").map(|m| Rule {
                from: vec![Source {
                    request_principals: Field { values: vec![m], not_values: vec![] },
                    ..Source::default()
                }],
                ..Rule::default()
            })
        } else if let Some(g) = &r.group {
            parse(ctx, g, "group").map(|m| Rule {
                when: vec![Condition {
                    key: ConditionKey::Claim(options.groups_claim.clone()),
                    values: ConditionValues::Strings(Field { values: vec![m], not_values: vec![] }),
                }],
                ..Rule::default()
            })
        } else {
            None
        };
        subjects.extend(rule);
    }
    if s.subjects.as_ref().is_none_or(Vec::is_empty) {
        ctx.error(line(spec), here("spec.subjects"), "a binding needs at least one subject");
    }
    let selector = s.selector.as_ref().map(|sel| sel.value.match_labels.clone()).unwrap_or_default();
    (ctx.errors.len() == before).then(|| Binding {
        namespace: String::new(),
        name: String::new(),
        roles,
        subjects,
        selector,
        origin: Origin::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> LoadOptions {
        LoadOptions { default_namespace: "default".into(), groups_claim: vec!["groups".into()], providers: vec![] }
    }

    fn errors(text: &str) -> Vec<String> {
        parse_file("p.yaml", text, &opts()).unwrap_err().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn parses_an_istio_policy_with_every_field() {
        let text = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: httpbin
  namespace: foo
  labels: {team: a}
  uid: 1234
spec:
  selector:
    matchLabels: {app: httpbin}
  action: DENY
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/sleep"]
        notPrincipals: ["x*"]
        requestPrincipals: ["*"]
        notRequestPrincipals: ["https://evil/*"]
        namespaces: ["test"]
        notNamespaces: ["prod"]
        ipBlocks: ["10.0.0.0/8", "2001:db8::/32"]
        notIpBlocks: ["10.1.0.0/16"]
        remoteIpBlocks: ["192.0.2.1"]
        notRemoteIpBlocks: ["192.0.2.0/24"]
    to:
    - operation:
        hosts: ["Example.COM", "*.example.com"]
        notHosts: ["admin.example.com"]
        ports: ["8443", 9443]
        notPorts: ["1"]
        methods: ["GET", "HEAD"]
        notMethods: ["DELETE"]
        paths: ["/info*", "/api/{*}/items", "/files/{**}"]
        notPaths: ["/info/private"]
    when:
    - key: request.auth.claims[iss]
      values: ["https://accounts.google.com"]
    - key: request.auth.claims[realm_access][roles]
      notValues: ["banned"]
    - key: request.headers[X-Team]
      values: ["blue"]
    - key: source.ip
      values: ["10.0.0.0/8"]
    - key: destination.port
      values: ["8443"]
    - key: connection.sni
      values: ["*.example.com"]
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: allow-nothing}
spec: {}
"#;
        let parsed = parse_file("p.yaml", text, &opts()).unwrap();
        assert_eq!(parsed.policies.len(), 2);
        let p = &parsed.policies[0];
        assert_eq!(p.id.to_string(), "foo/httpbin");
        assert_eq!(p.action, Action::Deny);
        assert_eq!(p.selector.get("app").map(String::as_str), Some("httpbin"));
        assert_eq!(p.origin.line, 2);
        let r = &p.rules[0];
        assert_eq!(r.from[0].ip_blocks.values.len(), 2);
        assert_eq!(r.to[0].hosts.values[0], StringMatch::Exact("example.com".into()), "hosts are lower-cased");
        assert_eq!(r.to[0].ports.values, vec![8443, 9443]);
        assert_eq!(r.when.len(), 6);
        assert_eq!(r.when[1].key, ConditionKey::Claim(vec!["realm_access".into(), "roles".into()]));
        assert_eq!(r.when[2].key, ConditionKey::Header("x-team".into()));
        let nothing = &parsed.policies[1];
        assert_eq!(
            (nothing.id.to_string(), nothing.action, nothing.rules.len()),
            ("default/allow-nothing".into(), Action::Allow, 0)
        );
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let e = errors(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x}\nspec:\n  rules:\n  - to:\n    - operation:\n        paths: [\"/ok\", \"/a*b\"]\n",
        );
        assert_eq!(
            e,
            vec!["p.yaml:8: spec.rules[0].to[0].operation.paths[1]: `/a*b`: `*` may only stand first, last, or alone"]
        );
        let e = errors(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x}\nspec:\n  rules:\n  - from:\n    - source:\n        ipBlock: [\"1.2.3.4\"]\n",
        );
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("p.yaml:8:") && e[0].contains("ipBlock"), "{e:?}");
        let e = errors(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x}\nspec:\n  action: MAYBE\n",
        );
        assert_eq!(e, vec!["p.yaml:5: spec.action: unknown action `MAYBE` (ALLOW, DENY, AUDIT or CUSTOM)"]);
        let e = errors(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x}\nspec:\n  rules:\n  - when:\n    - key: request.auth.claim[x]\n      values: [a]\n",
        );
        assert_eq!(e, vec!["p.yaml:7: spec.rules[0].when[0].key: unknown key `request.auth.claim[x]`"]);
        let e = errors("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n");
        assert_eq!(e, vec!["p.yaml:2: kind: unsupported kind `ConfigMap` (AuthorizationPolicy, Role or RoleBinding)"]);
        let e = errors("a: [\n");
        assert!(e[0].starts_with("p.yaml:"), "{e:?}");
    }

    #[test]
    fn refuses_what_would_silently_widen_a_policy() {
        let base = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x}\nspec:\n";
        for (spec, want) in [
            ("  action: CUSTOM\n  provider: {name: opa}\n  rules: [{}]\n", "no external authorizer named `opa`"),
            ("  action: CUSTOM\n  rules: [{}]\n", "needs `provider.name`"),
            ("  targetRefs: [{kind: Gateway, name: g}]\n", "not supported by Ward"),
            (
                "  rules:\n  - to:\n    - operation:\n        notPaths: []\n",
                "p.yaml:8: spec.rules[0].to[0].operation.notPaths: an empty list",
            ),
            ("  rules:\n  - from:\n    - source: {}\n", "an empty source"),
            ("  rules:\n  - to:\n    - operation: {}\n", "an empty operation"),
            ("  rules:\n  - when:\n    - key: source.ip\n", "needs `values` or `notValues`"),
            ("  rules:\n  - when:\n    - key: source.ip\n      values: [\"10.0.0.300\"]\n", "not an IP address"),
            ("  rules:\n  - to:\n    - operation:\n        ports: [\"http\"]\n", "not a port"),
            ("  rules:\n  - to:\n    - operation:\n        paths: [\"\"]\n", "empty value"),
            ("  permissions: [{paths: [\"/\"]}]\n", "not a field of AuthorizationPolicy"),
        ] {
            let e = errors(&format!("{base}{spec}"));
            assert!(e.iter().any(|m| m.contains(want)), "{spec}: {e:?}");
        }
        let mut o = opts();
        o.providers = vec!["opa".into()];
        let ok =
            parse_file("p.yaml", &format!("{base}  action: CUSTOM\n  provider: {{name: opa}}\n  rules: [{{}}]\n"), &o);
        assert_eq!(ok.unwrap().policies[0].provider.as_deref(), Some("opa"));
    }

    #[test]
    fn roles_and_bindings() {
        let text = r#"
apiVersion: ward.dev/v1
kind: Role
metadata: {name: reader}
spec:
  permissions:
  - methods: [GET]
    paths: ["/api/*"]
---
apiVersion: ward.dev/v1
kind: RoleBinding
metadata: {name: readers, namespace: shop}
spec:
  roles: [reader]
  subjects:
  - group: engineering
  - requestPrincipal: "https://idp/alice"
  - principal: "cluster.local/ns/shop/sa/web"
"#;
        let p = parse_file("r.yaml", text, &opts()).unwrap();
        assert_eq!(p.roles[0].permissions.len(), 1);
        let b = &p.bindings[0];
        assert_eq!((b.namespace.as_str(), b.roles[0].0.as_str(), b.subjects.len()), ("shop", "reader", 3));
        let e = errors("apiVersion: ward.dev/v1\nkind: Role\nmetadata: {name: r}\nspec:\n  permissions:\n  - {}\n");
        assert!(e[0].contains("would grant everything"), "{e:?}");
        let e = errors(
            "apiVersion: ward.dev/v1\nkind: RoleBinding\nmetadata: {name: b}\nspec:\n  roles: [r]\n  subjects:\n  - {group: a, principal: b}\n",
        );
        assert!(e[0].starts_with("p.yaml:7: spec.subjects[0]: give exactly one"), "{e:?}");
    }
}
