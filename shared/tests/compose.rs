//! The compose init service creates the topics of the shared topic table, and no others: its
//! topic lines are generated from [`TOPICS`] and must not drift from it.
//!
//! On a mismatch this test prints the lines it expects; `HERALD_BLESS=1` writes them into the
//! script instead of failing.

use shared::protocol::topics::TOPICS;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../scripts/compose/create-topics.sh"
);
const BEGIN: &str = "# BEGIN topics, generated from shared::protocol::topics::TOPICS\n";
const END: &str = "# END topics\n";

/// One `topic NAME PARTITIONS RETENTION_MS` line per row of the table, in its order.
fn generated() -> String {
    TOPICS
        .iter()
        .map(|t| {
            format!(
                "topic {} {} {}  # key: {}\n",
                t.name, t.partitions, t.retention_ms, t.key
            )
        })
        .collect()
}

#[test]
fn the_compose_init_creates_exactly_the_shared_topics() {
    let script =
        std::fs::read_to_string(SCRIPT).unwrap_or_else(|e| panic!("reading {SCRIPT}: {e}"));
    let (head, rest) = script
        .split_once(BEGIN)
        .unwrap_or_else(|| panic!("{SCRIPT} has no line {BEGIN:?}"));
    let (current, tail) = rest
        .split_once(END)
        .unwrap_or_else(|| panic!("{SCRIPT} has no line {END:?}"));
    let expected = generated();
    if current == expected {
        return;
    }
    if std::env::var("HERALD_BLESS").is_ok_and(|v| v == "1") {
        let updated = format!("{head}{BEGIN}{expected}{END}{tail}");
        std::fs::write(SCRIPT, updated).unwrap_or_else(|e| panic!("writing {SCRIPT}: {e}"));
        eprintln!("rewrote the topic lines of {SCRIPT}");
        return;
    }
    panic!(
        "the topic lines of {SCRIPT} differ from shared::protocol::topics::TOPICS.\n\
         Expected:\n{expected}Found:\n{current}\
         Run `HERALD_BLESS=1 cargo test -p shared --test compose` to rewrite them."
    );
}
