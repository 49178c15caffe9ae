//! Opening the window: Chromium or Chrome in app mode over a dedicated profile inside the
//! device's directory, else the default browser with a warning.
//!
//! The profile is the app's own (`HOME/browser`, 0700): no extensions, no sync, no
//! spellcheck or translation service, no autofill or password manager, and downloads go to
//! `HOME/browser/Downloads` without asking, where the files part tracks and shreds them.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The browsers tried, in order.
pub const BROWSERS: [&str; 4] = [
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
];

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("cannot open a browser: {0}")]
    NoBrowser(String),
}

/// The app's browser profile inside the device's directory.
pub fn browser_profile(home: &Path) -> PathBuf {
    home.join("browser")
}

/// Where the app's browser saves files (tracked and shredded with their message).
pub fn browser_downloads(home: &Path) -> PathBuf {
    browser_profile(home).join("Downloads")
}

/// The first of [`BROWSERS`] on `path` (a `PATH`-style list).
pub fn find_browser(path: &std::ffi::OsStr) -> Option<PathBuf> {
    BROWSERS.iter().find_map(|name| {
        std::env::split_paths(path)
            .map(|dir| dir.join(name))
            .find(|candidate| is_executable(candidate))
    })
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The browser's arguments: an app window on `url` over the profile in `home`.
///
/// Not `--incognito` (issue 12 review, tried with Chromium 156 under Xvfb): an incognito
/// window ignores `download.prompt_for_download: false` and asks where to save every file
/// (a Save As dialog, preset to `HOME/browser/Downloads`), so a file could be saved where
/// the shredder does not look; the regular profile saves there without asking.
pub fn browser_args(home: &Path, url: &str) -> Vec<String> {
    vec![
        format!("--app={url}"),
        format!("--user-data-dir={}", browser_profile(home).display()),
        "--no-first-run".into(),
        "--no-default-browser-check".into(),
        "--disable-extensions".into(),
        "--disable-sync".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-default-apps".into(),
        "--disable-features=Translate,AutofillServerCommunication,SpellcheckService,MediaRouter"
            .into(),
        "--password-store=basic".into(),
    ]
}

/// The profile's `Default/Preferences`: nothing typed leaves for a spelling or translation
/// service, nothing is autofilled or remembered, downloads land in the tracked folder.
pub fn preferences(home: &Path) -> serde_json::Value {
    serde_json::json!({
        "browser": {
            "enable_spellchecking": false,
            "check_default_browser": false,
        },
        "spellcheck": {
            "use_spelling_service": false,
            "dictionaries": [],
        },
        "translate": { "enabled": false },
        "translate_blocked_languages": [],
        "autofill": {
            "enabled": false,
            "profile_enabled": false,
            "credit_card_enabled": false,
        },
        "credentials_enable_service": false,
        "credentials_enable_autosignin": false,
        "profile": { "password_manager_enabled": false },
        "search": { "suggest_enabled": false },
        "alternate_error_pages": { "enabled": false },
        "safebrowsing": { "enabled": false },
        "download": {
            "default_directory": browser_downloads(home).display().to_string(),
            "directory_upgrade": true,
            "prompt_for_download": false,
        },
        "savefile": {
            "default_directory": browser_downloads(home).display().to_string(),
        },
    })
}

/// What Chromium keeps of past sessions in its profile: visits, the downloads table and
/// download service (file names), session restore, caches. Removed before each start.
pub const HISTORY_STORES: [&str; 20] = [
    "History",
    "History-journal",
    "shared_proto_db",
    "Download Service",
    "Sessions",
    "Session Storage",
    "Visited Links",
    "Top Sites",
    "Top Sites-journal",
    "Favicons",
    "Favicons-journal",
    "Shortcuts",
    "Shortcuts-journal",
    "Network Action Predictor",
    "Network Action Predictor-journal",
    "Cache",
    "Code Cache",
    "DIPS",
    "DIPS-journal",
    "Current Session",
];

/// Overwrites a file with zeros and unlinks it; a directory's files likewise, then the
/// directory (symbolic links are unlinked, never followed).
fn shred_tree(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_dir() {
        if let Ok(entries) = fs::read_dir(path) {
            for entry in entries.flatten() {
                shred_tree(&entry.path());
            }
        }
        let _ = fs::remove_dir(path);
        return;
    }
    if meta.is_file() {
        if let Ok(mut file) = fs::OpenOptions::new().write(true).open(path) {
            let zeros = vec![0u8; 64 * 1024];
            let mut left = meta.len();
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                if std::io::Write::write_all(&mut file, &zeros[..n]).is_err() {
                    break;
                }
                left -= n as u64;
            }
            let _ = file.sync_all();
        }
    }
    let _ = fs::remove_file(path);
}

