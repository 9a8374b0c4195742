//! Push settings from the environment. Push is on when at least one provider is configured.

use std::time::Duration;

use anyhow::{Context, bail};

/// FCM HTTP v1 with a service account.
#[derive(Debug, Clone)]
pub struct FcmSettings {
    /// The service-account JSON file (`CHAT_FCM_CREDENTIALS`).
    pub credentials_file: std::path::PathBuf,
    pub base_url: String,
    /// Overrides the credentials' `token_uri`.
    pub token_url: Option<String>,
}

/// APNs with token (.p8) authentication.
#[derive(Debug, Clone)]
pub struct ApnsSettings {
    pub key_file: std::path::PathBuf,
    pub key_id: String,
    pub team_id: String,
    /// The app's bundle id (`apns-topic`).
    pub topic: String,
    pub base_url: String,
}

#[derive(Debug, Clone)]
pub struct PushSettings {
    pub fcm: Option<FcmSettings>,
    pub apns: Option<ApnsSettings>,
    /// At most one push per device and conversation in this window; later messages wait for
    /// its end and the latest of them is sent.
    pub collapse_window: Duration,
    /// The first retry's delay; each later one doubles it.
    pub retry_base: Duration,
    /// Attempts per push, the first included.
    pub max_attempts: u32,
    /// Devices one person may have; registering one more drops their least recently
    /// registered.
    pub max_devices: u32,
    /// Messages older than this when the follower reaches them are not pushed (a follower that
    /// was off for a while does not wake phones about old news).
    pub max_age: Duration,
}

pub const FCM_BASE_URL: &str = "https://fcm.googleapis.com";
pub const APNS_BASE_URL: &str = "https://api.push.apple.com";

impl PushSettings {
    pub fn enabled(&self) -> bool {
        self.fcm.is_some() || self.apns.is_some()
    }

    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let number = |name: &str, default: u64| -> anyhow::Result<u64> {
            match get(name) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse()
                    .with_context(|| format!("{name}={v:?} is not a whole number")),
            }
        };
        let base = |name: &str, default: &str| -> anyhow::Result<String> {
            let url = get(name).unwrap_or_else(|| default.to_string());
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("{name} must start with http:// or https://");
            }
            Ok(url.trim_end_matches('/').to_string())
        };
        let fcm = match get("CHAT_FCM_CREDENTIALS") {
            None => None,
            Some(file) => Some(FcmSettings {
                credentials_file: file.into(),
                base_url: base("CHAT_FCM_BASE_URL", FCM_BASE_URL)?,
                token_url: get("CHAT_FCM_TOKEN_URL"),
            }),
        };
        let apns = match get("CHAT_APNS_KEY_FILE") {
            None => None,
            Some(file) => {
                let required = |name: &str| {
                    get(name).with_context(|| format!("{name} is required with CHAT_APNS_KEY_FILE"))
                };
                Some(ApnsSettings {
                    key_file: file.into(),
                    key_id: required("CHAT_APNS_KEY_ID")?,
                    team_id: required("CHAT_APNS_TEAM_ID")?,
                    topic: required("CHAT_APNS_TOPIC")?,
                    base_url: base("CHAT_APNS_BASE_URL", APNS_BASE_URL)?,
                })
            }
        };
        let max_attempts = number("CHAT_PUSH_MAX_ATTEMPTS", 5)?;
        let max_devices = number("CHAT_PUSH_MAX_DEVICES", 10)?;
        if max_attempts == 0 || max_devices == 0 {
            bail!("CHAT_PUSH_MAX_ATTEMPTS and CHAT_PUSH_MAX_DEVICES must be at least 1");
        }
        Ok(PushSettings {
            fcm,
            apns,
            collapse_window: Duration::from_millis(number("CHAT_PUSH_COLLAPSE_MS", 3000)?),
            retry_base: Duration::from_millis(number("CHAT_PUSH_RETRY_BASE_MS", 1000)?.max(1)),
            max_attempts: u32::try_from(max_attempts).unwrap_or(u32::MAX),
            max_devices: u32::try_from(max_devices).unwrap_or(u32::MAX),
            max_age: Duration::from_secs(number("CHAT_PUSH_MAX_AGE_SECS", 600)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_is_off_until_a_provider_is_configured() {
        let settings = PushSettings::from_lookup(&|_| None).unwrap();
        assert!(!settings.enabled());
        assert_eq!(settings.collapse_window, Duration::from_millis(3000));
        let settings = PushSettings::from_lookup(&|name| {
            (name == "CHAT_FCM_CREDENTIALS").then(|| "/etc/chatd/fcm.json".to_string())
        })
        .unwrap();
        assert!(settings.enabled());
        assert_eq!(
            settings.fcm.map(|f| f.base_url),
            Some(FCM_BASE_URL.to_string())
        );
    }

    #[test]
    fn an_apns_key_without_its_team_is_refused_with_the_missing_name() {
        let error = PushSettings::from_lookup(&|name| match name {
            "CHAT_APNS_KEY_FILE" => Some("/etc/chatd/AuthKey.p8".into()),
            "CHAT_APNS_KEY_ID" => Some("KEY1234567".into()),
            "CHAT_APNS_TOPIC" => Some("com.example.app".into()),
            _ => None,
        })
        .unwrap_err();
        assert!(error.to_string().contains("CHAT_APNS_TEAM_ID"), "{error}");
    }
}
