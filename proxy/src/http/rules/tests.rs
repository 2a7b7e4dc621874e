use http::header::HeaderMap;
use proptest::prelude::*;

use super::*;

fn rule(method: &str, path: &str) -> HttpRuleSpec {
    HttpRuleSpec {
        method: method.into(),
        path: path.into(),
        ..HttpRuleSpec::default()
    }
}

fn request<'a>(method: &'a str, path: &'a str) -> RequestParts<'a> {
    RequestParts {
        method,
        path,
        host: "deathstar.default.svc.cluster.local",
    }
}

fn allowed(policy: &HttpPolicy, method: &str, path: &str) -> bool {
    policy
        .evaluate(request(method, path), &mut HeaderMap::new())
        .allowed()
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, HeaderValue::from_static(value));
    }
    map
}

#[test]
fn the_seed_rule_allows_only_post_request_landing() {
    let policy = HttpPolicy::compile(&[rule("POST", "/v1/request-landing")]).unwrap();
    assert!(allowed(&policy, "POST", "/v1/request-landing"));
    assert!(!allowed(&policy, "PUT", "/v1/exhaust-port"));
    assert!(!allowed(&policy, "PUT", "/v1/request-landing"));
    assert!(!allowed(&policy, "POST", "/v1/exhaust-port"));
}

#[test]
fn method_and_path_are_anchored_at_both_ends() {
    let policy = HttpPolicy::compile(&[rule("GET", "/public")]).unwrap();
    assert!(allowed(&policy, "GET", "/public"));
    assert!(!allowed(&policy, "GET", "/public/x"));
    assert!(!allowed(&policy, "GET", "/x/public"));
    assert!(
        !allowed(&policy, "GET", "/public?x=1"),
        "the query is part of :path"
    );
    assert!(!allowed(&policy, "XGET", "/public"));
    assert!(!allowed(&policy, "GETX", "/public"));
    // An alternation is anchored as a whole, not only its first and last branch.
    let policy = HttpPolicy::compile(&[rule("GET|HEAD", "/a|/b")]).unwrap();
    assert!(allowed(&policy, "HEAD", "/a"));
    assert!(!allowed(&policy, "HEADX", "/a"));
    assert!(!allowed(&policy, "GET", "/bb"));
}

#[test]
fn regexes_match_families_of_paths() {
    let policy = HttpPolicy::compile(&[rule("", "/v1/.*")]).unwrap();
    assert!(allowed(&policy, "DELETE", "/v1/anything"));
    assert!(!allowed(&policy, "GET", "/v2/anything"));
}

#[test]
fn one_empty_rule_allows_everything_and_no_rule_nothing() {
    let all = HttpPolicy::compile(&[HttpRuleSpec::default()]).unwrap();
    assert!(allowed(&all, "PUT", "/v1/exhaust-port"));
    let none = HttpPolicy::compile(&[]).unwrap();
    assert!(none.is_empty());
    assert!(!allowed(&none, "GET", "/"));
}

#[test]
fn any_matching_rule_allows_and_the_first_is_reported() {
    let policy =
        HttpPolicy::compile(&[rule("GET", "/a"), rule("POST", "/b"), rule("POST", ".*")]).unwrap();
    let verdict = policy.evaluate(request("POST", "/b"), &mut HeaderMap::new());
    assert_eq!(verdict.matched_rule, Some(1));
    assert!(!allowed(&policy, "PUT", "/b"));
}

#[test]
fn host_is_an_anchored_regex_over_the_host_header() {
    let spec = HttpRuleSpec {
        host: r"deathstar\.default\..*".into(),
        ..HttpRuleSpec::default()
    };
    let policy = HttpPolicy::compile(&[spec]).unwrap();
    assert!(allowed(&policy, "GET", "/"));
    let other = RequestParts {
        method: "GET",
        path: "/",
        host: "x.deathstar.default.svc",
    };
    assert!(!policy.evaluate(other, &mut HeaderMap::new()).allowed());
}

