use super::*;

fn table(default: RouteDefault, rules: &[(&[&str], &str, &[&str])]) -> RouteTable {
    RouteTable::parse(&RouteTableInput {
        default,
        query_parameter: None,
        rules: rules
            .iter()
            .map(|(methods, path, scopes)| RouteRuleInput {
                methods: methods.iter().map(|m| (*m).to_owned()).collect(),
                path: (*path).to_owned(),
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            })
            .collect(),
    })
    .unwrap()
}

fn needs(table: &RouteTable, method: &str, uri: &str) -> Option<Vec<String>> {
    let path = normalize_path(uri).unwrap();
    match table.requirement(method, &path) {
        Requirement::Scopes(scopes) => Some(scopes.iter().map(|s| s.as_str().to_owned()).collect()),
        Requirement::Denied => None,
    }
}

#[test]
fn patterns_match_whole_segments_and_a_tail() {
    let p = |t: &str| PathPattern::new(t).unwrap();
    assert!(p("/v1/servers").matches("/v1/servers"));
    assert!(!p("/v1/servers").matches("/v1/servers/1"));
    assert!(!p("/v1/servers").matches("/v1/server"));
    assert!(p("/v1/servers/*").matches("/v1/servers/1"));
    assert!(!p("/v1/servers/*").matches("/v1/servers"));
    assert!(!p("/v1/servers/*").matches("/v1/servers/1/disks"));
    assert!(p("/v1/*/disks").matches("/v1/7/disks"));
    assert!(p("/v1/**").matches("/v1"));
    assert!(p("/v1/**").matches("/v1/a/b/c"));
    assert!(!p("/v1/**").matches("/v2/a"));
    assert!(p("/**").matches("/"));
    assert!(p("/").matches("/"));
    assert!(!p("/").matches("/a"));
    assert!(p("/v1/").matches("/v1"), "a trailing slash is no segment");
}

#[test]
fn a_bad_pattern_is_refused_with_its_reason() {
    for (text, error) in [
        ("v1/servers", InvalidPattern::Relative),
        ("/v1/**/x", InvalidPattern::TailInside),
        ("/v1/serv*", InvalidPattern::PartialWildcard),
        ("/v1//x", InvalidPattern::EmptySegment),
        ("/v1/../admin", InvalidPattern::EmptySegment),
        ("/v1/%61", InvalidPattern::Character),
        ("/v1/a;b", InvalidPattern::Character),
        ("/v1/a b", InvalidPattern::Character),
        ("/v1/a\0", InvalidPattern::Character),
    ] {
        assert_eq!(PathPattern::new(text), Err(error), "{text}");
    }
    assert_eq!(PathPattern::new(&format!("/{}", "a".repeat(600))), Err(InvalidPattern::TooLong));
}

#[test]
fn the_first_matching_rule_decides_and_the_default_the_rest() {
    let t = table(
        RouteDefault::Deny,
        &[
            (&["GET", "head"], "/v1/servers/**", &["servers:read"]),
            (&["POST"], "/v1/servers", &["servers:write"]),
            (&[], "/v1/public/**", &[]),
            (&["*"], "/v1/**", &["admin:*"]),
        ],
    );
    assert_eq!(needs(&t, "GET", "/v1/servers/1"), Some(vec!["servers:read".into()]));
    assert_eq!(needs(&t, "HEAD", "/v1/servers"), Some(vec!["servers:read".into()]), "methods are case-blind");
    assert_eq!(needs(&t, "POST", "/v1/servers"), Some(vec!["servers:write".into()]));
    assert_eq!(needs(&t, "DELETE", "/v1/servers/1"), Some(vec!["admin:*".into()]), "falls through to a later rule");
    assert_eq!(needs(&t, "PATCH", "/v1/public/x"), Some(vec![]));
    assert_eq!(needs(&t, "GET", "/v2/x"), None, "the default denies");
    let open = table(RouteDefault::AnyKey, &[]);
    assert_eq!(needs(&open, "GET", "/anything"), Some(vec![]));
}

