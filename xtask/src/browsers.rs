//! The browsers the dashboard's tests drive: Debian's Chromium with ChromeDriver, and
//! Debian's Firefox ESR with geckodriver. Found, or installed when missing: the browsers
//! from the distribution's packages (as root), geckodriver from crates.io (Debian does not
//! package it; Mozilla publishes it there, so it builds from source once per machine, with
//! no download from outside the package registries).

use std::{env, path::Path};

use crate::{Result, ensure_packages, run, step, succeeds};

/// The geckodriver the tests were written against.
const GECKODRIVER_VERSION: &str = "0.37.1";

pub fn ensure_browsers() -> Result {
    ensure_packages(
        "Chromium and ChromeDriver",
        &["chromium", "chromium-driver"],
        || {
            let driver = env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
            let browser = env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
            succeeds(&driver, &["--version"]) && Path::new(&browser).exists()
        },
        "name them with CHROMIUM and CHROMEDRIVER",
    )?;
    ensure_packages(
        "Firefox",
        &["firefox-esr"],
        || Path::new(&env::var("FIREFOX").unwrap_or_else(|_| "/usr/bin/firefox-esr".into())).exists(),
        "name it with FIREFOX",
    )?;
    ensure_geckodriver()
}

fn ensure_geckodriver() -> Result {
    let have = || succeeds(&env::var("GECKODRIVER").unwrap_or_else(|_| "geckodriver".into()), &["--version"]);
    if !have() {
        step(&format!("installing geckodriver {GECKODRIVER_VERSION} from crates.io (once per machine)"));
        run("cargo", &["install", "--locked", "geckodriver", "--version", GECKODRIVER_VERSION], &[])?;
    }
    if have() {
        Ok(())
    } else {
        Err("the Firefox browser test needs geckodriver: `cargo install geckodriver` (and ~/.cargo/bin on PATH), \
             or name it with GECKODRIVER, and run `cargo xtask ci` again."
            .into())
    }
}
