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

/// Opens `url` in the app's window; falls back to the default browser with a warning.
pub fn open_window(home: &Path, url: &str) -> Result<Opened, LaunchError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(browser) = find_browser(&path) {
        prepare_profile(home)?;
        Command::new(&browser)
            .args(browser_args(home, url))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| LaunchError::Io(browser.display().to_string(), e))?;
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
