//! The policy set: documents compiled per target (route) into indexes, and
//! the decision in Istio's order — CUSTOM, then DENY, then ALLOW — with
//! Ward's default deny where Istio would allow because no ALLOW policy exists.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use ward_core::{Effect, ReasonCode};

use crate::doc::{self, DocError, LoadOptions, Parsed};
use crate::matcher::IndexKey;
use crate::model::{Action, Bias, Kind, Policy, PolicyId, Prepared, Rule};
use crate::request::Request;

/// What happens when no ALLOW policy applies to a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    /// Deny (Ward's default: zero trust).
    #[default]
    Deny,
    /// Allow (Istio's behaviour; must be chosen explicitly).
    Allow,
}

impl DefaultAction {
    /// The configuration spellings (`ward.toml`, test files).
    pub const NAMES: &'static [(&'static str, Self)] = &[("deny", Self::Deny), ("allow", Self::Allow)];
}

/// How policies are scoped and compiled.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The gateway's own namespace: policies there apply to it.
    pub namespace: String,
    /// Policies in this namespace apply everywhere (Istio's root namespace).
    pub root_namespace: String,
    /// When no ALLOW policy applies.
    pub default_action: DefaultAction,
    /// The claim holding group names for `RoleBinding` group subjects.
    pub groups_claim: Vec<String>,
    /// Names of configured external authorizers (for CUSTOM).
    pub authorizers: Vec<String>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            namespace: "default".into(),
            root_namespace: "ward-system".into(),
            default_action: DefaultAction::Deny,
            groups_claim: vec!["groups".into()],
            authorizers: Vec::new(),
        }
    }
}

impl EngineConfig {
    fn load_options(&self) -> LoadOptions {
        LoadOptions {
            default_namespace: self.namespace.clone(),
            groups_claim: self.groups_claim.clone(),
            providers: self.authorizers.clone(),
        }
    }
}

/// Something policies can select: a gateway route with its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Route name.
    pub name: String,
    /// Labels `selector.matchLabels` is matched against.
    pub labels: BTreeMap<String, String>,
}

/// A rule by position: policy index in the set and rule index in the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleRef {
    /// Index into [`PolicySet::policies`].
    pub policy: u32,
    /// Index into the policy's rules.
    pub rule: u32,
}

/// The outcome of authorization for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Allow or deny (before any CUSTOM check).
    pub effect: Effect,
    /// Why.
    pub reason: ReasonCode,
    /// The rule that decided (DENY or ALLOW), if one did.
    pub decided_by: Option<RuleRef>,
    /// An AUDIT rule that matched: the request is marked for the audit log.
    pub audit: Option<RuleRef>,
    /// A CUSTOM rule that matched: the external authorizer must also allow.
    pub custom: Option<RuleRef>,
}

/// A compiled, immutable set of policies with its digest.
#[derive(Debug)]
pub struct PolicySet {
    policies: Vec<Policy>,
    targets: Vec<TargetPolicies>,
    target_names: HashMap<String, usize>,
    digest: Arc<str>,
    default_action: DefaultAction,
    /// The namespaces whose policies apply (the gateway's and the root).
    namespaces: [String; 2],
}

#[derive(Debug, Default)]
struct TargetPolicies {
    custom: Index,
    deny: Index,
    allow: Index,
    audit: Index,
    /// Whether any ALLOW policy selects this target.
    has_allow: bool,
    /// Policies that select this target, in evaluation order.
    selected: Vec<u32>,
}

/// Candidate rules by path: exact paths, path prefixes, and the rest.
#[derive(Debug, Default)]
struct Index {
    rules: Vec<RuleRef>,
    bias: Option<Bias>,
    exact: HashMap<Box<str>, Vec<u32>>,
    prefix: HashMap<Box<str>, Vec<u32>>,
    prefix_lens: Vec<usize>,
    always: Vec<u32>,
}

impl Index {
    fn new(bias: Bias) -> Self {
        Self { bias: Some(bias), ..Self::default() }
    }

    fn folded(&self) -> bool {
        self.bias == Some(Bias::TowardDeny)
    }