#[test]
fn headers_need_presence_or_an_exact_value() {
    let spec = HttpRuleSpec {
        headers: vec![
            "X-Has-Force".into(),
            "X-Side: dark".into(),
            "X-Rank lord".into(),
        ],
        ..HttpRuleSpec::default()
    };
    let policy = HttpPolicy::compile(&[spec]).unwrap();
    let check = |map: &mut HeaderMap| policy.evaluate(request("GET", "/"), map).allowed();
    assert!(check(&mut headers(&[
        ("x-has-force", ""),
        ("x-side", "dark"),
        ("x-rank", "lord")
    ])));
    assert!(!check(&mut headers(&[
        ("x-side", "dark"),
        ("x-rank", "lord")
    ])));
    assert!(!check(&mut headers(&[
        ("x-has-force", "1"),
        ("x-side", "darker"),
        ("x-rank", "lord")
    ])));
    // Repeated fields are compared joined, as one value.
    assert!(!check(&mut headers(&[
        ("x-has-force", "1"),
        ("x-side", "dark"),
        ("x-side", "light"),
        ("x-rank", "lord")
    ])));
}

fn header_match(name: &str, value: &str, mismatch: Option<MismatchAction>) -> HttpRuleSpec {
    HttpRuleSpec {
        header_matches: vec![HeaderMatchSpec {
            name: name.into(),
            value: value.into(),
            mismatch,
            secret: None,
        }],
        ..HttpRuleSpec::default()
    }
}

#[test]
fn header_matches_without_action_fail_the_rule() {
    let policy = HttpPolicy::compile(&[header_match("x-token", "secret", None)]).unwrap();
    let mut map = headers(&[("x-token", "wrong")]);
    assert!(!policy.evaluate(request("GET", "/"), &mut map).allowed());
    let mut map = headers(&[("x-token", "secret")]);
    assert!(policy.evaluate(request("GET", "/"), &mut map).allowed());
}

#[test]
fn mismatch_actions_edit_the_request_and_let_it_pass() {
    let cases = [
        (MismatchAction::Log, Some("wrong"), vec!["wrong"]),
        (MismatchAction::Add, Some("wrong"), vec!["wrong", "secret"]),
        (MismatchAction::Add, None, vec!["secret"]),
        (MismatchAction::Replace, Some("wrong"), vec!["secret"]),
        (MismatchAction::Replace, None, vec!["secret"]),
        (MismatchAction::Delete, Some("wrong"), vec![]),
    ];
    for (action, sent, expected) in cases {
        let policy =
            HttpPolicy::compile(&[header_match("x-token", "secret", Some(action))]).unwrap();
        let mut map = HeaderMap::new();
        if let Some(sent) = sent {
            map.insert("x-token", HeaderValue::from_static(sent));
        }
        let verdict = policy.evaluate(request("GET", "/"), &mut map);
        assert!(verdict.allowed(), "{action:?} {sent:?}");
        assert_eq!(
            verdict.mismatches,
            vec![HeaderMismatch {
                name: "x-token".into(),
                action
            }],
            "{action:?} {sent:?}"
        );
        let values: Vec<_> = map
            .get_all("x-token")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(values, expected, "{action:?} {sent:?}");
    }
}

#[test]
fn a_denied_request_keeps_its_headers() {
    let mut spec = header_match("x-token", "secret", Some(MismatchAction::Replace));
    spec.method = "POST".into();
    let policy = HttpPolicy::compile(&[spec]).unwrap();
    let mut map = headers(&[("x-token", "wrong")]);
    assert!(!policy.evaluate(request("GET", "/"), &mut map).allowed());
    assert_eq!(map.get("x-token").unwrap(), "wrong");
}

