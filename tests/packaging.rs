//! The Debian package: built by packaging/build-deb.sh from the binary under test, extracted into a scratch root
//! with `dpkg-deb -x`, and its files checked.

use std::path::Path;
use std::process::Command;

#[test]
fn the_deb_installs_the_binary_unit_config_man_page_and_completions() {
    let out = tempfile::tempdir().expect("tempdir");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = Command::new(repo.join("packaging/build-deb.sh"))
        .arg(env!("CARGO_BIN_EXE_gdprd"))
        .arg(out.path())
        .env("GDPRD_DEB_COMPRESSION", "none")
        .output()
        .expect("build-deb.sh runs");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let deb = String::from_utf8_lossy(&built.stdout).trim().to_owned();
    assert!(deb.ends_with(".deb") && Path::new(&deb).exists(), "{deb}");

    let root = out.path().join("root");
    let x = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&root)
        .status()
        .expect("dpkg-deb -x");
    assert!(x.success());
    for file in [
        "usr/bin/gdprd",
        "lib/systemd/system/gdprd.service",
        "etc/gdprd/gdprd.toml",
        "usr/share/man/man1/gdprd.1.gz",
        "usr/share/bash-completion/completions/gdprd",
        "usr/share/zsh/vendor-completions/_gdprd",
        "usr/share/fish/vendor_completions.d/gdprd.fish",
        "usr/share/doc/gdprd/operations.md",
    ] {
        let meta = std::fs::metadata(root.join(file))
            .unwrap_or_else(|_| panic!("{file} is in the package"));
        assert!(meta.len() > 0, "{file} is empty");
    }
    // The packaged binary runs, and the packaged config is a valid one.
    let version = Command::new(root.join("usr/bin/gdprd"))
        .arg("--version")
        .output()
        .expect("runs");
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("gdprd "));
    let unit =
        std::fs::read_to_string(root.join("lib/systemd/system/gdprd.service")).expect("unit");
    assert!(unit.contains("ExecStart=/usr/bin/gdprd run --config /etc/gdprd/gdprd.toml"));
    // The config is a conffile: an upgrade never overwrites the operator's edits.
    let info = Command::new("dpkg-deb")
        .args(["-I", &deb, "conffiles"])
        .output()
        .expect("dpkg-deb -I");
    assert_eq!(
        String::from_utf8_lossy(&info.stdout).trim(),
        "/etc/gdprd/gdprd.toml"
    );
    let man = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zcat {} | head -5",
            root.join("usr/share/man/man1/gdprd.1.gz").display()
        ))
        .output()
        .expect("zcat");
    assert!(String::from_utf8_lossy(&man.stdout).contains(".TH gdprd 1"));
    // Every page the main page refers to is shipped (issue 14 item 21: it named gdprd-run(1) and none was).
    let main_page = Command::new("zcat")
        .arg(root.join("usr/share/man/man1/gdprd.1.gz"))
        .output()
        .expect("zcat");
    // roff writes a hyphen as `\-`.
    let main_page = String::from_utf8_lossy(&main_page.stdout).replace("\\-", "-");
    let referred: Vec<&str> = main_page
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("gdprd-"))
        .collect();
    for page in [
        "gdprd-run",
        "gdprd-validate",
        "gdprd-check-config",
        "gdprd-status",
    ] {
        assert!(referred.contains(&page), "gdprd(1) refers to {page}(1)");
    }
    for page in &referred {
        let file = root.join(format!("usr/share/man/man1/{page}.1.gz"));
        assert!(
            file.exists(),
            "{page}(1), named in gdprd(1), is in the package"
        );
    }
    assert!(
        !referred.contains(&"gdprd-generate-assets"),
        "the hidden packaging command gets no page"
    );
    let completion =
        std::fs::read_to_string(root.join("usr/share/bash-completion/completions/gdprd"))
            .expect("bash");
    assert!(completion.contains("check-config") && completion.contains("suppressed"));
}