/// Whether a Chromium holds the profile (its `SingletonLock` names a live process of this
/// host): its files are then in use and stay.
fn profile_in_use(profile: &Path) -> bool {
    let Ok(target) = fs::read_link(profile.join("SingletonLock")) else {
        return false;
    };
    let pid = target
        .to_string_lossy()
        .rsplit('-')
        .next()
        .and_then(|p| p.parse::<u32>().ok());
    pid.is_none_or(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

/// Removes what an earlier Chromium session kept (see [`HISTORY_STORES`]): an incognito
/// window would keep none of it but asks where to save every download.
pub fn scrub_history(home: &Path) {
    let profile = browser_profile(home);
    if profile_in_use(&profile) {
        return;
    }
    let default = profile.join("Default");
    for store in HISTORY_STORES {
        shred_tree(&default.join(store));
    }
}

/// Creates the profile (0700) and, before its first start, its preferences (0600).
pub fn prepare_profile(home: &Path) -> Result<(), LaunchError> {
    let io = |path: &Path| {
        let shown = path.display().to_string();
        move |e| LaunchError::Io(shown, e)
    };
    let profile = browser_profile(home);
    let default = profile.join("Default");
    for dir in [&profile, &default, &browser_downloads(home)] {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    let prefs = default.join("Preferences");
    if !prefs.exists() {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&prefs)
            .map_err(io(&prefs))?;
        std::io::Write::write_all(&mut file, preferences(home).to_string().as_bytes())
            .map_err(io(&prefs))?;
    }
    Ok(())
}

/// Which browser got the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// Chromium or Chrome in app mode over `HOME/browser`: its downloads are shredded.
    Dedicated,
    /// The default browser: it keeps what it saves where it likes.
    Default,
}

/// Whether [`open_window`] would use the app's own browser (one of [`BROWSERS`] is on
/// `PATH`).
pub fn has_dedicated_browser() -> bool {
    find_browser(&std::env::var_os("PATH").unwrap_or_default()).is_some()
}

/// The note for a window not in the app's own browser profile.
pub const NOT_SHREDDED_NOTE: &str = "note: files saved by a browser other than the app's own Chromium window are not shredded with their messages";

/// `program` started with a umask of 077 (through `sh`, without `unsafe`), so that what it
/// creates — the browser's downloads among it — is the owner's only (0600).
pub fn owner_only_command(program: &Path) -> Command {
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg("umask 077 && exec \"$0\" \"$@\"")
        .arg(program);
    command
}

/// Opens `url` in the app's window; falls back to the default browser with a warning.
pub fn open_window(home: &Path, url: &str) -> Result<Opened, LaunchError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(browser) = find_browser(&path) {
        prepare_profile(home)?;
        scrub_history(home);
        let mut child = owner_only_command(&browser)
            .args(browser_args(home, url))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| LaunchError::Io(browser.display().to_string(), e))?;
        // Reaped when it closes; one that fails (no display, say) would otherwise leave the
        // user looking at nothing.
        let name = browser.display().to_string();
        std::thread::spawn(move || {
            match child.wait() {
            Ok(status) if !status.success() => eprintln!(
                "warning: {name} exited ({status}) without a window; open the URL above in a browser"
            ),
            _ => {}
        }
        });
        return Ok(Opened::Dedicated);
    }
    eprintln!(
        "warning: no Chromium or Chrome found (tried {}); opening the default browser, \
         which keeps its own history, extensions and caches",
        BROWSERS.join(", ")
    );
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    Command::new(opener)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(|_| Opened::Default)
        .map_err(|e| LaunchError::NoBrowser(format!("{opener}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_12_the_window_uses_its_own_quiet_profile() {
        let home = Path::new("/d/alice");
        let args = browser_args(home, "http://127.0.0.1:5/open?secret=s");
        assert_eq!(args[0], "--app=http://127.0.0.1:5/open?secret=s");
        assert!(args.contains(&"--user-data-dir=/d/alice/browser".to_owned()));
        for flag in [
            "--disable-extensions",
            "--disable-sync",
            "--no-first-run",
            "--password-store=basic",
        ] {
            assert!(args.iter().any(|a| a == flag), "{flag}");
        }
        let features = args
            .iter()
            .find(|a| a.starts_with("--disable-features="))
            .unwrap();
        for feature in [
            "Translate",
            "SpellcheckService",
            "AutofillServerCommunication",
        ] {
            assert!(features.contains(feature), "{feature}");
        }
    }

    #[test]
    fn issue_12_preferences_turn_off_services_and_keep_downloads_in_the_profile() {
        let prefs = preferences(Path::new("/d/alice"));
        assert_eq!(prefs["browser"]["enable_spellchecking"], false);
        assert_eq!(prefs["spellcheck"]["use_spelling_service"], false);
        assert_eq!(prefs["translate"]["enabled"], false);
        assert_eq!(prefs["autofill"]["enabled"], false);
        assert_eq!(prefs["credentials_enable_service"], false);
        assert_eq!(prefs["profile"]["password_manager_enabled"], false);
        assert_eq!(
            prefs["download"]["default_directory"],
            "/d/alice/browser/Downloads"
        );
        assert_eq!(prefs["download"]["prompt_for_download"], false);
    }

    #[test]
    fn issue_12_profile_is_private_and_its_preferences_written_once() {
        let dir = tempfile::tempdir().unwrap();
        prepare_profile(dir.path()).unwrap();
        let profile = browser_profile(dir.path());
        for d in [&profile, &browser_downloads(dir.path())] {
            assert_eq!(fs::metadata(d).unwrap().permissions().mode() & 0o777, 0o700);
        }
        let prefs = profile.join("Default/Preferences");
        let written: serde_json::Value =
            serde_json::from_slice(&fs::read(&prefs).unwrap()).unwrap();
        assert_eq!(written, preferences(dir.path()));
        // The browser rewrites its preferences as it runs; a later start keeps them.
        fs::write(&prefs, b"{\"kept\":true}").unwrap();
        prepare_profile(dir.path()).unwrap();
        assert_eq!(fs::read(&prefs).unwrap(), b"{\"kept\":true}");
    }

    /// The attachment names an earlier session left in Chromium's history stores go before
    /// the next start; the preferences and downloads stay, and a running browser's files
    /// are left alone.
    #[test]
    fn issue_12_chromium_history_is_scrubbed_before_a_start() {
        let dir = tempfile::tempdir().unwrap();
        prepare_profile(dir.path()).unwrap();
        let default = browser_profile(dir.path()).join("Default");
        fs::write(default.join("History"), b"attached-name.pdf").unwrap();
        let witness = dir.path().join("witness");
        fs::hard_link(default.join("History"), &witness).unwrap();
        fs::create_dir_all(default.join("shared_proto_db/metadata")).unwrap();
        fs::write(
            default.join("shared_proto_db/000003.log"),
            b"attached-name.pdf",
        )
        .unwrap();
        fs::write(browser_downloads(dir.path()).join("kept.txt"), b"tracked").unwrap();
        // A live browser holds the profile: nothing is touched.
        std::os::unix::fs::symlink(
            format!("host-{}", std::process::id()),
            browser_profile(dir.path()).join("SingletonLock"),
        )
        .unwrap();
        scrub_history(dir.path());
        assert!(default.join("History").exists());
        fs::remove_file(browser_profile(dir.path()).join("SingletonLock")).unwrap();
        scrub_history(dir.path());
        assert!(!default.join("History").exists());
        assert_eq!(
            fs::read(&witness).unwrap(),
            vec![0u8; 17],
            "zeroed, not only unlinked"
        );
        assert!(!default.join("shared_proto_db").exists());
        assert!(default.join("Preferences").exists());
        assert!(browser_downloads(dir.path()).join("kept.txt").exists());
    }

    /// The browser starts with umask 077: a file it writes (a download) is 0600.
    #[test]
    fn issue_12_the_browser_runs_with_an_owner_only_umask() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("saved.txt");
        let status = owner_only_command(Path::new("/usr/bin/touch"))
            .arg(&file)
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Arguments pass through unquoted and unsplit.
        let out = owner_only_command(Path::new("/bin/echo"))
            .args(["a b", "--app=http://127.0.0.2:5/open?secret=s&x=$HOME"])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "a b --app=http://127.0.0.2:5/open?secret=s&x=$HOME\n"
        );
    }

    #[test]
    fn finds_a_browser_on_the_path_in_order() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(find_browser(dir.path().as_os_str()), None);
        let chrome = dir.path().join("google-chrome");
        fs::write(&chrome, b"#!/bin/sh\n").unwrap();
        assert_eq!(find_browser(dir.path().as_os_str()), None, "not executable");
        fs::set_permissions(&chrome, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_browser(dir.path().as_os_str()), Some(chrome));
    }
}
