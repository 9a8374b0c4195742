//! The app secret: `CHAT_APP_SECRET`, else a random one generated once into
//! `<data_dir>/app_secret` (mode 0600) and read back on every later start.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rand::RngCore;

use crate::config::Config;

/// The file in the data directory that keeps a generated secret.
pub const SECRET_FILE: &str = "app_secret";

/// The secret, and the file it came from when it is the generated one.
pub(crate) fn app_secret(config: &Config) -> anyhow::Result<(String, Option<PathBuf>)> {
    if let Some(secret) = &config.app_secret {
        return Ok((secret.clone(), None));
    }
    let path = config.data_dir.join(SECRET_FILE);
    let secret = load_or_generate(&path)?;
    Ok((secret, Some(path)))
}

fn load_or_generate(path: &Path) -> anyhow::Result<String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))?;
    }
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let fresh = hex::encode(bytes);
    match create_private(path) {
        Ok(mut file) => {
            file.write_all(format!("{fresh}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing the app secret to {}", path.display()))?;
            Ok(fresh)
        }
        // Generated earlier (or by another process starting at the same time): read it back.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => read(path),
        Err(error) => {
            Err(error).with_context(|| format!("creating the app secret file {}", path.display()))
        }
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the app secret from {}", path.display()))?;
    let secret = text.trim();
    if secret.is_empty() {
        // A process that created the file may still be writing it; one short wait.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the app secret from {}", path.display()))?;
        if text.trim().is_empty() {
            bail!(
                "the app secret file {} is empty: delete it to generate a new secret, \
                 or set CHAT_APP_SECRET",
                path.display()
            );
        }
        return Ok(text.trim().to_string());
    }
    Ok(secret.to_string())
}

#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}
