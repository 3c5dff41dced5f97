//! The README's PromQL — example queries and alert rules — must parse, so a
//! user who copies it gets a working query.

#[test]
fn every_promql_snippet_in_the_readme_parses() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut queries = Vec::new();
    let mut block: Option<(String, String)> = None;
    for line in readme.lines() {
        match (&mut block, line.strip_prefix("```")) {
            (None, Some(lang)) => block = Some((lang.trim().to_owned(), String::new())),
            (Some((lang, text)), Some(_)) => {
                if lang == "promql" {
                    queries.push(text.clone());
                } else if lang == "yaml" {
                    let exprs = text.lines().filter_map(|l| l.trim().strip_prefix("expr:"));
                    queries.extend(exprs.map(|e| e.trim().to_owned()));
                }
                block = None;
            }
            (Some((_, text)), None) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(queries.len() >= 4, "found {queries:?}");
    for query in queries {
        if let Err(e) = promql_parser::parser::parse(&query) {
            panic!("README query does not parse: {e}\n{query}");
        }
    }
}
