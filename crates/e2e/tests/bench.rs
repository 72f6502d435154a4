//! The benchmark harness's own logic, without running the release workloads (CI runs those from
//! .ci/run): `scripts/bench.sh compare BASE RUN` on two saved runs, and every section of the
//! harness setting the memory ceiling its rows are checked against.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const BASE: &str = "\
workload                              records    out_MB   wall_s    records/s      MB/s    cpu_s    rss_MB ratio
gen-null-1M-200B                      1000000     200.0     0.20      5000000    1000.0     0.30      9.5 (engine ceiling; MB = payload)
target gen-null-1M-200B peak RSS MB                                 9.50 <= 32         met
target generator -> null records/s                            5000000.00 >= 5000000    met
gen-file-1M-200B#1                    1000000     470.0     0.62      1612903     758.0     0.65     12.1 dd=0.70s vs_dd=1.13
";

const RUN: &str = "\
gen-null-1M-200B                      1000000     200.0     0.25      4000000     800.0     0.36     10.0 (engine ceiling; MB = payload)
target gen-null-1M-200B peak RSS MB                                10.00 <= 32         met
target generator -> null records/s                            4000000.00 >= 5000000    missed
postgres-postgres-keyless-1M          1000000     328.0     6.00       166667      54.6     1.50     21.0 psql_copy=6.1s
";

fn compare(s: &Scratch, base: &Path, run: &Path) -> std::process::Output {
    Command::new(root().join("scripts/bench.sh"))
        .args(["compare", base.to_str().unwrap(), run.to_str().unwrap()])
        .current_dir(s.path("."))
        .output()
        .expect("bash")
}

#[test]
fn compare_prints_each_figures_ratio_to_the_base_run_and_the_verdicts_that_changed() {
    let s = Scratch::new("bench-compare");
    let (base, run) = (s.write("base.txt", BASE), s.write("run.txt", RUN));
    let out = compare(&s, &base, &run);
    let text = ok_stdout(&out);
    let line = |name: &str| text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name}:\n{text}"));
    // records/s 4.0M against 5.0M, CPU 0.36 against 0.30, RSS 10.0 against 9.5.
    let null = line("gen-null-1M-200B ");
    assert!(null.contains("0.80x") && null.contains("1.20x") && null.contains("1.05x"), "{null}");
    let t = line("target generator -> null records/s");
    assert!(t.contains("missed") && t.contains("0.80x") && t.contains("WAS MET"), "{t}");
    let t = line("target gen-null-1M-200B peak RSS MB");
    assert!(t.contains("1.05x") && !t.contains("WAS"), "{t}");
    assert!(line("postgres-postgres-keyless-1M").contains("not in BASE"), "{text}");
    assert!(line("gen-file-1M-200B#1").contains("only in BASE"), "{text}");

    let out = compare(&s, &s.path("missing.txt"), &run);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot read") && stderr(&out).contains("missing.txt"), "{}", stderr(&out));
    let out = compare(&s, &s.write("empty.txt", "nothing here\n"), &run);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("holds no workload or target lines"), "{}", stderr(&out));
}

/// Each `if [[ $MODE == … ]]` section that prints workload rows sets RSS_CEIL first, so `row`
/// prints a memory ceiling check after every row of bizon-rs.
#[test]
fn every_benchmark_section_with_rows_sets_its_memory_ceiling() {
    let script = std::fs::read_to_string(root().join("scripts/bench.sh")).unwrap();
    let row_fn = script.split("\nrow() {").nth(1).expect("row function").split("\n}").next().unwrap();
    assert!(row_fn.contains(r#"target "$1 peak RSS MB" "$6" "<=" "$RSS_CEIL""#), "{row_fn}");
    let mut sections = 0;
    for section in script.split("\nif [[ $MODE == ").skip(1) {
        let body = section.split("\nfi\n").next().unwrap();
        let prints_rows = ["row ", "_workload", "broker_workloads"].iter().any(|w| body.contains(w));
        let name = body.split_whitespace().next().unwrap_or_default();
        if prints_rows && name != "compare" {
            sections += 1;
            // the first line after the `if` that is not a comment
            let first = body.lines().skip(1).map(str::trim).find(|l| !l.starts_with('#')).unwrap_or_default();
            assert!(first.starts_with("RSS_CEIL="), "section {name} must set RSS_CEIL first:\n{first}");
        }
    }
    assert!(sections >= 12, "{sections} sections with rows");
}
