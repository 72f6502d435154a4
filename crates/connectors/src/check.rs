//! What `bizon check` asks of connectors that have no server to ask: can the run write where a
//! file goes, and is the program a command starts there. Nothing here creates what the run
//! would create (directories, files, tables): a check leaves no trace.

use std::path::{Path, PathBuf};

use bizon_core::{Error, Result};

use crate::process::CommandLine;

/// The directory `target` goes in (created by the run when missing) is writable: its nearest
/// existing ancestor takes a file, which is removed at once.
pub fn writable_target(target: &Path) -> Result<String> {
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut dir = parent.as_path();
    while !dir.exists() {
        dir = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
    }
    if !dir.is_dir() {
        return Err(Error::config(format!(
            "{} is not a directory: {} cannot go there",
            dir.display(),
            target.display()
        )));
    }
    let probe = dir.join(format!(".bizon-check-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| Error::io(format!("writing in {}", dir.display()), e))?;
    let _ = std::fs::remove_file(&probe);
    let made = if dir == parent { String::new() } else { format!(" ({} is created by the run)", parent.display()) };
    Ok(format!("{} can be written{made}", target.display()))
}

/// The program of a command line exists and may be run; a shell line's own programs are only
/// found when it starts.
pub fn program(command: &CommandLine) -> Result<String> {
    let name = match command {
        CommandLine::Argv(v) => v.first().map(String::as_str).unwrap_or_default(),
        CommandLine::Shell(_) => "sh",
    };
    let found = find_program(name).ok_or_else(|| {
        Error::config(format!("`{name}` is not an executable file{}", if name.contains('/') { "" } else { " on PATH" }))
    })?;
    Ok(match command {
        CommandLine::Argv(_) => format!("runs {} ({})", command.text(), found.display()),
        CommandLine::Shell(s) => format!("runs `sh -c {s}` (the programs of a shell line are found when it starts)"),
    })
}

fn find_program(name: &str) -> Option<PathBuf> {
    if name.is_empty() {
        return None;
    }
    let candidates: Vec<PathBuf> = if name.contains('/') {
        vec![PathBuf::from(name)]
    } else {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).map(|d| d.join(name)).collect()
    };
    candidates.into_iter().find(|p| executable(p))
}

fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bizon_testkit::fixtures::TempDir;

    #[test]
    fn a_target_under_missing_directories_is_checked_in_the_nearest_one_and_leaves_nothing() {
        let dir = TempDir::new("check");
        let target = dir.path().join("a/b/out.json");
        let said = writable_target(&target).unwrap();
        assert!(said.contains("is created by the run"), "{said}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the probe file is removed");
        assert!(!dir.path().join("a").exists(), "no directory is created");
    }

    #[test]
    fn a_read_only_directory_and_a_file_in_the_way_are_errors() {
        let dir = TempDir::new("check");
        let blocker = dir.path().join("blocker");
        std::fs::write(&blocker, b"x").unwrap();
        let e = writable_target(&blocker.join("out.json")).unwrap_err();
        assert!(e.message().contains("is not a directory"), "{e}");
        // root writes anywhere: the permission half only means something for other users
        if unsafe { libc::geteuid() } != 0 {
            let ro = dir.path().join("ro");
            std::fs::create_dir(&ro).unwrap();
            std::fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(0o500)).unwrap();
            assert!(writable_target(&ro.join("out.json")).is_err());
        }
    }

    #[test]
    fn programs_are_found_on_path_or_refused_by_name() {
        assert!(program(&CommandLine::Argv(vec!["sh".into(), "-c".into(), "true".into()])).unwrap().contains("/sh"));
        let e = program(&CommandLine::Argv(vec!["no-such-program-bizon".into()])).unwrap_err();
        assert!(e.message().contains("`no-such-program-bizon` is not an executable file on PATH"), "{e}");
        let e = program(&CommandLine::Argv(vec!["/nonexistent/target.py".into()])).unwrap_err();
        assert!(e.message().contains("`/nonexistent/target.py` is not an executable file"), "{e}");
    }
}