    fn add(&mut self, r: RuleRef, rule: &Rule) {
        let Ok(id) = u32::try_from(self.rules.len()) else { return };
        self.rules.push(r);
        let folded = self.folded();
        let mut keys: Vec<(bool, String)> = Vec::new();
        let mut anywhere = rule.to.is_empty();
        for op in &rule.to {
            if op.paths.values.is_empty() {
                anywhere = true;
                break;
            }
            for p in &op.paths.values {
                let m = if folded { &p.folded } else { &p.exact };
                match m.index_key() {
                    IndexKey::Exact(k) => keys.push((true, k.to_owned())),
                    IndexKey::Prefix(k) => keys.push((false, k.to_owned())),
                    IndexKey::Any => anywhere = true,
                }
            }
        }
        if anywhere {
            self.always.push(id);
            return;
        }
        for (exact, key) in keys {
            let map = if exact { &mut self.exact } else { &mut self.prefix };
            let list = map.entry(key.into_boxed_str()).or_default();
            if list.last() != Some(&id) {
                list.push(id);
            }
        }
    }

    fn finish(&mut self) {
        let mut lens: Vec<usize> = self.prefix.keys().map(|k| k.len()).collect();
        lens.sort_unstable();
        lens.dedup();
        self.prefix_lens = lens;
    }

    /// The first rule (in policy order) that matches.
    fn first_match(&self, policies: &[Policy], req: &Prepared<'_>) -> Option<RuleRef> {
        let bias = self.bias?;
        if self.rules.is_empty() {
            return None;
        }
        let path: &str = if self.folded() { &req.folded_path } else { req.request.path };
        let mut candidates: Vec<u32> = Vec::with_capacity(8);
        candidates.extend_from_slice(&self.always);
        if let Some(ids) = self.exact.get(path) {
            candidates.extend_from_slice(ids);
        }
        for &len in &self.prefix_lens {
            if len > path.len() {
                break;
            }
            if let Some(ids) = path.get(..len).and_then(|p| self.prefix.get(p)) {
                candidates.extend_from_slice(ids);
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        candidates
            .into_iter()
            .filter_map(|id| self.rules.get(id as usize).copied())
            .find(|r| rule_of(policies, *r).is_some_and(|rule| rule.matches(req, bias, None)))
    }
}

fn rule_of(policies: &[Policy], r: RuleRef) -> Option<&Rule> {
    policies.get(r.policy as usize)?.rules.get(r.rule as usize)
}

/// The explanation of one decision, for `ward policy explain`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Explanation {
    /// `allow` or `deny`.
    pub decision: Effect,
    /// The reason code.
    pub reason: ReasonCode,
    /// `namespace/name` and rule of the deciding policy.
    pub decided_by: Option<String>,
    /// The AUDIT policy that marked the request.
    pub audited_by: Option<String>,
    /// The CUSTOM policy that sends the request to an external authorizer.
    pub custom: Option<String>,
    /// The policy bundle digest.
    pub digest: String,
    /// Every policy that applies to the target, and every rule's outcome.
    pub policies: Vec<PolicyTrace>,
    /// Policies loaded but not applying to this target, and why.
    pub not_applicable: Vec<String>,
}

/// One policy's part in an explanation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PolicyTrace {
    /// `namespace/name`.
    pub policy: String,
    /// Its action.
    pub action: Action,
    /// File and line.
    pub origin: String,
    /// Each rule: matched, or the first reason it did not.
    pub rules: Vec<RuleTrace>,
}

/// One rule's outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuleTrace {
    /// Rule index.
    pub rule: usize,
    /// Whether it matched.
    pub matched: bool,
    /// Why not.
    pub reasons: Vec<String>,
}

/// Policies in a directory, read and parsed, with the bundle digest.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// Per file, in file-name order.
    pub files: Vec<Parsed>,
    /// `sha256:` over every file name and content.
    pub digest: String,
}

