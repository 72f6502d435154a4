//! The crash matrix in CI: `bizon-chaos` with 5 kills per cell over generator → {file, postgres}
//! × {memory, rabbitmq, kafka} × {full_refresh, incremental}. Every cell must keep its
//! guarantee (exactly-once: 0 lost, 0 duplicates) with every kill landing mid-run.

mod common;

use common::*;

#[test]
fn every_cell_of_the_crash_matrix_keeps_its_guarantee_through_five_kills() {
    let dir = TempDir::new("chaos");
    let report = dir.join("reliability.md");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bizon-chaos"))
        .args(["--kills", "5", "--records", "50000", "--seed", "7", "--report", report.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let table = std::fs::read_to_string(&report).unwrap();
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| file") || l.starts_with("| postgres")).collect();
    assert_eq!(rows.len(), 12, "{table}");
    for row in rows {
        let cols: Vec<&str> = row.split('|').map(str::trim).collect();
        // | destination | queue | mode | kills | runs | rows | lost | duplicates | guarantee | verdict | seconds |
        assert_eq!((cols[4], cols[6], cols[7], cols[8], cols[10]), ("5", "50000", "0", "0", "ok"), "{row}");
    }
    assert!(table.contains("12 of 12 cells kept their guarantee"), "{table}");
}
