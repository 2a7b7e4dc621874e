//! The filter bar: a line of `hubble observe` flags, split like a shell would and
//! parsed by the CLI's own clap definitions and request builder.

use clap::Parser;
use proto::observer::GetFlowsRequest;

use crate::cli::ObserveArgs;
use crate::cmd::{observe, Context};

/// Recent flows asked for when the filter line names no range of its own.
pub const INITIAL_FLOWS: u64 = 200;

/// `hubble observe`'s flags, parsed from a filter line without a program name.
#[derive(Debug, Parser)]
#[command(name = "filter", no_binary_name = true, disable_help_flag = true)]
struct FilterLine {
    #[command(flatten)]
    args: ObserveArgs,
}

/// Splits `line` into words at blanks, keeping single- or double-quoted text together.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if let Some(q) = quote {
        return Err(format!("unterminated {q} quote in filter"));
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Turns parsed `observe` flags into the live view's request: always in follow mode,
/// with [`INITIAL_FLOWS`] recent flows unless a range was given, and with whole flows
/// (for the detail pane) unless `--field-mask` was given.
pub fn request_from_args(args: &ObserveArgs, ctx: &Context) -> Result<GetFlowsRequest, String> {
    if args.selectors.first.is_some() {
        return Err("--first cannot be used with the live view".to_string());
    }
    if args
        .other
        .input_file
        .as_deref()
        .is_some_and(|f| !f.is_empty())
    {
        return Err("--input-file cannot be used with the live view".to_string());
    }
    let mut ctx = ctx.clone();
    let plan = observe::plan(args, &mut ctx).map_err(|e| format!("{e:#}"))?;
    let mut request = plan.request;
    let ranged = args.selectors.last.is_some()
        || args.selectors.all == Some(true)
        || args.selectors.since.is_some();
    if !ranged {
        request.number = INITIAL_FLOWS;
    }
    request.follow = true;
    if args.other.field_mask.is_empty() {
        request.field_mask = None;
    }
    Ok(request)
}

/// The filter line for flags given on the command line: the flags that shape the
/// request (range, filters in their order, raw filters, field mask), written as a
/// user types them, so that the filter bar shows them, `/` starts editing from them
/// and [`parse_filter`] of the line asks for what the flags asked for.
pub fn line_from_args(args: &ObserveArgs) -> String {
    // `--flag value`, or `--flag=value` for a value that looks like a flag.
    fn value(words: &mut Vec<String>, name: &str, v: &str) {
        if v.starts_with('-') {
            words.push(format!("--{name}={}", quote_word(v)));
        } else {
            words.push(format!("--{name}"));
            words.push(quote_word(v));
        }
    }
    let mut words: Vec<String> = Vec::new();
    let s = &args.selectors;
    if let Some(v) = &s.last {
        value(&mut words, "last", v);
    }
    if s.all == Some(true) {
        words.push("--all".to_string());
    }
    if let Some(v) = &s.since {
        value(&mut words, "since", v);
    }
    if let Some(v) = &s.until {
        value(&mut words, "until", v);
    }
    for (name, v) in &args.filters.ordered {
        match bare_value(name) {
            Some(bare) if bare == *v => words.push(format!("--{name}")),
            Some(_) => words.push(format!("--{name}={}", quote_word(v))),
            None => value(&mut words, name, v),
        }
    }
    for v in &args.allowlist {
        value(&mut words, "allowlist", v);
    }
    for v in &args.denylist {
        value(&mut words, "denylist", v);
    }
    if !args.other.field_mask.is_empty() {
        value(&mut words, "output", &args.formatting.output);
        value(&mut words, "field-mask", &args.other.field_mask.join(","));
    }
    words.join(" ")
}

/// The value a filter flag given alone stands for (`--not` is `true`, `--ipv4` is
/// `v4`), or `None` for a flag that needs a value.
fn bare_value(name: &str) -> Option<String> {
    let parsed = FilterLine::try_parse_from([format!("--{name}")]).ok()?;
    let (_, value) = parsed.args.filters.ordered.into_iter().next()?;
    Some(value)
}

/// Quotes a word so that [`split_words`] gives it back whole (it has no escapes, but
/// quoted parts next to each other make one word).
fn quote_word(word: &str) -> String {
    let plain = |c: char| !c.is_whitespace() && c != '\'' && c != '"';
    if !word.is_empty() && word.chars().all(plain) {
        return word.to_string();
    }
    if !word.contains('\'') {
        return format!("'{word}'");
    }
    if !word.contains('"') {
        return format!("\"{word}\"");
    }
    let mut out = String::new();
    for (i, part) in word.split('\'').enumerate() {
        if i > 0 {
            out.push_str("\"'\"");
        }
        if !part.is_empty() {
            out.push('\'');
            out.push_str(part);
            out.push('\'');
        }
    }
    out
}

