//! `ward policy check | explain | test`: the policy engine without a gateway.

use std::path::Path;

use ward_policy::testing::{OwnedRequest, RequestSpec, TestFile};
use ward_policy::{EngineConfig, PathOptions, PolicySet, RouteTable, Target, load_dir};

/// Engine settings and routes: from a `ward.toml` when given, else Ward's
/// defaults and one unlabelled route named `default`.
fn settings(config: Option<&Path>) -> Result<(EngineConfig, PathOptions, RouteTable, Vec<Target>), String> {
    match config {
        Some(path) => {
            let c = ward_config::load(path).map_err(|e| e.to_string())?;
            let routes = RouteTable::new(c.routes.clone());
            let targets = routes.targets();
            Ok((c.policy.engine, c.policy.path, routes, targets))
        }
        None => Ok((
            EngineConfig::default(),
            PathOptions::default(),
            RouteTable::default(),
            vec![Target { name: "default".into(), labels: Default::default() }],
        )),
    }
}

fn compile(dir: &Path, engine: &EngineConfig, targets: &[Target]) -> Result<PolicySet, String> {
    let join = |e: Vec<ward_policy::DocError>| e.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
    let loaded = load_dir(dir, engine).map_err(join)?;
    PolicySet::compile(loaded, targets, engine).map_err(join)
}

/// `ward policy check DIR`.
pub fn check(dir: &Path, config: Option<&Path>) -> Result<String, String> {
    let (engine, _, _, targets) = settings(config)?;
    let set = compile(dir, &engine, &targets)?;
    let mut out = format!("{}: ok ({} policies, digest {})\n", dir.display(), set.policies().len(), set.digest());
    for p in set.policies() {
        out.push_str(&format!(
            "  {:<6} {} ({} rules) {}:{}\n",
            p.action.to_string(),
            p.id,
            p.rules.len(),
            p.origin.file,
            p.origin.line
        ));
    }
    Ok(out)
}

/// `ward policy explain --policies DIR --request JSON`.
pub fn explain(dir: &Path, request: &str, route: Option<&str>, config: Option<&Path>) -> Result<String, String> {
    let (engine, path_options, routes, targets) = settings(config)?;
    let set = compile(dir, &engine, &targets)?;
    let text = match std::fs::read_to_string(request) {
        Ok(t) => t,
        Err(_) if request.trim_start().starts_with('{') => request.to_owned(),
        Err(e) => return Err(format!("{request}: {e}")),
    };
    let spec: RequestSpec = serde_json::from_str(&text).map_err(|e| format!("request: {e}"))?;
    let req = OwnedRequest::new(spec, &path_options).map_err(|e| format!("request path refused: {e}"))?;
    let request = req.request();
    let target = match route {
        Some(name) => set.target(name).ok_or_else(|| format!("no route `{name}`"))?,
        None if config.is_some() => match routes.find(request.path) {
            Some((i, _)) => i,
            None => return Ok(format!("deny (no_route): no route covers {}\n", request.path)),
        },
        None => 0,
    };
    let e = set.explain(target, request);
    let mut out = format!(
        "decision: {} ({})\nroute: {}\npath: {}\n",
        serde_json::to_string(&e.decision).unwrap_or_default().trim_matches('"'),
        e.reason,
        targets.get(target).map_or("?", |t| t.name.as_str()),
        request.path
    );
    if let Some(p) = &e.decided_by {
        out.push_str(&format!("decided by: {p}\n"));
    }
    if let Some(p) = &e.custom {
        out.push_str(&format!("external authorizer consulted first, for: {p}\n"));
    }
    if let Some(p) = &e.audited_by {
        out.push_str(&format!("marked for audit by: {p}\n"));
    }
    out.push_str(&format!("policy bundle: {}\n\npolicies applying to this route:\n", e.digest));
    if e.policies.is_empty() {
        out.push_str("  (none)\n");
    }
    for p in &e.policies {
        out.push_str(&format!("  {} {} ({})\n", p.action, p.policy, p.origin));
        if p.rules.is_empty() {
            out.push_str("    no rules: matches nothing\n");
        }
        for r in &p.rules {
            if r.matched {
                out.push_str(&format!("    rule {}: matched\n", r.rule));
            } else {
                out.push_str(&format!("    rule {}: no match: {}\n", r.rule, r.reasons.join("; ")));
            }
        }
    }
    if !e.not_applicable.is_empty() {
        out.push_str("\nnot applying:\n");
        for n in &e.not_applicable {
            out.push_str(&format!("  {n}\n"));
        }
    }
    Ok(out)
}

/// `ward policy test DIR TESTS.yaml`: the report, and whether every case passed.
pub fn test(dir: &Path, tests: &Path) -> Result<(String, bool), String> {
    let text = std::fs::read_to_string(tests).map_err(|e| format!("{}: {e}", tests.display()))?;
    let file = TestFile::parse(&text).map_err(|e| format!("{}: {e}", tests.display()))?;
    let (engine, _) = file.settings().map_err(|e| format!("{}: {e}", tests.display()))?;
    let join = |e: Vec<ward_policy::DocError>| e.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
    let loaded = load_dir(dir, &engine).map_err(join)?;
    let report = file.run(loaded)?;
    Ok((format!("{report}\n"), report.failed() == 0))
}