#[test]
fn another_spelling_of_a_path_meets_the_same_rule() {
    let t = table(RouteDefault::AnyKey, &[(&[], "/admin/**", &["admin:*"])]);
    for uri in [
        "/admin",
        "/admin/",
        "//admin",
        "/public/../admin",
        "/./admin",
        "/%61dmin",
        "/admin;jsessionid=1",
        "/admin/x?y=1",
        "/admin#frag",
        "https://api.example.com/admin/users",
        "/%2e%2e/admin",
    ] {
        assert_eq!(needs(&t, "GET", uri), Some(vec!["admin:*".into()]), "{uri}");
    }
    assert_eq!(needs(&t, "GET", "/administrators"), Some(vec![]));
}

#[test]
fn a_path_that_cannot_be_compared_safely_is_refused() {
    for uri in [
        "admin",
        "",
        "*",
        "/a%2fb",
        "/a%5cb",
        "/a\\b",
        "/a%00",
        "/a%zz",
        "/a%c3",
        "/a\u{7}",
        "/haS%3fb",
        "/a%23b",
        "/%2561dmin",
    ] {
        assert_eq!(normalize_path(uri), Err(MalformedPath), "{uri:?}");
    }
    assert!(normalize_path(&format!("/{}", "a".repeat(9000))).is_err());
}

#[test]
fn any_text_is_a_path_or_refused_never_a_panic() {
    // Found by schemathesis: a multi-byte character where a scheme's `://` would end.
    for uri in
        ["/Ä\u{F1}\u{49}\u{0096}ã", "/ÄÄÄÄ", "httpÄ://x/a", "https://", "http://host", "/%C3%84/ok", "/a/\u{0096}"]
    {
        let normal = normalize_path(uri);
        if let Ok(path) = normal {
            assert!(path.starts_with('/') && !path.chars().any(char::is_control), "{uri:?} → {path:?}");
        }
    }
    assert_eq!(normalize_path("/%C3%84/ok").unwrap(), "/Ä/ok");
    assert_eq!(normalize_path("http://host").unwrap(), "/");
}

#[test]
fn a_clean_path_is_borrowed() {
    assert!(matches!(normalize_path("/v1/servers/1?x=2"), Ok(Cow::Borrowed("/v1/servers/1"))));
    assert!(matches!(normalize_path("/"), Ok(Cow::Borrowed("/"))));
    assert_eq!(normalize_path("/a/b/../../..").unwrap(), "/");
}

#[test]
fn a_table_names_each_bad_field_and_reads_back_as_written() {
    let input = RouteTableInput {
        default: RouteDefault::Deny,
        query_parameter: Some("api key".into()),
        rules: vec![
            RouteRuleInput { methods: vec!["GET".into()], path: "/ok/*".into(), scopes: vec!["a:b".into()] },
            RouteRuleInput { methods: vec!["G E T".into()], path: "/x/**/y".into(), scopes: vec!["no".into()] },
        ],
    };
    let errors = RouteTable::parse(&input).unwrap_err();
    let fields: Vec<&str> = errors.errors().iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["query_parameter", "rules[1].path", "rules[1].methods[0]", "rules[1].scopes"]);

    let good = RouteTableInput {
        default: RouteDefault::Deny,
        query_parameter: Some("api_key".into()),
        rules: vec![RouteRuleInput {
            methods: vec!["get".into(), "GET".into()],
            path: "/ok/*".into(),
            scopes: vec!["a:b".into()],
        }],
    };
    let parsed = RouteTable::parse(&good).unwrap();
    let written = parsed.to_input();
    assert_eq!(written.rules[0].methods, ["GET"], "upper-cased, once");
    assert_eq!(RouteTable::parse(&written).unwrap(), parsed);
    let too_many = RouteTableInput {
        rules: vec![RouteRuleInput { path: "/".into(), ..Default::default() }; MAX_RULES + 1],
        ..Default::default()
    };
    assert!(RouteTable::parse(&too_many).is_err());
}
