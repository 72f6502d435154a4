//! bizon custom Python sources through the real binary (`--custom-source`, `source_file_path`):
//! killed -9 mid-run, resumed from their pagination.

mod common;
use common::*;

/// bizon's custom-source shape (bizon/source/source.py): pages of `page_size` out of `total`,
/// a little slow so a run can be killed mid-way.
const SLOW_GENERATOR: &str = r#"
import time
from typing import List, Optional, Tuple

from bizon.source.config import SourceConfig
from bizon.source.models import SourceIteration, SourceRecord
from bizon.source.source import AbstractSource


class SlowConfig(SourceConfig):
    total: int = 1000
    page_size: int = 50
    pause: float = 0.0


class SlowSource(AbstractSource):
    @staticmethod
    def streams() -> List[str]:
        return ["records"]

    @staticmethod
    def get_config_class():
        return SlowConfig

    def get_authenticator(self):
        return None

    def check_connection(self) -> Tuple[bool, Optional[str]]:
        return True, None

    def get_total_records_count(self) -> Optional[int]:
        return self.config.total

    def get(self, pagination: dict = None) -> SourceIteration:
        start = (pagination or {}).get("next", 0)
        end = min(start + self.config.page_size, self.config.total)
        time.sleep(self.config.pause)
        records = [SourceRecord(id=i, data={"id": i, "label": "r%d" % i}) for i in range(start, end)]
        return SourceIteration(records=records, next_pagination={"next": end} if end < self.config.total else {})
"#;

fn config(s: &Scratch, total: u64, pause: f64, extra: &str) -> String {
    s.write("slow.py", SLOW_GENERATOR);
    let text = format!(
        "name: custom\nsource:\n  name: slow\n  stream: records\n  total: {total}\n  page_size: 50\n  pause: {pause}\n{extra}\
         destination:\n  name: file\n  config:\n    path: {out}\n    buffer_size: 0\n\
         engine:\n  backend:\n    type: sqlite\n    config:\n      database: {db}\n",
        out = s.path("out.json").display(),
        db = s.path("state.db").display(),
    );
    s.write("c.yml", &text).display().to_string()
}

#[test]
fn custom_source_file_path_runs_and_reads_every_record() {
    let s = Scratch::new("custom-src");
    let cfg = config(&s, 1000, 0.0, "  source_file_path: slow.py\n");
    let out = s.run(&["run", &cfg, "--no-progress"]);
    let err = ok(&out);
    assert_eq!(summary_records(&err), 1000, "{err}");
    assert_exactly_once(&s.path("out.json"), 1000);
}

#[test]
fn kill_9_mid_run_then_resume_from_the_custom_sources_pagination() {
    let s = Scratch::new("custom-src-kill");
    let total = 20_000;
    let cfg = config(&s, total, 0.03, "");
    let args = ["run", cfg.as_str(), "--no-progress", "--custom-source", "slow.py"];
    let (killed, done) = kill_runs_at_seeded_moments(&s, &args, 0xc0ff, 3, 700, 2500);
    assert!(killed == 3 && !done, "killed {killed}, done {done}");
    let out = s.run(&["run", &cfg, "--no-progress", "--custom-source", "slow.py"]);
    let err = ok(&out);
    assert!(err.contains("resuming unfinished job"), "{err}");
    assert_exactly_once(&s.path("out.json"), total);
}

#[test]
fn a_failing_custom_source_fails_the_run_naming_its_file_and_line() {
    let s = Scratch::new("custom-src-fail");
    let cfg = config(&s, 100, 0.0, "  source_file_path: slow.py\n");
    s.write("slow.py", &SLOW_GENERATOR.replace("time.sleep(self.config.pause)", "raise KeyError('missing_field')"));
    let out = s.run(&["run", &cfg, "--no-progress"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("(SlowSource) failed in get at slow.py:") && err.contains("KeyError: 'missing_field'"),
        "{err}"
    );
}

#[test]
fn the_command_examples_in_python_and_shell_run_from_the_repository_root() {
    let s = Scratch::new("command-examples");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let copy = |rel: &str| {
        let to = s.path(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(root.join(rel), &to).unwrap();
    };
    for f in ["examples/command_python_to_file.yml", "examples/command_shell_to_file.yml"] {
        copy(f);
    }
    copy("examples/command/singer_tap.py");
    copy("examples/command/tap.sh");
    let err = ok(&s.run(&["run", "examples/command_python_to_file.yml", "--no-progress"]));
    assert_eq!(summary_records(&err), 160, "{err}");
    let rows = std::fs::read_to_string(s.path("countries.json")).unwrap();
    assert_eq!(rows.lines().count(), 160);
    assert!(rows.lines().last().unwrap().contains(r#""source_record_id":"159""#), "{rows:.300}");
    let err = ok(&s.run(&["run", "examples/command_shell_to_file.yml", "--no-progress"]));
    assert_eq!(summary_records(&err), 1000, "{err}");
    assert!(err.contains("tap.sh starting"), "the command's LOG line is in the run's log: {err}");
    assert_exactly_once(&s.path("numbers.json"), 1000);
}