/// Parses a filter line into a request, or the parser's error as one line of text.
pub fn parse_filter(line: &str, ctx: &Context) -> Result<GetFlowsRequest, String> {
    let words = split_words(line)?;
    let parsed = FilterLine::try_parse_from(words).map_err(|e| first_line(&e.to_string()))?;
    request_from_args(&parsed.args, ctx)
}

/// The first non-empty line of a clap error, without its `error: ` prefix.
fn first_line(text: &str) -> String {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or(text);
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_quoted_text() {
        assert_eq!(
            split_words(r#"--from-pod default/xwing  --http-path "/a b" "#).unwrap(),
            vec!["--from-pod", "default/xwing", "--http-path", "/a b"]
        );
        assert!(split_words("--label 'x").is_err());
    }

    #[test]
    fn valid_filter_becomes_a_follow_request() {
        let ctx = Context::default();
        let req = parse_filter("--from-pod default/xwing --verdict DROPPED", &ctx).unwrap();
        assert!(req.follow);
        assert_eq!(req.number, INITIAL_FLOWS);
        assert_eq!(req.whitelist.len(), 1);
        assert_eq!(req.whitelist[0].source_pod, vec!["default/xwing"]);
        assert_eq!(
            req.whitelist[0].verdict,
            vec![proto::flow::Verdict::Dropped as i32]
        );
        assert!(req.field_mask.is_none());
        let req = parse_filter("--last 5", &ctx).unwrap();
        assert_eq!(req.number, 5);
    }

    fn args(words: &[&str]) -> ObserveArgs {
        FilterLine::try_parse_from(words).unwrap().args
    }

    #[test]
    fn command_line_flags_become_the_filter_line() {
        let a = args(&["--from-pod", "default/xwing", "--verdict", "DROPPED"]);
        assert_eq!(
            line_from_args(&a),
            "--from-pod default/xwing --verdict DROPPED"
        );
        assert_eq!(line_from_args(&args(&[])), "");
        // Order, --not, flags with an optional value, short forms, quoting, ranges and
        // raw filters; formatting flags are not part of the filter.
        let a = args(&[
            "-o",
            "dict",
            "--last",
            "50",
            "--not",
            "--to-pod",
            "kube-system/coredns",
            "-4",
            "--is-reply=false",
            "--http-path",
            "/a b",
            "--label",
            "it's",
            "--http-header",
            "x:\"it's\"",
            "--from-port=-1",
            "--allowlist",
            r#"{"source_pod":["default/"]}"#,
        ]);
        let line = line_from_args(&a);
        assert_eq!(
            line,
            r#"--last 50 --not --to-pod kube-system/coredns --ipv4 --is-reply=false --http-path '/a b' --label "it's" --http-header 'x:"it'"'"'s"' --from-port=-1 --allowlist '{"source_pod":["default/"]}'"#
        );
        let again = args(
            &split_words(&line)
                .unwrap()
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
        assert_eq!(again.filters, a.filters);
        assert_eq!(again.allowlist, a.allowlist);
        assert_eq!(again.selectors.last, a.selectors.last);
    }

    #[test]
    fn the_filter_line_asks_for_what_the_flags_asked_for() {
        let ctx = Context::default();
        for words in [
            &["--from-pod", "default/xwing", "--verdict", "DROPPED"][..],
            &["--last", "5", "--not", "--verdict", "FORWARDED", "-6"],
            &["--all", "--to-label", "class=deathstar", "--is-reply"],
            &[
                "-o",
                "json",
                "--field-mask",
                "time,verdict",
                "--pod",
                "xwing",
            ],
            &["--denylist", r#"{"source_label":["reserved:host"]}"#],
        ] {
            let a = args(words);
            let line = line_from_args(&a);
            assert_eq!(
                parse_filter(&line, &ctx).unwrap(),
                request_from_args(&a, &ctx).unwrap(),
                "{words:?} -> {line}"
            );
        }
    }

    #[test]
    fn invalid_filters_give_the_parser_error() {
        let ctx = Context::default();
        let err = parse_filter("--verdict FOO", &ctx).unwrap_err();
        assert!(err.contains("FOO"), "{err}");
        let err = parse_filter("--no-such-flag", &ctx).unwrap_err();
        assert!(err.contains("--no-such-flag"), "{err}");
        assert!(!err.contains('\n'));
        assert!(parse_filter("--first 3", &ctx).is_err());
    }
}
