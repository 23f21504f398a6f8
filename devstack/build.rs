//! Compiles `src/kafka/mock_log.c`, devstack's addition to librdkafka's mock broker, against the
//! private headers of the librdkafka that rdkafka-sys built (`DEP_RDKAFKA_ROOT`, its cmake
//! output folder; the sources are named in that build's CMakeCache.txt).

use std::path::PathBuf;

fn main() -> Result<(), String> {
    println!("cargo:rerun-if-changed=src/kafka/mock_log.c");
    println!("cargo:rerun-if-env-changed=DEP_RDKAFKA_ROOT");
    let root = PathBuf::from(
        std::env::var("DEP_RDKAFKA_ROOT")
            .map_err(|_| "DEP_RDKAFKA_ROOT is unset: rdkafka-sys names its build folder")?,
    );
    let cache = std::fs::read_to_string(root.join("build/CMakeCache.txt")).map_err(|e| {
        format!("{e}: rdkafka-sys is built with cmake (the workspace's cmake-build feature)")
    })?;
    let sources = cache
        .lines()
        .find_map(|l| l.strip_prefix("RdKafka_SOURCE_DIR:STATIC="))
        .ok_or("no RdKafka_SOURCE_DIR in librdkafka's CMakeCache.txt")?;
    cc::Build::new()
        .file("src/kafka/mock_log.c")
        .include(PathBuf::from(sources).join("src"))
        // rd.h includes "../config.h": the cmake build generates it next to this folder.
        .include(root.join("build/generated/dummy"))
        .define("LIBRDKAFKA_STATICLIB", None)
        .warnings(false)
        .compile("devstack_mock_log");
    // The prompt broker: the mock's log append goes through mock_log.c's wrapper. Only in
    // devstack's own binary and tests; crates that embed devstack as a library link without it,
    // and `mock_log::answers_promptly` tells devstack which it is.
    for kind in ["bins", "tests"] {
        println!("cargo:rustc-link-arg-{kind}=-Wl,--wrap=rd_kafka_mock_partition_log_append");
    }
    Ok(())
}
