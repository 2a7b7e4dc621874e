//! Go's `json.MarshalIndent` layout applied to compact JSON.

/// Re-indents compact JSON with `indent` per level: one element per line, `": "` after
/// keys, and empty objects and arrays kept as `{}` and `[]`.
pub fn indent(compact: &str, indent: &str) -> String {
    let mut out = String::with_capacity(compact.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut pending_open = false;
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str(indent);
        }
    };
    for c in compact.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        if pending_open {
            pending_open = false;
            if c == '}' || c == ']' {
                out.push(c);
                continue;
            }
            depth += 1;
            newline(&mut out, depth);
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                pending_open = true;
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::indent;

    #[test]
    fn indents_like_go() {
        expect_test::expect![[r#"
            [
              {
                "name": "a",
                "tls": {},
                "list": [
                  1,
                  2
                ],
                "empty": []
              }
            ]"#]]
        .assert_eq(&indent(
            r#"[{"name":"a","tls":{},"list":[1,2],"empty":[]}]"#,
            "  ",
        ));
        assert_eq!(indent("null", "  "), "null");
        assert_eq!(
            indent(r#"{"a":"x,{y}:"}"#, "  "),
            "{\n  \"a\": \"x,{y}:\"\n}"
        );
    }
}
