//! The configuration table of `docs/deployment.md`, generated from the
//! options themselves (what `candor serve --help` prints), so the two never
//! disagree. Regenerate it with
//! `CANDOR_UPDATE_DOCS=1 cargo test --release --lib configuration_table`.

use clap::CommandFactory;

use super::Cli;

const BEGIN: &str = "<!-- serve options: generated from `candor serve --help` -->";
const END: &str = "<!-- end of serve options -->";

/// One row per option of `candor serve` (the global ones included): the
/// option, its environment variable, its default and its help.
fn configuration_table() -> String {
    let mut cli = Cli::command();
    cli.build();
    let serve = cli
        .find_subcommand("serve")
        .expect("candor has a serve command");
    let mut rows = vec![
        "| option | environment | default | what |".to_string(),
        "|---|---|---|---|".to_string(),
    ];
    for arg in serve.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        let env = arg
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_default();
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let default = if defaults.is_empty() {
            "–".to_string()
        } else {
            format!("`{}`", defaults.join(","))
        };
        let help = arg
            .get_long_help()
            .or_else(|| arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        rows.push(format!(
            "| `--{long}` | {env} | {default} | {} |",
            help.replace('|', "\\|")
        ));
    }
    rows.join("\n")
}

#[test]
fn the_configuration_table_in_the_docs_is_generated_from_the_options() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/deployment.md");
    let text = std::fs::read_to_string(&path).expect("docs/deployment.md");
    let (Some(begin), Some(end)) = (text.find(BEGIN), text.find(END)) else {
        panic!("docs/deployment.md has no {BEGIN} … {END} block");
    };
    let committed = text[begin + BEGIN.len()..end].trim();
    let generated = configuration_table();
    if std::env::var_os("CANDOR_UPDATE_DOCS").is_some() {
        let updated = format!("{}{BEGIN}\n{generated}\n{}", &text[..begin], &text[end..]);
        std::fs::write(&path, updated).expect("docs/deployment.md is writable");
        return;
    }
    assert!(
        committed == generated,
        "docs/deployment.md's option table differs from the options: regenerate it with \
         CANDOR_UPDATE_DOCS=1 cargo test --release --lib configuration_table"
    );
}