#[test]
fn bad_rules_are_refused_naming_the_value() {
    let error = HttpPolicy::compile(&[rule("GET", "/"), rule("(", "/")]).unwrap_err();
    assert!(
        matches!(&error, RuleError::Regex { rule: 1, field: "method", pattern, .. } if pattern == "(")
    );
    assert!(
        error.to_string().contains("invalid method regex \"(\""),
        "{error}"
    );

    let spec = HttpRuleSpec {
        headers: vec!["Bad Header: x".into(), "Bad(Name)".into()],
        ..HttpRuleSpec::default()
    };
    let error = HttpPolicy::compile(&[spec]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "http rule 0: invalid header name \"Bad(Name)\" in headers"
    );

    let mut spec = header_match("x-token", "", None);
    spec.header_matches[0].secret = Some(SecretRef {
        namespace: "default".into(),
        name: "tokens".into(),
    });
    let error = HttpPolicy::compile(&[spec]).unwrap_err();
    assert!(
        error.to_string().contains("secret \"default/tokens\""),
        "{error}"
    );

    let error =
        HttpPolicy::compile(&[header_match("x-token", "", Some(MismatchAction::Add))]).unwrap_err();
    assert!(error.to_string().contains("needs a value"), "{error}");

    let error = HttpPolicy::compile(&[rule("", "(a{1000}){1000}")]).unwrap_err();
    assert!(matches!(error, RuleError::Regex { field: "path", .. }));
}

#[test]
fn rules_read_from_policy_yaml() {
    let yaml = "- method: POST\n  path: /v1/request-landing\n- headerMatches:\n  - name: x-token\n    value: s\n    mismatch: REPLACE\n- {}\n";
    let specs: Vec<HttpRuleSpec> = serde_yaml::from_str(yaml).unwrap();
    assert_eq!(specs[0], rule("POST", "/v1/request-landing"));
    assert_eq!(
        specs[1].header_matches[0].mismatch,
        Some(MismatchAction::Replace)
    );
    assert_eq!(specs[2], HttpRuleSpec::default());
    let error = serde_yaml::from_str::<Vec<HttpRuleSpec>>("- mehtod: GET\n").unwrap_err();
    assert!(error.to_string().contains("mehtod"), "{error}");
}

proptest! {
    /// A literal path allows exactly itself: never a longer path, never a prefix.
    #[test]
    fn literal_paths_match_only_themselves(path in "/[a-z0-9/-]{0,20}", extra in "[a-z0-9/?=-]{1,8}") {
        let policy = HttpPolicy::compile(&[rule("GET", &regex::escape(&path))]).unwrap();
        prop_assert!(allowed(&policy, "GET", &path));
        let longer = format!("{path}{extra}");
        prop_assert!(!allowed(&policy, "GET", &longer));
        let before = format!("/{extra}{path}");
        prop_assert!(!allowed(&policy, "GET", &before));
        if path.len() > 1 {
            prop_assert!(!allowed(&policy, "GET", &path[..path.len() - 1]));
        }
    }

    /// A pattern with no metacharacter is compared as a string, and decides as its
    /// anchored regex would (`-`, `&`, `~`, `#` and spaces are themselves outside a class).
    #[test]
    fn literal_patterns_decide_as_their_regex(
        pattern in "[a-zA-Z0-9/ _&~#-]{1,10}",
        text in "[a-zA-Z0-9/ _&~#-]{0,10}",
    ) {
        let policy = HttpPolicy::compile(&[rule("GET", &pattern)]).unwrap();
        prop_assert!(matches!(policy.rules[0].path, Some(Pattern::Literal(_))));
        let regex = regex::Regex::new(&format!("^(?:{pattern})$")).unwrap();
        prop_assert_eq!(allowed(&policy, "GET", &text), regex.is_match(&text));
        prop_assert!(allowed(&policy, "GET", &pattern));
    }

    /// `[{}]` allows any method and target; and the verdict equals "some rule matches".
    #[test]
    fn allow_all_and_any_rule(method in "[A-Z]{1,7}", path in "/[ -~]{0,30}") {
        let all = HttpPolicy::compile(&[HttpRuleSpec::default()]).unwrap();
        prop_assert!(allowed(&all, &method, &path));
        let get = HttpPolicy::compile(&[rule("GET", ".*")]).unwrap();
        let post = HttpPolicy::compile(&[rule("POST", ".*")]).unwrap();
        let both = HttpPolicy::compile(&[rule("GET", ".*"), rule("POST", ".*")]).unwrap();
        prop_assert_eq!(
            allowed(&both, &method, &path),
            allowed(&get, &method, &path) || allowed(&post, &method, &path)
        );
    }
}