/// Read every `*.yaml` / `*.yml` file under `dir` (recursively, sorted,
/// hidden entries skipped) and parse it.
///
/// # Errors
/// Every problem in every file (or the directory itself).
pub fn load_dir(dir: &Path, config: &EngineConfig) -> Result<Loaded, Vec<DocError>> {
    let files = policy_files(dir).map_err(|e| {
        vec![DocError { file: dir.display().to_string(), line: 0, field: String::new(), message: e.to_string() }]
    })?;
    let mut texts = Vec::with_capacity(files.len());
    let mut errors = Vec::new();
    for rel in &files {
        match std::fs::read_to_string(dir.join(rel)) {
            Ok(t) => texts.push((rel.clone(), t)),
            Err(e) => {
                errors.push(DocError { file: rel.clone(), line: 0, field: String::new(), message: e.to_string() })
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    load_texts(&texts, config)
}

/// Parse named texts as one bundle (what [`load_dir`] does after reading).
///
/// # Errors
/// Every problem in every text.
pub fn load_texts(texts: &[(String, String)], config: &EngineConfig) -> Result<Loaded, Vec<DocError>> {
    let options = config.load_options();
    let mut errors = Vec::new();
    let mut parsed = Vec::new();
    let mut canonical = Vec::new();
    for (name, text) in texts {
        canonical.extend_from_slice(format!("{}\n{}\n", name.len(), name).as_bytes());
        canonical.extend_from_slice(format!("{}\n", text.len()).as_bytes());
        canonical.extend_from_slice(text.as_bytes());
        match doc::parse_file(name, text, &options) {
            Ok(p) => parsed.push(p),
            Err(e) => errors.extend(e),
        }
    }
    // What changes a decision without changing a file is part of the digest too.
    canonical.extend_from_slice(
        format!(
            "config\n{}\n{}\n{:?}\n{}\n{}\n",
            config.namespace,
            config.root_namespace,
            config.default_action,
            config.groups_claim.join("."),
            config.authorizers.join(",")
        )
        .as_bytes(),
    );
    if errors.is_empty() {
        Ok(Loaded { files: parsed, digest: format!("sha256:{}", ward_crypto::sha256_hex(&canonical)) })
    } else {
        Err(errors)
    }
}

/// The policy files under `dir`, relative to it and sorted: every `*.yaml` /
/// `*.yml`, recursively, hidden entries skipped. [`load_dir`] reads these,
/// and a watcher can stat them to notice a change.
///
/// # Errors
/// The I/O error of the directory walk.
pub fn policy_files(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut files = Vec::new();
    collect(dir, dir, &mut files)?;
    files.sort();
    Ok(files)
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect(root, &path, out)?;
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

impl PolicySet {
    /// Compile loaded documents for the given targets.
    ///
    /// # Errors
    /// Duplicate names and bindings to unknown roles, with file and line.
    pub fn compile(loaded: Loaded, targets: &[Target], config: &EngineConfig) -> Result<Self, Vec<DocError>> {
        let mut errors = Vec::new();
        let mut policies: Vec<Policy> = Vec::new();
        let mut roles = HashMap::new();
        let mut seen: HashMap<(&'static str, String, String), crate::model::Origin> = HashMap::new();
        let mut dup =
            |kind: &'static str, ns: &str, name: &str, origin: &crate::model::Origin, errors: &mut Vec<DocError>| {
                if let Some(first) = seen.insert((kind, ns.to_owned(), name.to_owned()), origin.clone()) {
                    errors.push(DocError {
                        file: origin.file.clone(),
                        line: origin.line,
                        field: "metadata.name".into(),
                        message: format!("{kind} `{ns}/{name}` is already defined at {}:{}", first.file, first.line),
                    });
                }
            };
        for file in &loaded.files {
            for p in &file.policies {
                dup("AuthorizationPolicy", &p.id.namespace, &p.id.name, &p.origin, &mut errors);
                policies.push(p.clone());
            }
            for r in &file.roles {
                dup("Role", &r.namespace, &r.name, &r.origin, &mut errors);
                roles.insert((r.namespace.clone(), r.name.clone()), r);
            }
        }
        for file in &loaded.files {
            for b in &file.bindings {
                dup("RoleBinding", &b.namespace, &b.name, &b.origin, &mut errors);
                let mut to = Vec::new();
                for (role, line, field) in &b.roles {
                    match roles.get(&(b.namespace.clone(), role.clone())) {
                        Some(r) => to.extend(r.permissions.iter().cloned()),
                        None => errors.push(DocError {
                            file: b.origin.file.clone(),
                            line: *line,
                            field: field.clone(),
                            message: format!("no Role `{role}` in namespace `{}`", b.namespace),
                        }),
                    }
                }
                let rules = b.subjects.iter().map(|s| Rule { to: to.clone(), ..s.clone() }).collect();
                policies.push(Policy {
                    id: PolicyId { kind: Kind::RoleBinding, namespace: b.namespace.clone(), name: b.name.clone() },
                    action: Action::Allow,
                    provider: None,
                    selector: b.selector.clone(),
                    rules,
                    origin: b.origin.clone(),
                });
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        policies.sort_by(|a, b| (a.action, &a.id).cmp(&(b.action, &b.id)));
        let mut compiled = Vec::with_capacity(targets.len());
        for target in targets {
            let mut t = TargetPolicies {
                custom: Index::new(Bias::TowardDeny),
                deny: Index::new(Bias::TowardDeny),
                allow: Index::new(Bias::TowardAllow),
                audit: Index::new(Bias::Neutral),
                ..TargetPolicies::default()
            };
            for (pi, p) in policies.iter().enumerate() {
                let in_scope = p.id.namespace == config.namespace || p.id.namespace == config.root_namespace;
                if !in_scope || !p.selector.iter().all(|(k, v)| target.labels.get(k) == Some(v)) {
                    continue;
                }
                let Ok(pi32) = u32::try_from(pi) else { continue };
                t.selected.push(pi32);
                if p.action == Action::Allow {
                    t.has_allow = true;
                }
                let index = match p.action {
                    Action::Custom => &mut t.custom,
                    Action::Deny => &mut t.deny,
                    Action::Allow => &mut t.allow,
                    Action::Audit => &mut t.audit,
                };
                for (ri, rule) in p.rules.iter().enumerate() {
                    let Ok(ri) = u32::try_from(ri) else { continue };
                    index.add(RuleRef { policy: pi32, rule: ri }, rule);
                }
            }
            for index in [&mut t.custom, &mut t.deny, &mut t.allow, &mut t.audit] {
                index.finish();
            }
            compiled.push(t);
        }
        Ok(Self {
            policies,
            targets: compiled,
            target_names: targets.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect(),
            digest: Arc::from(loaded.digest),
            default_action: config.default_action,
            namespaces: [config.namespace.clone(), config.root_namespace.clone()],
        })
    }

    /// The bundle digest (`sha256:…`).
    #[must_use]
    pub fn digest(&self) -> &Arc<str> {
        &self.digest
    }

    /// Every compiled policy, in evaluation order.
    #[must_use]
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// The index of a target by name.
    #[must_use]
    pub fn target(&self, name: &str) -> Option<usize> {
        self.target_names.get(name).copied()
    }

    /// `namespace/name#rule` for a rule reference.
    #[must_use]
    pub fn describe(&self, r: RuleRef) -> String {
        self.policies.get(r.policy as usize).map_or_else(|| "?".into(), |p| format!("{}#{}", p.id, r.rule))
    }

    /// The policy a rule reference points into.
    #[must_use]
    pub fn policy(&self, r: RuleRef) -> Option<&Policy> {
        self.policies.get(r.policy as usize)
    }

    /// Decide, using the indexes.
    #[must_use]
    pub fn evaluate(&self, target: usize, request: Request<'_>) -> Verdict {
        let Some(t) = self.targets.get(target) else { return self.unknown_target() };
        let req = Prepared::new(request);
        let custom = t.custom.first_match(&self.policies, &req);
        let deny = t.deny.first_match(&self.policies, &req);
        let allow = if deny.is_none() && t.has_allow { t.allow.first_match(&self.policies, &req) } else { None };
        let audit = t.audit.first_match(&self.policies, &req);
        self.verdict(t.has_allow, custom, deny, allow, audit)
    }

    /// Decide by scanning every rule of every selected policy: the
    /// straightforward evaluator the indexed one is tested against.
    #[must_use]
    pub fn evaluate_reference(&self, target: usize, request: Request<'_>) -> Verdict {
        let Some(t) = self.targets.get(target) else { return self.unknown_target() };
        let req = Prepared::new(request);
        let first = |action: Action| {
            t.selected.iter().filter_map(|&pi| self.policies.get(pi as usize).map(|p| (pi, p))).find_map(|(pi, p)| {
                if p.action != action {
                    return None;
                }
                p.rules
                    .iter()
                    .enumerate()
                    .find(|(_, r)| r.matches(&req, Bias::from(action), None))
                    .and_then(|(ri, _)| Some(RuleRef { policy: pi, rule: u32::try_from(ri).ok()? }))
            })
        };
        let deny = first(Action::Deny);
        let allow = if deny.is_none() && t.has_allow { first(Action::Allow) } else { None };
        self.verdict(t.has_allow, first(Action::Custom), deny, allow, first(Action::Audit))
    }

    fn unknown_target(&self) -> Verdict {
        Verdict { effect: Effect::Deny, reason: ReasonCode::DefaultDeny, decided_by: None, audit: None, custom: None }
    }

    fn verdict(
        &self,
        has_allow: bool,
        custom: Option<RuleRef>,
        deny: Option<RuleRef>,
        allow: Option<RuleRef>,
        audit: Option<RuleRef>,
    ) -> Verdict {
        let (effect, reason, decided_by) = match (deny, has_allow, allow) {
            (Some(d), _, _) => (Effect::Deny, ReasonCode::DeniedByPolicy, Some(d)),
            (None, true, Some(a)) => (Effect::Allow, ReasonCode::AllowedByPolicy, Some(a)),
            (None, true, None) => (Effect::Deny, ReasonCode::NoAllowPolicyMatched, None),
            (None, false, _) => match self.default_action {
                DefaultAction::Deny => (Effect::Deny, ReasonCode::DefaultDeny, None),
                DefaultAction::Allow => (Effect::Allow, ReasonCode::DefaultAllow, None),
            },
        };
        Verdict { effect, reason, decided_by, audit, custom }
    }

    /// Explain a decision: every applicable policy and rule, and why each
    /// matched or not.
    #[must_use]
    pub fn explain(&self, target: usize, request: Request<'_>) -> Explanation {
        let verdict = self.evaluate(target, request);
        let req = Prepared::new(request);
        let mut traces = Vec::new();
        let selected: &[u32] = self.targets.get(target).map_or(&[], |t| &t.selected);
        for &pi in selected {
            let Some(p) = self.policies.get(pi as usize) else { continue };
            let mut rules = Vec::new();
            for (ri, rule) in p.rules.iter().enumerate() {
                let mut reasons = Vec::new();
                let matched = rule.matches(&req, Bias::from(p.action), Some(&mut reasons));
                rules.push(RuleTrace { rule: ri, matched, reasons });
            }
            traces.push(PolicyTrace {
                policy: p.id.to_string(),
                action: p.action,
                origin: format!("{}:{}", p.origin.file, p.origin.line),
                rules,
            });
        }
        let mut not_applicable = Vec::new();
        for (pi, p) in self.policies.iter().enumerate() {
            if selected.iter().any(|&s| s as usize == pi) {
                continue;
            }
            let why = if self.namespaces.contains(&p.id.namespace) {
                format!("its selector {:?} does not match this route's labels", p.selector)
            } else {
                format!(
                    "namespace `{}` is neither the gateway's (`{}`) nor the root namespace (`{}`)",
                    p.id.namespace, self.namespaces[0], self.namespaces[1]
                )
            };
            not_applicable.push(format!("{}: {why}", p.id));
        }
        Explanation {
            decision: verdict.effect,
            reason: verdict.reason,
            decided_by: verdict.decided_by.map(|r| self.describe(r)),
            audited_by: verdict.audit.map(|r| self.describe(r)),
            custom: verdict.custom.map(|r| self.describe(r)),
            digest: self.digest.to_string(),
            policies: traces,
            not_applicable,
        }
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
